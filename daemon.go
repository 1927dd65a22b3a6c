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
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/slack-go/slack"

	"github.com/forcebind/forcebind/auth"
	"github.com/forcebind/forcebind/bot"
	"github.com/forcebind/forcebind/store"
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
	// listening, if set, is told the callback listener's address once bound.
	listening func(net.Addr)
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

	// Listen before anything talks to Slack, so a taken port fails at once.
	srv, err := auth.Listen(cfg.Listen)
	if err != nil {
		return err
	}
	if cfg.CallbackURL == "" {
		// Only the demo and tests leave it empty, with a port chosen at bind time.
		cfg.CallbackURL = "http://" + srv.Addr().String() + "/oauth/callback"
	}
	if d.listening != nil {
		d.listening(srv.Addr())
	}

	hc := newHTTPClient()
	api := slack.New(cfg.SlackBotToken,
		slack.OptionAppLevelToken(cfg.SlackAppToken),
		slack.OptionAPIURL(cfg.SlackAPIURL),
		slack.OptionHTTPClient(hc),
	)
	msgs := bot.NewMessenger(api, hc, log)
	svc, err := auth.New(auth.Config{
		ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, LoginURL: cfg.LoginURL,
		CallbackURL: cfg.CallbackURL, APIVersion: cfg.APIVersion, LinkTTL: cfg.LinkTTL,
		Store: db, Notifier: msgs, HTTPClient: hc, Logger: log,
	})
	if err != nil {
		_ = srv.Shutdown(context.Background())
		return usageError{err}
	}
	var serveErr error
	served := make(chan struct{}) // closed when Serve returns; serveErr is then set
	go func() { serveErr = srv.Serve(svc.Handler()); close(served) }()
	log.Info().Str("listen", srv.Addr().String()).Str("callback_url", cfg.CallbackURL).Msg("callback listener up")
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if serr := srv.Shutdown(sctx); serr != nil {
			log.Warn().Err(serr).Msg("callback listener shutdown")
		}
		<-served
	}()

	// Deferred calls run last-first: this one runs once the bot has stopped,
	// before the listener shuts down and the store closes.
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if cerr := svc.Close(cctx); cerr != nil {
			log.Error().Err(cerr).Msg("stopping with a refresh unfinished; its user may have to connect again")
		}
	}()
	sweepCtx, stopSweep := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() { defer close(swept); sweep(sweepCtx, svc, log) }()
	defer func() { stopSweep(); <-swept }()

	bc := bot.Config{API: api, Auth: svc, Messages: msgs, Logger: log}
	if d.botTuning != nil {
		d.botTuning(&bc)
	}
	b, err := bot.New(bc)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	botErr := make(chan error, 1)
	go func() { botErr <- b.Run(runCtx) }()
	select {
	case err = <-botErr:
	case <-served:
		cancel()
		<-botErr
		err = serveErr
		if err == nil {
			err = errors.New("callback listener stopped")
		}
	}
	if err != nil {
		return err
	}
	log.Info().Msg("stopped")
	return nil
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
