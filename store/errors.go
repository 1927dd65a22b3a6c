package store

import "errors"

// Sentinel errors returned by this package and by every backend (such as
// store/bolt); the method names below are a backend's. Match them with
// [errors.Is]; the returned errors wrap them with more detail. They are
// safe to share between goroutines and never carry key or token material.
var (
	// ErrNotFound is returned when a binding or pending link does not exist:
	// GetBinding, DeleteBinding, DeleteBindingIf, DeleteBindingIfUnreadable
	// and UpdateTokens for a user with no binding, and RedeemPending for a state that is unknown,
	// malformed or already redeemed.
	ErrNotFound = errors.New("not found")

	// ErrExpired is returned by RedeemPending when the pending link exists
	// but its expiry has passed (or it was replaced by a newer link while it
	// held tokens). The link is deleted all the same, and RedeemPending
	// returns it alongside ErrExpired so that its tokens can be revoked.
	ErrExpired = errors.New("pending link expired")

	// ErrLocked is returned by Open when another process holds the store
	// (for bbolt, the file) and did not release it within the backend's
	// lock timeout.
	ErrLocked = errors.New("store is locked by another process")

	// ErrWrongKey is returned when the keyring does not fit the store: by
	// Open when the canary does not open with any key in the ring (or, as a
	// MissingKeysError, when records need a key it lacks), and by any
	// method that meets a record sealed under a key id the ring does not
	// hold. The message names the key id, never the key.
	ErrWrongKey = errors.New("keyring does not match the store")

	// ErrConflict is returned by UpdateTokens and DeleteBindingIf when the
	// stored refresh token is no longer the one the caller holds: another
	// refresh or a relink got there first, and nothing was written; and by
	// DeleteBindingIfUnreadable when the record opens (a good binding was
	// stored since), which it then leaves alone.
	ErrConflict = errors.New("binding changed since the refresh started")

	// ErrSchema is returned by Open when the store was written by a newer
	// version of forcebind (or carries a schema version this build does not
	// know); the message names both versions.
	ErrSchema = errors.New("unsupported store schema")

	// ErrCorrupt is returned when the store or a record in it fails
	// validation: for bbolt a file that is not a bbolt file, is truncated or
	// empty, or is not a forcebind store; for every backend a record that is
	// malformed or does not authenticate (tampered with, or copied from
	// another place).
	ErrCorrupt = errors.New("store is corrupt")
)
