// Command forcebind binds each Slack user to their own Salesforce user and
// answers their requests with that person's Salesforce permissions.
//
// This package only wires: it reads the environment and flags into a Config,
// builds the parts (store, auth, salesforce, bot), runs them under a context
// that SIGINT/SIGTERM cancel (SIGHUP reloads the TLS certificate), and closes
// them in reverse order. No other package reads the environment. It also
// holds what only the daemon as a whole has: the listeners and their
// servers (listeners.go), the health endpoints and Prometheus metrics
// (ops.go, metrics.go), the control socket that serves hot backups
// (control.go, backup.go), and the checklist of `forcebind doctor`, whose
// probes are auth's and bot's.
//
// Subcommands:
//
//	forcebind run            the daemon
//	forcebind demo           fakes and the daemon in one process, no credentials
//	forcebind doctor         check settings, key, store, Slack, Salesforce, listeners
//	forcebind backup FILE    a consistent copy of the store, also while it runs
//	forcebind compact        rewrite the store with only live records (offline)
//	forcebind key generate   print a new base64 32-byte key
//	forcebind key rotate     re-seal every record under the primary key
//	forcebind version        print the version
//	forcebind help           usage
package main
