package store

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	kr := mustKeyring(t, testKey(1))
	table, key, extra := TableBindings, []byte("T1/U1"), []byte("x")
	pt := []byte(`{"access_token":"secret"}`)
	rec := kr.Seal(table, key, extra, pt)

	flip := func(i int) []byte {
		r := bytes.Clone(rec)
		r[i] ^= 0x01
		return r
	}
	tests := []struct {
		name       string
		table      string
		key, extra []byte
		rec        []byte
		wantErr    error // nil means it opens
	}{
		{name: "intact", table: table, key: key, extra: extra, rec: rec},
		{name: "flipped version", table: table, key: key, extra: extra, rec: flip(0), wantErr: ErrCorrupt},
		{name: "flipped key id", table: table, key: key, extra: extra, rec: flip(1), wantErr: ErrWrongKey},
		{name: "flipped nonce", table: table, key: key, extra: extra, rec: flip(headerLen + 3), wantErr: ErrCorrupt},
		{name: "flipped ciphertext", table: table, key: key, extra: extra, rec: flip(headerLen + gcmNonceLen + 2), wantErr: ErrCorrupt},
		{name: "flipped tag", table: table, key: key, extra: extra, rec: flip(len(rec) - 1), wantErr: ErrCorrupt},
		{name: "truncated", table: table, key: key, extra: extra, rec: rec[:len(rec)-1], wantErr: ErrCorrupt},
		{name: "extended", table: table, key: key, extra: extra, rec: append(bytes.Clone(rec), 0), wantErr: ErrCorrupt},
		{name: "too short", table: table, key: key, extra: extra, rec: rec[:minRecordLen-1], wantErr: ErrCorrupt},
		{name: "empty", table: table, key: key, extra: extra, rec: nil, wantErr: ErrCorrupt},
		{name: "other record key", table: table, key: []byte("T1/U2"), extra: extra, rec: rec, wantErr: ErrCorrupt},
		{name: "other table", table: TablePending, key: key, extra: extra, rec: rec, wantErr: ErrCorrupt},
		{name: "other extra", table: table, key: key, extra: []byte("y"), rec: rec, wantErr: ErrCorrupt},
		{name: "no extra", table: table, key: key, extra: nil, rec: rec, wantErr: ErrCorrupt},
		// Without length prefixes "bindings"+"T1/U1" and "bindingsT"+"1/U1" would
		// give the same associated data.
		{name: "shifted boundary", table: "bindingsT", key: []byte("1/U1"), extra: extra, rec: rec, wantErr: ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kr.Open(tt.table, tt.key, tt.extra, tt.rec)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if !bytes.Equal(got, pt) {
					t.Fatalf("Open = %q, want %q", got, pt)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open error = %v, want %v", err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("Open returned plaintext %q with an error", got)
			}
		})
	}
}

func TestSealIsRandomized(t *testing.T) {
	kr := mustKeyring(t, testKey(1))
	a := kr.Seal("b", []byte("k"), nil, []byte("same plaintext"))
	b := kr.Seal("b", []byte("k"), nil, []byte("same plaintext"))
	if bytes.Equal(a, b) {
		t.Fatal("sealing the same plaintext twice gave the same record")
	}
	if !bytes.Equal(a[:headerLen], b[:headerLen]) {
		t.Errorf("headers differ: %x and %x", a[:headerLen], b[:headerLen])
	}
	if bytes.Equal(a[headerLen:headerLen+gcmNonceLen], b[headerLen:headerLen+gcmNonceLen]) {
		t.Error("nonces are equal")
	}
}

func TestOpenUnknownKeyID(t *testing.T) {
	old := mustKeyring(t, testKey(1))
	rec := old.Seal("b", []byte("k"), nil, []byte("hello"))

	kr := mustKeyring(t, testKey(2), testKey(3))
	_, err := kr.Open("b", []byte("k"), nil, rec)
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open error = %v, want ErrWrongKey", err)
	}
	for _, want := range []string{old.PrimaryID(), kr.PrimaryID(), "not in the keyring"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	assertNoKeyMaterial(t, err.Error(), "", testKey(1), testKey(2), testKey(3))

	// The same ring with the old key added opens it, whatever its place.
	kr = mustKeyring(t, testKey(2), testKey(1))
	if pt, err := kr.Open("b", []byte("k"), nil, rec); err != nil || string(pt) != "hello" {
		t.Fatalf("Open with old key as secondary = %q, %v; want hello", pt, err)
	}
}

// FuzzOpenRecord feeds arbitrary bytes to Open. It must return
// an error, never panic, and may only succeed on a genuine record.
func FuzzOpenRecord(f *testing.F) {
	kr := mustKeyring(f, testKey(1))
	valid := kr.SealCanary()
	f.Add(valid)
	f.Add([]byte{})
	f.Add([]byte{recordVersion})
	f.Add(valid[:headerLen])
	f.Add(valid[:minRecordLen])
	f.Add(append([]byte{2}, valid[1:]...))
	f.Add(mustKeyring(f, testKey(9)).SealCanary())

	f.Fuzz(func(t *testing.T, rec []byte) {
		pt, err := kr.Open(TableMeta, []byte(canaryKey), nil, rec)
		if err != nil {
			if pt != nil {
				t.Fatalf("plaintext %q returned with error %v", pt, err)
			}
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrWrongKey) {
				t.Fatalf("error %v is neither ErrCorrupt nor ErrWrongKey", err)
			}
			return
		}
		if string(pt) != canaryPlaintext {
			t.Fatalf("forged record opened to %q", pt)
		}
	})
}
