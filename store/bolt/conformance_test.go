package bolt

import (
	"path/filepath"
	"testing"

	"github.com/forcebind/forcebind/store/storetest"
)

// TestConformance runs the contract every backend keeps: bindings,
// pending links, the key check at open and rotation, each on a new file.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "forcebind.db")
		return func(cfg storetest.Config) (storetest.Backend, error) {
			db, err := Open(path, Options{Keyring: cfg.Keyring, Now: cfg.Now, AllowMissingKeys: cfg.AllowMissingKeys})
			if err != nil {
				return nil, err
			}
			return db, nil
		}
	})
}
