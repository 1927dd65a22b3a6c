package main

import (
	"fmt"
	"io"
	"strings"
)

// The checklist that `forcebind doctor` prints: one line per check, with a
// status, a name and a detail, and a fix under each failure.

// checkStatus is the outcome of one check.
type checkStatus string

const (
	statusOK   checkStatus = "ok"
	statusWarn checkStatus = "warn"
	statusFail checkStatus = "FAIL"
	// statusSkip marks a check that could not run because of an earlier
	// failure; it does not change the exit code by itself.
	statusSkip checkStatus = "skip"
)

// checkResult is one line of the checklist. Fix is printed for failures.
type checkResult struct {
	Status checkStatus
	Name   string
	Detail string
	Fix    string
}

// passed, warned, skipped and failed make a checklist line of each status.
func passed(name, format string, a ...any) checkResult {
	return checkResult{Status: statusOK, Name: name, Detail: fmt.Sprintf(format, a...)}
}

func warned(name, format string, a ...any) checkResult {
	return checkResult{Status: statusWarn, Name: name, Detail: fmt.Sprintf(format, a...)}
}

func skipped(name, format string, a ...any) checkResult {
	return checkResult{Status: statusSkip, Name: name, Detail: fmt.Sprintf(format, a...)}
}

func failed(name, detail, fix string) checkResult {
	return checkResult{Status: statusFail, Name: name, Detail: detail, Fix: fix}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// secretsOf lists the secret values of cfg, for scrubbing the checklist.
func secretsOf(cfg Config) []string {
	s := []string{cfg.SlackAppToken, cfg.SlackBotToken, cfg.ClientSecret, cfg.Key}
	for k := range strings.SplitSeq(cfg.Key, ",") {
		s = append(s, strings.TrimSpace(k))
	}
	return s
}

// writeChecklist prints one line per result, a fix line under each
// failure, and a summary; it returns the number of failures. Every line is
// scrubbed of the secrets as a second line of defence: no check puts one
// in a detail, and a test holds them to it.
func writeChecklist(w io.Writer, rs []checkResult, secrets []string) int {
	scrub := func(s string) string {
		for _, v := range secrets {
			if len(v) >= 8 {
				s = strings.ReplaceAll(s, v, "[redacted]")
			}
		}
		return s
	}
	count := make(map[checkStatus]int)
	fmt.Fprintf(w, "forcebind doctor (%s)\n", version)
	for _, r := range rs {
		count[r.Status]++
		fmt.Fprintf(w, "%-4s  %-20s  %s\n", r.Status, r.Name, scrub(r.Detail))
		if r.Status == statusFail && r.Fix != "" {
			fmt.Fprintf(w, "%-4s  %-20s  fix: %s\n", "", "", scrub(r.Fix))
		}
	}
	var parts []string
	for _, st := range []checkStatus{statusFail, statusWarn, statusSkip} {
		if n := count[st]; n > 0 {
			word := map[checkStatus]string{statusFail: "failed", statusWarn: plural(n, "warning", "warnings"), statusSkip: "skipped"}[st]
			parts = append(parts, fmt.Sprintf("%d %s", n, word))
		}
	}
	summary := "all checks passed"
	if count[statusFail] > 0 {
		summary = "some checks failed"
	}
	if len(parts) > 0 {
		summary += " (" + strings.Join(parts, ", ") + ")"
	}
	fmt.Fprintf(w, "\n%s: %d ok of %d\n", summary, count[statusOK], len(rs))
	return count[statusFail]
}
