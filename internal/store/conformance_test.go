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
			// Its pages after the two meta pages overwritten, as a bad disk
			// or a stray write leaves them.
			page := os.Getpagesize()
			for i := 2 * page; i < len(data); i++ {
				data[i] = byte(i * 7)
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			return store.OpenBolt(dirOf[s], store.BoltOptions{})
		},
		Break: func(t *testing.T, s store.Store) { s.Close() },
	})
}
