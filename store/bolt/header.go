package bolt

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"

	"github.com/forcebind/forcebind/store"
)

// bbolt's on-disk meta page, which bbolt writes in native byte order: a
// 16-byte page header, then magic, version, page size, flags (4 bytes
// each), root bucket page id and sequence, freelist page id, high-water
// page id, transaction id (8 bytes each) and an FNV-64a checksum of
// everything before it. See go.etcd.io/bbolt/internal/common/meta.go.
const (
	boltPageHeader = 16
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltMetaSumLen = 56 // bytes of the meta covered by the checksum
	boltMetaLen    = boltMetaSumLen + 8
	boltNoFreelist = ^uint64(0)
)

// bbolt takes any page size (Options.PageSize), not only powers of two;
// these bounds only reject nonsense. The upper one is also the largest
// offset at which bbolt looks for the second meta page.
const (
	boltMinPageSize = 1024
	boltMaxPageSize = 1024 << 14
)

type boltMeta struct {
	pageSize               uint64
	root, freelist, pageID uint64
	txid                   uint64
}

// checkBoltFile reads the meta pages of an existing bbolt file and checks
// that every page they point to lies inside the file. bbolt trusts its meta
// page once the checksum matches and then reads whatever page ids it finds
// through a memory map: on a truncated file that means garbage, panics, or
// SIGBUS past the end of the file. A panic inside bbolt.Open cannot be
// cleaned up (the half-open DB keeps its mapping, and with it the file
// lock), so this check runs before bbolt sees the file. size is the size
// of f, which must be positive.
func checkBoltFile(f io.ReaderAt, size int64) error {
	var metas []boltMeta
	if m, ok := readBoltMeta(f, 0); ok {
		metas = append(metas, m)
		if m1, ok := readBoltMeta(f, int64(m.pageSize)); ok {
			metas = append(metas, m1)
		}
	} else {
		// Like bbolt, look for the second meta page at every power of two
		// when the first is damaged; a file with another page size and a
		// damaged first meta page is lost to bbolt as well.
		for ps := int64(boltMinPageSize); ps <= boltMaxPageSize && ps < size; ps *= 2 {
			if m1, ok := readBoltMeta(f, ps); ok && int64(m1.pageSize) == ps {
				metas = append(metas, m1)
				break
			}
		}
	}
	if len(metas) == 0 {
		return fmt.Errorf("%w: not a bbolt file (no valid meta page)", store.ErrCorrupt)
	}
	m := metas[0]
	if len(metas) == 2 && metas[1].txid > m.txid {
		m = metas[1]
	}
	// Divide rather than multiply: a damaged or crafted page id times the
	// page size can overflow and wrap to a small number.
	if m.pageID > uint64(size)/m.pageSize {
		return fmt.Errorf("%w: the file is %d bytes but its pages need %d pages of %d bytes; it was truncated", store.ErrCorrupt, size, m.pageID, m.pageSize)
	}
	if m.root >= m.pageID || (m.freelist >= m.pageID && m.freelist != boltNoFreelist) {
		return fmt.Errorf("%w: meta page points past the end of the data", store.ErrCorrupt)
	}
	return nil
}

// readBoltMeta reads and validates the meta page at off.
func readBoltMeta(r io.ReaderAt, off int64) (boltMeta, bool) {
	buf := make([]byte, boltPageHeader+boltMetaLen)
	if _, err := r.ReadAt(buf, off); err != nil {
		return boltMeta{}, false
	}
	b := buf[boltPageHeader:]
	ne := binary.NativeEndian
	h := fnv.New64a()
	h.Write(b[:boltMetaSumLen])
	if ne.Uint32(b[0:]) != boltMagic || ne.Uint32(b[4:]) != boltVersion || ne.Uint64(b[boltMetaSumLen:]) != h.Sum64() {
		return boltMeta{}, false
	}
	m := boltMeta{
		pageSize: uint64(ne.Uint32(b[8:])),
		root:     ne.Uint64(b[16:]),
		freelist: ne.Uint64(b[32:]),
		pageID:   ne.Uint64(b[40:]),
		txid:     ne.Uint64(b[48:]),
	}
	if m.pageSize < boltMinPageSize || m.pageSize > boltMaxPageSize {
		return boltMeta{}, false
	}
	return m, true
}
