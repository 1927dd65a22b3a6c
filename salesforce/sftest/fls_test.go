package sftest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/salesforce/sftest"
)

// invalidField is the whole body Salesforce answers when a query or search
// names a column the user cannot see.
func invalidField(field, object string) string {
	return `[{"message":"No such column '` + field + `' on entity '` + object + `'. ` +
		`If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. ` +
		`Please reference your WSDL or the describe call for the appropriate names.","errorCode":"INVALID_FIELD"}]`
}

// sam's profile hides Opportunity.Amount and Contact.Phone: any query or
// search that names one is refused whole, with Salesforce's own body, and
// the same text is fine for jane.
func TestHiddenFieldRefusesTheWholeRequest(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	const relationship = `[{"message":"Didn't understand relationship 'Account' in field path. ` +
		`If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. ` +
		`Please reference your WSDL or the describe call for the appropriate names.","errorCode":"INVALID_FIELD"}]`
	tests := []struct {
		name     string
		path     string // "query" or "search"
		text     string
		hide     string // another field to hide from sam first, "Object.Field"
		wantBody string // sam's answer, "" for 200
	}{
		{name: "select", path: "query", text: "SELECT Id, Name, Amount FROM Opportunity", wantBody: invalidField("Amount", "Opportunity")},
		{name: "any case", path: "query", text: "SELECT Id, name, aMOUNT FROM Opportunity", wantBody: invalidField("aMOUNT", "Opportunity")},
		{name: "where", path: "query", text: "SELECT Id FROM Contact WHERE Phone != NULL", wantBody: invalidField("Phone", "Contact")},
		{name: "order by", path: "query", text: "SELECT Id FROM Opportunity ORDER BY Amount", wantBody: invalidField("Amount", "Opportunity")},
		{name: "visible fields", path: "query", text: "SELECT Id, Name, StageName, Account.Name FROM Opportunity"},
		{name: "hidden lookup", path: "query", text: "SELECT Id, Account.Name FROM Contact", hide: "Contact.AccountId", wantBody: relationship},
		{name: "hidden on the parent", path: "query", text: "SELECT Id, Account.Industry FROM Contact", hide: "Account.Industry", wantBody: invalidField("Industry", "Account")},
		{name: "returning", path: "search", text: "FIND {acme} IN NAME FIELDS RETURNING Account(Id, Name), Opportunity(Id, Name, Amount)", wantBody: invalidField("Amount", "Opportunity")},
		{name: "returning visible", path: "search", text: "FIND {acme} IN NAME FIELDS RETURNING Account(Id, Name, Phone), Contact(Id, Email)"},
	}
	jane, sam := mustToken(t, srv, jane), mustToken(t, srv, sam)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.hide != "" {
				object, field, _ := strings.Cut(tt.hide, ".")
				mustSetHidden(t, srv, object, field, true)
				defer mustSetHidden(t, srv, object, field, false)
			}
			path := "/services/data/v62.0/" + tt.path + "?q=" + url.QueryEscape(tt.text)
			if status, body := restStatus(t, srv, jane, path); status != http.StatusOK {
				t.Errorf("jane: %d %s, want 200", status, body)
			}
			status, body := restStatus(t, srv, sam, path)
			if tt.wantBody == "" {
				if status != http.StatusOK {
					t.Errorf("sam: %d %s, want 200", status, body)
				}
				return
			}
			if status != http.StatusBadRequest || string(body) != tt.wantBody {
				t.Errorf("sam: %d %s\nwant 400 %s", status, body, tt.wantBody)
			}
		})
	}
}

func mustSetHidden(tb testing.TB, srv *sftest.Server, object, field string, hidden bool) {
	tb.Helper()
	if err := srv.SetFieldHidden(sam, object, field, hidden); err != nil {
		tb.Fatal(err)
	}
}

// objectInfo is the part of the UI API's object info the tests read.
type objectInfo struct {
	APIName    string   `json:"apiName"`
	ETag       string   `json:"eTag"`
	NameFields []string `json:"nameFields"`
	Fields     map[string]struct {
		APIName          string  `json:"apiName"`
		DataType         string  `json:"dataType"`
		Label            string  `json:"label"`
		RelationshipName *string `json:"relationshipName"`
		ReferenceToInfos []struct {
			APIName    string   `json:"apiName"`
			NameFields []string `json:"nameFields"`
		} `json:"referenceToInfos"`
	} `json:"fields"`
}

func mustObjectInfo(tb testing.TB, srv *sftest.Server, token, object string) (objectInfo, []byte) {
	tb.Helper()
	status, body := restStatus(tb, srv, token, "/services/data/v62.0/ui-api/object-info/"+object)
	var info objectInfo
	if err := json.Unmarshal(body, &info); status != http.StatusOK || err != nil {
		tb.Fatalf("object info of %s: %d %s (%v)", object, status, body, err)
	}
	return info, body
}

func fieldNames(info objectInfo) []string {
	var names []string
	for k, f := range info.Fields {
		if k != f.APIName {
			names = append(names, "key "+k+" names "+f.APIName)
		}
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// Object info lists only the fields the user may read, in the recorded
// shape, and changes when field-level security does.
func TestObjectInfoFollowsFieldLevelSecurity(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	jane, sam := mustToken(t, srv, jane), mustToken(t, srv, sam)
	tests := []struct {
		token, object string
		want          []string
	}{
		{jane, "Opportunity", []string{"AccountId", "Amount", "CloseDate", "Id", "Name", "OwnerId", "StageName"}},
		{sam, "Opportunity", []string{"AccountId", "CloseDate", "Id", "Name", "OwnerId", "StageName"}},
		{jane, "Contact", []string{"AccountId", "Email", "FirstName", "Id", "LastName", "Name", "OwnerId", "Phone", "Title"}},
		{sam, "contact", []string{"AccountId", "Email", "FirstName", "Id", "LastName", "Name", "OwnerId", "Title"}},
		{sam, "Account", []string{"BillingCity", "Id", "Industry", "Name", "OwnerId", "Phone", "Type"}},
	}
	for _, tt := range tests {
		info, _ := mustObjectInfo(t, srv, tt.token, tt.object)
		if diff := cmp.Diff(tt.want, fieldNames(info)); diff != "" {
			t.Errorf("%s fields mismatch (-want +got):\n%s", tt.object, diff)
		}
	}

	info, body := mustObjectInfo(t, srv, jane, "Contact")
	acct := info.Fields["AccountId"]
	if acct.DataType != "Reference" || acct.RelationshipName == nil || *acct.RelationshipName != "Account" ||
		len(acct.ReferenceToInfos) != 1 || acct.ReferenceToInfos[0].APIName != "Account" || !slices.Equal(acct.ReferenceToInfos[0].NameFields, []string{"Name"}) {
		t.Errorf("Contact.AccountId = %+v, want a Reference to Account named by Name", acct)
	}
	if got := info.Fields["Phone"]; got.DataType != "Phone" || got.Label != "Business Phone" || got.RelationshipName != nil {
		t.Errorf("Contact.Phone = %+v", got)
	}
	if len(info.ETag) != 32 || info.APIName != "Contact" || !slices.Equal(info.NameFields, []string{"FirstName", "LastName", "Name"}) {
		t.Errorf("object info: apiName %q eTag %q nameFields %v", info.APIName, info.ETag, info.NameFields)
	}
	if keys := objectKeys(t, body); !slices.IsSorted(keys) || !slices.Contains(keys, "recordTypeInfos") {
		t.Errorf("top-level keys not alphabetical: %v", keys)
	}
	var raw struct{ Fields map[string]json.RawMessage }
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	if keys := objectKeys(t, raw.Fields["Phone"]); !slices.IsSorted(keys) || len(keys) < 20 {
		t.Errorf("field keys not alphabetical: %v", keys)
	}

	before, _ := mustObjectInfo(t, srv, sam, "Account")
	mustSetHidden(t, srv, "Account", "Industry", true)
	after, _ := mustObjectInfo(t, srv, sam, "Account")
	if _, ok := after.Fields["Industry"]; ok || after.ETag == before.ETag {
		t.Errorf("after hiding Account.Industry: fields %v, eTag %s (was %s)", fieldNames(after), after.ETag, before.ETag)
	}
	mustSetHidden(t, srv, "Account", "Industry", false)
	if again, _ := mustObjectInfo(t, srv, sam, "Account"); again.ETag != before.ETag {
		t.Errorf("eTag %s after showing Industry again, want %s", again.ETag, before.ETag)
	}

	status, body := restStatus(t, srv, sam, "/services/data/v62.0/ui-api/object-info/Widget__c")
	if want := `[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]`; status != http.StatusNotFound || string(body) != want {
		t.Errorf("unknown object: %d %s, want 404 %s", status, body, want)
	}
	if status, _ := restStatus(t, srv, "not-a-token", "/services/data/v62.0/ui-api/object-info/Account"); status != http.StatusUnauthorized {
		t.Errorf("object info without a session: %d, want 401", status)
	}
	if n := srv.Calls(sftest.EndpointObjectInfo); n != 11 {
		t.Errorf("%d object info calls counted, want 11", n)
	}
}

// objectKeys lists the keys of a JSON object in the order they were sent.
func objectKeys(tb testing.TB, data []byte) []string {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		tb.Fatalf("not an object: %s", data)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			tb.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			tb.Fatal(err)
		}
	}
	return keys
}

// A record read leaves out what the user may not see, without an error.
func TestSObjectOmitsHiddenFields(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	const path = "/services/data/v62.0/sobjects/Opportunity/0065g00000Opp4AAAR" // sam's own
	for _, tt := range []struct {
		user       string
		wantAmount bool
	}{{jane, true}, {sam, false}} {
		status, body := restStatus(t, srv, mustToken(t, srv, tt.user), path)
		var rec map[string]any
		if err := json.Unmarshal(body, &rec); err != nil || status != http.StatusOK {
			t.Fatalf("%s: %d %s", tt.user, status, body)
		}
		if _, got := rec["Amount"]; got != tt.wantAmount || rec["Name"] != "Müller Renewal 2026" {
			t.Errorf("%s read %v; want Amount there: %v", tt.user, rec, tt.wantAmount)
		}
	}
}

func TestSetFieldHiddenRefusals(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	tests := []struct{ user, object, field string }{
		{"nobody@acme.example", "Account", "Phone"},
		{sam, "Widget__c", "Phone"},
		{sam, "Account", "Password"},
		{sam, "Account", "Id"},
		{sam, "Account", "name"},
		{sam, "Case", "CaseNumber"},
	}
	for _, tt := range tests {
		if err := srv.SetFieldHidden(tt.user, tt.object, tt.field, true); err == nil {
			t.Errorf("SetFieldHidden(%s, %s.%s) succeeded", tt.user, tt.object, tt.field)
		}
	}
	if err := srv.SetFieldHidden(sam, "case", "subject", true); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range srv.Users() {
		got = append(got, u.Username+": "+strings.Join(u.HiddenFields, " "))
	}
	want := []string{"jane@acme.example: ", "sam@acme.example: Case.Subject Contact.Phone Opportunity.Amount"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hidden fields mismatch (-want +got):\n%s", diff)
	}
}

// Each of the fake's three sharing models, with a third user added to the
// fixtures who sees public records and their own.
func TestSharingModels(t *testing.T) {
	var f map[string]any
	if err := json.Unmarshal(sftest.DefaultFixtures(), &f); err != nil {
		t.Fatal(err)
	}
	f["users"] = append(f["users"].([]any), map[string]any{"id": "0055g00000PatsAAAR", "username": "pat@acme.example"})
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	srv := mustServer(t, sftest.Options{Fixtures: data})
	tests := []struct {
		user string
		want []string
	}{
		{jane, []string{"Acme Corporation", "Acme Labs GmbH", "Globex Inc.", "Initech", "Müller & Söhne KG", "Wayne Enterprises", "株式会社サクラ"}},
		{sam, []string{"Acme Labs GmbH", "Müller & Söhne KG"}},
		{"pat@acme.example", []string{"Acme Corporation", "Acme Labs GmbH", "Initech", "Müller & Söhne KG", "株式会社サクラ"}},
	}
	for _, tt := range tests {
		status, body := restStatus(t, srv, mustToken(t, srv, tt.user), "/services/data/v62.0/query?q="+url.QueryEscape("SELECT Name FROM Account ORDER BY Name"))
		var ans queryAnswer
		if err := json.Unmarshal(body, &ans); err != nil || status != http.StatusOK {
			t.Fatalf("%s: %d %s", tt.user, status, body)
		}
		var got []string
		for _, r := range ans.Records {
			got = append(got, r.Name)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s's accounts mismatch (-want +got):\n%s", tt.user, diff)
		}
	}
}

// Fixtures that hide what cannot be hidden, or what does not exist, are
// refused when the fake starts.
func TestFixturesHiddenFieldsChecked(t *testing.T) {
	for _, hidden := range []string{"Opportunity.Amunt", "Widget__c.Name", "Account.Name", "Lead.Id", "Amount"} {
		t.Run(hidden, func(t *testing.T) {
			var f map[string]any
			if err := json.Unmarshal(sftest.DefaultFixtures(), &f); err != nil {
				t.Fatal(err)
			}
			f["users"].([]any)[1].(map[string]any)["hidden_fields"] = []string{hidden}
			data, _ := json.Marshal(f)
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "sam@acme.example") {
					t.Errorf("NewServer with hidden field %q: panic %v, want one naming sam", hidden, r)
				}
			}()
			sftest.NewServer(sftest.Options{Fixtures: data}).Close()
		})
	}
}
