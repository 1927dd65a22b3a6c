package bot

// EmailScope is the scope without which Slack leaves the email out of a
// profile: FORCEBIND_REQUIRE_EMAIL_MATCH needs it, nothing else does.
const EmailScope = "users:read.email"

// Scopes returns the bot token scopes forcebind needs, each for a call it
// makes or an event it reads. slack-app-manifest.yaml must list exactly these.
func Scopes() []string {
	return []string{
		"app_mentions:read", // app_mention events
		"chat:write",        // chat.postMessage, chat.postEphemeral
		"commands",          // the /salesforce slash command
		"im:history",        // message.im events
		"im:read",           // DMs with the bot
		"im:write",          // opening a DM to send a link or a confirmation
		"users:read",        // users.info: the name on the confirmation page
		EmailScope,          // users.info: the profile email, for FORCEBIND_REQUIRE_EMAIL_MATCH
	}
}

// Events returns the bot events forcebind subscribes to.
func Events() []string {
	return []string{"app_mention", "message.im"}
}
