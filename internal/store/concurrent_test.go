package store_test

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/reghost/reghost/internal/policy/policytest"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

// A write swaps in new records: reads running meanwhile must neither
// fail nor return another override.
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
