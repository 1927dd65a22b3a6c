package account

import (
	"errors"
	"fmt"
)

// Errors of the binding flow: looking up an account, getting a client,
// using it (the salesforce client passes them through), and unlinking.
// Match them with errors.Is; the errors returned wrap them with more
// detail, never with a token.
var (
	// ErrRelinkRequired is returned when Salesforce ended the grant
	// (invalid_grant on refresh): the binding has been deleted and the person
	// was sent a fresh link.
	ErrRelinkRequired = errors.New("salesforce grant ended; the user must connect again")
	// ErrLoginMoved is returned when the binding was made at a Salesforce
	// login host the configuration no longer names: its token was sent
	// nowhere, the binding has been deleted, and the person was sent a
	// fresh link. It matches ErrRelinkRequired too.
	ErrLoginMoved = fmt.Errorf("%w: forcebind now signs in at another Salesforce", ErrRelinkRequired)
	// ErrOrgNotAllowed is returned when the binding is of a Salesforce org
	// the administrator no longer lets people link (auth.Config's
	// AllowedOrgIDs): its grant was revoked, the binding has been
	// deleted, and the person was sent a fresh link. It matches
	// ErrRelinkRequired too.
	ErrOrgNotAllowed = fmt.Errorf("%w: forcebind no longer works with that Salesforce org", ErrRelinkRequired)
	// ErrRestricted is returned when Salesforce refused a refresh because
	// of the user's login IP ranges or login hours. The grant is alive and
	// the binding is kept: it works again from an allowed address or in
	// allowed hours.
	ErrRestricted = errors.New("salesforce refused the session refresh: outside the user's login IP ranges or login hours")
	// ErrTimeout is returned when Salesforce did not answer a refresh in
	// time. The binding is kept; a refresh still running finishes on its
	// own, and its tokens serve the next request.
	ErrTimeout = errors.New("salesforce did not answer the session refresh in time")
	// ErrRefreshRejected is returned when Salesforce's answer to a refresh
	// failed forcebind's checks (its signature, instance or identity URL,
	// or it named another user). It was not used and the binding is kept;
	// the log says why, for the operator.
	ErrRefreshRejected = errors.New("salesforce's answer to the session refresh could not be verified")
	// ErrRefreshSpent is returned with ErrRefreshRejected when the answer
	// that was rejected carried a new refresh token (Salesforce's refresh
	// token rotation is on): Salesforce has retired the binding's own
	// refresh token for it, and forcebind revoked the new one unused, so
	// the binding can no longer be renewed. It is kept all the same (the
	// operator may want to look); the next refresh finds the grant ended
	// and sends a fresh link.
	ErrRefreshSpent = errors.New("the session can no longer be renewed: salesforce retired its refresh token for the rejected answer")
	// ErrTransient is returned when a refresh failed for a reason that may pass
	// (a 5xx, a network error); the binding is kept.
	ErrTransient = errors.New("salesforce could not refresh the session right now")
	// ErrClientRejected is returned when Salesforce rejected forcebind's own
	// client credentials (invalid_client): an operator problem, not the user's.
	ErrClientRejected = errors.New("salesforce rejected forcebind's client credentials")
	// ErrNotLinked is returned when the Slack user has no binding.
	ErrNotLinked = errors.New("no Salesforce account is linked")
	// ErrUnreadable is returned, wrapping the store's error (which names
	// the key id), when the Slack user's binding is stored but cannot be
	// opened: it was sealed under a key the keyring lacks, or it is
	// damaged. A new link replaces it; an unlink removes it.
	ErrUnreadable = errors.New("the stored Salesforce binding cannot be read")
	// ErrStoreUnusable is returned, wrapping the store's error, when the
	// binding store cannot be used at all: another process holds it, or
	// it is damaged. The person can do nothing about it; the operator can.
	ErrStoreUnusable = errors.New("the binding store cannot be used")
)

// A RelinkError is what the binding flow returns once a person's binding
// has ended and been deleted (see RelinkReason): it matches
// ErrRelinkRequired, and ErrLoginMoved or ErrOrgNotAllowed as its reason
// says. It carries the fresh link made for the person and whether the
// Notifier delivered it, so that whoever answers the person says the
// truth: that the link was sent, or, when that message could not be sent,
// the link itself. Its message holds neither the link nor a token, so it
// may be logged.
type RelinkError struct {
	// Why is why the binding ended.
	Why RelinkReason
	// Link is the fresh link; its URL is "" when none could be made.
	Link Link
	// Sent reports whether the Notifier delivered Link.
	Sent bool
}

// Error says why the binding ended and whether the link was sent.
func (e *RelinkError) Error() string {
	switch {
	case e.Sent:
		return e.Unwrap().Error() + " (a fresh link was sent)"
	case e.Link.URL != "":
		return e.Unwrap().Error() + " (the message with a fresh link could not be sent)"
	}
	return e.Unwrap().Error() + " (no fresh link could be made)"
}

// Unwrap returns the sentinel of Why: ErrLoginMoved, ErrOrgNotAllowed, or
// ErrRelinkRequired.
func (e *RelinkError) Unwrap() error {
	switch e.Why {
	case RelinkLoginMoved:
		return ErrLoginMoved
	case RelinkOrgNotAllowed:
		return ErrOrgNotAllowed
	}
	return ErrRelinkRequired
}
