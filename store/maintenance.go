package store

import (
	"bytes"
	"context"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// Rotate re-seals every record (bindings, pending links and the canary)
// under the keyring's primary key, in one transaction: either all of them
// move or none does. It returns how many records it re-sealed. Once it has
// returned, keys other than the primary can be dropped from the ring. It
// needs a writable store, blocks other writers while it runs, and is safe
// for concurrent use.
func (db *DB) Rotate(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		n = 0
		type update struct{ key, val []byte }

		// bbolt cursors must not see the bucket change under them, so each
		// bucket is read in full before it is written.
		var ups []update
		err := tx.Bucket(bucketBindings).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			pt, err := db.keyring.open(bucketBindings, k, nil, v)
			if err != nil {
				return fmt.Errorf("binding %s: %w", k, err)
			}
			ups = append(ups, update{bytes.Clone(k), db.keyring.seal(bucketBindings, k, nil, pt)})
			return nil
		})
		if err != nil {
			return err
		}
		bk := tx.Bucket(bucketBindings)
		for _, u := range ups {
			if err := bk.Put(u.key, u.val); err != nil {
				return err
			}
		}
		n += len(ups)

		ups = ups[:0]
		err = tx.Bucket(bucketPending).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if len(v) < expiryLen {
				return fmt.Errorf("pending %x…: %w: value is %d bytes", k[:min(4, len(k))], ErrCorrupt, len(v))
			}
			exp := bytes.Clone(v[:expiryLen])
			pt, err := db.keyring.open(bucketPending, k, exp, v[expiryLen:])
			if err != nil {
				return fmt.Errorf("pending %x…: %w", k[:min(4, len(k))], err)
			}
			ups = append(ups, update{bytes.Clone(k), append(exp, db.keyring.seal(bucketPending, k, exp, pt)...)})
			return nil
		})
		if err != nil {
			return err
		}
		pk := tx.Bucket(bucketPending)
		for _, u := range ups {
			if err := pk.Put(u.key, u.val); err != nil {
				return err
			}
		}
		n += len(ups)

		if err := db.resealCanary(tx); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("rotate to key %s: %w", db.keyring.PrimaryID(), err)
	}
	return n, nil
}

// Backup writes a consistent copy of the whole file to w while the store
// stays in use (a read transaction pins the snapshot; writers are not
// blocked). The copy is itself a valid store, sealed under the same keys. It
// returns the number of bytes written and is safe for concurrent use.
func (db *DB) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("backup store %s: %w", db.path, err)
	}
	return n, nil
}
