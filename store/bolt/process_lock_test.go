//go:build !windows && !plan9 && !solaris && !aix && !android

package bolt

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/forcebind/forcebind/store"
)

// TestOpenLockedWhileBeingCreated has another process hold the lock on a
// file that is still empty, as bbolt does while it creates a store: that is
// a busy file, not a damaged one.
func TestOpenLockedWhileBeingCreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	cmd, out, stdin := startHelper(t, "lock", path)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("helper did not report ready (got %q, %v)", out.Text(), out.Err())
	}

	const timeout = 200 * time.Millisecond
	for _, ro := range []bool{false, true} {
		db, err := Open(path, Options{Keyring: mustKeyring(t, testKey(1)), LockTimeout: timeout, ReadOnly: ro})
		if err == nil {
			db.Close()
			t.Fatalf("Open(readonly=%t) of a file another process is creating: no error", ro)
		}
		if !errors.Is(err, store.ErrLocked) || errors.Is(err, store.ErrCorrupt) {
			t.Errorf("Open(readonly=%t) error = %v, want ErrLocked", ro, err)
		}
	}

	// The other process dies before writing anything: now the empty file
	// is reported for what it is.
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	_, err := Open(path, Options{Keyring: mustKeyring(t, testKey(1)), LockTimeout: timeout})
	if !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("Open of the empty file once unlocked: %v, want ErrCorrupt", err)
	}
}
