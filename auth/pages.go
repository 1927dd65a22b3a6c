package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// HostOnly serves next only to requests whose Host is callbackURL's, as
// the callback listener's own pages are, and answers any other with 421
// Misdirected Request and refusal, in plain text. On the callback
// listener, which browsers reach, a page whose DNS name is rebound to the
// listener's address could otherwise read what next serves (the daemon
// wraps /metrics with it). Default ports compare equal, over https when
// callbackURL is https (a TLS-terminating proxy in front) or the request
// came over TLS. An unparsable callbackURL refuses every request. The
// handler is safe for concurrent use.
func HostOnly(callbackURL, refusal string, next http.Handler) http.Handler {
	var check hostCheck // the zero value refuses everyone
	if u, err := url.Parse(callbackURL); err == nil && u.Host != "" {
		check = newHostCheck(u)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !check.allows(r) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusMisdirectedRequest)
			fmt.Fprintln(w, refusal)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostCheck is the callback listener's Host check: the callback URL's
// host[:port], with its default port made explicit. The zero value allows
// no request.
type hostCheck struct {
	host  string // lower case host:port; "" allows nothing
	https bool   // the callback URL is https
}

func newHostCheck(callback *url.URL) hostCheck {
	if callback.Host == "" {
		return hostCheck{}
	}
	return hostCheck{host: strings.ToLower(hostPort(callback)), https: strings.EqualFold(callback.Scheme, "https")}
}

// allows compares the request's Host with the callback URL's, with
// default ports made explicit.
func (c hostCheck) allows(r *http.Request) bool {
	scheme := "http"
	if c.https || r.TLS != nil {
		scheme = "https" // behind a TLS-terminating proxy, or over TLS itself
	}
	return c.host != "" && strings.EqualFold(hostPort(&url.URL{Scheme: scheme, Host: r.Host}), c.host)
}

// pages renders the listener's HTML and applies its security headers. The
// pages use no JavaScript and no third-party assets; the one stylesheet is
// inline and allowed by its hash.
type pages struct {
	hosts  hostCheck // the only Host served
	origin string    // scheme://host of the callback URL
	csp    string
	tmpl   *template.Template
}

// style is the pages' whole stylesheet; its hash goes into the CSP.
const style = `body{font:16px/1.5 system-ui,sans-serif;max-width:34em;margin:3em auto;padding:0 1em;color:#1b1b1b}` +
	`h1{font-size:1.4em}.who{background:#f4f6f8;border-radius:6px;padding:.8em 1em}` +
	`button{font-size:1em;padding:.5em 1.4em;margin-right:.6em;border-radius:6px;border:1px solid #888;cursor:pointer}` +
	`button.ok{background:#0b5cad;color:#fff;border-color:#0b5cad}small{color:#555}`

const layout = `{{define "head"}}<!doctype html><html lang="en"><head><meta charset="utf-8">` +
	`<meta name="viewport" content="width=device-width,initial-scale=1"><title>{{.}} · forcebind</title>` +
	`<style>` + style + `</style></head><body>{{end}}` +
	`{{define "problem"}}{{template "head" .Title}}<h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>{{end}}` +
	`{{define "confirm"}}{{template "head" "Confirm"}}<h1>Link these accounts?</h1>` +
	`<p class="who">Salesforce user <b>{{.SFUsername}}</b>{{if .SFDisplayName}} ({{.SFDisplayName}}){{end}}, org <code>{{.SFOrg}}</code></p>` +
	`<p>will act for</p><p class="who">Slack user <b>{{.SlackUser}}</b> (member ID <code>{{.SlackUserID}}</code>) in workspace <b>{{.SlackTeam}}</b></p>` +
	`<p><small>Display names are not unique: the member ID is in your Slack profile under ⋮ → Copy member ID.</small></p>` +
	`<p>Whoever uses forcebind as that Slack user will see and do in Salesforce what <b>{{.SFUsername}}</b> may. ` +
	`Only confirm if both are you. If someone sent you this link, choose Cancel.</p>` +
	`<form method="post" action="/oauth/confirm"><input type="hidden" name="token" value="{{.Token}}">` +
	`<button class="ok" type="submit" name="decision" value="confirm">Confirm</button>` +
	`<button type="submit" name="decision" value="cancel">Cancel</button></form>` +
	`<p><small>This page works until {{.Expires.Format "15:04 MST"}}.</small></p></body></html>{{end}}` +
	`{{define "done"}}{{template "head" "Connected"}}<h1>Connected</h1>` +
	`<p>Slack user <b>{{.SlackUser}}</b> in <b>{{.SlackTeam}}</b> now works with Salesforce as <b>{{.SFUsername}}</b>.</p>` +
	`<p>You can close this tab and go back to Slack. To undo it, send @forcebind “disconnect”.</p></body></html>{{end}}`

type problemView struct{ Title, Text string }

type confirmView struct {
	Token                             string
	SFUsername, SFDisplayName, SFOrg  string
	SlackUser, SlackUserID, SlackTeam string
	Expires                           time.Time
}

type doneView struct{ SFUsername, SlackUser, SlackTeam string }

func newPages(callback *url.URL) pages {
	sum := sha256.Sum256([]byte(style))
	return pages{
		hosts:  newHostCheck(callback),
		origin: strings.ToLower(callback.Scheme + "://" + callback.Host),
		csp: "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
			"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		tmpl: template.Must(template.New("pages").Parse(layout)),
	}
}

// secure wraps the routes with the Host check and the security headers.
func (p pages) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", p.csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		if r.URL.Path != "/healthz" && !p.hosts.allows(r) {
			p.problem(w, http.StatusMisdirectedRequest, "Wrong address", "This server answers only at its callback address.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sameOriginPost refuses a cross-site form post. Browsers send
// Sec-Fetch-Site on POST; under Referrer-Policy: no-referrer they send
// "Origin: null" even for a same-origin form, so "null" counts as not said.
// A request with neither header is a non-browser client, which still needs
// the one-time token.
func (p pages) sameOriginPost(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin":
		return true
	case "", "none":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	return o == "" || o == "null" || strings.EqualFold(o, p.origin)
}

// view is one page to answer with: a template, its data and the status.
// It holds nothing secret but a confirmView's one-time token, so a view of
// another template may be kept and shown again.
type view struct {
	status int
	name   string
	data   any
}

// problemPage is the page that says why something did not happen. title
// and text are forcebind's own words (with names Salesforce or Slack gave),
// never text from the request.
func problemPage(status int, title, text string) view {
	return view{status: status, name: "problem", data: problemView{Title: title, Text: text}}
}

func confirmPage(v confirmView) view { return view{status: http.StatusOK, name: "confirm", data: v} }

func donePage(v doneView) view { return view{status: http.StatusOK, name: "done", data: v} }

func (p pages) problem(w http.ResponseWriter, status int, title, text string) {
	p.show(w, problemPage(status, title, text))
}

func (p pages) show(w http.ResponseWriter, v view) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(v.status)
	_ = p.tmpl.ExecuteTemplate(w, v.name, v.data) // the templates are fixed; a write error means the browser left
}
