package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/forcebind/forcebind/store"
)

// batchSize is how many records Rotate and DeleteUnopenable lock and write
// per transaction: small enough that the replicas serving people meanwhile
// wait at most one batch for a row, large enough that a store of 100,000
// bindings takes a few hundred transactions.
const batchSize = 500

// SealedBy counts the live records (bindings and pending links) by the key
// id in their headers, without opening them, in the order store.KeyTally
// gives. It reads both tables in one repeatable-read transaction, a
// consistent snapshot. It is safe for concurrent use.
func (db *DB) SealedBy(ctx context.Context) ([]store.KeyRecords, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var rs []store.KeyRecords
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		tally, err := db.tally(ctx, tx)
		if err == nil {
			rs = tally.Records()
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("count records by key: %w", err)
	}
	return rs, nil
}

// A record is one row of a table walked in batches.
type record struct{ key, val []byte }

// A table is what the batch walks need to know of one table.
type table struct {
	name   string
	keyArg func([]byte) any // a key as a query parameter
}

var (
	bindingsTable = table{tableBindings, func(k []byte) any { return string(k) }}
	pendingTable  = table{tablePending, func(k []byte) any {
		if k == nil {
			return []byte{} // not NULL, which nothing is greater than
		}
		return k
	}}
)

// eachBatch walks t in key order, batchSize rows at a time, each batch
// locked (FOR UPDATE) in a transaction of its own in which fn runs; a
// batch commits before the next is read. Rows written while it walks are
// seen if their keys come after the batch being read.
func (db *DB) eachBatch(ctx context.Context, t table, fn func(tx pgx.Tx, rs []record) error) error {
	after := t.keyArg(nil)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var n int
		err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT key, record FROM `+t.name+` WHERE key > $1 ORDER BY key LIMIT $2 FOR UPDATE`, after, batchSize)
			if err != nil {
				return err
			}
			rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (record, error) {
				var rec record
				return rec, r.Scan(&rec.key, &rec.val)
			})
			if err != nil || len(rs) == 0 {
				return err
			}
			n = len(rs)
			after = t.keyArg(rs[n-1].key)
			return fn(tx, rs)
		})
		if err != nil {
			return err
		}
		if n < batchSize {
			return nil
		}
	}
}

// Rotate re-seals every record (bindings, pending links and the canary)
// under the keyring's primary key, in batches of batchSize records per
// transaction, so that it runs while replicas serve: a person's refresh
// waits at most for one batch. A record that does not open is left as it
// was and counted in the report. When anything was left, Rotate returns
// the report with an error that matches ErrWrongKey if a key is missing
// and ErrCorrupt otherwise, naming every key id with its counts. A Rotate
// that fails part way has committed the batches before the failure, each
// record re-sealed whole; running it again finishes the work. Once it has
// returned no error, keys other than the primary can be dropped from the
// ring. It is safe for concurrent use.
func (db *DB) Rotate(ctx context.Context) (store.RotateReport, error) {
	if err := ctx.Err(); err != nil {
		return store.RotateReport{}, err
	}
	rep, left := store.RotateReport{}, db.keyring.Tally()
	err := db.eachBatch(ctx, bindingsTable, func(tx pgx.Tx, rs []record) error {
		var keys []string
		var recs [][]byte
		for _, r := range rs {
			rec, err := db.keyring.ResealBinding(r.key, r.val)
			if err != nil {
				left.AddBinding(r.val)
				continue
			}
			keys, recs = append(keys, string(r.key)), append(recs, rec)
		}
		_, err := tx.Exec(ctx, `UPDATE `+tableBindings+` AS b SET record = u.record
			FROM unnest($1::text[], $2::bytea[]) AS u(key, record) WHERE b.key = u.key`, keys, recs)
		if err == nil {
			rep.Resealed += len(keys)
		}
		return err
	})
	if err == nil {
		err = db.eachBatch(ctx, pendingTable, func(tx pgx.Tx, rs []record) error {
			var keys, vals [][]byte
			for _, r := range rs {
				val, err := db.keyring.ResealPending(r.key, r.val)
				if err != nil {
					left.AddPending(r.val)
					continue
				}
				keys, vals = append(keys, r.key), append(vals, val)
			}
			_, err := tx.Exec(ctx, `UPDATE `+tablePending+` AS p SET record = u.record
				FROM unnest($1::bytea[], $2::bytea[]) AS u(key, record) WHERE p.key = u.key`, keys, vals)
			if err == nil {
				rep.Resealed += len(keys)
			}
			return err
		})
	}
	if err == nil {
		err = db.resealCanary(ctx)
	}
	if err != nil {
		return store.RotateReport{}, fmt.Errorf("rotate to key %s: %w", db.keyring.PrimaryID(), err)
	}
	rep.Resealed++
	rep.Left = left.Records()
	if len(rep.Left) > 0 {
		return rep, fmt.Errorf("rotate to key %s: re-sealed %d records, but %w", db.keyring.PrimaryID(), rep.Resealed, left.UnopenedError("left as they were"))
	}
	return rep, nil
}

// resealCanary seals the canary again under the primary key, if it still
// opens with the ring.
func (db *DB) resealCanary(ctx context.Context) error {
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var canary []byte
		if err := tx.QueryRow(ctx, `SELECT value FROM `+tableMeta+` WHERE name = $1 FOR UPDATE`, metaCanary).Scan(&canary); err != nil {
			return fmt.Errorf("read the canary: %w", err)
		}
		if _, err := db.keyring.CheckCanary(canary); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE `+tableMeta+` SET value = $2 WHERE name = $1`, metaCanary, db.keyring.SealCanary())
		return err
	})
}

// DeleteUnopenable deletes every binding and pending link that does not
// open with the keyring (sealed under a key the ring lacks, or damaged), in
// batches as Rotate works, and returns what it deleted grouped as Rotate
// reports it. It is the way out when a key is lost for good; the grants
// those records held cannot be revoked from here. The binding count moves
// in the transaction of each batch. It is safe for concurrent use.
func (db *DB) DeleteUnopenable(ctx context.Context) ([]store.KeyRecords, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	gone := db.keyring.Tally()
	err := db.eachBatch(ctx, bindingsTable, func(tx pgx.Tx, rs []record) error {
		var keys []string
		for _, r := range rs {
			if _, err := db.keyring.Open(store.TableBindings, r.key, nil, r.val); err != nil {
				gone.AddBinding(r.val)
				keys = append(keys, string(r.key))
			}
		}
		if len(keys) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+tableBindings+` WHERE key = ANY($1::text[])`, keys); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, addCount, -len(keys))
		return err
	})
	if err == nil {
		err = db.eachBatch(ctx, pendingTable, func(tx pgx.Tx, rs []record) error {
			var keys [][]byte
			for _, r := range rs {
				if _, err := db.keyring.OpenPending(r.key, r.val); err != nil {
					gone.AddPending(r.val)
					keys = append(keys, r.key)
				}
			}
			if len(keys) == 0 {
				return nil
			}
			_, err := tx.Exec(ctx, `DELETE FROM `+tablePending+` WHERE key = ANY($1::bytea[])`, keys)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("delete records that do not open: %w", err)
	}
	return gone.Records(), nil
}
