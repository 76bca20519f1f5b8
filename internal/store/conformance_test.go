package store_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/reghost/reghost/internal/store"
	"github.com/reghost/reghost/internal/store/storetest"
)

func TestBoltConformance(t *testing.T) {
	t.Parallel()
	dirOf := map[store.Store]string{}
	openIn := func(t *testing.T, dir string) store.Store {
		t.Helper()
		s, err := store.OpenBolt(dir, store.BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dirOf[s] = dir
		return s
	}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store { return openIn(t, t.TempDir()) },
		Reopen: func(t *testing.T, s store.Store) store.Store {
			s.Close()
			return openIn(t, dirOf[s])
		},
		Corrupt: func(t *testing.T, s store.Store) (store.Store, error) {
			s.Close()
			path := filepath.Join(dirOf[s], store.BoltFile)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Cut short, as a disk that filled up or a bad copy leaves it.
			if err := os.WriteFile(path, data[:len(data)/3], 0o600); err != nil {
				t.Fatal(err)
			}
			return store.OpenBolt(dirOf[s], store.BoltOptions{})
		},
		Break: func(t *testing.T, s store.Store) { s.Close() },
	})
}
