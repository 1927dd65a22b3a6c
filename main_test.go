package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
)

// runCLI runs forcebind in-process with env as its whole environment.
func runCLI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func mustKey(t *testing.T) string {
	t.Helper()
	code, out, errOut := runCLI(t, nil, "key", "generate")
	if code != exitOK {
		t.Fatalf("key generate: exit %d: %s", code, errOut)
	}
	return strings.TrimSpace(out)
}

func TestKeyGenerate(t *testing.T) {
	a, b := mustKey(t), mustKey(t)
	if a == b {
		t.Fatal("two generated keys are equal")
	}
	if _, err := store.KeyringFromEnv(a); err != nil {
		t.Fatalf("generated key does not parse: %v", err)
	}
}

func TestKeyRotate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "forcebind.db")
	oldKey, newKey := mustKey(t), mustKey(t)
	want := store.Binding{TeamID: "T1", UserID: "U1", OrgID: "00D000000000001AAA", SalesforceUserID: "005000000000001AAA",
		InstanceURL: "https://acme.my.salesforce.com", AccessToken: "access-1", RefreshToken: "refresh-1"}

	mustWrite := func(ring string) {
		t.Helper()
		kr, err := store.KeyringFromEnv(ring)
		if err != nil {
			t.Fatal(err)
		}
		db, err := bolt.Open(dbPath, bolt.Options{Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.PutBinding(ctx, want); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(oldKey)

	// The new key goes first in a 0600 key file, the old one stays below it.
	keyFile := filepath.Join(dir, "keys")
	if err := os.WriteFile(keyFile, []byte("# rotated today\n"+newKey+"\n"+oldKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, map[string]string{"FORCEBIND_DB": dbPath, "FORCEBIND_KEY_FILE": keyFile}, "key", "rotate")
	if code != exitOK {
		t.Fatalf("key rotate: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "re-sealed") {
		t.Errorf("key rotate output %q does not report what it did", out)
	}
	if strings.Contains(out+errOut, newKey) || strings.Contains(out+errOut, oldKey) {
		t.Error("key rotate printed key material")
	}

	// After rotation the old key can be dropped.
	kr, err := store.KeyringFromEnv(newKey)
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(dbPath, bolt.Options{Keyring: kr})
	if err != nil {
		t.Fatalf("open with only the new key after rotate: %v", err)
	}
	defer db.Close()
	got, err := db.GetBinding(ctx, "T1", "U1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("binding after rotate mismatch (-want +got):\n%s", diff)
	}
}

func TestKeyRotateErrors(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "forcebind.db")
	key, other := mustKey(t), mustKey(t)
	// Create the store under key.
	if code, _, errOut := runCLI(t, map[string]string{"FORCEBIND_DB": dbPath, "FORCEBIND_KEY": key}, "key", "rotate"); code != exitOK {
		t.Fatalf("rotate on a new store: %s", errOut)
	}
	loose := filepath.Join(dir, "loose.key")
	if err := os.WriteFile(loose, []byte(key+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no key", map[string]string{"FORCEBIND_DB": dbPath}, nil, exitUsage, "one of FORCEBIND_KEY_FILE or FORCEBIND_KEY is required"},
		{"both keys", map[string]string{"FORCEBIND_DB": dbPath, "FORCEBIND_KEY": key, "FORCEBIND_KEY_FILE": loose}, nil, exitUsage, "set only one"},
		{"malformed key", map[string]string{"FORCEBIND_DB": dbPath, "FORCEBIND_KEY": "bm90LWEta2V5"}, nil, exitUsage, "FORCEBIND_KEY"},
		{"wrong key", map[string]string{"FORCEBIND_DB": dbPath, "FORCEBIND_KEY": other}, nil, exitFail, store.ErrWrongKey.Error()},
		{"key file readable by others", map[string]string{"FORCEBIND_DB": dbPath, "FORCEBIND_KEY_FILE": loose}, nil, exitUsage, "chmod 600"},
		{"flag wins over env", map[string]string{"FORCEBIND_DB": dbPath, "FORCEBIND_KEY": key}, []string{"-key", other}, exitFail, store.ErrWrongKey.Error()},
		{"stray argument", map[string]string{"FORCEBIND_DB": dbPath, "FORCEBIND_KEY": key}, []string{"extra"}, exitUsage, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tt.env, append([]string{"key", "rotate"}, tt.args...)...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tt.wantCode, tt.wantErr)
			}
			if strings.Contains(errOut, key) || strings.Contains(errOut, other) {
				t.Errorf("stderr shows key material: %q", errOut)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"version"}, exitOK, "forcebind dev"},
		{[]string{"help"}, exitOK, "key generate"},
		{nil, exitUsage, "Usage:"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"key"}, exitUsage, "key generate"},
		{[]string{"key", "spin"}, exitUsage, `unknown subcommand "spin"`},
		{[]string{"key", "generate", "x"}, exitUsage, "takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, nil, tt.args...)
			if code != tt.wantCode || !strings.Contains(out+errOut, tt.wantOut) {
				t.Errorf("exit %d, output %q; want exit %d and %q", code, out+errOut, tt.wantCode, tt.wantOut)
			}
		})
	}
}

// Flag usage (printed on -h or a bad flag) must not show secrets taken from
// the environment.
func TestUsageHidesSecrets(t *testing.T) {
	env := map[string]string{
		"SLACK_APP_TOKEN": "xapp-SECRET-APP", "SLACK_BOT_TOKEN": "xoxb-SECRET-BOT",
		"SALESFORCE_CLIENT_SECRET": "SECRET-CLIENT", "FORCEBIND_KEY": "SECRET-KEY",
	}
	for _, args := range [][]string{{"run", "-bogus"}, {"run", "-h"}, {"key", "rotate", "-bogus"}} {
		_, out, errOut := runCLI(t, env, args...)
		if !strings.Contains(out+errOut, "-slack-bot-token") && args[0] == "run" {
			t.Errorf("%v printed no usage", args)
		}
		for _, v := range env {
			if strings.Contains(out+errOut, v) {
				t.Errorf("%v printed the secret %q", args, v)
			}
		}
	}
}

func TestCompact(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "forcebind.db")
	key := mustKey(t)
	kr, err := store.KeyringFromEnv(key)
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(dbPath, bolt.Options{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		b := store.Binding{TeamID: "T1", UserID: fmt.Sprintf("U%d", i), AccessToken: "a", RefreshToken: "r"}
		if err := db.PutBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			if err := db.DeleteBinding(ctx, "T1", fmt.Sprintf("U%d", i-1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	env := map[string]string{"FORCEBIND_DB": dbPath, "FORCEBIND_KEY": key}
	// While another process (here: this one) holds the store, compact refuses.
	if code, _, errOut := runCLI(t, env, "compact"); code != exitFail || !strings.Contains(errOut, "stop forcebind first") {
		t.Errorf("compact of a store in use: exit %d, %q", code, errOut)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, env, "compact")
	if code != exitOK || !strings.Contains(out, "compacted") {
		t.Fatalf("compact: exit %d: %s", code, errOut)
	}
	db, err = bolt.Open(dbPath, bolt.Options{Keyring: kr})
	if err != nil {
		t.Fatalf("open after compact: %v", err)
	}
	defer db.Close()
	if n, _ := db.CountBindings(ctx); n != 1 {
		t.Errorf("%d bindings after compact, want 1", n)
	}
	if _, err := os.Stat(dbPath + ".compacting"); !os.IsNotExist(err) {
		t.Error("temporary file left behind")
	}
}
