package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/forcebind/forcebind/auth"
	"github.com/forcebind/forcebind/bot"
	"github.com/forcebind/forcebind/salesforce"
)

// The checks of what forcebind reaches out to: Slack (bot.Probe) and
// Salesforce (auth.Probe), and the fixes for what they answer.

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
