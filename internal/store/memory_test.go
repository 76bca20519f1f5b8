package store_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/reghost/reghost/internal/policy/policytest"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

// The store holds every override for the life of the process, and the
// collector marks each object it keeps in every cycle. Decoded as they
// come, an override was four objects or more (its ID, its registry list
// and each name in it, created_by, its line of the file). The store keeps
// only the IDs and lines, off the heap.
func TestFileHoldsLittleHeap(t *testing.T) {
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
	objects, bytes := policytest.Retained(func() any {
		s, err = store.OpenFile(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	defer s.Close()
	t.Logf("%d heap objects, %d bytes for %d overrides", objects, bytes, n)
	if per := float64(objects) / n; per > 0.1 {
		t.Errorf("the store holds %d heap objects for %d overrides (%.2f each), want at most 0.1 each", objects, n, per)
	}
	if per := float64(bytes) / n; per > 1 {
		t.Errorf("the store holds %d heap bytes for %d overrides (%.1f each), want at most 1 each", bytes, n, per)
	}
	// Decoded again, they read back as they were written.
	got, _, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := policytest.Overrides(n, []string{"hub", "k8s", "aws-us-east-2"})
	slices.SortFunc(want, func(a, b rules.Override) int { return strings.Compare(a.ID, b.ID) })
	if !reflect.DeepEqual(got, want) {
		t.Errorf("List after opening differs from what was written: first %+v, want %+v", got[0], want[0])
	}
}
