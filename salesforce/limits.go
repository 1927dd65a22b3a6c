package salesforce

import (
	"strconv"
	"strings"
)

// parseLimitInfo reads the api-usage entry of a Sforce-Limit-Info header,
// e.g. "api-usage=25/15000; per-app-api-usage=17/250(appName=x)". It reports
// false for a missing or malformed entry.
func parseLimitInfo(header string) (Usage, bool) {
	for part := range strings.SplitSeq(header, ";") {
		part = strings.TrimSpace(part)
		value, ok := strings.CutPrefix(part, "api-usage=")
		if !ok {
			continue
		}
		used, limit, ok := strings.Cut(strings.TrimSpace(value), "/")
		if !ok {
			return Usage{}, false
		}
		u, okU := parseCount(used)
		m, okM := parseCount(limit)
		if !okU || !okM || m == 0 {
			return Usage{}, false
		}
		return Usage{Used: u, Max: m}, true
	}
	return Usage{}, false
}

// parseCount accepts plain decimal digits only (no sign, no spaces) that fit
// in an int.
func parseCount(s string) (int, bool) {
	if s == "" || len(s) > 12 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}
