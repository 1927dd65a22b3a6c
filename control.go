package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/forcebind/forcebind/store"
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

// controlServer answers GET /backup on the control socket.
type controlServer struct {
	path string
	ln   net.Listener
	srv  *http.Server
}

// listenControl binds the control socket for db. It must be called while
// holding the store (so no other daemon owns the socket): a socket left by a
// daemon that died is replaced. The socket is created in a private directory
// and renamed into place, so it is never reachable with looser permissions.
func listenControl(path string, db *store.DB, log zerolog.Logger) (*controlServer, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control socket %s: path longer than %d bytes; use a shorter FORCEBIND_DB path", path, maxSocketPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control socket %s: a file that is not a socket is in the way", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket: remove stale %s: %w", path, err)
		}
	}
	private, err := os.MkdirTemp(filepath.Dir(path), ".forcebind-ctl-")
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer os.RemoveAll(private)
	tmp := filepath.Join(private, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // it is renamed; shutdown removes it
	err = os.Chmod(tmp, 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /backup", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		start := time.Now()
		n, err := db.Backup(r.Context(), w)
		if err != nil {
			// Headers are gone by now; the client sees a short body and its
			// check of the copy fails.
			log.Error().Err(err).Int64("bytes", n).Msg("backup through the control socket failed")
			return
		}
		log.Info().Str("audit", "backup taken").Int64("bytes", n).Dur("took", time.Since(start)).Msg("backup taken")
	})
	return &controlServer{path: path, ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}, nil
}

// serve answers until shutdown.
func (c *controlServer) serve() error {
	if err := c.srv.Serve(c.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// shutdown lets a backup in progress finish until ctx ends, then removes the
// socket.
func (c *controlServer) shutdown(ctx context.Context) error {
	err := c.srv.Shutdown(ctx)
	if err != nil {
		_ = c.srv.Close()
	}
	_ = c.ln.Close()
	if rerr := os.Remove(c.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}
