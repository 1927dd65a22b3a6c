package store

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

const (
	recordVersion = 1
	headerLen     = 1 + keyIDLen
	gcmNonceLen   = 12
	gcmTagLen     = 16
	minRecordLen  = headerLen + gcmNonceLen + gcmTagLen
	adLabel       = "forcebind record v1"
)

// seal encrypts plaintext under the primary key for the place (bucket, key)
// and extra, which must be given again to open it. The nonce is random, so
// sealing the same plaintext twice gives different records.
func (k *Keyring) seal(bucket, key, extra, plaintext []byte) []byte {
	pk := &k.keys[0]
	rec := make([]byte, headerLen, headerLen+pk.aead.Overhead()+len(plaintext))
	rec[0] = recordVersion
	copy(rec[1:headerLen], pk.id[:])
	return pk.aead.Seal(rec, nil, plaintext, additionalData(rec[:headerLen], bucket, key, extra))
}

// open authenticates and decrypts a record sealed by seal for the same place.
// It never panics, whatever the bytes. The record may live in bbolt's
// read-only memory map: it is not written to. Every error names the key id
// the record claims, when its header is readable enough to claim one.
func (k *Keyring) open(bucket, key, extra, rec []byte) ([]byte, error) {
	id, ok := headerKeyID(rec)
	switch {
	case len(rec) < headerLen:
		return nil, fmt.Errorf("%w: record is %d bytes, too short to name its key", ErrCorrupt, len(rec))
	case !ok:
		return nil, fmt.Errorf("%w: record version %d, want %d", ErrCorrupt, rec[0], recordVersion)
	case len(rec) < minRecordLen:
		return nil, fmt.Errorf("%w: record sealed under key id %x is %d bytes, shorter than the %d-byte minimum", ErrCorrupt, id, len(rec), minRecordLen)
	}
	rk := k.lookup(id[:])
	if rk == nil {
		return nil, fmt.Errorf("%w: record sealed under key id %x, which is not in %s (ids %s)", ErrWrongKey, id, k.name(), k.ids())
	}
	pt, err := rk.aead.Open(nil, nil, rec[headerLen:], additionalData(rec[:headerLen], bucket, key, extra))
	if err != nil {
		return nil, fmt.Errorf("%w: record does not authenticate under key id %x (altered, or moved from another place)", ErrCorrupt, id)
	}
	return pt, nil
}

// headerKeyID returns the key id in a record's header, without opening
// the record; ok is false when the record is too short to have a header or
// carries a version this build does not know, whose bytes name no key.
func headerKeyID(rec []byte) (id [keyIDLen]byte, ok bool) {
	if len(rec) < headerLen || rec[0] != recordVersion {
		return id, false
	}
	copy(id[:], rec[1:headerLen])
	return id, true
}

// sealedBy returns the key id a record claims to be sealed under, in hex,
// or "" when it claims none.
func sealedBy(rec []byte) string {
	id, ok := headerKeyID(rec)
	if !ok {
		return ""
	}
	return hex.EncodeToString(id[:])
}

// sealedByPrimary reports whether rec claims to be sealed under the
// primary key.
func (k *Keyring) sealedByPrimary(rec []byte) bool {
	id, ok := headerKeyID(rec)
	return ok && id == k.keys[0].id
}

// additionalData binds a record to its header and place. Every part is
// length-prefixed so that no two different places give the same bytes
// ("ab"+"c" and "a"+"bc" differ).
func additionalData(header, bucket, key, extra []byte) []byte {
	parts := [][]byte{[]byte(adLabel), header, bucket, key, extra}
	n := 0
	for _, p := range parts {
		n += 4 + len(p)
	}
	ad := make([]byte, 0, n)
	for _, p := range parts {
		ad = binary.BigEndian.AppendUint32(ad, uint32(len(p)))
		ad = append(ad, p...)
	}
	return ad
}
