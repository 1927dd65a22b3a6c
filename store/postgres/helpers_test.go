package postgres

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/storetest"
)

// mustOpen opens the store at url with the keyring of keys (Key(1) if
// none) and closes it when the test ends.
func mustOpen(tb testing.TB, url string, keys ...[]byte) *DB {
	tb.Helper()
	if len(keys) == 0 {
		keys = [][]byte{storetest.Key(1)}
	}
	db, err := Open(tb.Context(), url, Options{Keyring: storetest.Ring(tb, keys...)})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// mustConn connects to url directly, to look at and change the tables
// behind the store's back, and closes the connection when the test ends.
func mustConn(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	conn, err := pgx.Connect(tb.Context(), url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func mustExec(tb testing.TB, conn *pgx.Conn, sql string, args ...any) {
	tb.Helper()
	if _, err := conn.Exec(tb.Context(), sql, args...); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

func mustPutBinding(tb testing.TB, db *DB, b store.Binding) {
	tb.Helper()
	if err := db.PutBinding(tb.Context(), b); err != nil {
		tb.Fatalf("PutBinding: %v", err)
	}
}

// A wireCounter counts the writes the pool's connections make to the
// server. pgx writes each batch of messages it then waits on in one write,
// so the count is the number of round trips.
type wireCounter struct{ writes atomic.Int64 }

// configure makes cfg's pool one connection whose writes c counts.
func (c *wireCounter) configure(cfg *pgxpool.Config) {
	cfg.MaxConns = 1
	dial := cfg.ConnConfig.DialFunc
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: conn, c: c}, nil
	}
}

type countingConn struct {
	net.Conn
	c *wireCounter
}

func (cc *countingConn) Write(b []byte) (int, error) {
	cc.c.writes.Add(1)
	return cc.Conn.Write(b)
}

// mustOpenCounted opens the store at url over one connection whose round
// trips the returned counter counts.
func mustOpenCounted(tb testing.TB, url string) (*DB, *wireCounter) {
	tb.Helper()
	c := new(wireCounter)
	db, err := open(tb.Context(), url, Options{Keyring: storetest.Ring(tb, storetest.Key(1))}, c.configure)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db, c
}

// storeTokens is a refresh's result with a new refresh token.
func storeTokens(refresh string) store.Tokens {
	return store.Tokens{AccessToken: "00D!AQ-access-new", RefreshToken: refresh}
}

// An atomicCount counts from several goroutines.
type atomicCount struct{ n atomic.Int64 }

func (c *atomicCount) add()       { c.n.Add(1) }
func (c *atomicCount) get() int64 { return c.n.Load() }
