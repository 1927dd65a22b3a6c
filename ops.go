package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"
	"time"
)

// opsPaths are the operator's endpoints: alive, ready, and metrics.
var opsPaths = []string{"/healthz", "/readyz", "/metrics"}

// opsHandler serves /healthz (the process answers), /readyz (ready reports
// nil: Socket Mode is connected and the store is readable) and /metrics.
// A nil metrics handler answers 404.
func opsHandler(ready func(context.Context) error, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			plain(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
		plain(w, http.StatusOK, "ready")
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}

// withPprof adds net/http/pprof's handlers under /debug/pprof/ to ops. It
// is for the admin listener only: the callback listener is reachable by
// browsers, and a profile both reveals code paths and costs CPU.
func withPprof(ops http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", ops)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// hostOnly serves h only to requests whose Host is the callback URL's,
// as the OAuth pages do. On the callback listener, which browsers reach, a
// page whose DNS name is rebound to the listener's address could otherwise
// read /metrics (org hosts, counts) from inside the network. The scheme of
// the comparison is https when the callback URL's is (a TLS-terminating
// proxy in front), so default ports compare equal.
func hostOnly(callbackURL string, h http.Handler) http.Handler {
	want := "" // an unparsable callback URL refuses everyone
	https := false
	if u, err := url.Parse(callbackURL); err == nil && u.Host != "" {
		https = strings.EqualFold(u.Scheme, "https")
		want = hostPort(u.Scheme, u.Host)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme := "http"
		if https || r.TLS != nil {
			scheme = "https"
		}
		if want == "" || !strings.EqualFold(hostPort(scheme, r.Host), want) {
			plain(w, http.StatusMisdirectedRequest, "wrong address: this listener answers only at its callback address; scrape FORCEBIND_ADMIN_LISTEN to use another")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostPort is host with the scheme's default port made explicit, so that
// "h" and "h:443" compare equal over https.
func hostPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	port := "80"
	if strings.EqualFold(scheme, "https") {
		port = "443"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

func plain(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintln(w, text)
}
