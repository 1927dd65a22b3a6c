package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

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
	err := db.update(func(tx *bolt.Tx) error {
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
// stays in use: a read transaction pins the snapshot. Writers go on, except
// one that must grow the file, which waits for the copy to end (and readers
// queue behind it), so w should be fast, such as a local file; stream that
// to a slow reader afterwards. The copy is itself a valid store, sealed
// under the same keys. It returns the number of bytes written and is safe
// for concurrent use.
func (db *DB) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int64
	err := db.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("backup store %s: %w", db.path, err)
	}
	return n, nil
}

// CompactTo writes a compacted copy of the store to path (created 0600, which
// must not exist): only live records, with none of the freed pages in which
// bbolt leaves old ciphertexts behind, such as records sealed under a key
// that Rotate has since replaced. It returns the new file's size. The copy
// is fsynced before CompactTo returns.
func (db *DB) CompactTo(ctx context.Context, path string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dst, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
		return os.OpenFile(name, flag|os.O_EXCL, mode)
	}})
	if err != nil {
		return 0, fmt.Errorf("compact to %s: %w", path, err)
	}
	if err := bolt.Compact(dst, db.bolt, 4<<20); err != nil {
		dst.Close()
		os.Remove(path)
		return 0, fmt.Errorf("compact to %s: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(path)
		return 0, fmt.Errorf("compact to %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
