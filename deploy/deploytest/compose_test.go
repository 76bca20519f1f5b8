package deploytest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"

	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/logtest"
)

// The compose services, and what docker-compose.yml promises.
const (
	composeReghost = "reghost"
	composeEnvoy   = "envoy"
	// envoyDefaultConfig is where the envoyproxy/envoy image's command
	// reads its config.
	envoyDefaultConfig = "/etc/envoy/envoy.yaml"
	publicPort         = "8443" // the host port Envoy is published on
	// envoyUser is the envoyproxy/envoy image's envoy user: run as it, the
	// image's entry point execs envoy without switching users.
	envoyUser = "101:101"
)

// dockerPools are Docker's default address pools (the compose network's
// subnet comes from them): reghost must believe Envoy's header from any.
var dockerPools = func() []netip.Prefix {
	var ps []netip.Prefix
	for i := 17; i <= 31; i++ {
		ps = append(ps, netip.MustParsePrefix(fmt.Sprintf("172.%d.0.0/16", i)))
	}
	return append(ps, netip.MustParsePrefix("192.168.0.0/16"))
}()

// loadCompose loads root's docker-compose.yml with the Compose
// specification's loader, schema validation included (unknown keys are
// errors), with no environment variables set.
func loadCompose(ctx context.Context, root string) (*types.Project, error) {
	data, err := os.ReadFile(filepath.Join(root, composePath))
	if err != nil {
		return nil, err
	}
	return loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, composePath), Content: data}},
		Environment: types.Mapping{},
	})
}

// composeDeployment is what checkCompose found, for other checks.
type composeDeployment struct {
	Config     *config.Config // the reghost config it mounts
	ConfigFile string
	TokenEnv   string // the reghost environment variable holding the token
	Images     map[string]string
	EnvoyLua   []byte
	// EnvoyConcurrency is Envoy's --concurrency, 0 without one.
	EnvoyConcurrency int
}

// checkCompose checks the compose project loaded from root against the
// image, the reghost config it mounts and the Envoy config it mounts.
func checkCompose(p *types.Project, root string, img image) (composeDeployment, problems) {
	var dep composeDeployment
	var pr problems
	dep.Images = map[string]string{}
	names := slices.Sorted(maps.Keys(p.Services))
	if !slices.Equal(names, []string{composeEnvoy, composeReghost}) {
		pr.add("compose: services %q; want envoy and reghost", names)
	}
	rg, ok1 := p.Services[composeReghost]
	ev, ok2 := p.Services[composeEnvoy]
	if !ok1 || !ok2 {
		return dep, pr
	}
	dep.Images[composeReghost], dep.Images[composeEnvoy] = rg.Image, ev.Image

	// binds returns a service's bind mounts by target, checking that each
	// source is a file (or, for certificates, a directory) in the
	// repository.
	binds := func(s types.ServiceConfig) map[string]string {
		m := map[string]string{}
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			m[v.Target] = v.Source
			if !strings.HasPrefix(v.Source, root+string(filepath.Separator)) {
				pr.add("compose: %s mounts %s from outside the repository", s.Name, v.Source)
			} else if st, err := os.Stat(v.Source); err != nil || !st.Mode().IsRegular() && !st.IsDir() {
				pr.add("compose: %s mounts %s at %s, which does not exist in the repository", s.Name, v.Source, v.Target)
			}
			if !v.ReadOnly {
				pr.add("compose: %s mounts %s writable; config is read-only", s.Name, v.Target)
			}
		}
		return m
	}

	// reghost: the image from the Dockerfile, read-only, non-root.
	if rg.Build == nil || rg.Build.Context != root || (rg.Build.Dockerfile != "" && rg.Build.Dockerfile != dockerfilePath) {
		pr.add("compose: reghost does not build the repository's Dockerfile (build: %+v)", rg.Build)
	}
	// Both services: read-only root, no capabilities, no new privileges.
	for _, s := range []types.ServiceConfig{rg, ev} {
		if !s.ReadOnly {
			pr.add("compose: %s has no read_only: true; it writes only to its volumes and tmpfs", s.Name)
		}
		if !slices.Contains(s.CapDrop, "ALL") || len(s.CapAdd) > 0 {
			pr.add("compose: %s does not drop all capabilities (cap_drop: %q, cap_add: %q)", s.Name, s.CapDrop, s.CapAdd)
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") && !slices.Contains(s.SecurityOpt, "no-new-privileges") {
			pr.add("compose: %s has no security_opt no-new-privileges:true (security_opt: %q)", s.Name, s.SecurityOpt)
		}
	}
	if rg.User != img.User {
		pr.add("compose: reghost user %q is not the image's USER %q", rg.User, img.User)
	}
	if !slices.Contains(rg.Tmpfs, "/tmp") {
		pr.add("compose: reghost has no tmpfs /tmp (tmpfs: %q)", rg.Tmpfs)
	}
	args := []string(rg.Command)
	if len(args) == 0 {
		args = img.Cmd
	}
	cfgPath, err := parseServerArgs(args)
	if err != nil {
		pr.add("compose: reghost: %v", err)
	}
	rgBinds := binds(rg)
	dep.ConfigFile = rgBinds[cfgPath]
	if dep.ConfigFile == "" {
		pr.add("compose: reghost mounts no file at -config %s (mounts: %v)", cfgPath, rgBinds)
		return dep, pr
	}
	cfg, err := config.Load(dep.ConfigFile)
	if err != nil {
		pr.add("compose: reghost's config: %v", err)
		return dep, pr
	}
	dep.Config = cfg

	// Its listeners: public for Envoy only, admin on the host's loopback.
	lhost, lport, err := splitListen(cfg.Listen)
	if err != nil || !unspecifiedHost(lhost) {
		pr.add("compose: %s: listen %q is not reachable from Envoy's container", dep.ConfigFile, cfg.Listen)
	}
	ahost, aport, err := splitListen(cfg.AdminListen)
	if err != nil || !unspecifiedHost(ahost) {
		pr.add("compose: %s: admin_listen %q is unreachable through the published port", dep.ConfigFile, cfg.AdminListen)
	}
	adminPublished := false
	for _, port := range rg.Ports {
		switch {
		case int(port.Target) == lport:
			pr.add("compose: reghost publishes its public listener (%s:%d): clients would bypass Envoy", port.Published, port.Target)
		case int(port.Target) == aport && port.HostIP == "127.0.0.1":
			adminPublished = true
		default:
			pr.add("compose: reghost publishes %s:%s:%d; only the admin listener, on 127.0.0.1", port.HostIP, port.Published, port.Target)
		}
	}
	if !adminPublished {
		pr.add("compose: reghost's admin listener (port %d) is not published on 127.0.0.1", aport)
	}

	// Its data: a volume at data_dir, which the image declares.
	dataVolume := false
	for _, v := range rg.Volumes {
		if v.Target == cfg.DataDir && v.Type == types.VolumeTypeVolume && !v.ReadOnly {
			dataVolume = true
		}
	}
	if !dataVolume {
		pr.add("compose: no writable named volume at data_dir %s", cfg.DataDir)
	}
	if !slices.Contains(img.Volumes, cfg.DataDir) {
		pr.add("compose: data_dir %s is not the image's VOLUME %q", cfg.DataDir, img.Volumes)
	}
	for _, f := range dataFiles(cfg) {
		if !within(f, cfg.DataDir) {
			pr.add("compose: %s is outside data_dir %s, on the read-only root where nothing can put it", f, cfg.DataDir)
		}
	}

	// The admin token: from the environment (see app.adminToken).
	if cfg.Admin.TokenFile != "" {
		pr.add("compose: admin.token_file %s; docker-compose.yml passes %s", cfg.Admin.TokenFile, tokenEnv)
	}
	if _, ok := rg.Environment[tokenEnv]; ok {
		dep.TokenEnv = tokenEnv
	} else {
		pr.add("compose: reghost's environment has no %s", tokenEnv)
	}

	// Whom reghost believes: Envoy, anywhere on the compose network.
	if cfg.ClientIP.Header != config.HeaderXRealIP {
		pr.add("compose: client_ip.header %s; reghost.lua sends X-Real-IP", cfg.ClientIP.Header)
	}
	for _, pool := range dockerPools {
		if !covers(cfg.ClientIP.TrustedProxies, pool) {
			pr.add("compose: client_ip.trusted_proxies %v do not cover Docker's address pool %s, where Envoy may be", cfg.ClientIP.TrustedProxies, pool)
		}
	}

	// Envoy: pinned, published, its files mounted, pointing at reghost.
	if i := strings.LastIndex(ev.Image, ":"); i < 0 || strings.Contains(ev.Image[i:], "/") || ev.Image[i+1:] == "latest" {
		pr.add("compose: envoy image %q has no version tag", ev.Image)
	}
	if _, ok := ev.DependsOn[composeReghost]; !ok {
		pr.add("compose: envoy does not depend on reghost")
	}
	if ev.User != envoyUser {
		pr.add("compose: envoy user %q is not the image's envoy user %q", ev.User, envoyUser)
	}
	// The image's entry point runs envoy with arguments that start with
	// an option (and the image's command, -c envoyDefaultConfig, without).
	if len(ev.Entrypoint) > 0 {
		pr.add("compose: envoy overrides the image's entry point")
	}
	envoyArgs := []string(ev.Command)
	envoyPath := envoyDefaultConfig
	if len(envoyArgs) > 0 && !strings.HasPrefix(envoyArgs[0], "-") {
		pr.add("compose: envoy's command %q does not start with an option: the image's entry point would not run envoy", envoyArgs)
	}
	if i := slices.Index(envoyArgs, "-c"); i >= 0 && i+1 < len(envoyArgs) {
		envoyPath = envoyArgs[i+1]
	} else if len(envoyArgs) > 0 {
		pr.add("compose: envoy's command %q has no -c: Envoy would start without a config", envoyArgs)
	}
	dep.EnvoyConcurrency = envoyConcurrency(envoyArgs)
	if dep.EnvoyConcurrency == 0 {
		pr.add("compose: envoy has no --concurrency in %q: Envoy would start a worker per host CPU", envoyArgs)
	}
	evBinds := binds(ev)
	envoyFile := evBinds[envoyPath]
	if envoyFile == "" {
		pr.add("compose: envoy mounts nothing at %s", envoyPath)
		return dep, pr
	}
	data, err := os.ReadFile(envoyFile)
	if err != nil {
		pr.add("compose: %v", err)
		return dep, pr
	}
	ec, err := parseEnvoy(data)
	if err != nil {
		pr.add("compose: %v", err)
		return dep, pr
	}
	for _, f := range ec.Files {
		if src, ok := evBinds[f]; !ok {
			pr.add("compose: envoy.yaml reads %s, which is not mounted into envoy", f)
		} else if path.Base(f) == "reghost.lua" {
			dep.EnvoyLua, _ = os.ReadFile(src)
		}
	}
	if dep.EnvoyLua != nil && !bytes.Contains(bytes.ToLower(dep.EnvoyLua), []byte(`"x-real-ip"`)) {
		pr.add("compose: reghost.lua does not send x-real-ip, the header reghost reads")
	}
	published := false
	for _, port := range ev.Ports {
		if port.Published == publicPort && port.HostIP == "" && slices.Contains(ec.ListenerPorts(), int(port.Target)) {
			published = true
		}
	}
	if !published {
		pr.add("compose: envoy does not publish host port %s on every interface to its listener %v (ports: %+v)", publicPort, ec.ListenerPorts(), ev.Ports)
	}
	ep, err := ec.Cluster(envoyCluster)
	if err != nil {
		pr.add("compose: %v", err)
		return dep, pr
	}
	if ep.Host != composeReghost {
		pr.add("compose: envoy.yaml's cluster %s goes to %q, not the reghost service", envoyCluster, ep.Host)
	}
	if ep.Port != lport {
		pr.add("compose: envoy.yaml's cluster %s goes to port %d; reghost listens on %d (%s)", envoyCluster, ep.Port, lport, cfg.Listen)
	}
	return dep, pr
}

// dataFiles are the data files a config names.
func dataFiles(cfg *config.Config) []string {
	var fs []string
	for _, f := range []string{cfg.GeoIP.ASN, cfg.GeoIP.Country} {
		if f != "" {
			fs = append(fs, f)
		}
	}
	for _, f := range cfg.CloudRanges {
		fs = append(fs, f)
	}
	slices.Sort(fs)
	return fs
}

func within(file, dir string) bool {
	rel, err := filepath.Rel(dir, file)
	return err == nil && filepath.IsLocal(rel)
}

// composeFiles are the files docker-compose.yml uses, for broken copies.
var composeFiles = []string{composePath, "deploy/compose/reghost.yaml", envoyConfigPath, envoyLuaPath, envoySDSPath, composeCertsReadme}

// copyFiles copies files (relative paths) from root to a new directory,
// applying edits, and returns the directory.
func copyFiles(t testing.TB, root string, files []string, edits ...edit) string {
	t.Helper()
	dst := t.TempDir()
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range edits {
			if e.file == f {
				data = e.apply(t, data)
			}
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range edits {
		if !slices.Contains(files, e.file) {
			t.Fatalf("edit of %s, which is not copied", e.file)
		}
	}
	return dst
}

func TestCompose(t *testing.T) {
	t.Parallel()
	img := dockerImage(t)
	root := repoRoot(t)
	p, err := loadCompose(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	dep, pr := checkCompose(p, root, img)
	pr.expectNone(t)
	if dep.TokenEnv != tokenEnv || dep.Config == nil {
		t.Fatalf("compose: token env %q, config %v", dep.TokenEnv, dep.Config)
	}

	const cfgFile = "deploy/compose/reghost.yaml"
	broken := []struct {
		name    string
		edits   []edit
		want    string
		loadErr bool // the compose loader itself refuses it
	}{
		{name: "unknown key", edits: []edit{{composePath, "    user: \"65532:65532\"\n", "    user: \"65532:65532\"\n    readonly: true\n"}}, want: "readonly", loadErr: true},
		{name: "writable root", edits: []edit{{composePath, "read_only: true\n    tmpfs", "read_only: false\n    tmpfs"}}, want: "no read_only: true"},
		{name: "root user", edits: []edit{{composePath, `user: "65532:65532"`, `user: "0:0"`}}, want: `user "0:0" is not the image's USER`},
		{name: "public listener published", edits: []edit{{composePath, `      - "127.0.0.1:9090:9090"`, "      - \"127.0.0.1:9090:9090\"\n      - \"8081:8080\""}}, want: "publishes its public listener"},
		{name: "admin on every interface", edits: []edit{{composePath, `"127.0.0.1:9090:9090"`, `"9090:9090"`}}, want: "publishes :9090:9090"},
		{name: "config elsewhere", edits: []edit{{composePath, "target: /etc/reghost/config.yaml", "target: /etc/reghost.yaml"}}, want: "mounts no file at -config /etc/reghost/config.yaml"},
		{name: "config missing", edits: []edit{{composePath, "source: ./deploy/compose/reghost.yaml", "source: ./deploy/compose/missing.yaml"}}, want: "does not exist in the repository"},
		{name: "no data volume", edits: []edit{{composePath, "        source: reghost-data\n        target: /data", "        source: reghost-data\n        target: /var/lib/reghost"}}, want: "no writable named volume at data_dir /data"},
		{name: "Lua not mounted", edits: []edit{{composePath, "target: /etc/envoy/reghost.lua", "target: /etc/envoy/other.lua"}}, want: "reads /etc/envoy/reghost.lua, which is not mounted"},
		{name: "Envoy port", edits: []edit{{composePath, `      - "8443:8443"`, `      - "8443:8444"`}}, want: "does not publish host port 8443"},
		{name: "Envoy unpinned", edits: []edit{{composePath, "envoyproxy/envoy:v1.36.13", "envoyproxy/envoy"}}, want: "has no version tag"},
		{name: "no token variable", edits: []edit{{composePath, "REGHOST_ADMIN_TOKEN: ${REGHOST_ADMIN_TOKEN:-}", "ADMIN_TOKEN: ${REGHOST_ADMIN_TOKEN:-}"}}, want: "environment has no REGHOST_ADMIN_TOKEN"},
		{name: "listen port", edits: []edit{{cfgFile, `listen: ":8080"`, `listen: ":8081"`}}, want: "goes to port 8080; reghost listens on 8081"},
		{name: "admin on loopback", edits: []edit{{cfgFile, `admin_listen: "0.0.0.0:9090"`, `admin_listen: "127.0.0.1:9090"`}}, want: "admin_listen \"127.0.0.1:9090\" is unreachable"},
		{name: "trusted proxies", edits: []edit{{cfgFile, "trusted_proxies: [172.16.0.0/12, 192.168.0.0/16]", "trusted_proxies: [172.16.0.0/12]"}}, want: "do not cover Docker's address pool 192.168.0.0/16"},
		{name: "data outside the volume", edits: []edit{{cfgFile, "country: /data/GeoLite2-Country.mmdb", "country: /etc/GeoLite2-Country.mmdb"}}, want: "/etc/GeoLite2-Country.mmdb is outside data_dir"},
		{name: "config invalid", edits: []edit{{cfgFile, "redirect_status: 307", "redirect_status: 301"}}, want: "permanent redirect"},
		{name: "Envoy writable root", edits: []edit{{composePath, "    user: \"101:101\"\n    read_only: true\n", "    user: \"101:101\"\n    read_only: false\n"}}, want: "envoy has no read_only: true"},
		{name: "Envoy as root", edits: []edit{{composePath, `user: "101:101"`, `user: "0:0"`}}, want: `envoy user "0:0" is not the image's envoy user`},
		{name: "Envoy capabilities", edits: []edit{{composePath, "    read_only: true\n    cap_drop:\n      - ALL\n    security_opt:\n      - no-new-privileges:true\n    restart", "    read_only: true\n    cap_drop:\n      - NET_RAW\n    security_opt:\n      - no-new-privileges:true\n    restart"}}, want: "envoy does not drop all capabilities"},
		{name: "reghost new privileges", edits: []edit{{composePath, "      - no-new-privileges:true\n    restart: unless-stopped\n\n  envoy:", "      - no-new-privileges:false\n    restart: unless-stopped\n\n  envoy:"}}, want: "reghost has no security_opt no-new-privileges:true"},
		{name: "Envoy entry point", edits: []edit{{composePath, `    command: ["-c"`, `    entrypoint: ["envoy"]` + "\n" + `    command: ["-c"`}}, want: "overrides the image's entry point"},
		{name: "Envoy command", edits: []edit{{composePath, `command: ["-c", "/etc/envoy/envoy.yaml",`, `command: ["envoy", "-c", "/etc/envoy/envoy.yaml",`}}, want: "does not start with an option"},
		{name: "Envoy config elsewhere", edits: []edit{{composePath, `command: ["-c", "/etc/envoy/envoy.yaml",`, `command: ["-c", "/etc/envoy/other.yaml",`}}, want: "envoy mounts nothing at /etc/envoy/other.yaml"},
		{name: "Envoy no concurrency", edits: []edit{{composePath, `, "--concurrency", "2"]`, `]`}}, want: "envoy has no --concurrency"},
		{name: "cluster elsewhere", edits: []edit{{envoyConfigPath, "{address: reghost, port_value: 8080}", "{address: redirector, port_value: 8080}"}}, want: `goes to "redirector"`},
	}
	for _, tc := range broken {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyFiles(t, root, composeFiles, tc.edits...)
			p, err := loadCompose(t.Context(), dir)
			if tc.loadErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("loadCompose: %v; want an error about %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_, pr := checkCompose(p, dir, img)
			pr.expect(t, tc.want)
		})
	}
}

// TestComposeServer runs the image's server binary as compose runs it:
// the image's arguments, compose's reghost config and the token in the
// environment variable compose sets. Only what a machine without Docker
// must change is changed: the listeners move to free loopback ports and
// the data directory to a scratch one.
func TestComposeServer(t *testing.T) {
	t.Parallel()
	img := dockerImage(t)
	root := repoRoot(t)
	p, err := loadCompose(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	dep, pr := checkCompose(p, root, img)
	pr.expectNone(t)
	if t.Failed() {
		t.FailNow()
	}
	bin := buildImageBinaries(t).bins[serverBinary]

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	// Ports the kernel picks when the server listens, read back from its
	// log: a port found free beforehand could be taken in between.
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, relocate(t, dep.ConfigFile, "127.0.0.1:0", "127.0.0.1:0", data), 0o644); err != nil {
		t.Fatal(err)
	}
	args := slices.Clone(img.Cmd)
	args[slices.Index(args, img.ConfigPath)] = cfgFile
	const token = "compose-test-token-0123456789"
	cwd := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), dep.TokenEnv+"="+token)
	var logs logtest.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	}()

	client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(url, bearer string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	deadline := time.Now().Add(15 * time.Second)
	var pub, adm string
	for {
		var ok bool
		if pub, adm, ok = logtest.ServingAddrs(logs.String()); ok {
			break
		}
		select {
		case err := <-exited:
			waited = true
			t.Fatalf("server exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no \"reghost serving\" line after 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	pubURL, admURL := "http://"+pub, "http://"+adm

	def := dep.Config.Default()
	for _, c := range []struct {
		url, bearer string
		status      int
		location    string
	}{
		{url: pubURL + "/healthz", status: http.StatusOK},
		{url: pubURL + "/readyz", status: http.StatusOK},
		{url: pubURL + "/v2/pause/manifests/3.9", status: dep.Config.RedirectStatus, location: def.URL + "/v2/pause/manifests/3.9"},
		{url: admURL + "/api/v1/registries", bearer: token, status: http.StatusOK},
		{url: admURL + "/api/v1/registries", status: http.StatusUnauthorized},
		{url: admURL + "/api/v1/registries", bearer: "not-the-token-0123456789", status: http.StatusUnauthorized},
	} {
		resp, err := get(c.url, c.bearer)
		if err != nil {
			t.Errorf("GET %s: %v", c.url, err)
			continue
		}
		if resp.StatusCode != c.status || resp.Header.Get("Location") != c.location {
			t.Errorf("GET %s (token %q): %d, Location %q; want %d, %q", c.url, c.bearer, resp.StatusCode, resp.Header.Get("Location"), c.status, c.location)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		waited = true
		if err != nil {
			t.Errorf("server after SIGTERM: %v; want exit 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("server still running 15s after SIGTERM")
	}
	if ents, _ := os.ReadDir(cwd); len(ents) > 0 {
		t.Errorf("the server wrote %v into its working directory; with a read-only root only data_dir is writable", ents)
	}
}

// relocate returns the config file with its listeners on the given
// loopback addresses and its data directory (and data files in it) in
// dataDir, everything else as it is.
func relocate(t testing.TB, file, pub, adm, dataDir string) []byte {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(src, &m); err != nil {
		t.Fatal(err)
	}
	old, _ := m["data_dir"].(string)
	move := func(v any) any {
		if s, ok := v.(string); ok && within(s, old) {
			return filepath.Join(dataDir, strings.TrimPrefix(s, old))
		}
		return v
	}
	m["listen"], m["admin_listen"], m["data_dir"] = pub, adm, dataDir
	for _, k := range []string{"geoip", "cloud_ranges"} {
		if sub, ok := m[k].(map[string]any); ok {
			for kk, v := range sub {
				sub[kk] = move(v)
			}
		}
	}
	out, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
