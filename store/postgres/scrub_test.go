package postgres

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/forcebind/forcebind/store"
)

// TestScrub: an error whose text holds the password loses it, and still
// matches what it wraps; others are left as they are.
func TestScrub(t *testing.T) {
	const password = "Pw-s3cret-Xq81"
	leaky := fmt.Errorf("connect as app:%s: %w", password, store.ErrWrongKey)
	got := scrub(leaky, password)
	if strings.Contains(got.Error(), password) {
		t.Errorf("scrub left the password in %q", got)
	}
	if !errors.Is(got, store.ErrWrongKey) {
		t.Errorf("scrub(%v) no longer matches ErrWrongKey", got)
	}
	clean := errors.New("connection refused")
	if got := scrub(clean, password); got != clean {
		t.Errorf("scrub changed an error without the password: %v", got)
	}
	if got := scrub(clean, ""); got != clean {
		t.Errorf("scrub with no password changed the error: %v", got)
	}
}
