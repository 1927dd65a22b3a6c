package store

import (
	"bytes"
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
// read-only memory map: it is not written to.
func (k *Keyring) open(bucket, key, extra, rec []byte) ([]byte, error) {
	if len(rec) < minRecordLen {
		return nil, fmt.Errorf("%w: record is %d bytes, shorter than the %d-byte minimum", ErrCorrupt, len(rec), minRecordLen)
	}
	if rec[0] != recordVersion {
		return nil, fmt.Errorf("%w: record version %d, want %d", ErrCorrupt, rec[0], recordVersion)
	}
	id := rec[1:headerLen]
	rk := k.lookup(id)
	if rk == nil {
		return nil, fmt.Errorf("%w: record sealed under key id %s, which is not in the keyring (ids %s)", ErrWrongKey, hex.EncodeToString(id), k.ids())
	}
	pt, err := rk.aead.Open(nil, nil, rec[headerLen:], additionalData(rec[:headerLen], bucket, key, extra))
	if err != nil {
		return nil, fmt.Errorf("%w: record does not authenticate under key id %s (altered, or moved from another place)", ErrCorrupt, hex.EncodeToString(id))
	}
	return pt, nil
}

// sealedBy returns the key id a record claims to be sealed under, in hex.
func sealedBy(rec []byte) string {
	if len(rec) < headerLen {
		return ""
	}
	return hex.EncodeToString(rec[1:headerLen])
}

// sealedByPrimary reports whether rec claims to be sealed under the
// primary key.
func (k *Keyring) sealedByPrimary(rec []byte) bool {
	return len(rec) >= headerLen && bytes.Equal(rec[1:headerLen], k.keys[0].id[:])
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
