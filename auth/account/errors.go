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
