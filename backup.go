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
	"strings"
	"time"

	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
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
	ring, err := cfg.keyring()
	if err != nil {
		return usageError{err}
	}
	return backupJob{db: cfg.DB, ring: ring}.run(ctx, rest[0], stdout)
}

// backupJob is one `forcebind backup`: of the store at db, opened with ring.
type backupJob struct {
	db   string
	ring *store.Keyring
	// freeSpace returns the bytes free in the file system holding a
	// directory; nil means statfs. Tests pass their own.
	freeSpace func(dir string) (uint64, error)
}

// run copies the store to dst and reports the copy on stdout.
func (j backupJob) run(ctx context.Context, dst string, stdout io.Writer) error {
	if same, _ := samePath(dst, j.db); same {
		return usageError{fmt.Errorf("backup: %s is the store itself", dst)}
	}
	freeSpace := j.freeSpace
	if freeSpace == nil {
		freeSpace = statfsFree
	}
	if err := checkSpace(freeSpace, filepath.Dir(dst), j.db, "the copy"); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".partial-*") // mode 0600
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name()) // once renamed, this finds nothing
	source, n, err := copyStore(ctx, j.db, j.ring, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("backup of %s: %w", j.db, err)
	}
	bindings, err := checkCopy(ctx, tmp.Name(), j.ring)
	if err != nil {
		return fmt.Errorf("backup of %s: the copy does not open as a store: %w", j.db, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	syncDir(filepath.Dir(dst))
	fmt.Fprintf(stdout, "backed up %s (%s) to %s: %d bytes, %d bindings\n", j.db, source, dst, n, bindings)
	return nil
}

// errBackupRunning is the daemon's answer to a backup asked for while
// another one runs.
var errBackupRunning = errors.New("a backup is already running; try again once it has finished")

// errNoSpace is returned when a copy of the store would not fit.
var errNoSpace = errors.New("not enough free space")

// checkSpace refuses a copy of the store at db, for what (the copy, the
// daemon's snapshot), when the file system holding dir has less free space
// than the store's size. When either size cannot be read it lets the copy
// go ahead: a full disk then fails the copy itself, with its own error.
func checkSpace(freeSpace func(string) (uint64, error), dir, db, what string) error {
	fi, err := os.Stat(db)
	if err != nil {
		return nil
	}
	free, err := freeSpace(dir)
	if err != nil {
		return nil
	}
	if need := uint64(fi.Size()); free < need {
		return fmt.Errorf("%w in %s for %s: the store is %s, and only %s is free", errNoSpace, dir, what, sizeText(need), sizeText(free))
	}
	return nil
}

// sizeText renders n bytes for a person: "3.2 MiB (3355443 bytes)".
func sizeText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", v, "KMGTP"[i], n)
}

// copyStore writes the store at path to w, and says where the copy came from.
func copyStore(ctx context.Context, path string, ring *store.Keyring, w io.Writer) (source string, n int64, err error) {
	db, err := bolt.Open(path, bolt.Options{Keyring: ring, ReadOnly: true})
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
		// The daemon says why in one line of text (see listenControl).
		why, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		line, _, _ := strings.Cut(strings.TrimSpace(string(why)), "\n")
		switch resp.StatusCode {
		case http.StatusConflict:
			return 0, fmt.Errorf("the running daemon refused: %w", errBackupRunning)
		case http.StatusInsufficientStorage:
			return 0, fmt.Errorf("the running daemon refused: %s", line)
		}
		return 0, fmt.Errorf("the running daemon answered %s: %s", resp.Status, line)
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
	db, err := bolt.Open(path, bolt.Options{Keyring: ring, ReadOnly: true})
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
