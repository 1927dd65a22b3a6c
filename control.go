package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/forcebind/forcebind/store/bolt"
)

// The control socket is how `forcebind backup` reaches a running daemon.
// The daemon holds bbolt's exclusive lock on the store, so no other process
// can read the file while it runs; the daemon copies it instead, from one
// read transaction, without stopping. The socket sits beside the store, is
// mode 0600, and is reached only by users who could read the store anyway.

// controlSocketPath is the control socket of the store at db.
func controlSocketPath(db string) string { return db + ".sock" }

// maxSocketPath is the longest path a unix socket may have on Linux
// (sun_path is 108 bytes, NUL included).
const maxSocketPath = 107

// controlConfig is what the control socket needs.
type controlConfig struct {
	db  *bolt.DB
	log zerolog.Logger
	// statfs describes the file system holding a directory; nil means
	// statfsDir. Tests pass their own.
	statfs func(dir string) (fsStat, error)
}

// listenControl binds the control socket for cfg.db at path, and returns
// it with the handler of GET /backup, for servers to serve. It must be
// called while holding the store (so no other daemon owns the socket): a
// socket left by a daemon that died is replaced. The socket is created in a
// private directory and renamed into place, so it is never reachable with
// looser permissions; shutdown removes it.
func listenControl(path string, cfg controlConfig) (*server, http.Handler, error) {
	db, log := cfg.db, cfg.log
	statfs := cfg.statfs
	if statfs == nil {
		statfs = statfsDir
	}
	if len(path) > maxSocketPath {
		return nil, nil, fmt.Errorf("control socket %s: path longer than %d bytes; use a shorter FORCEBIND_DB path", path, maxSocketPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, nil, fmt.Errorf("control socket %s: a file that is not a socket is in the way", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, nil, fmt.Errorf("control socket: remove stale %s: %w", path, err)
		}
	}
	private, err := os.MkdirTemp(filepath.Dir(path), ".forcebind-ctl-")
	if err != nil {
		return nil, nil, fmt.Errorf("control socket: %w", err)
	}
	defer os.RemoveAll(private)
	tmp := filepath.Join(private, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, nil, fmt.Errorf("control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // it is renamed; shutdown removes it
	err = os.Chmod(tmp, 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("control socket: %w", err)
	}
	// One backup at a time: each holds a snapshot as large as the store
	// beside it until its client has read it all.
	var running atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /backup", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if !running.CompareAndSwap(false, true) {
			log.Warn().Msg("backup refused: another one is running")
			http.Error(w, errBackupRunning.Error(), http.StatusConflict)
			return
		}
		defer running.Store(false)
		// Room for the snapshot only: where the client writes its copy,
		// and whether that shares this file system, the client checks.
		if err := snapshotSpace(statfs, db.Path()); err != nil {
			log.Error().Err(err).Msg("backup refused")
			http.Error(w, err.Error(), http.StatusInsufficientStorage)
			return
		}
		// The read transaction that pins the snapshot also stops any write
		// that must grow the file, and every read queued behind it. So the
		// snapshot goes to a local file first, at disk speed, and only that
		// file is streamed, at whatever pace the client reads.
		f, n, err := snapshot(r.Context(), db)
		if err != nil {
			log.Error().Err(err).Msg("backup through the control socket failed")
			http.Error(w, "backup failed; see the daemon's log", http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		if _, err := io.Copy(w, f); err != nil {
			log.Warn().Err(err).Msg("backup client went away")
			return
		}
		log.Info().Str("audit", "backup taken").Int64("bytes", n).Dur("took", time.Since(start)).Msg("backup taken")
	})
	remove := func() error {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	// A client that stops reading (a paused `forcebind backup`) holds only
	// its snapshot file, and only this long.
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, WriteTimeout: backupTimeout}
	return &server{name: "control socket", ln: ln, http: srv, closed: remove}, mux, nil
}

// snapshotSpace refuses a snapshot of the store at path when the file
// system beside it has less free space than the store's size. When either
// cannot be read, the snapshot goes ahead, and a full disk fails it.
func snapshotSpace(statfs func(string) (fsStat, error), path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	dir := filepath.Dir(path)
	st, err := statfs(dir)
	if err != nil {
		return nil
	}
	return checkFree(st.free, dir, uint64(fi.Size()), "the daemon's snapshot")
}

// snapshot copies the store to an unnamed file beside it (created 0600 and
// unlinked at once, so nothing is left behind whatever happens) and returns
// it positioned at the start, with its size.
func snapshot(ctx context.Context, db *bolt.DB) (*os.File, int64, error) {
	f, err := os.CreateTemp(filepath.Dir(db.Path()), ".forcebind-backup-*")
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("snapshot: %w", err)
	}
	n, err := db.Backup(ctx, f)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("snapshot: %w", err)
	}
	return f, n, nil
}
