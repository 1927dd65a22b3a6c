package auth

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/store"
	"github.com/forcebind/forcebind/store/bolt"
)

// Client looks the requester up and hands back a client acting as their
// Salesforce user, with the account it acts as: the binding's identity,
// none of its tokens. Account says the same without a client; both say
// ErrNotLinked for someone with no binding.
func TestClientForARequester(t *testing.T) {
	e := mustEnv(t, envOptions{})
	b := e.mustBind(t, jane, janeSF)
	want := Account{
		TeamID: jane.TeamID, UserID: jane.UserID, SalesforceUserID: b.SalesforceUserID, OrgID: b.OrgID,
		Username: janeSF, InstanceURL: b.InstanceURL, LoginURL: e.sf.URL, LinkedAt: b.LinkedAt,
	}
	sf, got, err := e.svc.Client(t.Context(), jane)
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Client's account mismatch (-want +got):\n%s", diff)
	}
	if rs, err := sf.Search(t.Context(), "acme"); err != nil || len(rs) == 0 {
		t.Errorf("search as jane = %d results, %v; want some", len(rs), err)
	}
	got, err = e.svc.Account(t.Context(), jane)
	if err != nil {
		t.Fatalf("Account: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Account mismatch (-want +got):\n%s", diff)
	}
	e.assertNoTokens(t, "account", fmt.Sprintf("%+v %#v", got, got))
	if _, _, err := e.svc.Client(t.Context(), sam); !errors.Is(err, ErrNotLinked) {
		t.Errorf("Client for sam = %v, want ErrNotLinked", err)
	}
	if _, err := e.svc.Account(t.Context(), sam); !errors.Is(err, ErrNotLinked) {
		t.Errorf("Account for sam = %v, want ErrNotLinked", err)
	}
}

// failingStore answers reads and new links with err.
type failingStore struct {
	*bolt.DB
	err error
}

func (f *failingStore) GetBinding(context.Context, string, string) (store.Binding, error) {
	return store.Binding{}, fmt.Errorf("get binding: %w", f.err)
}

func (f *failingStore) CreatePending(context.Context, store.Pending) (string, error) {
	return "", fmt.Errorf("create pending: %w", f.err)
}

// A store that cannot be used at all is ErrStoreUnusable to callers, who
// need not know the store's errors, and a record that cannot be opened is
// ErrUnreadable (which Unlink removes); any other failure is neither.
func TestStoreErrorsInAuthsWords(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		unreadable bool // what a read says
		unusable   bool // what a read says, when not unreadable, and what a new link says
	}{
		{"locked", store.ErrLocked, false, true},
		{"damaged", store.ErrCorrupt, true, true},
		{"wrong key", store.ErrWrongKey, true, false},
		{"disk", errors.New("input/output error"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEnv(t, envOptions{store: func(db *bolt.DB) Store { return &failingStore{DB: db, err: tt.err} }})
			_, _, clientErr := e.svc.Client(t.Context(), jane)
			_, accountErr := e.svc.Account(t.Context(), jane)
			reads := []struct {
				what string
				err  error
			}{{"Client", clientErr}, {"Account", accountErr}}
			if !tt.unreadable {
				_, err := e.svc.Unlink(t.Context(), jane)
				reads = append(reads, struct {
					what string
					err  error
				}{"Unlink", err})
			}
			for _, r := range reads {
				switch {
				case r.err == nil:
					t.Errorf("%s succeeded on a failing store", r.what)
				case errors.Is(r.err, ErrUnreadable) != tt.unreadable:
					t.Errorf("%s = %v; want ErrUnreadable %v", r.what, r.err, tt.unreadable)
				case !tt.unreadable && errors.Is(r.err, ErrStoreUnusable) != tt.unusable:
					t.Errorf("%s = %v; want ErrStoreUnusable %v", r.what, r.err, tt.unusable)
				}
			}
			if _, err := e.svc.Start(t.Context(), jane); err == nil || errors.Is(err, ErrStoreUnusable) != tt.unusable {
				t.Errorf("Start = %v; want ErrStoreUnusable %v", err, tt.unusable)
			}
		})
	}
}
