// Package account is the binding flow's vocabulary without its tokens: who
// asks (Requester), the link they are sent (Link), the Salesforce account
// they linked (Account), how an unlink ended (Unlinked), why a link or a
// binding ended (Failure, RelinkReason), how the flow reaches the person
// (Notifier), and the errors a caller matches.
//
// Package auth implements the flow and re-exports these names; package bot
// speaks only this package. It imports no other package of forcebind, so
// nothing that depends on it alone can reach a binding store or a token:
// "tokens never reach Slack" is a property of the types the bot is given,
// not of redaction.
package account
