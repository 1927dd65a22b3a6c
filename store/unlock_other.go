//go:build !unix

package store

import "os"

// forceUnlock is a no-op where bbolt's lock is not a flock; closing the
// file releases it.
func forceUnlock(*os.File) {}
