//go:build linux || darwin || freebsd

package main

import (
	"fmt"
	"syscall"
)

// statfsFree returns the bytes an unprivileged process may still write in
// the file system that holds dir (statfs's f_bavail, not f_bfree, which
// counts the blocks reserved for root).
func statfsFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
