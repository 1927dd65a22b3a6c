//go:build !(linux || darwin || freebsd)

package main

import "errors"

// statfsDir reports that the file system is not known here: the backup's
// space checks are skipped, and a full disk fails the copy itself.
func statfsDir(string) (fsStat, error) {
	return fsStat{}, errors.ErrUnsupported
}
