package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/forcebind/forcebind/auth"
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
