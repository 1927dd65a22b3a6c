package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/forcebind/forcebind/store"
)

// TestOpenPageSizes checks that the pre-bbolt check accepts every page size
// bbolt does, not only powers of two.
func TestOpenPageSizes(t *testing.T) {
	for _, size := range []int{1024, 3000, 4096, 5000, 65536} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{PageSize: size})
			if err != nil {
				t.Fatal(err)
			}
			if err := bdb.Close(); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkBoltFile(bytes.NewReader(raw), int64(len(raw))); err != nil {
				t.Errorf("checkBoltFile of a bbolt file with %d-byte pages: %v", size, err)
			}
			// An empty bbolt file is one whose store was never initialised:
			// Open finishes the job.
			db, err := Open(path, Options{Keyring: mustKeyring(t, testKey(1))})
			if err != nil {
				t.Fatalf("Open of a bbolt file with %d-byte pages: %v", size, err)
			}
			mustPutBinding(t, db, sampleBinding("T1", "U1"))
			mustClose(t, db)
			mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1)), ReadOnly: true}))
		})
	}
}

// TestCheckBoltFileHugePageID checks that a page id whose product with the
// page size overflows is caught rather than wrapping to a small size.
func TestCheckBoltFileHugePageID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	mustClose(t, mustOpen(t, path, Options{Keyring: mustKeyring(t, testKey(1))}))
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := readBoltMeta(bytes.NewReader(raw), 0)
	if !ok {
		t.Fatal("no valid first meta page")
	}
	// pageID * pageSize = 2^64 + (something below pageSize): it wraps to
	// less than one page.
	huge := math.MaxUint64/m.pageSize + 1
	if wrapped := huge * m.pageSize; wrapped > uint64(len(raw)) {
		t.Fatalf("test setup: %d * %d wraps to %d, not within the file", huge, m.pageSize, wrapped)
	}
	for _, off := range []int{0, int(m.pageSize)} {
		setMetaPageID(t, raw[off:], huge)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	err = checkBoltFile(bytes.NewReader(raw), int64(len(raw)))
	if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("checkBoltFile with page id %d: %v, want ErrCorrupt for a truncated file", huge, err)
	}
	for _, ro := range []bool{false, true} {
		db, err := Open(path, Options{Keyring: mustKeyring(t, testKey(1)), ReadOnly: ro})
		if err == nil {
			db.Close()
			t.Fatalf("Open(readonly=%t) with page id %d: no error", ro, huge)
		}
		if !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("Open(readonly=%t) error = %v, want ErrCorrupt", ro, err)
		}
	}
}

// setMetaPageID rewrites the high-water page id of the bbolt meta page at
// the start of page, with a valid checksum.
func setMetaPageID(tb testing.TB, page []byte, id uint64) {
	tb.Helper()
	b := page[boltPageHeader : boltPageHeader+boltMetaLen]
	ne := binary.NativeEndian
	ne.PutUint64(b[40:], id)
	h := fnv.New64a()
	h.Write(b[:boltMetaSumLen])
	ne.PutUint64(b[boltMetaSumLen:], h.Sum64())
	if m, ok := readBoltMeta(bytes.NewReader(page), 0); !ok || m.pageID != id {
		tb.Fatalf("rewritten meta page does not read back (ok %t, page id %d)", ok, m.pageID)
	}
}
