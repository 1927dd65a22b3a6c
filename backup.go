package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/forcebind/forcebind/store"
)

// runBackup is `forcebind backup FILE`: a consistent copy of the store,
// hot or cold. When no daemon holds the store the file is read directly;
// when one does, the copy comes from it through the control socket. Either
// way the copy is checked (it opens with the keyring and its bindings are
// counted) before it replaces FILE.
func runBackup(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, rest, err := parseConfig("backup", args, getenv, stderr, groupStore)
	if err != nil {
		return configError(err)
	}
	if len(rest) != 1 {
		return usageError{errors.New("backup: want exactly one argument, the file to write (forcebind backup FILE)")}
	}
	dst := rest[0]
	ring, err := cfg.keyring()
	if err != nil {
		return usageError{err}
	}
	if same, _ := samePath(dst, cfg.DB); same {
		return usageError{fmt.Errorf("backup: %s is the store itself", dst)}
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".partial-*") // mode 0600
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name()) // once renamed, this finds nothing
	source, n, err := copyStore(ctx, cfg.DB, ring, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("backup of %s: %w", cfg.DB, err)
	}
	bindings, err := checkCopy(ctx, tmp.Name(), ring)
	if err != nil {
		return fmt.Errorf("backup of %s: the copy does not open as a store: %w", cfg.DB, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	syncDir(filepath.Dir(dst))
	fmt.Fprintf(stdout, "backed up %s (%s) to %s: %d bytes, %d bindings\n", cfg.DB, source, dst, n, bindings)
	return nil
}

// copyStore writes the store at path to w, and says where the copy came from.
func copyStore(ctx context.Context, path string, ring *store.Keyring, w io.Writer) (source string, n int64, err error) {
	db, err := store.Open(path, store.Options{Keyring: ring, ReadOnly: true})
	switch {
	case errors.Is(err, store.ErrLocked):
		n, err = backupFromDaemon(ctx, controlSocketPath(path), w)
		return "from the running daemon", n, err
	case err != nil:
		return "", 0, fmt.Errorf("open store: %w", err)
	}
	n, err = db.Backup(ctx, w)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return "not in use", n, err
}

// backupTimeout bounds a backup through the control socket; a store of
// 100,000 bindings is about 160 MB.
const backupTimeout = 10 * time.Minute

// backupFromDaemon asks the daemon holding the store for a copy.
func backupFromDaemon(ctx context.Context, socket string, w io.Writer) (int64, error) {
	if _, err := os.Stat(socket); err != nil {
		return 0, fmt.Errorf("the store is in use by another process, and there is no forcebind control socket at %s to ask it for a copy (is `forcebind compact` or `key rotate` running?): %w", socket, err)
	}
	ctx, cancel := context.WithTimeout(ctx, backupTimeout)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	defer hc.CloseIdleConnections()
	// The host is a placeholder: the transport always dials the socket.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://forcebind/backup", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("ask the running daemon through %s: %w", socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("the running daemon answered %s", resp.Status)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("copy from the running daemon: %w", err)
	}
	return n, nil
}

// checkCopy opens a copy read-only with the keyring (which checks its
// canary) and counts its bindings.
func checkCopy(ctx context.Context, path string, ring *store.Keyring) (int, error) {
	db, err := store.Open(path, store.Options{Keyring: ring, ReadOnly: true})
	if err != nil {
		return 0, err
	}
	n, err := db.CountBindings(ctx)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return n, err
}

// samePath reports whether a and b name the same file (false when either
// does not exist).
func samePath(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}

// syncDir makes a rename in dir durable; a failure only costs durability,
// and the rename itself has succeeded.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
