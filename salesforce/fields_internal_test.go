package salesforce

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// waitingCtx tells when its Done channel is first asked for, which
// FieldCache.get does only when it is about to wait for another caller's
// request.
type waitingCtx struct {
	context.Context
	once    sync.Once
	waiting chan struct{}
}

func (c *waitingCtx) Done() <-chan struct{} {
	c.once.Do(func() { close(c.waiting) })
	return c.Context.Done()
}

// One person's request that ends while others wait for the same object
// info does not fail theirs: a waiter reads it itself.
func TestFieldCacheWaiterOutlivesLeader(t *testing.T) {
	fc := NewFieldCache(FieldCacheConfig{})
	key := infoKey{org: "00D", user: "005", object: "Account"}
	leaderCtx, cancelLeader := context.WithCancel(t.Context())
	fetching := make(chan struct{})
	leaderErr := make(chan error, 1)
	go func() {
		_, err := fc.get(leaderCtx, key, func(ctx context.Context) (*objectInfo, error) {
			close(fetching)
			<-ctx.Done() // a slow Salesforce, until the person gives up
			return nil, ctx.Err()
		})
		leaderErr <- err
	}()
	<-fetching

	wctx := &waitingCtx{Context: t.Context(), waiting: make(chan struct{})}
	var fetches int
	type result struct {
		e   *infoEntry
		err error
	}
	waiter := make(chan result, 1)
	go func() {
		e, err := fc.get(wctx, key, func(context.Context) (*objectInfo, error) {
			fetches++
			return &objectInfo{fields: map[string]bool{"id": true}}, nil
		})
		waiter <- result{e, err}
	}()
	<-wctx.waiting
	cancelLeader()

	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Errorf("leader: %v, want context.Canceled", err)
	}
	r := <-waiter
	if r.err != nil || r.e == nil || !r.e.info.fields["id"] || fetches != 1 {
		t.Fatalf("waiter: entry %+v, error %v after %d fetches; want its own fetch's answer", r.e, r.err, fetches)
	}
	if e, ok := fc.peek(key); !ok || e != r.e {
		t.Errorf("the waiter's answer was not cached")
	}
}

// A fetch that panics leaves no waiter hanging and nothing cached.
func TestFieldCacheFetchPanics(t *testing.T) {
	fc := NewFieldCache(FieldCacheConfig{})
	key := infoKey{org: "00D", user: "005", object: "Account"}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not reach the caller")
			}
		}()
		_, _ = fc.get(t.Context(), key, func(context.Context) (*objectInfo, error) { panic("bug") })
	}()
	if _, ok := fc.flights[key]; ok {
		t.Error("the flight of a panicking fetch is still registered")
	}
	e, err := fc.get(t.Context(), key, func(context.Context) (*objectInfo, error) { return &objectInfo{}, nil })
	if err != nil || e == nil || fc.Len() != 1 {
		t.Errorf("get after a panic = %+v, %v; want a fresh entry", e, err)
	}
}

// Whatever object info a server sends, decoding never panics, and the
// fields asked for are only ever names from the object table.
func FuzzDecodeObjectInfo(f *testing.F) {
	f.Add("Contact", []byte(`{"apiName":"Contact","fields":{"AccountId":{"apiName":"AccountId","relationshipName":"Account","referenceToInfos":[{"apiName":"Account","nameFields":["Name"]}]},"Title":{"apiName":"Title","relationshipName":null,"referenceToInfos":[]}}}`))
	f.Add("Account", []byte(`{"apiName":"Account","fields":{"Phone":{}}}`))
	f.Add("Account", []byte(`{"apiName":"Account","fields":null}`))
	f.Add("Lead", []byte(`[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]`))
	f.Add("Case", []byte(`{"apiName":"Case","fields":{"x":{"apiName":"Id, Password","relationshipName":"A.B","referenceToInfos":[{"nameFields":null}]}}}`))
	f.Fuzz(func(t *testing.T, object string, data []byte) {
		info, err := decodeObjectInfo(object, data)
		if err != nil {
			return
		}
		for _, o := range Objects() {
			allowed := map[string]bool{"Id": true, o.NameField: true}
			for _, of := range o.Fields {
				allowed[of.Name] = true
			}
			for _, name := range o.selectFields(info) {
				if !allowed[name] {
					t.Fatalf("%s: asked for %q, which is not in the table", o.Name, name)
				}
			}
			for _, name := range o.findFields(info) {
				if !allowed[name] {
					t.Fatalf("%s: matched on %q, which is not in the table", o.Name, name)
				}
			}
		}
	})
}
