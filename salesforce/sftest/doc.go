// Package sftest runs a fake Salesforce org over HTTP for tests and the
// demo, in the manner of net/http/httptest: [NewServer] listens on
// 127.0.0.1:0, exposes URL, and [Server.Close] waits for requests in flight.
//
// The fake speaks Salesforce's wire formats: the OAuth 2.0 web server flow
// with PKCE (authorize with a small login page, token with
// authorization_code and refresh_token grants, revoke, the identity URL and
// userinfo), and the REST API under /services/data/vNN.N/ (query with
// nextRecordsUrl paging, SOSL search, sobjects reads), with Salesforce's
// error arrays and the Sforce-Limit-Info header.
//
// Data comes from a fixture file (testdata/org.json, embedded): one org, two
// users and a handful of accounts, contacts, opportunities, leads and cases.
// Records have an owner and may be private; a user without "view all" sees
// public records and the ones they own, so two users see different data.
//
// Knobs on [Server] let tests expire or revoke tokens, turn on refresh-token
// rotation, add latency, inject failures, count calls per [Endpoint] and list
// every token issued. All methods are safe for concurrent use.
package sftest
