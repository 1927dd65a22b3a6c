package salesforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
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
			return &objectInfo{paths: []string{"Phone"}}, nil
		})
		waiter <- result{e, err}
	}()
	<-wctx.waiting
	cancelLeader()

	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Errorf("leader: %v, want context.Canceled", err)
	}
	r := <-waiter
	if r.err != nil || r.e == nil || !r.e.info.readable("Phone") || fetches != 1 {
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
	f.Add("Account", []byte(`{"results":[{"result":{"apiName":"Account","fields":{}},"statusCode":200}]}`))
	f.Add("Lead", []byte(`{"results":[{"result":[{"errorCode":"INSUFFICIENT_ACCESS","message":"no"}],"statusCode":403}]}`))
	f.Fuzz(func(t *testing.T, object string, data []byte) {
		for _, o := range Objects() {
			allowed := map[string]bool{"Id": true, o.NameField: true}
			for _, of := range o.Fields {
				allowed[of.Name] = true
			}
			check := func(info *objectInfo) {
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
			if !strings.EqualFold(o.Name, object) {
				continue
			}
			if info, err := decodeObjectInfo(o, data); err == nil {
				check(info)
			}
			if infos, err := decodeBatch([]Object{o}, data); err == nil {
				if len(infos) != 1 || infos[0] == nil {
					t.Fatalf("decodeBatch = %v, want one info", infos)
				}
				check(infos[0])
			}
		}
	})
}

// objectInfoAnswer is an object info answer in the UI API's shape for
// object, with n fields besides its own key fields and a lookup to
// Account: every field with the properties real answers carry, so that
// what a decoded answer keeps is measured against a real-sized one.
func objectInfoAnswer(tb testing.TB, object string, n int) []byte {
	tb.Helper()
	field := func(name, dataType string, ref map[string]any) map[string]any {
		refs, rel := []any{}, any(nil)
		if ref != nil {
			refs, rel = []any{ref}, strings.TrimSuffix(name, "Id")
		}
		return map[string]any{
			"apiName": name, "calculated": false, "compound": false, "compoundComponentName": nil,
			"compoundFieldName": nil, "controllerName": nil, "controllingFields": []any{}, "createable": true,
			"custom": strings.HasSuffix(name, "__c"), "dataType": dataType, "extraTypeInfo": nil, "filterable": true,
			"filteredLookupInfo": nil, "highScaleNumber": false, "htmlFormatted": false,
			"inlineHelpText": "Help text that an administrator wrote for " + name, "label": "Label of " + name,
			"length": 255, "nameField": name == "Name", "polymorphicForeignKey": false, "precision": 0,
			"reference": ref != nil, "referenceTargetField": nil, "referenceToInfos": refs, "relationshipName": rel,
			"required": false, "scale": 0, "searchPrefilterable": false, "sortable": true, "unique": false, "updateable": true,
		}
	}
	fields := map[string]any{
		"Id":        field("Id", "String", nil),
		"Name":      field("Name", "String", nil),
		"AccountId": field("AccountId", "Reference", map[string]any{"apiName": "Account", "nameFields": []string{"Name"}}),
	}
	for _, o := range Objects() {
		if o.Name == object {
			for _, f := range o.Fields {
				fields[f.Name] = field(f.Name, "String", nil)
			}
		}
	}
	for i := len(fields); i < n; i++ {
		name := fmt.Sprintf("Custom_Field_%03d__c", i)
		fields[name] = field(name, "String", nil)
	}
	data, err := json.Marshal(map[string]any{"apiName": object, "fields": fields, "nameFields": []string{"Name"}})
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// An entry keeps only what the object table can ask about: a cache of
// entries decoded from a 300-field object info answer holds well under
// 2 KB per entry, where keeping every field held about 31 KB. Memory is
// measured, not time.
func TestFieldCacheEntrySize(t *testing.T) {
	const n = 100
	contact := Objects()[1]
	data := objectInfoAnswer(t, "Contact", 300)
	fc := NewFieldCache(FieldCacheConfig{})
	keys := make([]infoKey, n)
	for i := range keys {
		keys[i] = infoKey{org: "00D5g000004FbcDEAS", user: fmt.Sprintf("0055g%013d", i), object: "Contact"}
	}

	// Two collections: the first moves what sync.Pool holds (the
	// encoder's buffer for data, say) to its victim cache, the second
	// frees it.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, k := range keys {
		e, err := fc.get(t.Context(), k, func(context.Context) (*objectInfo, error) { return decodeObjectInfo(contact, data) })
		if err != nil || !e.info.readable("Account.Name") || !e.info.readable("Title") {
			t.Fatalf("decoded entry %+v, %v; want Title and Account.Name readable", e, err)
		}
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if fc.Len() != n {
		t.Fatalf("cache holds %d entries, want %d", fc.Len(), n)
	}
	perEntry := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d bytes retained per entry of a %d-byte answer", perEntry, len(data))
	if perEntry >= 2048 {
		t.Errorf("%d bytes retained per cache entry, want < 2 KB: an entry must keep only what the object table can ask about", perEntry)
	}
	runtime.KeepAlive(fc)
	runtime.KeepAlive(data) // or its freeing would be counted against the entries
}

// A batch answer gives each object its own outcome: read, not readable
// (each way Salesforce may say so), or an error that fails the read.
func TestDecodeBatch(t *testing.T) {
	objs := Objects()[:3] // Account, Contact, Opportunity
	ok := func(object string) string { return string(objectInfoAnswer(t, object, 10)) }
	item := func(result string, status int) string {
		return fmt.Sprintf(`{"result":%s,"statusCode":%d}`, result, status)
	}
	batch := func(items ...string) []byte { return []byte(`{"results":[` + strings.Join(items, ",") + `]}`) }
	tests := []struct {
		name       string
		data       []byte
		wantDenied []bool // nil: an error
	}{
		{"all read", batch(item(ok("Account"), 200), item(ok("Contact"), 200), item(ok("Opportunity"), 200)), []bool{false, false, false}},
		{"403", batch(item(ok("Account"), 200), item(`[{"errorCode":"INSUFFICIENT_ACCESS","message":"You don't have access to this object."}]`, 403), item(ok("Opportunity"), 200)), []bool{false, true, false}},
		{"404", batch(item(`[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]`, 404), item(ok("Contact"), 200), item(ok("Opportunity"), 200)), []bool{true, false, false}},
		{"400 INVALID_TYPE", batch(item(ok("Account"), 200), item(ok("Contact"), 200), item(`[{"errorCode":"INVALID_TYPE","message":"Object Opportunity is not supported in UI API"}]`, 400)), []bool{false, false, true}},
		{"403 API limit", batch(item(ok("Account"), 200), item(`[{"errorCode":"REQUEST_LIMIT_EXCEEDED","message":"TotalRequests Limit exceeded."}]`, 403), item(ok("Opportunity"), 200)), nil},
		{"500", batch(item(ok("Account"), 200), item(`[{"errorCode":"UNKNOWN_EXCEPTION","message":"boom"}]`, 500), item(ok("Opportunity"), 200)), nil},
		{"400 other", batch(item(ok("Account"), 200), item(`[{"errorCode":"MALFORMED_ID","message":"bad"}]`, 400), item(ok("Opportunity"), 200)), nil},
		{"too few results", batch(item(ok("Account"), 200), item(ok("Contact"), 200)), nil},
		{"out of order", batch(item(ok("Contact"), 200), item(ok("Account"), 200), item(ok("Opportunity"), 200)), nil},
		{"not JSON", []byte(`<html>`), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			infos, err := decodeBatch(objs, tt.data)
			if tt.wantDenied == nil {
				if err == nil {
					t.Fatalf("decodeBatch = %v, want an error", infos)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := make([]bool, len(infos))
			for i, info := range infos {
				got[i] = info.denied
				if info.denied && !strings.Contains(info.reason, "HTTP ") {
					t.Errorf("%s: reason %q does not say what Salesforce answered", objs[i].Name, info.reason)
				}
			}
			if diff := cmp.Diff(tt.wantDenied, got); diff != "" {
				t.Errorf("denied mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
