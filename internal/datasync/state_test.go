package datasync

import (
	"testing"

	"github.com/reghost/reghost/internal/loader"
	"github.com/reghost/reghost/internal/store/redistest"
)

func stateWith(kv ...string) loader.State {
	st := loader.State{Sets: map[string]loader.SetState{}}
	for i := 0; i < len(kv); i += 2 {
		st.Sets[kv[i]] = loader.SetState{File: "/data/" + kv[i], SHA256: kv[i+1]}
	}
	return st
}

// The loader's state in Redis reads back as saved. Two loaders that run
// at once on different data sets (geoip and cloud, in two pods) each
// write only the records they changed, so neither puts back what the
// other replaced; a record that does not decode is left out.
func TestStateInRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newTestClient(t, srv, "", nil)
	first := c.State()
	if st, err := first.Load(t.Context()); err != nil || len(st.Sets) != 0 {
		t.Fatalf("empty Redis: %+v, %v", st, err)
	}
	if err := first.Save(t.Context(), stateWith("geoip/asn", "a1", "cloud/aws", "c1")); err != nil {
		t.Fatal(err)
	}

	geoip, cloud := c.State(), c.State()
	gs, _ := geoip.Load(t.Context())
	cs, _ := cloud.Load(t.Context())
	if gs.Sets["geoip/asn"].SHA256 != "a1" || cs.Sets["cloud/aws"].SHA256 != "c1" {
		t.Fatalf("read back: %+v", gs)
	}
	gs.Sets["geoip/asn"] = loader.SetState{File: "/data/geoip/asn", SHA256: "a2"}
	cs.Sets["cloud/aws"] = loader.SetState{File: "/data/cloud/aws", SHA256: "c2"}
	if err := cloud.Save(t.Context(), cs); err != nil {
		t.Fatal(err)
	}
	if err := geoip.Save(t.Context(), gs); err != nil { // its cloud/aws is c1, as it found it
		t.Fatal(err)
	}
	st, _ := c.State().Load(t.Context())
	if st.Sets["geoip/asn"].SHA256 != "a2" || st.Sets["cloud/aws"].SHA256 != "c2" {
		t.Errorf("after two loaders: %+v", st.Sets)
	}

	srv.Do("HSET", "{reghost}:loader-state", "cloud/gcp", "{not json")
	st, err := c.State().Load(t.Context())
	if _, ok := st.Sets["cloud/gcp"]; err != nil || ok || len(st.Sets) != 2 {
		t.Errorf("with a record that does not decode: %+v, %v", st.Sets, err)
	}
}
