package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/forcebind/forcebind/auth"
	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/store"
)

// Config is everything forcebind reads from its environment and flags. Only
// main builds one; the other packages receive the values they need.
type Config struct {
	SlackAppToken string
	SlackBotToken string
	// The *File fields name files holding the secret instead (Docker
	// secrets, systemd credentials); they are read while checking.
	slackAppTokenFile, slackBotTokenFile, clientSecretFile string
	SlackAPIURL                                            string

	ClientID      string
	ClientSecret  string
	LoginURL      string
	APIVersion    string
	Listen        string
	CallbackURL   string
	LinkTTL       time.Duration
	linkTTLString string

	// ConnectFlow is auth.FlowWeb or auth.FlowDevice.
	ConnectFlow       auth.Flow
	connectFlowString string
	// RequireEmailMatch defaults to on for the device flow, off for the web flow.
	RequireEmailMatch  bool
	requireEmailString string
	TLSCertFile        string
	TLSKeyFile         string
	AdminListen        string
	// AllowedOrgIDs are the orgs people may bind, in their 15-character
	// form; empty means any.
	AllowedOrgIDs       []string
	allowedOrgIDsString string
	// AllowCustomLoginHost accepts a LoginURL that is not a Salesforce
	// domain or loopback.
	AllowCustomLoginHost bool
	allowCustomString    string
	// Pprof serves net/http/pprof on AdminListen, never on Listen.
	Pprof       bool
	pprofString string

	DB      string
	KeyFile string
	Key     string

	LogLevel  string
	LogFormat string
}

// group names a set of settings that a subcommand uses; a subcommand only
// accepts (and only validates) the flags of its groups.
type group int

const (
	groupLog   group = iota
	groupStore       // the store file and its keys
	groupSlack       // the Slack tokens and API
	// groupSalesforce is the org, the connected app and how people connect
	// to it.
	groupSalesforce
	// groupListen is what the daemon listens on (see listenerPlan) and how:
	// the addresses, TLS, pprof.
	groupListen
)

// setting is one row of the configuration contract in DESIGN.md: an
// environment variable, the flag that overrides it, and its default.
type setting struct {
	env, flag, def, usage string
	group                 group
	dst                   func(*Config) *string
}

// settings is the configuration contract. Names here are public: keep them.
func settings() []setting {
	return []setting{
		{"LOG_LEVEL", "log-level", "info", "log level: debug, info, warn, error", groupLog, func(c *Config) *string { return &c.LogLevel }},
		{"LOG_FORMAT", "log-format", "", "log format: json or console (default json, console on a terminal)", groupLog, func(c *Config) *string { return &c.LogFormat }},
		{"FORCEBIND_DB", "db", "forcebind.db", "bbolt store file", groupStore, func(c *Config) *string { return &c.DB }},
		{"FORCEBIND_KEY_FILE", "key-file", "", "file of base64 32-byte keys, one a line, first is primary (mode 0600)", groupStore, func(c *Config) *string { return &c.KeyFile }},
		{"FORCEBIND_KEY", "key", "", "base64 32-byte keys, comma separated, first is primary", groupStore, func(c *Config) *string { return &c.Key }},
		{"SLACK_APP_TOKEN", "slack-app-token", "", "Slack app-level token xapp-… (connections:write)", groupSlack, func(c *Config) *string { return &c.SlackAppToken }},
		{"SLACK_BOT_TOKEN", "slack-bot-token", "", "Slack bot token xoxb-…", groupSlack, func(c *Config) *string { return &c.SlackBotToken }},
		{"SLACK_APP_TOKEN_FILE", "slack-app-token-file", "", "file holding SLACK_APP_TOKEN instead", groupSlack, func(c *Config) *string { return &c.slackAppTokenFile }},
		{"SLACK_BOT_TOKEN_FILE", "slack-bot-token-file", "", "file holding SLACK_BOT_TOKEN instead", groupSlack, func(c *Config) *string { return &c.slackBotTokenFile }},
		{"SLACK_API_URL", "slack-api-url", "https://slack.com/api/", "Slack Web API base URL", groupSlack, func(c *Config) *string { return &c.SlackAPIURL }},
		{"SALESFORCE_CLIENT_ID", "salesforce-client-id", "", "connected app consumer key", groupSalesforce, func(c *Config) *string { return &c.ClientID }},
		{"SALESFORCE_CLIENT_SECRET", "salesforce-client-secret", "", "connected app consumer secret (optional)", groupSalesforce, func(c *Config) *string { return &c.ClientSecret }},
		{"SALESFORCE_CLIENT_SECRET_FILE", "salesforce-client-secret-file", "", "file holding SALESFORCE_CLIENT_SECRET instead", groupSalesforce, func(c *Config) *string { return &c.clientSecretFile }},
		{"SALESFORCE_LOGIN_URL", "salesforce-login-url", "https://login.salesforce.com", "login host: login, test, or a My Domain URL", groupSalesforce, func(c *Config) *string { return &c.LoginURL }},
		{"SALESFORCE_API_VERSION", "salesforce-api-version", salesforce.DefaultAPIVersion, "Salesforce REST API version", groupSalesforce, func(c *Config) *string { return &c.APIVersion }},
		{"FORCEBIND_LISTEN", "listen", "127.0.0.1:8787", "address of the OAuth callback listener", groupListen, func(c *Config) *string { return &c.Listen }},
		{"FORCEBIND_CALLBACK_URL", "callback-url", "http://localhost:8787" + auth.CallbackPath, "callback URL; must equal the connected app's", groupSalesforce, func(c *Config) *string { return &c.CallbackURL }},
		{"FORCEBIND_LINK_TTL", "link-ttl", "10m", "lifetime of a binding link", groupSalesforce, func(c *Config) *string { return &c.linkTTLString }},
		{"FORCEBIND_CONNECT_FLOW", "connect-flow", "web", "how people sign in: web (link and callback) or device (code, no inbound path)", groupSalesforce, func(c *Config) *string { return &c.connectFlowString }},
		{"FORCEBIND_REQUIRE_EMAIL_MATCH", "require-email-match", "", "bind only when the Salesforce email equals the Slack one: true or false (default true for device, false for web)", groupSalesforce, func(c *Config) *string { return &c.requireEmailString }},
		{"FORCEBIND_TLS_CERT_FILE", "tls-cert-file", "", "PEM certificate chain; with the key file, the listener serves TLS (reloaded on SIGHUP)", groupListen, func(c *Config) *string { return &c.TLSCertFile }},
		{"FORCEBIND_TLS_KEY_FILE", "tls-key-file", "", "PEM private key for FORCEBIND_TLS_CERT_FILE", groupListen, func(c *Config) *string { return &c.TLSKeyFile }},
		{"FORCEBIND_ADMIN_LISTEN", "admin-listen", "", "separate address for /healthz, /readyz and /metrics (default: on FORCEBIND_LISTEN)", groupListen, func(c *Config) *string { return &c.AdminListen }},
		{"FORCEBIND_ALLOWED_ORG_IDS", "allowed-org-ids", "", "comma-separated Salesforce org ids (15 or 18 characters) people may bind; empty means any", groupSalesforce, func(c *Config) *string { return &c.allowedOrgIDsString }},
		{"FORCEBIND_PPROF", "pprof", "false", "serve net/http/pprof under /debug/pprof/ on FORCEBIND_ADMIN_LISTEN (never on FORCEBIND_LISTEN): true or false", groupListen, func(c *Config) *string { return &c.pprofString }},
		{"FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST", "allow-custom-login-host", "false", "accept a SALESFORCE_LOGIN_URL that is not a Salesforce domain or loopback: true or false", groupSalesforce, func(c *Config) *string { return &c.allowCustomString }},
	}
}

// parseConfig reads the settings of groups from getenv and then args (flags
// win). It returns the remaining arguments and one error that lists every
// problem found, so an operator fixes them all in one go.
func parseConfig(name string, args []string, getenv func(string) string, stderr io.Writer, groups ...group) (Config, []string, error) {
	var cfg Config
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	finish := bindConfig(fs, &cfg, getenv, groups...)
	if err := fs.Parse(args); err != nil {
		return Config{}, nil, err
	}
	if problems := finish(); len(problems) > 0 {
		return Config{}, nil, fmt.Errorf("configuration:\n  - %s", strings.Join(problems, "\n  - "))
	}
	return cfg, fs.Args(), nil
}

// bindConfig defines the flags of groups' settings on fs, writing to cfg.
// Once fs is parsed, the returned finish applies the environment to every
// setting whose flag was not given and returns the problems found, each a
// sentence naming the variable.
func bindConfig(fs *flag.FlagSet, cfg *Config, getenv func(string) string, groups ...group) (finish func() []string) {
	var used []setting
	for _, s := range settings() {
		if slices.Contains(groups, s.group) {
			used = append(used, s)
			// The flag's default is the documented one, never the environment's
			// value: flag usage prints defaults, and these include secrets.
			fs.StringVar(s.dst(cfg), s.flag, s.def, s.usage+" ($"+s.env+")")
		}
	}
	return func() []string {
		set := make(map[string]bool)
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for _, s := range used {
			if v, ok := lookup(getenv, s.env); ok && !set[s.flag] {
				*s.dst(cfg) = v
			}
		}
		var problems []string
		if slices.Contains(groups, groupStore) {
			problems = append(problems, cfg.checkStore()...)
		}
		if slices.Contains(groups, groupLog) {
			problems = append(problems, cfg.checkLog()...)
		}
		if slices.Contains(groups, groupSlack) {
			problems = append(problems, cfg.checkSlack()...)
		}
		if slices.Contains(groups, groupSalesforce) {
			problems = append(problems, cfg.checkSalesforce()...)
		}
		if slices.Contains(groups, groupListen) {
			problems = append(problems, cfg.checkListen()...)
		}
		return problems
	}
}

// keyring builds the store keyring from whichever key source is set.
func (c Config) keyring() (*store.Keyring, error) {
	if c.KeyFile != "" {
		return store.KeyringFromFile(c.KeyFile)
	}
	return store.KeyringFromEnv(c.Key)
}

func (c Config) checkStore() []string {
	var p []string
	if c.DB == "" {
		p = append(p, "FORCEBIND_DB is empty")
	}
	switch {
	case c.KeyFile == "" && c.Key == "":
		p = append(p, "one of FORCEBIND_KEY_FILE or FORCEBIND_KEY is required (create a key with: forcebind key generate)")
	case c.KeyFile != "" && c.Key != "":
		p = append(p, "FORCEBIND_KEY_FILE and FORCEBIND_KEY are both set; set only one")
	}
	return p
}

func (c *Config) checkSlack() []string {
	p := secretFromFile(&c.SlackAppToken, c.slackAppTokenFile, "SLACK_APP_TOKEN")
	p = append(p, secretFromFile(&c.SlackBotToken, c.slackBotTokenFile, "SLACK_BOT_TOKEN")...)
	switch {
	case c.SlackAppToken == "":
		p = append(p, "SLACK_APP_TOKEN is required (an app-level token xapp-… with connections:write)")
	case !strings.HasPrefix(c.SlackAppToken, "xapp-"):
		p = append(p, "SLACK_APP_TOKEN must be an app-level token starting with xapp-")
	}
	switch {
	case c.SlackBotToken == "":
		p = append(p, "SLACK_BOT_TOKEN is required (the bot token xoxb-…)")
	case !strings.HasPrefix(c.SlackBotToken, "xoxb-"):
		p = append(p, "SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
	}
	if u, err := url.Parse(c.SlackAPIURL); err != nil || u.Host == "" || !salesforce.SecureScheme(u) {
		p = append(p, fmt.Sprintf("SLACK_API_URL %q is not an https URL (http only on a loopback host)", c.SlackAPIURL))
	} else if !strings.HasSuffix(c.SlackAPIURL, "/") {
		c.SlackAPIURL += "/" // slack-go appends method names to it
	}
	return p
}

func (c *Config) checkSalesforce() []string {
	p := secretFromFile(&c.ClientSecret, c.clientSecretFile, "SALESFORCE_CLIENT_SECRET")
	if c.ClientID == "" {
		p = append(p, "SALESFORCE_CLIENT_ID is required (the connected app's consumer key)")
	}
	custom, problem := parseBool("FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST", c.allowCustomString, false)
	if problem != "" {
		p = append(p, problem)
	}
	c.AllowCustomLoginHost = custom
	switch _, err := auth.ParseLoginURL(c.LoginURL, c.AllowCustomLoginHost); {
	case errors.Is(err, auth.ErrNotSalesforceHost):
		p = append(p, "SALESFORCE_LOGIN_URL: "+err.Error()+
			"; if that host really is your Salesforce login (a proxy of your own), set FORCEBIND_ALLOW_CUSTOM_LOGIN_HOST=true")
	case err != nil:
		p = append(p, "SALESFORCE_LOGIN_URL: "+err.Error())
	}
	orgs, err := auth.ParseOrgIDs(c.allowedOrgIDsString)
	if err != nil {
		p = append(p, "FORCEBIND_ALLOWED_ORG_IDS: "+err.Error())
	}
	c.AllowedOrgIDs = orgs
	if !apiVersion.MatchString(c.APIVersion) {
		p = append(p, fmt.Sprintf("SALESFORCE_API_VERSION %q is not a version like 62.0", c.APIVersion))
	}
	switch u, err := auth.ParseCallbackURL(c.CallbackURL); {
	case err != nil:
		p = append(p, "FORCEBIND_CALLBACK_URL: "+err.Error())
	case u.Path != auth.CallbackPath:
		p = append(p, fmt.Sprintf("FORCEBIND_CALLBACK_URL %q must end in %s, the listener's route", c.CallbackURL, auth.CallbackPath))
	}
	ttl, err := time.ParseDuration(c.linkTTLString)
	switch {
	case err != nil:
		p = append(p, fmt.Sprintf("FORCEBIND_LINK_TTL %q is not a duration like 10m", c.linkTTLString))
	case ttl < time.Minute || ttl > 24*time.Hour:
		p = append(p, fmt.Sprintf("FORCEBIND_LINK_TTL %s is outside 1m to 24h", ttl))
	default:
		c.LinkTTL = ttl
	}
	switch auth.Flow(c.connectFlowString) {
	case auth.FlowWeb, auth.FlowDevice:
		c.ConnectFlow = auth.Flow(c.connectFlowString)
	default:
		p = append(p, fmt.Sprintf("FORCEBIND_CONNECT_FLOW %q is not web or device", c.connectFlowString))
	}
	if c.RequireEmailMatch, problem = parseBool("FORCEBIND_REQUIRE_EMAIL_MATCH", c.requireEmailString, c.ConnectFlow == auth.FlowDevice); problem != "" {
		p = append(p, problem)
	}
	return p
}

func (c *Config) checkListen() []string {
	var p []string
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		p = append(p, fmt.Sprintf("FORCEBIND_LISTEN %q is not host:port", c.Listen))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		p = append(p, "FORCEBIND_TLS_CERT_FILE and FORCEBIND_TLS_KEY_FILE must be set together")
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			p = append(p, fmt.Sprintf("FORCEBIND_ADMIN_LISTEN %q is not host:port", c.AdminListen))
		}
	}
	pprofOn, problem := parseBool("FORCEBIND_PPROF", c.pprofString, false)
	switch {
	case problem != "":
		p = append(p, problem)
	case pprofOn && c.AdminListen == "":
		// The callback listener is reachable by browsers; profiles name
		// code paths and can be made to cost CPU, so they stay off it.
		p = append(p, "FORCEBIND_PPROF=true needs FORCEBIND_ADMIN_LISTEN: profiles are served only on the admin listener")
	}
	c.Pprof = pprofOn
	return p
}

// parseBool reads the boolean setting name from v, or def when v is empty.
// problem is a sentence for an unclear value, "" otherwise.
func parseBool(name, v string, def bool) (b bool, problem string) {
	switch strings.ToLower(v) {
	case "":
		return def, ""
	case "true", "1", "yes", "on":
		return true, ""
	case "false", "0", "no", "off":
		return false, ""
	}
	return def, fmt.Sprintf("%s %q is not true or false", name, v)
}

// maxSecretFile bounds a *_FILE secret: tokens and secrets are short, and a
// wrong path (a log, a device) must not be read whole.
const maxSecretFile = 16 << 10

// secretFromFile sets *dst from the file named by the variable name+"_FILE",
// if set: the file's content without surrounding white space (editors and
// `echo` add a newline). Setting both the variable and its file is a
// problem. Problems name the variable and the file, never the content.
func secretFromFile(dst *string, path, name string) []string {
	if path == "" {
		return nil
	}
	if *dst != "" {
		return []string{fmt.Sprintf("%s and %s_FILE are both set; set only one", name, name)}
	}
	f, err := os.Open(path)
	if err != nil {
		return []string{fmt.Sprintf("%s_FILE: %v", name, err)}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	switch {
	case err != nil:
		return []string{fmt.Sprintf("%s_FILE: read %s: %v", name, path, err)}
	case len(b) > maxSecretFile:
		return []string{fmt.Sprintf("%s_FILE: %s is larger than %d bytes; is it the right file?", name, path, maxSecretFile)}
	}
	if *dst = strings.TrimSpace(string(b)); *dst == "" {
		return []string{fmt.Sprintf("%s_FILE: %s is empty", name, path)}
	}
	return nil
}

// apiVersion is the form of a Salesforce REST API version.
var apiVersion = regexp.MustCompile(`^[1-9][0-9]{1,2}\.[0-9]$`)

func (c Config) checkLog() []string {
	var p []string
	switch strings.ToLower(c.LogLevel) {
	case "trace", "debug", "info", "warn", "error":
	default:
		p = append(p, fmt.Sprintf("LOG_LEVEL %q is not one of debug, info, warn, error", c.LogLevel))
	}
	switch c.LogFormat {
	case "", "json", "console":
	default:
		p = append(p, fmt.Sprintf("LOG_FORMAT %q is not json or console", c.LogFormat))
	}
	return p
}

// lookup treats an empty variable as unset, as operators expect of `FOO= cmd`.
func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}
