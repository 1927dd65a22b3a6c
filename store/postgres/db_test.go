package postgres

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/postgres/pgtest"
	"github.com/forcebind/forcebind/store/storetest"
)

// TestMigrationsNumbered: the embedded migrations run 1, 2, … without a
// gap, and the last is SchemaVersion.
func TestMigrationsNumbered(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != SchemaVersion {
		t.Errorf("%d migrations, SchemaVersion %d", len(ms), SchemaVersion)
	}
}

// TestOpenConcurrentMigration: replicas starting at once on a fresh
// database all open it, the migrations are applied once, and they share
// one canary, so that what one writes the others read.
func TestOpenConcurrentMigration(t *testing.T) {
	url := pgtest.Database(t)
	const n = 8
	dbs := make([]*DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			dbs[i], errs[i] = Open(t.Context(), url, Options{Keyring: storetest.Ring(t, storetest.Key(1))})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(func() { _ = dbs[i].Close() })
	}

	conn := mustConn(t, url)
	rows, err := conn.Query(t.Context(), `SELECT version FROM `+tableMigrations+` ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{1}, applied); diff != "" {
		t.Errorf("migrations applied mismatch (-want +got):\n%s", diff)
	}
	var canaries int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM `+tableMeta+` WHERE name = 'canary'`).Scan(&canaries); err != nil || canaries != 1 {
		t.Errorf("%d canaries (%v), want 1", canaries, err)
	}

	mustPutBinding(t, dbs[0], storetest.SampleBinding("T1", "U1"))
	for i, db := range dbs {
		if _, err := db.GetBinding(t.Context(), "T1", "U1"); err != nil {
			t.Errorf("replica %d: GetBinding: %v", i, err)
		}
	}
}

// TestOpenNewerSchema: a database migrated by a newer forcebind is
// refused, naming both versions, and left as it is.
func TestOpenNewerSchema(t *testing.T) {
	url := pgtest.Database(t)
	mustOpen(t, url).Close()
	conn := mustConn(t, url)
	mustExec(t, conn, `INSERT INTO `+tableMigrations+` (version, name) VALUES ($1, 'from the future')`, SchemaVersion+1)

	db, err := Open(t.Context(), url, Options{Keyring: storetest.Ring(t, storetest.Key(1))})
	if err == nil {
		db.Close()
		t.Fatal("Open of a newer schema: no error")
	}
	if !errors.Is(err, store.ErrSchema) {
		t.Errorf("Open: %v, want ErrSchema", err)
	}
	for _, v := range []string{fmt.Sprint(SchemaVersion), fmt.Sprint(SchemaVersion + 1)} {
		if !strings.Contains(err.Error(), "version "+v) && !strings.Contains(err.Error(), "to "+v) {
			t.Errorf("Open: %q does not name version %s", err, v)
		}
	}
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM `+tableMigrations).Scan(&n); err != nil || n != 2 {
		t.Errorf("%d migration rows (%v) after the refusal, want the 2 there were", n, err)
	}
}

// TestOpenPasswordNotInErrors: however an open fails, with the password in
// the URL, in a query parameter or in PGPASSWORD, no error holds it, in
// any encoding; and the libpq way of giving it, PGPASSWORD, works.
func TestOpenPasswordNotInErrors(t *testing.T) {
	srv := pgtest.Shared(t)
	dbURL := pgtest.Database(t)
	dbName := strings.TrimPrefix(strings.SplitN(dbURL, "?", 2)[0], "postgres:///")
	const (
		password = "Pw-s3cret-Xq81" // the role's
		wrong    = "Pw-wr0ng-Zt52"
	)
	role := "app_" + dbName // roles are the server's, shared by the tests
	if err := srv.Exec(t.Context(), "postgres", "CREATE ROLE "+role+" LOGIN PASSWORD '"+password+"' IN ROLE "+pgtest.PasswordGroup); err != nil {
		t.Fatal(err)
	}
	if err := srv.Exec(t.Context(), dbName, "GRANT ALL ON SCHEMA public TO "+role); err != nil {
		t.Fatal(err)
	}
	socket := url.Values{"host": {srv.SocketDir()}, "port": {fmt.Sprint(srv.Port())}, "sslmode": {"disable"}}.Encode()
	app := "postgres://" + role + "@/" + dbName + "?" + socket

	tests := []struct {
		name   string
		url    string
		env    string // PGPASSWORD
		secret string
	}{
		{name: "wrong password in the URL", url: "postgres://" + role + ":" + wrong + "@/" + dbName + "?" + socket, secret: wrong},
		{name: "wrong password as a parameter", url: app + "&password=" + wrong, secret: wrong},
		{name: "wrong PGPASSWORD", url: app, env: wrong, secret: wrong},
		{name: "no server there", url: "postgres://" + role + ":" + password + "@/" + dbName + "?host=/nonexistent&sslmode=disable", secret: password},
		{name: "no such database", url: "postgres://" + role + ":" + password + "@/nosuchdb?" + socket, secret: password},
		{name: "URL that does not parse", url: "postgres://" + role + ":" + password + "@host:port/" + dbName, secret: password},
		{name: "key=value that does not parse", url: "host=/tmp password=" + password + " port=x", secret: password},
		{name: "pool setting that does not parse", url: "postgres://" + role + ":" + password + "@/" + dbName + "?pool_max_conns=many", secret: password},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PGPASSWORD", tt.env)
			db, err := Open(t.Context(), tt.url, Options{Keyring: storetest.Ring(t, storetest.Key(1))})
			if err == nil {
				db.Close()
				t.Fatal("Open: no error")
			}
			t.Logf("Open: %v", err)
			for _, enc := range storetest.Encodings(tt.secret) {
				if strings.Contains(err.Error(), enc) {
					t.Errorf("Open error %q holds the password (as %q)", err, enc)
				}
			}
		})
	}

	t.Run("PGPASSWORD", func(t *testing.T) {
		t.Setenv("PGPASSWORD", password)
		mustPutBinding(t, mustOpen(t, app), storetest.SampleBinding("T1", "U1"))
	})
}

// TestUpdateTokensAcrossProcesses: two stores on one database, with no
// connection and no memory in common (as two replicas have), racing to
// spend one refresh token: exactly one wins, and the loser's conditional
// delete, holding the spent token, changes nothing.
func TestUpdateTokensAcrossProcesses(t *testing.T) {
	url := pgtest.Database(t)
	replicas := []*DB{mustOpen(t, url), mustOpen(t, url)}
	orig := storetest.SampleBinding("T1", "U1")
	mustPutBinding(t, replicas[0], orig)

	const n = 20
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		wins      []string
		conflicts int
	)
	for i := range n {
		wg.Go(func() {
			refresh := fmt.Sprintf("refresh-%d", i)
			_, err := replicas[i%2].UpdateTokens(t.Context(), "T1", "U1", orig.RefreshToken, store.Tokens{AccessToken: "a", RefreshToken: refresh})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins = append(wins, refresh)
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Errorf("UpdateTokens: %v", err)
			}
		})
	}
	wg.Wait()
	if len(wins) != 1 || conflicts != n-1 {
		t.Fatalf("%d wins and %d conflicts, want 1 and %d", len(wins), conflicts, n-1)
	}
	for i, db := range replicas {
		if err := db.DeleteBindingIf(t.Context(), "T1", "U1", orig.RefreshToken); !errors.Is(err, store.ErrConflict) {
			t.Errorf("replica %d: DeleteBindingIf with the spent token: %v, want ErrConflict", i, err)
		}
		got, err := db.GetBinding(t.Context(), "T1", "U1")
		if err != nil || got.RefreshToken != wins[0] {
			t.Errorf("replica %d: refresh token %q (%v), want the winner's %q", i, got.RefreshToken, err, wins[0])
		}
	}
}

// TestRowsHoldNoTokens: what a database administrator or a dump sees of
// every table holds no token or verifier in any encoding, and a record
// copied to another row does not open there.
func TestRowsHoldNoTokens(t *testing.T) {
	url := pgtest.Database(t)
	db := mustOpen(t, url)
	b := storetest.SampleBinding("T1", "U1")
	mustPutBinding(t, db, b)
	p := storetest.SamplePending(db.now(), "U2")
	held := storetest.SampleBinding("T1", "U2")
	p.Binding = &held
	if _, err := db.CreatePending(t.Context(), p); err != nil {
		t.Fatal(err)
	}

	conn := mustConn(t, url)
	var dump strings.Builder
	for _, q := range []string{
		`SELECT key || ' ' || encode(record, 'escape') FROM ` + tableBindings,
		`SELECT encode(key, 'hex') || ' ' || user_key || ' ' || expires::text || ' ' || encode(record, 'escape') FROM ` + tablePending,
		`SELECT name || ' ' || encode(value, 'escape') FROM ` + tableMeta,
	} {
		rows, err := conn.Query(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		dump.WriteString(strings.Join(lines, "\n"))
	}
	for _, secret := range []string{b.AccessToken, b.RefreshToken, held.AccessToken, held.RefreshToken, p.Verifier} {
		for _, enc := range storetest.Encodings(secret) {
			if strings.Contains(dump.String(), enc) {
				t.Errorf("the tables hold %q (as %q)", secret, enc)
			}
		}
	}

	mustPutBinding(t, db, storetest.SampleBinding("T1", "U3"))
	mustExec(t, conn, `UPDATE `+tableBindings+` SET record = (SELECT record FROM `+tableBindings+` WHERE key = 'T1/U1') WHERE key = 'T1/U3'`)
	if _, err := db.GetBinding(t.Context(), "T1", "U3"); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("GetBinding of a record copied from another row: %v, want ErrCorrupt", err)
	}
}

// TestOpenRebuildsLostCount: a count that is gone is rebuilt from the
// table at the next open.
func TestOpenRebuildsLostCount(t *testing.T) {
	url := pgtest.Database(t)
	db := mustOpen(t, url)
	for _, u := range []string{"U1", "U2", "U3"} {
		mustPutBinding(t, db, storetest.SampleBinding("T1", u))
	}
	db.Close()
	mustExec(t, mustConn(t, url), `DELETE FROM `+tableMeta+` WHERE name = 'bindings'`)
	if n, err := mustOpen(t, url).CountBindings(t.Context()); err != nil || n != 3 {
		t.Errorf("CountBindings = %d, %v; want 3", n, err)
	}
}

// TestRotateInBatches: a store larger than a batch is re-sealed whole,
// and what is written during the rotation by another replica stays.
func TestRotateInBatches(t *testing.T) {
	url := pgtest.Database(t)
	old := mustOpen(t, url, storetest.Key(1))
	const n = batchSize*2 + 7
	conn := mustConn(t, url)
	// Sealed as PutBinding seals them, written in one statement for speed.
	keys, recs := make([]string, n), make([][]byte, n)
	for i := range n {
		b := storetest.SampleBinding("T1", fmt.Sprintf("U%04d", i))
		key, _ := store.BindingKey(b.TeamID, b.UserID)
		rec, err := old.keyring.SealBinding(key, b)
		if err != nil {
			t.Fatal(err)
		}
		keys[i], recs[i] = string(key), rec
	}
	mustExec(t, conn, `INSERT INTO `+tableBindings+` (key, record) SELECT * FROM unnest($1::text[], $2::bytea[])`, keys, recs)
	mustExec(t, conn, `UPDATE `+tableMeta+` SET value = $1 WHERE name = 'bindings'`, []byte(fmt.Sprint(n)))

	db := mustOpen(t, url, storetest.Key(2), storetest.Key(1))
	rep, err := db.Rotate(t.Context())
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if rep.Resealed != n+1 {
		t.Errorf("Resealed %d, want %d bindings and the canary", rep.Resealed, n+1)
	}
	rs, err := db.SealedBy(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []store.KeyRecords{{KeyID: storetest.Ring(t, storetest.Key(2)).PrimaryID(), InRing: true, Bindings: n}}
	if diff := cmp.Diff(want, rs); diff != "" {
		t.Errorf("SealedBy after Rotate mismatch (-want +got):\n%s", diff)
	}
	// The ring without the old key now opens the store and every binding.
	db.Close()
	only := mustOpen(t, url, storetest.Key(2))
	if _, err := only.GetBinding(t.Context(), "T1", fmt.Sprintf("U%04d", n-1)); err != nil {
		t.Errorf("GetBinding after rotation, old key dropped: %v", err)
	}
}

// TestGetBindingOneRoundTrip: the hot path, a bound user's event, costs
// one round trip to the database.
func TestGetBindingOneRoundTrip(t *testing.T) {
	db, wire := mustOpenCounted(t, pgtest.Database(t))
	mustPutBinding(t, db, storetest.SampleBinding("T1", "U1"))
	// The connection's first use of the query prepares it.
	if _, err := db.GetBinding(t.Context(), "T1", "U1"); err != nil {
		t.Fatal(err)
	}
	const n = 10
	before := wire.writes.Load()
	for range n {
		if _, err := db.GetBinding(t.Context(), "T1", "U1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := wire.writes.Load() - before; got != n {
		t.Errorf("%d GetBindings made %d round trips, want %d", n, got, n)
	}
}

// TestRotateWhileReplicasWrite: a replica refreshing tokens while another
// rotates loses no refresh: rotation re-seals what it read under the row
// lock, never an older copy.
func TestRotateWhileReplicasWrite(t *testing.T) {
	url := pgtest.Database(t)
	old := mustOpen(t, url, storetest.Key(1))
	const n = batchSize + 100
	for i := range n {
		mustPutBinding(t, old, storetest.SampleBinding("T1", fmt.Sprintf("U%04d", i)))
	}
	old.Close()
	rotator := mustOpen(t, url, storetest.Key(2), storetest.Key(1))
	replica := mustOpen(t, url, storetest.Key(2), storetest.Key(1))

	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := rotator.Rotate(t.Context()); err != nil {
			t.Errorf("Rotate: %v", err)
		}
	})
	const refreshed = 200
	for i := range refreshed {
		user := fmt.Sprintf("U%04d", i*n/refreshed)
		used := storetest.SampleBinding("T1", user).RefreshToken
		if _, err := replica.UpdateTokens(t.Context(), "T1", user, used, storeTokens("new-"+user)); err != nil {
			t.Errorf("UpdateTokens(%s) during Rotate: %v", user, err)
		}
	}
	wg.Wait()

	only := mustOpen(t, url, storetest.Key(2)) // the old key dropped
	for i := range refreshed {
		user := fmt.Sprintf("U%04d", i*n/refreshed)
		got, err := only.GetBinding(t.Context(), "T1", user)
		if err != nil || got.RefreshToken != "new-"+user {
			t.Errorf("GetBinding(%s) after Rotate: refresh token %q, %v; want the refreshed one", user, got.RefreshToken, err)
		}
	}
}

// TestPendingAcrossReplicas: a link made on one replica is redeemed on
// another, once however many race for it on both; links made for one
// person on two replicas at once leave one live link.
func TestPendingAcrossReplicas(t *testing.T) {
	url := pgtest.Database(t)
	replicas := []*DB{mustOpen(t, url), mustOpen(t, url)}
	p := storetest.SamplePending(replicas[0].now(), "U1")

	state, err := replicas[0].CreatePending(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	var redeemed, notFound atomicCount
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := replicas[i%2].RedeemPending(t.Context(), state)
			switch {
			case err == nil:
				redeemed.add()
			case errors.Is(err, store.ErrNotFound):
				notFound.add()
			default:
				t.Errorf("RedeemPending: %v", err)
			}
		})
	}
	wg.Wait()
	if redeemed.get() != 1 || notFound.get() != n-1 {
		t.Errorf("%d redeemed and %d not found, want 1 and %d", redeemed.get(), notFound.get(), n-1)
	}

	for i := range n {
		wg.Go(func() {
			if _, err := replicas[i%2].CreatePending(t.Context(), p); err != nil {
				t.Errorf("CreatePending: %v", err)
			}
		})
	}
	wg.Wait()
	var links int
	if err := mustConn(t, url).QueryRow(t.Context(), `SELECT count(*) FROM `+tablePending+` WHERE user_key = 'T1/U1'`).Scan(&links); err != nil {
		t.Fatal(err)
	}
	if links != 1 {
		t.Errorf("%d links for one person after %d concurrent CreatePending, want 1", links, n)
	}
}

// TestReplaceBindingAcrossReplicas: replicas confirming links for one new
// person at once each get back the grant they replaced: of all the grants
// stored, one is kept and every other is handed back exactly once, for
// revoking, and only the first write found nothing there.
func TestReplaceBindingAcrossReplicas(t *testing.T) {
	url := pgtest.Database(t)
	replicas := []*DB{mustOpen(t, url), mustOpen(t, url)}
	const n = 12
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		back    []string // refresh tokens handed back
		missing int      // writes that found nothing there
	)
	for i := range n {
		wg.Go(func() {
			b := storetest.SampleBinding("T1", "U1")
			b.RefreshToken = fmt.Sprintf("refresh-%02d", i)
			old, err := replicas[i%2].ReplaceBinding(t.Context(), b)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil || old.Err != nil:
				t.Errorf("ReplaceBinding: %v, %v", err, old.Err)
			case old.Found:
				back = append(back, old.Binding.RefreshToken)
			default:
				missing++
			}
		})
	}
	wg.Wait()
	kept, err := replicas[0].GetBinding(t.Context(), "T1", "U1")
	if err != nil {
		t.Fatal(err)
	}
	all := append(back, kept.RefreshToken)
	slices.Sort(all)
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("refresh-%02d", i))
	}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("grants handed back and kept mismatch (-want +got):\n%s", diff)
	}
	if missing != 1 {
		t.Errorf("%d writes found nothing there, want 1", missing)
	}
	if c, err := replicas[1].CountBindings(t.Context()); err != nil || c != 1 {
		t.Errorf("CountBindings = %d, %v; want 1", c, err)
	}
}
