//go:build !windows && !plan9 && !solaris && !aix && !android

package bolt

import (
	"errors"
	"os"
	"syscall"
)

// These are the platforms where bbolt locks the file with flock(2); the
// build constraint is bbolt's own.

// tryLock takes the flock bbolt would take on f, without waiting: shared
// for a read-only open, exclusive otherwise. It reports false when another
// open file holds a conflicting lock.
func tryLock(f *os.File, readOnly bool) (bool, error) {
	how := syscall.LOCK_EX
	if readOnly {
		how = syscall.LOCK_SH
	}
	err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		return false, nil
	default:
		return false, err
	}
}

// forceUnlock releases bbolt's flock on f explicitly. Closing f alone is not
// enough after bbolt has mapped the file: the mapping keeps the open file
// description, and with it the lock, alive.
func forceUnlock(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
