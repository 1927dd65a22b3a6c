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
	// INVALID_SESSION_ID. It returns a valid access token. Implementations
	// single-flight it and may return a token another caller already
	// refreshed.
	Refresh(ctx context.Context, stale string) (string, error)
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
func (t StaticToken) Refresh(context.Context, string) (string, error) {
	return "", ErrSessionExpired
}
