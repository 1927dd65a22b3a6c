// Command forcebind binds each Slack user to their own Salesforce user and
// answers their requests with that person's Salesforce permissions.
//
// This package only wires: it reads the environment and flags into a Config,
// builds the parts (store, auth, salesforce, bot), runs them under a context
// that SIGINT/SIGTERM cancel, and closes them in reverse order. No other
// package reads the environment.
//
// Subcommands:
//
//	forcebind run            the daemon
//	forcebind demo           fakes and the daemon in one process, no credentials
//	forcebind compact        rewrite the store with only live records (offline)
//	forcebind key generate   print a new base64 32-byte key
//	forcebind key rotate     re-seal every record under the primary key
//	forcebind version        print the version
//	forcebind help           usage
package main
