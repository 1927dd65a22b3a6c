package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/forcebind/forcebind/salesforce"
	"github.com/forcebind/forcebind/store"
)

// Tokens returns the token source of one binding for the salesforce client.
// who is whom to send a fresh link to if the grant has ended. The result is
// safe for concurrent use.
func (s *Service) Tokens(b store.Binding, who Requester) salesforce.Tokens {
	return &bindingTokens{svc: s, teamID: b.TeamID, userID: b.UserID, who: who, access: b.AccessToken}
}

// bindingTokens serves the access token it was built with until the API
// rejects it; then it refreshes through the Service, which makes sure one
// user's concurrent refreshes become one.
type bindingTokens struct {
	svc            *Service
	teamID, userID string
	who            Requester

	mu     sync.Mutex
	access string
}

func (t *bindingTokens) AccessToken(context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.access, nil
}

func (t *bindingTokens) Refresh(ctx context.Context, stale string) (string, error) {
	tok, err := t.svc.refresh(ctx, t.teamID, t.userID, stale, t.who)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	t.access = tok
	t.mu.Unlock()
	return tok, nil
}

// refresh returns a working access token for the user after the API rejected
// stale. Concurrent calls for one user share one refresh; a call that finds
// the stored token already differs from stale uses the stored one.
func (s *Service) refresh(ctx context.Context, teamID, userID, stale string, who Requester) (string, error) {
	key := teamID + "/" + userID
	return s.flights.do(ctx, key, func() (string, error) {
		// A refresh is detached from the request that started it: once
		// Salesforce has rotated the refresh token, abandoning the commit
		// would lose the grant. CallTimeout bounds it instead.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CallTimeout)
		defer cancel()
		tok, outcome, err := s.doRefresh(ctx, teamID, userID, stale, who)
		if outcome != "" {
			s.observeRefresh(outcome)
		}
		return tok, err
	})
}

// doRefresh refreshes the user's tokens. outcome is what Observer.Refreshed
// is told, "" when no refresh was tried (no binding, or another refresh had
// already replaced stale).
func (s *Service) doRefresh(ctx context.Context, teamID, userID, stale string, who Requester) (token, outcome string, err error) {
	b, err := s.cfg.Store.GetBinding(ctx, teamID, userID)
	if errors.Is(err, store.ErrNotFound) {
		return "", "", ErrNotLinked
	}
	if err != nil {
		return "", "error", fmt.Errorf("refresh: %w", err)
	}
	if b.AccessToken != stale {
		// Another refresh finished after this caller read its token.
		return b.AccessToken, "", nil
	}
	log := s.log.With().Str("team", teamID).Str("user", userID).Logger()
	hctx := context.WithValue(ctx, oauth2.HTTPClient, s.http)
	tok, err := s.oauth.TokenSource(hctx, &oauth2.Token{RefreshToken: b.RefreshToken}).Token()
	if err != nil {
		switch code, status := retrieveErrorCode(err); {
		case code == "invalid_grant":
			log.Info().Msg("refresh answered invalid_grant: the grant has ended; deleting the binding and sending a fresh link")
			return "", "relink", s.relink(ctx, b, who)
		case isClientError(code):
			log.Error().Str("error_code", code).Int("status", status).
				Msg("Salesforce rejected forcebind's client credentials on refresh; check SALESFORCE_CLIENT_ID and SALESFORCE_CLIENT_SECRET")
			return "", "client_rejected", ErrClientRejected
		default:
			log.Warn().Str("error_code", code).Int("status", status).Err(safeErr(err)).Msg("refresh failed; keeping the binding")
			return "", "transient", ErrTransient
		}
	}
	grant, err := s.checkGrant(tok)
	if err != nil {
		log.Warn().Err(err).Msg("refresh answer rejected")
		return "", "error", fmt.Errorf("refresh: %w", err)
	}
	if grant.orgID != b.OrgID || grant.userID != b.SalesforceUserID {
		log.Warn().Str("sf_org", grant.orgID).Str("sf_user", grant.userID).Msg("refresh answer names another Salesforce user; rejected")
		return "", "error", errors.New("refresh: the answer names another Salesforce user")
	}
	newRefresh := ""
	if tok.RefreshToken != b.RefreshToken {
		newRefresh = tok.RefreshToken // rotation is on
	}
	// Salesforce has answered (and may have rotated the refresh token): the
	// commit gets its own deadline, so a slow token answer cannot leave it
	// no time and lose the grant.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	nb, err := s.cfg.Store.UpdateTokens(cctx, teamID, userID, b.RefreshToken, store.Tokens{
		AccessToken: tok.AccessToken, RefreshToken: newRefresh, IssuedAt: grant.issuedAt,
	})
	switch {
	case errors.Is(err, store.ErrConflict):
		// The grant was replaced while this refresh ran (a re-link); use what is stored.
		cur, err := s.cfg.Store.GetBinding(cctx, teamID, userID)
		if err != nil {
			return "", "error", fmt.Errorf("refresh: %w", err)
		}
		return cur.AccessToken, "ok", nil
	case errors.Is(err, store.ErrNotFound):
		return "", "error", ErrNotLinked // unlinked while the refresh ran
	case err != nil:
		return "", "error", fmt.Errorf("refresh: store new tokens: %w", err)
	}
	s.audit("binding refreshed", nb)
	return nb.AccessToken, "ok", nil
}

// commitTimeout bounds storing the tokens a refresh obtained.
const commitTimeout = 10 * time.Second

// relink deletes a binding whose grant has ended and sends its owner a fresh
// link. It always returns ErrRelinkRequired, the caller's answer.
func (s *Service) relink(ctx context.Context, b store.Binding, who Requester) error {
	// Only the binding of the dead grant goes: if the person linked again while
	// this refresh ran, the new binding stays and no link is sent.
	switch err := s.cfg.Store.DeleteBindingIf(ctx, b.TeamID, b.UserID, b.RefreshToken); {
	case errors.Is(err, store.ErrConflict):
		s.log.Info().Str("team", b.TeamID).Str("user", b.UserID).Msg("grant ended, but the user has linked again meanwhile")
		return ErrTransient
	case err != nil && !errors.Is(err, store.ErrNotFound):
		s.log.Error().Err(err).Str("team", b.TeamID).Str("user", b.UserID).Msg("delete ended binding")
	}
	s.audit("binding removed: grant ended", b)
	if who.TeamID == "" {
		who.TeamID, who.UserID = b.TeamID, b.UserID
	}
	link, err := s.Start(ctx, who)
	if err != nil {
		s.log.Error().Err(err).Msg("create fresh link")
		return ErrRelinkRequired
	}
	if err := s.cfg.Notifier.Relink(ctx, who, link); err != nil {
		s.log.Error().Err(err).Str("team", b.TeamID).Str("user", b.UserID).Msg("send fresh link")
	}
	return ErrRelinkRequired
}

// retrieveErrorCode returns the OAuth error code and HTTP status of a token
// endpoint failure ("" and 0 for a network failure).
func retrieveErrorCode(err error) (string, int) {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return "", 0
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	return re.ErrorCode, status
}

func isClientError(code string) bool {
	switch code {
	case "invalid_client", "invalid_client_id", "invalid_client_credentials", "unauthorized_client":
		return true
	}
	return false
}

// safeErr keeps what can be logged of a token endpoint error. A
// *oauth2.RetrieveError's message includes the response body, which is never
// logged whole: only its code and status are.
func safeErr(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := ""
		if re.Response != nil {
			status = re.Response.Status
		}
		return fmt.Errorf("token endpoint answered %s %s", status, re.ErrorCode)
	}
	return err
}

// flightGroup makes concurrent calls with one key share one execution.
// Callers wait under their own context; the execution itself runs on.
type flightGroup struct {
	mu    sync.Mutex
	calls map[string]*flight
	wg    sync.WaitGroup // executions still running
}

type flight struct {
	done chan struct{}
	val  string
	err  error
}

func (g *flightGroup) do(ctx context.Context, key string, fn func() (string, error)) (string, error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = make(map[string]*flight)
	}
	f, ok := g.calls[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		g.calls[key] = f
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer func() {
				if r := recover(); r != nil {
					f.err = fmt.Errorf("refresh panicked: %v", r)
				}
				g.mu.Lock()
				delete(g.calls, key)
				g.mu.Unlock()
				close(f.done)
			}()
			f.val, f.err = fn()
		}()
	}
	g.mu.Unlock()
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// wait blocks until every execution has finished or ctx ends.
func (g *flightGroup) wait(ctx context.Context) error { return waitGroup(ctx, &g.wg) }

// waitGroup waits for wg until ctx ends. If ctx ends first, the goroutine
// waiting on wg stays until wg is done; callers wait on groups whose work is
// itself bounded.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drain reads a little of a body and closes it, so the connection can be
// reused without reading an unbounded answer.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
