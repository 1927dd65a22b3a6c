package store

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"
)

// testKey returns a fixed, distinct key for each n.
func testKey(n int) []byte {
	k := sha256.Sum256(fmt.Appendf(nil, "forcebind test key %d", n))
	return k[:]
}

func mustKeyring(tb testing.TB, keys ...[]byte) *Keyring {
	tb.Helper()
	kr, err := NewKeyring(keys...)
	if err != nil {
		tb.Fatalf("NewKeyring: %v", err)
	}
	return kr
}

// sampleBinding returns a complete binding whose tokens are unique to the
// user, so that scans for them are meaningful.
func sampleBinding(team, user string) Binding {
	at := time.Date(2025, 1, 2, 3, 4, 5, 600, time.UTC)
	return Binding{
		TeamID:           team,
		UserID:           user,
		SalesforceUserID: "005" + user,
		OrgID:            "00D000000000001",
		Username:         user + "@acme.example",
		LoginURL:         "https://login.salesforce.com",
		InstanceURL:      "https://acme.my.salesforce.com",
		AccessToken:      "00D!AQ-access-" + team + "-" + user + "-Zq8rT2",
		RefreshToken:     "5Aep-refresh-" + team + "-" + user + "-Wk3nV7",
		IssuedAt:         at,
		LinkedAt:         at.Add(time.Minute),
		Scopes:           []string{"api", "refresh_token"},
	}
}
