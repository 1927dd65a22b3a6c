// Package salesforce is a small client for the Salesforce REST API, used by
// forcebind to act for one Salesforce user at a time.
//
// A [Client] is bound to one instance URL and one [Tokens] source (one
// binding). It runs SOQL queries with paging ([Client.Query]), SOSL searches
// across the five objects the bot knows ([Client.Search]), per-object name
// lookups ([Client.Find]), single-record reads ([Client.Get]) and identity
// look-ups ([Client.Identity]).
//
// Search and Find ask only for the fields the user may read: a SOQL query
// or SOSL RETURNING list that names a field hidden by field-level security
// is refused whole with INVALID_FIELD, and one that names an object the
// user may not read at all with INVALID_TYPE. What each user may read
// comes from the UI API's object info, which lists only the fields
// accessible to the token's user: all the objects a search misses are read
// in one request (GET …/ui-api/object-info/batch/{A},{B},…, from API
// version 49.0; one request per object before it). Only what the object
// table can ask about is kept, in a [FieldCache] per org, user and object
// for a quarter of an hour, shared by every Client through
// [Config.Fields], and read once however many searches miss it at the same
// time. An object the user may not read is left out of Search, and Find of
// it returns a *[NotReadableError]; that is remembered for a minute. When
// Salesforce still answers INVALID_FIELD or INVALID_TYPE (an administrator
// changed access since), the entries are dropped, read again once and the
// request retried once.
//
// Every request carries the binding's access token as a bearer token and goes
// only to the configured instance (or, for [Client.Identity], to the identity
// URL passed in). When the API answers 401 INVALID_SESSION_ID the client asks
// [Tokens.Refresh] for a new token once and retries once; it never loops.
// REQUEST_LIMIT_EXCEEDED never triggers a refresh.
//
// Errors from the API are *[APIError] values; match them with errors.Is
// against [ErrSessionExpired], [ErrRateLimited], [ErrNotFound] and
// [ErrUnavailable], or with errors.As for the details. An object the user
// may not read is a *[NotReadableError], which matches [ErrNotReadable]
// only. No error string ever contains a token.
//
// A Client with an [Observer] reports every HTTP request it sends (by
// method and outcome, with its latency) and the org's API usage from the
// Sforce-Limit-Info header; the package itself does not import a metrics
// library.
//
// User input reaches SOQL and SOSL only through [EscapeSOQL], [EscapeLike]
// and [EscapeSOSL].
//
// The package salesforce/sftest provides a fake org over HTTP for tests and
// the demo.
package salesforce
