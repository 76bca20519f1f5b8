package store_test

import (
	"context"
	"encoding/json"
	"fmt"
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

// A write replaces the records and the old ones are unmapped once
// collected: reads running meanwhile must neither crash nor return
// another override.
func TestFileReadsWhileWriting(t *testing.T) {
	ctx := t.Context()
	s, err := store.OpenFile(filepath.Join(t.TempDir(), "overrides.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ovs := policytest.Overrides(200, []string{"hub", "k8s"})
	for _, o := range ovs {
		if _, err := s.Put(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	extra := rules.Override{ID: "zz-extra", Match: rules.Match{Country: "SE"}, Registries: []string{"hub"}}
	err = policytest.ReadWhileWriting(60, func(i int) error {
		want := ovs[i%len(ovs)]
		got, err := s.Get(ctx, want.ID)
		if err != nil || !reflect.DeepEqual(got, want) {
			return fmt.Errorf("Get(%q) = %+v, %v; want %+v", want.ID, got, err, want)
		}
		if i%50 == 0 {
			if all, _, err := s.List(ctx); err != nil || len(all) < len(ovs) {
				return fmt.Errorf("List: %d overrides, %v; want at least %d", len(all), err, len(ovs))
			}
		}
		return nil
	}, func(i int) (err error) {
		if i%2 == 0 {
			_, err = s.Put(ctx, extra)
		} else {
			_, err = s.Delete(ctx, extra.ID)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
