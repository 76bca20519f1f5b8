package httpapi

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

// A set written by NewOverrideSet reads back as it was, as an object or
// as its bare list, and the expired mark is read and dropped.
func TestOverrideSetRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 123456789, time.UTC)
	ovs := []rules.Override{
		{ID: "a", Match: rules.Match{CIDR: netip.MustParsePrefix("192.0.2.0/24")}, Registries: []string{"hub", "k8s"},
			Note: "lab", CreatedBy: "alice", CreatedAt: now.Add(-time.Hour)},
		{ID: "b", Match: rules.Match{Cloud: "aws", Region: "us-east-2"}, Registries: []string{"k8s"},
			ExpiresAt: now.Add(-time.Minute), CreatedBy: "bob", CreatedAt: now.Add(-2 * time.Hour)},
	}
	data, err := json.Marshal(NewOverrideSet(ovs, store.Version{Epoch: 3, N: 7}, now))
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Overrides []json.RawMessage }
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	bare, _ := json.Marshal(list.Overrides)
	for name, decode := range map[string]func() ([]rules.Override, error){
		"object": func() ([]rules.Override, error) { return DecodeOverrideSet(data) },
		"list":   func() ([]rules.Override, error) { return DecodeOverrideList(bare) },
	} {
		got, err := decode()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, data)
		}
		if !reflect.DeepEqual(got, ovs) {
			t.Errorf("%s: read back\n%+v\nwant\n%+v", name, got, ovs)
		}
	}
}

// Errors name the field at fault the same way in both shapes.
func TestDecodeOverrideErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, data, want string
		list             bool
	}{
		{"object: bad cidr", `{"overrides":[{"id":"a","match":{"cidr":"x"}}]}`, `overrides[0].match.cidr: "x" is not a CIDR prefix`, false},
		{"list: bad cidr", `[{"id":"a"},{"id":"b","match":{"cidr":"x"}}]`, `overrides[1].match.cidr: "x" is not a CIDR prefix`, true},
		{"list: unknown field", `[{"id":"a","matches":{}}]`, `overrides[0].matches: unknown field`, true},
		{"list: wrong type", `[{"id":"a","match":{"asn":"15169"}}]`, `overrides[0].match.asn: a JSON string where a number from 0 to 4294967295 belongs`, true},
		{"list: an object", `{"overrides":[]}`, `overrides: a JSON object where an array belongs`, true},
		{"list: bad time", `[{"id":"a","expires_at":"tomorrow"}]`, `overrides[0].expires_at: "tomorrow" is not an RFC 3339 time, such as 2030-01-01T00:00:00Z`, true},
		{"object: a list", `[]`, `body: a JSON array where an object belongs`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			decode := DecodeOverrideSet
			if tt.list {
				decode = DecodeOverrideList
			}
			if _, err := decode([]byte(tt.data)); err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %s", err, tt.want)
			}
		})
	}
}
