package account

import (
	"context"
	"time"
)

// Account is the Salesforce user a Slack user is linked to, as anyone but
// the binding flow may see it: who on both sides, and where, never a token.
// It is a plain value, safe to copy and to share between goroutines.
type Account struct {
	TeamID string // Slack team (workspace) id
	UserID string // Slack user id

	SalesforceUserID string
	OrgID            string
	Username         string    // the Salesforce username, e.g. jane@acme.example
	InstanceURL      string    // where the org's API answers
	LoginURL         string    // the login host the grant came from
	LinkedAt         time.Time // when the person confirmed the link
}

// Requester is the Slack person a link is made for, and where to reach them.
type Requester struct {
	TeamID      string
	TeamName    string
	UserID      string
	ChannelID   string // where they asked; a DM channel or a public one
	DisplayName string // "" means Start asks the Notifier
}

// Link is a binding link: the Salesforce authorize URL to send, privately, to
// the person it was made for, and when it stops working. In the device flow
// URL is Salesforce's verification page and UserCode the code to type there;
// UserCode is "" in the web flow.
type Link struct {
	URL      string
	UserCode string
	Expires  time.Time
}

// Unlinked describes a removed binding.
type Unlinked struct {
	// Account is the account unlinked. Only TeamID and UserID are set when
	// its record could not be opened (NotRevoked is RevokeUnreadable).
	Account Account
	// Revoked reports whether Salesforce confirmed the revocation. The binding
	// is deleted either way.
	Revoked bool
	// NotRevoked says why Revoked is false; 0 when it is true.
	NotRevoked NotRevoked
}

// NotRevoked is why an unlink removed a binding without revoking its grant.
type NotRevoked int

const (
	// RevokeFailed means Salesforce could not be reached, or refused.
	RevokeFailed NotRevoked = iota + 1
	// RevokeLoginMoved means the binding was made at a Salesforce login
	// host the configuration no longer names, so its token was sent nowhere.
	RevokeLoginMoved
	// RevokeUnreadable means the binding's record could not be opened, so
	// forcebind did not know the token to revoke.
	RevokeUnreadable
)

// Notifier is how the binding flow reaches the person on the Slack side.
// The bot implements it; every message it sends goes only to that person.
// Its methods are called from many goroutines at once.
type Notifier interface {
	// Linked tells the Slack user of a that their Salesforce identity is
	// now linked (a DM through chat.postMessage).
	Linked(ctx context.Context, a Account) error
	// Relink sends who, privately, a fresh link after their binding ended
	// for why: Salesforce ended the grant (refresh answered invalid_grant),
	// the binding was made at a Salesforce the configuration no longer
	// names, or is of an org it no longer allows. It is called once per
	// ended binding; when it fails, the link is handed to the command's
	// own answer instead (see RelinkError).
	Relink(ctx context.Context, who Requester, link Link, why RelinkReason) error
	// DisplayName returns the name the confirmation page shows for the Slack
	// user (with their handle), or "" when Slack does not say. It is asked
	// only when a link is made for a Requester without one.
	DisplayName(ctx context.Context, userID string) string
	// Email returns the email address on the Slack user's profile (scope
	// users:read.email), or "" when the profile has none. It is asked only
	// when the flow must match emails (auth.Config.RequireEmailMatch); an
	// error means Slack could not be asked, and nothing is bound.
	Email(ctx context.Context, userID string) (string, error)
	// LinkFailed tells who, privately, that a link they started ended without
	// a binding, and why. Device-flow links end this way on their own (denied,
	// expired) and when the flow shuts down (interrupted); either flow
	// when the email match refuses the sign-in.
	LinkFailed(ctx context.Context, who Requester, why Failure) error
}

// Failure is why a binding link ended without a binding.
type Failure int

const (
	// FailureEmailMismatch means the Salesforce user's email is not the Slack
	// profile's, or Salesforce has not verified it, so the sign-in was
	// revoked (auth.Config.RequireEmailMatch).
	FailureEmailMismatch Failure = iota + 1
	// FailureDenied means the person chose Deny at Salesforce.
	FailureDenied
	// FailureExpired means the device code ran out before it was approved.
	FailureExpired
	// FailureError means Salesforce or the store failed; the log has why.
	FailureError
	// FailureNoSlackEmail means Slack gave no email address for the person
	// (auth.Config.RequireEmailMatch), so nothing could be compared and the
	// sign-in was revoked. Usually the Slack app lacks the users:read.email
	// scope; the profile may also have no email.
	FailureNoSlackEmail
	// FailureInterrupted means forcebind shut down while a device code was
	// waiting to be approved; the code is of no use any more.
	FailureInterrupted
	// FailureOrgNotAllowed means the Salesforce user is in an org that
	// auth.Config.AllowedOrgIDs does not list, so the sign-in was revoked.
	FailureOrgNotAllowed
)

// String names the failure for logs and metrics.
func (f Failure) String() string {
	switch f {
	case FailureEmailMismatch:
		return "email_mismatch"
	case FailureDenied:
		return "denied"
	case FailureExpired:
		return "expired"
	case FailureError:
		return "error"
	case FailureNoSlackEmail:
		return "no_slack_email"
	case FailureInterrupted:
		return "interrupted"
	case FailureOrgNotAllowed:
		return "org_not_allowed"
	}
	return "unknown"
}

// RelinkReason is why a binding ended and its owner was sent a fresh link.
type RelinkReason int

const (
	// RelinkGrantEnded means Salesforce ended the grant: a refresh answered
	// invalid_grant for a revoked or expired token, a deactivated user, and
	// the like.
	RelinkGrantEnded RelinkReason = iota + 1
	// RelinkLoginMoved means the binding was made at a Salesforce login
	// host that SALESFORCE_LOGIN_URL no longer names (the administrator
	// moved forcebind, from a sandbox to production say): the binding was
	// removed without its token being sent anywhere.
	RelinkLoginMoved
	// RelinkOrgNotAllowed means the binding is of a Salesforce org that
	// the administrator no longer lets people link (auth.Config's
	// AllowedOrgIDs): its grant was revoked and the binding removed.
	RelinkOrgNotAllowed
)

// String names the reason for logs.
func (r RelinkReason) String() string {
	switch r {
	case RelinkGrantEnded:
		return "grant_ended"
	case RelinkLoginMoved:
		return "login_moved"
	case RelinkOrgNotAllowed:
		return "org_not_allowed"
	}
	return "unknown"
}
