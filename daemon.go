package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/forcebind/forcebind/auth"
	"github.com/forcebind/forcebind/bot"
	"github.com/forcebind/forcebind/store/bolt"
)

// The bot speaks the token-free words of auth/account; auth.Service is
// what answers it, and bot.Messenger is how auth reaches people.
var (
	_ bot.Auth      = (*auth.Service)(nil)
	_ auth.Notifier = (*bot.Messenger)(nil)
)

// sweepEvery is how often expired links are removed (and the tokens of
// unconfirmed ones revoked).
const sweepEvery = time.Minute

// The bbolt store is the binding store auth consumes.
var _ auth.Store = (*bolt.DB)(nil)

// daemon is forcebind's parts, wired. Tests and the demo build one with
// their own Config and logger; `forcebind run` builds one from the
// environment.
type daemon struct {
	cfg Config
	log zerolog.Logger
	// botTuning lets the demo and tests shorten the bot's timeouts, and
	// authTuning the auth service's.
	botTuning  func(*bot.Config)
	authTuning func(*auth.Config)
	// listening, if set, is told the listeners' addresses once bound: the
	// callback listener's (nil in the device flow) and the one serving
	// /readyz and /metrics (the same one unless FORCEBIND_ADMIN_LISTEN is set).
	listening func(callback, admin net.Addr)
	// hup delivers SIGHUP, which reloads the TLS certificate.
	hup <-chan os.Signal
	// statfs, if set, replaces statfsDir for the control socket's check
	// that a backup's snapshot fits beside the store.
	statfs func(dir string) (fsStat, error)
}

// run is the daemon's life, one phase after the other: open the store,
// bind the listeners, build the parts, serve until ctx ends or a part
// fails, and stop, which the deferred calls do in reverse order (the
// parts, then the listeners, then the store). A configuration or start-up
// error (a wrong key, a taken port, Slack refusing the tokens) returns
// before anything is left running.
func (d daemon) run(ctx context.Context) (err error) {
	db, err := d.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeWith(&err, "close store", db.Close)
	// Everything is bound before anything talks to Slack, so a taken port
	// fails at once. Every server, once bound, is shut down after the bot
	// has stopped.
	servers := newServers(d.log)
	defer servers.shutdown(10 * time.Second)
	ls, err := d.bindListeners(servers, db)
	if err != nil {
		return err
	}
	if d.cfg.CallbackURL == "" && ls.callback != nil {
		// Only the demo and tests leave it empty, with a port chosen at bind time.
		d.cfg.CallbackURL = ls.callbackURL()
	}
	p, err := d.buildParts(db)
	if err != nil {
		return err
	}
	// Runs once the bot has stopped, before the listeners shut down and
	// the store closes.
	defer p.close(d.log)
	return d.serve(ctx, servers, ls, p, db)
}

// openStore opens the store with the configured keyring and reads it once.
func (d daemon) openStore(ctx context.Context) (*bolt.DB, error) {
	cfg, log := d.cfg, d.log
	ring, err := cfg.keyring()
	if err != nil {
		return nil, usageError{err}
	}
	db, err := bolt.Open(cfg.DB, bolt.Options{Keyring: ring})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg.DB, err)
	}
	n, err := db.CountBindings(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("read store: %w", err)
	}
	log.Info().Str("db", cfg.DB).Str("key_id", ring.PrimaryID()).Int("bindings", n).Msg("store open")
	return db, nil
}

// bound is the daemon's listeners, bound but not yet answering.
type bound struct {
	cert *auth.Certificate // nil: plain HTTP
	// plan is listenerPlan's, and each of its servers is in srv.
	plan []listener
	srv  []*server
	// callback is the listener of the callback, nil in the device flow.
	callback *server
	// tls: some listener serves TLS with cert.
	tls bool
	// control is the control socket, nil when it could not be made, and
	// controlHandler what it serves.
	control        *server
	controlHandler http.Handler
}

// callbackURL is the callback URL of the callback listener's address.
func (b bound) callbackURL() string {
	scheme := "http"
	if b.cert != nil {
		scheme = "https"
	}
	return scheme + "://" + b.callback.ln.Addr().String() + auth.CallbackPath
}

// bindListeners loads the TLS certificate, binds the control socket and
// every listener of the plan, and keeps them in servers for shutdown.
func (d daemon) bindListeners(servers *servers, db *bolt.DB) (bound, error) {
	cfg, log := d.cfg, d.log
	var ls bound
	if cfg.TLSCertFile != "" {
		cert, err := auth.LoadCertificate(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return bound{}, usageError{err}
		}
		log.Info().Time("not_after", cert.Leaf().NotAfter).Strs("names", cert.Leaf().DNSNames).Msg("tls certificate loaded")
		ls.cert = cert
	}
	// Without the control socket forcebind works; only hot backups do not.
	if ctl, h, err := listenControl(controlSocketPath(cfg.DB), controlConfig{db: db, log: log, statfs: d.statfs}); err != nil {
		log.Error().Err(err).Msg("no control socket: `forcebind backup` will not work while the daemon runs")
	} else {
		servers.keep(ctl)
		ls.control, ls.controlHandler = ctl, h
	}
	ls.plan = listenerPlan(cfg)
	for _, l := range ls.plan {
		sv, err := servers.listen(l.name, l.addr)
		if err != nil {
			return bound{}, err
		}
		ls.srv = append(ls.srv, sv)
		if l.callback {
			ls.callback = sv
		}
		ls.tls = ls.tls || (ls.cert != nil && !l.admin)
	}
	if ls.cert != nil && !ls.tls {
		log.Warn().Msg("FORCEBIND_TLS_CERT_FILE is set, but in the device flow with FORCEBIND_ADMIN_LISTEN no listener uses it (the admin listener is plain HTTP)")
	}
	return ls, nil
}

// parts are what the daemon runs, built once the listeners are bound.
type parts struct {
	mx  *metrics
	svc *auth.Service
	b   *bot.Bot
}

// buildParts builds the metrics, the Slack client, the auth service and
// the bot.
func (d daemon) buildParts(db *bolt.DB) (parts, error) {
	cfg, log := d.cfg, d.log
	mx := newMetrics(prometheus.NewRegistry(), func() (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return db.CountBindings(ctx)
	})
	hc := newHTTPClient()
	api := bot.NewAPI(bot.APIConfig{
		BotToken: cfg.SlackBotToken, AppToken: cfg.SlackAppToken, URL: cfg.SlackAPIURL,
		HTTPClient: hc, Logger: log,
	})
	msgs := bot.NewMessenger(api, hc, cfg.SlackAPIURL, log)
	ac := auth.Config{
		ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, LoginURL: cfg.LoginURL,
		CallbackURL: cfg.CallbackURL, APIVersion: cfg.APIVersion, LinkTTL: cfg.LinkTTL,
		Flow: cfg.ConnectFlow, RequireEmailMatch: cfg.RequireEmailMatch,
		AllowedOrgIDs: cfg.AllowedOrgIDs, AllowCustomLoginHost: cfg.AllowCustomLoginHost,
		Store: db, Notifier: msgs, HTTPClient: hc, Logger: log,
		Observer: mx, APIObserver: mx,
	}
	if d.authTuning != nil {
		d.authTuning(&ac)
	}
	svc, err := auth.New(ac)
	if err != nil {
		return parts{}, usageError{err}
	}
	bc := bot.Config{API: api, APIURL: cfg.SlackAPIURL, Auth: svc, Messages: msgs, Logger: log, Observer: mx}
	if d.botTuning != nil {
		d.botTuning(&bc)
	}
	b, err := bot.New(bc)
	if err != nil {
		return parts{}, err
	}
	return parts{mx: mx, svc: svc, b: b}, nil
}

// close waits for the auth service's refreshes and device links: each may
// hold tokens Salesforce has issued and the store does not have yet.
func (p parts) close(log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.svc.Close(ctx); err != nil {
		log.Error().Err(err).Msg("stopping with a refresh unfinished; its user may have to connect again")
	}
}

// serve answers on every bound listener and runs the bot, the sweep and
// the certificate reloads until ctx ends or a part fails. It returns with
// the bot stopped; the listeners are still up.
func (d daemon) serve(ctx context.Context, servers *servers, ls bound, p parts, db *bolt.DB) error {
	d.startServers(servers, ls, p, db)
	log := d.log
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { sweep(bg, p.svc, log) })
	wg.Go(func() { reloadOnHUP(bg, d.hup, ls.cert, log) })
	defer func() { stopBG(); wg.Wait() }()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	botErr := make(chan error, 1)
	go func() { botErr <- p.b.Run(runCtx) }()
	var err error
	select {
	case err = <-botErr:
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = nil // stopped while still connecting: a clean stop all the same
		}
	case err = <-servers.failed:
		cancel()
		<-botErr
	}
	if err != nil {
		return err
	}
	log.Info().Msg("stopped")
	return nil
}

// startServers serves the control socket and each listener of the plan
// with what the plan says it serves, and says where.
func (d daemon) startServers(servers *servers, ls bound, p parts, db *bolt.DB) {
	cfg := d.cfg
	if ls.control != nil {
		servers.serve(ls.control, ls.controlHandler, nil)
	}
	ops := opsHandler(func(ctx context.Context) error {
		if !p.b.Ready() {
			return errors.New("not connected to Slack")
		}
		if _, err := db.CountBindings(ctx); err != nil {
			return errors.New("store not readable")
		}
		return nil
	}, p.mx.handler())
	var callback, opsAddr net.Addr
	for i, l := range ls.plan {
		sv, cert := ls.srv[i], ls.cert
		if l.admin {
			cert = nil
		}
		servers.serve(sv, d.handler(l, p.svc.Handler(), ops), cert)
		if l.callback {
			callback = sv.ln.Addr()
		}
		if l.ops {
			opsAddr = sv.ln.Addr()
		}
	}
	ev := d.log.Info().Str("flow", string(cfg.ConnectFlow)).Bool("require_email_match", cfg.RequireEmailMatch).Bool("tls", ls.tls)
	if callback != nil {
		ev = ev.Str("listen", callback.String()).Str("callback_url", cfg.CallbackURL)
	}
	if opsAddr != nil {
		ev = ev.Str("ops_listen", opsAddr.String())
	}
	ev.Msg("listeners up")
	if d.listening != nil {
		d.listening(callback, opsAddr)
	}
}

// handler is what listener l serves: the callback pages, the operator's
// endpoints, or both.
func (d daemon) handler(l listener, pages, ops http.Handler) http.Handler {
	switch {
	case l.admin && d.cfg.Pprof:
		return withPprof(ops)
	case l.admin:
		return ops
	case !l.ops:
		return pages
	}
	// FORCEBIND_LISTEN serves the operator's endpoints, beside the callback
	// or (in the device flow) alone. Probes skip the Host check, so they
	// can use the address; /metrics keeps it whenever a callback URL names
	// the listener, so a page whose DNS name is rebound to it cannot read
	// org hosts and counts. FORCEBIND_ADMIN_LISTEN scrapes by address.
	mux := http.NewServeMux()
	if l.callback {
		mux.Handle("/", pages)
	}
	for _, path := range opsPaths {
		h := ops
		if path == "/metrics" && d.cfg.CallbackURL != "" {
			h = auth.HostOnly(d.cfg.CallbackURL, metricsRefusal, ops)
		}
		mux.Handle("GET "+path, h)
	}
	return mux
}

// metricsRefusal answers a scrape of /metrics at another Host than the
// callback URL's.
const metricsRefusal = "wrong address: this listener answers /metrics only at its callback URL's host; scrape FORCEBIND_ADMIN_LISTEN to use another"

// reloadOnHUP reloads the TLS certificate on each signal from hup until ctx
// ends. A failed reload keeps the certificate in use.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, cert *auth.Certificate, log zerolog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if cert == nil {
				log.Info().Msg("SIGHUP: no TLS certificate is configured; nothing to reload")
				continue
			}
			// Reload's error names the file and the problem, never key material.
			if err := cert.Reload(); err != nil {
				log.Error().Err(err).Msg("tls certificate reload failed; the one in use is kept")
				continue
			}
			log.Info().Time("not_after", cert.Leaf().NotAfter).Str("serial", cert.Leaf().SerialNumber.String()).Msg("tls certificate reloaded")
		}
	}
}

// sweep removes expired links every sweepEvery until ctx ends.
func sweep(ctx context.Context, svc *auth.Service, log zerolog.Logger) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := svc.Sweep(ctx); err != nil {
				log.Warn().Err(err).Msg("sweep expired links")
			} else if n > 0 {
				log.Info().Int("links", n).Msg("expired links removed")
			}
		}
	}
}

// newHTTPClient is the one pooled client shared by the Slack Web API and
// Salesforce. Go's default keeps 2 idle connections per host, which under
// load means a new TCP (and TLS) connection for almost every call.
func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	t.IdleConnTimeout = 90 * time.Second
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = 45 * time.Second
	// Each call has its own context deadline; this is the backstop.
	return &http.Client{Transport: t, Timeout: 90 * time.Second}
}

// newLogger builds the zerolog logger: JSON by default, console on a
// terminal, as LOG_FORMAT and LOG_LEVEL say.
func newLogger(cfg Config, w io.Writer) zerolog.Logger {
	level, err := zerolog.ParseLevel(strings.ToLower(cfg.LogLevel))
	if err != nil || cfg.LogLevel == "" {
		level = zerolog.InfoLevel
	}
	format := cfg.LogFormat
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = "console"
		}
	}
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// closeWith runs a closer in a defer and keeps its error if there was none.
func closeWith(err *error, what string, close func() error) {
	if cerr := close(); cerr != nil && *err == nil {
		*err = fmt.Errorf("%s: %w", what, cerr)
	}
}
