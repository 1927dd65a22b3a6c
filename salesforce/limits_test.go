package salesforce

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseLimitInfo(t *testing.T) {
	tests := []struct {
		header string
		want   Usage
		wantOK bool
	}{
		{header: "api-usage=25/15000", want: Usage{25, 15000}, wantOK: true},
		{header: "api-usage=25/5000; per-app-api-usage=17/250(appName=sample-connected-app)", want: Usage{25, 5000}, wantOK: true},
		{header: "per-app-api-usage=17/250(appName=x); api-usage=110018/100000", want: Usage{110018, 100000}, wantOK: true},
		{header: "", wantOK: false},
		{header: "api-usage=", wantOK: false},
		{header: "api-usage=25", wantOK: false},
		{header: "api-usage=-1/100", wantOK: false},
		{header: "api-usage=+1/100", wantOK: false},
		{header: "api-usage=1/0", wantOK: false},
		{header: "api-usage=1 /100", wantOK: false},
		{header: "api-usage=99999999999999999999/1", wantOK: false},
		{header: "API-USAGE=1/2", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			got, ok := parseLimitInfo(tt.header)
			if diff := cmp.Diff(tt.want, got); diff != "" || ok != tt.wantOK {
				t.Errorf("ok = %v, want %v; mismatch (-want +got):\n%s", ok, tt.wantOK, diff)
			}
		})
	}
}

func FuzzParseLimitInfo(f *testing.F) {
	f.Add("api-usage=25/15000")
	f.Add("api-usage=25/5000; per-app-api-usage=17/250(appName=x)")
	f.Add("api-usage=/")
	f.Fuzz(func(t *testing.T, header string) {
		u, ok := parseLimitInfo(header)
		if !ok {
			if u != (Usage{}) {
				t.Errorf("not ok but usage %+v", u)
			}
			return
		}
		if u.Used < 0 || u.Max <= 0 {
			t.Errorf("usage out of range: %+v", u)
		}
		again, ok := parseLimitInfo(fmt.Sprintf("api-usage=%d/%d", u.Used, u.Max))
		if !ok || again != u {
			t.Errorf("round trip of %+v gave %+v, %v", u, again, ok)
		}
	})
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"0015g00000AcmeAAAR", true},
		{"0015g00000acmeaaar", false}, // case of the 15 matters for the checksum
		{"0015g00000AcmeA", true},
		{"0015g00000AcmeAaar", true}, // checksum is case-insensitive
		{"0015g00000AcmeAAAB", false},
		{"0015g00000Acme", false},
		{"0015g00000AcmeAAA/", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.id); got != tt.want {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}
