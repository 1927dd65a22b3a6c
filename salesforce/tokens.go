package salesforce

import "context"

// Tokens supplies the access token for one binding.
//
// Implementations must be safe for concurrent use: one [Client] calls them
// from every goroutine that uses it.
type Tokens interface {
	// AccessToken returns the current access token.
	AccessToken(ctx context.Context) (string, error)

	// Refresh is called after the API rejected stale with 401
	// INVALID_SESSION_ID. It returns a valid access token, and the instance
	// to send it to when Salesforce named a new one. Implementations
	// single-flight it and may return a token another caller already
	// refreshed. An error matching [ErrSessionExpired] means the source
	// cannot refresh at all; the Client then returns the 401 itself.
	Refresh(ctx context.Context, stale string) (Token, error)
}

// Token is what a refresh gives a [Client]. It is a plain value.
type Token struct {
	AccessToken string

	// InstanceURL is the org's instance the token is for, as the refresh
	// answer named it: Salesforce moves an org on an instance migration, a
	// My Domain rename or when enhanced domains are turned on. The Client
	// checks it as it checks Config.InstanceURL, then sends the retry and
	// every later call there. Empty means the Client's instance stays.
	InstanceURL string
}

// StaticToken is a [Tokens] that always returns the same access token and
// cannot refresh: Refresh returns [ErrSessionExpired].
//
// It suits a token that was just issued (the identity fetch during binding)
// and tests. It is safe for concurrent use.
type StaticToken string

// AccessToken returns the token itself.
func (t StaticToken) AccessToken(context.Context) (string, error) { return string(t), nil }

// Refresh always fails with [ErrSessionExpired]: a static token has no
// refresh token behind it.
func (t StaticToken) Refresh(context.Context, string) (Token, error) {
	return Token{}, ErrSessionExpired
}
