package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/forcebind/forcebind/store"
)

// SchemaVersion is the version of the file layout this build reads and
// writes. Open refuses files with a higher version.
const SchemaVersion = 1

const (
	defaultLockTimeout = time.Second
	fileMode           = 0o600
)

// The buckets that hold sealed records carry the names of the tables they
// were sealed for, which are part of each record's associated data.
var (
	bucketBindings = []byte(store.TableBindings)
	bucketPending  = []byte(store.TablePending)
	bucketByUser   = []byte("pending_by_user")
	bucketMeta     = []byte(store.TableMeta)
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
	Keyring *store.Keyring

	// LockTimeout is how long Open waits for another process to release
	// the file before it returns ErrLocked. Zero means one second.
	LockTimeout time.Duration

	// ReadOnly opens an existing file without creating or writing it, for
	// tools such as doctor and backup; the canary and the key ids of the
	// records are still checked, as for any Open. Several read-only opens
	// can share a file, but not with a writer.
	ReadOnly bool

	// AllowMissingKeys lets Open succeed when records are sealed under keys
	// the keyring lacks (the canary must still open). It is for the one
	// tool that must work on such a store, key rotation, which re-seals
	// what it can and reports the rest; methods that meet such a record
	// return ErrWrongKey. Everything else should leave it false, so that a
	// ring missing a key is refused at start rather than at each person's
	// next command.
	AllowMissingKeys bool

	// Now is the clock used for expiries. Nil means time.Now.
	Now func() time.Time
}

// A DB is an open store file. It is safe for concurrent use by many
// goroutines. It holds the file's lock until Close.
type DB struct {
	bolt    *bbolt.DB
	keyring *store.Keyring
	now     func() time.Time
	path    string
	// walkCount makes CountBindings walk the bucket: a read-only open
	// cannot put right a count that has gone wrong, and tools open rarely.
	walkCount bool
}

// Open opens the store at path, creating it (mode 0600) unless
// opts.ReadOnly is set. A new file gets its buckets, schema version and
// canary. An existing file must carry a schema this build knows and a canary
// that opens with opts.Keyring. A canary sealed under an older key still in
// the ring is fine; a writable Open re-seals it under the primary, so that
// from then on a ring without the primary fails here, with ErrWrongKey,
// rather than on the first new record. Open also reads the key id in the
// header of every binding and pending link (it decrypts none of them) and,
// unless opts.AllowMissingKeys is set, refuses a ring that lacks one of
// them with a *MissingKeysError, which matches ErrWrongKey: read-only opens
// too, so that doctor and a backup's check judge a file as the daemon
// would. Open returns ErrLocked when another process holds the file (also
// one it is still creating), ErrWrongKey when the keyring does not fit,
// ErrSchema for a newer file and ErrCorrupt for a file that is not a valid
// store; it does not panic on a damaged file. If the file at path is
// replaced while Open waits for its lock (as [Compact] does), Open opens
// the new one: it never settles on a file that is no longer at path.
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
	if opts.Now == nil {
		opts.Now = time.Now
	}
	deadline := time.Now().Add(timeout)
	for {
		db, moved, err := openOnce(path, opts, timeout, deadline)
		switch {
		case !moved:
			return db, err
		case time.Now().After(deadline):
			return nil, fmt.Errorf("open store %s: the file was replaced or removed each time it was opened, for %s", path, timeout)
		}
	}
}

// openOnce opens the file now at path, waits for its lock, and opens the
// store in it. It reports moved when, by the time the lock was granted,
// the file was no longer the one at path; the caller then starts again.
func openOnce(path string, opts Options, timeout time.Duration, deadline time.Time) (db *DB, moved bool, err error) {
	f, created, err := openFile(path, opts.ReadOnly)
	switch {
	case errors.Is(err, errRemoved):
		return nil, true, nil // removed between two looks; create it afresh
	case errors.Is(err, fs.ErrNotExist) && opts.ReadOnly:
		return nil, false, fmt.Errorf("open store %s read-only: %w", path, err)
	case err != nil:
		return nil, false, fmt.Errorf("open store %s: %w", path, err)
	}
	// bbolt takes the same lock on this descriptor again, which succeeds
	// at once: one open file description cannot conflict with itself.
	if err := waitLock(f, timeout, deadline, opts.ReadOnly); err != nil {
		_ = f.Close()
		return nil, false, fmt.Errorf("open store %s: %w", path, err)
	}
	if !stillAt(f, path) {
		// Another process replaced the file while this one waited, such as
		// compact renaming its new file into place: writes to the old one
		// would vanish with it.
		forceUnlock(f)
		_ = f.Close()
		return nil, true, nil
	}
	if err := checkFile(f, created); err != nil {
		forceUnlock(f)
		_ = f.Close()
		return nil, false, fmt.Errorf("open store %s: %w", path, err)
	}
	bdb, err := openBolt(path, f, max(time.Until(deadline), time.Millisecond), opts.ReadOnly)
	if err != nil {
		return nil, false, err
	}
	db = &DB{bolt: bdb, keyring: opts.Keyring, now: opts.Now, path: path, walkCount: opts.ReadOnly}
	if err := db.validate(opts.ReadOnly, opts.AllowMissingKeys); err != nil {
		_ = bdb.Close()
		return nil, false, fmt.Errorf("open store %s: %w", path, err)
	}
	return db, false, nil
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

// openFile opens the store file the way bbolt would, creating it for a
// writable open. created reports that this call made the file, which is
// then empty and new rather than emptied.
func openFile(path string, readOnly bool) (f *os.File, created bool, err error) {
	// Opening a FIFO read-only would block until a writer came along.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, false, fmt.Errorf("%w: %s is not a regular file", store.ErrCorrupt, path)
	}
	if readOnly {
		f, err = os.Open(path)
		return f, false, err
	}
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, false, err // such as a missing directory
	}
	f, err = os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, errRemoved
	}
	return f, false, err
}

// errRemoved is openFile's way of saying that the file existed a moment
// ago and is gone now, so the caller should try again.
var errRemoved = errors.New("removed while being opened")

// stillAt reports whether f is the file now at path.
func stillAt(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// checkFile checks an existing file before bbolt sees it, under the lock.
// Without the lock, a file another process is creating (empty, or with its
// first pages half written) would look damaged: the lock makes Open wait
// for that process, and report ErrLocked if it keeps the file, instead of
// ErrCorrupt.
func checkFile(f *os.File, created bool) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	switch {
	case fi.Size() > 0:
		return checkBoltFile(f, fi.Size())
	case !created:
		// bbolt treats a zero-length file as new and would initialise it; a
		// file that exists but is empty has lost its contents, so say so
		// instead.
		return fmt.Errorf("%w: the file exists but is empty; restore it from a backup, or remove it to start a new store", store.ErrCorrupt)
	}
	return nil
}

// waitLock takes the lock on f that bbolt would take, retrying as bbolt does
// until deadline, and returns ErrLocked (naming timeout) if it cannot.
func waitLock(f *os.File, timeout time.Duration, deadline time.Time, readOnly bool) error {
	const retry = 50 * time.Millisecond // bbolt's interval
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
			return fmt.Errorf("%w (waited %s)", store.ErrLocked, timeout)
		}
		time.Sleep(min(retry, left))
	}
}

// openBolt opens the bbolt store in f, already open and locked, turning
// bbolt's panics on damaged files into ErrCorrupt. A truncated file can
// make bbolt touch pages past the end of the mapping, which raises SIGBUS;
// SetPanicOnFault turns that into a panic we can recover. bbolt takes f
// over: it closes it when it fails or when the DB is closed.
func openBolt(path string, f *os.File, timeout time.Duration, readOnly bool) (bdb *bbolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// bbolt's half-built DB is lost with the panic, and with it the
			// way to unmap the file; that mapping leaks (checkFile makes
			// this path rare). The lock must not leak, or the next Open in
			// this process would report ErrLocked instead of the damage.
			forceUnlock(f)
			_ = f.Close()
			bdb, err = nil, fmt.Errorf("open store %s: %w: bbolt failed on the file: %v", path, store.ErrCorrupt, r)
		}
	}()
	bdb, err = bbolt.Open(path, fileMode, &bbolt.Options{
		// Where the lock is a flock it is already held on f, and bbolt's
		// own attempt succeeds at once; elsewhere bbolt does the waiting.
		// Never zero, which would make bbolt wait forever.
		Timeout:  timeout,
		ReadOnly: readOnly,
		OpenFile: func(string, int, os.FileMode) (*os.File, error) { return f, nil },
	})
	switch {
	case err == nil:
		return bdb, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open store %s: %w (waited %s)", path, store.ErrLocked, timeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("open store %s: %w: not a valid bbolt file: %v", path, store.ErrCorrupt, err)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open store %s: %w", path, err)
	default:
		// The remaining bbolt open errors ("file size too small", mmap
		// failures on a short file) mean the file cannot be a store.
		return nil, fmt.Errorf("open store %s: %w: %v", path, store.ErrCorrupt, err)
	}
}

// validate checks an opened file and initialises a new one. It is the first
// transaction on the file, so it also guards against bbolt panicking on
// damaged pages.
func (db *DB) validate(readOnly, allowMissingKeys bool) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt failed reading the file: %v", store.ErrCorrupt, r)
		}
	}()

	fresh, oldCanary, err := db.check(allowMissingKeys)
	switch {
	case err != nil:
		return err
	case fresh && readOnly:
		return fmt.Errorf("%w: the file has no forcebind data (it was never initialised), and read-only mode cannot initialise it", store.ErrCorrupt)
	case fresh:
		return db.initialise()
	case readOnly:
		return nil
	case oldCanary:
		if err := db.update(db.resealCanary); err != nil {
			return err
		}
	}
	var right bool
	if err := db.view(func(tx *bbolt.Tx) error { right = countIsRight(tx); return nil }); err != nil || right {
		return err
	}
	return db.update(recount)
}

// check validates the file in a read transaction. It reports fresh when the
// file is a valid but empty bbolt file, such as one bbolt has just created,
// and oldCanary when the canary opened with a key other than the primary.
// Unless allowMissingKeys is set, it also refuses a keyring that lacks a
// key named in a record's header.
func (db *DB) check(allowMissingKeys bool) (fresh, oldCanary bool, err error) {
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
		return false, false, fmt.Errorf("%w: the file is %d bytes but its pages need %d; it was truncated", store.ErrCorrupt, fi.Size(), tx.Size())
	}

	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if k, _ := tx.Cursor().First(); k == nil {
			return true, false, nil
		}
		return false, false, fmt.Errorf("%w: a bbolt file, but not a forcebind store (no %q bucket)", store.ErrCorrupt, bucketMeta)
	}
	if err := checkSchema(meta.Get(keySchema)); err != nil {
		return false, false, err
	}
	for _, name := range allBuckets() {
		if tx.Bucket(name) == nil {
			return false, false, fmt.Errorf("%w: bucket %q is missing", store.ErrCorrupt, name)
		}
	}
	canary := meta.Get(keyCanary)
	if canary == nil {
		return false, false, fmt.Errorf("%w: no canary", store.ErrCorrupt)
	}
	primary, err := db.keyring.CheckCanary(canary)
	if err != nil {
		return false, false, err
	}
	if !allowMissingKeys {
		if err := countSealedBy(db.keyring, tx).MissingKeys(); err != nil {
			return false, false, err
		}
	}
	return false, !primary, nil
}

// view runs fn in a read transaction, as bbolt's View does, but turns a
// panic inside bbolt (a damaged page met past Open) into ErrCorrupt: nothing
// read from the file may bring the daemon down.
func (db *DB) view(fn func(*bbolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(&err)
	return db.bolt.View(fn)
}

// update is view for a write transaction. bbolt rolls the transaction back
// as the panic passes through Update, so nothing half-done is committed.
func (db *DB) update(fn func(*bbolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(&err)
	return db.bolt.Update(fn)
}

// recoverCorrupt turns a panic into an ErrCorrupt in *err.
func recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: reading the file panicked: %v", store.ErrCorrupt, r)
	}
}

// initialise creates the buckets, schema version and canary of a new file.
func (db *DB) initialise() error {
	return db.update(func(tx *bbolt.Tx) error {
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
		if err := meta.Put(keyBindingCount, []byte("0")); err != nil {
			return err
		}
		return meta.Put(keyCanary, db.keyring.SealCanary())
	})
}

// resealCanary seals the canary again under the primary key.
func (db *DB) resealCanary(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if _, err := db.keyring.CheckCanary(meta.Get(keyCanary)); err != nil {
		return err
	}
	return meta.Put(keyCanary, db.keyring.SealCanary())
}

func checkSchema(v []byte) error {
	if v == nil {
		return fmt.Errorf("%w: no schema version", store.ErrCorrupt)
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 1 || !bytes.Equal(v, []byte(strconv.Itoa(n))) {
		return fmt.Errorf("%w: schema version %q is not a version number", store.ErrCorrupt, v)
	}
	if n > SchemaVersion {
		return fmt.Errorf("%w: the file has schema version %d, this build supports up to %d; upgrade forcebind", store.ErrSchema, n, SchemaVersion)
	}
	return nil
}
