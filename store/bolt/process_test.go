package bolt

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forcebind/forcebind/store"
)

// The helper process is this test binary re-run with these variables set.
const (
	helperModeEnv = "FORCEBIND_STORE_HELPER"
	helperPathEnv = "FORCEBIND_STORE_HELPER_PATH"
	helperKeyEnv  = "FORCEBIND_STORE_HELPER_KEY"
)

// TestHelperProcess is not a test: it is the child process of the
// multi-process tests, and does nothing unless helperModeEnv is set.
//
//	hold:   open the store, print "ready", hold it until stdin closes
//	writer: open the store and put bindings U0, U1, … printing each index
//	        once its transaction has committed, until killed
//	lock:   create the file empty and take bbolt's lock on it, as bbolt
//	        does first when it creates a store; print "ready", hold the
//	        lock until stdin closes, and exit leaving the file empty
//	try:    open the store with a short lock timeout and print "opened"
//	        or "locked"
//	put:    open the store, waiting as long as it takes, put binding
//	        T1/child, close it and print "done", as a daemon that starts
//	        while another process holds the store would
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperModeEnv)
	if mode == "" {
		t.Skip("helper process only")
	}
	if mode == "lock" {
		f, err := os.OpenFile(os.Getenv(helperPathEnv), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if ok, err := tryLock(f, false); !ok || err != nil {
			fmt.Fprintln(os.Stderr, "lock:", ok, err)
			os.Exit(2)
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	kr, err := store.KeyringFromEnv(os.Getenv(helperKeyEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	switch mode {
	case "try":
		db, err := Open(os.Getenv(helperPathEnv), Options{Keyring: kr, LockTimeout: 100 * time.Millisecond})
		switch {
		case errors.Is(err, store.ErrLocked):
			fmt.Println("locked")
		case err != nil:
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		default:
			fmt.Println("opened")
			db.Close()
		}
		os.Exit(0)
	case "put":
		db, err := Open(os.Getenv(helperPathEnv), Options{Keyring: kr, LockTimeout: time.Minute})
		if err == nil {
			err = db.PutBinding(t.Context(), sampleBinding("T1", "child"))
		}
		if err == nil {
			err = db.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("done")
		os.Exit(0)
	}
	db, err := Open(os.Getenv(helperPathEnv), Options{Keyring: kr})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	switch mode {
	case "hold":
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
	case "writer":
		for i := 0; ; i++ {
			if err := db.PutBinding(t.Context(), sampleBinding("T1", "U"+strconv.Itoa(i))); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			fmt.Println(i)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
		os.Exit(2)
	}
	if err := db.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(0)
}

// startHelper runs the helper process in mode on the store at path under
// testKey(1), returning its stdout. The child is killed when the test ends.
func startHelper(t *testing.T, mode, path string) (*exec.Cmd, *bufio.Scanner, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		helperModeEnv+"="+mode,
		helperPathEnv+"="+path,
		helperKeyEnv+"="+base64.StdEncoding.EncodeToString(testKey(1)),
	)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, bufio.NewScanner(stdout), stdin
}

func TestOpenLockedByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1))}))

	cmd, out, stdin := startHelper(t, "hold", path)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("helper did not report ready (got %q, %v)", out.Text(), out.Err())
	}

	const timeout = 200 * time.Millisecond
	for _, ro := range []bool{false, true} {
		start := time.Now()
		db, err := Open(path, Options{Keyring: mustKeyring(t, testKey(1)), LockTimeout: timeout, ReadOnly: ro})
		elapsed := time.Since(start)
		if err == nil {
			db.Close()
			t.Fatalf("Open(readonly=%t) while another process holds the file: no error", ro)
		}
		if !errors.Is(err, store.ErrLocked) {
			t.Fatalf("Open(readonly=%t) error = %v, want ErrLocked", ro, err)
		}
		if !strings.Contains(err.Error(), "locked by another process") {
			t.Errorf("error %q does not say another process holds the file", err)
		}
		// Generous bound: the point is that it does not hang.
		if elapsed > timeout+5*time.Second {
			t.Errorf("Open took %s with a %s lock timeout", elapsed, timeout)
		}
	}

	// Once the other process lets go, the file opens.
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1)), LockTimeout: timeout})
}

func TestKilledWriterLosesNothingCommitted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1))}))

	cmd, out, _ := startHelper(t, "writer", path)
	const atLeast = 20
	last := -1
	for out.Scan() {
		i, err := strconv.Atoi(out.Text())
		if err != nil {
			t.Fatalf("helper printed %q", out.Text())
		}
		if i != last+1 {
			t.Fatalf("helper printed %d after %d", i, last)
		}
		last = i
		if last+1 >= atLeast {
			break
		}
	}
	if last+1 < atLeast {
		t.Fatalf("helper reported only %d commits (%v)", last+1, out.Err())
	}
	// Kill it while it is (most likely) inside the next PutBinding.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Indices printed after we stopped reading were committed too. Read
	// them to EOF (the child's death closes the pipe) before Wait, which
	// would discard them.
	for out.Scan() {
		if i, err := strconv.Atoi(out.Text()); err == nil {
			last = i
		}
	}
	_ = cmd.Wait()

	ctx := t.Context()
	db := mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1))})
	for i := 0; i <= last; i++ {
		want := sampleBinding("T1", "U"+strconv.Itoa(i))
		got, err := db.GetBinding(ctx, want.TeamID, want.UserID)
		if err != nil {
			t.Fatalf("binding %d of %d reported committed: %v", i, last+1, err)
		}
		if got.AccessToken != want.AccessToken {
			t.Fatalf("binding %d: wrong access token", i)
		}
	}
	n, err := db.CountBindings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The write in flight when the child died may or may not have landed.
	if n != last+1 && n != last+2 {
		t.Errorf("CountBindings = %d, want %d or %d", n, last+1, last+2)
	}
	// And the file still takes writes.
	mustPutBinding(t, db, sampleBinding("T1", "after"))
}
