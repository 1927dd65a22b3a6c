package pgtest

import (
	"errors"
	"io/fs"
	"os"
	"testing"
)

// TestBinDirMissing: a FORCEBIND_PG_BINDIR without the server binaries is
// ErrNoPostgres, which Shared turns into a skip (or, with
// FORCEBIND_REQUIRE_POSTGRES=1, a failure), naming the setting.
func TestBinDirMissing(t *testing.T) {
	t.Setenv(EnvBinDir, t.TempDir())
	_, err := binDir()
	if !errors.Is(err, ErrNoPostgres) {
		t.Fatalf("binDir with an empty %s: %v, want ErrNoPostgres", EnvBinDir, err)
	}
}

// TestStartStop: a server starts, takes a new database, and is gone with
// its directory after Stop; a second Stop says the same.
func TestStartStop(t *testing.T) {
	if _, err := binDir(); errors.Is(err, ErrNoPostgres) {
		if requirePostgres() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	s, err := Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.CreateDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop again: %v", err)
	}
	if err := s.Exec(t.Context(), "postgres", "SELECT 1"); err == nil {
		t.Errorf("the server at %s still answers after Stop", u)
	}
	if _, err := os.Stat(s.SocketDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the server's directory is still there after Stop: %v", err)
	}
	select {
	case <-s.exited:
	default:
		t.Error("postgres has not exited after Stop")
	}
}
