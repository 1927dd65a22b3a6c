package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the version of the file layout this build reads and
// writes. Open refuses files with a higher version.
const SchemaVersion = 1

const (
	defaultLockTimeout = time.Second
	fileMode           = 0o600
	canaryPlaintext    = "forcebind canary v1"
)

var (
	bucketBindings = []byte("bindings")
	bucketPending  = []byte("pending")
	bucketByUser   = []byte("pending_by_user")
	bucketMeta     = []byte("meta")
	keySchema      = []byte("schema")
	keyCanary      = []byte("canary")
)

// allBuckets lists every bucket a schema-1 file has.
func allBuckets() [][]byte {
	return [][]byte{bucketBindings, bucketPending, bucketByUser, bucketMeta}
}

// Options configures Open. The zero value of every field but Keyring is
// usable. An Options is read by Open and not kept.
type Options struct {
	// Keyring seals and opens records. Required.
	Keyring *Keyring

	// LockTimeout is how long Open waits for another process to release
	// the file before it returns ErrLocked. Zero means one second.
	LockTimeout time.Duration

	// ReadOnly opens an existing file without creating or writing it, for
	// tools such as doctor and backup; the canary is still checked. Several
	// read-only opens can share a file, but not with a writer.
	ReadOnly bool

	// Now is the clock used for expiries. Nil means time.Now.
	Now func() time.Time
}

// A DB is an open store file. It is safe for concurrent use by many
// goroutines. It holds the file's lock until Close.
type DB struct {
	bolt    *bolt.DB
	keyring *Keyring
	now     func() time.Time
	path    string
}

// Open opens the store at path, creating it (mode 0600) unless
// opts.ReadOnly is set. A new file gets its buckets, schema version and
// canary. An existing file must carry a schema this build knows and a canary
// that opens with opts.Keyring. A canary sealed under an older key still in
// the ring is fine; a writable Open re-seals it under the primary, so that
// from then on a ring without the primary fails here, with ErrWrongKey,
// rather than on the first new record. Open returns ErrLocked when another
// process holds the file (also one it is still creating), ErrWrongKey when
// the keyring does not fit, ErrSchema for a newer file and ErrCorrupt for a
// file that is not a valid store; it does not panic on a damaged file.
func Open(path string, opts Options) (*DB, error) {
	if opts.Keyring == nil {
		return nil, fmt.Errorf("open store %s: no keyring", path)
	}
	timeout := opts.LockTimeout
	switch {
	case timeout == 0:
		timeout = defaultLockTimeout
	case timeout < 0:
		return nil, fmt.Errorf("open store %s: negative lock timeout %s", path, timeout)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}

	deadline := time.Now().Add(timeout)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && opts.ReadOnly:
		return nil, fmt.Errorf("open store %s read-only: %w", path, err)
	case err == nil && fi.Mode().IsRegular():
		if err := checkExisting(path, timeout, opts.ReadOnly); err != nil {
			return nil, fmt.Errorf("open store %s: %w", path, err)
		}
	}

	// What is left of the timeout, but never zero, which would make bbolt
	// wait forever.
	bdb, err := openBolt(path, max(time.Until(deadline), time.Millisecond), opts.ReadOnly)
	if err != nil {
		return nil, err
	}
	db := &DB{bolt: bdb, keyring: opts.Keyring, now: now, path: path}
	if err := db.validate(opts.ReadOnly); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return db, nil
}

// Close releases the file and its lock, waiting for running transactions to
// finish. Calling Close again returns nil.
func (db *DB) Close() error {
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", db.path, err)
	}
	return nil
}

// Path returns the path the store was opened with. It is safe for
// concurrent use, also after Close.
func (db *DB) Path() string {
	return db.path
}

// checkExisting checks an existing file before bbolt sees it, under the
// lock bbolt is about to take. Without the lock, a file another process is
// creating (empty, or with its first pages half written) would look
// damaged: the lock makes Open wait for that process, and report ErrLocked
// if it keeps the file, instead of ErrCorrupt. The lock is released before
// bbolt takes its own on another descriptor, which would otherwise conflict
// with it.
func checkExisting(path string, timeout time.Duration, readOnly bool) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed since the caller looked; bbolt creates it afresh
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := waitLock(f, timeout, readOnly); err != nil {
		return err
	}
	defer forceUnlock(f)

	fi, err := f.Stat()
	if err != nil {
		return err
	}
	// bbolt treats a zero-length file as new and would initialise it; a file
	// that exists but is empty has lost its contents, so say so instead.
	if fi.Size() == 0 {
		return fmt.Errorf("%w: the file exists but is empty; restore it from a backup, or remove it to start a new store", ErrCorrupt)
	}
	return checkBoltFile(f, fi.Size())
}

// waitLock takes the lock on f that bbolt would take, retrying as bbolt does
// until timeout, and returns ErrLocked if it cannot.
func waitLock(f *os.File, timeout time.Duration, readOnly bool) error {
	const retry = 50 * time.Millisecond // bbolt's interval
	deadline := time.Now().Add(timeout)
	for {
		ok, err := tryLock(f, readOnly)
		if err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if ok {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%w (waited %s)", ErrLocked, timeout)
		}
		time.Sleep(min(retry, left))
	}
}

// openBolt opens the bbolt file, turning bbolt's lock timeout into ErrLocked
// and its panics on damaged files into ErrCorrupt. A truncated file can make
// bbolt touch pages past the end of the mapping, which raises SIGBUS;
// SetPanicOnFault turns that into a panic we can recover.
func openBolt(path string, timeout time.Duration, readOnly bool) (bdb *bolt.DB, err error) {
	var file *os.File
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// bbolt's half-built DB is lost with the panic, and with it the
			// way to unmap the file; that mapping leaks (checkExisting makes
			// this path rare). The lock must not leak, or the next Open in
			// this process would report ErrLocked instead of the damage.
			if file != nil {
				forceUnlock(file)
				_ = file.Close()
			}
			bdb, err = nil, fmt.Errorf("open store %s: %w: bbolt failed on the file: %v", path, ErrCorrupt, r)
		}
	}()
	bdb, err = bolt.Open(path, fileMode, &bolt.Options{
		Timeout:  timeout,
		ReadOnly: readOnly,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	switch {
	case err == nil:
		return bdb, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open store %s: %w (waited %s)", path, ErrLocked, timeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("open store %s: %w: not a valid bbolt file: %v", path, ErrCorrupt, err)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open store %s: %w", path, err)
	default:
		// The remaining bbolt open errors ("file size too small", mmap
		// failures on a short file) mean the file cannot be a store.
		return nil, fmt.Errorf("open store %s: %w: %v", path, ErrCorrupt, err)
	}
}

// validate checks an opened file and initialises a new one. It is the first
// transaction on the file, so it also guards against bbolt panicking on
// damaged pages.
func (db *DB) validate(readOnly bool) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt failed reading the file: %v", ErrCorrupt, r)
		}
	}()

	fresh, oldCanary, err := db.check()
	switch {
	case err != nil:
		return err
	case fresh && readOnly:
		return fmt.Errorf("%w: the file has no forcebind data (it was never initialised), and read-only mode cannot initialise it", ErrCorrupt)
	case fresh:
		return db.initialise()
	case oldCanary && !readOnly:
		return db.bolt.Update(db.resealCanary)
	}
	return nil
}

// check validates the file in a read transaction. It reports fresh when the
// file is a valid but empty bbolt file, such as one bbolt has just created,
// and oldCanary when the canary opened with a key other than the primary.
func (db *DB) check() (fresh, oldCanary bool, err error) {
	tx, err := db.bolt.Begin(false)
	if err != nil {
		return false, false, err
	}
	defer func() { _ = tx.Rollback() }()

	// Every page the file claims must be inside the file; bbolt does not
	// check this and would read past the end of a truncated file.
	fi, err := os.Stat(db.path)
	if err != nil {
		return false, false, err
	}
	if tx.Size() > fi.Size() {
		return false, false, fmt.Errorf("%w: the file is %d bytes but its pages need %d; it was truncated", ErrCorrupt, fi.Size(), tx.Size())
	}

	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if k, _ := tx.Cursor().First(); k == nil {
			return true, false, nil
		}
		return false, false, fmt.Errorf("%w: a bbolt file, but not a forcebind store (no %q bucket)", ErrCorrupt, bucketMeta)
	}
	if err := checkSchema(meta.Get(keySchema)); err != nil {
		return false, false, err
	}
	for _, name := range allBuckets() {
		if tx.Bucket(name) == nil {
			return false, false, fmt.Errorf("%w: bucket %q is missing", ErrCorrupt, name)
		}
	}
	canary := meta.Get(keyCanary)
	if canary == nil {
		return false, false, fmt.Errorf("%w: no canary", ErrCorrupt)
	}
	pt, err := db.keyring.open(bucketMeta, keyCanary, nil, canary)
	if err != nil {
		if errors.Is(err, ErrWrongKey) {
			return false, false, fmt.Errorf("the canary: %w", err)
		}
		// The header names a key we hold but the seal does not open: the
		// canary was altered, or a different key has a colliding id.
		return false, false, fmt.Errorf("%w: the canary does not open with key id %s: %w", ErrWrongKey, sealedBy(canary), err)
	}
	if string(pt) != canaryPlaintext {
		return false, false, fmt.Errorf("%w: the canary opens but holds the wrong value", ErrCorrupt)
	}
	return false, !db.keyring.sealedByPrimary(canary), nil
}

// initialise creates the buckets, schema version and canary of a new file.
func (db *DB) initialise() error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) != nil {
			return nil
		}
		for _, name := range allBuckets() {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %q: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion))); err != nil {
			return err
		}
		return meta.Put(keyCanary, db.keyring.seal(bucketMeta, keyCanary, nil, []byte(canaryPlaintext)))
	})
}

// resealCanary seals the canary again under the primary key.
func (db *DB) resealCanary(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	pt, err := db.keyring.open(bucketMeta, keyCanary, nil, meta.Get(keyCanary))
	if err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	return meta.Put(keyCanary, db.keyring.seal(bucketMeta, keyCanary, nil, pt))
}

func checkSchema(v []byte) error {
	if v == nil {
		return fmt.Errorf("%w: no schema version", ErrCorrupt)
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 1 || !bytes.Equal(v, []byte(strconv.Itoa(n))) {
		return fmt.Errorf("%w: schema version %q is not a version number", ErrCorrupt, v)
	}
	if n > SchemaVersion {
		return fmt.Errorf("%w: the file has schema version %d, this build supports up to %d; upgrade forcebind", ErrSchema, n, SchemaVersion)
	}
	return nil
}
