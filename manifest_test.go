package main

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/forcebind/forcebind/bot"
	"github.com/forcebind/forcebind/bot/slacktest"
)

// yamlList returns the items of the block list under the nested keys path,
// e.g. ["oauth_config", "scopes", "bot"]. It reads only the plain subset of
// YAML the manifest uses.
func yamlList(t *testing.T, file string, path ...string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	depth, indent := 0, -1
	var items []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		ind := len(line) - len(strings.TrimLeft(line, " "))
		if depth == len(path) {
			if ind > indent && strings.HasPrefix(trimmed, "- ") {
				items = append(items, strings.TrimSpace(strings.TrimPrefix(trimmed, "- ")))
				continue
			}
			break
		}
		if trimmed == path[depth]+":" && ind > indent {
			depth, indent = depth+1, ind
		}
	}
	slices.Sort(items)
	return items
}

func TestManifestMatchesCode(t *testing.T) {
	want := bot.Scopes()
	slices.Sort(want)
	if diff := cmp.Diff(want, yamlList(t, "slack-app-manifest.yaml", "oauth_config", "scopes", "bot")); diff != "" {
		t.Errorf("manifest bot scopes mismatch (-code +manifest):\n%s", diff)
	}
	fake := slacktest.DefaultScopes()
	slices.Sort(fake)
	if diff := cmp.Diff(want, fake); diff != "" {
		t.Errorf("slacktest.DefaultScopes mismatch (-code +fake):\n%s", diff)
	}
	events := bot.Events()
	slices.Sort(events)
	if diff := cmp.Diff(events, yamlList(t, "slack-app-manifest.yaml", "settings", "event_subscriptions", "bot_events")); diff != "" {
		t.Errorf("manifest bot events mismatch (-code +manifest):\n%s", diff)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(want, events...) {
		if !strings.Contains(string(readme), "`"+s+"`") {
			t.Errorf("README does not list %s", s)
		}
	}
}
