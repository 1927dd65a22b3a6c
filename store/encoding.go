package store

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file is the stored form of each record, which every backend keeps
// byte for byte: a store moved from one backend to another opens with the
// same keys, and a record sealed by one is read by the other.

const (
	stateLen  = 32
	expiryLen = 8

	canaryKey       = "canary"
	canaryPlaintext = "forcebind canary v1"
)

// BindingKey returns the record key of a Slack user's binding,
// "team_id/user_id". Both ids are required, and '/' is refused in them so
// that the key cannot be read two ways.
func BindingKey(teamID, userID string) ([]byte, error) {
	if teamID == "" || userID == "" {
		return nil, errors.New("team id and user id are required")
	}
	if strings.Contains(teamID, "/") || strings.Contains(userID, "/") {
		return nil, errors.New("team id and user id may not contain '/'")
	}
	return []byte(teamID + "/" + userID), nil
}

// SealBinding returns b sealed under the primary key for TableBindings at
// key, which is BindingKey of b's owner. The sealed plaintext is the JSON
// of the record form, which keeps the tokens that Binding.MarshalJSON
// redacts. It is safe for concurrent use.
func (k *Keyring) SealBinding(key []byte, b Binding) ([]byte, error) {
	pt, err := json.Marshal(toBindingRecord(b))
	if err != nil {
		return nil, fmt.Errorf("encode binding: %w", err)
	}
	return k.Seal(TableBindings, key, nil, pt), nil
}

// OpenBinding opens a record that SealBinding made for key. Its errors are
// Open's, and ErrCorrupt for a record that opens but does not decode. It is
// safe for concurrent use.
func (k *Keyring) OpenBinding(key, record []byte) (Binding, error) {
	pt, err := k.Open(TableBindings, key, nil, record)
	if err != nil {
		return Binding{}, err
	}
	var r bindingRecord
	if err := json.Unmarshal(pt, &r); err != nil {
		return Binding{}, fmt.Errorf("%w: binding sealed under key id %s does not decode: %v", ErrCorrupt, sealedBy(record), err)
	}
	return r.binding(), nil
}

// ResealBinding seals a binding record at key again under the primary key,
// as key rotation does. It opens the record but does not decode it, so it
// fails only where Open does. It is safe for concurrent use.
func (k *Keyring) ResealBinding(key, record []byte) ([]byte, error) {
	pt, err := k.Open(TableBindings, key, nil, record)
	if err != nil {
		return nil, err
	}
	return k.Seal(TableBindings, key, nil, pt), nil
}

// NewState returns the state of a new pending link, 32 random bytes in
// unpadded base64url, and the record key the link is stored under,
// SHA-256 of those bytes. Only the key may be stored: the raw state exists
// only in the link the person receives, so a copy of the store cannot be
// used to complete someone else's link. It is safe for concurrent use.
func NewState() (state string, key []byte, err error) {
	raw := make([]byte, stateLen)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(raw)
	return base64.RawURLEncoding.EncodeToString(raw), sum[:], nil
}

// StateKey returns the record key of a state that NewState made; ok is
// false for any string NewState cannot have made (not unpadded base64url
// of 32 bytes), which then names no link. Any string is safe to pass.
func StateKey(state string) (key []byte, ok bool) {
	raw, err := base64.RawURLEncoding.DecodeString(state)
	if err != nil || len(raw) != stateLen {
		return nil, false
	}
	sum := sha256.Sum256(raw)
	return sum[:], true
}

// SealPending returns the stored value of the pending link p at key: its
// plaintext expiry (8 bytes, big-endian Unix nanoseconds) followed by p
// sealed under the primary key for TablePending at key, with that expiry
// as extra associated data. The expiry stays readable (PendingExpiry) so
// that expired links can be found, and removed, even when they no longer
// open; editing it breaks the seal. It is safe for concurrent use.
func (k *Keyring) SealPending(key []byte, p Pending) ([]byte, error) {
	pt, err := json.Marshal(toPendingRecord(p))
	if err != nil {
		return nil, fmt.Errorf("encode pending link: %w", err)
	}
	exp := encodeExpiry(p.Expires)
	return append(exp, k.Seal(TablePending, key, exp, pt)...), nil
}

// OpenPending opens a value that SealPending made for key. Its errors are
// Open's, and ErrCorrupt for a value too short to hold an expiry or one
// that opens but does not decode. It is safe for concurrent use.
func (k *Keyring) OpenPending(key, value []byte) (Pending, error) {
	if len(value) < expiryLen {
		return Pending{}, fmt.Errorf("%w: pending value is %d bytes", ErrCorrupt, len(value))
	}
	pt, err := k.Open(TablePending, key, value[:expiryLen], value[expiryLen:])
	if err != nil {
		return Pending{}, err
	}
	var r pendingRecord
	if err := json.Unmarshal(pt, &r); err != nil {
		return Pending{}, fmt.Errorf("%w: pending link sealed under key id %s does not decode: %v", ErrCorrupt, sealedBy(value[expiryLen:]), err)
	}
	return r.pending(), nil
}

// ResealPending seals a pending value at key again under the primary key,
// keeping its expiry, as key rotation does. Like ResealBinding it opens the
// record without decoding it. It is safe for concurrent use.
func (k *Keyring) ResealPending(key, value []byte) ([]byte, error) {
	if len(value) < expiryLen {
		return nil, fmt.Errorf("%w: pending value is %d bytes", ErrCorrupt, len(value))
	}
	exp := bytes.Clone(value[:expiryLen])
	pt, err := k.Open(TablePending, key, exp, value[expiryLen:])
	if err != nil {
		return nil, err
	}
	return append(exp, k.Seal(TablePending, key, exp, pt)...), nil
}

// PendingExpiry reads the plaintext expiry of a stored pending value
// without opening it; ok is false for a value too short to hold one, which
// a sweep treats as expired. Any bytes are safe to pass.
func PendingExpiry(value []byte) (t time.Time, ok bool) {
	if len(value) < expiryLen {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(value))), true
}

// SealCanary returns a new canary sealed under the primary key: a known
// value, kept in TableMeta, that proves at open that the keyring fits the
// store before anyone's record is read. It is safe for concurrent use.
func (k *Keyring) SealCanary() []byte {
	return k.Seal(TableMeta, []byte(canaryKey), nil, []byte(canaryPlaintext))
}

// CheckCanary checks a stored canary against the ring. It returns an
// error matching ErrWrongKey when the ring lacks the key the canary names
// or the canary does not open with it (the ring holds a different key of
// the same id, or the canary was altered), and ErrCorrupt when it opens to
// the wrong value. primary reports that the canary is sealed under the
// primary key; a writable open re-seals one that is not (SealCanary), so
// that from then on a ring without the primary is refused at open.
func (k *Keyring) CheckCanary(record []byte) (primary bool, err error) {
	pt, err := k.Open(TableMeta, []byte(canaryKey), nil, record)
	if err != nil {
		if errors.Is(err, ErrWrongKey) {
			return false, fmt.Errorf("the canary: %w", err)
		}
		// The header names a key we hold but the seal does not open: the
		// canary was altered, or a different key has a colliding id.
		return false, fmt.Errorf("%w: the canary does not open with key id %s: %w", ErrWrongKey, sealedBy(record), err)
	}
	if string(pt) != canaryPlaintext {
		return false, fmt.Errorf("%w: the canary opens but holds the wrong value", ErrCorrupt)
	}
	return k.sealedByPrimary(record), nil
}

// bindingRecord is the sealed form of a Binding. Its field names are the
// stored format; renaming a Binding field must not change them. It is a
// distinct type without methods, so it encodes the real tokens, not the
// redacted form of Binding.MarshalJSON.
type bindingRecord struct {
	TeamID           string    `json:"team_id"`
	UserID           string    `json:"user_id"`
	SalesforceUserID string    `json:"sf_user_id"`
	OrgID            string    `json:"org_id"`
	Username         string    `json:"username"`
	LoginURL         string    `json:"login_url"`
	InstanceURL      string    `json:"instance_url"`
	AccessToken      string    `json:"access_token"`
	RefreshToken     string    `json:"refresh_token"`
	IssuedAt         time.Time `json:"issued_at"`
	LinkedAt         time.Time `json:"linked_at"`
	Scopes           []string  `json:"scopes"`
}

func toBindingRecord(b Binding) bindingRecord {
	return bindingRecord(b)
}

func (r bindingRecord) binding() Binding {
	return Binding(r)
}

// pendingRecord is the sealed form of a Pending; its field names are the
// stored format. Like bindingRecord it has no methods, so it encodes the
// real verifier and tokens.
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

func encodeExpiry(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, expiryLen), uint64(t.UnixNano()))
}

// A NewLink is a pending link made ready for a backend to store: checked,
// its state drawn and its record sealed, the same for every backend.
type NewLink struct {
	Pending Pending // as stored: Created set
	UserKey []byte  // BindingKey of its Slack user, for the one-link-per-person index
	State   string  // what redeems it; never stored
	Key     []byte  // StateKey(State): the record key
	Record  []byte  // the sealed record
}

// NewPending checks p as a backend's CreatePending must (a team and user,
// an expiry after its creation and after now; a zero Created means now),
// draws its state and seals it under the primary key.
func (k *Keyring) NewPending(p Pending, now time.Time) (NewLink, error) {
	userKey, err := BindingKey(p.TeamID, p.UserID)
	if err != nil {
		return NewLink{}, err
	}
	if p.Created.IsZero() {
		p.Created = now
	}
	if !p.Expires.After(p.Created) || !p.Expires.After(now) {
		return NewLink{}, fmt.Errorf("link for %s: expiry %s is not after creation %s and now %s",
			userKey, p.Expires.Format(time.RFC3339Nano), p.Created.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano))
	}
	state, key, err := NewState()
	if err != nil {
		return NewLink{}, err
	}
	rec, err := k.SealPending(key, p)
	if err != nil {
		return NewLink{}, fmt.Errorf("link for %s: %w", userKey, err)
	}
	return NewLink{Pending: p, UserKey: userKey, State: state, Key: key, Record: rec}, nil
}
