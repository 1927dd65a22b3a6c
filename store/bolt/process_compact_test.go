//go:build linux

package bolt

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestCompactHoldsLockAcrossRename: while compact puts the new file in
// place, a second process cannot open the store; and a process that
// opened the old file and waited for its lock (a daemon started during
// compaction) ends up writing to the new file, not to the unlinked one
// where its writes would vanish. Linux only: the test watches /proc to see
// the waiting process hold the old file open.
func TestCompactHoldsLockAcrossRename(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "s.db")
	opts := Options{Keyring: mustKeyring(t, testKey(1))}
	db := mustOpen(t, path, opts)
	for i := range 50 {
		mustPutBinding(t, db, sampleBinding("T1", "U"+strconv.Itoa(i)))
	}
	for i := range 40 {
		if err := db.DeleteBinding(ctx, "T1", "U"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, db)
	old, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	var (
		tried   string
		putDone = make(chan string, 1)
	)
	rename := func(from, to string) error {
		// A process trying now must find the store locked.
		_, out, _ := startHelper(t, "try", path)
		if out.Scan() {
			tried = out.Text()
		}
		// A process that opens the store now must not be lost: wait until
		// it holds the old file open (it is then waiting for the lock, or
		// has it), then replace the file under it.
		cmd, out, _ := startHelper(t, "put", path)
		go func() {
			line := "exited without a word"
			if out.Scan() {
				line = out.Text()
			}
			putDone <- line
		}()
		waitHoldsOpen(t, cmd.Process.Pid, old, putDone)
		return os.Rename(from, to)
	}
	before, after, err := compact(ctx, path, opts, rename)
	if err != nil {
		t.Fatalf("compact: %v", err)
	}
	if after >= before {
		t.Errorf("compacted %d bytes, not smaller than %d", after, before)
	}
	if tried != "locked" {
		t.Errorf("a process opening the store while compact replaced it: %q, want \"locked\"", tried)
	}
	if got := <-putDone; got != "done" {
		t.Fatalf("the process that waited for the store: %q", got)
	}

	db = mustOpen(t, path, opts)
	if _, err := db.GetBinding(ctx, "T1", "child"); err != nil {
		t.Errorf("the waiting process's write is not in the store: %v", err)
	}
	if n, err := db.CountBindings(ctx); err != nil || n != 11 {
		t.Errorf("CountBindings = %d, %v; want the 10 kept and the child's", n, err)
	}
}

// waitHoldsOpen waits until process pid has the file fi open, or until it
// has reported on done (then it no longer needs the file; the line is put
// back for the caller).
func waitHoldsOpen(t *testing.T, pid int, fi os.FileInfo, done chan string) {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	// A guard against hanging the test, not a measure of speed.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		select {
		case line := <-done:
			done <- line
			return
		default:
		}
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			if got, err := os.Stat(filepath.Join(dir, fd.Name())); err == nil && os.SameFile(got, fi) {
				return
			}
		}
	}
	t.Fatalf("process %d never opened %s", pid, fi.Name())
}
