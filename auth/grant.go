package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/forcebind/forcebind/salesforce"
)

// grant is what forcebind takes from a Salesforce token response, checked.
type grant struct {
	instanceURL string
	idURL       string
	orgID       string
	userID      string
	issuedAt    time.Time
	scopes      []string
}

// errBadSignature is returned when a token response's signature does not
// match HMAC-SHA256(client secret, id + issued_at).
var errBadSignature = errors.New("token response signature does not verify")

// checkGrant verifies a token response from org: its signature when org
// has a client secret, that instance_url and id may receive org's tokens,
// and that id names an org and a user.
func checkGrant(org Org, tok *oauth2.Token) (grant, error) {
	str := func(k string) string { v, _ := tok.Extra(k).(string); return v }
	g := grant{instanceURL: str("instance_url"), idURL: str("id"), scopes: strings.Fields(str("scope"))}
	issued := str("issued_at")
	if tok.AccessToken == "" || g.instanceURL == "" || g.idURL == "" || issued == "" {
		return grant{}, errors.New("token response lacks access_token, instance_url, id or issued_at")
	}
	if org.ClientSecret != "" && !verifySignature(org.ClientSecret, g.idURL, issued, str("signature")) {
		return grant{}, errBadSignature
	}
	ms, err := strconv.ParseInt(issued, 10, 64)
	if err != nil {
		return grant{}, fmt.Errorf("token response issued_at %q is not a number", issued)
	}
	g.issuedAt = time.UnixMilli(ms).UTC()
	inst, err := checkTokenURL(g.instanceURL, org.LoginURL)
	if err != nil {
		return grant{}, fmt.Errorf("instance_url: %w", err)
	}
	g.instanceURL = strings.TrimSuffix(inst.Scheme+"://"+inst.Host+inst.Path, "/")
	id, err := checkTokenURL(g.idURL, org.LoginURL)
	if err != nil {
		return grant{}, fmt.Errorf("id: %w", err)
	}
	g.orgID, g.userID, err = parseIdentityPath(id)
	if err != nil {
		return grant{}, err
	}
	return g, nil
}

// verifySignature checks Salesforce's token response signature,
// Base64(HMAC-SHA256(secret, id + issued_at)), in constant time.
func verifySignature(secret, id, issuedAt, signature string) bool {
	got, err := base64.StdEncoding.DecodeString(signature)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(id + issuedAt))
	return hmac.Equal(got, mac.Sum(nil))
}

// parseIdentityPath reads org and user ids from an identity URL's path,
// /id/{orgId}/{userId}.
func parseIdentityPath(u *url.URL) (org, user string, err error) {
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 3 || parts[0] != "id" || !isID(parts[1], "00D") || !isID(parts[2], "005") {
		return "", "", fmt.Errorf("identity URL path %q is not /id/{orgId}/{userId}", u.Path)
	}
	return parts[1], parts[2], nil
}

// isID reports whether s is a valid Salesforce id (checksum included) of
// the object whose key prefix is prefix ("00D" org, "005" user).
func isID(s, prefix string) bool {
	return strings.HasPrefix(s, prefix) && salesforce.ValidID(s)
}
