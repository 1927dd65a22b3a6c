// Package pgtest starts a throwaway PostgreSQL server for a test run, the
// way the bbolt tests use a real file: initdb into a temporary directory,
// postgres listening only on a unix socket there, a fresh database per
// test, and everything stopped and removed at the end. No Docker, no fixed
// port, nothing shared between runs.
//
// The server binaries are found through FORCEBIND_PG_BINDIR, else
// `pg_config --bindir`, else initdb on PATH, else /usr/lib/postgresql/*/bin.
// Where there are none, [Database] skips the test with a message saying how
// to run it, unless FORCEBIND_REQUIRE_POSTGRES=1 is set (CI sets it), which
// makes a missing server a failure. PostgreSQL refuses to run as root, so
// when the test runs as root the server runs as the `postgres` system user
// (or FORCEBIND_PG_USER).
//
// Use it from TestMain, one server per test binary, started only when a
// test first asks for a database:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		url := pgtest.Database(t) // postgres:///t_…?host=/tmp/…
//	}
//
// [Start] and [Server] are the same without the package's shared server,
// for a test that needs its own.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The environment variables pgtest reads.
const (
	// EnvRequire, set to 1, turns a missing PostgreSQL into a failure.
	EnvRequire = "FORCEBIND_REQUIRE_POSTGRES"
	// EnvBinDir names the directory of initdb and postgres.
	EnvBinDir = "FORCEBIND_PG_BINDIR"
	// EnvUser names the system user the server runs as when the tests
	// run as root; the default is postgres.
	EnvUser = "FORCEBIND_PG_USER"
)

const (
	superuser    = "forcebind"
	startTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second
)

// ErrNoPostgres is returned by Start when no PostgreSQL server binaries
// are found.
var ErrNoPostgres = errors.New("no PostgreSQL server binaries found (install postgresql, or set " + EnvBinDir + " to the directory holding initdb and postgres)")

// A Server is a running throwaway PostgreSQL. Its methods are safe for
// concurrent use.
type Server struct {
	dir     string // everything: data directory, socket, log
	port    int
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// Start runs initdb in a new temporary directory and starts postgres on a
// unix socket there, and returns once it accepts connections. The server
// runs with fsync off: it is for tests, and its data dies with it.
func Start(ctx context.Context) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, uid, gid, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "forcebind-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: hand %s to the server's user: %w", dir, err)
		}
	}
	s := &Server{dir: dir, port: 20000 + mathrand.IntN(40000), exited: make(chan struct{})}
	if err := s.start(ctx, bin, cred); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, bin string, cred *syscall.Credential) error {
	data := filepath.Join(s.dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-U", superuser, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Env = childEnv()
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	// Every role is trusted on the socket, but those in PasswordGroup, so
	// that a test can log in with a password as an operator would.
	hba := "local all +" + PasswordGroup + " scram-sha-256\nlocal all all trust\n"
	if err := writeAs(filepath.Join(data, "pg_hba.conf"), hba, cred); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(s.dir, "postgres.log"))
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close()
	s.cmd = exec.Command(filepath.Join(bin, "postgres"),
		"-D", data, "-k", s.dir, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=16MB")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.Env = childEnv()
	// SIGQUIT, PostgreSQL's immediate shutdown, if the test binary dies
	// without stopping the server (a panic, a timeout).
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx); err != nil {
		return err
	}
	return s.Exec(ctx, "postgres", "CREATE ROLE "+PasswordGroup+" NOLOGIN")
}

// PasswordGroup is a role on every Server: a role made a member of it
// (CREATE ROLE … LOGIN PASSWORD '…' IN ROLE pgtest_password) must log in
// with its password, where every other role is trusted.
const PasswordGroup = "pgtest_password"

// writeAs writes a file of the server's, owned by its user.
func writeAs(path, content string, cred *syscall.Credential) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if cred != nil {
		if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	return nil
}

// waitReady connects until the server answers, the server exits or
// startTimeout passes.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-s.exited:
			return fmt.Errorf("pgtest: postgres exited (%v) before accepting connections:\n%s", s.waitErr, s.log())
		case <-ctx.Done():
			return fmt.Errorf("pgtest: postgres did not accept connections within %s: %v\n%s", startTimeout, err, s.log())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// log returns the server's log, for an error.
func (s *Server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
	return string(b)
}

// URL returns the URL of the database named db on the server, over its
// unix socket, as the superuser (trusted: no password).
func (s *Server) URL(db string) string {
	q := url.Values{"host": {s.dir}, "port": {strconv.Itoa(s.port)}, "user": {superuser}, "sslmode": {"disable"}}
	return "postgres:///" + url.PathEscape(db) + "?" + q.Encode()
}

// SocketDir returns the directory of the server's unix socket.
func (s *Server) SocketDir() string {
	return s.dir
}

// Port returns the port that names the server's socket in SocketDir.
func (s *Server) Port() int {
	return s.port
}

// Exec runs sql on the database db as the superuser, for a test's setup
// (such as a role with a password).
func (s *Server) Exec(ctx context.Context, db, sql string) error {
	conn, err := pgx.Connect(ctx, s.URL(db))
	if err != nil {
		return fmt.Errorf("pgtest: connect to %s: %w", db, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("pgtest: on %s: %w", db, err)
	}
	return nil
}

// CreateDatabase creates a new, empty database with a random name and
// returns its URL.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	name := "t_" + randHex(8)
	if err := s.Exec(ctx, "postgres", "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return s.URL(name), nil
}

// Stop stops the server (SIGINT, PostgreSQL's fast shutdown; SIGKILL if it
// has not stopped within stopTimeout) and removes its directory. Calling
// it again returns the first call's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			_ = s.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-s.exited:
			case <-time.After(stopTimeout):
				_ = s.cmd.Process.Kill()
				<-s.exited
				s.stopErr = fmt.Errorf("pgtest: postgres did not stop within %s of SIGINT; killed", stopTimeout)
			}
		}
		if err := os.RemoveAll(s.dir); err != nil && s.stopErr == nil {
			s.stopErr = fmt.Errorf("pgtest: %w", err)
		}
	})
	return s.stopErr
}

// shared is the server of Main and Database: started by the first
// Database call, stopped when Main's tests end. A test binary runs one
// TestMain, so one per process is what "one server per run" means.
var shared struct {
	mu      sync.Mutex
	inMain  bool
	started bool
	server  *Server
	err     error
}

// Main runs the tests of m and then stops the server Database started, if
// any; it returns m.Run's code, or 1 if the server would not stop. Call it
// from TestMain.
func Main(m *testing.M) int {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.server != nil {
		if err := shared.server.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Shared returns the test binary's server, starting it at the first
// call. Without PostgreSQL it skips tb, or fails it when
// FORCEBIND_REQUIRE_POSTGRES=1; it fails tb if the server will not start
// or Main is not running the tests.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.inMain {
		tb.Fatal("pgtest: call pgtest.Main from TestMain, so that the server is stopped at the end")
	}
	if !shared.started {
		shared.started = true
		// Not tb's context: the server outlives this test.
		shared.server, shared.err = Start(context.Background())
	}
	switch {
	case errors.Is(shared.err, ErrNoPostgres) && !requirePostgres():
		tb.Skipf("skipped: %v; or set %s=1 to make this a failure", shared.err, EnvRequire)
	case shared.err != nil:
		tb.Fatalf("%v", shared.err)
	}
	return shared.server
}

// Database returns the URL of a new, empty database on the test binary's
// server (see Shared), for tb alone.
func Database(tb testing.TB) string {
	tb.Helper()
	u, err := Shared(tb).CreateDatabase(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// requirePostgres reports whether a missing PostgreSQL is a failure.
func requirePostgres() bool {
	return os.Getenv(EnvRequire) == "1"
}

// binDir finds the directory holding initdb and postgres.
func binDir() (string, error) {
	usable := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	if dir := os.Getenv(EnvBinDir); dir != "" {
		if !usable(dir) {
			return "", fmt.Errorf("%w: %s=%s holds no initdb and postgres", ErrNoPostgres, EnvBinDir, dir)
		}
		return dir, nil
	}
	var candidates []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	globbed, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(globbed) - 1; i >= 0; i-- { // the newest version first
		candidates = append(candidates, globbed[i])
	}
	for _, dir := range candidates {
		if usable(dir) {
			return dir, nil
		}
	}
	return "", ErrNoPostgres
}

// credential returns the user the server must run as: nil (the current
// one) unless the tests run as root, which PostgreSQL refuses.
func credential() (cred *syscall.Credential, uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return nil, 0, 0, nil
	}
	name := os.Getenv(EnvUser)
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("pgtest: running as root, and PostgreSQL will not: %w (create the user, or set %s to another unprivileged one)", err, EnvUser)
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("pgtest: user %s: uid %q", name, u.Uid)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("pgtest: user %s: gid %q", name, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, uid, gid, nil
}

// childEnv is the environment of initdb and postgres: the test's, without
// the libpq settings that would point them elsewhere, and a locale that
// exists everywhere.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LANG=C")
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
