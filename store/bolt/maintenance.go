package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/forcebind/forcebind/store"
)

// Rotate re-seals every record (bindings, pending links and the canary)
// under the keyring's primary key, in one transaction. A record that does
// not open (its key is not in the ring, or it was damaged) is left as it
// was and counted in the report, and the others move all the same: one lost
// key does not hold everyone else back. When anything was left, Rotate
// returns the report together with an error that matches ErrWrongKey if a
// key is missing and ErrCorrupt otherwise, and names every key id with its
// counts; the re-sealing is committed either way. Once it has returned no
// error, keys other than the primary can be dropped from the ring. It needs
// a writable store (opened with Options.AllowMissingKeys, to reach a store
// whose ring lacks a key), blocks other writers while it runs, and is safe
// for concurrent use.
func (db *DB) Rotate(ctx context.Context) (store.RotateReport, error) {
	if err := ctx.Err(); err != nil {
		return store.RotateReport{}, err
	}
	var (
		rep  store.RotateReport
		left *store.KeyTally
	)
	err := db.update(func(tx *bbolt.Tx) error {
		rep, left = store.RotateReport{}, db.keyring.Tally()
		type update struct{ key, val []byte }

		// bbolt cursors must not see the bucket change under them, so each
		// bucket is read in full before it is written.
		var ups []update
		err := tx.Bucket(bucketBindings).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			rec, err := db.keyring.ResealBinding(k, v)
			if err != nil {
				left.AddBinding(v)
				return nil
			}
			ups = append(ups, update{bytes.Clone(k), rec})
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
		rep.Resealed += len(ups)

		ups = ups[:0]
		err = tx.Bucket(bucketPending).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			val, err := db.keyring.ResealPending(k, v)
			if err != nil {
				left.AddPending(v)
				return nil
			}
			ups = append(ups, update{bytes.Clone(k), val})
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
		rep.Resealed += len(ups)

		// Open has checked the canary, so it opens; if it no longer does,
		// nothing is committed.
		if err := db.resealCanary(tx); err != nil {
			return err
		}
		rep.Resealed++
		return nil
	})
	if err != nil {
		return store.RotateReport{}, fmt.Errorf("rotate to key %s: %w", db.keyring.PrimaryID(), err)
	}
	rep.Left = left.Records()
	if len(rep.Left) > 0 {
		return rep, fmt.Errorf("rotate to key %s: re-sealed %d records, but %w", db.keyring.PrimaryID(), rep.Resealed, left.UnopenedError("left as they were"))
	}
	return rep, nil
}

// DeleteUnopenable deletes every binding and pending link that does not
// open with the keyring (sealed under a key the ring lacks, or damaged),
// with the pending_by_user entries that point at those links, in one
// transaction, and returns what it deleted grouped as [DB.Rotate] reports
// it. It is the way out when a key is lost for good: the records sealed
// under it can never be read again, and until they are gone Open refuses
// the ring. Their owners connect again; the grants they held cannot be
// revoked from here, because their tokens cannot be read. It needs a
// writable store and is safe for concurrent use.
func (db *DB) DeleteUnopenable(ctx context.Context) ([]store.KeyRecords, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var gone *store.KeyTally
	err := db.update(func(tx *bbolt.Tx) error {
		gone = db.keyring.Tally()
		var bindings, pending [][]byte
		err := tx.Bucket(bucketBindings).ForEach(func(k, v []byte) error {
			if _, err := db.keyring.Open(store.TableBindings, k, nil, v); err != nil {
				gone.AddBinding(v)
				bindings = append(bindings, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketPending).ForEach(func(k, v []byte) error {
			if _, err := db.keyring.OpenPending(k, v); err != nil {
				gone.AddPending(v)
				pending = append(pending, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := deleteKeys(tx.Bucket(bucketBindings), bindings); err != nil {
			return err
		}
		if err := addBindings(tx, -len(bindings)); err != nil {
			return err
		}
		if err := deleteKeys(tx.Bucket(bucketPending), pending); err != nil {
			return err
		}
		return dropIndex(tx.Bucket(bucketByUser), nil, pending)
	})
	if err != nil {
		return nil, fmt.Errorf("delete records that do not open: %w", err)
	}
	return gone.Records(), nil
}

// putValue puts v at k in b. A nested bucket in its place (which forcebind
// never writes, so the file was damaged) is deleted first rather than
// refusing the write for ever.
func putValue(b *bbolt.Bucket, k, v []byte) error {
	err := b.Put(k, v)
	if errors.Is(err, berrors.ErrIncompatibleValue) {
		if err = b.DeleteBucket(k); err == nil {
			err = b.Put(k, v)
		}
	}
	return err
}

// deleteKeys deletes keys from b; a key that holds a nested bucket (which
// forcebind never writes, so the file was damaged) goes with its bucket.
func deleteKeys(b *bbolt.Bucket, keys [][]byte) error {
	for _, k := range keys {
		err := b.Delete(k)
		if errors.Is(err, berrors.ErrIncompatibleValue) {
			err = b.DeleteBucket(k)
		}
		if err != nil {
			return err
		}
	}
	return nil
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
	err := db.view(func(tx *bbolt.Tx) error {
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
	dst, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
		return os.OpenFile(name, flag|os.O_EXCL, mode)
	}})
	if err != nil {
		return 0, fmt.Errorf("compact to %s: %w", path, err)
	}
	if err := bbolt.Compact(dst, db.bolt, 4<<20); err != nil {
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

// Compact rewrites the store at path with only its live records, as
// CompactTo does, and puts the result in its place. It works offline: it
// opens the store for writing with opts (opts.ReadOnly is ignored), so it
// returns ErrLocked while a daemon holds the file, and the refusals of
// Open apply. The compacted copy is written beside the file (path +
// ".compacting", fsynced), checked to open with the keyring, and renamed
// over path while the old file's lock is still held; only then is the old
// file closed. A process that opened the old file meanwhile and waits for
// its lock therefore never writes to it: Open sees that the file is no
// longer at path and opens the new one. It returns the sizes of the file
// before and after.
func Compact(ctx context.Context, path string, opts Options) (before, after int64, err error) {
	return compact(ctx, path, opts, os.Rename)
}

// compact is Compact with the rename as a parameter, so that a test can
// look at the lock at the moment the file is replaced.
func compact(ctx context.Context, path string, opts Options, rename func(from, to string) error) (before, after int64, err error) {
	opts.ReadOnly = false
	db, err := Open(path, opts)
	if err != nil {
		return 0, 0, err
	}
	// Closed last, after the rename: the lock on the old file is what
	// keeps other processes out until the new file is in place.
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	tmp := path + ".compacting"
	// Only a compaction holds this lock, so a copy found here was left by
	// one that died.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	after, err = db.CompactTo(ctx, tmp)
	if err != nil {
		return 0, 0, err
	}
	check := opts
	check.ReadOnly = true
	cdb, err := Open(tmp, check)
	if err == nil {
		err = cdb.Close()
	}
	if err != nil {
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("compact %s: the compacted copy does not open: %w", path, err)
	}
	if err := rename(tmp, path); err != nil {
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("compact %s: replace the file: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	return fi.Size(), after, nil
}

// syncDir makes a rename in dir durable; a failure only costs durability,
// and the rename itself has succeeded.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
