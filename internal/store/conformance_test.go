package store_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/reghost/reghost/internal/store"
	"github.com/reghost/reghost/internal/store/storetest"
)

func TestFileConformance(t *testing.T) {
	t.Parallel()
	pathOf := map[store.Store]string{}
	openAt := func(t *testing.T, path string) store.Store {
		t.Helper()
		s, err := store.OpenFile(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		pathOf[s] = path
		return s
	}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store { return openAt(t, filepath.Join(t.TempDir(), "overrides.json")) },
		Reopen: func(t *testing.T, s store.Store) store.Store {
			s.Close()
			return openAt(t, pathOf[s])
		},
		Corrupt: func(t *testing.T, s store.Store) (store.Store, error) {
			s.Close()
			if err := os.WriteFile(pathOf[s], []byte(`{"version": 3, "overrides": [{"id": "x", "match": {`), 0o600); err != nil {
				t.Fatal(err)
			}
			return store.OpenFile(pathOf[s], nil)
		},
		Break: func(t *testing.T, s store.Store) { s.Close() },
	})
}
