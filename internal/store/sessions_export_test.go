package store

import (
	"testing"

	"go.etcd.io/bbolt"
)

// CountSessions counts the sessions stored, ended or not.
func CountSessions(t *testing.T, b *Bolt) int {
	t.Helper()
	n := 0
	err := b.db.View(func(tx *bbolt.Tx) error {
		if bk := tx.Bucket(bucketSessions); bk != nil {
			n = bk.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
