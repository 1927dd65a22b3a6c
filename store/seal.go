package store

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// The tables a record can be sealed for. A record's table is part of its
// associated data, with its key, so a record opens only where it was
// sealed: a backend keeps each record in the table it was sealed for
// (bbolt's buckets carry these names).
const (
	TableBindings = "bindings" // bindings, by BindingKey
	TablePending  = "pending"  // pending links, by the key NewState returns
	TableMeta     = "meta"     // the canary (SealCanary)
)

const (
	recordVersion = 1
	headerLen     = 1 + keyIDLen
	gcmNonceLen   = 12
	gcmTagLen     = 16
	minRecordLen  = headerLen + gcmNonceLen + gcmTagLen
	adLabel       = "forcebind record v1"
)

// Seal encrypts plaintext under the primary key for the record at key in
// table. extra, which may be nil, is more associated data that must be
// given again to open the record (a pending link's plaintext expiry). The
// record is version ‖ key id ‖ nonce ‖ ciphertext ‖ tag; the nonce is
// random, so sealing the same plaintext twice gives different records. It
// is safe for concurrent use.
func (k *Keyring) Seal(table string, key, extra, plaintext []byte) []byte {
	pk := &k.keys[0]
	rec := make([]byte, headerLen, headerLen+pk.aead.Overhead()+len(plaintext))
	rec[0] = recordVersion
	copy(rec[1:headerLen], pk.id[:])
	return pk.aead.Seal(rec, nil, plaintext, additionalData(rec[:headerLen], []byte(table), key, extra))
}

// Open authenticates and decrypts a record that Seal made for the same
// table, key and extra. It returns an error matching ErrWrongKey when the
// ring lacks the key the record names and ErrCorrupt for any other record
// that does not open (damaged, or moved from another place); every error
// names the key id the record claims, when its header is readable enough
// to claim one, and never key material. It never panics, whatever the
// bytes, and does not write to record, which may live in read-only memory
// such as bbolt's map. It is safe for concurrent use.
func (k *Keyring) Open(table string, key, extra, record []byte) ([]byte, error) {
	id, ok := headerKeyID(record)
	switch {
	case len(record) < headerLen:
		return nil, fmt.Errorf("%w: record is %d bytes, too short to name its key", ErrCorrupt, len(record))
	case !ok:
		return nil, fmt.Errorf("%w: record version %d, want %d", ErrCorrupt, record[0], recordVersion)
	case len(record) < minRecordLen:
		return nil, fmt.Errorf("%w: record sealed under key id %x is %d bytes, shorter than the %d-byte minimum", ErrCorrupt, id, len(record), minRecordLen)
	}
	rk := k.lookup(id[:])
	if rk == nil {
		return nil, fmt.Errorf("%w: record sealed under key id %x, which is not in %s (ids %s)", ErrWrongKey, id, k.Name(), k.ids())
	}
	pt, err := rk.aead.Open(nil, nil, record[headerLen:], additionalData(record[:headerLen], []byte(table), key, extra))
	if err != nil {
		return nil, fmt.Errorf("%w: record does not authenticate under key id %x (altered, or moved from another place)", ErrCorrupt, id)
	}
	return pt, nil
}

// RecordKeyID returns the id of the key a sealed record names in its
// header, as 8 hex digits, reading only the header: nothing is decrypted
// and the claim is not checked. ok is false when the record is too short
// to have a header or carries a version this build does not know, whose
// bytes name no key. It is what lets a backend check, at open, that the
// ring holds every key its records need (see [KeyTally]).
func RecordKeyID(record []byte) (keyID string, ok bool) {
	id, ok := headerKeyID(record)
	if !ok {
		return "", false
	}
	return hex.EncodeToString(id[:]), true
}

// headerKeyID returns the key id in a record's header, without opening
// the record; ok is false as for RecordKeyID.
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
	id, _ := RecordKeyID(rec)
	return id
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
func additionalData(header, table, key, extra []byte) []byte {
	parts := [][]byte{[]byte(adLabel), header, table, key, extra}
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
