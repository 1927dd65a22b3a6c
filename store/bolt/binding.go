package bolt

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A Binding links one Slack user to their own Salesforce user and holds the
// grant that lets forcebind act as them. It is a plain value: copies are
// independent, except that Scopes is shared, and a Binding is not safe to
// modify from several goroutines at once. Its String and GoString methods
// leave the tokens out and its MarshalJSON redacts them, so a Binding printed
// or encoded by mistake leaks nothing.
type Binding struct {
	TeamID string // Slack team (workspace) id
	UserID string // Slack user id; the record key is TeamID + "/" + UserID

	SalesforceUserID string
	OrgID            string
	Username         string
	LoginURL         string // login host the grant came from
	InstanceURL      string

	AccessToken  string
	RefreshToken string

	IssuedAt time.Time // when AccessToken was issued
	LinkedAt time.Time // when the person confirmed the link

	Scopes []string
}

// String describes the binding without its tokens.
func (b Binding) String() string {
	return fmt.Sprintf("Binding{%s/%s -> %s (org %s, user %s) at %s}", b.TeamID, b.UserID, b.Username, b.OrgID, b.SalesforceUserID, b.InstanceURL)
}

// GoString is String, so that %#v hides the tokens too.
func (b Binding) GoString() string {
	return b.String()
}

// MarshalJSON encodes the binding with each token that is set replaced by
// "[redacted]", so that a Binding logged or served as JSON leaks nothing.
// It is not a way to persist a Binding: the tokens do not survive it. The
// store seals its own record type, which keeps them.
func (b Binding) MarshalJSON() ([]byte, error) {
	type plain Binding // plain has no methods, so this does not recurse
	r := plain(b)
	r.AccessToken, r.RefreshToken = redact(r.AccessToken), redact(r.RefreshToken)
	return json.Marshal(r)
}

// Tokens is the result of a refresh, as stored by UpdateTokens. An empty
// RefreshToken means "unchanged": Salesforce returns none unless refresh
// token rotation is on. Its String and GoString methods leave the tokens
// out and its MarshalJSON redacts them.
type Tokens struct {
	AccessToken  string
	RefreshToken string
	IssuedAt     time.Time
}

// String describes the tokens without their values.
func (t Tokens) String() string {
	return fmt.Sprintf("Tokens{issued %s, refresh rotated: %t}", t.IssuedAt.Format(time.RFC3339), t.RefreshToken != "")
}

// GoString is String, so that %#v hides the tokens too.
func (t Tokens) GoString() string {
	return t.String()
}

// MarshalJSON encodes the tokens with each value that is set replaced by
// "[redacted]"; like Binding's, it is for logs, not for persisting.
func (t Tokens) MarshalJSON() ([]byte, error) {
	type plain Tokens
	r := plain(t)
	r.AccessToken, r.RefreshToken = redact(r.AccessToken), redact(r.RefreshToken)
	return json.Marshal(r)
}

// GetBinding returns the binding of a Slack user, or ErrNotFound. It is safe
// for concurrent use.
func (db *DB) GetBinding(ctx context.Context, teamID, userID string) (Binding, error) {
	if err := ctx.Err(); err != nil {
		return Binding{}, err
	}
	key, err := bindingKey(teamID, userID)
	if err != nil {
		return Binding{}, fmt.Errorf("get binding: %w", err)
	}
	var b Binding
	err = db.view(func(tx *bolt.Tx) error {
		rec := tx.Bucket(bucketBindings).Get(key)
		if rec == nil {
			return ErrNotFound
		}
		b, err = db.openBinding(key, rec)
		return err
	})
	if err != nil {
		return Binding{}, fmt.Errorf("get binding %s: %w", key, err)
	}
	return b, nil
}

// PutBinding stores b, replacing any binding of the same Slack user without
// opening it, so a binding that does not open (damaged, or sealed under a
// key the ring lacks) is replaced too. TeamID and UserID are required and
// may not contain '/'. The write is durable
// (fsynced) when PutBinding returns. It is safe for concurrent use.
func (db *DB) PutBinding(ctx context.Context, b Binding) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := bindingKey(b.TeamID, b.UserID)
	if err != nil {
		return fmt.Errorf("put binding: %w", err)
	}
	rec, err := db.sealBinding(key, b)
	if err != nil {
		return fmt.Errorf("put binding %s: %w", key, err)
	}
	// Whatever the old record was, it is not opened: a binding that no
	// longer opens (damaged, or under a key the ring lacks) must not keep
	// its owner from connecting again.
	err = db.update(func(tx *bolt.Tx) error {
		return putValue(tx.Bucket(bucketBindings), key, rec)
	})
	if err != nil {
		return fmt.Errorf("put binding %s: %w", key, err)
	}
	return nil
}

// DeleteBinding removes the binding of a Slack user, or returns ErrNotFound
// when there was none. It does not open the record, so it also removes one
// that does not open (GetBinding's ErrCorrupt or ErrWrongKey). It is safe
// for concurrent use.
func (db *DB) DeleteBinding(ctx context.Context, teamID, userID string) error {
	return db.deleteBinding(ctx, teamID, userID, nil)
}

// DeleteBindingIf removes the binding of a Slack user, but only if its
// refresh token is still refreshToken; the check and the delete happen in
// one transaction. It is for deleting a binding whose grant was found dead
// (the refresh token was revoked or expired) without clobbering a newer
// binding stored in the meantime, such as one from a relink or a refresh
// that won a race. It returns ErrConflict, and changes nothing, when the
// stored refresh token differs, and ErrNotFound when there is no binding.
// It is safe for concurrent use.
func (db *DB) DeleteBindingIf(ctx context.Context, teamID, userID, refreshToken string) error {
	return db.deleteBinding(ctx, teamID, userID, func(b Binding) error {
		if subtle.ConstantTimeCompare([]byte(b.RefreshToken), []byte(refreshToken)) != 1 {
			return ErrConflict
		}
		return nil
	})
}

// deleteBinding removes a binding in one write transaction, after cond (if
// set) has accepted the stored value.
func (db *DB) deleteBinding(ctx context.Context, teamID, userID string, cond func(Binding) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := bindingKey(teamID, userID)
	if err != nil {
		return fmt.Errorf("delete binding: %w", err)
	}
	err = db.update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketBindings)
		rec := bk.Get(key)
		if rec == nil {
			return ErrNotFound
		}
		if cond != nil {
			b, err := db.openBinding(key, rec)
			if err != nil {
				return err
			}
			if err := cond(b); err != nil {
				return err
			}
		}
		return bk.Delete(key)
	})
	if err != nil {
		return fmt.Errorf("delete binding %s: %w", key, err)
	}
	return nil
}

// UpdateTokens stores the result of a refresh, but only if the binding's
// refresh token is still usedRefreshToken, the one the refresh spent; the
// check and the write happen in one transaction. Otherwise it returns
// ErrConflict and changes nothing: someone else refreshed (or relinked) in
// the meantime, and the caller should re-read the binding. A zero
// t.IssuedAt means now. It returns the binding as stored, or ErrNotFound
// when the binding is gone. It is safe for concurrent use.
func (db *DB) UpdateTokens(ctx context.Context, teamID, userID, usedRefreshToken string, t Tokens) (Binding, error) {
	if err := ctx.Err(); err != nil {
		return Binding{}, err
	}
	key, err := bindingKey(teamID, userID)
	if err != nil {
		return Binding{}, fmt.Errorf("update tokens: %w", err)
	}
	if t.IssuedAt.IsZero() {
		t.IssuedAt = db.now()
	}
	var b Binding
	err = db.update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketBindings)
		rec := bk.Get(key)
		if rec == nil {
			return ErrNotFound
		}
		b, err = db.openBinding(key, rec)
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare([]byte(b.RefreshToken), []byte(usedRefreshToken)) != 1 {
			return ErrConflict
		}
		b.AccessToken = t.AccessToken
		if t.RefreshToken != "" {
			b.RefreshToken = t.RefreshToken
		}
		b.IssuedAt = t.IssuedAt
		rec, err := db.sealBinding(key, b)
		if err != nil {
			return err
		}
		return bk.Put(key, rec)
	})
	if err != nil {
		return Binding{}, fmt.Errorf("update tokens of %s: %w", key, err)
	}
	return b, nil
}

// CountBindings returns how many bindings the store holds, without opening
// them. It is safe for concurrent use.
func (db *DB) CountBindings(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int
	err := db.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketBindings).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count bindings: %w", err)
	}
	return n, nil
}

// bindingRecord is the sealed form of a Binding. Its field names are the file
// format; renaming a Binding field must not change them. It is a distinct
// type without methods, so it encodes the real tokens, not the redacted
// form of Binding.MarshalJSON.
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

func (db *DB) sealBinding(key []byte, b Binding) ([]byte, error) {
	pt, err := json.Marshal(toBindingRecord(b))
	if err != nil {
		return nil, fmt.Errorf("encode binding: %w", err)
	}
	return db.keyring.seal(bucketBindings, key, nil, pt), nil
}

func (db *DB) openBinding(key, rec []byte) (Binding, error) {
	pt, err := db.keyring.open(bucketBindings, key, nil, rec)
	if err != nil {
		return Binding{}, err
	}
	var r bindingRecord
	if err := json.Unmarshal(pt, &r); err != nil {
		return Binding{}, fmt.Errorf("%w: binding sealed under key id %s does not decode: %v", ErrCorrupt, sealedBy(rec), err)
	}
	return r.binding(), nil
}

// redact hides a secret but not whether it is set.
func redact(s string) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// bindingKey is the record key of a Slack user. '/' is refused in the ids so
// that the key cannot be read two ways.
func bindingKey(teamID, userID string) ([]byte, error) {
	if teamID == "" || userID == "" {
		return nil, errors.New("team id and user id are required")
	}
	if strings.Contains(teamID, "/") || strings.Contains(userID, "/") {
		return nil, errors.New("team id and user id may not contain '/'")
	}
	return []byte(teamID + "/" + userID), nil
}
