package postgres

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/forcebind/forcebind/store"
)

// addCount is the statement part that moves the binding count by its
// first parameter, never below zero; it runs in the transaction (or the
// statement) that adds or removes the bindings, as store/bolt's count
// does, so that CountBindings is one row's read at any size.
const addCount = `UPDATE ` + tableMeta + ` SET value = convert_to(greatest(convert_from(value, 'UTF8')::bigint + $1, 0)::text, 'UTF8') WHERE name = '` + metaBindings + `'`

// GetBinding returns the binding of a Slack user, or ErrNotFound: one
// query, one round trip. It is safe for concurrent use.
func (db *DB) GetBinding(ctx context.Context, teamID, userID string) (store.Binding, error) {
	if err := ctx.Err(); err != nil {
		return store.Binding{}, err
	}
	key, err := store.BindingKey(teamID, userID)
	if err != nil {
		return store.Binding{}, fmt.Errorf("get binding: %w", err)
	}
	var rec []byte
	err = db.pool.QueryRow(ctx, `SELECT record FROM `+tableBindings+` WHERE key = $1`, string(key)).Scan(&rec)
	if err == nil {
		var b store.Binding
		if b, err = db.keyring.OpenBinding(key, rec); err == nil {
			return b, nil
		}
	}
	return store.Binding{}, fmt.Errorf("get binding %s: %w", key, notFound(err))
}

// notFound turns pgx's ErrNoRows into store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// putBinding stores a sealed record at key in one statement, replacing
// what was there without opening it, and counts the binding if it is new
// (xmax is zero only on a row the statement inserted).
const putBinding = `WITH put AS (
	INSERT INTO ` + tableBindings + ` (key, record) VALUES ($2, $3)
	ON CONFLICT (key) DO UPDATE SET record = EXCLUDED.record
	RETURNING xmax = 0 AS inserted)
` + addCount + ` AND (SELECT inserted FROM put)`

// PutBinding stores b, replacing any binding of the same Slack user without
// opening it, so a binding that does not open (damaged, or sealed under a
// key the ring lacks) is replaced too. TeamID and UserID are required and
// may not contain '/'. The write is committed when PutBinding returns. It
// is safe for concurrent use.
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
	if _, err := db.pool.Exec(ctx, putBinding, 1, string(key), rec); err != nil {
		return fmt.Errorf("put binding %s: %w", key, err)
	}
	return nil
}

// insertBinding stores a sealed record at key if there is none, counting
// it, in one statement; it answers how many rows it inserted (0 or 1). ON
// CONFLICT DO NOTHING waits for a concurrent insert of the same key to
// end, so 0 means a row is there now, committed.
const insertBinding = `WITH ins AS (
	INSERT INTO ` + tableBindings + ` (key, record) VALUES ($2, $3)
	ON CONFLICT (key) DO NOTHING RETURNING 1),
cnt AS (` + addCount + ` AND EXISTS (SELECT 1 FROM ins) RETURNING 1)
SELECT count(*) FROM ins`

// ReplaceBinding stores b as PutBinding does, replacing any binding of the
// same Slack user whether or not its record opens, and returns what it
// replaced, read under the row lock in the transaction that writes. A
// grant stored by another process between a caller's read and its write
// (a refresh that rotated the token, another confirmed link) is thus the
// one handed back for revoking, never overwritten unseen. It is safe for
// concurrent use.
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
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// A row that is there is locked and read; one that is not is
		// inserted. Between the two another process can insert or delete
		// the row, so each step is tried again while the other fails.
		for range 10 {
			old = store.Replaced{}
			var prev []byte
			err := tx.QueryRow(ctx, `SELECT record FROM `+tableBindings+` WHERE key = $1 FOR UPDATE`, string(key)).Scan(&prev)
			switch {
			case err == nil:
				old.Found = true
				// A record that does not open is replaced all the same: it
				// must not keep its owner from connecting again.
				if old.Binding, old.Err = db.keyring.OpenBinding(key, prev); old.Err != nil {
					old.Binding = store.Binding{}
					old.Err = fmt.Errorf("replaced binding %s: %w", key, old.Err)
				}
				_, err := tx.Exec(ctx, `UPDATE `+tableBindings+` SET record = $2 WHERE key = $1`, string(key), rec)
				return err
			case !errors.Is(err, pgx.ErrNoRows):
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, insertBinding, 1, string(key), rec).Scan(&n); err != nil || n == 1 {
				return err
			}
		}
		return errors.New("the row was inserted and deleted by others at each of 10 tries")
	})
	if err != nil {
		return store.Replaced{}, fmt.Errorf("replace binding %s: %w", key, err)
	}
	return old, nil
}

// DeleteBindingIfUnreadable removes the binding of a Slack user, but only
// while its record still does not open (GetBinding's ErrCorrupt or
// ErrWrongKey): the row is locked and read again in the transaction that
// deletes it. It is for removing a record whose tokens cannot be read
// without removing a good binding stored in the meantime, by any process.
// It returns ErrConflict, and changes nothing, when the record opens, and
// ErrNotFound when there is none. It is safe for concurrent use.
func (db *DB) DeleteBindingIfUnreadable(ctx context.Context, teamID, userID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := store.BindingKey(teamID, userID)
	if err != nil {
		return fmt.Errorf("delete binding: %w", err)
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		_, err := db.lockBinding(ctx, tx, key)
		switch {
		case err == nil:
			return store.ErrConflict
		case errors.Is(err, store.ErrWrongKey) || errors.Is(err, store.ErrCorrupt):
			return execDelete(ctx, tx, key)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("delete binding %s: %w", key, err)
	}
	return nil
}

// deleteBinding removes the binding at key and uncounts it, in one
// statement; it answers how many rows went (0 or 1).
const deleteBinding = `WITH del AS (
	DELETE FROM ` + tableBindings + ` WHERE key = $2 RETURNING 1),
cnt AS (` + addCount + ` AND EXISTS (SELECT 1 FROM del) RETURNING 1)
SELECT count(*) FROM del`

// DeleteBinding removes the binding of a Slack user, or returns ErrNotFound
// when there was none. It does not open the record, so it also removes one
// that does not open. It is safe for concurrent use.
func (db *DB) DeleteBinding(ctx context.Context, teamID, userID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := store.BindingKey(teamID, userID)
	if err != nil {
		return fmt.Errorf("delete binding: %w", err)
	}
	if err := execDelete(ctx, db.pool, key); err != nil {
		return fmt.Errorf("delete binding %s: %w", key, err)
	}
	return nil
}

// An execer runs a statement that returns one row: a pool or a
// transaction.
type execer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// execDelete runs deleteBinding and returns ErrNotFound if nothing went.
func execDelete(ctx context.Context, q execer, key []byte) error {
	var n int
	if err := q.QueryRow(ctx, deleteBinding, -1, string(key)).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// DeleteBindingIf removes the binding of a Slack user, but only if its
// refresh token is still refreshToken. The binding's row is locked (SELECT
// … FOR UPDATE) and read again under the lock, in the transaction that
// deletes it, so the check holds across every process on the database. It
// returns ErrConflict, and changes nothing, when the stored refresh token
// differs, and ErrNotFound when there is no binding. It is safe for
// concurrent use.
func (db *DB) DeleteBindingIf(ctx context.Context, teamID, userID, refreshToken string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := store.BindingKey(teamID, userID)
	if err != nil {
		return fmt.Errorf("delete binding: %w", err)
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		b, err := db.lockBinding(ctx, tx, key)
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare([]byte(b.RefreshToken), []byte(refreshToken)) != 1 {
			return store.ErrConflict
		}
		return execDelete(ctx, tx, key)
	})
	if err != nil {
		return fmt.Errorf("delete binding %s: %w", key, err)
	}
	return nil
}

// lockBinding reads and opens the binding at key in tx, locking its row
// until tx ends.
func (db *DB) lockBinding(ctx context.Context, tx pgx.Tx, key []byte) (store.Binding, error) {
	var rec []byte
	err := tx.QueryRow(ctx, `SELECT record FROM `+tableBindings+` WHERE key = $1 FOR UPDATE`, string(key)).Scan(&rec)
	if err != nil {
		return store.Binding{}, notFound(err)
	}
	return db.keyring.OpenBinding(key, rec)
}

// UpdateTokens stores the result of a refresh, but only if the binding's
// refresh token is still usedRefreshToken, the one the refresh spent. The
// row is locked and read again under the lock in the transaction that
// writes it, so of several processes racing, one wins and the others get
// ErrConflict, changing nothing: someone else refreshed (or relinked) in
// the meantime, and the caller should re-read the binding. A zero
// t.IssuedAt means now; an empty t.RefreshToken, t.InstanceURL or
// t.LoginURL keeps the stored one. It returns the binding as stored, or ErrNotFound when the
// binding is gone. It is safe for concurrent use.
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
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		b, err = db.lockBinding(ctx, tx, key)
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
		_, err = tx.Exec(ctx, `UPDATE `+tableBindings+` SET record = $2 WHERE key = $1`, string(key), rec)
		return err
	})
	if err != nil {
		return store.Binding{}, fmt.Errorf("update tokens of %s: %w", key, err)
	}
	return b, nil
}

// CountBindings returns how many bindings the store holds, from the count
// kept beside them: one row's read, without opening any binding. It is
// safe for concurrent use.
func (db *DB) CountBindings(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var v []byte
	err := db.pool.QueryRow(ctx, `SELECT value FROM `+tableMeta+` WHERE name = $1`, metaBindings).Scan(&v)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			err = fmt.Errorf("%w: no binding count", store.ErrCorrupt)
		}
		return 0, fmt.Errorf("count bindings: %w", err)
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("count bindings: %w: the count %q is not a count", store.ErrCorrupt, v)
	}
	return n, nil
}
