package bolt

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/store"
)

// CreatePending stores p and returns the state that redeems it: 32 random
// bytes in unpadded base64url. Only SHA-256 of the state is stored. Each
// Slack user has at most one live pending link: creating one retires the
// user's previous link in the same transaction. A previous link without a
// Binding is deleted. One that holds a Binding (tokens awaiting
// confirmation) is not dropped with its tokens: it is expired instead, so
// that its state redeems only to ErrExpired and the next ListExpired
// returns it for the caller to revoke. A previous link that does not open is
// left for ListExpired too. TeamID and UserID are required; a zero Created
// means now; Expires must be after both Created and now. It is safe for
// concurrent use.
func (db *DB) CreatePending(ctx context.Context, p store.Pending) (state string, err error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	now := db.now()
	n, err := db.keyring.NewPending(p, now)
	if err != nil {
		return "", fmt.Errorf("create pending: %w", err)
	}
	userKey, state, key, val := n.UserKey, n.State, n.Key, n.Record

	err = db.update(func(tx *bbolt.Tx) error {
		pending, byUser := tx.Bucket(bucketPending), tx.Bucket(bucketByUser)
		if old := byUser.Get(userKey); old != nil {
			if err := db.retirePending(pending, bytes.Clone(old), now); err != nil {
				return err
			}
		}
		if err := pending.Put(key, val); err != nil {
			return err
		}
		return putValue(byUser, userKey, key)
	})
	if err != nil {
		return "", fmt.Errorf("create pending for %s: %w", userKey, err)
	}
	return state, nil
}

// RedeemPending spends a state: the pending link is found, checked and
// deleted in one transaction, so a state redeems at most once however many
// callers race. It returns ErrNotFound for a state that is unknown,
// malformed or already spent, and ErrExpired (after deleting the link) for
// one whose expiry has passed or that a newer link replaced. With
// ErrExpired it also returns the link, which is then valid and complete:
// the caller should revoke the tokens in its Binding, which no one else
// will see again. Any string is safe to pass. It is safe for concurrent
// use.
func (db *DB) RedeemPending(ctx context.Context, state string) (store.Pending, error) {
	if err := ctx.Err(); err != nil {
		return store.Pending{}, err
	}
	key, ok := store.StateKey(state)
	if !ok {
		return store.Pending{}, fmt.Errorf("redeem pending: %w", store.ErrNotFound)
	}

	var (
		p       store.Pending
		openErr error
	)
	err := db.update(func(tx *bbolt.Tx) error {
		pending := tx.Bucket(bucketPending)
		val := pending.Get(key)
		if val == nil {
			return store.ErrNotFound
		}
		// Open before deleting: val points into pages the delete may free.
		p, openErr = db.keyring.OpenPending(key, val)
		if err := pending.Delete(key); err != nil {
			return err
		}
		// Whatever happens next, the link is spent: commit the delete.
		var userKey []byte
		if openErr == nil {
			userKey, _ = store.BindingKey(p.TeamID, p.UserID)
		}
		return dropIndex(tx.Bucket(bucketByUser), userKey, [][]byte{key})
	})
	switch {
	case err != nil:
		return store.Pending{}, fmt.Errorf("redeem pending: %w", err)
	case openErr != nil:
		return store.Pending{}, fmt.Errorf("redeem pending: %w", openErr)
	case !db.now().Before(p.Expires):
		return p, fmt.Errorf("redeem pending for %s/%s: %w at %s", p.TeamID, p.UserID, store.ErrExpired, p.Expires.Format(time.RFC3339))
	}
	return p, nil
}

// ListExpired returns every pending link whose expiry has passed, without
// removing any: the caller revokes the tokens a link holds in its Binding
// first, then removes the link with DeletePending, so that a revocation
// that failed can be tried again later with the link still there. It
// decides from the plaintext expiry stored beside each sealed link, so a
// link that no longer opens (or a nested bucket where a link belongs) is
// listed too, with only Expires set and its error, for DeletePending to
// remove. The store does not sweep by itself; the caller runs this on its
// own schedule. Nothing read from the file makes it panic. It is safe for
// concurrent use.
func (db *DB) ListExpired(ctx context.Context) ([]store.ExpiredLink, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := db.now()
	var links []store.ExpiredLink
	err := db.view(func(tx *bbolt.Tx) error {
		links = nil
		c := tx.Bucket(bucketPending).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			// Nothing here is trusted: a damaged key or value (even a
			// nested bucket, whose v is nil) is listed with its error,
			// never sliced blindly, so that one bad record neither panics
			// the sweep nor hides from it.
			l, ok := db.keyring.Expired(k, v, now)
			if !ok {
				continue
			}
			links = append(links, l)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list expired pending links: %w", err)
	}
	return links, nil
}

// DeletePending removes the pending link that ListExpired named id, with
// its entry in the per-user index and any index entry that points at no
// link. Whatever is stored under id goes, a nested bucket that a damaged
// file holds there included, so that a damaged link listed by ListExpired
// is not listed again every round. It returns ErrNotFound when there is no
// such key (any string is safe to pass). It is safe for concurrent use.
func (db *DB) DeletePending(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := store.LinkKey(id)
	if err != nil {
		return fmt.Errorf("delete pending link: %w", err)
	}
	err = db.update(func(tx *bbolt.Tx) error {
		pending := tx.Bucket(bucketPending)
		// Get answers nil for a nested bucket as for a missing key: only
		// a cursor tells them apart.
		if k, _ := pending.Cursor().Seek(key); !bytes.Equal(k, key) {
			return store.ErrNotFound
		}
		if err := deleteKeys(pending, [][]byte{key}); err != nil {
			return err
		}
		return pruneIndex(tx.Bucket(bucketByUser), pending)
	})
	if err != nil {
		return fmt.Errorf("delete pending link %s: %w", store.ShortLinkID(id), err)
	}
	return nil
}

// retirePending takes the pending link at key out of use when a newer link
// for the same user replaces it; the caller repoints the user's index entry.
// A link holding a Binding keeps its tokens until someone can revoke them:
// it is re-sealed with an expiry just before now, so that RedeemPending
// refuses it with ErrExpired and ListExpired returns it. A link that does
// not open may hold tokens too, so it is left as it is, and ListExpired
// reports it at its own expiry for DeletePending to remove.
func (db *DB) retirePending(pending *bbolt.Bucket, key []byte, now time.Time) error {
	val := pending.Get(key)
	if val == nil {
		return nil
	}
	p, err := db.keyring.OpenPending(key, val)
	switch {
	case err != nil:
		return nil
	case p.Binding == nil:
		return pending.Delete(key)
	}
	// The expiry is in the associated data and inside the record, which
	// RedeemPending checks, so both change and the link is sealed again.
	if past := now.Add(-time.Nanosecond); past.Before(p.Expires) {
		p.Expires = past
	}
	val, err = db.keyring.SealPending(key, p)
	if err != nil {
		return err
	}
	return pending.Put(key, val)
}

// pruneIndex removes the per-user index entries that point at no pending
// link: that of the link just deleted, and any a damaged file holds. The
// index has one entry per live link, so the scan stays small.
func pruneIndex(byUser, pending *bbolt.Bucket) error {
	var users [][]byte
	err := byUser.ForEach(func(u, k []byte) error {
		if k == nil || pending.Get(k) == nil {
			users = append(users, bytes.Clone(u))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return deleteKeys(byUser, users)
}

// dropIndex removes the per-user index entries that point at the given
// pending keys. With userKey known it is one lookup; otherwise it scans the
// index, which holds one entry per live link and stays small.
func dropIndex(byUser *bbolt.Bucket, userKey []byte, keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	if userKey != nil && len(keys) == 1 {
		if bytes.Equal(byUser.Get(userKey), keys[0]) {
			return byUser.Delete(userKey)
		}
		return nil
	}
	gone := make(map[string]bool, len(keys))
	for _, k := range keys {
		gone[string(k)] = true
	}
	var users [][]byte
	err := byUser.ForEach(func(u, k []byte) error {
		if gone[string(k)] {
			users = append(users, bytes.Clone(u))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, u := range users {
		if err := byUser.Delete(u); err != nil {
			return err
		}
	}
	return nil
}
