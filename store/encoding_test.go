package store

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestStoredFormat opens records that an earlier build sealed: the stored
// form of a binding, a pending link and the canary must not change, since
// every backend keeps exactly these bytes and files written before still
// have to open.
func TestStoredFormat(t *testing.T) {
	f, err := os.Open("testdata/records.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs := map[string][]byte{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, h, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if recs[name], err = hex.DecodeString(h); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	kr := mustKeyring(t, testKey(1))
	b := sampleBinding("T1", "U1")
	got, err := kr.OpenBinding([]byte("T1/U1"), recs["binding"])
	if err != nil {
		t.Fatalf("OpenBinding: %v", err)
	}
	if diff := cmp.Diff(b, got); diff != "" {
		t.Errorf("binding mismatch (-want +got):\n%s", diff)
	}

	now := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	wantP := Pending{TeamID: "T1", TeamName: "Acme", UserID: "U2", ChannelID: "C1", DisplayName: "Jane U2", Verifier: "verifier-U2", Created: now, Expires: now.Add(10 * time.Minute), Binding: &b}
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	gotP, err := kr.OpenPending(key, recs["pending"])
	if err != nil {
		t.Fatalf("OpenPending: %v", err)
	}
	if diff := cmp.Diff(wantP, gotP); diff != "" {
		t.Errorf("pending mismatch (-want +got):\n%s", diff)
	}
	if exp, ok := PendingExpiry(recs["pending"]); !ok || !exp.Equal(wantP.Expires) {
		t.Errorf("PendingExpiry = %v, %t; want %v", exp, ok, wantP.Expires)
	}

	if primary, err := kr.CheckCanary(recs["canary"]); err != nil || !primary {
		t.Errorf("CheckCanary = %t, %v; want a canary under the primary", primary, err)
	}
	for name, rec := range recs {
		if name == "pending" {
			rec = rec[expiryLen:]
		}
		if id, ok := RecordKeyID(rec); !ok || id != kr.PrimaryID() {
			t.Errorf("RecordKeyID(%s) = %q, %t; want %s", name, id, ok, kr.PrimaryID())
		}
	}
}

func TestBindingKey(t *testing.T) {
	tests := []struct {
		team, user string
		want       string // "" means an error
	}{
		{"T1", "U1", "T1/U1"},
		{"", "U1", ""},
		{"T1", "", ""},
		{"T1/U1", "x", ""},
		{"T1", "U1/x", ""},
	}
	for _, tt := range tests {
		got, err := BindingKey(tt.team, tt.user)
		if (err == nil) != (tt.want != "") || string(got) != tt.want {
			t.Errorf("BindingKey(%q, %q) = %q, %v; want %q", tt.team, tt.user, got, err, tt.want)
		}
	}
}

func TestState(t *testing.T) {
	state, key, err := NewState()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(state)
	if err != nil || len(raw) != 32 || strings.ContainsAny(state, "=+/") {
		t.Fatalf("state %q: want 32 bytes of unpadded base64url (decoded %d bytes, %v)", state, len(raw), err)
	}
	if bytes.Contains(key, raw) || bytes.Contains(key, []byte(state)) {
		t.Error("the record key holds the raw state")
	}
	if got, ok := StateKey(state); !ok || !bytes.Equal(got, key) {
		t.Errorf("StateKey(state) = %x, %t; want %x", got, ok, key)
	}
	other, _, err := NewState()
	if err != nil || other == state {
		t.Errorf("a second NewState = %q, %v; want another state", other, err)
	}
	for _, bad := range []string{
		"", "!!!!", "\xff\xfe\x00", strings.Repeat("A", 1<<16),
		base64.URLEncoding.EncodeToString(make([]byte, 32)),    // padded
		base64.RawURLEncoding.EncodeToString(make([]byte, 31)), // short
		base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)),
	} {
		if key, ok := StateKey(bad); ok {
			t.Errorf("StateKey(%.20q) = %x, want not ok", bad, key)
		}
	}
}

// TestPendingSeal: the plaintext expiry is readable without the key but
// bound into the seal, and the record is bound to its key.
func TestPendingSeal(t *testing.T) {
	kr := mustKeyring(t, testKey(1))
	now := time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)
	p := Pending{TeamID: "T1", UserID: "U1", Verifier: "v", Created: now, Expires: now.Add(time.Minute)}
	_, key, err := NewState()
	if err != nil {
		t.Fatal(err)
	}
	val, err := kr.SealPending(key, p)
	if err != nil {
		t.Fatal(err)
	}
	if exp, ok := PendingExpiry(val); !ok || !exp.Equal(p.Expires) {
		t.Errorf("PendingExpiry = %v, %t; want %v", exp, ok, p.Expires)
	}
	if _, ok := PendingExpiry(val[:expiryLen-1]); ok {
		t.Error("PendingExpiry of a short value: ok")
	}
	got, err := kr.OpenPending(key, val)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, got); diff != "" {
		t.Errorf("pending mismatch (-want +got):\n%s", diff)
	}

	edited := bytes.Clone(val)
	copy(edited, encodeExpiry(now.Add(time.Hour)))
	_, otherKey, _ := NewState()
	for name, open := range map[string]func() (Pending, error){
		"expiry edited": func() (Pending, error) { return kr.OpenPending(key, edited) },
		"other key":     func() (Pending, error) { return kr.OpenPending(otherKey, val) },
		"short":         func() (Pending, error) { return kr.OpenPending(key, val[:3]) },
		"not json": func() (Pending, error) {
			return kr.OpenPending(key, append(encodeExpiry(p.Expires), kr.Seal(TablePending, key, encodeExpiry(p.Expires), []byte("{"))...))
		},
	} {
		if _, err := open(); !errors.Is(err, ErrCorrupt) {
			t.Errorf("OpenPending, %s: %v, want ErrCorrupt", name, err)
		}
	}
}

// TestReseal: rotation's re-sealing moves a record to the primary key, in
// place, and fails where Open does.
func TestReseal(t *testing.T) {
	old, ring := mustKeyring(t, testKey(1)), mustKeyring(t, testKey(2), testKey(1))
	newOnly := mustKeyring(t, testKey(2))
	b := sampleBinding("T1", "U1")
	bkey := []byte("T1/U1")
	rec, err := old.SealBinding(bkey, b)
	if err != nil {
		t.Fatal(err)
	}
	rec, err = ring.ResealBinding(bkey, rec)
	if err != nil {
		t.Fatalf("ResealBinding: %v", err)
	}
	if got, err := newOnly.OpenBinding(bkey, rec); err != nil || got.RefreshToken != b.RefreshToken {
		t.Errorf("OpenBinding with the new key alone after ResealBinding = %v, %v", got, err)
	}

	now := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	p := Pending{TeamID: "T1", UserID: "U1", Expires: now, Binding: &b}
	_, pkey, _ := NewState()
	val, err := old.SealPending(pkey, p)
	if err != nil {
		t.Fatal(err)
	}
	val, err = ring.ResealPending(pkey, val)
	if err != nil {
		t.Fatalf("ResealPending: %v", err)
	}
	if got, err := newOnly.OpenPending(pkey, val); err != nil || !got.Expires.Equal(now) {
		t.Errorf("OpenPending with the new key alone after ResealPending = %v, %v", got, err)
	}

	if _, err := newOnly.ResealBinding(bkey, old.Seal(TableBindings, bkey, nil, []byte("{}"))); !errors.Is(err, ErrWrongKey) {
		t.Errorf("ResealBinding under a key the ring lacks: %v, want ErrWrongKey", err)
	}
	if _, err := ring.ResealPending(pkey, []byte{1, 2}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ResealPending of a short value: %v, want ErrCorrupt", err)
	}
	// Re-sealing opens but does not decode: a record that authenticates is
	// moved whatever it holds.
	if _, err := ring.ResealBinding(bkey, old.Seal(TableBindings, bkey, nil, []byte("not json"))); err != nil {
		t.Errorf("ResealBinding of a record that does not decode: %v", err)
	}
}

func TestCheckCanary(t *testing.T) {
	k1, k2 := mustKeyring(t, testKey(1)), mustKeyring(t, testKey(2))
	both := mustKeyring(t, testKey(2), testKey(1))
	altered := k1.SealCanary()
	altered[len(altered)-1] ^= 1
	tests := []struct {
		name        string
		ring        *Keyring
		rec         []byte
		wantPrimary bool
		wantErr     error
	}{
		{"primary", k1, k1.SealCanary(), true, nil},
		{"older key in the ring", both, k1.SealCanary(), false, nil},
		{"key not in the ring", k2, k1.SealCanary(), false, ErrWrongKey},
		{"altered", k1, altered, false, ErrWrongKey},
		{"wrong value", k1, k1.Seal(TableMeta, []byte(canaryKey), nil, []byte("something else")), false, ErrCorrupt},
		{"sealed for another place", k1, k1.Seal(TableMeta, []byte("other"), nil, []byte(canaryPlaintext)), false, ErrWrongKey},
		{"empty", k1, nil, false, ErrWrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			primary, err := tt.ring.CheckCanary(tt.rec)
			if !errors.Is(err, tt.wantErr) || (err == nil && tt.wantErr != nil) {
				t.Fatalf("CheckCanary error = %v, want %v", err, tt.wantErr)
			}
			if primary != tt.wantPrimary {
				t.Errorf("CheckCanary primary = %t, want %t", primary, tt.wantPrimary)
			}
		})
	}
}

// TestKeyTally: records are grouped by the key id in their headers and
// ordered primary, other ring keys, missing keys by id, then damaged.
func TestKeyTally(t *testing.T) {
	ring := mustKeyring(t, testKey(2), testKey(1))
	k1, k2, k3, k4 := mustKeyring(t, testKey(1)), mustKeyring(t, testKey(2)), mustKeyring(t, testKey(3)), mustKeyring(t, testKey(4))
	seal := func(k *Keyring) []byte { return k.Seal(TableBindings, []byte("k"), nil, []byte("x")) }
	pend := func(k *Keyring) []byte { return append(encodeExpiry(time.Unix(0, 0)), seal(k)...) }

	tally := ring.Tally()
	if err := tally.MissingKeys(); err != nil {
		t.Errorf("MissingKeys of an empty tally: %v", err)
	}
	if err := tally.UnopenedError("left"); err != nil {
		t.Errorf("UnopenedError of an empty tally: %v", err)
	}
	// Added out of order, to check the order of Records.
	tally.AddBinding([]byte{1, 2})
	tally.AddBinding(seal(k4))
	tally.AddPending(pend(k1))
	tally.AddBinding(seal(k3))
	tally.AddPending([]byte{1})
	tally.AddBinding(seal(k2))
	tally.AddBinding(seal(k1))
	tally.AddBinding(seal(k3))

	missing := []KeyRecords{{KeyID: k3.PrimaryID(), Bindings: 2}, {KeyID: k4.PrimaryID(), Bindings: 1}}
	if k4.PrimaryID() < k3.PrimaryID() {
		missing[0], missing[1] = missing[1], missing[0]
	}
	want := append([]KeyRecords{
		{KeyID: k2.PrimaryID(), InRing: true, Bindings: 1},
		{KeyID: k1.PrimaryID(), InRing: true, Bindings: 1, Pending: 1},
	}, append(missing, KeyRecords{Bindings: 1, Pending: 1})...)
	if diff := cmp.Diff(want, tally.Records()); diff != "" {
		t.Errorf("Records mismatch (-want +got):\n%s", diff)
	}

	var mk *MissingKeysError
	if err := tally.MissingKeys(); !errors.As(err, &mk) || !errors.Is(err, ErrWrongKey) {
		t.Fatalf("MissingKeys = %v, want a *MissingKeysError", err)
	}
	if diff := cmp.Diff(missing, mk.Missing); diff != "" {
		t.Errorf("MissingKeysError.Missing mismatch (-want +got):\n%s", diff)
	}
	err := tally.UnopenedError("left as they were")
	if !errors.Is(err, ErrWrongKey) {
		t.Errorf("UnopenedError with a key missing = %v, want ErrWrongKey", err)
	}
	for _, s := range []string{k3.PrimaryID(), "too damaged", "left as they were", "in the ring, that do not authenticate"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("UnopenedError %q does not say %q", err, s)
		}
	}
	only := ring.Tally()
	only.AddBinding(seal(k1))
	if err := only.UnopenedError("left"); !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrWrongKey) {
		t.Errorf("UnopenedError with no key missing = %v, want ErrCorrupt only", err)
	}
}
