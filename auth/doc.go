// Package auth binds a Slack user to their own Salesforce user and keeps that
// binding's tokens usable.
//
// People sign in with one of two OAuth 2.0 flows, chosen by Config.Flow.
//
// The web server flow with PKCE (S256), FlowWeb, the default:
//
//  1. Start creates a pending link in the store (a 256-bit state, the PKCE
//     verifier, who asked, an expiry) and returns the authorize URL, which the
//     caller sends only to the person who asked.
//  2. The callback listener (Handler, at CallbackPath) redeems the state once,
//     exchanges the code with the verifier, verifies the response signature
//     and instance URL, reads the identity, and shows a confirmation page
//     naming both the Salesforce user and the Slack user. Until the person
//     confirms, the tokens exist only sealed in the store.
//  3. Confirm stores the binding and tells the person through the Notifier;
//     Cancel revokes the fresh token. Once the one-time confirmation is
//     redeemed the step runs to its end even if the browser leaves, and a
//     second POST of it (a double-click, a reload) shows how the first
//     ended. An OAuth error Salesforce sends back is shown in fixed words
//     per error code; its error_description, which anyone can write into a
//     callback URL, is only logged.
//
// The device flow, FlowDevice, which needs no listener:
//
//  1. Start asks Salesforce's token endpoint for a device code
//     (response_type=device_code) and returns a Link with Salesforce's
//     verification URL and the user code to type there. It expires with the
//     code (ten minutes; Salesforce sends no expires_in) or the link TTL,
//     whichever comes first. Nothing is stored.
//  2. One poller per Slack user polls the token endpoint (grant_type=device)
//     every interval Salesforce named (5s if none), 5s more after each
//     slow_down, retrying 5xx and network failures, until the code is
//     approved, denied or expired, or the link's deadline passes. Another
//     Start for the same person while the code has a minute or more left
//     returns the same link and asks Salesforce for nothing; later, a new
//     code replaces the old one, whose poller stops silently. Close stops
//     every poller and tells each person their code no longer works
//     (FailureInterrupted).
//  3. An approved code's tokens are checked exactly as the web flow's
//     exchange is (signature, instance and identity URLs, refresh token,
//     identity), then bound and announced; a denied or expired code, or a
//     failure, is announced through Notifier.LinkFailed.
//
// In both flows Config.AllowedOrgIDs, when set, admits only sign-ins to the
// listed orgs, before anything is stored, and Config.RequireEmailMatch admits a sign-in only when the
// Salesforce user's email is verified at Salesforce (email_verified) and
// equals the Slack profile's, byte for byte once surrounding space is
// trimmed and ASCII letters are lowered (no Unicode case folding, which
// would match a Kelvin sign with a K). Otherwise nothing is bound, the
// fresh grant is revoked at Salesforce, and the person is told why: by
// LinkFailed, and in the web flow on the callback page too, which then
// offers no confirmation. A Slack profile without an email is its own
// failure, FailureNoSlackEmail, logged as an error for the operator: the
// Slack app most likely lacks the users:read.email scope.
//
// Afterwards Client gives the caller a salesforce client acting as the
// requester, and the requester's Account, which names the Salesforce user
// but holds no token: the caller never handles a binding. The client's
// token source refreshes on demand, once per user at a time, committing the
// new tokens (and the instance the answer names, which moves with the org)
// to the store before they are used. A grant Salesforce ended is answered
// with a fresh link of the configured flow, made and sent on a deadline of
// its own once the binding is deleted; the *RelinkError returned carries
// the link, so the person's answer can when the message could not. An
// invalid_grant for the user's login IP ranges or login hours is not an
// ended grant, and keeps the binding (ErrRestricted). Tokens a refresh
// obtained that nothing stores are revoked.
//
// Each Salesforce people sign in to is an Org: a login URL, from which
// every endpoint derives, and the connected app's credentials there. A
// Service holds its Orgs in a set (one, from Config, today) and finds the
// one a binding's grant belongs to by the login host the binding recorded,
// or its instance; that Org alone refreshes and revokes the grant, with its
// own credentials, and its answers are checked against its own login host.
// Failing both, a binding made at a production login host is tried at a
// configured production one, and a sandbox's at a sandbox's (the org's My
// Domain and login.salesforce.com, a My Domain renamed): a refresh there
// records that host; invalid_grant there means another Salesforce. A
// binding of no configured Org (the configuration moved to another
// Salesforce) is removed with its token sent nowhere, one of an org
// Config.AllowedOrgIDs no longer lists is revoked and removed, and either
// owner gets a fresh link (see Service.Account). Unlink revokes and
// deletes only the grant it revoked; Sweep revokes the tokens of
// unconfirmed links before it forgets them, within a time budget, retrying
// later when Salesforce cannot be reached. A binding whose record cannot be
// opened (ErrUnreadable) is replaced by the next confirmed link and removed
// by Unlink, while it still cannot be opened. Close stops the device
// pollers, telling each waiting person, and waits for them and for
// refreshes in flight.
//
// An optional Observer hears each refresh's outcome and how each link
// ended, for metrics. Config.Now and Config.After make the clock and the
// poller's waits replaceable in tests.
//
// Every secret goes only to the login host (a Salesforce domain or
// loopback, unless Config.AllowCustomLoginHost) and to the instance and
// identity URLs checked against it; no OAuth call follows a redirect. The
// callback URL is https, or plain http only on a loopback host.
//
// Tokens and device codes never appear in logs, errors or pages produced by
// this package. What callers outside it are given (Account, Link,
// Unlinked, the errors) comes from package auth/account, which holds no
// token and imports no store, so a caller can depend on it alone.
package auth
