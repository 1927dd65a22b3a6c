// Package store says what forcebind's binding store is, whatever keeps it:
// the records (a [Binding] from a Slack user to their Salesforce grant, a
// [Pending] link waiting for someone to finish logging in), the errors
// every backend returns, the [Keyring], and the sealed form in which every
// record is kept. How a store is kept is a backend's: store/bolt keeps it
// in one bbolt file, the default. store/storetest is the contract, a
// conformance suite that every backend passes.
//
// Everything secret is sealed with AES-256-GCM before a backend sees it,
// and a backend keeps exactly the sealed bytes this package makes
// ([Keyring.SealBinding], [Keyring.SealPending], [Keyring.SealCanary]), so
// records move between backends unchanged and open with the same keys.
//
// # Keys
//
// A [Keyring] holds one primary key, which seals, and any number of older
// keys, which only open, so keys can be rotated without downtime: put the
// new key first, restart, run the backend's Rotate, then drop the old key.
// A backend's Open checks a canary ([Keyring.CheckCanary]) and reads the
// key id in the header of every record, without decrypting ([KeyTally]),
// and refuses a ring that lacks one of them ([MissingKeysError]): dropping
// a key too early is caught at start, not at each person's next command.
// Rotate moves every record that opens and reports, per key id, what it
// could not ([RotateReport]); DeleteUnopenable is the way out when a key
// is lost for good.
//
// # Sealed records
//
// A sealed record is
//
//	version (1 byte, = 1) ‖ key id (4 bytes) ‖ nonce (12 bytes) ‖ ciphertext ‖ GCM tag (16 bytes)
//
// where the key id is the first 4 bytes of SHA-256("forcebind key id v1" ‖ 0 ‖ key);
// no key material is ever written. The associated data binds a record to its
// place: a label, the record header, the table ([TableBindings],
// [TablePending], [TableMeta]), the record key and (for pending links) the
// plaintext expiry, each length-prefixed. A ciphertext copied under another
// key or into another table therefore fails to open, and so does a pending
// link whose plaintext expiry was edited. The sealed plaintext is JSON.
//
// A binding's key is "team_id/user_id" ([BindingKey]). A pending link's
// key is SHA-256 of its state ([NewState], [StateKey]); the raw state is
// never stored, only its hash, so a copy of the store cannot be used to
// complete someone else's link. A pending link is stored as its plaintext
// expiry (8 bytes, big-endian Unix nanoseconds) followed by the sealed
// record, so that expired links can be found and removed even when they
// no longer open ([PendingExpiry]).
//
// Nothing read back is trusted: the functions that open records take any
// bytes and fail with [ErrCorrupt] or [ErrWrongKey] (naming the record's
// key id when it has one), never panic.
//
// # State outside the store
//
// The store is the only state forcebind shares between restarts. The
// following lives only in one process's memory; several replicas serving
// one Slack app would each have their own, and the issue that adds them
// has to share or replace each (file names are from the module root):
//
//   - Event dedupe (bot/dedupe.go, Bot.seen): the event ids and slash
//     command trigger ids seen in the last Config.DedupeWindow (15 minutes,
//     at most 200,000), so that Slack's retries are handled once. Slack may
//     retry on another replica's connection, so this must be shared: an
//     insert-if-absent of the id with an expiry, one statement, before the
//     event is handled.
//   - Per-user order (bot/pool.go, the pool's queues): one person's
//     messages run one at a time, in the order they came. Across replicas
//     this holds only if one person's events reach one replica, or with a
//     per-user lock around each command.
//   - Refresh single-flight (auth/tokens.go, Service.flights): concurrent
//     refreshes of one person's token become one call to Salesforce.
//     UpdateTokens's compare-and-swap already keeps the stored grant right
//     when two replicas refresh at once, but both would spend a refresh,
//     and with refresh token rotation on the loser's spent token can come
//     back as invalid_grant. Sharing needs a per-user lock held across the
//     refresh (such as a PostgreSQL advisory lock on team/user).
//   - Device pollers (auth/device.go, Service.pollers): at most one
//     device-flow poller per person, the device code it polls with (held
//     only there, never stored), and the claim that hands a live code out
//     again rather than asking for a second. A restart loses them (Close
//     tells each person their code stopped). Sharing needs the device code
//     sealed in the store beside the pending link and a per-person lease
//     on polling that another replica takes over when it lapses.
//   - Confirmation outcomes (auth/callback.go, Service.decided): how each
//     confirmation of the last 10 minutes ended (at most 1024), by the
//     SHA-256 of its form token, so that a second POST of the same one (a
//     double click, a reload) waits for the first and shows its page. The
//     pending link itself is redeemed once by the store on any replica;
//     what is not shared is the second POST's page, which on another
//     replica says "already used" instead. Sharing needs the outcome kept
//     by form-token hash with an expiry, and a way to wait for one still
//     running.
//   - The field-metadata cache (salesforce/fields.go, FieldCache, one per
//     Service): per org, user and object, which of the object table's
//     fields that user may read, for 15 minutes (whether they may read
//     the object at all, for 1). It is a cache: each replica may keep its own, at the
//     cost of its own metadata requests; an administrator's change shows
//     on each within the TTL.
//   - The sweep schedule (daemon.go, sweep and sweepEvery): each process
//     sweeps expired links every minute: it lists them (ListExpired),
//     revokes the tokens each held, and only then deletes it
//     (DeletePending), so that a revocation that failed is tried again
//     next round. Replicas sweeping at once may each revoke the same
//     grant (harmless: a second revoke finds the token already invalid)
//     and one of them deletes the link while the other gets ErrNotFound,
//     which the sweep ignores: safe but wasteful; one sweeper, by a lease
//     or leader election, is enough.
//
// # Concurrency
//
// Keyrings and the functions of this package are safe for concurrent use;
// the records are plain values. A backend says what it allows.
package store
