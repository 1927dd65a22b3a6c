package postgres

import (
	"context"
	"os"
	"testing"

	"github.com/forcebind/forcebind/store/postgres/pgtest"
	"github.com/forcebind/forcebind/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestConformance runs the contract every backend keeps, each case on a
// new database of the test run's server.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		url := pgtest.Database(t)
		return func(cfg storetest.Config) (storetest.Backend, error) {
			db, err := Open(context.Background(), url, Options{Keyring: cfg.Keyring, Now: cfg.Now, AllowMissingKeys: cfg.AllowMissingKeys})
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			return db, nil
		}
	})
}
