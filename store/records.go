package store

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
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
// It is not a way to persist a Binding: the tokens do not survive it.
// [Keyring.SealBinding] seals its own record type, which keeps them.
func (b Binding) MarshalJSON() ([]byte, error) {
	type plain Binding // plain has no methods, so this does not recurse
	r := plain(b)
	r.AccessToken, r.RefreshToken = redact(r.AccessToken), redact(r.RefreshToken)
	return json.Marshal(r)
}

// Tokens is the result of a refresh, as a backend's UpdateTokens stores it. An empty
// RefreshToken means "unchanged": Salesforce returns none unless refresh
// token rotation is on. An empty InstanceURL means "unchanged" too; a
// refresh answer names the org's instance, which moves on an instance
// migration or a My Domain rename. An empty LoginURL means "unchanged"
// as well; it is set when the refresh succeeded at another login host of
// the same org than the one the binding recorded (the administrator moved
// SALESFORCE_LOGIN_URL from a My Domain to login.salesforce.com, or to the
// org's renamed My Domain), which is where its grant lives from then on.
// Its String and GoString methods leave the tokens out and its
// MarshalJSON redacts them.
type Tokens struct {
	AccessToken  string
	RefreshToken string
	InstanceURL  string
	LoginURL     string
	IssuedAt     time.Time
}

// Apply returns b with the tokens of a refresh in it, as every backend's
// UpdateTokens stores them: the access token and the issue time always;
// the refresh token, instance URL and login URL only when set (empty means
// unchanged). t.IssuedAt must be set.
func (t Tokens) Apply(b Binding) Binding {
	b.AccessToken = t.AccessToken
	if t.RefreshToken != "" {
		b.RefreshToken = t.RefreshToken
	}
	if t.InstanceURL != "" {
		b.InstanceURL = t.InstanceURL
	}
	if t.LoginURL != "" {
		b.LoginURL = t.LoginURL
	}
	b.IssuedAt = t.IssuedAt
	return b
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

// Replaced is what a backend's ReplaceBinding found in the place of the
// binding it stored, read in the same transaction as the write. It is a
// plain value.
type Replaced struct {
	// Found reports whether a binding was stored there before.
	Found bool
	// Binding is the binding replaced, when Found and its record opened.
	// Its grant is no longer used by anyone: the caller revokes it.
	Binding Binding
	// Err is why the replaced record did not open (it matches ErrWrongKey
	// or ErrCorrupt, and names the key id), or nil. Its tokens are then
	// unknown and its grant cannot be revoked.
	Err error
}

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

// redact hides a secret but not whether it is set.
func redact(s string) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// An ExpiredLink is a pending link whose expiry has passed, as a backend's
// ListExpired returns it. It is a plain value.
type ExpiredLink struct {
	// ID names the link for DeletePending. It is the hex of the record key
	// (a hash of the state), which is no secret: it cannot redeem the link.
	ID string
	// Pending is the link. When it did not open, only Expires is set (and
	// only if the plaintext expiry could be read).
	Pending Pending
	// Err is why the link did not open, or nil.
	Err error
}

// Expired reads a stored pending link for a backend's ListExpired: ok is
// false while the link has not expired at now. A link that does not open
// is still listed, with only its expiry (when its plaintext expiry reads)
// and the error, so that the caller can drop it. Nothing in key or value
// makes it panic.
func (k *Keyring) Expired(key, value []byte, now time.Time) (l ExpiredLink, ok bool) {
	exp, read := PendingExpiry(value)
	if read && now.Before(exp) {
		return ExpiredLink{}, false
	}
	l = ExpiredLink{ID: hex.EncodeToString(key)}
	l.Pending, l.Err = k.OpenPending(key, value)
	if l.Err != nil {
		l.Pending = Pending{Expires: exp}
		l.Err = fmt.Errorf("pending %s: %w", ShortLinkID(l.ID), l.Err)
	}
	return l, true
}

// LinkKey is the record key an ExpiredLink's ID names, for DeletePending;
// any string that is not one gives ErrNotFound.
func LinkKey(id string) ([]byte, error) {
	key, err := hex.DecodeString(id)
	if err != nil || len(key) == 0 {
		return nil, ErrNotFound
	}
	return key, nil
}

// ShortLinkID is the start of a link id, enough to tell links apart in a
// log.
func ShortLinkID(id string) string {
	if len(id) > 8 {
		return id[:8] + "…"
	}
	return id
}
