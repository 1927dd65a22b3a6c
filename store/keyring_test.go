package store

import (
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestKeyringFromEnv(t *testing.T) {
	k1, k2 := testKey(1), testKey(2)
	std1 := base64.StdEncoding.EncodeToString(k1)
	std2 := base64.StdEncoding.EncodeToString(k2)
	short := base64.StdEncoding.EncodeToString(k1[:31])
	long := base64.StdEncoding.EncodeToString(append(k1, 0))

	tests := []struct {
		name    string
		value   string
		wantIDs []string // key ids in ring order
		wantErr string   // substring; "" means success
	}{
		{name: "one std padded", value: std1, wantIDs: ids(k1)},
		{name: "std unpadded", value: base64.RawStdEncoding.EncodeToString(k1), wantIDs: ids(k1)},
		{name: "url padded", value: base64.URLEncoding.EncodeToString(k2), wantIDs: ids(k2)},
		{name: "url unpadded", value: base64.RawURLEncoding.EncodeToString(k2), wantIDs: ids(k2)},
		{name: "two with spaces", value: "  " + std1 + " ,\t" + std2 + " ", wantIDs: ids(k1, k2)},
		{name: "order decides primary", value: std2 + "," + std1, wantIDs: ids(k2, k1)},
		{name: "empty", value: "", wantErr: "FORCEBIND_KEY: no keys"},
		{name: "blank", value: "   ", wantErr: "FORCEBIND_KEY: no keys"},
		{name: "bad base64", value: std1 + ",not*base64!", wantErr: "FORCEBIND_KEY: key 2: not base64 of exactly 32 bytes"},
		{name: "31 bytes", value: short, wantErr: "FORCEBIND_KEY: key 1: not base64 of exactly 32 bytes"},
		{name: "33 bytes", value: long, wantErr: "FORCEBIND_KEY: key 1: not base64 of exactly 32 bytes"},
		{name: "trailing comma", value: std1 + ",", wantErr: "FORCEBIND_KEY: key 2: empty"},
		{name: "duplicate", value: std1 + "," + std2 + "," + std1, wantErr: "FORCEBIND_KEY: key 3: same key as key 1"},
		{name: "duplicate in other encoding", value: std1 + "," + base64.RawURLEncoding.EncodeToString(k1), wantErr: "FORCEBIND_KEY: key 2: same key as key 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := KeyringFromEnv(tt.value)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("KeyringFromEnv: no error, want %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				assertNoKeyMaterial(t, err.Error(), tt.value, k1, k2)
				return
			}
			if err != nil {
				t.Fatalf("KeyringFromEnv: %v", err)
			}
			if diff := cmp.Diff(tt.wantIDs, ringIDs(kr)); diff != "" {
				t.Errorf("key ids mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKeyringFromFile(t *testing.T) {
	k1, k2 := testKey(1), testKey(2)
	std1 := base64.StdEncoding.EncodeToString(k1)
	url2 := base64.RawURLEncoding.EncodeToString(k2)

	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		wantIDs []string
		wantErr []string // substrings; nil means success
	}{
		{name: "one key", content: std1 + "\n", mode: 0o600, wantIDs: ids(k1)},
		{name: "no final newline", content: std1, mode: 0o600, wantIDs: ids(k1)},
		{name: "read-only owner", content: std1 + "\n", mode: 0o400, wantIDs: ids(k1)},
		{
			name:    "comments and blank lines",
			content: "# forcebind keys, newest first\n\n" + url2 + "  # added in March\n   \n# old:\n" + std1 + "\n",
			mode:    0o600,
			wantIDs: ids(k2, k1),
		},
		{name: "CRLF", content: std1 + "\r\n" + url2 + "\r\n", mode: 0o600, wantIDs: ids(k1, k2)},
		{
			name:    "group readable",
			content: std1 + "\n",
			mode:    0o640,
			wantErr: []string{"FORCEBIND_KEY_FILE", "mode 0640", "chmod 600"},
		},
		{
			name:    "world readable",
			content: std1 + "\n",
			mode:    0o644,
			wantErr: []string{"FORCEBIND_KEY_FILE", "mode 0644", "chmod 600"},
		},
		{
			name:    "bad line",
			content: "# keys\n" + std1 + "\n\nnot base64\n",
			mode:    0o600,
			wantErr: []string{"FORCEBIND_KEY_FILE", "line 4: not base64 of exactly 32 bytes"},
		},
		{
			name:    "31 bytes",
			content: base64.StdEncoding.EncodeToString(k1[:31]) + "\n",
			mode:    0o600,
			wantErr: []string{"line 1: not base64 of exactly 32 bytes"},
		},
		{
			name:    "duplicate",
			content: std1 + "\n# again\n" + base64.RawURLEncoding.EncodeToString(k1) + "\n",
			mode:    0o600,
			wantErr: []string{"line 3: same key as line 1"},
		},
		{name: "only comments", content: "# nothing yet\n\n", mode: 0o600, wantErr: []string{"no keys"}},
		{name: "empty", content: "", mode: 0o600, wantErr: []string{"no keys"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			kr, err := KeyringFromFile(path)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("KeyringFromFile: no error, want %q", tt.wantErr)
				}
				for _, want := range append(tt.wantErr, path) {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				assertNoKeyMaterial(t, err.Error(), "", k1, k2)
				return
			}
			if err != nil {
				t.Fatalf("KeyringFromFile: %v", err)
			}
			if diff := cmp.Diff(tt.wantIDs, ringIDs(kr)); diff != "" {
				t.Errorf("key ids mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKeyringFromFileMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope")
	_, err := KeyringFromFile(path)
	if err == nil || !strings.Contains(err.Error(), "FORCEBIND_KEY_FILE") || !strings.Contains(err.Error(), path) {
		t.Fatalf("KeyringFromFile(missing) = %v, want an error naming the variable and path", err)
	}
}

func TestNewKeyring(t *testing.T) {
	tests := []struct {
		name    string
		keys    [][]byte
		wantErr string
	}{
		{name: "one", keys: [][]byte{testKey(1)}},
		{name: "three", keys: [][]byte{testKey(1), testKey(2), testKey(3)}},
		{name: "none", keys: nil, wantErr: "no keys"},
		{name: "31 bytes", keys: [][]byte{testKey(1)[:31]}, wantErr: "key 1: 31 bytes, want 32"},
		{name: "empty second", keys: [][]byte{testKey(1), {}}, wantErr: "key 2: 0 bytes, want 32"},
		{name: "duplicate", keys: [][]byte{testKey(1), testKey(2), testKey(2)}, wantErr: "key 3: same key as key 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := NewKeyring(tt.keys...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewKeyring: %v", err)
				}
				if got, want := len(kr.keys), len(tt.keys); got != want {
					t.Errorf("ring has %d keys, want %d", got, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewKeyring error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewKeyringDoesNotKeepSlices(t *testing.T) {
	k := testKey(1)
	kr := mustKeyring(t, k)
	rec := kr.Seal("b", []byte("k"), nil, []byte("hello"))
	clear(k)
	pt, err := kr.Open("b", []byte("k"), nil, rec)
	if err != nil || string(pt) != "hello" {
		t.Fatalf("Open after clearing the caller's key = %q, %v; want hello", pt, err)
	}
}

func TestGenerateKey(t *testing.T) {
	a, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two generated keys are equal")
	}
	raw, err := base64.StdEncoding.DecodeString(a)
	if err != nil || len(raw) != KeySize {
		t.Fatalf("GenerateKey() = %q: decodes to %d bytes, err %v; want %d bytes of std base64", a, len(raw), err, KeySize)
	}
	kr, err := KeyringFromEnv(a + "," + b)
	if err != nil {
		t.Fatalf("KeyringFromEnv(generated keys): %v", err)
	}
	if diff := cmp.Diff(ids(raw), ringIDs(kr)[:1]); diff != "" {
		t.Errorf("primary id mismatch (-want +got):\n%s", diff)
	}
}

func TestPrimaryID(t *testing.T) {
	k := testKey(1)
	got := mustKeyring(t, k, testKey(2)).PrimaryID()
	if len(got) != 2*keyIDLen {
		t.Fatalf("PrimaryID() = %q, want %d hex digits", got, 2*keyIDLen)
	}
	if again := mustKeyring(t, k).PrimaryID(); again != got {
		t.Errorf("PrimaryID is not stable: %q then %q", got, again)
	}
	if other := mustKeyring(t, testKey(2)).PrimaryID(); other == got {
		t.Errorf("two keys share id %q", got)
	}
	if strings.Contains(hex.EncodeToString(k), got) {
		t.Errorf("PrimaryID %q is a slice of the key itself", got)
	}
}

func ids(keys ...[]byte) []string {
	s := make([]string, len(keys))
	for i, k := range keys {
		id := keyID(k)
		s[i] = hex.EncodeToString(id[:])
	}
	return s
}

func ringIDs(kr *Keyring) []string {
	s := make([]string, len(kr.keys))
	for i, rk := range kr.keys {
		s[i] = hex.EncodeToString(rk.id[:])
	}
	return s
}

// assertNoKeyMaterial fails if msg contains the input or any encoding of
// the keys.
func assertNoKeyMaterial(t *testing.T, msg, input string, keys ...[]byte) {
	t.Helper()
	var needles []string
	for _, p := range strings.Split(input, ",") {
		if p = strings.TrimSpace(p); len(p) >= 8 {
			needles = append(needles, p)
		}
	}
	for _, k := range keys {
		needles = append(needles, encodings(string(k))...)
	}
	for _, n := range needles {
		if strings.Contains(msg, n) {
			t.Errorf("error %q contains key material %q", msg, n)
		}
	}
}

// encodings returns s raw and in the encodings a leak would likely take.
func encodings(s string) []string {
	b := []byte(s)
	return []string{
		s,
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b),
		strings.ToUpper(hex.EncodeToString(b)),
	}
}
