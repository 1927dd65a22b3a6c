package bolt

import (
	"context"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/store"
)

// SealedBy counts the live records (bindings and pending links) by the key
// id in their headers, without opening them: primary first, then the
// ring's other keys in order, then keys the ring lacks by id, then the
// records too damaged to name a key. A key with no records is left out. A
// record whose header names a key in the ring can still fail to open, if
// it was altered. It is safe for concurrent use and reads the store in one
// transaction.
func (db *DB) SealedBy(ctx context.Context) ([]store.KeyRecords, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var rs []store.KeyRecords
	err := db.view(func(tx *bbolt.Tx) error {
		rs = countSealedBy(db.keyring, tx).Records()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count records by key: %w", err)
	}
	return rs, nil
}

// countSealedBy reads the header of every binding and pending link in tx.
// It costs one cursor step and a few bytes' read per record, no
// decryption, so Open can afford it.
func countSealedBy(ring *store.Keyring, tx *bbolt.Tx) *store.KeyTally {
	tally := ring.Tally()
	if b := tx.Bucket(bucketBindings); b != nil {
		c := b.Cursor()
		for key, v := c.First(); key != nil; key, v = c.Next() {
			tally.AddBinding(v)
		}
	}
	if b := tx.Bucket(bucketPending); b != nil {
		c := b.Cursor()
		for key, v := c.First(); key != nil; key, v = c.Next() {
			tally.AddPending(v)
		}
	}
	return tally
}
