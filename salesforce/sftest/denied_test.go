package sftest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/salesforce/sftest"
)

// batchAnswer is the UI API's Simplified Batch Results as the tests read it.
type batchAnswer struct {
	Results []struct {
		Result     json.RawMessage `json:"result"`
		StatusCode int             `json:"statusCode"`
	} `json:"results"`
}

// The batch form of object info answers one result per object, in the
// order asked, each what the single resource answers, in the documented
// shape: {"results":[{"result":…,"statusCode":…}]}.
func TestObjectInfoBatch(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	samTok := mustToken(t, srv, sam)
	status, body := restStatus(t, srv, samTok, "/services/data/v62.0/ui-api/object-info/batch/Opportunity,Widget__c,account")
	if status != http.StatusOK {
		t.Fatalf("batch: %d %s", status, body)
	}
	if diff := cmp.Diff([]string{"results"}, objectKeys(t, body)); diff != "" {
		t.Errorf("batch keys mismatch (-want +got):\n%s", diff)
	}
	var ans batchAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatal(err)
	}
	if len(ans.Results) != 3 {
		t.Fatalf("%d results, want 3: %s", len(ans.Results), body)
	}
	for i, object := range []string{"Opportunity", "", "Account"} {
		r := ans.Results[i]
		if diff := cmp.Diff([]string{"result", "statusCode"}, objectKeys(t, mustRawObject(t, body, i))); diff != "" {
			t.Errorf("result %d keys mismatch (-want +got):\n%s", i, diff)
		}
		if object == "" {
			want := `[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]`
			if r.StatusCode != http.StatusNotFound || string(r.Result) != want {
				t.Errorf("result %d: %d %s, want 404 %s", i, r.StatusCode, r.Result, want)
			}
			continue
		}
		_, single := mustObjectInfo(t, srv, samTok, object)
		if r.StatusCode != http.StatusOK || string(r.Result) != string(single) {
			t.Errorf("result %d: %d %s\nwant 200 and what the single resource answers:\n%s", i, r.StatusCode, r.Result, single)
		}
	}
	if n := srv.Calls(sftest.EndpointObjectInfo); n != 3 {
		t.Errorf("%d object info calls counted, want 3: the batch once, then two single ones", n)
	}
}

// mustRawObject returns results[i] of a batch answer as sent.
func mustRawObject(tb testing.TB, body []byte, i int) []byte {
	tb.Helper()
	var raw struct {
		Results []json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal(body, &raw); err != nil || i >= len(raw.Results) {
		tb.Fatalf("results[%d] of %s: %v", i, body, err)
	}
	return raw.Results[i]
}

// An object the user may not read at all (SetObjectDenied, or the
// fixtures' denied_objects) is refused everywhere, as a real org refuses
// it, and jane, who may read it, sees no change.
func TestObjectDenied(t *testing.T) {
	var f map[string]any
	if err := json.Unmarshal(sftest.DefaultFixtures(), &f); err != nil {
		t.Fatal(err)
	}
	f["users"].([]any)[1].(map[string]any)["denied_objects"] = []string{"Lead"}
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	srv := mustServer(t, sftest.Options{Fixtures: data})
	if err := srv.SetObjectDenied(sam, "account", true); err != nil {
		t.Fatal(err)
	}
	const forbidden = `[{"errorCode":"INSUFFICIENT_ACCESS","message":"You don't have access to this object."}]`
	unsupported := func(object string) string {
		return `[{"message":"sObject type '` + object + `' is not supported. ` +
			`If you are attempting to use a custom object, be sure to append the '__c' after the entity name. ` +
			`Please reference your WSDL or the describe call for the appropriate names.","errorCode":"INVALID_TYPE"}]`
	}
	const relationship = `[{"message":"Didn't understand relationship 'Account' in field path. ` +
		`If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. ` +
		`Please reference your WSDL or the describe call for the appropriate names.","errorCode":"INVALID_FIELD"}]`
	q := func(path, text string) string { return "/services/data/v62.0/" + path + "?q=" + url.QueryEscape(text) }
	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantBody   string // "" for any
	}{
		{"object info", "/services/data/v62.0/ui-api/object-info/Lead", http.StatusForbidden, forbidden},
		{"object info, set at run time", "/services/data/v62.0/ui-api/object-info/Account", http.StatusForbidden, forbidden},
		{"query", q("query", "SELECT Id, Name FROM Lead"), http.StatusBadRequest, unsupported("Lead")},
		{"query, any case", q("query", "SELECT Id FROM account"), http.StatusBadRequest, unsupported("account")},
		{"relationship into it", q("query", "SELECT Id, Account.Name FROM Contact"), http.StatusBadRequest, relationship},
		{"search returning it", q("search", "FIND {acme} IN NAME FIELDS RETURNING Contact(Id), Lead(Id, Name)"), http.StatusBadRequest, unsupported("Lead")},
		{"record read", "/services/data/v62.0/sobjects/Lead/00Q5g00000Led2AEAR", http.StatusNotFound, ""},
		{"other objects", q("query", "SELECT Id, Name FROM Contact"), http.StatusOK, ""},
	}
	janeTok, samTok := mustToken(t, srv, jane), mustToken(t, srv, sam)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if status, body := restStatus(t, srv, janeTok, tt.path); status != http.StatusOK {
				t.Errorf("jane: %d %s, want 200", status, body)
			}
			status, body := restStatus(t, srv, samTok, tt.path)
			if status != tt.wantStatus || tt.wantBody != "" && string(body) != tt.wantBody {
				t.Errorf("sam: %d %s\nwant %d %s", status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}

	// In a batch, the same refusal is one result among others.
	status, body := restStatus(t, srv, samTok, "/services/data/v62.0/ui-api/object-info/batch/Contact,Lead")
	var ans batchAnswer
	if err := json.Unmarshal(body, &ans); err != nil || status != http.StatusOK || len(ans.Results) != 2 {
		t.Fatalf("batch: %d %s (%v)", status, body, err)
	}
	if r := ans.Results[1]; r.StatusCode != http.StatusForbidden || string(r.Result) != forbidden {
		t.Errorf("Lead in a batch: %d %s, want 403 %s", r.StatusCode, r.Result, forbidden)
	}
	// Contact's lookup to Account no longer names Account, whose name
	// fields sam cannot read; the lookup field itself is still there.
	var contact objectInfo
	if err := json.Unmarshal(ans.Results[0].Result, &contact); err != nil || ans.Results[0].StatusCode != http.StatusOK {
		t.Fatalf("Contact in a batch: %d %s", ans.Results[0].StatusCode, ans.Results[0].Result)
	}
	if f, ok := contact.Fields["AccountId"]; !ok || len(f.ReferenceToInfos) != 0 || f.RelationshipName == nil || *f.RelationshipName != "Account" {
		t.Errorf("Contact.AccountId for sam = %+v, want the lookup with no readable target", f)
	}

	// A search with no RETURNING list covers only what sam may read.
	status, body = restStatus(t, srv, samTok, q("search", "FIND {acme}"))
	if status != http.StatusOK || strings.Contains(string(body), `"type":"Lead"`) || strings.Contains(string(body), `"type":"Account"`) {
		t.Errorf("search without RETURNING: %d %s; want no leads or accounts", status, body)
	}

	var got []string
	for _, u := range srv.Users() {
		got = append(got, u.Username+": "+strings.Join(u.DeniedObjects, " "))
	}
	if diff := cmp.Diff([]string{"jane@acme.example: ", "sam@acme.example: Account Lead"}, got); diff != "" {
		t.Errorf("denied objects mismatch (-want +got):\n%s", diff)
	}
	if err := srv.SetObjectDenied(sam, "Account", false); err != nil {
		t.Fatal(err)
	}
	if status, body := restStatus(t, srv, samTok, "/services/data/v62.0/ui-api/object-info/Account"); status != http.StatusOK {
		t.Errorf("object info after access was given back: %d %s", status, body)
	}
	for _, bad := range [][2]string{{"nobody@acme.example", "Lead"}, {sam, "Widget__c"}} {
		if err := srv.SetObjectDenied(bad[0], bad[1], true); err == nil {
			t.Errorf("SetObjectDenied(%s, %s) succeeded", bad[0], bad[1])
		}
	}
}

// Fixtures that deny an object the fake does not have are refused when
// the fake starts.
func TestFixturesDeniedObjectsChecked(t *testing.T) {
	var f map[string]any
	if err := json.Unmarshal(sftest.DefaultFixtures(), &f); err != nil {
		t.Fatal(err)
	}
	f["users"].([]any)[1].(map[string]any)["denied_objects"] = []string{"Widget__c"}
	data, _ := json.Marshal(f)
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "sam@acme.example") {
			t.Errorf("NewServer denying Widget__c: panic %v, want one naming sam", r)
		}
	}()
	sftest.NewServer(sftest.Options{Fixtures: data}).Close()
}
