package deploytest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	// envoySDSPath names the certificate files Envoy serves (SDS from a file).
	envoySDSPath = "deploy/envoy/sds-tls.yaml"
	// composeCertsReadme keeps deploy/compose/certs, which compose mounts
	// into Envoy, in the repository while the certificates there are not.
	composeCertsReadme = "deploy/compose/certs/README.md"
	// certManagerExample is a cert-manager Certificate for Envoy,
	// commented out in the base's resources: uncommentCertManager puts it in.
	certManagerExample = "cert-manager-certificate.yaml"
	// copyEnvoyFiles refreshes deploy/k8s/base/envoy's copies of deploy/envoy.
	copyEnvoyFiles = "cp deploy/envoy/envoy.yaml deploy/envoy/reghost.lua deploy/envoy/sds-tls.yaml deploy/k8s/base/envoy/"
	// lbStopSeconds is the longest a cloud load balancer keeps sending new
	// connections to a stopping Envoy pod's node (as the preStop check in
	// checkKubernetes assumes).
	lbStopSeconds = 30
)

// envoyPatchRelease is an Envoy image pinned to a patch release (and
// optionally a digest): a floating tag such as v1.36-latest changes under
// a running deployment.
var envoyPatchRelease = regexp.MustCompile(`^envoyproxy/envoy:v\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?$`)

// envoyTLS is what the deployments depend on in envoy.yaml's TLS setup.
type envoyTLS struct {
	SDSFiles []string // path_config_source paths: files naming the certificate
	// MaxConnection and Drain bound how long a client connection lasts
	// (max_connection_duration, then drain_timeout for streams in flight);
	// MaxConnection is 0 when unset.
	MaxConnection, Drain time.Duration
}

// parseEnvoyTLS finds the SDS files and the connection manager's
// connection limits in an Envoy config. Envoy's own validation of the
// same file is in deploy/envoy/envoytest.
func parseEnvoyTLS(data []byte) (envoyTLS, error) {
	var tree any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		return envoyTLS{}, fmt.Errorf("envoy.yaml: %w", err)
	}
	var et envoyTLS
	var errs []error
	duration := func(v any) time.Duration {
		s, _ := v.(string)
		d, err := time.ParseDuration(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("envoy.yaml: duration %v: %w", v, err))
		}
		return d
	}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if pcs, ok := v["path_config_source"].(map[string]any); ok {
				if s, ok := pcs["path"].(string); ok {
					et.SDSFiles = append(et.SDSFiles, s)
				}
			}
			if t, _ := v["@type"].(string); strings.HasSuffix(t, ".HttpConnectionManager") {
				et.Drain = 5 * time.Second // Envoy's default
				if d, ok := v["drain_timeout"]; ok {
					et.Drain = duration(d)
				}
				if opts, ok := v["common_http_protocol_options"].(map[string]any); ok {
					if d, ok := opts["max_connection_duration"]; ok {
						et.MaxConnection = duration(d)
					}
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(tree)
	slices.Sort(et.SDSFiles)
	return et, errors.Join(errs...)
}

// sdsCertificate is where an SDS file has Envoy read its certificate.
type sdsCertificate struct {
	Cert, Key string // files
	Dir       string // watched_directory: where a new pair is moved in
}

func parseSDS(data []byte) (sdsCertificate, error) {
	var f struct {
		Resources []struct {
			TLSCertificate struct {
				CertificateChain struct {
					Filename string `json:"filename"`
				} `json:"certificate_chain"`
				PrivateKey struct {
					Filename string `json:"filename"`
				} `json:"private_key"`
				WatchedDirectory struct {
					Path string `json:"path"`
				} `json:"watched_directory"`
			} `json:"tls_certificate"`
		} `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		return sdsCertificate{}, err
	}
	if len(f.Resources) != 1 {
		return sdsCertificate{}, fmt.Errorf("%d resources; want 1", len(f.Resources))
	}
	tc := f.Resources[0].TLSCertificate
	c := sdsCertificate{Cert: tc.CertificateChain.Filename, Key: tc.PrivateKey.Filename, Dir: tc.WatchedDirectory.Path}
	if c.Cert == "" || c.Key == "" || c.Dir == "" || path.Dir(c.Cert) != c.Dir || path.Dir(c.Key) != c.Dir {
		return sdsCertificate{}, fmt.Errorf("certificate %q and key %q are not files in watched directory %q", c.Cert, c.Key, c.Dir)
	}
	return c, nil
}

// checkComposeTLS checks that compose gives Envoy what its TLS listener
// reads: the SDS file, and a directory of certificates it can watch.
func checkComposeTLS(p *types.Project) problems {
	var pr problems
	ev, ok := p.Services[composeEnvoy]
	if !ok {
		pr.add("compose: no envoy service")
		return pr
	}
	if !envoyPatchRelease.MatchString(ev.Image) {
		pr.add("compose: envoy image %q is not a patch release (envoyproxy/envoy:vX.Y.Z)", ev.Image)
	}
	binds := map[string]types.ServiceVolumeConfig{}
	for _, v := range ev.Volumes {
		if v.Type == types.VolumeTypeBind {
			binds[v.Target] = v
		}
	}
	envoyPath := envoyDefaultConfig
	if i := slices.Index(ev.Command, "-c"); i >= 0 && i+1 < len(ev.Command) {
		envoyPath = ev.Command[i+1]
	}
	cfg, ok := binds[envoyPath]
	if !ok {
		pr.add("compose: envoy mounts nothing at %s", envoyPath)
		return pr
	}
	data, err := os.ReadFile(cfg.Source)
	if err != nil {
		pr.add("compose: %v", err)
		return pr
	}
	et, err := parseEnvoyTLS(data)
	if err != nil {
		pr.add("compose: %v", err)
	}
	if len(et.SDSFiles) == 0 {
		pr.add("compose: envoy.yaml reads no SDS file: its certificate would not rotate, or there is none")
	}
	for _, f := range et.SDSFiles {
		b, ok := binds[f]
		if !ok {
			pr.add("compose: envoy.yaml reads %s, which is not mounted into envoy", f)
			continue
		}
		sdsData, err := os.ReadFile(b.Source)
		if err != nil {
			pr.add("compose: %v", err)
			continue
		}
		cert, err := parseSDS(sdsData)
		if err != nil {
			pr.add("compose: %s: %v", f, err)
			continue
		}
		certs, ok := binds[cert.Dir]
		if !ok {
			pr.add("compose: nothing is mounted into envoy at %s, where %s has the certificate and key", cert.Dir, f)
			continue
		}
		if st, err := os.Stat(certs.Source); err != nil || !st.IsDir() {
			pr.add("compose: envoy's %s is mounted from %s, which is not a directory: a pair moved in there would not reach Envoy", cert.Dir, certs.Source)
		}
		if !certs.ReadOnly {
			pr.add("compose: envoy's %s is writable; Envoy only reads it", cert.Dir)
		}
	}
	return pr
}

func TestComposeTLS(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	p, err := loadCompose(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	checkComposeTLS(p).expectNone(t)

	for _, tc := range []struct {
		name  string
		edits []edit
		want  string
	}{
		{"SDS file not mounted", []edit{{composePath, "target: /etc/envoy/sds-tls.yaml", "target: /etc/envoy/other.yaml"}}, "reads /etc/envoy/sds-tls.yaml, which is not mounted"},
		{"certificates not mounted", []edit{{composePath, "target: /etc/envoy-tls", "target: /etc/certs"}}, "nothing is mounted into envoy at /etc/envoy-tls"},
		{"certificate directory is a file", []edit{{composePath, "source: ./deploy/compose/certs\n", "source: ./deploy/compose/certs/README.md\n"}}, "which is not a directory"},
		{"certificates writable", []edit{{composePath, "target: /etc/envoy-tls\n        read_only: true", "target: /etc/envoy-tls\n        read_only: false"}}, "envoy's /etc/envoy-tls is writable"},
		{"SDS elsewhere", []edit{{envoySDSPath, "/etc/envoy-tls/tls.crt}", "/etc/ssl/tls.crt}"}, {envoySDSPath, "/etc/envoy-tls/tls.key}", "/etc/ssl/tls.key}"}, {envoySDSPath, "{path: /etc/envoy-tls}", "{path: /etc/ssl}"}}, "nothing is mounted into envoy at /etc/ssl"},
		{"floating Envoy tag", []edit{{composePath, "envoyproxy/envoy:v1.36.13", "envoyproxy/envoy:v1.36-latest"}}, `envoy image "envoyproxy/envoy:v1.36-latest" is not a patch release`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyFiles(t, root, composeFiles, tc.edits...)
			p, err := loadCompose(t.Context(), dir)
			if err != nil {
				t.Fatal(err)
			}
			checkComposeTLS(p).expect(t, tc.want)
		})
	}
}

// checkKubernetesTLS checks that Envoy's pods get what its TLS listener
// reads, and have time to end client connections before Envoy stops.
// envoySDS is deploy/envoy/sds-tls.yaml. It returns the Secret Envoy's
// certificate comes from.
func checkKubernetesTLS(c *cluster, envoySDS []byte) (secret string, p problems) {
	ed, ok := c.Deployments[k8sEnvoy]
	if !ok || len(ed.Spec.Template.Spec.Containers) != 1 {
		p.add("k8s: no Deployment %s with one container", k8sEnvoy)
		return "", p
	}
	pod := ed.Spec.Template.Spec
	ctr := pod.Containers[0]
	if !envoyPatchRelease.MatchString(ctr.Image) {
		p.add("k8s: envoy image %q is not a patch release (envoyproxy/envoy:vX.Y.Z)", ctr.Image)
	}
	envoyFile := envoyDefaultConfig
	if i := slices.Index(ctr.Args, "-c"); i >= 0 && i+1 < len(ctr.Args) {
		envoyFile = ctr.Args[i+1]
	}
	data, ok := mountedFile(&p, "k8s: envoy", c, pod, ctr, envoyFile)
	if !ok {
		return "", p
	}
	et, err := parseEnvoyTLS(data)
	if err != nil {
		p.add("k8s: %v", err)
	}
	if len(et.SDSFiles) == 0 {
		p.add("k8s: envoy.yaml reads no SDS file: its certificate would not rotate, or there is none")
	}
	for _, f := range et.SDSFiles {
		sdsData, ok := mountedFile(&p, "k8s: envoy", c, pod, ctr, f)
		if !ok {
			continue
		}
		if !bytes.Equal(sdsData, envoySDS) {
			p.add("k8s: envoy's %s is not %s; run: %s", f, envoySDSPath, copyEnvoyFiles)
		}
		cert, err := parseSDS(sdsData)
		if err != nil {
			p.add("k8s: %s: %v", f, err)
			continue
		}
		m, ok := mountAt(pod, ctr, cert.Dir)
		if !ok {
			p.add("k8s: envoy: nothing mounted at %s, where %s has the certificate and key", cert.Dir, f)
			continue
		}
		v := volume(pod, m.Name).Secret
		if v == nil {
			p.add("k8s: envoy: %s is not a Secret volume: a key belongs in a Secret, which cert-manager can keep", cert.Dir)
			continue
		}
		secret = v.SecretName
		if !m.ReadOnly {
			p.add("k8s: envoy: %s is not mounted read-only", cert.Dir)
		}
		if v.Optional != nil && *v.Optional {
			p.add("k8s: envoy: Secret %s is optional: Envoy would start without a certificate and reset every connection", v.SecretName)
		}
		// A kubernetes.io/tls Secret holds tls.crt and tls.key; items may
		// put them under other names.
		files := map[string]string{corev1.TLSCertKey: corev1.TLSCertKey, corev1.TLSPrivateKeyKey: corev1.TLSPrivateKeyKey}
		if len(v.Items) > 0 {
			files = map[string]string{}
			for _, it := range v.Items {
				files[it.Path] = it.Key
			}
		}
		for _, want := range []struct{ file, key string }{{cert.Cert, corev1.TLSCertKey}, {cert.Key, corev1.TLSPrivateKeyKey}} {
			if files[path.Base(want.file)] != want.key {
				p.add("k8s: envoy: %s names %s, which the Secret %s volume does not hold as its %s (a kubernetes.io/tls Secret has tls.crt and tls.key)", f, want.file, v.SecretName, want.key)
			}
		}
		if s, ok := c.Secrets[v.SecretName]; ok && s.Type != corev1.SecretTypeTLS {
			p.add("k8s: Secret %s has type %q; want %s", v.SecretName, s.Type, corev1.SecretTypeTLS)
		}
	}

	// Envoy exits at once on SIGTERM: its preStop sleep must outlast the
	// load balancer's last new connection and then that connection.
	if et.MaxConnection <= 0 {
		p.add("k8s: envoy.yaml sets no max_connection_duration: client connections still open when Envoy stops are cut")
	} else if ctr.Lifecycle != nil && ctr.Lifecycle.PreStop != nil && ctr.Lifecycle.PreStop.Sleep != nil {
		sleep := time.Duration(ctr.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		if need := lbStopSeconds*time.Second + et.MaxConnection + et.Drain; sleep < need {
			p.add("k8s: envoy: preStop sleep of %v ends before a connection the load balancer opens at %ds has ended (max_connection_duration %v, drain_timeout %v): want %v or more",
				sleep, lbStopSeconds, et.MaxConnection, et.Drain, need)
		}
	}
	return secret, p
}

func TestKubernetesTLS(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	sds := readRepoFile(t, envoySDSPath)
	c, err := buildKustomization(filepath.Join(root, k8sDir))
	if err != nil {
		t.Fatal(err)
	}
	secret, p := checkKubernetesTLS(c, sds)
	p.expectNone(t)
	if secret == "" {
		t.Error("no Secret for Envoy's certificate")
	}

	for _, tc := range []struct {
		name  string
		edits []edit
		want  string
	}{
		{"no certificate mount", []edit{{"envoy/deployment.yaml", "            - name: tls\n              mountPath: /etc/envoy-tls\n              readOnly: true\n", ""}}, "nothing mounted at /etc/envoy-tls"},
		{"certificate from a ConfigMap", []edit{{"envoy/deployment.yaml", "          secret:\n            secretName: reghost-tls\n", "          configMap:\n            name: envoy-config\n"}}, "/etc/envoy-tls is not a Secret volume"},
		{"Secret optional", []edit{{"envoy/deployment.yaml", "            secretName: reghost-tls\n", "            secretName: reghost-tls\n            optional: true\n"}}, "Secret reghost-tls is optional"},
		{"certificate writable", []edit{{"envoy/deployment.yaml", "              mountPath: /etc/envoy-tls\n              readOnly: true\n", "              mountPath: /etc/envoy-tls\n"}}, "/etc/envoy-tls is not mounted read-only"},
		{"keys renamed", []edit{{"envoy/deployment.yaml", "            secretName: reghost-tls\n", "            secretName: reghost-tls\n            items:\n              - {key: tls.crt, path: cert.pem}\n              - {key: tls.key, path: key.pem}\n"}}, "names /etc/envoy-tls/tls.crt, which the Secret reghost-tls volume does not hold"},
		{"SDS copy stale", []edit{{"envoy/sds-tls.yaml", "name: registry-tls", "name: registry-cert"}}, "envoy's /etc/envoy/sds-tls.yaml is not deploy/envoy/sds-tls.yaml; run: cp"},
		{"SDS not in the ConfigMap", []edit{{"kustomization.yaml", "      - envoy/sds-tls.yaml\n", ""}}, "has no key sds-tls.yaml"},
		{"no max_connection_duration", []edit{{"envoy/envoy.yaml", "            max_connection_duration: 10s\n", ""}}, "sets no max_connection_duration"},
		{"preStop shorter than the connections", []edit{{"envoy/deployment.yaml", "                seconds: 45\n", "                seconds: 40\n"}}, "preStop sleep of 40s ends before a connection the load balancer opens at 30s has ended"},
		{"longer connections", []edit{{"envoy/envoy.yaml", "max_connection_duration: 10s", "max_connection_duration: 60s"}}, "want 1m35s or more"},
		{"floating Envoy tag", []edit{{"envoy/deployment.yaml", "envoyproxy/envoy:v1.36.13", "envoyproxy/envoy:v1.36-latest"}}, `envoy image "envoyproxy/envoy:v1.36-latest" is not a patch release`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyTree(t, filepath.Join(root, k8sDir), tc.edits...)
			c, err := buildKustomization(dir)
			if err != nil {
				t.Fatal(err)
			}
			_, p := checkKubernetesTLS(c, sds)
			p.expect(t, tc.want)
		})
	}
}

// certManagerCertificate is the part of cert-manager's
// cert-manager.io/v1 Certificate the example uses, and the fields it might
// (decoded strictly: add a field here when the example gains one).
type certManagerCertificate struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		SecretName  string   `json:"secretName"`
		CommonName  string   `json:"commonName"`
		DNSNames    []string `json:"dnsNames"`
		IPAddresses []string `json:"ipAddresses"`
		Duration    string   `json:"duration"`
		RenewBefore string   `json:"renewBefore"`
		Usages      []string `json:"usages"`
		IssuerRef   struct {
			Group string `json:"group"`
			Kind  string `json:"kind"`
			Name  string `json:"name"`
		} `json:"issuerRef"`
		PrivateKey struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			Encoding       string `json:"encoding"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
	} `json:"spec"`
}

// uncommentCertManager adds the cert-manager example to the base's
// resources, as deploy/README.md says to.
var uncommentCertManager = edit{"kustomization.yaml", "  # - " + certManagerExample + "\n", "  - " + certManagerExample + "\n"}

// checkCertManagerExample builds dir, the base with the cert-manager
// example in its resources, and checks that it adds nothing but a
// Certificate that fills the Secret Envoy mounts (secret), in Envoy's
// namespace. base is the base as shipped.
func checkCertManagerExample(dir, base string, secret string) problems {
	var p problems
	kinds := func(d string) ([]string, []*certManagerCertificate, error) {
		m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), d)
		if err != nil {
			return nil, nil, fmt.Errorf("kustomize build %s: %w", d, err)
		}
		var ids []string
		var certs []*certManagerCertificate
		for _, r := range m.Resources() {
			if r.GetKind() != "Certificate" {
				ids = append(ids, r.GetKind()+"/"+r.GetNamespace()+"/"+r.GetName())
				continue
			}
			data, err := r.AsYAML()
			if err != nil {
				return nil, nil, err
			}
			js, err := yaml.YAMLToJSONStrict(data)
			if err != nil {
				return nil, nil, err
			}
			var c certManagerCertificate
			strict, err := kjson.UnmarshalStrict(js, &c)
			if err == nil {
				err = errors.Join(strict...)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("Certificate %s: %w", r.GetName(), err)
			}
			certs = append(certs, &c)
		}
		slices.Sort(ids)
		return ids, certs, nil
	}
	baseIDs, _, err := kinds(base)
	if err != nil {
		p.add("%v", err)
		return p
	}
	ids, certs, err := kinds(dir)
	if err != nil {
		p.add("%v", err)
		return p
	}
	if !slices.Equal(ids, baseIDs) {
		p.add("cert-manager example: objects %q besides the Certificate; want the base's, %q", ids, baseIDs)
	}
	if len(certs) != 1 {
		p.add("cert-manager example: %d Certificates; want 1", len(certs))
		return p
	}
	c := certs[0]
	if c.APIVersion != "cert-manager.io/v1" {
		p.add("cert-manager example: apiVersion %q; want cert-manager.io/v1", c.APIVersion)
	}
	if c.Metadata.Namespace != k8sNamespace {
		p.add("cert-manager example: Certificate in namespace %q; the Secret must be in Envoy's, %s", c.Metadata.Namespace, k8sNamespace)
	}
	if c.Spec.SecretName != secret {
		p.add("cert-manager example: Certificate fills Secret %q; Envoy mounts %q", c.Spec.SecretName, secret)
	}
	if len(c.Spec.DNSNames) == 0 {
		p.add("cert-manager example: no dnsNames: the name clients pull from")
	}
	if c.Spec.IssuerRef.Name == "" || c.Spec.IssuerRef.Kind == "" {
		p.add("cert-manager example: issuerRef %+v names no issuer", c.Spec.IssuerRef)
	}
	if c.Spec.PrivateKey.RotationPolicy != "Always" {
		p.add("cert-manager example: privateKey.rotationPolicy %q; want Always, a new key with each certificate", c.Spec.PrivateKey.RotationPolicy)
	}
	return p
}

func TestCertManagerExample(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	base := filepath.Join(root, k8sDir)
	c, err := buildKustomization(base)
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := checkKubernetesTLS(c, readRepoFile(t, envoySDSPath))
	checkCertManagerExample(copyTree(t, base, uncommentCertManager), base, secret).expectNone(t)

	// Applied on its own (kubectl apply -f), it must name its namespace.
	var alone certManagerCertificate
	if err := yaml.UnmarshalStrict(readRepoFile(t, filepath.Join(k8sDir, certManagerExample)), &alone); err != nil {
		t.Error(err)
	} else if alone.Metadata.Namespace != k8sNamespace {
		t.Errorf("%s: namespace %q; kubectl apply -f would put it elsewhere than %s", certManagerExample, alone.Metadata.Namespace, k8sNamespace)
	}

	for _, tc := range []struct {
		name  string
		edits []edit
		want  string
	}{
		{"another Secret", []edit{{certManagerExample, "secretName: reghost-tls", "secretName: envoy-tls"}}, `fills Secret "envoy-tls"; Envoy mounts "reghost-tls"`},
		{"unknown field", []edit{{certManagerExample, "  secretName: reghost-tls\n", "  secretName: reghost-tls\n  secretNmae: x\n"}}, `unknown field "spec.secretNmae"`},
		{"old key kept", []edit{{certManagerExample, "rotationPolicy: Always", "rotationPolicy: Never"}}, "rotationPolicy"},
		{"no names", []edit{{certManagerExample, "  dnsNames:\n    - registry.example.com\n", ""}}, "no dnsNames"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyTree(t, base, append(tc.edits, uncommentCertManager)...)
			checkCertManagerExample(dir, base, secret).expect(t, tc.want)
		})
	}
}
