//go:build linux || darwin || freebsd

package main

import (
	"fmt"
	"os"
	"syscall"
)

// statfsDir describes the file system that holds dir: the bytes an
// unprivileged process may still write there (statfs's f_bavail, not
// f_bfree, which counts the blocks reserved for root), and dir's device
// number, which tells whether two directories share that space.
func statfsDir(dir string) (fsStat, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fsStat{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fsStat{}, err
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fsStat{}, fmt.Errorf("stat %s: no device number", dir)
	}
	return fsStat{free: uint64(st.Bavail) * uint64(st.Bsize), device: uint64(sys.Dev)}, nil
}
