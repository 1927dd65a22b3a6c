// Package postgres keeps forcebind's binding store in a PostgreSQL
// database, for several replicas sharing one store: the same records as
// store/bolt, sealed by package store the same way, and the same contract
// (it passes store/storetest's conformance suite).
//
// # Tables
//
// Every record column holds the bytes package store seals, with the table
// and the key in each record's associated data, so that a database
// administrator, a dump or a replica of the database sees no token, and a
// record copied to another row does not open:
//
//	forcebind_bindings           key text "team_id/user_id"   record bytea sealed Binding
//	forcebind_pending            key bytea SHA-256(state)     user_key text, expires timestamptz, record bytea expiry ‖ sealed Pending
//	forcebind_meta               name "canary"                value a sealed known value that proves the keyring fits
//	                             name "bindings"              value the number of bindings, decimal ASCII
//	forcebind_schema_migrations  version, name, applied_at    one row per migration applied
//
// The schema version is the highest version in forcebind_schema_migrations.
// The migrations are the SQL files in migrations/, embedded in the binary;
// [Open] applies those the database lacks under a session advisory lock,
// so that replicas starting at once migrate once, and refuses a database
// whose schema is newer than the binary with store.ErrSchema.
//
// # Concurrency
//
// A [DB] is safe for concurrent use by many goroutines, and any number of
// processes can open one database. Compare-and-swap writes
// ([DB.UpdateTokens], [DB.DeleteBindingIf], [DB.DeleteBindingIfUnreadable])
// and [DB.ReplaceBinding] lock the binding's row (SELECT … FOR UPDATE) and
// decide on what they read under the lock; a state
// redeems once ([DB.RedeemPending] is one DELETE … RETURNING);
// [DB.CreatePending] serialises per person on a transaction advisory lock.
// [DB.Rotate] and [DB.DeleteUnopenable] work in batches of a few hundred
// rows per transaction, so they run while replicas serve. [DB.GetBinding],
// the hot path, is one query.
//
// # Connecting
//
// The URL and the environment follow libpq's conventions (pgx parses them):
// PGPASSWORD or PGPASSFILE keep the password out of the URL, and sslmode
// and the other settings work as for psql. No error this package returns
// holds the password.
//
// The tests need PostgreSQL's server binaries; [pgtest] starts a throwaway
// server for them.
package postgres
