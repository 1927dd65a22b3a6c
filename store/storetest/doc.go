// Package storetest is the contract of a binding store, written once as a
// conformance suite that every backend's tests run:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Opener {
//			path := filepath.Join(t.TempDir(), "forcebind.db")
//			return func(cfg storetest.Config) (storetest.Backend, error) {
//				db, err := bolt.Open(path, bolt.Options{Keyring: cfg.Keyring, Now: cfg.Now, AllowMissingKeys: cfg.AllowMissingKeys})
//				if err != nil {
//					return nil, err // not a typed nil in the interface
//				}
//				return db, nil
//			}
//		})
//	}
//
// [Backend] lists the methods a backend must have; [Run] checks what they
// do: bindings and their compare-and-swap updates and deletes, pending
// links (one live link per person, a state that redeems once, expiry and
// the sweep that hands back tokens to revoke), key rotation and the key
// check at open, and that every method honours its context. The suite
// sees a store only through Backend and package store, so a backend on
// PostgreSQL passes it as bbolt does; the clock is injected through
// [Config], so expiry needs no waiting.
//
// The exported helpers (Key, Ring, Clock, SampleBinding, SamplePending,
// AssertNoKeyMaterial) are for a backend's own tests of what the suite
// cannot see, such as damaged files. storetest imports only package store;
// it is for tests and never linked into forcebind.
package storetest
