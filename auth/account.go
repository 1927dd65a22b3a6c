package auth

import (
	"errors"
	"fmt"

	"github.com/forcebind/forcebind/auth/account"
	"github.com/forcebind/forcebind/store"
)

// The token-free vocabulary of the binding flow lives in package account,
// which imports nothing of forcebind: the bot speaks it without reaching
// the store. auth gives each name again, so that its own code and callers
// of auth read as before.
type (
	// Account is account.Account: a linked Salesforce user, without tokens.
	Account = account.Account
	// Requester is account.Requester: the Slack person a link is for.
	Requester = account.Requester
	// Link is account.Link: a binding link and when it stops working.
	Link = account.Link
	// Unlinked is account.Unlinked: how Unlink ended.
	Unlinked = account.Unlinked
	// NotRevoked is account.NotRevoked: why Unlink revoked nothing.
	NotRevoked = account.NotRevoked
	// Notifier is account.Notifier: how auth reaches the person on the
	// Slack side. Linked is told the token-free Account of a new binding.
	Notifier = account.Notifier
	// Failure is account.Failure: why a link ended without a binding.
	Failure = account.Failure
	// RelinkReason is account.RelinkReason: why a binding ended and its
	// owner was sent a fresh link.
	RelinkReason = account.RelinkReason
	// RelinkError is account.RelinkError: a binding that ended, with the
	// fresh link made for its owner.
	RelinkError = account.RelinkError
)

// The values of NotRevoked, Failure and RelinkReason; see package account.
const (
	RevokeFailed     = account.RevokeFailed
	RevokeLoginMoved = account.RevokeLoginMoved
	RevokeUnreadable = account.RevokeUnreadable

	FailureEmailMismatch = account.FailureEmailMismatch
	FailureDenied        = account.FailureDenied
	FailureExpired       = account.FailureExpired
	FailureError         = account.FailureError
	FailureNoSlackEmail  = account.FailureNoSlackEmail
	FailureInterrupted   = account.FailureInterrupted
	FailureOrgNotAllowed = account.FailureOrgNotAllowed

	RelinkGrantEnded    = account.RelinkGrantEnded
	RelinkLoginMoved    = account.RelinkLoginMoved
	RelinkOrgNotAllowed = account.RelinkOrgNotAllowed
)

// Errors of the token source, Account, Client and Unlink: package
// account's, the same values. Match them with errors.Is; the salesforce
// client passes them through.
var (
	ErrRelinkRequired  = account.ErrRelinkRequired
	ErrLoginMoved      = account.ErrLoginMoved
	ErrOrgNotAllowed   = account.ErrOrgNotAllowed
	ErrRestricted      = account.ErrRestricted
	ErrTimeout         = account.ErrTimeout
	ErrRefreshRejected = account.ErrRefreshRejected
	ErrRefreshSpent    = account.ErrRefreshSpent
	ErrTransient       = account.ErrTransient
	ErrClientRejected  = account.ErrClientRejected
	ErrNotLinked       = account.ErrNotLinked
	ErrUnreadable      = account.ErrUnreadable
	ErrStoreUnusable   = account.ErrStoreUnusable
)

// ErrClosed is returned by Start in the device flow once Close has been
// called: no new poller starts.
var ErrClosed = errors.New("auth service is closed")

// accountOf is b without its tokens.
func accountOf(b store.Binding) Account {
	return Account{
		TeamID: b.TeamID, UserID: b.UserID,
		SalesforceUserID: b.SalesforceUserID, OrgID: b.OrgID, Username: b.Username,
		InstanceURL: b.InstanceURL, LoginURL: b.LoginURL, LinkedAt: b.LinkedAt,
	}
}

// storeFailed translates a store error the person cannot act on into
// ErrStoreUnusable, which callers outside auth can match without knowing
// the store: a store locked by another process, or a damaged one. Other
// errors are returned as they are. A record that cannot be opened is
// ErrUnreadable instead (see unreadable), and is checked first.
func storeFailed(err error) error {
	if errors.Is(err, store.ErrLocked) || errors.Is(err, store.ErrCorrupt) {
		return fmt.Errorf("%w: %w", ErrStoreUnusable, err)
	}
	return err
}
