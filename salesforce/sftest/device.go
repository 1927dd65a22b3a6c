package sftest

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// DeviceCodeLife is how long a device code (and its user code) works, as at
// Salesforce, which does not say so in its answer: there is no expires_in.
const DeviceCodeLife = 10 * time.Minute

// DefaultDeviceInterval is the polling interval, in seconds, the fake
// sends with a device code unless SetDeviceInterval says otherwise.
const DefaultDeviceInterval = 5

// userCodeAlphabet has no 0/O or 1/I, so a code read aloud is typed right.
const userCodeAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// The state of a device code.
type deviceState int

const (
	devicePending deviceState = iota
	deviceApproved
	deviceDenied
)

// deviceCode is one device authorization, from the request until it is
// redeemed (then it is forgotten) or ends.
type deviceCode struct {
	seq      int // order of issue
	code     string
	userCode string
	scope    string
	expires  time.Time
	expired  bool          // ExpireDevice was called
	interval time.Duration // what the client must wait between polls
	lastPoll time.Time     // the request, then each poll
	state    deviceState
	user     User // who approved
}

// deviceAnswer is the token endpoint's answer to a device code request.
type deviceAnswer struct {
	DeviceCode      string `json:"device_code"`
	UserCode        string `json:"user_code"`
	VerificationURI string `json:"verification_uri"`
	Interval        int    `json:"interval,omitempty"`
}

// SetDeviceFlow turns the connected app's device flow on (the default) or
// off. When off, a device code request and a device poll answer 400
// invalid_request, "device flow is not enabled for this connected app";
// codes issued before keep their state for when it is turned on again.
func (s *Server) SetDeviceFlow(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deviceOff = !on
}

// SetDeviceInterval sets the polling interval, in seconds, sent with the
// device codes issued from now on. Zero leaves "interval" out of the answer,
// so a client must assume RFC 8628's 5 seconds.
func (s *Server) SetDeviceInterval(seconds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deviceInterval = max(seconds, 0)
}

// SlowDownNext makes the next n device polls of a live code (pending or
// approved, not denied or expired) answer 400 slow_down, whatever their
// timing. The poll after them is answered normally.
func (s *Server) SlowDownNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slowDown = max(n, 0)
}

// EnforceInterval makes the fake check, when on, the time between polls of
// a device code as Salesforce may: a poll that comes sooner than the
// interval sent with the code (5 seconds when none was sent) after the
// previous poll, or the request, answers slow_down. Off by default, so
// tests do not depend on the wall clock; SlowDownNext is the deterministic
// way to get a slow_down.
func (s *Server) EnforceInterval(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enforceInterval = on
}

// PendingUserCodes returns the user codes waiting for a decision (neither
// approved, denied nor expired), oldest first, so a test can find the code
// a client showed its user.
func (s *Server) PendingUserCodes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var codes []*deviceCode
	for _, dc := range s.devices {
		if dc.state == devicePending && dc.live(now) {
			codes = append(codes, dc)
		}
	}
	slices.SortFunc(codes, func(a, b *deviceCode) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]string, len(codes))
	for i, dc := range codes {
		out[i] = dc.userCode
	}
	return out
}

// ApproveDevice plays the person who types userCode at the verification
// page, signs in as username and allows access: the next poll of the code
// gets tokens for that user. The code must be pending.
func (s *Server) ApproveDevice(userCode, username string) error {
	u, ok := s.org.user(username)
	if !ok {
		return fmt.Errorf("sftest: no fixture user %q", username)
	}
	return s.decideDevice(userCode, deviceApproved, u)
}

// DenyDevice plays the person who types userCode and chooses Deny: polls of
// the code answer access_denied until it expires. The code must be pending.
func (s *Server) DenyDevice(userCode string) error {
	return s.decideDevice(userCode, deviceDenied, User{})
}

// ExpireDevice makes userCode's device code expire now, as if its ten
// minutes had passed: polls answer expired_token. The code must not have
// been redeemed.
func (s *Server) ExpireDevice(userCode string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dc, ok := s.deviceByUserCodeLocked(userCode)
	if !ok {
		return fmt.Errorf("sftest: no device code with user code %q", userCode)
	}
	dc.expired = true
	return nil
}

// SetEmail changes the email address of the fixture user username, as the
// identity URL and userinfo report it.
func (s *Server) SetEmail(username, email string) error {
	u, ok := s.org.user(username)
	if !ok {
		return fmt.Errorf("sftest: no fixture user %q", username)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.emails[u.ID] = email
	return nil
}

// SetEmailVerified sets whether the email address of the fixture user
// username is verified, as the identity URL and userinfo report it in
// email_verified. Every user's is verified until this says otherwise.
func (s *Server) SetEmailVerified(username string, verified bool) error {
	u, ok := s.org.user(username)
	if !ok {
		return fmt.Errorf("sftest: no fixture user %q", username)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if verified {
		delete(s.unverified, u.ID)
	} else {
		s.unverified[u.ID] = true
	}
	return nil
}

// LiveRefreshTokens returns how many refresh tokens still work: issued,
// and neither revoked nor rotated away. A test can check with it that a
// client revoked a grant it did not keep.
func (s *Server) LiveRefreshTokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.refresh)
}

var errDeviceNotPending = errors.New("sftest: device code is not pending")

func (s *Server) decideDevice(userCode string, state deviceState, u User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dc, ok := s.deviceByUserCodeLocked(userCode)
	switch {
	case !ok:
		return fmt.Errorf("sftest: no device code with user code %q", userCode)
	case dc.state != devicePending || !dc.live(time.Now()):
		return fmt.Errorf("%w: %q", errDeviceNotPending, userCode)
	}
	dc.state, dc.user = state, u
	return nil
}

func (s *Server) deviceByUserCodeLocked(userCode string) (*deviceCode, bool) {
	code, ok := s.userCodes[normalUserCode(userCode)]
	if !ok {
		return nil, false
	}
	dc, ok := s.devices[code]
	return dc, ok
}

// normalUserCode lets a user code be typed in any case, with spaces or a
// dash.
func normalUserCode(c string) string {
	return strings.ToUpper(strings.NewReplacer(" ", "", "-", "").Replace(c))
}

func (dc *deviceCode) live(now time.Time) bool { return !dc.expired && now.Before(dc.expires) }

// handleDeviceCode answers a device code request: the token endpoint with
// response_type=device_code, client_id and scope. No secret is asked for,
// as at Salesforce.
func (s *Server) handleDeviceCode(w http.ResponseWriter, f url.Values, clientID string) {
	switch {
	case f.Get("response_type") != "device_code":
		writeOAuthError(w, http.StatusBadRequest, "unsupported_response_type", "response type not supported")
		return
	case clientID != s.opts.ClientID:
		writeOAuthError(w, http.StatusBadRequest, "invalid_client_id", "client identifier invalid")
		return
	}
	scope := f.Get("scope")
	if scope == "" {
		scope = defaultScope
	}
	now := time.Now()
	s.mu.Lock()
	if s.deviceOff {
		s.mu.Unlock()
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "device flow is not enabled for this connected app")
		return
	}
	interval := s.deviceInterval
	if interval == 0 {
		interval = DefaultDeviceInterval // what a client must assume
	}
	s.deviceSeq++
	dc := &deviceCode{
		seq:      s.deviceSeq,
		code:     "Kd9x" + randomToken(48),
		userCode: s.newUserCodeLocked(),
		scope:    scope,
		expires:  now.Add(DeviceCodeLife),
		interval: time.Duration(interval) * time.Second,
		lastPoll: now,
	}
	if s.opts.AutoApprove != "" {
		dc.state, dc.user = deviceApproved, s.mustUser(s.opts.AutoApprove)
	}
	s.devices[dc.code] = dc
	s.userCodes[dc.userCode] = dc.code
	s.issued = append(s.issued, dc.code)
	answer := deviceAnswer{DeviceCode: dc.code, UserCode: dc.userCode, VerificationURI: s.URL + "/setup/connect", Interval: s.deviceInterval}
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, answer)
}

// mustUser returns a fixture user NewServer has already checked exists.
func (s *Server) mustUser(username string) User {
	u, _ := s.org.user(username)
	return u
}

// newUserCodeLocked returns an unused 8-character user code.
func (s *Server) newUserCodeLocked() string {
	b := make([]byte, 8)
	for {
		_, _ = rand.Read(b) // crypto/rand.Read never fails
		for i := range b {
			b[i] = userCodeAlphabet[int(b[i])%len(userCodeAlphabet)] // 256 is a multiple of 32: no bias
		}
		if _, taken := s.userCodes[string(b)]; !taken {
			return string(b)
		}
	}
}

// redeemDevice answers one poll (grant_type=device, code=the device code),
// the client having been checked already.
func (s *Server) redeemDevice(code string) (Grant, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deviceOff {
		return Grant{}, &oauthError{"invalid_request", "device flow is not enabled for this connected app"}
	}
	dc, ok := s.devices[code]
	switch {
	case !ok || code == "":
		return Grant{}, &oauthError{"invalid_grant", "invalid device code"}
	case !dc.live(now):
		return Grant{}, &oauthError{"expired_token", "device code expired"}
	case dc.state == deviceDenied:
		return Grant{}, &oauthError{"access_denied", "end-user denied authorization"}
	}
	early := now.Sub(dc.lastPoll) < dc.interval
	dc.lastPoll = now
	switch {
	case s.slowDown > 0:
		s.slowDown--
		return Grant{}, &oauthError{"slow_down", "polling too frequently"}
	case s.enforceInterval && early:
		return Grant{}, &oauthError{"slow_down", "polling too frequently"}
	case dc.state == devicePending:
		return Grant{}, &oauthError{"authorization_pending", "authorization pending"}
	}
	delete(s.devices, code) // redeemable once
	delete(s.userCodes, dc.userCode)
	return s.issueLocked(dc.user, dc.scope, "", true), nil
}

// handleVerify serves the verification page a device code's user opens:
// GET shows a form (user code, who you are, Allow or Deny), POST applies it.
func (s *Server) handleVerify(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = s.pages.Lookup("connect").Execute(w, struct {
			OrgName  string
			UserCode string
			Users    []User
		}{s.org.name, r.URL.Query().Get("user_code"), s.org.users})
		return
	}
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, "invalid_request", "bad form")
		return
	}
	userCode := r.PostForm.Get("user_code")
	var err error
	if r.PostForm.Get("decision") == "allow" {
		err = s.ApproveDevice(userCode, r.PostForm.Get("username"))
	} else {
		err = s.DenyDevice(userCode)
	}
	if err != nil {
		s.errorPage(w, "invalid_request", "unknown, used or expired code")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("Done. You can close this page and go back to your device.\n"))
}

const connectHTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>Connect a device to {{.OrgName}} (sftest)</title>
<style>body{font-family:sans-serif;max-width:32em;margin:3em auto}label{display:block;margin:.5em 0}</style></head>
<body>
<h1>Connect a device</h1>
<p>This is a fake Salesforce org. Enter the code your device shows, choose who you are, and allow or deny access.</p>
<form method="post" action="/setup/connect">
<label>Code <input name="user_code" value="{{.UserCode}}" autocomplete="off"></label>
{{range $i, $u := .Users}}<label><input type="radio" name="username" value="{{$u.Username}}"{{if eq $i 0}} checked{{end}}> {{$u.DisplayName}} ({{$u.Username}}, {{$u.Profile}})</label>
{{end}}<p><button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button></p>
</form>
</body></html>
`
