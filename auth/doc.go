// Package auth binds a Slack user to their own Salesforce user and keeps that
// binding's tokens usable.
//
// The flow is Salesforce's OAuth 2.0 web server flow with PKCE (S256):
//
//  1. Start creates a pending link in the store (a 256-bit state, the PKCE
//     verifier, who asked, an expiry) and returns the authorize URL, which the
//     caller sends only to the person who asked.
//  2. The callback listener (Handler, served by Server) redeems the state once,
//     exchanges the code with the verifier, verifies the response signature
//     and instance URL, reads the identity, and shows a confirmation page
//     naming both the Salesforce user and the Slack user. Until the person
//     confirms, the tokens exist only sealed in the store.
//  3. Confirm stores the binding and tells the person through the Notifier;
//     Cancel revokes the fresh token.
//
// Afterwards Tokens supplies a binding's access token to the salesforce
// client and refreshes it on demand, once per user at a time, committing the
// new tokens to the store before they are used. Unlink revokes and deletes.
//
// Tokens never appear in logs, errors or pages produced by this package.
package auth
