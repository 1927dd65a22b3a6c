package sftest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/google/go-cmp/cmp"
)

type queryAnswer struct {
	TotalSize      int    `json:"totalSize"`
	Done           bool   `json:"done"`
	NextRecordsURL string `json:"nextRecordsUrl"`
	Records        []struct {
		Attributes struct {
			Type string `json:"type"`
			URL  string `json:"url"`
		} `json:"attributes"`
		Name       string `json:"Name"`
		CaseNumber string `json:"CaseNumber"`
		Account    *struct {
			Name string `json:"Name"`
		} `json:"Account"`
	} `json:"records"`
}

type apiErrors []struct {
	Message   string `json:"message"`
	ErrorCode string `json:"errorCode"`
}

func mustToken(tb testing.TB, srv *sftest.Server, username string) string {
	tb.Helper()
	g, err := srv.Login(username)
	if err != nil {
		tb.Fatal(err)
	}
	return g.AccessToken
}

func TestQuerySubset(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	token := mustToken(t, srv, jane)
	tests := []struct {
		name     string
		soql     string
		want     []string // names, in order
		wantCode string
	}{
		{name: "like", soql: `SELECT Id, Name FROM Account WHERE Name LIKE '%acme%' ORDER BY Name`, want: []string{"Acme Corporation", "Acme Labs GmbH"}},
		{name: "escaped quote", soql: `SELECT Name FROM Contact WHERE Name LIKE '%O\'Brien%'`, want: []string{"Siobhán O'Brien"}},
		{name: "quote ends injection attempt", soql: `SELECT Name FROM Account WHERE Name LIKE '%\' OR Name LIKE \'\%%'`, want: nil},
		{name: "unescaped injection works", soql: `SELECT Name FROM Account WHERE Name LIKE '%' OR Name LIKE '%%' ORDER BY Name LIMIT 2`, want: []string{"Acme Corporation", "Acme Labs GmbH"}},
		{name: "escaped percent is literal", soql: `SELECT Name FROM Account WHERE Name LIKE '%\%%'`, want: nil},
		{name: "escaped underscore is literal", soql: `SELECT Name FROM Account WHERE Name LIKE '%\_%'`, want: nil},
		{name: "underscore wildcard", soql: `SELECT Name FROM Account WHERE Name LIKE 'initec_'`, want: []string{"Initech"}},
		{name: "equals ignores case", soql: `SELECT Name FROM Account WHERE Name = 'INITECH'`, want: []string{"Initech"}},
		{name: "unicode fold", soql: `SELECT Name FROM Account WHERE Name LIKE '%MÜLLER%'`, want: []string{"Müller & Söhne KG"}},
		{name: "unicode escape", soql: `SELECT Name FROM Account WHERE Name LIKE '%m\u00fcller%'`, want: []string{"Müller & Söhne KG"}},
		{name: "or and order desc limit", soql: `SELECT Name FROM Account WHERE Name LIKE 'Acme%' OR Name = 'Initech' ORDER BY Name DESC LIMIT 2`, want: []string{"Initech", "Acme Labs GmbH"}},
		{name: "and not", soql: `SELECT Name FROM Account WHERE Name LIKE 'Acme%' AND NOT Name LIKE '%Labs%'`, want: []string{"Acme Corporation"}},
		{name: "relationship filter", soql: `SELECT Name, Account.Name FROM Contact WHERE Account.Name = 'Acme Corporation' ORDER BY Name`, want: []string{"John Smith", "Siobhán O'Brien"}},
		{name: "case by number", soql: `SELECT CaseNumber FROM Case WHERE Subject LIKE '%rechnung%' OR CaseNumber LIKE '%rechnung%'`, want: []string{"00001003"}},
		{name: "unterminated literal", soql: `SELECT Name FROM Account WHERE Name LIKE '%acme`, wantCode: "MALFORMED_QUERY"},
		{name: "bad escape", soql: `SELECT Name FROM Account WHERE Name LIKE '\q'`, wantCode: "MALFORMED_QUERY"},
		{name: "like escape outside like", soql: `SELECT Name FROM Account WHERE Name = '\%'`, wantCode: "MALFORMED_QUERY"},
		{name: "dangling or", soql: `SELECT Name FROM Account WHERE Name = 'x' OR`, wantCode: "MALFORMED_QUERY"},
		{name: "trailing junk", soql: `SELECT Name FROM Account LIMIT 1 garbage`, wantCode: "MALFORMED_QUERY"},
		{name: "unknown field", soql: `SELECT Password FROM Account`, wantCode: "INVALID_FIELD"},
		{name: "unknown object", soql: `SELECT Name FROM User`, wantCode: "INVALID_TYPE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := restStatus(t, srv, token, "/services/data/v62.0/query?q="+url.QueryEscape(tt.soql))
			if tt.wantCode != "" {
				var errs apiErrors
				if err := json.Unmarshal(body, &errs); err != nil || status != http.StatusBadRequest || len(errs) != 1 || errs[0].ErrorCode != tt.wantCode {
					t.Fatalf("got %d %s, want 400 %s", status, body, tt.wantCode)
				}
				return
			}
			if status != http.StatusOK {
				t.Fatalf("got %d %s", status, body)
			}
			var ans queryAnswer
			if err := json.Unmarshal(body, &ans); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range ans.Records {
				got = append(got, r.Name+r.CaseNumber)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("records mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestQueryPagingAndSharing(t *testing.T) {
	srv := mustServer(t, sftest.Options{PageSize: 2})
	tests := []struct {
		user      string
		wantNames []string
		wantPages int
	}{
		{user: jane, wantPages: 4, wantNames: []string{"Acme Corporation", "Acme Labs GmbH", "Globex Inc.", "Initech", "Müller & Söhne KG", "Wayne Enterprises", "株式会社サクラ"}},
		{user: sam, wantPages: 1, wantNames: []string{"Acme Labs GmbH", "Müller & Söhne KG"}}, // his own only
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			token := mustToken(t, srv, tt.user)
			path := "/services/data/v62.0/query?q=" + url.QueryEscape("SELECT Name FROM Account ORDER BY Name")
			var got []string
			pages := 0
			for path != "" {
				status, body := restStatus(t, srv, token, path)
				if status != http.StatusOK {
					t.Fatalf("page %d: %d %s", pages, status, body)
				}
				var ans queryAnswer
				if err := json.Unmarshal(body, &ans); err != nil {
					t.Fatal(err)
				}
				if ans.TotalSize != len(tt.wantNames) || ans.Done == (ans.NextRecordsURL != "") {
					t.Fatalf("page %d: totalSize %d done %v next %q", pages, ans.TotalSize, ans.Done, ans.NextRecordsURL)
				}
				for _, r := range ans.Records {
					got = append(got, r.Name)
				}
				path = ans.NextRecordsURL
				pages++
			}
			if diff := cmp.Diff(tt.wantNames, got); diff != "" {
				t.Errorf("names mismatch (-want +got):\n%s", diff)
			}
			if pages != tt.wantPages {
				t.Errorf("pages = %d, want %d", pages, tt.wantPages)
			}
		})
	}

	t.Run("locator belongs to its user", func(t *testing.T) {
		status, body := restStatus(t, srv, mustToken(t, srv, jane), "/services/data/v62.0/query?q="+url.QueryEscape("SELECT Name FROM Account"))
		var ans queryAnswer
		if err := json.Unmarshal(body, &ans); err != nil || status != http.StatusOK || ans.NextRecordsURL == "" {
			t.Fatalf("first page: %d %s", status, body)
		}
		status, body = restStatus(t, srv, mustToken(t, srv, sam), ans.NextRecordsURL)
		if status != http.StatusBadRequest {
			t.Errorf("sam reading jane's cursor: %d %s, want 400 INVALID_QUERY_LOCATOR", status, body)
		}
	})
}

func TestSearchAndSObject(t *testing.T) {
	srv := mustServer(t, sftest.Options{})
	tests := []struct {
		name     string
		user     string
		sosl     string
		want     []string
		wantCode string
	}{
		{name: "two words", user: jane, sosl: `FIND {acme labs} IN NAME FIELDS RETURNING Account(Id, Name), Lead(Id, Name)`, want: []string{"Account:Acme Labs GmbH", "Lead:Dana O'Neil"}},
		{name: "escaped apostrophe", user: jane, sosl: `FIND {o\'brien} RETURNING Contact(Name)`, want: []string{"Contact:Siobhán O'Brien"}},
		{name: "escaped brace is literal", user: jane, sosl: `FIND {acme\}} RETURNING Account(Name)`, want: nil},
		{name: "escaped star is literal", user: jane, sosl: `FIND {acm\*} RETURNING Account(Name)`, want: nil},
		{name: "wildcard star", user: jane, sosl: `FIND {glob*} RETURNING Account(Name)`, want: []string{"Account:Globex Inc."}},
		{name: "sharing hides private", user: sam, sosl: `FIND {glob*} RETURNING Account(Name)`, want: nil},
		{name: "case subject", user: jane, sosl: `FIND {damaged} RETURNING Case(CaseNumber, Subject)`, want: []string{"Case:"}},
		{name: "limit", user: jane, sosl: `FIND {acme} RETURNING Account(Name), Opportunity(Name) LIMIT 1`, want: []string{"Account:Acme Corporation"}},
		{name: "unbalanced brace", user: jane, sosl: `FIND {acme} OR Name}`, wantCode: "MALFORMED_SEARCH"},
		{name: "too short", user: jane, sosl: `FIND {a*}`, wantCode: "INVALID_SEARCH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := restStatus(t, srv, mustToken(t, srv, tt.user), "/services/data/v62.0/search?q="+url.QueryEscape(tt.sosl))
			if tt.wantCode != "" {
				var errs apiErrors
				if err := json.Unmarshal(body, &errs); err != nil || status != http.StatusBadRequest || len(errs) != 1 || errs[0].ErrorCode != tt.wantCode {
					t.Fatalf("got %d %s, want 400 %s", status, body, tt.wantCode)
				}
				return
			}
			var ans struct {
				SearchRecords []struct {
					Attributes struct{ Type string } `json:"attributes"`
					Name       string
				} `json:"searchRecords"`
			}
			if err := json.Unmarshal(body, &ans); err != nil || status != http.StatusOK {
				t.Fatalf("got %d %s (%v)", status, body, err)
			}
			var got []string
			for _, r := range ans.SearchRecords {
				got = append(got, r.Attributes.Type+":"+r.Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("hits mismatch (-want +got):\n%s", diff)
			}
		})
	}

	sobjects := []struct {
		name, user, path string
		wantStatus       int
	}{
		{name: "18-char id", user: sam, path: "/services/data/v62.0/sobjects/Account/0015g00000AcLbAAAV", wantStatus: http.StatusOK},
		{name: "15-char id", user: sam, path: "/services/data/v62.0/sobjects/Account/0015g00000AcLbA", wantStatus: http.StatusOK},
		{name: "private to sam", user: sam, path: "/services/data/v62.0/sobjects/Account/0015g00000GlbxAAAR", wantStatus: http.StatusNotFound},
		{name: "another's record, for sam", user: sam, path: "/services/data/v62.0/sobjects/Account/0015g00000AcmeAAAR", wantStatus: http.StatusNotFound},
		{name: "private seen by admin", user: jane, path: "/services/data/v62.0/sobjects/Account/0015g00000GlbxAAAR", wantStatus: http.StatusOK},
		{name: "bad version", user: jane, path: "/services/data/62/sobjects/Account/0015g00000AcmeAAAR", wantStatus: http.StatusNotFound},
	}
	for _, tt := range sobjects {
		t.Run(tt.name, func(t *testing.T) {
			if status, body := restStatus(t, srv, mustToken(t, srv, tt.user), tt.path); status != tt.wantStatus {
				t.Errorf("GET %s = %d %s, want %d", tt.path, status, body, tt.wantStatus)
			}
		})
	}
}
