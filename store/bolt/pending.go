package bolt

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	stateLen  = 32
	expiryLen = 8
)

// A Pending is a link that has been handed to a Slack user and not yet
// completed. It is a plain value, not safe to modify from several goroutines
// at once. Its String and GoString methods leave out the verifier and any
// tokens, and its MarshalJSON redacts them.
type Pending struct {
	TeamID      string // Slack team of the person the link was made for
	TeamName    string
	UserID      string // Slack user the link was made for
	ChannelID   string // where they asked, for the reply
	DisplayName string

	Verifier string // PKCE code verifier

	Created time.Time
	Expires time.Time

	// Binding is nil for a fresh link. It is set once the callback has
	// obtained tokens and the link waits for the person to confirm; the
	// tokens are then held only sealed, inside the pending record.
	Binding *Binding
}

// String describes the pending link without its verifier or tokens.
func (p Pending) String() string {
	return fmt.Sprintf("Pending{%s/%s expires %s, awaiting confirm: %t}", p.TeamID, p.UserID, p.Expires.Format(time.RFC3339), p.Binding != nil)
}

// GoString is String, so that %#v hides the verifier and tokens too.
func (p Pending) GoString() string {
	return p.String()
}

// MarshalJSON encodes the pending link with its verifier and the tokens of
// its Binding replaced by "[redacted]"; like Binding's, it is for logs, not
// for persisting.
func (p Pending) MarshalJSON() ([]byte, error) {
	type plain Pending // Binding keeps its own redacting MarshalJSON
	r := plain(p)
	r.Verifier = redact(r.Verifier)
	return json.Marshal(r)
}

// CreatePending stores p and returns the state that redeems it: 32 random
// bytes in unpadded base64url. Only SHA-256 of the state is stored. Each
// Slack user has at most one live pending link: creating one retires the
// user's previous link in the same transaction. A previous link without a
// Binding is deleted. One that holds a Binding (tokens awaiting
// confirmation) is not dropped with its tokens: it is expired instead, so
// that its state redeems only to ErrExpired and the next SweepExpired
// returns it for the caller to revoke. A previous link that does not open is
// left for SweepExpired too. TeamID and UserID are required; a zero Created
// means now; Expires must be after both Created and now. It is safe for
// concurrent use.
func (db *DB) CreatePending(ctx context.Context, p Pending) (state string, err error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	userKey, err := bindingKey(p.TeamID, p.UserID)
	if err != nil {
		return "", fmt.Errorf("create pending: %w", err)
	}
	now := db.now()
	if p.Created.IsZero() {
		p.Created = now
	}
	if !p.Expires.After(p.Created) || !p.Expires.After(now) {
		return "", fmt.Errorf("create pending for %s: expiry %s is not after creation %s and now %s",
			userKey, p.Expires.Format(time.RFC3339Nano), p.Created.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano))
	}

	raw := make([]byte, stateLen)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("create pending: %w", err)
	}
	sum := sha256.Sum256(raw)
	key := sum[:]

	val, err := db.sealPending(key, p)
	if err != nil {
		return "", fmt.Errorf("create pending for %s: %w", userKey, err)
	}

	err = db.update(func(tx *bolt.Tx) error {
		pending, byUser := tx.Bucket(bucketPending), tx.Bucket(bucketByUser)
		if old := byUser.Get(userKey); old != nil {
			if err := db.retirePending(pending, bytes.Clone(old), now); err != nil {
				return err
			}
		}
		if err := pending.Put(key, val); err != nil {
			return err
		}
		return putValue(byUser, userKey, key)
	})
	if err != nil {
		return "", fmt.Errorf("create pending for %s: %w", userKey, err)
	}
	return base64.RawURLEncoding.EncodeToString(raw), nil
}

// RedeemPending spends a state: the pending link is found, checked and
// deleted in one transaction, so a state redeems at most once however many
// callers race. It returns ErrNotFound for a state that is unknown,
// malformed or already spent, and ErrExpired (after deleting the link) for
// one whose expiry has passed or that a newer link replaced. With
// ErrExpired it also returns the link, which is then valid and complete:
// the caller should revoke the tokens in its Binding, which no one else
// will see again. Any string is safe to pass. It is safe for concurrent
// use.
func (db *DB) RedeemPending(ctx context.Context, state string) (Pending, error) {
	if err := ctx.Err(); err != nil {
		return Pending{}, err
	}
	raw, err := base64.RawURLEncoding.DecodeString(state)
	if err != nil || len(raw) != stateLen {
		return Pending{}, fmt.Errorf("redeem pending: %w", ErrNotFound)
	}
	sum := sha256.Sum256(raw)
	key := sum[:]

	var (
		p       Pending
		openErr error
	)
	err = db.update(func(tx *bolt.Tx) error {
		pending := tx.Bucket(bucketPending)
		val := pending.Get(key)
		if val == nil {
			return ErrNotFound
		}
		// Open before deleting: val points into pages the delete may free.
		p, openErr = db.openPending(key, val)
		if err := pending.Delete(key); err != nil {
			return err
		}
		// Whatever happens next, the link is spent: commit the delete.
		var userKey []byte
		if openErr == nil {
			userKey, _ = bindingKey(p.TeamID, p.UserID)
		}
		return dropIndex(tx.Bucket(bucketByUser), userKey, [][]byte{key})
	})
	switch {
	case err != nil:
		return Pending{}, fmt.Errorf("redeem pending: %w", err)
	case openErr != nil:
		return Pending{}, fmt.Errorf("redeem pending: %w", openErr)
	case !db.now().Before(p.Expires):
		return p, fmt.Errorf("redeem pending for %s/%s: %w at %s", p.TeamID, p.UserID, ErrExpired, p.Expires.Format(time.RFC3339))
	}
	return p, nil
}

// SweepExpired deletes every pending link whose expiry has passed and
// returns them, so that the caller can revoke tokens held in a
// Pending.Binding. It decides from the plaintext expiry stored beside each
// sealed link, so a link that no longer opens is removed too; such a link is
// returned with only Expires set, and the errors met opening links are
// joined into the returned error alongside the full list. The store does
// not sweep by itself; the caller runs this on its own schedule. It is safe
// for concurrent use.
func (db *DB) SweepExpired(ctx context.Context) ([]Pending, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := db.now()
	var (
		removed []Pending
		errs    []error
	)
	err := db.update(func(tx *bolt.Tx) error {
		removed, errs = nil, nil // in case bbolt ever retries
		pending := tx.Bucket(bucketPending)
		var keys [][]byte
		c := pending.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			// Nothing here is trusted: a damaged key or value (even a
			// nested bucket, whose v is nil) is reported and removed, never
			// sliced blindly, so that one bad record neither panics the
			// sweep nor stops it for ever.
			exp, ok := decodeExpiry(v)
			if ok && now.Before(exp) {
				continue
			}
			p, err := db.openPending(k, v)
			if err != nil {
				p = Pending{Expires: exp}
				errs = append(errs, fmt.Errorf("pending %s: %w", printableKey(k), err))
			}
			removed = append(removed, p)
			keys = append(keys, bytes.Clone(k))
		}
		if err := deleteKeys(pending, keys); err != nil {
			return err
		}
		return pruneIndex(tx.Bucket(bucketByUser), pending)
	})
	if err != nil {
		return nil, fmt.Errorf("sweep expired pending links: %w", err)
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("sweep expired pending links: removed %d, %d did not open: %w", len(removed), len(errs), errors.Join(errs...))
	}
	return removed, nil
}

// retirePending takes the pending link at key out of use when a newer link
// for the same user replaces it; the caller repoints the user's index entry.
// A link holding a Binding keeps its tokens until someone can revoke them:
// it is re-sealed with an expiry just before now, so that RedeemPending
// refuses it with ErrExpired and SweepExpired returns it. A link that does
// not open may hold tokens too, so it is left as it is, and SweepExpired
// removes and reports it at its own expiry.
func (db *DB) retirePending(pending *bolt.Bucket, key []byte, now time.Time) error {
	val := pending.Get(key)
	if val == nil {
		return nil
	}
	p, err := db.openPending(key, val)
	switch {
	case err != nil:
		return nil
	case p.Binding == nil:
		return pending.Delete(key)
	}
	// The expiry is in the associated data and inside the record, which
	// RedeemPending checks, so both change and the link is sealed again.
	if past := now.Add(-time.Nanosecond); past.Before(p.Expires) {
		p.Expires = past
	}
	val, err = db.sealPending(key, p)
	if err != nil {
		return err
	}
	return pending.Put(key, val)
}

// pruneIndex removes the per-user index entries that point at no pending
// link: those of the links just swept, and any a damaged file holds. The
// index has one entry per live link, so the scan stays small.
func pruneIndex(byUser, pending *bolt.Bucket) error {
	var users [][]byte
	err := byUser.ForEach(func(u, k []byte) error {
		if k == nil || pending.Get(k) == nil {
			users = append(users, bytes.Clone(u))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return deleteKeys(byUser, users)
}

// dropIndex removes the per-user index entries that point at the given
// pending keys. With userKey known it is one lookup; otherwise it scans the
// index, which holds one entry per live link and stays small.
func dropIndex(byUser *bolt.Bucket, userKey []byte, keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	if userKey != nil && len(keys) == 1 {
		if bytes.Equal(byUser.Get(userKey), keys[0]) {
			return byUser.Delete(userKey)
		}
		return nil
	}
	gone := make(map[string]bool, len(keys))
	for _, k := range keys {
		gone[string(k)] = true
	}
	var users [][]byte
	err := byUser.ForEach(func(u, k []byte) error {
		if gone[string(k)] {
			users = append(users, bytes.Clone(u))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, u := range users {
		if err := byUser.Delete(u); err != nil {
			return err
		}
	}
	return nil
}

// pendingRecord is the sealed form of a Pending; its field names are the
// file format. Like bindingRecord it has no methods, so it encodes the real
// verifier and tokens.
type pendingRecord struct {
	TeamID      string         `json:"team_id"`
	TeamName    string         `json:"team_name"`
	UserID      string         `json:"user_id"`
	ChannelID   string         `json:"channel_id"`
	DisplayName string         `json:"display_name"`
	Verifier    string         `json:"verifier"`
	Created     time.Time      `json:"created"`
	Expires     time.Time      `json:"expires"`
	Binding     *bindingRecord `json:"binding,omitempty"`
}

func toPendingRecord(p Pending) pendingRecord {
	r := pendingRecord{
		TeamID: p.TeamID, TeamName: p.TeamName, UserID: p.UserID,
		ChannelID: p.ChannelID, DisplayName: p.DisplayName,
		Verifier: p.Verifier, Created: p.Created, Expires: p.Expires,
	}
	if p.Binding != nil {
		b := toBindingRecord(*p.Binding)
		r.Binding = &b
	}
	return r
}

func (r pendingRecord) pending() Pending {
	p := Pending{
		TeamID: r.TeamID, TeamName: r.TeamName, UserID: r.UserID,
		ChannelID: r.ChannelID, DisplayName: r.DisplayName,
		Verifier: r.Verifier, Created: r.Created, Expires: r.Expires,
	}
	if r.Binding != nil {
		b := r.Binding.binding()
		p.Binding = &b
	}
	return p
}

// sealPending makes a pending value: plaintext expiry ‖ sealed record.
func (db *DB) sealPending(key []byte, p Pending) ([]byte, error) {
	pt, err := json.Marshal(toPendingRecord(p))
	if err != nil {
		return nil, fmt.Errorf("encode pending link: %w", err)
	}
	exp := encodeExpiry(p.Expires)
	return append(exp, db.keyring.seal(bucketPending, key, exp, pt)...), nil
}

// openPending opens a pending value: plaintext expiry ‖ sealed record. The
// expiry is part of the associated data, so editing it breaks the seal.
func (db *DB) openPending(key, val []byte) (Pending, error) {
	if len(val) < expiryLen {
		return Pending{}, fmt.Errorf("%w: pending value is %d bytes", ErrCorrupt, len(val))
	}
	pt, err := db.keyring.open(bucketPending, key, val[:expiryLen], val[expiryLen:])
	if err != nil {
		return Pending{}, err
	}
	var r pendingRecord
	if err := json.Unmarshal(pt, &r); err != nil {
		return Pending{}, fmt.Errorf("%w: pending link sealed under key id %s does not decode: %v", ErrCorrupt, sealedBy(val[expiryLen:]), err)
	}
	return r.pending(), nil
}

func encodeExpiry(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, expiryLen), uint64(t.UnixNano()))
}

// decodeExpiry reads the plaintext expiry; ok is false for a value too short
// to hold one, which the sweep treats as expired.
func decodeExpiry(v []byte) (t time.Time, ok bool) {
	if len(v) < expiryLen {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))), true
}
