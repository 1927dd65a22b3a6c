package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/bot/slacktest"
	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
)

// halfRotated is README's rotation with step 2 skipped: a store with two
// bindings under the old key, opened once by a daemon with the new key
// first (which re-sealed the canary under it and wrote one binding), and
// a key file that now holds only the new key.
type halfRotated struct {
	db, keyFile    string
	oldKey, newKey string
	oldID, newID   string
}

// fix is the advice every command gives for the key the half-rotated
// store lacks: the same words in run's refusal, doctor's fix and key
// rotate's report.
func (h halfRotated) fix() string {
	return store.MissingKeysFix([]string{h.oldID}, "FORCEBIND_KEY_FILE "+h.keyFile)
}

func mustHalfRotated(t *testing.T) halfRotated {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	h := halfRotated{db: filepath.Join(dir, "forcebind.db"), keyFile: filepath.Join(dir, "forcebind.key"), oldKey: mustKey(t), newKey: mustKey(t)}
	h.oldID, h.newID = mustKeyID(t, h.oldKey), mustKeyID(t, h.newKey)
	put := func(ring string, users ...string) {
		t.Helper()
		kr, err := store.KeyringFromEnv(ring)
		if err != nil {
			t.Fatal(err)
		}
		db, err := bolt.Open(h.db, bolt.Options{Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			b := store.Binding{TeamID: "T1", UserID: u, AccessToken: "access-" + u, RefreshToken: "refresh-" + u}
			if err := db.PutBinding(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	put(h.oldKey, "U1", "U2")
	put(h.newKey+","+h.oldKey, "U3")
	h.writeKeys(t, h.newKey)
	return h
}

// writeKeys replaces the key file.
func (h halfRotated) writeKeys(t *testing.T, keys ...string) {
	t.Helper()
	if err := os.WriteFile(h.keyFile, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (h halfRotated) env() map[string]string {
	return map[string]string{"FORCEBIND_DB": h.db, "FORCEBIND_KEY_FILE": h.keyFile}
}

// noKeys fails the test if out shows either key.
func (h halfRotated) noKeys(t *testing.T, out string) {
	t.Helper()
	if strings.Contains(out, h.oldKey) || strings.Contains(out, h.newKey) {
		t.Errorf("output shows key material:\n%s", out)
	}
}

func mustKeyID(t *testing.T, key string) string {
	t.Helper()
	kr, err := store.KeyringFromEnv(key)
	if err != nil {
		t.Fatal(err)
	}
	return kr.PrimaryID()
}

// mustCountBindings opens the store with ring and counts its bindings.
func mustCountBindings(t *testing.T, path, ring string) int {
	t.Helper()
	kr, err := store.KeyringFromEnv(ring)
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, bolt.Options{Keyring: kr, ReadOnly: true})
	if err != nil {
		t.Fatalf("open with %d keys: %v", strings.Count(ring, ",")+1, err)
	}
	defer db.Close()
	n, err := db.CountBindings(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRunRefusesMissingKey: the daemon does not start on a ring that lacks
// a key still sealing bindings, and says which key id and which setting,
// before it contacts Slack.
func TestRunRefusesMissingKey(t *testing.T) {
	h := mustHalfRotated(t)
	s := slacktest.NewServer(slacktest.Options{})
	defer s.Close()
	sf := sftest.NewServer(sftest.Options{})
	defer sf.Close()
	env := daemonEnv(t, s, sf)
	delete(env, "FORCEBIND_KEY")
	env["FORCEBIND_DB"], env["FORCEBIND_KEY_FILE"] = h.db, h.keyFile

	var stderr syncBuffer
	code := run(t.Context(), []string{"run"}, func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, &stderr)
	got := stderr.String()
	if code != exitFail {
		t.Errorf("exit %d, want %d; stderr:\n%s", code, exitFail, got)
	}
	for _, want := range []string{store.ErrWrongKey.Error(), h.oldID, "2 bindings", "FORCEBIND_KEY_FILE " + h.keyFile, h.fix()} {
		if !strings.Contains(got, want) {
			t.Errorf("stderr does not say %q:\n%s", want, got)
		}
	}
	h.noKeys(t, got)
	if calls := s.Calls(); len(calls) > 0 {
		t.Errorf("Slack was called before the store was refused: %v", calls)
	}
}

// TestKeyRotateMissingKey: rotate moves what it can, names per key id what
// it could not, and fails; with the old key back it finishes the job.
func TestKeyRotateMissingKey(t *testing.T) {
	h := mustHalfRotated(t)
	code, out, errOut := runCLI(t, h.env(), "key", "rotate")
	if code != exitFail {
		t.Errorf("key rotate with a key missing: exit %d, want %d", code, exitFail)
	}
	if !strings.Contains(out, "re-sealed 2 records") { // U3 and the canary
		t.Errorf("stdout does not report what moved: %q", out)
	}
	for _, want := range []string{"2 records of " + h.db + " did not open", "key id " + h.oldID + ", not in FORCEBIND_KEY_FILE " + h.keyFile + ": 2 bindings",
		"do not remove any key", h.fix()} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr does not say %q:\n%s", want, errOut)
		}
	}
	h.noKeys(t, out+errOut)

	h.writeKeys(t, h.newKey, h.oldKey)
	code, out, errOut = runCLI(t, h.env(), "key", "rotate")
	if code != exitOK || !strings.Contains(out, "re-sealed 4 records") || !strings.Contains(out, "may now be removed") {
		t.Fatalf("key rotate with both keys: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if n := mustCountBindings(t, h.db, h.newKey); n != 3 {
		t.Errorf("%d bindings open with the new key alone, want 3", n)
	}
}

// TestKeyRotateDropUnopenable is the way out for a key lost for good.
func TestKeyRotateDropUnopenable(t *testing.T) {
	h := mustHalfRotated(t)
	code, out, errOut := runCLI(t, h.env(), "key", "rotate", "-drop-unopenable")
	if code != exitOK {
		t.Fatalf("key rotate -drop-unopenable: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"deleted 2 records", "key id " + h.oldID, "connect again", "revoke", "forcebind compact"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout does not say %q:\n%s", want, out)
		}
	}
	h.noKeys(t, out+errOut)
	if n := mustCountBindings(t, h.db, h.newKey); n != 1 {
		t.Errorf("%d bindings left, want the one under the new key", n)
	}
}

// TestKeyRotateLocked: rotate needs the daemon stopped and says so.
func TestKeyRotateLocked(t *testing.T) {
	h := mustHalfRotated(t)
	kr, err := store.KeyringFromEnv(h.newKey + "," + h.oldKey)
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(h.db, bolt.Options{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	code, _, errOut := runCLI(t, h.env(), "key", "rotate")
	if code != exitFail || !strings.Contains(errOut, "stop forcebind first") {
		t.Errorf("key rotate on a store in use: exit %d, %q", code, errOut)
	}
}

// TestDoctorMissingKey: doctor fails the store check as run would refuse
// it, with a fix that names the key id and the setting.
func TestDoctorMissingKey(t *testing.T) {
	f := mustDoctorFixture(t, sftest.Options{})
	h := mustHalfRotated(t)
	delete(f.env, "FORCEBIND_KEY")
	f.env["FORCEBIND_DB"], f.env["FORCEBIND_KEY_FILE"] = h.db, h.keyFile

	code, out, got := runDoctorCLI(t, f.env)
	if code != exitFail {
		t.Errorf("exit %d, want %d", code, exitFail)
	}
	var st *checkResult
	for i := range got {
		if got[i].Name == "store" {
			st = &got[i]
		}
	}
	if st == nil || st.Status != statusFail {
		t.Fatalf("no failed store check in\n%s", out)
	}
	for _, want := range []string{h.oldID, "2 bindings", store.ErrWrongKey.Error()} {
		if !strings.Contains(st.Detail, want) {
			t.Errorf("store detail does not say %q: %q", want, st.Detail)
		}
	}
	for _, want := range []string{"key with id " + h.oldID + " back in FORCEBIND_KEY_FILE " + h.keyFile, "forcebind key rotate", "-drop-unopenable"} {
		if !strings.Contains(st.Fix, want) {
			t.Errorf("store fix does not say %q: %q", want, st.Fix)
		}
	}
	// The advice is the one run and key rotate give, said once.
	if st.Fix != h.fix() || strings.Contains(st.Detail, h.fix()) {
		t.Errorf("store check: detail %q, fix %q; want the fix %q, and only as the fix", st.Detail, st.Fix, h.fix())
	}
	h.noKeys(t, out)

	// With the old key back but the rotation not run, the store opens and
	// doctor warns that the old key still seals records.
	h.writeKeys(t, h.newKey, h.oldKey)
	_, out, got = runDoctorCLI(t, f.env)
	want := fmt.Sprintf("2 bindings still sealed under key id %s, not the primary", h.oldID)
	for _, r := range got {
		if r.Name == "store" && (r.Status != statusWarn || !strings.Contains(r.Detail, want)) {
			t.Errorf("store check %s %q, want a warning that says %q", r.Status, r.Detail, want)
		}
	}
	h.noKeys(t, out)
}

// TestBackupRefusesMissingKey: backup judges the store as Open does (the
// decision documented in bolt.Options.ReadOnly): a copy checked with a
// ring that cannot open all of it is not a backup this ring can restore,
// so it is refused, naming the key id, and nothing is written.
func TestBackupRefusesMissingKey(t *testing.T) {
	h := mustHalfRotated(t)
	dst := filepath.Join(t.TempDir(), "backup.db")
	code, _, errOut := runCLI(t, h.env(), "backup", dst)
	if code != exitFail || !strings.Contains(errOut, h.oldID) || !strings.Contains(errOut, "FORCEBIND_KEY_FILE") {
		t.Errorf("backup with a key missing: exit %d, %q; want exit %d naming key id %s and the setting", code, errOut, exitFail, h.oldID)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("backup wrote %s anyway (stat: %v)", dst, err)
	}
	h.writeKeys(t, h.newKey, h.oldKey)
	if code, _, errOut := runCLI(t, h.env(), "backup", dst); code != exitOK {
		t.Errorf("backup with both keys: exit %d, %q", code, errOut)
	}
}

// TestDoctorDamagedRecords: records too damaged to name a key do not stop
// the store from opening (they fail one by one), but doctor warns.
func TestDoctorDamagedRecords(t *testing.T) {
	f := mustDoctorFixture(t, sftest.Options{})
	bdb, err := bbolt.Open(f.env["FORCEBIND_DB"], 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("bindings")).Put([]byte("T1/U9"), []byte{1, 2}) })
	if cerr := bdb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	_, out, got := runDoctorCLI(t, f.env)
	for _, r := range got {
		if r.Name == "store" && (r.Status != statusWarn || !strings.Contains(r.Detail, "1 binding too damaged to name a key")) {
			t.Errorf("store check %s %q, want a warning about the damaged binding\n%s", r.Status, r.Detail, out)
		}
	}
}
