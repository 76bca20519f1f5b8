package store_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/reghost/reghost/internal/policy/policytest"
	"github.com/reghost/reghost/internal/store"
)

// The store holds every override for the life of the process, and the
// collector marks each object it keeps in every cycle. Decoded as they
// come, an override was four objects or more (its ID, its registry list
// and each name in it, created_by, its line of the file); shared lists
// and interned names leave its ID and its line.
func TestFileHoldsFewObjects(t *testing.T) {
	const n = 20_000
	path := filepath.Join(t.TempDir(), "overrides.json")
	data, err := json.Marshal(map[string]any{"version": 1, "overrides": policytest.Overrides(n, []string{"hub", "k8s", "aws-us-east-2"})})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var s *store.File
	objects := policytest.RetainedObjects(func() any {
		s, err = store.OpenFile(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	defer s.Close()
	t.Logf("%d heap objects for %d overrides", objects, n)
	if per := float64(objects) / n; per > 2.5 {
		t.Errorf("the store holds %d heap objects for %d overrides (%.2f each), want at most 2.5 each", objects, n, per)
	}
	// Compacted, they read back as they were written.
	got, _, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n || got[0].Registries[0] == "" || got[0].CreatedBy != "policytest" {
		t.Errorf("List after opening: %d overrides, first %+v", len(got), got[0])
	}
}
