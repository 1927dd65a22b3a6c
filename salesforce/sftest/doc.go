// Package sftest runs a fake Salesforce org over HTTP for tests and the
// demo, in the manner of net/http/httptest: [NewServer] listens on
// 127.0.0.1:0, exposes URL, and [Server.Close] waits for requests in flight.
//
// The fake speaks Salesforce's wire formats: the OAuth 2.0 web server flow
// with PKCE (authorize with a small login page, token with
// authorization_code and refresh_token grants, revoke, the identity URL and
// userinfo), the device flow, and the REST API under /services/data/vNN.N/
// (query with nextRecordsUrl paging, SOSL search, sobjects reads, and the
// UI API's object info, one object at a time or in a batch), with
// Salesforce's error arrays and the Sforce-Limit-Info header.
//
// The device flow is Salesforce's, not RFC 8628's endpoints: a device code
// is asked for at the token endpoint with response_type=device_code and
// client_id (no secret), and answered with device_code, user_code,
// verification_uri (URL/setup/connect, a small page to type the code at)
// and interval, without expires_in; codes work for [DeviceCodeLife]. Polls
// go to the token endpoint with grant_type=device, client_id, the secret
// when one is configured, and code. They answer 400 with
// authorization_pending while the code waits, slow_down (see
// [Server.SlowDownNext] and [Server.EnforceInterval]), access_denied once
// denied, expired_token once expired, and invalid_grant for an unknown or
// already redeemed code; an approved code answers the same signed token
// response as the web server flow, once. With the device flow turned off
// for the connected app ([Server.SetDeviceFlow]), requests and polls answer
// 400 invalid_request. Knobs play the person at the verification page
// ([Server.ApproveDevice], [Server.DenyDevice]), expire codes
// ([Server.ExpireDevice]) and list the codes waiting
// ([Server.PendingUserCodes]).
//
// Data comes from a fixture file (testdata/org.json, embedded): one org, two
// users and a handful of accounts, contacts, opportunities, leads and cases.
// Records have an owner and may be private. jane@acme.example has "view
// all" and sees everything; sam@acme.example sees only the records he owns
// (own_records_only), and a user with neither flag sees public records and
// their own, so users see different data.
//
// Field-level security is modelled too. A user's hidden_fields (sam's
// profile hides Opportunity.Amount and Contact.Phone; [Server.SetFieldHidden]
// changes them at run time) do not exist for that user, as in a real org:
// object info leaves them out, a record read omits them, and a query or a
// search that names one anywhere (select list, WHERE, ORDER BY, RETURNING,
// a relationship path) is refused whole with 400
// [{"message":"No such column 'Amount' on entity 'Opportunity'. …","errorCode":"INVALID_FIELD"}].
// So is object access: a user's denied_objects ([Server.SetObjectDenied]
// at run time) get 403 from object info, and 400 INVALID_TYPE from a
// query or a search that names them.
//
// Knobs on [Server] let tests expire or revoke tokens, turn on refresh-token
// rotation, rewrite token answers (a new instance_url, another user), add
// latency to every endpoint or to one, inject failures (whose bodies may
// echo the request's bearer token, [Bearer]), run a function while a
// request is in flight ([Server.BeforeAnswer]), change a user's email or
// whether it is verified, count calls per [Endpoint] and per host, count
// the refresh tokens still live, and list every token issued.
// [Server.Route] plays DNS for real-looking hosts, such as an org's new
// instance on a Salesforce domain. All methods are safe for concurrent use.
package sftest
