package bot

import (
	"go/build"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The bot never holds a token because it cannot reach one: neither it,
// its tests, nor anything they import depends on auth (which handles
// bindings) or on the store (which keeps them). What it knows of the
// binding flow comes from auth/account, which holds no token.
func TestBotReachesNoBindingStore(t *testing.T) {
	const module = "github.com/forcebind/forcebind"
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{} // package -> the import path that led to it
	var walk func(path string, via []string, tests bool)
	walk = func(path string, via []string, tests bool) {
		if _, ok := seen[path]; ok {
			return
		}
		seen[path] = via
		pkg, err := build.ImportDir(filepath.Join(root, strings.TrimPrefix(strings.TrimPrefix(path, module), "/")), 0)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		imports := pkg.Imports
		if tests {
			imports = append(append(imports, pkg.TestImports...), pkg.XTestImports...)
		}
		for _, imp := range imports {
			if imp == module || strings.HasPrefix(imp, module+"/") {
				walk(imp, append(slices.Clone(via), path), false)
			}
		}
	}
	walk(module+"/bot", nil, true)
	walk(module+"/bot/slacktest", nil, true)
	for path, via := range seen {
		rel := strings.TrimPrefix(path, module+"/")
		if rel == "auth" || rel == "store" || strings.HasPrefix(rel, "store/") {
			t.Errorf("the bot depends on %s, through %v", path, via)
		}
	}
	if _, ok := seen[module+"/auth/account"]; !ok {
		t.Errorf("the bot does not use auth/account; saw %v", seen)
	}
}
