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
// that opens with opts.Keyring (a canary sealed under an older key still in
// the ring is fine). Open returns ErrLocked when another process holds the
// file, ErrWrongKey when the keyring does not fit, ErrSchema for a newer
// file and ErrCorrupt for a file that is not a valid store; it does not
// panic on a damaged file.
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

	// bbolt treats a zero-length file as new and would initialise it; a file
	// that exists but is empty has lost its contents, so say so instead.
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.Mode().IsRegular() && fi.Size() == 0:
		return nil, fmt.Errorf("open store %s: %w: the file exists but is empty; restore it from a backup, or remove it to start a new store", path, ErrCorrupt)
	case errors.Is(err, fs.ErrNotExist) && opts.ReadOnly:
		return nil, fmt.Errorf("open store %s read-only: %w", path, err)
	case err == nil && fi.Mode().IsRegular():
		if err := checkBoltFile(path); err != nil {
			return nil, fmt.Errorf("open store %s: %w", path, err)
		}
	}

	bdb, err := openBolt(path, timeout, opts.ReadOnly)
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
			// way to unmap the file; that mapping leaks (checkBoltFile makes
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

	fresh, err := db.check()
	if err != nil || !fresh {
		return err
	}
	if readOnly {
		return fmt.Errorf("%w: the file has no forcebind data (it was never initialised), and read-only mode cannot initialise it", ErrCorrupt)
	}
	return db.initialise()
}

// check validates the file in a read transaction. It reports fresh when the
// file is a valid but empty bbolt file, such as one bbolt has just created.
func (db *DB) check() (fresh bool, err error) {
	tx, err := db.bolt.Begin(false)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback() }()

	// Every page the file claims must be inside the file; bbolt does not
	// check this and would read past the end of a truncated file.
	fi, err := os.Stat(db.path)
	if err != nil {
		return false, err
	}
	if tx.Size() > fi.Size() {
		return false, fmt.Errorf("%w: the file is %d bytes but its pages need %d; it was truncated", ErrCorrupt, fi.Size(), tx.Size())
	}

	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if k, _ := tx.Cursor().First(); k == nil {
			return true, nil
		}
		return false, fmt.Errorf("%w: a bbolt file, but not a forcebind store (no %q bucket)", ErrCorrupt, bucketMeta)
	}
	if err := checkSchema(meta.Get(keySchema)); err != nil {
		return false, err
	}
	for _, name := range allBuckets() {
		if tx.Bucket(name) == nil {
			return false, fmt.Errorf("%w: bucket %q is missing", ErrCorrupt, name)
		}
	}
	canary := meta.Get(keyCanary)
	if canary == nil {
		return false, fmt.Errorf("%w: no canary", ErrCorrupt)
	}
	pt, err := db.keyring.open(bucketMeta, keyCanary, nil, canary)
	if err != nil {
		if errors.Is(err, ErrWrongKey) {
			return false, fmt.Errorf("the canary: %w", err)
		}
		// The header names a key we hold but the seal does not open: the
		// canary was altered, or a different key has a colliding id.
		return false, fmt.Errorf("%w: the canary does not open with key id %s: %w", ErrWrongKey, sealedBy(canary), err)
	}
	if string(pt) != canaryPlaintext {
		return false, fmt.Errorf("%w: the canary opens but holds the wrong value", ErrCorrupt)
	}
	return false, nil
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
