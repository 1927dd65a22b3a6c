// Package bolt keeps forcebind's binding store in one bbolt file, the
// default backend: the bindings from Slack users to their Salesforce
// grants, the pending links that are waiting for someone to finish logging
// in, and a little metadata. What the records are, how they are sealed and
// the errors returned (ErrNotFound, ErrLocked, ErrWrongKey, … below) are
// package store's; this package keeps the sealed bytes store makes, and
// passes store/storetest's conformance suite.
//
// [Open] checks the canary and reads the key id in the header of every
// record, without decrypting, and refuses a ring that lacks one of them
// (a *store.MissingKeysError): dropping a key too early is caught at
// start. [DB.Rotate] moves every record that opens to the primary key and
// reports, per key id, what it could not; [DB.DeleteUnopenable] is the
// way out when a key is lost for good.
//
// # File layout
//
// The file has four buckets, the first and last named for the tables
// their records are sealed for (store.TableBindings, store.TablePending,
// store.TableMeta):
//
//	bindings         key "team_id/user_id"        value sealed Binding
//	pending          key SHA-256(state)           value expiry (8 bytes, big-endian unix nanoseconds) ‖ sealed Pending
//	pending_by_user  key "team_id/user_id"        value SHA-256(state) of that user's one live pending link
//	meta             key "schema"                 value schema version, decimal ASCII ("1")
//	                 key "canary"                 value a sealed known value that proves the keyring fits the file
//
// The pending_by_user index exists so that creating a link for a user
// retires the previous one in the same transaction: each Slack user has at
// most one live link. A retired link that holds tokens stays in the
// pending bucket, out of the index and with an expiry in the past, until
// [DB.ListExpired] lists it, the caller revokes its tokens, and
// [DB.DeletePending] removes it.
//
// # What rotation does not erase
//
// bbolt does not wipe the pages it frees. After [DB.Rotate], and after
// deleting or replacing records, the old ciphertexts can remain in free
// pages of the file, and so in the output of [DB.Backup] and in any copy of
// the file, until the file is compacted with [Compact], which needs the
// store closed by everyone else. Rotation therefore protects new records from a
// leaked old key, not the tokens that were sealed under it: if a key has
// leaked, revoke the grants it protected as well as rotating.
//
// # Concurrency
//
// A [DB] is safe for concurrent use by many goroutines; bbolt serialises
// writers and lets readers run in parallel. Only one process can open a file
// for writing at a time: a second one gets ErrLocked after
// [Options.LockTimeout]. A process waiting for the lock while the file is
// replaced (by [Compact]) opens the new file, never the old one. Each method
// that does I/O takes a context, which is checked before the work starts;
// bbolt itself cannot be interrupted.
//
// # Damage
//
// Nothing read from the file is trusted: a key or value of any length or
// content, or a nested bucket where a record belongs, makes the method that
// meets it fail with ErrCorrupt or ErrWrongKey (naming the record's key
// id when it has one), never panic. A binding that does not open can still
// be replaced ([DB.PutBinding], [DB.ReplaceBinding]) and deleted
// ([DB.DeleteBinding], [DB.DeleteBindingIfUnreadable]); a damaged pending
// link is listed by [DB.ListExpired] with its error and removed by
// [DB.DeletePending], a nested bucket in its place included.
package bolt
