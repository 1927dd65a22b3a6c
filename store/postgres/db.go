package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/forcebind/forcebind/store"
)

// The tables. Their rows hold records sealed for store.TableBindings,
// store.TablePending and store.TableMeta; the prefix keeps them apart from
// anything else in the database.
const (
	tableBindings   = "forcebind_bindings"
	tablePending    = "forcebind_pending"
	tableMeta       = "forcebind_meta"
	tableMigrations = "forcebind_schema_migrations"

	metaCanary   = "canary"
	metaBindings = "bindings"
)

// migrateLock is the session advisory lock Open holds while it migrates
// and checks the schema ("forcebnd" in ASCII). Advisory locks are per
// database, so stores in different databases of one server do not wait
// for each other.
const migrateLock int64 = 0x666f726365626e64

// pendingLock is the first key of the transaction advisory lock that
// serialises CreatePending per user ("fbpd"); the second is a hash of the
// user key. It is in the two-key space, apart from migrateLock.
const pendingLock int32 = 0x66627064

//go:embed migrations/*.sql
var migrationFiles embed.FS

// A migration is one versioned SQL file.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in order. Their names are
// NNNN_what.sql, numbered from 1 without gaps; the highest number is the
// schema version this build writes.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: not named NNNN_what.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: want version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion is the schema this build writes: the number of its
// migrations. Open refuses a database whose schema is newer.
const SchemaVersion = 1

// Options configures Open. The zero value of every field but Keyring is
// usable. An Options is read by Open and not kept.
type Options struct {
	// Keyring seals and opens records. Required.
	Keyring *store.Keyring

	// AllowMissingKeys lets Open succeed when records are sealed under
	// keys the keyring lacks (the canary must still open), for key
	// rotation, as store/bolt's option of the same name does.
	AllowMissingKeys bool

	// Now is the clock used for expiries. Nil means time.Now.
	Now func() time.Time
}

// A DB is an open store in a PostgreSQL database, over a pool of
// connections. It is safe for concurrent use by many goroutines, and
// several processes can open the same database at once.
type DB struct {
	pool    *pgxpool.Pool
	keyring *store.Keyring
	now     func() time.Time
	where   string // the database, for errors; never the password
}

// errBadURL is what Open says of a URL that does not parse: the parser's
// own message quotes the URL, and its redaction of the password is only
// best effort for a malformed one.
var errBadURL = errors.New("the database URL does not parse (its text is left out of this message, as it may hold a password; see https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING)")

// Open opens the store in the PostgreSQL database that url names (a
// postgres:// URL or libpq key=value settings; PGHOST, PGPASSWORD,
// PGPASSFILE, PGSSLMODE and the other libpq variables fill in what it
// leaves out, and pool_max_conns sizes the pool). Under a session advisory
// lock, so that replicas starting together migrate once, it applies the
// migrations the database lacks, refusing one whose schema is newer than
// this build with ErrSchema; it seals a canary into a new store, checks the
// canary of an existing one (ErrWrongKey), re-seals a canary under an older
// key in the ring under the primary, and reads the key id in the header of
// every record, refusing a ring that lacks one with a *store.MissingKeysError
// unless opts.AllowMissingKeys is set, as store/bolt's Open does. It waits
// for another process's Open to finish with the lock for as long as ctx
// allows; ctx bounds only Open, not the DB. No error holds the password.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	return open(ctx, url, opts, nil)
}

// open is Open with a hook that adjusts the pool's configuration, for
// tests that count what goes over the wire.
func open(ctx context.Context, url string, opts Options, configure func(*pgxpool.Config)) (*DB, error) {
	if opts.Keyring == nil {
		return nil, errors.New("open store: no keyring")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", errBadURL)
	}
	password := cfg.ConnConfig.Password
	where := describe(cfg.ConnConfig)
	if configure != nil {
		configure(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, scrub(fmt.Errorf("open store %s: %w", where, err), password)
	}
	db := &DB{pool: pool, keyring: opts.Keyring, now: opts.Now, where: where}
	if err := db.setup(ctx, cfg.ConnConfig, opts.AllowMissingKeys); err != nil {
		pool.Close()
		return nil, scrub(fmt.Errorf("open store %s: %w", where, err), password)
	}
	return db, nil
}

// describe names the database of cfg for messages: its name, user and
// host, never its password.
func describe(cfg *pgx.ConnConfig) string {
	host := cfg.Host
	if cfg.Port != 0 && !strings.HasPrefix(host, "/") {
		host += ":" + strconv.Itoa(int(cfg.Port))
	}
	return fmt.Sprintf("postgres database %q (user %q, host %q)", cfg.Database, cfg.User, host)
}

// A scrubbedError is an error whose text held the password and was
// replaced; errors.Is and As still see what it wraps.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrub makes sure err's text does not hold password. pgx's messages do
// not quote it, but a server's or a driver's could, and this is the one
// place where every error of Open passes.
func scrub(err error, password string) error {
	if password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return &scrubbedError{msg: strings.ReplaceAll(err.Error(), password, "xxxxx"), err: err}
}

// Close closes the pool, waiting for the connections in use to be
// returned. Calling it again returns nil.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// setup migrates, initialises and checks the store, on a connection of its
// own that holds the migration lock: closing it releases the lock whatever
// went wrong.
func (db *DB) setup(ctx context.Context, cfg *pgx.ConnConfig, allowMissingKeys bool) error {
	conn, err := pgx.ConnectConfig(ctx, cfg.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLock); err != nil {
		return fmt.Errorf("wait for the migration lock: %w", err)
	}
	if err := migrate(ctx, conn); err != nil {
		return err
	}
	return db.check(ctx, conn, allowMissingKeys)
}

// migrate applies the migrations the database lacks, each in a
// transaction with its row in the migrations table, and refuses a schema
// newer than this build's. The caller holds migrateLock.
func migrate(ctx context.Context, conn *pgx.Conn) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+tableMigrations+` (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		return fmt.Errorf("create the migrations table: %w", err)
	}
	var have int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+tableMigrations).Scan(&have); err != nil {
		return fmt.Errorf("read the schema version: %w", err)
	}
	if have > len(ms) {
		return fmt.Errorf("%w: the database has schema version %d, this build supports up to %d; upgrade forcebind", store.ErrSchema, have, len(ms))
	}
	for _, m := range ms[have:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO `+tableMigrations+` (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate to schema %d (%s): %w", m.version, m.name, err)
		}
	}
	return nil
}

// check seals the canary and the count into a new store, checks the
// canary of an existing one (re-sealing it under the primary if an older
// key sealed it) and the key ids of its records. The caller holds
// migrateLock, so no other Open changes the canary meanwhile.
func (db *DB) check(ctx context.Context, conn *pgx.Conn, allowMissingKeys bool) error {
	var canary []byte
	err := conn.QueryRow(ctx, `SELECT value FROM `+tableMeta+` WHERE name = $1`, metaCanary).Scan(&canary)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		var records bool
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+tableBindings+`) OR EXISTS (SELECT 1 FROM `+tablePending+`)`).Scan(&records)
		if err != nil {
			return err
		}
		if records {
			return fmt.Errorf("%w: records but no canary", store.ErrCorrupt)
		}
		_, err = conn.Exec(ctx, `INSERT INTO `+tableMeta+` (name, value) VALUES ($1, $2), ($3, $4)
			ON CONFLICT (name) DO NOTHING`, metaCanary, db.keyring.SealCanary(), metaBindings, []byte("0"))
		return err
	case err != nil:
		return fmt.Errorf("read the canary: %w", err)
	}
	primary, err := db.keyring.CheckCanary(canary)
	if err != nil {
		return err
	}
	if !primary {
		_, err := conn.Exec(ctx, `UPDATE `+tableMeta+` SET value = $2 WHERE name = $1`, metaCanary, db.keyring.SealCanary())
		if err != nil {
			return fmt.Errorf("re-seal the canary: %w", err)
		}
	}
	if !allowMissingKeys {
		tally, err := db.tally(ctx, conn)
		if err != nil {
			return err
		}
		if err := tally.MissingKeys(); err != nil {
			return err
		}
	}
	// A count lost (or never written) is rebuilt from the table.
	_, err = conn.Exec(ctx, `INSERT INTO `+tableMeta+` (name, value)
		SELECT $1, convert_to(count(*)::text, 'UTF8') FROM `+tableBindings+`
		ON CONFLICT (name) DO NOTHING`, metaBindings)
	return err
}

// A querier is a connection, a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Enough of a record to hold its header (version and key id), and of a
// pending value to hold its expiry and the header: what a tally reads.
const (
	headBinding = 16
	headPending = 24
)

// tally reads the header of every binding and pending link, decrypting
// nothing, and groups them by key id.
func (db *DB) tally(ctx context.Context, q querier) (*store.KeyTally, error) {
	tally := db.keyring.Tally()
	scan := func(sql string, add func([]byte)) error {
		rows, err := q.Query(ctx, sql)
		if err != nil {
			return err
		}
		var head []byte
		_, err = pgx.ForEachRow(rows, []any{&head}, func() error { add(head); return nil })
		return err
	}
	if err := scan(`SELECT substring(record FROM 1 FOR `+strconv.Itoa(headBinding)+`) FROM `+tableBindings, tally.AddBinding); err != nil {
		return nil, fmt.Errorf("read the key ids of the bindings: %w", err)
	}
	if err := scan(`SELECT substring(record FROM 1 FOR `+strconv.Itoa(headPending)+`) FROM `+tablePending, tally.AddPending); err != nil {
		return nil, fmt.Errorf("read the key ids of the pending links: %w", err)
	}
	return tally, nil
}
