package httpapi

import (
	"fmt"
	"time"

	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

// OverrideSet is the whole set of overrides as GET /api/v1/overrides
// lists it and PUT /api/v1/overrides takes it back: a backup. The
// loader's export writes it and its import reads it, so that a file
// from either door restores through the other.
type OverrideSet struct {
	Version   store.Version  `json:"version"`
	Overrides []OverrideView `json:"overrides"`
}

// OverrideView is an override as the API shows it: marked once it has
// expired (it no longer decides, and is removed after the retention).
type OverrideView struct {
	rules.Override
	Expired bool `json:"expired,omitempty"`
}

func viewOf(o rules.Override, now time.Time) OverrideView {
	return OverrideView{Override: o, Expired: o.Expired(now)}
}

// NewOverrideSet lists ovs at version v, marking those expired at now.
func NewOverrideSet(ovs []rules.Override, v store.Version, now time.Time) OverrideSet {
	out := OverrideSet{Version: v, Overrides: make([]OverrideView, len(ovs))}
	for i, o := range ovs {
		out.Overrides[i] = viewOf(o, now)
	}
	return out
}

// DecodeOverrideSet reads a set as PUT /api/v1/overrides takes it:
// {"version"?, "overrides": […]}, strictly (see decodeStrict). Errors
// start with the field at fault ("overrides[3].match.cidr: …"). What an
// override leaves out, the overrides service fills in; nothing is
// validated against the registries here.
func DecodeOverrideSet(data []byte) ([]rules.Override, error) {
	var body struct {
		Overrides []overrideBody `json:"overrides"`
		// Version is what GET /api/v1/overrides gives with the list, so
		// that its output is a backup that restores as it is. It is not
		// checked: a restore is meant to replace what is there.
		Version *store.Version `json:"version"`
	}
	if err := decodeStrict(data, &body); err != nil {
		return nil, err
	}
	return overridesOf(body.Overrides)
}

// DecodeOverrideList reads a bare JSON list of overrides, [{…}, …], as
// DecodeOverrideSet reads the list inside the object; errors name the
// fields the same way.
func DecodeOverrideList(data []byte) ([]rules.Override, error) {
	var list []overrideBody
	if err := decodeStrictAt(data, &list, "overrides"); err != nil {
		return nil, err
	}
	return overridesOf(list)
}

func overridesOf(bodies []overrideBody) ([]rules.Override, error) {
	ovs := make([]rules.Override, len(bodies))
	for i := range bodies {
		var err error
		if ovs[i], err = bodies[i].override(fmt.Sprintf("overrides[%d].", i)); err != nil {
			return nil, err
		}
	}
	return ovs, nil
}
