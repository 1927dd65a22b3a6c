package bolt

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/store"
)

// putBinding stores a sealed binding record at key, replacing whatever
// was there, and counts it if it is new.
func putBinding(tx *bbolt.Tx, key, rec []byte) error {
	bk := tx.Bucket(bucketBindings)
	existed := bk.Get(key) != nil || bk.Bucket(key) != nil
	if err := putValue(bk, key, rec); err != nil {
		return err
	}
	if existed {
		return nil
	}
	return addBindings(tx, 1)
}

// PutBindings stores bs as PutBinding would, all in one transaction: one
// fsync for the lot, for copying a store and for tests that need many
// bindings. Either all are stored or none is. It is safe for concurrent use.
func (db *DB) PutBindings(ctx context.Context, bs []store.Binding) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	type sealed struct{ key, rec []byte }
	recs := make([]sealed, len(bs))
	for i, b := range bs {
		key, err := store.BindingKey(b.TeamID, b.UserID)
		if err != nil {
			return fmt.Errorf("put bindings: %w", err)
		}
		rec, err := db.keyring.SealBinding(key, b)
		if err != nil {
			return fmt.Errorf("put bindings %s: %w", key, err)
		}
		recs[i] = sealed{key, rec}
	}
	err := db.update(func(tx *bbolt.Tx) error {
		for _, r := range recs {
			if err := putBinding(tx, r.key, r.rec); err != nil {
				return fmt.Errorf("%s: %w", r.key, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put bindings: %w", err)
	}
	return nil
}

// GetBinding returns the binding of a Slack user, or ErrNotFound. It is safe
// for concurrent use.
func (db *DB) GetBinding(ctx context.Context, teamID, userID string) (store.Binding, error) {
	if err := ctx.Err(); err != nil {
		return store.Binding{}, err
	}
	key, err := store.BindingKey(teamID, userID)
	if err != nil {
		return store.Binding{}, fmt.Errorf("get binding: %w", err)
	}
	var b store.Binding
	err = db.view(func(tx *bbolt.Tx) error {
		rec := tx.Bucket(bucketBindings).Get(key)
		if rec == nil {
			return store.ErrNotFound
		}
		b, err = db.keyring.OpenBinding(key, rec)
		return err
	})
	if err != nil {
		return store.Binding{}, fmt.Errorf("get binding %s: %w", key, err)
	}
	return b, nil
}

// PutBinding stores b, replacing any binding of the same Slack user without
// opening it, so a binding that does not open (damaged, or sealed under a
// key the ring lacks) is replaced too. TeamID and UserID are required and
// may not contain '/'. The write is durable
// (fsynced) when PutBinding returns. It is safe for concurrent use.
func (db *DB) PutBinding(ctx context.Context, b store.Binding) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := store.BindingKey(b.TeamID, b.UserID)
	if err != nil {
		return fmt.Errorf("put binding: %w", err)
	}
	rec, err := db.keyring.SealBinding(key, b)
	if err != nil {
		return fmt.Errorf("put binding %s: %w", key, err)
	}
	// Whatever the old record was, it is not opened: a binding that no
	// longer opens (damaged, or under a key the ring lacks) must not keep
	// its owner from connecting again.
	err = db.update(func(tx *bbolt.Tx) error {
		return putBinding(tx, key, rec)
	})
	if err != nil {
		return fmt.Errorf("put binding %s: %w", key, err)
	}
	return nil
}

// ReplaceBinding stores b as PutBinding does, replacing any binding of the
// same Slack user whether or not its record opens, and returns what it
// replaced, read in the same write transaction. A grant stored between a
// caller's read and its write (a refresh that rotated the token, another
// confirmed link) is thus the one handed back for revoking, never
// overwritten unseen. It is safe for concurrent use.
func (db *DB) ReplaceBinding(ctx context.Context, b store.Binding) (store.Replaced, error) {
	if err := ctx.Err(); err != nil {
		return store.Replaced{}, err
	}
	key, err := store.BindingKey(b.TeamID, b.UserID)
	if err != nil {
		return store.Replaced{}, fmt.Errorf("replace binding: %w", err)
	}
	rec, err := db.keyring.SealBinding(key, b)
	if err != nil {
		return store.Replaced{}, fmt.Errorf("replace binding %s: %w", key, err)
	}
	var old store.Replaced
	err = db.update(func(tx *bbolt.Tx) error {
		old = store.Replaced{}
		if prev := tx.Bucket(bucketBindings).Get(key); prev != nil {
			old.Found = true
			// An old record that does not open is replaced all the same:
			// it must not keep its owner from connecting again.
			if old.Binding, old.Err = db.keyring.OpenBinding(key, prev); old.Err != nil {
				old.Binding = store.Binding{}
				old.Err = fmt.Errorf("replaced binding %s: %w", key, old.Err)
			}
		}
		return putBinding(tx, key, rec)
	})
	if err != nil {
		return store.Replaced{}, fmt.Errorf("replace binding %s: %w", key, err)
	}
	return old, nil
}

// DeleteBinding removes the binding of a Slack user, or returns ErrNotFound
// when there was none. It does not open the record, so it also removes one
// that does not open (GetBinding's ErrCorrupt or ErrWrongKey). It is safe
// for concurrent use.
func (db *DB) DeleteBinding(ctx context.Context, teamID, userID string) error {
	return db.deleteBinding(ctx, teamID, userID, nil)
}

// DeleteBindingIfUnreadable removes the binding of a Slack user, but only
// while its record still does not open (GetBinding's ErrCorrupt or
// ErrWrongKey); the check and the delete happen in one transaction. It is
// for removing a record whose tokens cannot be read without removing a
// good binding stored in the meantime (a confirmed link), whose grant
// would stay live at Salesforce with no record of it. It returns
// ErrConflict, and changes nothing, when the record opens, and ErrNotFound
// when there is none. It is safe for concurrent use.
func (db *DB) DeleteBindingIfUnreadable(ctx context.Context, teamID, userID string) error {
	return db.deleteBinding(ctx, teamID, userID, func(key, rec []byte) error {
		_, err := db.keyring.OpenBinding(key, rec)
		switch {
		case err == nil:
			return store.ErrConflict
		case errors.Is(err, store.ErrWrongKey) || errors.Is(err, store.ErrCorrupt):
			return nil
		}
		return err
	})
}

// DeleteBindingIf removes the binding of a Slack user, but only if its
// refresh token is still refreshToken; the check and the delete happen in
// one transaction. It is for deleting a binding whose grant was found dead
// (the refresh token was revoked or expired) without clobbering a newer
// binding stored in the meantime, such as one from a relink or a refresh
// that won a race. It returns ErrConflict, and changes nothing, when the
// stored refresh token differs, and ErrNotFound when there is no binding.
// It is safe for concurrent use.
func (db *DB) DeleteBindingIf(ctx context.Context, teamID, userID, refreshToken string) error {
	return db.deleteBinding(ctx, teamID, userID, func(key, rec []byte) error {
		b, err := db.keyring.OpenBinding(key, rec)
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare([]byte(b.RefreshToken), []byte(refreshToken)) != 1 {
			return store.ErrConflict
		}
		return nil
	})
}

// deleteBinding removes a binding in one write transaction, after cond (if
// set) has accepted the stored record.
func (db *DB) deleteBinding(ctx context.Context, teamID, userID string, cond func(key, rec []byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := store.BindingKey(teamID, userID)
	if err != nil {
		return fmt.Errorf("delete binding: %w", err)
	}
	err = db.update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketBindings)
		rec := bk.Get(key)
		if rec == nil {
			return store.ErrNotFound
		}
		if cond != nil {
			if err := cond(key, rec); err != nil {
				return err
			}
		}
		if err := bk.Delete(key); err != nil {
			return err
		}
		return addBindings(tx, -1)
	})
	if err != nil {
		return fmt.Errorf("delete binding %s: %w", key, err)
	}
	return nil
}

// UpdateTokens stores the result of a refresh, but only if the binding's
// refresh token is still usedRefreshToken, the one the refresh spent; the
// check and the write happen in one transaction. Otherwise it returns
// ErrConflict and changes nothing: someone else refreshed (or relinked) in
// the meantime, and the caller should re-read the binding. A zero
// t.IssuedAt means now; an empty t.RefreshToken, t.InstanceURL or
// t.LoginURL keeps the stored one. It returns the binding as stored, or ErrNotFound
// when the binding is gone. It is safe for concurrent use.
func (db *DB) UpdateTokens(ctx context.Context, teamID, userID, usedRefreshToken string, t store.Tokens) (store.Binding, error) {
	if err := ctx.Err(); err != nil {
		return store.Binding{}, err
	}
	key, err := store.BindingKey(teamID, userID)
	if err != nil {
		return store.Binding{}, fmt.Errorf("update tokens: %w", err)
	}
	if t.IssuedAt.IsZero() {
		t.IssuedAt = db.now()
	}
	var b store.Binding
	err = db.update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketBindings)
		rec := bk.Get(key)
		if rec == nil {
			return store.ErrNotFound
		}
		b, err = db.keyring.OpenBinding(key, rec)
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare([]byte(b.RefreshToken), []byte(usedRefreshToken)) != 1 {
			return store.ErrConflict
		}
		b = t.Apply(b)
		rec, err := db.keyring.SealBinding(key, b)
		if err != nil {
			return err
		}
		return bk.Put(key, rec)
	})
	if err != nil {
		return store.Binding{}, fmt.Errorf("update tokens of %s: %w", key, err)
	}
	return b, nil
}

// CountBindings returns how many bindings the store holds, without opening
// them. It is safe for concurrent use.
func (db *DB) CountBindings(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int
	err := db.view(func(tx *bbolt.Tx) error {
		if db.walkCount {
			n = tx.Bucket(bucketBindings).Stats().KeyN
		} else {
			n = countBindings(tx)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count bindings: %w", err)
	}
	return n, nil
}
