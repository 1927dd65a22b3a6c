package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// KeyRecords counts the records of a store that name one key id in their
// header, as [DB.SealedBy] and [DB.Rotate] report them and as a
// [MissingKeysError] lists them. Counting reads only the headers: nothing
// is decrypted.
type KeyRecords struct {
	// KeyID is the key's id, 8 hex digits (safe to print: it is derived
	// from the key by a one-way hash). It is empty for records too damaged
	// to name a key (shorter than a header, or of an unknown version).
	KeyID string

	// InRing reports whether the keyring holds that key.
	InRing bool

	Bindings int // records in the bindings bucket
	Pending  int // pending links
}

// String describes the counts, as in "3 bindings and 1 pending link".
func (r KeyRecords) String() string {
	var parts []string
	if r.Bindings > 0 || r.Pending == 0 {
		parts = append(parts, fmt.Sprintf("%d %s", r.Bindings, plural(r.Bindings, "binding", "bindings")))
	}
	if r.Pending > 0 {
		parts = append(parts, fmt.Sprintf("%d %s", r.Pending, plural(r.Pending, "pending link", "pending links")))
	}
	return strings.Join(parts, " and ")
}

// A MissingKeysError is returned, wrapped, by [Open] when live records are
// sealed under keys the keyring does not hold: a key was removed from the
// ring before [DB.Rotate] had moved every record off it. The canary alone
// cannot catch this, because it is re-sealed under the primary. It matches
// [ErrWrongKey] with errors.Is, and its message names the key ids and the
// setting the keys came from, never key material.
type MissingKeysError struct {
	// Missing lists, sorted by key id, each key the ring lacks and the
	// records sealed under it.
	Missing []KeyRecords

	// Source is where the keyring came from, as [Keyring.Source] says.
	Source string

	held string // the ids the ring holds, for the message
}

// Error says which keys are missing, how many records each seals, and what
// to do about it.
func (e *MissingKeysError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: ", ErrWrongKey)
	for i, m := range e.Missing {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s sealed under key id %s", m, m.KeyID)
	}
	where := e.Source
	if where == "" {
		where = "the keyring"
	}
	fmt.Fprintf(&b, ", which %s does not hold (it holds %s); add the %s to %s below the primary key, then run 'forcebind key rotate'",
		where, e.held, plural(len(e.Missing), "missing key", "missing keys"), where)
	return b.String()
}

// Unwrap makes errors.Is(err, ErrWrongKey) true.
func (e *MissingKeysError) Unwrap() error {
	return ErrWrongKey
}

// SealedBy counts the live records (bindings and pending links) by the key
// id in their headers, without opening them: primary first, then the
// ring's other keys in order, then keys the ring lacks by id, then the
// records too damaged to name a key. A key with no records is left out. A
// record whose header names a key in the ring can still fail to open, if
// it was altered. It is safe for concurrent use and reads the store in one
// transaction.
func (db *DB) SealedBy(ctx context.Context) ([]KeyRecords, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var rs []KeyRecords
	err := db.view(func(tx *bolt.Tx) error {
		rs = db.keyring.countSealedBy(tx)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count records by key: %w", err)
	}
	return rs, nil
}

// countSealedBy reads the header of every binding and pending link in tx.
// It costs one cursor step and a few bytes' read per record, no
// decryption, so Open can afford it.
func (k *Keyring) countSealedBy(tx *bolt.Tx) []KeyRecords {
	counts := make(map[[keyIDLen]byte]*KeyRecords)
	var damaged KeyRecords
	count := func(rec []byte, pending bool) {
		r := &damaged
		if id, ok := headerKeyID(rec); ok {
			if r = counts[id]; r == nil {
				r = &KeyRecords{KeyID: hex.EncodeToString(id[:]), InRing: k.holds(id)}
				counts[id] = r
			}
		}
		if pending {
			r.Pending++
		} else {
			r.Bindings++
		}
	}
	if b := tx.Bucket(bucketBindings); b != nil {
		c := b.Cursor()
		for key, v := c.First(); key != nil; key, v = c.Next() {
			count(v, false)
		}
	}
	if b := tx.Bucket(bucketPending); b != nil {
		c := b.Cursor()
		for key, v := c.First(); key != nil; key, v = c.Next() {
			if len(v) < expiryLen {
				count(nil, true)
				continue
			}
			count(v[expiryLen:], true)
		}
	}

	rs := make([]KeyRecords, 0, len(counts)+1)
	for _, rk := range k.keys {
		if r := counts[rk.id]; r != nil {
			rs = append(rs, *r)
			delete(counts, rk.id)
		}
	}
	var missing []KeyRecords
	for _, r := range counts {
		missing = append(missing, *r)
	}
	slices.SortFunc(missing, func(a, b KeyRecords) int { return strings.Compare(a.KeyID, b.KeyID) })
	rs = append(rs, missing...)
	if damaged.Bindings+damaged.Pending > 0 {
		rs = append(rs, damaged)
	}
	return rs
}

// missingKeys returns the error Open gives when records in tx are sealed
// under keys the ring lacks, or nil.
func (k *Keyring) missingKeys(tx *bolt.Tx) error {
	var missing []KeyRecords
	for _, r := range k.countSealedBy(tx) {
		if r.KeyID != "" && !r.InRing {
			missing = append(missing, r)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return &MissingKeysError{Missing: missing, Source: k.source, held: k.ids()}
}

// tally adds one record that did not open to a report grouped by key id,
// in the order countSealedBy uses.
func (k *Keyring) tally(rs []KeyRecords, rec []byte, pending bool) []KeyRecords {
	var r KeyRecords
	if id, ok := headerKeyID(rec); ok {
		r = KeyRecords{KeyID: hex.EncodeToString(id[:]), InRing: k.holds(id)}
	}
	i := slices.IndexFunc(rs, func(x KeyRecords) bool { return x.KeyID == r.KeyID })
	if i < 0 {
		rs = append(rs, r)
		i = len(rs) - 1
	}
	if pending {
		rs[i].Pending++
	} else {
		rs[i].Bindings++
	}
	return rs
}

// sortReport orders a tally as countSealedBy orders its result.
func (k *Keyring) sortReport(rs []KeyRecords) {
	rank := func(r KeyRecords) int {
		for i, rk := range k.keys {
			if r.KeyID == hex.EncodeToString(rk.id[:]) {
				return i
			}
		}
		if r.KeyID == "" {
			return len(k.keys) + 1
		}
		return len(k.keys)
	}
	slices.SortStableFunc(rs, func(a, b KeyRecords) int {
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return strings.Compare(a.KeyID, b.KeyID)
	})
}

// plural picks the singular or plural form for n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// printableKey shows a record key in a message: as text when it is a
// binding key (team/user ids are printable), else as the first bytes in
// hex. It never panics, whatever the key's length.
func printableKey(key []byte) string {
	if len(key) > 0 && bytes.IndexFunc(key, func(r rune) bool { return r < 0x21 || r > 0x7e }) < 0 && len(key) <= 64 {
		return string(key)
	}
	return fmt.Sprintf("%x…", key[:min(4, len(key))])
}
