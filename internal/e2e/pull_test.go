package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPullThroughReghost pulls one image through reghost as two clients
// whose rules send them to two registries, and checks that each pull is
// complete and correct and was served by its client's registry alone.
// Both registries hold the image, b under a repository prefix, so a
// client sent to the wrong registry would still pull successfully: only
// the registries' access logs tell.
func TestPullThroughReghost(t *testing.T) {
	t.Parallel()
	regA, regB := startRegistry(t), startRegistry(t)
	def := neverHit(t)
	img := testImage(t)
	push(t, img, regA.host, repo, otherTag, tag)
	push(t, img, regB.host, mirrorPrefix+"/"+repo, otherTag, tag)
	rh := startReghost(t, configYAML(t, regA.srv.URL, regB.srv.URL+"/"+mirrorPrefix, def.URL, "[127.0.0.0/8]"))
	w := want(t, img)

	for _, tc := range []struct {
		name, client     string
		reg, other       *testRegistry
		regName, otherNm string
		pathRepo         string // repo as the client's registry sees it
	}{
		{"client A to registry a", clientA, regA, regB, "a", "b", repo},
		{"client B to registry b with prefix", clientB, regB, regA, "b", "a", mirrorPrefix + "/" + repo},
	} {
		// Not parallel: each case reads both registries' logs.
		t.Run(tc.name, func(t *testing.T) {
			regA.reset()
			regB.reset()
			ref, err := name.ParseReference(rh.public+"/"+repo+":"+tag, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			opts := []remote.Option{remote.WithContext(t.Context()), remote.WithTransport(clientTransport(t, rh, tc.client))}

			checkPulled(t, pull(t, rh, tc.client), w)

			desc, err := remote.Head(ref, opts...)
			if err != nil {
				t.Fatalf("HEAD %s: %v", ref, err)
			}
			if desc.Digest != w.manifest {
				t.Errorf("HEAD %s: digest %s; want %s", ref, desc.Digest, w.manifest)
			}

			// The registry answers n=1 with the first tag alone, so one
			// tag back shows that the query survived the redirect.
			tags, err := remote.List(ref.Context(), append(opts, remote.WithPageSize(1))...)
			if err != nil {
				t.Fatalf("list %s: %v", ref.Context(), err)
			}
			if want := []string{otherTag}; !slices.Equal(tags, want) {
				t.Errorf("list %s with page size 1: %q; want %q", ref.Context(), tags, want)
			}

			// Both pages by hand with plain net/http, looking at where
			// each redirect led: the second page's query has two
			// parameters, which must arrive in order and unescaped.
			c := &http.Client{Transport: clientTransport(t, rh, tc.client)}
			for _, page := range []struct{ query, tag string }{
				{"n=1", otherTag},
				{"n=1&last=" + otherTag, tag},
			} {
				resp, body, err := get(t.Context(), c, "http://"+rh.public+"/v2/"+repo+"/tags/list?"+page.query, nil)
				if err != nil {
					t.Fatal(err)
				}
				wantURL := tc.reg.srv.URL + "/v2/" + tc.pathRepo + "/tags/list?" + page.query
				if got := resp.Request.URL.String(); got != wantURL {
					t.Errorf("tags/list?%s was redirected to %s; want %s", page.query, got, wantURL)
				}
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("tags/list?%s: %s: %s", page.query, resp.Status, body)
				}
				var list struct {
					Tags []string `json:"tags"`
				}
				if err := json.Unmarshal(body, &list); err != nil {
					t.Fatalf("tags/list?%s: %v: %s", page.query, err, body)
				}
				if want := []string{page.tag}; !slices.Equal(list.Tags, want) {
					t.Errorf("tags/list?%s: tags %q; want %q", page.query, list.Tags, want)
				}
			}

			lines := append(pullRequests(w, tc.pathRepo),
				"HEAD /v2/"+tc.pathRepo+"/manifests/"+tag,
				"GET /v2/"+tc.pathRepo+"/tags/list?n=1",
				"GET /v2/"+tc.pathRepo+"/tags/list?n=1&last="+otherTag)
			checkServed(t, tc.regName, tc.reg, lines)
			checkIdle(t, tc.otherNm, tc.other)
		})
	}
}
