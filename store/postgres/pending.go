package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/forcebind/forcebind/store"
)

// CreatePending stores p and returns the state that redeems it: 32 random
// bytes in unpadded base64url. Only SHA-256 of the state is stored. Each
// Slack user has at most one live pending link: creating one retires the
// user's previous links in the same transaction, which holds a lock on
// the user (a transaction advisory lock) so that two processes creating
// links for one person at once leave one live link. A previous link
// without a Binding is deleted; one that holds a Binding is expired
// instead, so that its state redeems only to ErrExpired and the next
// ListExpired returns it for the caller to revoke; one that does not open
// is left for ListExpired. TeamID and UserID are required; a zero Created
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
	p, userKey, state, key, val := n.Pending, n.UserKey, n.State, n.Key, n.Record
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, pendingLock, userLock(userKey)); err != nil {
			return err
		}
		if err := db.retirePending(ctx, tx, userKey, now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO `+tablePending+` (key, user_key, expires, record) VALUES ($1, $2, $3, $4)`,
			key, string(userKey), p.Expires, val)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("create pending for %s: %w", userKey, err)
	}
	return state, nil
}

// userLock is the second key of a user's pending lock.
func userLock(userKey []byte) int32 {
	sum := sha256.Sum256(userKey)
	return int32(binary.BigEndian.Uint32(sum[:]))
}

// retirePending takes the links of userKey out of use, in tx, when a newer
// one replaces them. A link holding a Binding keeps its tokens until
// someone can revoke them: it is sealed again with an expiry just before
// now (in the record and its column), so that RedeemPending refuses it
// with ErrExpired and ListExpired returns it. A link that does not open
// may hold tokens too, so it is left as it is.
func (db *DB) retirePending(ctx context.Context, tx pgx.Tx, userKey []byte, now time.Time) error {
	rows, err := tx.Query(ctx, `SELECT key, record FROM `+tablePending+` WHERE user_key = $1 FOR UPDATE`, string(userKey))
	if err != nil {
		return err
	}
	type link struct{ key, val []byte }
	links, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (link, error) {
		var l link
		return l, r.Scan(&l.key, &l.val)
	})
	if err != nil {
		return err
	}
	past := now.Add(-time.Nanosecond)
	for _, l := range links {
		p, err := db.keyring.OpenPending(l.key, l.val)
		switch {
		case err != nil:
			continue
		case p.Binding == nil:
			if _, err := tx.Exec(ctx, `DELETE FROM `+tablePending+` WHERE key = $1`, l.key); err != nil {
				return err
			}
			continue
		case !past.Before(p.Expires):
			continue // retired already
		}
		p.Expires = past
		val, err := db.keyring.SealPending(l.key, p)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE `+tablePending+` SET expires = $2, record = $3 WHERE key = $1`, l.key, p.Expires, val); err != nil {
			return err
		}
	}
	return nil
}

// RedeemPending spends a state: the link is deleted and returned by one
// statement (DELETE … RETURNING), so a state redeems at most once however
// many callers race, on however many processes. It returns ErrNotFound
// for a state that is unknown, malformed or already spent, and ErrExpired
// (after deleting the link) for one whose expiry has passed or that a
// newer link replaced; with ErrExpired it also returns the link, whose
// Binding's tokens the caller should revoke. Any string is safe to pass.
// It is safe for concurrent use.
func (db *DB) RedeemPending(ctx context.Context, state string) (store.Pending, error) {
	if err := ctx.Err(); err != nil {
		return store.Pending{}, err
	}
	key, ok := store.StateKey(state)
	if !ok {
		return store.Pending{}, fmt.Errorf("redeem pending: %w", store.ErrNotFound)
	}
	var val []byte
	err := db.pool.QueryRow(ctx, `DELETE FROM `+tablePending+` WHERE key = $1 RETURNING record`, key).Scan(&val)
	if err != nil {
		return store.Pending{}, fmt.Errorf("redeem pending: %w", notFound(err))
	}
	p, err := db.keyring.OpenPending(key, val)
	switch {
	case err != nil:
		return store.Pending{}, fmt.Errorf("redeem pending: %w", err)
	case !db.now().Before(p.Expires):
		return p, fmt.Errorf("redeem pending for %s/%s: %w at %s", p.TeamID, p.UserID, store.ErrExpired, p.Expires.Format(time.RFC3339))
	}
	return p, nil
}

// ListExpired returns every pending link whose expiry has passed, without
// removing any: the caller revokes the tokens a link holds in its Binding
// first, then removes the link with DeletePending. The expiry column finds
// the candidates (it holds microseconds; the record's plaintext expiry,
// in nanoseconds, decides), so a link that no longer opens is listed too,
// with only Expires set and its error. It is safe for concurrent use.
func (db *DB) ListExpired(ctx context.Context) ([]store.ExpiredLink, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := db.now()
	rows, err := db.pool.Query(ctx, `SELECT key, record FROM `+tablePending+`
		WHERE expires <= $1 OR length(record) < 8 ORDER BY key`, now)
	if err != nil {
		return nil, fmt.Errorf("list expired pending links: %w", err)
	}
	var (
		links  []store.ExpiredLink
		k, val []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&k, &val}, func() error {
		l, ok := db.keyring.Expired(k, val, now)
		if !ok {
			return nil
		}
		links = append(links, l)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list expired pending links: %w", err)
	}
	return links, nil
}

// DeletePending removes the pending link that ListExpired named id. It
// returns ErrNotFound when there is no such link (any string is safe to
// pass). It is safe for concurrent use.
func (db *DB) DeletePending(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := store.LinkKey(id)
	if err != nil {
		return fmt.Errorf("delete pending link: %w", err)
	}
	tag, err := db.pool.Exec(ctx, `DELETE FROM `+tablePending+` WHERE key = $1`, key)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete pending link %s: %w", store.ShortLinkID(id), err)
	}
	return nil
}
