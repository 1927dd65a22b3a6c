package bolt

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/forcebind/forcebind/store"
)

func TestCompactTo(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	old := bytes.Repeat([]byte{1}, store.KeySize)
	ring, err := store.NewKeyring(old)
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(filepath.Join(dir, "a.db"), Options{Keyring: ring})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		b := store.Binding{TeamID: "T1", UserID: fmt.Sprintf("U%d", i), AccessToken: "access", RefreshToken: "refresh"}
		if err := db.PutBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 290 {
		if err := db.DeleteBinding(ctx, "T1", fmt.Sprintf("U%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.Stat(filepath.Join(dir, "a.db"))
	out := filepath.Join(dir, "b.db")
	size, err := db.CompactTo(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if size >= before.Size() {
		t.Errorf("compacted %d bytes, not smaller than %d", size, before.Size())
	}
	if _, err := db.CompactTo(ctx, out); err == nil {
		t.Error("CompactTo overwrote an existing file")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(out)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("compacted file mode %v, want 0600", fi.Mode().Perm())
	}
	c, err := Open(out, Options{Keyring: ring})
	if err != nil {
		t.Fatalf("open compacted copy: %v", err)
	}
	defer c.Close()
	if n, _ := c.CountBindings(ctx); n != 10 {
		t.Errorf("%d bindings in the copy, want 10", n)
	}
	if b, err := c.GetBinding(ctx, "T1", "U295"); err != nil || b.RefreshToken != "refresh" {
		t.Errorf("binding in the copy: %v, %v", b, err)
	}
}
