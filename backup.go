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
	// statfs describes the file system holding a directory; nil means
	// statfsDir. Tests pass their own.
	statfs func(dir string) (fsStat, error)
}

// run copies the store to dst and reports the copy on stdout.
func (j backupJob) run(ctx context.Context, dst string, stdout io.Writer) error {
	if same, _ := samePath(dst, j.db); same {
		return usageError{fmt.Errorf("backup: %s is the store itself", dst)}
	}
	src, err := openSource(j.db, j.ring)
	if err != nil {
		return fmt.Errorf("backup of %s: %w", j.db, err)
	}
	defer src.close()
	if err := j.checkSpace(filepath.Dir(dst), src.hot()); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".partial-*") // mode 0600
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name()) // once renamed, this finds nothing
	n, err := src.copyTo(ctx, tmp)
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
	fmt.Fprintf(stdout, "backed up %s (%s) to %s: %d bytes, %d bindings\n", j.db, src.describe(), dst, n, bindings)
	return nil
}

// checkSpace refuses the copy, before anything is written, when it would
// not fit in dir. From a running daemon it needs twice the store's size
// when dir shares the store's file system: the daemon's snapshot beside
// the store lives until the copy has been read in full, so both exist at
// once, and a disk filled by a backup then fails the daemon's token
// writes. (The daemon checks the room for its snapshot itself, and cannot
// know where the copy goes.) When a size or a file system cannot be read,
// the copy goes ahead, and a full disk fails it with its own error.
func (j backupJob) checkSpace(dir string, hot bool) error {
	statfs := j.statfs
	if statfs == nil {
		statfs = statfsDir
	}
	fi, err := os.Stat(j.db)
	if err != nil {
		return nil
	}
	to, err := statfs(dir)
	if err != nil {
		return nil
	}
	size := uint64(fi.Size())
	if hot {
		if from, err := statfs(filepath.Dir(j.db)); err == nil && from.device == to.device {
			if need := 2 * size; to.free < need {
				return fmt.Errorf("%w in %s for the copy and the running daemon's snapshot, which are on the same file system as the store and exist together until the copy is done: the store is %s, so %s is needed, and only %s is free; write the backup to another file system, or free some space",
					errNoSpace, dir, sizeText(size), sizeText(need), sizeText(to.free))
			}
			return nil
		}
	}
	return checkFree(to.free, dir, size, "the copy")
}

// errBackupRunning is the daemon's answer to a backup asked for while
// another one runs.
var errBackupRunning = errors.New("a backup is already running; try again once it has finished")

// errNoSpace is returned when a copy of the store would not fit.
var errNoSpace = errors.New("not enough free space")

// checkFree refuses a copy of a store of size bytes, for what (the copy,
// the daemon's snapshot), when only free bytes are free in dir.
func checkFree(free uint64, dir string, size uint64, what string) error {
	if free < size {
		return fmt.Errorf("%w in %s for %s: the store is %s, and only %s is free", errNoSpace, dir, what, sizeText(size), sizeText(free))
	}
	return nil
}

// fsStat is what the space check needs to know of a file system.
type fsStat struct {
	free   uint64 // bytes an unprivileged process may still write
	device uint64 // the device number: two directories with the same one share the free space
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

// source is where a backup is read from: the store file itself when no
// daemon holds it (db is set), or the running daemon through its control
// socket (socket is set).
type source struct {
	db     *bolt.DB
	socket string
}

// openSource opens the store at path read-only, or, when a daemon holds
// it, names the daemon's control socket instead.
func openSource(path string, ring *store.Keyring) (source, error) {
	db, err := bolt.Open(path, bolt.Options{Keyring: ring, ReadOnly: true})
	switch {
	case errors.Is(err, store.ErrLocked):
		return source{socket: controlSocketPath(path)}, nil
	case err != nil:
		return source{}, fmt.Errorf("open store: %w", err)
	}
	return source{db: db}, nil
}

// hot reports whether the copy comes from a running daemon.
func (s source) hot() bool { return s.db == nil }

// describe says where the copy came from, for the report.
func (s source) describe() string {
	if s.hot() {
		return "from the running daemon"
	}
	return "not in use"
}

// copyTo writes the store to w.
func (s source) copyTo(ctx context.Context, w io.Writer) (int64, error) {
	if s.hot() {
		return backupFromDaemon(ctx, s.socket, w)
	}
	return s.db.Backup(ctx, w)
}

// close closes the store when it was opened.
func (s source) close() {
	if s.db != nil {
		s.db.Close() // read-only: nothing to lose
	}
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
