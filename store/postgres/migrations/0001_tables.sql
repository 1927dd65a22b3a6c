-- Schema 1: the tables of a binding store. Every record column holds the
-- bytes package store seals, exactly as store/bolt keeps them, with the
-- table (store.TableBindings, store.TablePending, store.TableMeta) and the
-- key in each record's associated data: a dump of these tables, a backup or
-- a replica of the database holds no token in the clear, and a record moved
-- to another row does not open.

CREATE TABLE forcebind_bindings (
    key    text PRIMARY KEY,  -- "team_id/user_id"
    record bytea NOT NULL     -- sealed Binding
);

CREATE TABLE forcebind_pending (
    key      bytea PRIMARY KEY,     -- SHA-256(state); the state itself is never stored
    user_key text NOT NULL,         -- "team_id/user_id" of the person the link is for
    expires  timestamptz NOT NULL,  -- the plaintext expiry, for the sweep's index
    record   bytea NOT NULL         -- expiry (8 bytes, big-endian unix nanoseconds) ‖ sealed Pending
);
CREATE INDEX forcebind_pending_user_key ON forcebind_pending (user_key);
CREATE INDEX forcebind_pending_expires ON forcebind_pending (expires);

-- "canary": a sealed known value that proves the keyring fits the store;
-- "bindings": the number of bindings, decimal ASCII, kept in the same
-- transaction as every write that adds or removes one.
CREATE TABLE forcebind_meta (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);
