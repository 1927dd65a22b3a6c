//go:build windows || plan9 || solaris || aix || android

package bolt

import "os"

// tryLock reports true without locking where bbolt's lock is not a flock:
// Open then leaves the waiting to bbolt, as it did before it probed.
func tryLock(*os.File, bool) (bool, error) { return true, nil }

// forceUnlock is a no-op where bbolt's lock is not a flock; closing the
// file releases it.
func forceUnlock(*os.File) {}
