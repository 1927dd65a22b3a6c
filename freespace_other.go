//go:build !(linux || darwin || freebsd)

package main

import "errors"

// statfsFree reports that free space is not known here: the backup's space
// check is skipped, and a full disk fails the copy itself.
func statfsFree(string) (uint64, error) {
	return 0, errors.ErrUnsupported
}
