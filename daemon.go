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
	"github.com/forcebind/forcebind/store"
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

// daemon is forcebind's parts, wired. Tests and the demo build one with
// their own Config and logger; `forcebind run` builds one from the
// environment.
type daemon struct {
	cfg Config
	log zerolog.Logger
	// botTuning lets the demo and tests shorten the bot's timeouts.
	botTuning func(*bot.Config)
	// listening, if set, is told the listeners' addresses once bound: the
	// callback listener's (nil in the device flow) and the one serving
	// /readyz and /metrics (the same one unless FORCEBIND_ADMIN_LISTEN is set).
	listening func(callback, admin net.Addr)
	// hup delivers SIGHUP, which reloads the TLS certificate.
	hup <-chan os.Signal
	// freeSpace, if set, replaces statfs for the control socket's check
	// that a backup's snapshot fits beside the store.
	freeSpace func(dir string) (uint64, error)
}

// run starts every part, blocks until ctx ends or a part fails, and closes
// them in reverse order. A configuration or start-up error (a wrong key, a
// taken port, Slack refusing the tokens) returns before anything is left
// running.
func (d daemon) run(ctx context.Context) (err error) {
	cfg, log := d.cfg, d.log
	ring, err := cfg.keyring()
	if err != nil {
		return usageError{err}
	}
	db, err := store.Open(cfg.DB, store.Options{Keyring: ring})
	if err != nil {
		return fmt.Errorf("open store %s: %w", cfg.DB, err)
	}
	defer closeWith(&err, "close store", db.Close)
	n, err := db.CountBindings(ctx)
	if err != nil {
		return fmt.Errorf("read store: %w", err)
	}
	log.Info().Str("db", cfg.DB).Str("key_id", ring.PrimaryID()).Int("bindings", n).Msg("store open")

	var cert *auth.Certificate
	if cfg.TLSCertFile != "" {
		if cert, err = auth.LoadCertificate(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return usageError{err}
		}
		log.Info().Time("not_after", cert.Leaf().NotAfter).Strs("names", cert.Leaf().DNSNames).Msg("tls certificate loaded")
	}

	// Everything is bound before anything talks to Slack, so a taken port
	// fails at once. Every server, once started, is shut down by servers
	// after the bot has stopped (deferred calls run last-first).
	servers := newServers(log)
	defer servers.shutdown(10 * time.Second)
	// Without the control socket forcebind works; only hot backups do not.
	if ctl, err := listenControl(controlSocketPath(cfg.DB), controlConfig{db: db, log: log, freeSpace: d.freeSpace}); err != nil {
		log.Error().Err(err).Msg("no control socket: `forcebind backup` will not work while the daemon runs")
	} else {
		servers.start("control socket", ctl.serve, ctl.shutdown)
	}
	web := cfg.ConnectFlow != auth.FlowDevice
	var main, admin *auth.Server
	if web || cfg.AdminListen == "" {
		if main, err = auth.Listen(cfg.Listen); err != nil {
			return fmt.Errorf("listener %s: %w", cfg.Listen, err)
		}
	}
	if cfg.AdminListen != "" {
		if admin, err = auth.Listen(cfg.AdminListen); err != nil {
			if main != nil {
				_ = main.Shutdown(context.Background())
			}
			return fmt.Errorf("admin listener %s: %w", cfg.AdminListen, err)
		}
	}
	if cert != nil && main == nil {
		log.Warn().Msg("FORCEBIND_TLS_CERT_FILE is set, but in the device flow with FORCEBIND_ADMIN_LISTEN no listener uses it (the admin listener is plain HTTP)")
	}
	if web && cfg.CallbackURL == "" {
		// Only the demo and tests leave it empty, with a port chosen at bind time.
		scheme := "http"
		if cert != nil {
			scheme = "https"
		}
		cfg.CallbackURL = scheme + "://" + main.Addr().String() + "/oauth/callback"
	}

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
	svc, err := auth.New(auth.Config{
		ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, LoginURL: cfg.LoginURL,
		CallbackURL: cfg.CallbackURL, APIVersion: cfg.APIVersion, LinkTTL: cfg.LinkTTL,
		Flow: cfg.ConnectFlow, RequireEmailMatch: cfg.RequireEmailMatch,
		AllowedOrgIDs: cfg.AllowedOrgIDs, AllowCustomLoginHost: cfg.AllowCustomLoginHost,
		Store: db, Notifier: msgs, HTTPClient: hc, Logger: log,
		Observer: mx, APIObserver: mx,
	})
	if err != nil {
		shutdownAll(main, admin)
		return usageError{err}
	}
	bc := bot.Config{API: api, APIURL: cfg.SlackAPIURL, Auth: svc, Messages: msgs, Logger: log, Observer: mx}
	if d.botTuning != nil {
		d.botTuning(&bc)
	}
	b, err := bot.New(bc)
	if err != nil {
		shutdownAll(main, admin)
		return err
	}

	ops := opsHandler(func(ctx context.Context) error {
		if !b.Ready() {
			return errors.New("not connected to Slack")
		}
		if _, err := db.CountBindings(ctx); err != nil {
			return errors.New("store not readable")
		}
		return nil
	}, mx.handler())
	var callback, opsAddr net.Addr
	switch {
	case main != nil && web && admin == nil:
		mux := http.NewServeMux()
		mux.Handle("/", svc.Handler())
		// Probes skip the Host check, so they can use the address; /metrics
		// keeps it (see hostOnly), and FORCEBIND_ADMIN_LISTEN scrapes by address.
		for _, p := range opsPaths {
			h := ops
			if p == "/metrics" {
				h = hostOnly(cfg.CallbackURL, ops)
			}
			mux.Handle("GET "+p, h)
		}
		callback, opsAddr = main.Addr(), main.Addr()
		servers.startHTTP("callback listener", main, mux, cert)
	case main != nil && web:
		callback = main.Addr()
		servers.startHTTP("callback listener", main, svc.Handler(), cert)
	case main != nil:
		opsAddr = main.Addr()
		servers.startHTTP("listener", main, ops, cert)
	}
	if admin != nil {
		opsAddr = admin.Addr()
		adminOps := ops
		if cfg.Pprof {
			adminOps = withPprof(ops)
		}
		servers.startHTTP("admin listener", admin, adminOps, nil)
	}
	ev := log.Info().Str("flow", string(cfg.ConnectFlow)).Bool("require_email_match", cfg.RequireEmailMatch).Bool("tls", cert != nil && main != nil)
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

	// Deferred calls run last-first: this one runs once the bot has stopped,
	// before the listeners shut down and the store closes.
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if cerr := svc.Close(cctx); cerr != nil {
			log.Error().Err(cerr).Msg("stopping with a refresh unfinished; its user may have to connect again")
		}
	}()
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { sweep(bg, svc, log) })
	wg.Go(func() { reloadOnHUP(bg, d.hup, cert, log) })
	defer func() { stopBG(); wg.Wait() }()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	botErr := make(chan error, 1)
	go func() { botErr <- b.Run(runCtx) }()
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

// shutdownAll closes listeners that were bound but never served.
func shutdownAll(ss ...*auth.Server) {
	for _, s := range ss {
		if s != nil {
			_ = s.Shutdown(context.Background())
		}
	}
}

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
