package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/forcebind/forcebind/auth"
	"github.com/forcebind/forcebind/bot"
	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
)

// `forcebind doctor` checks a deployment the way `forcebind run` would use
// it, but reports every problem as a line of a checklist instead of
// stopping at the first one, and changes nothing: the store is opened
// read-only (and not at all when it is missing or a daemon holds it), no
// listener is kept, and the Salesforce and Slack calls are ones that do not
// create anything a person could use. Each probe belongs to the package
// that speaks the protocol (auth.Probe, bot.Probe) and reads the answer as
// `forcebind run` would; doctor holds the list of checks and the fixes,
// which name the settings.

const (
	// defaultDoctorTimeout bounds each network check.
	defaultDoctorTimeout = 10 * time.Second
	// doctorLockTimeout is how long the store check waits for a lock
	// before concluding that a running forcebind holds the file.
	doctorLockTimeout = time.Second
	// certWarnBefore is how long before its expiry a TLS certificate is
	// reported.
	certWarnBefore = 14 * 24 * time.Hour
)

// doctor holds what the checks share. It is used by one goroutine.
type doctor struct {
	cfg Config
	// problems are the configuration problems parseConfig would have
	// refused; cfg holds whatever could be read all the same.
	problems []string
	// timeout bounds each network check.
	timeout time.Duration
	// lockTimeout is how long the store check waits for the file's lock.
	lockTimeout time.Duration
	hc          *http.Client
	now         func() time.Time
}

// runDoctor is `forcebind doctor`: it prints the checklist to stdout and
// returns an error (exit 1) when a check failed. Bad flags are a usage
// error (exit 2).
func runDoctor(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, problems, timeout, err := parseDoctorConfig(args, getenv, stderr)
	if err != nil {
		return configError(err)
	}
	hc := newHTTPClient()
	hc.Timeout = timeout
	// The keep-alive connections would outlive the command otherwise.
	defer hc.CloseIdleConnections()
	d := doctor{cfg: cfg, problems: problems, timeout: timeout, lockTimeout: doctorLockTimeout, hc: hc, now: time.Now}
	results := d.run(ctx)
	if n := writeChecklist(stdout, results, secretsOf(cfg)); n > 0 {
		return fmt.Errorf("doctor: %d of %d checks failed", n, len(results))
	}
	return nil
}

// parseDoctorConfig reads the settings `forcebind run` reads, the same way
// parseConfig does, but returns the configuration problems as a list
// instead of an error, together with whatever could be read. Only a bad
// flag or a stray argument is an error.
func parseDoctorConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, []string, time.Duration, error) {
	var cfg Config
	flags := flag.NewFlagSet("doctor", flag.ContinueOnError)
	flags.SetOutput(stderr)
	timeout := flags.Duration("timeout", defaultDoctorTimeout, "bound on each network check")
	finish := bindConfig(flags, &cfg, getenv, groupLog, groupStore, groupSlack, groupSalesforce, groupListen)
	if err := flags.Parse(args); err != nil {
		return Config{}, nil, 0, err
	}
	if flags.NArg() > 0 {
		return Config{}, nil, 0, fmt.Errorf("doctor: unexpected arguments %q", flags.Args())
	}
	if *timeout <= 0 {
		return Config{}, nil, 0, fmt.Errorf("doctor: -timeout %s is not positive", *timeout)
	}
	return cfg, finish(), *timeout, nil
}

// run runs every check in order and returns their results. Checks that
// depend on an earlier one (the store on the keyring, the Salesforce
// client on the host answering) are skipped when it failed.
func (d doctor) run(ctx context.Context) []checkResult {
	var rs []checkResult
	rs = append(rs, d.checkConfig()...)
	ring, r := d.checkKey()
	rs = append(rs, r)
	rs = append(rs, d.checkStore(ctx, ring))
	if d.cfg.DB != "" {
		rs = append(rs, checkBackupSocket(controlSocketPath(d.cfg.DB)))
	}
	rs = append(rs, d.checkSlack(ctx)...)
	rs = append(rs, d.checkSalesforce(ctx)...)
	rs = append(rs, d.checkCallback()...)
	rs = append(rs, d.checkListen()...)
	return rs
}

// web reports whether people connect with the web server flow, which needs
// the callback URL. An unreadable FORCEBIND_CONNECT_FLOW counts as web, the
// default, as in listenerPlan.
func (d doctor) web() bool { return d.cfg.ConnectFlow != auth.FlowDevice }

// checkConfig reports each configuration problem on its own line.
func (d doctor) checkConfig() []checkResult {
	const name = "configuration"
	if len(d.problems) == 0 {
		flow := d.cfg.ConnectFlow
		return []checkResult{passed(name, "every setting is valid (%s flow)", flow)}
	}
	rs := make([]checkResult, 0, len(d.problems))
	for _, p := range d.problems {
		rs = append(rs, failed(name, p, configFix(p)))
	}
	return rs
}

// configFixes are the fixes for configuration problems, by the first
// setting a problem names. Longer names come first, so FORCEBIND_KEY_FILE
// is not taken for FORCEBIND_KEY.
var configFixes = []struct{ setting, fix string }{
	{"FORCEBIND_KEY_FILE", "create a key with 'forcebind key generate > forcebind.key && chmod 600 forcebind.key' and set FORCEBIND_KEY_FILE to its path (or FORCEBIND_KEY to the key), not both"},
	{"FORCEBIND_KEY", "create a key with 'forcebind key generate > forcebind.key && chmod 600 forcebind.key' and set FORCEBIND_KEY_FILE to its path (or FORCEBIND_KEY to the key), not both"},
	{"SLACK_APP_TOKEN", "set SLACK_APP_TOKEN to the app-level token (api.slack.com → Your Apps → Basic Information → App-Level Tokens, scope connections:write)"},
	{"SLACK_BOT_TOKEN", "set SLACK_BOT_TOKEN to the Bot User OAuth Token (api.slack.com → Your Apps → OAuth & Permissions)"},
	{"SLACK_API_URL", "leave SLACK_API_URL unset (https://slack.com/api/) unless you route Slack through a proxy"},
	{"SALESFORCE_CLIENT_ID", "set SALESFORCE_CLIENT_ID to the connected app's Consumer Key (see docs/salesforce-setup.md)"},
	{"SALESFORCE_LOGIN_URL", "set SALESFORCE_LOGIN_URL to https://login.salesforce.com, https://test.salesforce.com or your My Domain URL, with no path"},
	{"FORCEBIND_CALLBACK_URL", "set FORCEBIND_CALLBACK_URL to the connected app's callback URL, ending in " + auth.CallbackPath + ": https, or http only on localhost"},
	{"FORCEBIND_ALLOWED_ORG_IDS", "set FORCEBIND_ALLOWED_ORG_IDS to org ids separated by commas, as Setup → Company Information shows them (00D…), or leave it empty for any org"},
	{"FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST", "set FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST to true or false"},
	{"FORCEBIND_TLS_CERT_FILE", "set both FORCEBIND_TLS_CERT_FILE and FORCEBIND_TLS_KEY_FILE, or neither"},
}

// configFix returns the fix line for a configuration problem.
func configFix(problem string) string {
	at, fix := len(problem), ""
	for _, f := range configFixes {
		if i := strings.Index(problem, f.setting); i >= 0 && i < at {
			at, fix = i, f.fix
		}
	}
	if fix != "" {
		return fix
	}
	return "correct the value in the environment or with its flag ('forcebind doctor -h' lists them)"
}

// checkKey loads the keyring.
func (d doctor) checkKey() (*store.Keyring, checkResult) {
	const name = "key"
	c := d.cfg
	if (c.KeyFile == "") == (c.Key == "") {
		return nil, skipped(name, "no single key setting (see configuration)")
	}
	ring, err := c.keyring()
	if err == nil {
		from := "FORCEBIND_KEY"
		if c.KeyFile != "" {
			from = c.KeyFile
		}
		return ring, passed(name, "keyring from %s loads; primary key id %s", from, ring.PrimaryID())
	}
	// The keyring's errors name the variable, the file and the line, never
	// key material.
	return nil, failed(name, err.Error(), keyFix(c.KeyFile, err))
}

// keyFix returns the fix for a keyring that does not load.
func keyFix(file string, err error) string {
	const format = "each line must be the base64 of 32 bytes, as 'forcebind key generate' prints it"
	if file == "" {
		return "FORCEBIND_KEY must be comma-separated keys; " + format
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("create it: forcebind key generate > %s && chmod 600 %s", file, file)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf("make %s readable by the user forcebind runs as (and by nobody else)", file)
	}
	if fi, serr := os.Stat(file); serr == nil && fi.Mode().Perm()&0o077 != 0 {
		if strings.HasPrefix(file, "/run/credentials/") {
			// systemd grants a non-root service read access to a credential
			// with an ACL, whose mask shows as group bits (mode 0440).
			return "a systemd credential read by a non-root service shows as mode 0440; copy it to a 0600 file first, as deploy/forcebind.service does"
		}
		return fmt.Sprintf("chmod 600 %s (and make the user forcebind runs as its owner)", file)
	}
	return format
}

// checkStore opens the store read-only and counts its bindings. A missing
// file is not created; a file a running daemon holds is not waited for.
func (d doctor) checkStore(ctx context.Context, ring *store.Keyring) checkResult {
	const name = "store"
	path := d.cfg.DB
	switch {
	case path == "":
		return skipped(name, "FORCEBIND_DB is empty (see configuration)")
	case ring == nil:
		return skipped(name, "%s not opened: no usable key", path)
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		dir := filepath.Dir(path)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return failed(name, fmt.Sprintf("%s does not exist, nor does its directory %s", path, dir),
				fmt.Sprintf("create %s, writable by the user forcebind runs as, or point FORCEBIND_DB elsewhere", dir))
		}
		return warned(name, "%s does not exist yet; it will be created on first run", path)
	} else if err != nil {
		return failed(name, err.Error(), "make the file and its directory readable by the user forcebind runs as")
	}
	db, err := bolt.Open(path, bolt.Options{Keyring: ring, ReadOnly: true, LockTimeout: d.lockTimeout})
	var missing *store.MissingKeysError
	if errors.As(err, &missing) {
		return failed(name, fmt.Sprintf("%s: %s", path, missing.Problem()), missing.Fix())
	}
	if err != nil {
		return storeFailure(path, err)
	}
	n, err := db.CountBindings(ctx)
	var sealed []store.KeyRecords
	if err == nil {
		sealed, err = db.SealedBy(ctx)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return failed(name, fmt.Sprintf("read %s: %v", path, err), "restore the file from a backup (with forcebind stopped)")
	}
	detail := fmt.Sprintf("%s opens with the keyring; %d %s", path, n, plural(n, "binding", "bindings"))
	if w := sealedWarning(sealed, ring); w != "" {
		return warned(name, "%s, but %s", detail, w)
	}
	return passed(name, "%s", detail)
}

// storeFailure turns an error of bolt.Open into a checklist line.
func storeFailure(path string, err error) checkResult {
	const name = "store"
	switch {
	case errors.Is(err, store.ErrLocked):
		return warned(name, "%s is in use by a running forcebind; not opened", path)
	case errors.Is(err, store.ErrWrongKey):
		return failed(name, err.Error(),
			"use the key the store was sealed with; after adding a new key, keep the old one below it until 'forcebind key rotate' has run")
	case errors.Is(err, store.ErrSchema):
		return failed(name, err.Error(), "run the forcebind version that wrote the file, or a newer one")
	case errors.Is(err, store.ErrCorrupt):
		return failed(name, err.Error(), fmt.Sprintf(
			"with forcebind stopped, restore %s from a backup ('forcebind backup' makes them); moving it aside starts an empty store, and everyone connects again", path))
	case errors.Is(err, fs.ErrPermission):
		return failed(name, err.Error(), "run doctor as the user forcebind runs as: the store is mode 0600")
	}
	return failed(name, err.Error(), "check that FORCEBIND_DB names a forcebind store")
}

// sealedWarning describes records that a rotation has not moved to the
// primary key, or that are too damaged to name a key; "" when there are
// none. Such records are why a key may not yet leave the ring.
func sealedWarning(sealed []store.KeyRecords, ring *store.Keyring) string {
	var parts []string
	for _, r := range sealed {
		switch {
		case r.KeyID == ring.PrimaryID():
		case r.KeyID == "":
			parts = append(parts, fmt.Sprintf("%s too damaged to name a key (they do not open; 'forcebind key rotate -drop-unopenable' deletes them)", r))
		default:
			parts = append(parts, fmt.Sprintf("%s still sealed under key id %s, not the primary (run 'forcebind key rotate' before removing that key)", r, r.KeyID))
		}
	}
	return strings.Join(parts, "; ")
}

// checkBackupSocket checks that the daemon can make its control socket, the
// way `forcebind backup` reaches it while it runs: the path fits a unix
// socket, and the store's directory exists to hold it.
func checkBackupSocket(path string) checkResult {
	const name = "backup socket"
	if len(path) > maxSocketPath {
		return warned(name, "%s is longer than %d bytes, so the daemon cannot make it and `forcebind backup` will work only while the daemon is stopped; use a shorter FORCEBIND_DB path", path, maxSocketPath)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return skipped(name, "the store's directory is missing (see store)")
	}
	return passed(name, "%s: hot backups reach the running daemon here", path)
}

// checkSlack checks the bot token and the app-level token with bot.Probe,
// which dials no websocket.
func (d doctor) checkSlack(ctx context.Context) []checkResult {
	const botName, appName = "slack bot token", "slack app token"
	c := d.cfg
	// Tokens go only where `forcebind run` would send them: https, or
	// http on a loopback host.
	u, err := url.Parse(c.SlackAPIURL)
	if err != nil || u.Host == "" || !salesforce.SecureScheme(u) {
		return []checkResult{skipped(botName, "SLACK_API_URL unusable (see configuration)"), skipped(appName, "SLACK_API_URL unusable (see configuration)")}
	}
	probe := bot.NewProbe(bot.APIConfig{BotToken: c.SlackBotToken, AppToken: c.SlackAppToken, URL: c.SlackAPIURL, HTTPClient: d.hc}, d.timeout)
	var rs []checkResult
	if !strings.HasPrefix(c.SlackBotToken, "xoxb-") {
		rs = append(rs, skipped(botName, "no bot token (see configuration)"))
	} else if who, err := probe.BotToken(ctx); err != nil {
		rs = append(rs, slackFailure(botName, err, d.timeout))
	} else {
		rs = append(rs, passed(botName, "workspace %s (%s), bot user %s (%s)", who.Team, who.TeamID, who.User, who.UserID),
			scopesVerdict(who, c.RequireEmailMatch))
	}
	if !strings.HasPrefix(c.SlackAppToken, "xapp-") {
		rs = append(rs, skipped(appName, "no app-level token (see configuration)"))
	} else if err := probe.AppToken(ctx); err != nil {
		rs = append(rs, slackFailure(appName, err, d.timeout))
	} else {
		rs = append(rs, passed(appName, "apps.connections.open accepts it: Socket Mode is on"))
	}
	return rs
}

// scopesVerdict compares the bot token's scopes with those forcebind uses.
// The email scope matters only with the email check on: without it Slack
// leaves emails out, and every link would fail.
func scopesVerdict(who bot.BotUser, emailMatch bool) checkResult {
	const name = "slack scopes"
	if who.Scopes == nil {
		return warned(name, "Slack did not name the bot token's scopes (X-OAuth-Scopes); compare them with slack-app-manifest.yaml by hand")
	}
	var missing, optional []string
	for _, s := range who.Missing() {
		if s == bot.EmailScope && !emailMatch {
			optional = append(optional, s)
		} else {
			missing = append(missing, s)
		}
	}
	fix := "add them to the app (slack-app-manifest.yaml lists every scope), then reinstall it to the workspace: the bot token keeps its scopes until then"
	switch {
	case len(missing) > 0:
		return failed(name, "the bot token lacks "+strings.Join(missing, ", "), fix)
	case len(optional) > 0:
		return warned(name, "the bot token lacks %s, which FORCEBIND_REQUIRE_EMAIL_MATCH needs (it is off)", strings.Join(optional, ", "))
	}
	return passed(name, "the bot token has every scope forcebind uses")
}

// slackFixes are the fixes for Slack's error codes, for the bot token and
// the app-level token.
var slackFixes = map[string][2]string{
	"invalid_auth": {
		"copy the Bot User OAuth Token (xoxb-) again from api.slack.com → Your Apps → OAuth & Permissions",
		"create an app-level token with scope connections:write (Basic Information → App-Level Tokens) and set SLACK_APP_TOKEN to it",
	},
	"not_authed": {
		"set SLACK_BOT_TOKEN; if a proxy is in the way, make it pass the Authorization header",
		"set SLACK_APP_TOKEN; if a proxy is in the way, make it pass the Authorization header",
	},
	"token_revoked": {
		"the app was uninstalled or its token revoked: install the app to the workspace again and set the new bot token",
		"the app-level token was revoked: generate a new one (connections:write) and set SLACK_APP_TOKEN",
	},
	"token_expired": {
		"token rotation is on for this app and forcebind needs long-lived tokens: turn rotation off (OAuth & Permissions) and reinstall",
		"the app-level token expired: generate a new one (connections:write) and set SLACK_APP_TOKEN",
	},
	"account_inactive": {
		"the app's bot user or the workspace is deactivated: install the app again, or ask a workspace admin",
		"the app's bot user or the workspace is deactivated: install the app again, or ask a workspace admin",
	},
	"missing_scope": {
		"add the missing scope (slack-app-manifest.yaml lists them) and reinstall the app",
		"the app-level token needs the scope connections:write: generate one with it",
	},
	"not_allowed_token_type": {
		"SLACK_BOT_TOKEN must be the Bot User OAuth Token (xoxb-), not a user or app-level token",
		"SLACK_APP_TOKEN must be an app-level token (xapp-) with connections:write, not the bot token",
	},
	"app_uninstalled": {
		"install the app to the workspace again and set the new bot token",
		"install the app to the workspace again",
	},
	"team_disabled": {
		"the workspace is disabled; nothing forcebind can do",
		"the workspace is disabled; nothing forcebind can do",
	},
}

// slackFailure turns a failed bot.Probe call into a checklist line. Its
// error names the method and what Slack answered, never the token.
func slackFailure(name string, err error, timeout time.Duration) checkResult {
	var ce *bot.CallError
	if !errors.As(err, &ce) {
		return failed(name, networkProblem(err, timeout), "check outbound HTTPS to slack.com (firewall, HTTPS_PROXY) and SLACK_API_URL")
	}
	app := 0
	if ce.Method == "apps.connections.open" {
		app = 1
	}
	switch {
	case ce.Status == http.StatusTooManyRequests:
		return warned(name, "%s: Slack is rate limiting; retry in %s", ce.Method, ce.RetryAfter)
	case ce.Code != "":
		detail := fmt.Sprintf("%s answered %s", ce.Method, ce.Code)
		if ce.Needed != "" {
			detail += " (needed: " + ce.Needed + ")"
		}
		if f, ok := slackFixes[ce.Code]; ok {
			return failed(name, detail, f[app])
		}
		if ce.Fatal {
			return failed(name, detail, "Slack refuses the app for good, and 'forcebind run' would stop (exit 3): check the app at api.slack.com → Your Apps "+
				"(Socket Mode on, installed to the workspace) and set its current tokens")
		}
		return failed(name, detail, fmt.Sprintf("see https://api.slack.com/methods/%s for what %s means", ce.Method, ce.Code))
	case ce.Status != 0:
		return failed(name, fmt.Sprintf("%s: HTTP %d", ce.Method, ce.Status), "check SLACK_API_URL and any proxy between forcebind and Slack")
	}
	return failed(name, fmt.Sprintf("%s: %s", ce.Method, networkProblem(ce.Err, timeout)),
		"check outbound HTTPS to slack.com (firewall, HTTPS_PROXY) and SLACK_API_URL")
}

// checkSalesforce checks with auth.Probe that the login host answers and
// that it knows the connected app: the consumer key, the callback URL (web
// flow) and the secret.
func (d doctor) checkSalesforce(ctx context.Context) []checkResult {
	const hostName = "salesforce host"
	c := d.cfg
	probe, err := auth.NewProbe(auth.ProbeConfig{
		ClientID: c.ClientID, ClientSecret: c.ClientSecret, LoginURL: c.LoginURL, CallbackURL: c.CallbackURL,
		AllowCustomLoginHost: c.AllowCustomLoginHost, HTTPClient: d.hc, Timeout: d.timeout,
	})
	if err != nil {
		return []checkResult{skipped(hostName, "SALESFORCE_LOGIN_URL unusable (see configuration)")}
	}
	var rs []checkResult
	if c.AllowCustomLoginHost {
		rs = append(rs, customLoginHost(c.LoginURL))
	}
	base := probe.LoginURL()
	status, err := probe.LoginHost(ctx)
	if err != nil {
		r := failed(hostName, fmt.Sprintf("%s: %s", base, networkProblem(err, d.timeout)),
			"check SALESFORCE_LOGIN_URL and outbound HTTPS to it (firewall, HTTPS_PROXY, a TLS-inspecting proxy's CA in the system trust store)")
		return append(rs, r, skipped("salesforce client", "the login host does not answer"))
	}
	rs = append(rs, passed(hostName, "%s answers (HTTP %d)", base, status))
	if c.ClientID == "" {
		return append(rs, skipped("salesforce client", "no SALESFORCE_CLIENT_ID (see configuration)"))
	}
	if !d.web() {
		// The device flow redeems no code, but refreshes like the web flow.
		return append(rs, d.deviceVerdict(probe.DeviceCode(ctx)), d.tokenVerdict(probe.Refresh(ctx), true))
	}
	rs = append(rs, d.authorizeVerdict(probe.Authorize(ctx)), d.tokenVerdict(probe.Exchange(ctx), false))
	if c.ClientSecret == "" {
		// With a secret, the code probe has checked it for refreshes too;
		// without one, the app may still require it for refreshes only.
		rs = append(rs, d.tokenVerdict(probe.Refresh(ctx), true))
	}
	return rs
}

// customLoginHost is the warning for FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST=true:
// the check that keeps secrets on Salesforce's hosts is off.
func customLoginHost(loginURL string) checkResult {
	const name = "login host"
	if _, err := auth.ParseLoginURL(loginURL, false); !errors.Is(err, auth.ErrNotSalesforceHost) {
		return warned(name, "FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST is true, but %s needs no exception: unset it, so that a mistyped "+
			"SALESFORCE_LOGIN_URL is refused instead of receiving every secret", loginURL)
	}
	return warned(name, "FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST is true: %s, which is not a Salesforce domain, receives the client secret, "+
		"every authorization code and refresh token, and is trusted to name where access tokens go; be sure it is yours", loginURL)
}

// said is what Salesforce said in an OAuth error: its code and description.
func said(e *auth.OAuthError) string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// authorizeVerdict reads what auth.Probe.Authorize made of the authorize
// endpoint's answer.
func (d doctor) authorizeVerdict(login bool, err error) checkResult {
	const name = "salesforce authorize"
	callback := d.cfg.CallbackURL
	var e *auth.OAuthError
	switch {
	case err == nil && login:
		return passed(name, "the consumer key and the callback URL are accepted (Salesforce offers a login)")
	case err == nil:
		// The flow reached the callback: the app and the URL are known.
		return passed(name, "the consumer key and the callback URL are accepted")
	case !errors.As(err, &e):
		return failed(name, networkProblem(err, d.timeout), "check outbound HTTPS to the login host")
	case e.Code == "invalid_client_id" || e.Code == "invalid_client":
		return failed(name, fmt.Sprintf("Salesforce does not know the consumer key %q (%s)", d.cfg.ClientID, e.Code), clientIDFix)
	case e.Code == "redirect_uri_mismatch":
		return failed(name, fmt.Sprintf("the connected app's callback URL is not FORCEBIND_CALLBACK_URL %s (redirect_uri_mismatch)", callback),
			fmt.Sprintf("add %s exactly as a Callback URL of the connected app, or set FORCEBIND_CALLBACK_URL to the one it has", callback))
	case e.Code != "":
		return failed(name, fmt.Sprintf("authorize answered %s", e.Code), "see docs/salesforce-setup.md; the connected app's OAuth settings are not what forcebind needs")
	case e.Status >= 500:
		return failed(name, fmt.Sprintf("authorize answered HTTP %d", e.Status), "Salesforce has trouble: check status.salesforce.com and try again")
	}
	return failed(name, fmt.Sprintf("authorize answered HTTP %d without an OAuth error", e.Status), "check that SALESFORCE_LOGIN_URL is a Salesforce login host")
}

// clientIDFix is the fix for a consumer key Salesforce does not know.
const clientIDFix = "set SALESFORCE_CLIENT_ID to the connected app's Consumer Key (App Manager → the app → View → Manage Consumer Details); a new or edited app can take up to 10 minutes to be known"

// deviceVerdict reads what auth.Probe.DeviceCode made of the answer to a
// device code request.
func (d doctor) deviceVerdict(err error) checkResult {
	const name = "salesforce device"
	var e *auth.OAuthError
	switch {
	case err == nil:
		return passed(name, "the connected app offers the device flow")
	case !errors.As(err, &e):
		return failed(name, networkProblem(err, d.timeout), "check outbound HTTPS to the login host")
	case e.Code == "invalid_client_id":
		return failed(name, fmt.Sprintf("Salesforce does not know the consumer key %q (%s)", d.cfg.ClientID, e.Code), clientIDFix)
	case e.Code == "invalid_request", e.Code == "unsupported_response_type", e.Code == "unauthorized_client":
		return failed(name, fmt.Sprintf("Salesforce refused a device code (%s)", said(e)),
			`turn on "Enable for Device Flow" in the connected app's OAuth settings (docs/salesforce-setup.md), or set FORCEBIND_CONNECT_FLOW=web`)
	case e.Code != "":
		return failed(name, said(e), "see docs/salesforce-setup.md for the connected app's OAuth settings")
	}
	return failed(name, fmt.Sprintf("the token endpoint answered HTTP %d without a device code", e.Status),
		"check that SALESFORCE_LOGIN_URL is a Salesforce login host")
}

// tokenVerdict reads what auth.Probe.Exchange or, with refresh,
// auth.Probe.Refresh made of the token endpoint's answer to a made-up
// grant.
func (d doctor) tokenVerdict(err error, refresh bool) checkResult {
	name, flow, requireSecret := "salesforce token", "the web server flow", "Require Secret for Web Server Flow"
	if refresh {
		name, flow, requireSecret = "salesforce refresh", "the refresh token flow", "Require Secret for Refresh Token Flow"
	}
	withSecret := d.cfg.ClientSecret != ""
	e := &auth.OAuthError{Status: http.StatusOK} // no error: a made-up grant was accepted
	if err != nil && !errors.As(err, &e) {
		return failed(name, networkProblem(err, d.timeout), "check outbound HTTPS to the login host")
	}
	switch e.Code {
	case "":
		if e.Status == http.StatusOK {
			return warned(name, "the token endpoint accepted a made-up grant (HTTP 200); is SALESFORCE_LOGIN_URL a Salesforce login host?")
		}
		return failed(name, fmt.Sprintf("the token endpoint answered HTTP %d without an OAuth error", e.Status),
			"check that SALESFORCE_LOGIN_URL is a Salesforce login host; if it is, Salesforce has trouble (status.salesforce.com)")
	case "invalid_grant":
		if withSecret {
			return passed(name, "%s accepts the consumer key and secret", flow)
		}
		return passed(name, "%s accepts the consumer key without a secret", flow)
	case "invalid_client_id":
		return failed(name, fmt.Sprintf("Salesforce does not know the consumer key %q (%s)", d.cfg.ClientID, said(e)), clientIDFix)
	case "invalid_client":
		if withSecret {
			return failed(name, "Salesforce refused the consumer secret ("+said(e)+")",
				"set SALESFORCE_CLIENT_SECRET to the connected app's current Consumer Secret (Manage Consumer Details)")
		}
		return failed(name, fmt.Sprintf("the connected app requires a secret for %s and none is set (%s)", flow, said(e)),
			fmt.Sprintf("set SALESFORCE_CLIENT_SECRET to the Consumer Secret, or turn off %q", requireSecret))
	case "redirect_uri_mismatch":
		return failed(name, "the connected app's callback URL is not FORCEBIND_CALLBACK_URL ("+said(e)+")",
			"add FORCEBIND_CALLBACK_URL exactly as a Callback URL of the connected app")
	case "inactive_org", "inactive_user":
		return failed(name, said(e), "the org or user is inactive: check SALESFORCE_LOGIN_URL points at the right org")
	}
	return failed(name, said(e), "see docs/salesforce-setup.md for the connected app's OAuth settings")
}

// checkCallback compares the callback URL with the listener of the plan
// that must receive it, and checks the TLS certificate the listeners would
// serve.
func (d doctor) checkCallback() []checkResult {
	c := d.cfg
	var rs []checkResult
	cb, err := url.Parse(c.CallbackURL)
	usable := err == nil && cb.Host != "" && (cb.Scheme == "http" || cb.Scheme == "https")
	tlsOn := c.TLSCertFile != "" && c.TLSKeyFile != ""
	host := "" // the name the certificate must have
	for _, l := range listenerPlan(c) {
		if !l.callback {
			continue
		}
		lhost, lport, err := net.SplitHostPort(l.addr)
		switch {
		case !usable:
			rs = append(rs, skipped("callback URL", "FORCEBIND_CALLBACK_URL unusable (see configuration)"))
		case err != nil:
			rs = append(rs, skipped("callback URL", "%s unusable (see configuration)", l.setting))
		default:
			rs = append(rs, callbackChecks(cb, lhost, lport, l.addr, tlsOn)...)
		}
		if usable {
			host = cb.Hostname()
		}
	}
	if tlsOn {
		rs = append(rs, d.checkCert(host))
	}
	return rs
}

// callbackChecks finds where a browser sent to the callback URL ends up
// with respect to the listener at listen.
func callbackChecks(cb *url.URL, lhost, lport, listen string, tlsOn bool) []checkResult {
	const name = "callback URL"
	port := cb.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[cb.Scheme]
	}
	cbLoop, listenLoop := salesforce.IsLoopback(cb.Hostname()), salesforce.IsLoopback(lhost)
	var rs []checkResult
	switch {
	case cbLoop && port != lport:
		rs = append(rs, failed(name, fmt.Sprintf("%s is on this machine, port %s, but FORCEBIND_LISTEN is %s: the browser's redirect misses the listener", cb, port, listen),
			fmt.Sprintf("set FORCEBIND_LISTEN to 127.0.0.1:%s, or use port %s in FORCEBIND_CALLBACK_URL and in the connected app", port, lport)))
	case cbLoop && cb.Scheme == "https" && !tlsOn:
		rs = append(rs, failed(name, fmt.Sprintf("%s is https, but the listener on this machine serves plain HTTP", cb),
			"set FORCEBIND_TLS_CERT_FILE and FORCEBIND_TLS_KEY_FILE, or use http://localhost in FORCEBIND_CALLBACK_URL and the connected app"))
	case cbLoop && cb.Scheme == "http" && tlsOn:
		rs = append(rs, failed(name, fmt.Sprintf("%s is http, but the listener serves TLS", cb),
			"use https in FORCEBIND_CALLBACK_URL and in the connected app"))
	case cbLoop:
		rs = append(rs, passed(name, "%s reaches the listener %s (from a browser on this machine only)", cb, listen))
	case listenLoop:
		rs = append(rs, warned(name, "FORCEBIND_LISTEN %s is loopback but the callback host is %s: reachable only through a reverse proxy on this machine", listen, cb.Hostname()))
	default:
		rs = append(rs, passed(name, "%s should reach the listener %s (through DNS, a load balancer or a reverse proxy)", cb, listen))
	}
	// Plain http on a network host is a configuration problem, reported
	// with the others.
	if !cbLoop && cb.Scheme == "https" && !tlsOn {
		rs = append(rs, warned(name, "%s is https and the listener serves plain HTTP: TLS must be terminated by a reverse proxy", cb))
	}
	return rs
}

// checkCert loads the listener's certificate and key as the daemon does,
// and checks that the certificate is current and, when host is set, names
// the callback host.
func (d doctor) checkCert(host string) checkResult {
	const name = "TLS certificate"
	c := d.cfg
	renew := "renew it, then reload forcebind (SIGHUP: systemctl reload forcebind)"
	cert, err := auth.LoadCertificate(c.TLSCertFile, c.TLSKeyFile)
	switch {
	case errors.Is(err, auth.ErrCertExpired):
		return failed(name, err.Error(), renew)
	case err != nil:
		// The error names files and PEM problems, never key material.
		return failed(name, err.Error(), "FORCEBIND_TLS_CERT_FILE must hold the PEM chain (leaf first) and FORCEBIND_TLS_KEY_FILE its private key, both readable by forcebind")
	}
	leaf, now := cert.Leaf(), d.now()
	if now.Before(leaf.NotBefore) {
		return failed(name, fmt.Sprintf("%s is not valid before %s", c.TLSCertFile, leaf.NotBefore.UTC().Format(time.DateTime)), "check the clock of this machine, or use a certificate valid now")
	}
	names := certNames(leaf)
	if host != "" {
		if err := leaf.VerifyHostname(host); err != nil {
			return failed(name, fmt.Sprintf("%s is for %s, not the callback host %s", c.TLSCertFile, names, host),
				fmt.Sprintf("use a certificate whose subject alternative names include %s, or change FORCEBIND_CALLBACK_URL", host))
		}
	}
	left := leaf.NotAfter.Sub(now)
	if left < certWarnBefore {
		return warned(name, "%s for %s expires in %d days (%s): %s", c.TLSCertFile, names, int(left.Hours()/24), leaf.NotAfter.UTC().Format(time.DateOnly), renew)
	}
	return passed(name, "%s for %s, valid until %s", c.TLSCertFile, names, leaf.NotAfter.UTC().Format(time.DateOnly))
}

// certNames lists the names a certificate is for.
func certNames(c *x509.Certificate) string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	if len(names) == 0 {
		return "no names"
	}
	return strings.Join(names, ", ")
}

// checkListen binds each address of the listener plan, and lets go at
// once.
func (d doctor) checkListen() []checkResult {
	var rs []checkResult
	for _, l := range listenerPlan(d.cfg) {
		name := "listen"
		if l.admin {
			name = "admin listen"
		}
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			rs = append(rs, skipped(name, "%s unusable (see configuration)", l.setting))
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		switch {
		case err == nil:
			ln.Close()
			rs = append(rs, passed(name, "%s can be bound", l.addr))
		case errors.Is(err, syscall.EADDRINUSE):
			rs = append(rs, warned(name, "%s is in use; a running forcebind may hold it", l.addr))
		case errors.Is(err, syscall.EACCES):
			rs = append(rs, failed(name, err.Error(), fmt.Sprintf("use a port above 1023 in %s (a reverse proxy can serve 443)", l.setting)))
		default:
			rs = append(rs, failed(name, err.Error(), fmt.Sprintf("set %s to an address of this machine, e.g. 127.0.0.1:8787 or 0.0.0.0:8787", l.setting)))
		}
	}
	return rs
}

// networkProblem says in a few words why a request got no answer.
func networkProblem(err error, timeout time.Duration) string {
	var dns *net.DNSError
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Sprintf("no answer within %s", timeout)
	case errors.As(err, &dns):
		return fmt.Sprintf("cannot resolve %s", dns.Name)
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &he):
		return fmt.Sprintf("TLS verification failed: %v", err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
