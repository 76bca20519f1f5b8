package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/reghost/reghost/internal/certs/certstest"
)

// TestSkopeoPullOverHTTPS pulls an image with skopeo (containers/image,
// as podman and CRI-O pull) through reghost's direct mode served over
// HTTPS, verifying every certificate: reghost's and the registries',
// all from one test CA given to skopeo as its certificate directory.
// The rule for the client's address (skopeo connects from 127.0.0.1,
// and no proxy is trusted) sends it to registry b, under b's repository
// prefix; registry a holds the image too, so only the registries' logs
// tell that the manifest and every blob came from b.
func TestSkopeoPullOverHTTPS(t *testing.T) {
	t.Parallel()
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Fatalf("skopeo is not installed (%v): this test runs the real client; install Debian's skopeo package (scripts/test does)", err)
	}
	ca := certstest.NewCA(t, "e2e CA")
	serverCert := ca.TLSCertificate(t, certstest.Leaf{Serial: 2})
	regA, regB := startRegistryWith(t, &serverCert), startRegistryWith(t, &serverCert)
	def := neverHit(t)
	img := testImage(t)
	trust := []remote.Option{remote.WithTransport(&http.Transport{TLSClientConfig: ca.TLSClientConfig()})}
	pushWith(t, img, trust, regA.host, repo, tag)
	pushWith(t, img, trust, regB.host, mirrorPrefix+"/"+repo, tag)
	w := want(t, img)
	regA.reset() // the pushes
	regB.reset()

	pair := ca.WritePair(t, t.TempDir(), certstest.Leaf{Serial: 1})
	rh := startReghost(t, fmt.Sprintf(`
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %q
tls: {cert_file: %q, key_file: %q}
client_ip: {trusted_proxies: []}
geoip: {asn: "", country: ""}
cloud_ranges: {}
health_defaults: {enabled: false}
registries:
  - {name: default, url: %q, default: true}
  - {name: a, url: %q}
  - {name: b, url: %q}
rules:
  - match: {cidr: 203.0.113.0/24}
    registries: [a]
  - match: {cidr: 127.0.0.0/8}
    registries: [b]
`, t.TempDir(), pair.Cert, pair.Key, def.URL, regA.srv.URL, regB.srv.URL+"/"+mirrorPrefix))

	certDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(certDir, "ca.crt"), ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	// Accept any image: signature policy is not what is tested, and the
	// machine's own policy may not allow this one.
	policy := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default": [{"type": "insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "image")
	cmd := exec.CommandContext(t.Context(), skopeo, "--policy", policy, "--debug",
		"copy", "--src-tls-verify=true", "--src-cert-dir", certDir, "--src-no-creds",
		"docker://"+rh.public+"/"+repo+":"+tag, "dir:"+dest)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no auth files or registries.conf of the user's
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out.String())
	}
	if !strings.Contains(out.String(), "https://"+rh.public+"/v2/") {
		t.Errorf("skopeo did not go to reghost over HTTPS; its output:\n%s", out.String())
	}

	// What skopeo stored: the manifest, and every blob under its digest.
	manifest, err := os.ReadFile(filepath.Join(dest, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256Hash(manifest); got != w.manifest {
		t.Errorf("manifest digest = %s; want %s", got, w.manifest)
	}
	var m struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != len(w.layers) {
		t.Fatalf("%d layers in the stored manifest; want %d", len(m.Layers), len(w.layers))
	}
	for i, l := range w.layers {
		data, err := os.ReadFile(filepath.Join(dest, l.Hex))
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if got := sha256Hash(data); got != l {
			t.Errorf("layer %d digest = %s; want %s", i, got, l)
		}
	}

	checkServed(t, "b", regB, pullRequests(w, mirrorPrefix+"/"+repo))
	checkIdle(t, "a", regA)
}
