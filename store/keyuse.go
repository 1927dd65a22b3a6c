package store

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// KeyRecords counts the records of a store that name one key id in their
// header, as a backend's SealedBy and Rotate report them and as a
// [MissingKeysError] lists them ([KeyTally] makes them). Counting reads
// only the headers: nothing is decrypted.
type KeyRecords struct {
	// KeyID is the key's id, 8 hex digits (safe to print: it is derived
	// from the key by a one-way hash). It is empty for records too damaged
	// to name a key (shorter than a header, or of an unknown version).
	KeyID string

	// InRing reports whether the keyring holds that key.
	InRing bool

	Bindings int // bindings
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

// A MissingKeysError is returned, wrapped, by a backend's Open when live
// records are sealed under keys the keyring does not hold: a key was
// removed from the ring before rotation had moved every record off it.
// The canary alone cannot catch this, because it is re-sealed under the
// primary. It matches
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
// to do about it: Problem, then Fix.
func (e *MissingKeysError) Error() string {
	return e.Problem() + "; " + e.Fix()
}

// Problem says which keys are missing and how many records each seals.
func (e *MissingKeysError) Problem() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: ", ErrWrongKey)
	for i, m := range e.Missing {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s sealed under key id %s", m, m.KeyID)
	}
	fmt.Fprintf(&b, ", which %s does not hold (it holds %s)", e.where(), e.held)
	return b.String()
}

// Fix says what to do about the missing keys (see MissingKeysFix).
func (e *MissingKeysError) Fix() string {
	ids := make([]string, len(e.Missing))
	for i, m := range e.Missing {
		ids[i] = m.KeyID
	}
	return MissingKeysFix(ids, e.where())
}

// where names the keyring, as Keyring.Name does.
func (e *MissingKeysError) where() string {
	if e.Source == "" {
		return "the keyring"
	}
	return e.Source
}

// MissingKeysFix says what to do about records sealed under the keys with
// the given ids, which the keyring named where lacks: put them back below
// the primary and rotate, or, for a key lost for good, delete what only it
// opened. It is the one wording of that advice, the end of
// MissingKeysError's message and what doctor and key rotate advise.
func MissingKeysFix(ids []string, where string) string {
	return fmt.Sprintf("put the %s with %s %s back in %s, below the primary key, then (with forcebind stopped) run 'forcebind key rotate'; "+
		"if a key is lost for good, 'forcebind key rotate -drop-unopenable' deletes the records only it opened, and those people connect again",
		plural(len(ids), "key", "keys"), plural(len(ids), "id", "ids"), strings.Join(ids, ", "), where)
}

// Unwrap makes errors.Is(err, ErrWrongKey) true.
func (e *MissingKeysError) Unwrap() error {
	return ErrWrongKey
}

// A RotateReport says what a backend's Rotate did.
type RotateReport struct {
	// Resealed counts the records now sealed under the primary key, the
	// canary included.
	Resealed int

	// Left lists the records that did not open and were left as they
	// were, grouped by the key id in their header: InRing false for a key
	// the ring lacks, true for a record that names a key in the ring but
	// does not authenticate or decode (it was altered), and an empty KeyID
	// for one too damaged to name a key. The order is [KeyTally.Records]'.
	Left []KeyRecords
}

// A KeyTally groups records by the key id in their headers, reading only
// the headers: nothing is decrypted, so a backend's Open can afford to
// tally every record. It makes the reports of SealedBy, Rotate and
// DeleteUnopenable and the MissingKeysError of Open the same for every
// backend. Make one with [Keyring.Tally]; it is not safe for concurrent
// use.
type KeyTally struct {
	ring    *Keyring
	counts  map[[keyIDLen]byte]*KeyRecords
	damaged KeyRecords
}

// Tally returns an empty tally against the ring, which decides each
// group's InRing and the order of Records.
func (k *Keyring) Tally() *KeyTally {
	return &KeyTally{ring: k, counts: make(map[[keyIDLen]byte]*KeyRecords)}
}

// AddBinding counts a sealed binding record.
func (t *KeyTally) AddBinding(record []byte) {
	t.group(record).Bindings++
}

// AddPending counts a stored pending value, as SealPending makes it; one
// too short to hold an expiry counts as too damaged to name a key.
func (t *KeyTally) AddPending(value []byte) {
	var rec []byte
	if len(value) >= expiryLen {
		rec = value[expiryLen:]
	}
	t.group(rec).Pending++
}

// group returns the counts of the key rec names, or of the damaged.
func (t *KeyTally) group(rec []byte) *KeyRecords {
	id, ok := headerKeyID(rec)
	if !ok {
		return &t.damaged
	}
	r := t.counts[id]
	if r == nil {
		r = &KeyRecords{KeyID: hex.EncodeToString(id[:]), InRing: t.ring.holds(id)}
		t.counts[id] = r
	}
	return r
}

// Records returns the counts: primary first, then the ring's other keys in
// order, then keys the ring lacks by id, then the records too damaged to
// name a key. A key with no records is left out.
func (t *KeyTally) Records() []KeyRecords {
	rs := make([]KeyRecords, 0, len(t.counts)+1)
	for _, rk := range t.ring.keys {
		if r := t.counts[rk.id]; r != nil {
			rs = append(rs, *r)
		}
	}
	var missing []KeyRecords
	for _, r := range t.counts {
		if !r.InRing {
			missing = append(missing, *r)
		}
	}
	slices.SortFunc(missing, func(a, b KeyRecords) int { return strings.Compare(a.KeyID, b.KeyID) })
	rs = append(rs, missing...)
	if t.damaged.Bindings+t.damaged.Pending > 0 {
		rs = append(rs, t.damaged)
	}
	return rs
}

// MissingKeys returns the error Open gives when records are sealed under
// keys the ring lacks, a *MissingKeysError, or nil when there are none.
// Records too damaged to name a key are not its concern.
func (t *KeyTally) MissingKeys() error {
	var missing []KeyRecords
	for _, r := range t.Records() {
		if r.KeyID != "" && !r.InRing {
			missing = append(missing, r)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return &MissingKeysError{Missing: missing, Source: t.ring.source, held: t.ring.ids()}
}

// UnopenedError describes the tallied records as records that did not
// open, per key id, followed by what (such as "left as they were"), as an
// error that matches ErrWrongKey when a key is missing from the ring and
// ErrCorrupt otherwise. It returns nil for an empty tally.
func (t *KeyTally) UnopenedError(what string) error {
	rs := t.Records()
	if len(rs) == 0 {
		return nil
	}
	sentinel := ErrCorrupt
	parts := make([]string, len(rs))
	for i, r := range rs {
		switch {
		case r.KeyID == "":
			parts[i] = fmt.Sprintf("%s too damaged to name a key", r)
		case !r.InRing:
			parts[i] = fmt.Sprintf("%s sealed under key id %s, which %s does not hold", r, r.KeyID, t.ring.Name())
			sentinel = ErrWrongKey
		default:
			parts[i] = fmt.Sprintf("%s under key id %s, in the ring, that do not authenticate (altered or damaged)", r, r.KeyID)
		}
	}
	return fmt.Errorf("%w: %s %s", sentinel, strings.Join(parts, "; "), what)
}

// plural picks the singular or plural form for n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
