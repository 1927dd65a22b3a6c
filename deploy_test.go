package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The deploy files cannot be exercised here (no systemd, no Docker engine),
// so these tests hold them to what the code does: the exit codes, the drain
// time, the version variable, the Go version.

// unitFile reads a systemd unit into section → key → values, in order. It
// joins continued lines and drops comments, as systemd does.
func unitFile(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	unit := make(map[string]map[string][]string)
	section := ""
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			unit[section] = make(map[string][]string)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: not a setting: %q", path, line)
			}
			unit[section][k] = append(unit[section][k], v)
		}
	}
	return unit
}

func TestDeployUnit(t *testing.T) {
	unit := unitFile(t, filepath.Join("deploy", "forcebind.service"))
	svc := unit["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}
	// one returns the single value of key.
	one := func(key string) string {
		t.Helper()
		if len(svc[key]) != 1 {
			t.Errorf("%s set %d times, want once: %q", key, len(svc[key]), svc[key])
			return ""
		}
		return svc[key][0]
	}

	want := map[string]string{
		"Type":                    "simple",
		"DynamicUser":             "yes",
		"StateDirectory":          "forcebind",
		"WorkingDirectory":        "%S/forcebind",
		"UMask":                   "0077",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"RestrictNamespaces":      "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallFilter":        "@system-service",
		"CapabilityBoundingSet":   "",
		"Restart":                 "on-failure",
		"KillSignal":              "SIGTERM",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
	}
	got := make(map[string]string)
	for k := range want {
		got[k] = one(k)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("unit settings mismatch (-want +got):\n%s", diff)
	}

	// Settings come from the environment forcebind reads; secrets never
	// from Environment= lines, which `systemctl show` prints.
	env := make(map[string]string)
	for _, e := range svc["Environment"] {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	if env["FORCEBIND_DB"] != "%S/forcebind/forcebind.db" {
		t.Errorf("FORCEBIND_DB = %q, want the state directory", env["FORCEBIND_DB"])
	}
	if env["FORCEBIND_KEY_FILE"] == "" {
		t.Error("FORCEBIND_KEY_FILE is not set")
	}
	for _, secret := range []string{"SLACK_APP_TOKEN", "SLACK_BOT_TOKEN", "SALESFORCE_CLIENT_SECRET", "FORCEBIND_KEY"} {
		if _, ok := env[secret]; ok {
			t.Errorf("%s in an Environment= line", secret)
		}
	}
	var creds []string
	for _, c := range svc["LoadCredential"] {
		id, _, _ := strings.Cut(c, ":")
		creds = append(creds, id)
	}
	if diff := cmp.Diff([]string{"forcebind.key", "slack-app-token", "slack-bot-token"}, creds); diff != "" {
		t.Errorf("credentials mismatch (-want +got):\n%s", diff)
	}
	// Each credential is read from its file: the tokens through *_FILE
	// variables, the key by the copy ExecStartPre makes.
	pre := one("ExecStartPre")
	for _, c := range creds {
		var used bool
		for _, v := range env {
			used = used || v == "%d/"+c
		}
		if !used && !strings.Contains(pre, "%d/"+c) {
			t.Errorf("nothing reads the credential %s", c)
		}
	}
	for _, v := range []string{"SLACK_APP_TOKEN_FILE", "SLACK_BOT_TOKEN_FILE"} {
		if !strings.HasPrefix(env[v], "%d/") {
			t.Errorf("%s = %q, want a credential", v, env[v])
		}
	}
	if !strings.Contains(pre, "umask 077") || !strings.Contains(pre, env["FORCEBIND_KEY_FILE"]) {
		t.Errorf("ExecStartPre does not copy the key to FORCEBIND_KEY_FILE as 0600: %s", pre)
	}
	// forcebind is the main process, so that SIGTERM and SIGHUP reach it.
	if start := one("ExecStart"); start != "/usr/local/bin/forcebind run" {
		t.Errorf("ExecStart = %q, want forcebind run itself", start)
	}

	// No restart when Slack refused the app; a restart on exit 2 is kept,
	// since a Go panic exits 2 too.
	prevent := strings.Fields(one("RestartPreventExitStatus"))
	if diff := cmp.Diff([]string{strconv.Itoa(exitRefused)}, prevent); diff != "" {
		t.Errorf("RestartPreventExitStatus mismatch (-want +got):\n%s", diff)
	}

	// The stop timeout covers the bot's drain (20s) and the refreshes
	// still running after it (30s).
	stop, err := time.ParseDuration(one("TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if stop <= 50*time.Second {
		t.Errorf("TimeoutStopSec %s leaves no room for a 20s drain and 30s of refreshes", stop)
	}
}

// ldflagsVersion finds the variable a -X flag sets.
var ldflagsVersion = regexp.MustCompile(`-X\s+([\w./]+)=`)

func TestDeployDockerfile(t *testing.T) {
	read := func(path string) string {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	docker, makefile, gomod := read(filepath.Join("deploy", "Dockerfile")), read("Makefile"), read("go.mod")

	// The image's version is stamped into the variable the Makefile stamps.
	var vars []string
	for _, text := range []string{makefile, docker} {
		m := ldflagsVersion.FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no -X flag in:\n%s", text)
		}
		vars = append(vars, m[1])
	}
	if diff := cmp.Diff([]string{"main.version", "main.version"}, vars); diff != "" {
		t.Errorf("-X variable mismatch, Makefile then Dockerfile (-want +got):\n%s", diff)
	}

	// The builder runs the Go that go.mod asks for.
	gover := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if gover == nil {
		t.Fatal("no go directive in go.mod")
	}
	if !strings.Contains(docker, "FROM golang:"+gover[1]+" ") {
		t.Errorf("the builder is not golang:%s", gover[1])
	}

	for _, line := range []string{
		"CGO_ENABLED=0 go build -trimpath",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER nonroot",
		"VOLUME /var/lib/forcebind",
		"ENV FORCEBIND_DB=/var/lib/forcebind/forcebind.db",
		"ENV FORCEBIND_LISTEN=0.0.0.0:8787",
		"EXPOSE 8787",
		`ENTRYPOINT ["/forcebind"]`,
		`CMD ["run"]`,
	} {
		if !strings.Contains(docker, line) {
			t.Errorf("the Dockerfile lacks %q", line)
		}
	}
}
