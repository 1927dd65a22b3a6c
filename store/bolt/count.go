package bolt

import (
	"strconv"

	bbolt "go.etcd.io/bbolt"
)

// The number of bindings is kept in the meta bucket, updated in the same
// write transaction that adds or removes a binding, so counting costs one
// read at any size. /readyz and every /metrics scrape count: walking the
// bucket instead took 37 ms at 100,000 bindings (issue 11).
var keyBindingCount = []byte("bindings")

// bindingCount returns the count meta keeps; ok is false when it keeps
// none (a file written before the count was kept) or one that does not
// read as a count.
func bindingCount(tx *bbolt.Tx) (n int, ok bool) {
	v := tx.Bucket(bucketMeta).Get(keyBindingCount)
	if v == nil {
		return 0, false
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// countBindings returns the number of bindings: the kept count, or a walk
// of the bucket when there is none.
func countBindings(tx *bbolt.Tx) int {
	if n, ok := bindingCount(tx); ok {
		return n
	}
	return tx.Bucket(bucketBindings).Stats().KeyN
}

// addBindings records, in tx, that delta bindings were added (or removed,
// when negative) by tx. It must run after the change: a count that was not
// kept yet is then rebuilt from the bucket as it now is.
func addBindings(tx *bbolt.Tx, delta int) error {
	n, ok := bindingCount(tx)
	if ok {
		n = max(n+delta, 0)
	} else {
		n = tx.Bucket(bucketBindings).Stats().KeyN
	}
	return tx.Bucket(bucketMeta).Put(keyBindingCount, []byte(strconv.Itoa(n)))
}

// countIsRight reports whether the count kept matches the bucket. A
// writable Open asks, walking the bucket once (about 2 ms at 100,000
// bindings), because a count can go wrong without this build noticing: an
// older forcebind, run against the file after a downgrade, writes
// bindings without counting them.
func countIsRight(tx *bbolt.Tx) bool {
	n, ok := bindingCount(tx)
	return ok && n == tx.Bucket(bucketBindings).Stats().KeyN
}

// recount writes the count of the bucket as it is.
func recount(tx *bbolt.Tx) error {
	n := tx.Bucket(bucketBindings).Stats().KeyN
	return tx.Bucket(bucketMeta).Put(keyBindingCount, []byte(strconv.Itoa(n)))
}
