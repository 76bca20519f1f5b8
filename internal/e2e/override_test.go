package e2e

import (
	"net/http"
	"testing"
)

// TestOverrideMovesClient creates an override through the admin API that
// sends client A to registry b, pulls, deletes it and pulls again. The
// admin API applies a write before it answers, so the next pull already
// sees it.
func TestOverrideMovesClient(t *testing.T) {
	t.Parallel()
	regA, regB := startRegistry(t), startRegistry(t)
	def := neverHit(t)
	img := testImage(t)
	push(t, img, regA.host, repo, tag)
	push(t, img, regB.host, mirrorPrefix+"/"+repo, tag)
	rh := startReghost(t, configYAML(t, regA.srv.URL, regB.srv.URL+"/"+mirrorPrefix, def.URL, "[127.0.0.0/8]"))
	w := want(t, img)
	onA, onB := pullRequests(w, repo), pullRequests(w, mirrorPrefix+"/"+repo)

	// pullFrom pulls as client A and checks which registry served it.
	pullFrom := func(t *testing.T, what string, reg, other *testRegistry, otherName string, lines []string) {
		t.Helper()
		regA.reset()
		regB.reset()
		checkPulled(t, pull(t, rh, clientA), w)
		checkServed(t, what, reg, lines)
		checkIdle(t, otherName, other)
	}

	pullFrom(t, "a", regA, regB, "b", onA)

	var created struct {
		Override struct {
			ID string `json:"id"`
		} `json:"override"`
	}
	adminDo(t, rh, http.MethodPost, "/api/v1/overrides", map[string]any{
		"match":      map[string]string{"cidr": "203.0.113.0/24"},
		"registries": []string{"b"},
	}, http.StatusCreated, &created)
	if created.Override.ID == "" {
		t.Fatal("POST /api/v1/overrides answered no override id")
	}
	pullFrom(t, "b (override)", regB, regA, "a", onB)

	adminDo(t, rh, http.MethodDelete, "/api/v1/overrides/"+created.Override.ID, nil, http.StatusOK, nil)
	pullFrom(t, "a (override deleted)", regA, regB, "b", onA)
}
