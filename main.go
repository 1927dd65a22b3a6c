// Command forcebind is a Slack bot that lets every Slack user work with
// Salesforce as themselves. See README.md and doc.go.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/forcebind/forcebind/bot"
	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes: 0 success, 1 a failure while running, 2 a bad command line or
// configuration, 3 Slack refused the app (revoked tokens, Socket Mode off):
// restarting will not help until an administrator acts, so service managers
// should not restart on 3 (deploy/forcebind.service does not). A Go panic
// exits 2 too, so the unit does restart on 2, up to its start limit.
const (
	exitOK      = 0
	exitFail    = 1
	exitUsage   = 2
	exitRefused = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches a subcommand and returns the process exit code. It is main
// without the process: tests call it with their own environment and writers.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "help", "-h", "-help", "--help":
		printUsage(stdout)
		return exitOK
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "forcebind %s\n", version)
		return exitOK
	case "key":
		err = runKey(ctx, rest, getenv, stdout, stderr)
	case "run":
		err = runDaemon(ctx, rest, getenv, stderr)
	case "demo":
		err = runDemo(ctx, rest, stdin, stdout, stderr)
	case "compact":
		err = runCompact(ctx, rest, getenv, stdout, stderr)
	case "backup":
		err = runBackup(ctx, rest, getenv, stdout, stderr)
	case "doctor":
		err = runDoctor(ctx, rest, getenv, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "forcebind: unknown command %q\n\n", cmd)
		printUsage(stderr)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "forcebind: %v\n", err)
		return exitUsage
	case errors.Is(err, bot.ErrSlackAuth):
		fmt.Fprintf(stderr, "forcebind: %v\n", err)
		return exitRefused
	default:
		fmt.Fprintf(stderr, "forcebind: %v\n", err)
		return exitFail
	}
}

// usageError marks an error in how forcebind was called, as opposed to one
// that happened while doing the work.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// runDaemon is `forcebind run`: the daemon, configured from the environment
// and flags.
func runDaemon(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, rest, err := parseConfig("run", args, getenv, stderr, groupLog, groupStore, groupSlack, groupSalesforce, groupListen)
	if err != nil {
		return configError(err)
	}
	if len(rest) > 0 {
		return usageError{fmt.Errorf("run: unexpected arguments %q", rest)}
	}
	log := newLogger(cfg, stderr)
	log.Info().Str("version", version).Msg("forcebind starting")
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return daemon{cfg: cfg, log: log, hup: hup}.run(ctx)
}

func runKey(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("key: want 'key generate' or 'key rotate'")}
	}
	switch args[0] {
	case "generate":
		if len(args) > 1 {
			return usageError{fmt.Errorf("key generate takes no arguments")}
		}
		k, err := store.GenerateKey()
		if err != nil {
			return fmt.Errorf("generate key: %w", err)
		}
		fmt.Fprintln(stdout, k)
		return nil
	case "rotate":
		return runRotate(ctx, args[1:], getenv, stdout, stderr)
	default:
		return usageError{fmt.Errorf("key: unknown subcommand %q; want 'generate' or 'rotate'", args[0])}
	}
}

// runRotate is `forcebind key rotate [-drop-unopenable]`.
func runRotate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg Config
	fs := flag.NewFlagSet("key rotate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	drop := fs.Bool("drop-unopenable", false, "delete the records no key in the ring opens (a lost key's, or damaged ones); their owners connect again")
	finish := bindConfig(fs, &cfg, getenv, groupStore)
	if err := fs.Parse(args); err != nil {
		return configError(err)
	}
	if problems := finish(); len(problems) > 0 {
		return usageError{fmt.Errorf("configuration:\n  - %s", strings.Join(problems, "\n  - "))}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("key rotate: unexpected arguments %q", fs.Args())}
	}
	return rotateKeys(ctx, cfg, *drop, stdout)
}

// rotateKeys re-seals every record of the store under the primary key, so
// that older keys can then be dropped from the keyring. A record that does
// not open is left as it was and reported per key id, and the command
// fails, so that no one removes a key that still seals something; with
// drop, such records are deleted instead.
func rotateKeys(ctx context.Context, cfg Config, drop bool, stdout io.Writer) error {
	ring, err := cfg.keyring()
	if err != nil {
		return usageError{err} // a malformed or exposed key is a configuration error
	}
	// AllowMissingKeys: this is the command that repairs a ring that has
	// lost a key, so it must open the store Open would otherwise refuse.
	db, err := bolt.Open(cfg.DB, bolt.Options{Keyring: ring, AllowMissingKeys: true})
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("open store %s: %w (stop forcebind first: key rotate works offline)", cfg.DB, err)
	}
	if err != nil {
		return fmt.Errorf("open store %s: %w", cfg.DB, err)
	}
	// With records left, Rotate's error says what rep.Left says; the
	// message below says it per line, with what to do.
	rep, err := db.Rotate(ctx)
	if err != nil && len(rep.Left) == 0 {
		db.Close()
		return fmt.Errorf("rotate %s: %w", cfg.DB, err)
	}
	fmt.Fprintf(stdout, "re-sealed %d records of %s under key %s\n", rep.Resealed, cfg.DB, ring.PrimaryID())
	left := rep.Left
	var gone []store.KeyRecords
	err = nil
	if len(left) > 0 && drop {
		if gone, err = db.DeleteUnopenable(ctx); err == nil {
			left = nil
		}
	}
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close store: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("rotate %s: %w", cfg.DB, err)
	}
	if len(gone) > 0 {
		fmt.Fprintf(stdout, "deleted %d %s that no key in the ring opens:\n%s", count(gone), plural(count(gone), "record", "records"), describeRecords(gone, ring))
		fmt.Fprintf(stdout, "those people connect again; forcebind could not read their grants to revoke them: revoke the app's tokens in Salesforce (Setup → Connected Apps OAuth Usage) if the key may have leaked; then run 'forcebind compact'\n")
	}
	if len(left) > 0 {
		return fmt.Errorf("key rotate: %d %s of %s did not open and were left as they were:\n%s%s",
			count(left), plural(count(left), "record", "records"), cfg.DB, describeRecords(left, ring), rotateAdvice(left, ring))
	}
	fmt.Fprintln(stdout, "keys after the first may now be removed")
	return nil
}

// rotateAdvice says what to do about records Rotate left.
func rotateAdvice(left []store.KeyRecords, ring *store.Keyring) string {
	var missing []string
	for _, r := range left {
		if r.KeyID != "" && !r.InRing {
			missing = append(missing, r.KeyID)
		}
	}
	if len(missing) == 0 {
		return "the damaged records can never be opened; 'forcebind key rotate -drop-unopenable' deletes them (those people connect again)"
	}
	return "do not remove any key yet: " + store.MissingKeysFix(missing, ring.Name())
}

// describeRecords lists records per key id, one indented line each.
func describeRecords(rs []store.KeyRecords, ring *store.Keyring) string {
	var b strings.Builder
	for _, r := range rs {
		switch {
		case r.KeyID == "":
			fmt.Fprintf(&b, "  too damaged to name a key: %s\n", r)
		case !r.InRing:
			fmt.Fprintf(&b, "  key id %s, not in %s: %s\n", r.KeyID, ring.Name(), r)
		default:
			fmt.Fprintf(&b, "  key id %s, in the ring, but altered or damaged: %s\n", r.KeyID, r)
		}
	}
	return b.String()
}

// count adds up the records of a report.
func count(rs []store.KeyRecords) int {
	n := 0
	for _, r := range rs {
		n += r.Bindings + r.Pending
	}
	return n
}

// runCompact is `forcebind compact`: rewrite the store offline with only its
// live records, so that freed pages (old ciphertexts, such as those sealed
// under a rotated-out key) are gone from the file.
func runCompact(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, rest, err := parseConfig("compact", args, getenv, stderr, groupStore)
	if err != nil {
		return configError(err)
	}
	if len(rest) > 0 {
		return usageError{fmt.Errorf("compact: unexpected arguments %q", rest)}
	}
	ring, err := cfg.keyring()
	if err != nil {
		return usageError{err}
	}
	// bolt.Compact renames the new file into place while it still holds
	// the old file's lock, so a daemon started meanwhile waits and then
	// opens the new file, never the one being replaced.
	before, after, err := bolt.Compact(ctx, cfg.DB, bolt.Options{Keyring: ring})
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("%w (stop forcebind first: compact works offline)", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "compacted %s: %d → %d bytes\n", cfg.DB, before, after)
	return nil
}

// configError turns a flag or configuration error into a usage error, except
// for -h, which is a request for help.
func configError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{err}
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `forcebind — work with Salesforce from Slack, as yourself.

Usage:
  forcebind run             run the daemon (Slack Socket Mode + OAuth callback listener)
  forcebind demo            try it: a fake Slack, a fake Salesforce org and the real daemon
                            in one process, no credentials needed (-script FILE to play a script)
  forcebind key generate    print a new random key (base64 of 32 bytes)
  forcebind key rotate      re-seal every record of FORCEBIND_DB under the primary key
                            (offline; -drop-unopenable deletes what no key in the ring opens)
  forcebind compact         rewrite FORCEBIND_DB with only its live records (offline)
  forcebind backup FILE     write a consistent copy of FORCEBIND_DB to FILE, also while
                            the daemon runs
  forcebind doctor          check the settings, the store, Slack, Salesforce and the callback
                            URL as 'run' would use them; one line per check (-timeout 10s)
  forcebind version         print the version
  forcebind help            print this help

Every setting is an environment variable with a matching flag; run
'forcebind run -h' for the flags of a subcommand. See README.md.
`)
}
