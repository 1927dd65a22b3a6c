//go:build unix

package store

import (
	"os"
	"syscall"
)

// forceUnlock releases bbolt's flock on f explicitly. Closing f alone is not
// enough after bbolt has mapped the file: the mapping keeps the open file
// description, and with it the lock, alive.
func forceUnlock(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
