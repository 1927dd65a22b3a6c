package main

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/forcebind/forcebind/auth"
)

// listener is one TCP address the daemon listens on, and what it serves
// there.
type listener struct {
	name    string // for the log: "callback listener", "listener" or "admin listener"
	setting string // the variable that sets addr
	addr    string
	// callback: the OAuth callback and confirmation pages (the web flow).
	callback bool
	// ops: /healthz, /readyz and /metrics.
	ops bool
	// admin: FORCEBIND_ADMIN_LISTEN, always plain HTTP, with pprof when
	// FORCEBIND_PPROF is on. Every other listener serves TLS when a
	// certificate is set.
	admin bool
}

// listenerPlan is what cfg makes the daemon listen on: FORCEBIND_LISTEN
// for the callback in the web flow, and for the operator's endpoints unless
// FORCEBIND_ADMIN_LISTEN serves them apart. The device flow with an admin
// address needs no FORCEBIND_LISTEN at all. The daemon binds the plan;
// doctor checks it.
func listenerPlan(cfg Config) []listener {
	web := cfg.ConnectFlow != auth.FlowDevice
	separate := cfg.AdminListen != ""
	var plan []listener
	if web || !separate {
		name := "listener"
		if web {
			name = "callback listener"
		}
		plan = append(plan, listener{name: name, setting: "FORCEBIND_LISTEN", addr: cfg.Listen, callback: web, ops: !separate})
	}
	if separate {
		plan = append(plan, listener{name: "admin listener", setting: "FORCEBIND_ADMIN_LISTEN", addr: cfg.AdminListen, ops: true, admin: true})
	}
	return plan
}

// servers are the daemon's listeners and the HTTP servers that answer on
// them: the TCP listeners of the plan and the control socket. A server is
// bound first (listen, or one made elsewhere), so that a taken port fails
// at start, before anything talks to Slack; serve starts answering; and
// shutdown stops every one, served or not, last bound first. The first
// server to fail is reported on failed. Its methods are for one goroutine.
type servers struct {
	log    zerolog.Logger
	failed chan error
	wg     sync.WaitGroup
	all    []*server
}

// server is one listener and the http.Server that answers on it.
type server struct {
	name string
	ln   net.Listener
	http *http.Server
	// closed, if set, runs once the server is shut down (the control
	// socket removes its file).
	closed func() error
	kept   bool // shutdown will stop it
}

func newServers(log zerolog.Logger) *servers {
	return &servers{log: log, failed: make(chan error, 8)}
}

// listen binds addr for a server of browsers and scrapers, with timeouts
// that a slow client cannot stretch.
func (s *servers) listen(name, addr string) (*server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", name, addr, err)
	}
	sv := &server{name: name, ln: ln, http: &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second, // a callback waits on Salesforce for up to auth's CallTimeout
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}}
	s.keep(sv)
	return sv, nil
}

// keep makes shutdown stop sv, a server bound elsewhere.
func (s *servers) keep(sv *server) {
	if !sv.kept {
		sv.kept = true
		s.all = append(s.all, sv)
	}
}

// serve answers on sv with h, over TLS with cert when it is set, until
// shutdown.
func (s *servers) serve(sv *server, h http.Handler, cert *auth.Certificate) {
	s.keep(sv)
	sv.http.Handler = h
	sv.http.ErrorLog = stdlog.New(debugWriter{s.log.With().Str("server", sv.name).Logger()}, "", 0)
	serve := func() error { return sv.http.Serve(sv.ln) }
	if cert != nil {
		sv.http.TLSConfig = cert.TLSConfig()
		serve = func() error { return sv.http.ServeTLS(sv.ln, "", "") }
	}
	s.wg.Go(func() {
		if err := serve(); !errors.Is(err, http.ErrServerClosed) {
			s.failed <- fmt.Errorf("%s: %w", sv.name, err)
		}
	})
}

// shutdown stops every server, last bound first, each letting requests in
// flight finish within timeout, and waits for them.
func (s *servers) shutdown(timeout time.Duration) {
	for i := len(s.all) - 1; i >= 0; i-- {
		sv := s.all[i]
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := sv.http.Shutdown(ctx)
		cancel()
		if err != nil {
			_ = sv.http.Close()
		}
		_ = sv.ln.Close() // in case it was never served
		if sv.closed != nil {
			if cerr := sv.closed(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			s.log.Warn().Err(err).Str("server", sv.name).Msg("shutdown")
		}
	}
	s.wg.Wait()
}

// debugWriter turns net/http's complaints (a scanner's failed TLS handshake,
// a malformed request) into debug lines: they are about the caller, and an
// operator needs them only when looking for something.
type debugWriter struct{ log zerolog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
