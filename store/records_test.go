package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestStringHidesSecrets(t *testing.T) {
	b := sampleBinding("T1", "U1")
	p := Pending{TeamID: "T1", UserID: "U1", Verifier: "verifier-secret-8d7f", Binding: &b}
	tk := Tokens{AccessToken: b.AccessToken, RefreshToken: b.RefreshToken}
	mustJSON := func(v any) string {
		t.Helper()
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		return string(data)
	}
	outputs := map[string]string{
		"Binding String":    b.String(),
		"Binding %v %+v %s": fmt.Sprintf("%v %+v %s", b, b, &b),
		"Binding %#v":       fmt.Sprintf("%#v %#v", b, &b),
		"Binding JSON":      mustJSON(b) + mustJSON(&b),
		"Pending String":    p.String(),
		"Pending %v %+v":    fmt.Sprintf("%v %+v %v", p, p, &p),
		"Pending %#v":       fmt.Sprintf("%#v %#v", p, &p),
		"Pending JSON":      mustJSON(p) + mustJSON(&p),
		"Tokens String":     tk.String(),
		"Tokens %v %+v":     fmt.Sprintf("%v %+v %v", tk, tk, &tk),
		"Tokens %#v":        fmt.Sprintf("%#v %#v", tk, &tk),
		"Tokens JSON":       mustJSON(tk) + mustJSON(&tk),
		"nested %+v %#v":    fmt.Sprintf("%+v %#v", []any{b, p, tk}, []any{b, p, tk}),
		"nested JSON":       mustJSON(map[string]any{"b": b, "p": []Pending{p}, "t": &tk}),
	}
	for name, s := range outputs {
		for _, secret := range []string{b.AccessToken, b.RefreshToken, p.Verifier} {
			if strings.Contains(s, secret) {
				t.Errorf("%s: %q contains the secret %q", name, s, secret)
			}
		}
	}
	if !strings.Contains(b.String(), b.Username) {
		t.Errorf("Binding.String() = %q, want it to name the user", b.String())
	}

	// The JSON keeps everything else, and says which secrets were set.
	var gotB map[string]any
	if err := json.Unmarshal([]byte(mustJSON(b)), &gotB); err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]any{"Username": b.Username, "AccessToken": "[redacted]", "RefreshToken": "[redacted]"} {
		if gotB[field] != want {
			t.Errorf("Binding JSON %s = %v, want %v", field, gotB[field], want)
		}
	}
	var gotP struct {
		UserID   string
		Verifier string
		Binding  struct{ AccessToken string }
	}
	if err := json.Unmarshal([]byte(mustJSON(p)), &gotP); err != nil {
		t.Fatal(err)
	}
	if want := (struct {
		UserID   string
		Verifier string
		Binding  struct{ AccessToken string }
	}{"U1", "[redacted]", struct{ AccessToken string }{"[redacted]"}}); gotP != want {
		t.Errorf("Pending JSON = %+v, want %+v", gotP, want)
	}
	if got := mustJSON(Tokens{}); !strings.Contains(got, `"AccessToken":""`) {
		t.Errorf("JSON of empty Tokens = %s, want empty tokens left empty", got)
	}
}

// TestSealedRecordsKeepSecrets checks that the redacting MarshalJSON
// methods do not reach the sealed records, which must keep the real values.
func TestSealedRecordsKeepSecrets(t *testing.T) {
	kr := mustKeyring(t, testKey(1))
	b := sampleBinding("T1", "U1")
	bkey := []byte("T1/U1")
	rec, err := kr.SealBinding(bkey, b)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	p := Pending{TeamID: "T1", UserID: "U2", Verifier: "verifier-secret-8d7f", Created: now, Expires: now.Add(time.Hour), Binding: &b}
	_, pkey, err := NewState()
	if err != nil {
		t.Fatal(err)
	}
	val, err := kr.SealPending(pkey, p)
	if err != nil {
		t.Fatal(err)
	}

	var plaintexts []string
	pt, err := kr.Open(TableBindings, bkey, nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	plaintexts = append(plaintexts, string(pt))
	pt, err = kr.Open(TablePending, pkey, val[:expiryLen], val[expiryLen:])
	if err != nil {
		t.Fatal(err)
	}
	plaintexts = append(plaintexts, string(pt))
	for i, pt := range plaintexts {
		for _, secret := range []string{b.AccessToken, b.RefreshToken} {
			if !strings.Contains(pt, secret) {
				t.Errorf("sealed record %d does not hold the real token", i)
			}
		}
		if strings.Contains(pt, "[redacted]") {
			t.Errorf("sealed record %d holds a redacted value", i)
		}
	}
	if !strings.Contains(plaintexts[1], p.Verifier) {
		t.Error("sealed pending record does not hold the real verifier")
	}
}

func TestKeyRecordsString(t *testing.T) {
	tests := []struct {
		in   KeyRecords
		want string
	}{
		{KeyRecords{}, "0 bindings"},
		{KeyRecords{Bindings: 1}, "1 binding"},
		{KeyRecords{Pending: 2}, "2 pending links"},
		{KeyRecords{Bindings: 3, Pending: 1}, "3 bindings and 1 pending link"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.in, got, tt.want)
		}
	}
}
