package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
)

// A binding to an org FORCEBIND_ALLOWED_ORG_IDS does not list, made before
// the list said so, is ended the first time it is used, by a command or by
// a refresh: its grant is revoked at its org rather than refreshed, the
// binding is removed, and its owner is sent one fresh link that says why.
func TestBindingOfAnOrgNoLongerAllowed(t *testing.T) {
	const otherOrg = "00D000000000062"
	tests := []struct {
		name        string
		use         func(*env, store.Binding) error
		wantRefresh []string // refresh outcomes observed
	}{
		{"any command", func(e *env, _ store.Binding) error {
			_, err := e.svc.Account(t.Context(), jane)
			return err
		}, nil},
		{"a refresh", func(e *env, b store.Binding) error {
			e.sf.ExpireAccessTokens()
			_, err := e.search(t, b)
			return err
		}, []string{"org_not_allowed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEnv(t, envOptions{})
			b := e.mustBind(t, jane, janeSF)
			e.restart(t, func(c *Config) { c.AllowedOrgIDs = []string{otherOrg} })
			tokenCalls := e.sf.Calls(sftest.EndpointToken)

			err := tt.use(e, b)
			var ended *RelinkError
			if !errors.Is(err, ErrOrgNotAllowed) || !errors.Is(err, ErrRelinkRequired) || !errors.As(err, &ended) || !ended.Sent {
				t.Fatalf("use after the org left the list = %v, want a sent RelinkError matching ErrOrgNotAllowed and ErrRelinkRequired", err)
			}
			if _, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("binding kept: %v", err)
			}
			refreshes, _ := e.obs.got()
			got := []any{e.sf.Calls(sftest.EndpointToken) - tokenCalls, e.sf.LiveRefreshTokens(), e.notes.relinkReasons(), refreshes}
			want := []any{0, 0, []RelinkReason{RelinkOrgNotAllowed}, tt.wantRefresh}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("[refreshes tried, live grants, links sent, refresh outcomes] mismatch (-want +got):\n%s", diff)
			}
			if !strings.Contains(e.logs.String(), "FORCEBIND_ALLOWED_ORG_IDS") {
				t.Errorf("the log does not name the setting:\n%s", e.logs)
			}
			if _, err := e.svc.Account(t.Context(), jane); !errors.Is(err, ErrNotLinked) {
				t.Errorf("Account after = %v, want ErrNotLinked", err)
			}
			if n := len(e.notes.relinkReasons()); n != 1 {
				t.Errorf("%d links sent, want 1", n)
			}
			e.assertNoTokens(t, "logs", e.logs.String())
		})
	}
}

// The fresh link after a binding ended is made and sent on a deadline of
// its own, not on what the refresh left of CallTimeout: it is the only word
// the person gets. When it cannot be sent, the error hands the link to the
// command's answer, without putting it in its message.
func TestRelinkHasItsOwnDeadline(t *testing.T) {
	const callTimeout = 300 * time.Millisecond
	e := mustEnv(t, envOptions{timeout: callTimeout})
	b := e.mustBind(t, jane, janeSF)
	e.sf.RevokeAll()
	e.sf.ExpireAccessTokens()
	// The token endpoint spends most of the refresh's time.
	e.sf.SetEndpointLatency(sftest.EndpointToken, callTimeout*2/3)
	e.notes.failRelinks(errors.New("chat.postMessage: rate limited for 1h0m0s"))

	_, err := e.search(t, b)
	var ended *RelinkError
	if !errors.As(err, &ended) || !errors.Is(err, ErrRelinkRequired) {
		t.Fatalf("search after the grant ended = %v, want a RelinkError", err)
	}
	ctxs := e.notes.relinkContexts()
	if len(ctxs) != 1 || !ctxs[0].live || ctxs[0].left < relinkTimeout/2 {
		t.Errorf("Relink was called with %+v, want one live context with about %s left", ctxs, relinkTimeout)
	}
	link, _ := e.notes.lastRelink()
	got := []any{ended.Why, ended.Sent, ended.Link.URL == link.URL && link.URL != ""}
	if diff := cmp.Diff([]any{RelinkGrantEnded, false, true}, got); diff != "" {
		t.Errorf("[why, sent, the link made] mismatch (-want +got):\n%s", diff)
	}
	if strings.Contains(err.Error(), link.URL) {
		t.Errorf("the error's message carries the link: %q", err)
	}
}

// failingDeleteStore is the real store, except that DeleteBindingIf fails
// as a full disk would.
type failingDeleteStore struct{ *bolt.DB }

func (failingDeleteStore) DeleteBindingIf(context.Context, string, string, string) error {
	return errors.New("write binding: disk full")
}

// When the ended binding cannot be deleted, nothing claims it was: no
// audit line says it was removed, no fresh link is sent, the binding stays
// for the next try, and the person hears that something went wrong.
func TestRelinkWhenTheStoreFails(t *testing.T) {
	e := mustEnv(t, envOptions{store: func(db *bolt.DB) Store { return failingDeleteStore{db} }})
	b := e.mustBind(t, jane, janeSF)
	e.sf.RevokeAll()
	e.sf.ExpireAccessTokens()
	_, err := e.search(t, b)
	if err == nil || errors.Is(err, ErrRelinkRequired) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("search = %v, want the store's failure, not a relink", err)
	}
	if _, err := e.db.GetBinding(t.Context(), jane.TeamID, jane.UserID); err != nil {
		t.Errorf("binding gone: %v", err)
	}
	if n := len(e.notes.relinkReasons()); n != 0 {
		t.Errorf("%d fresh links sent for a binding still stored", n)
	}
	if strings.Contains(e.logs.String(), "binding removed") {
		t.Errorf("the audit says the binding was removed:\n%s", e.logs)
	}
}
