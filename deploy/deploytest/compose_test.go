package deploytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"

	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/loader/loadertest"
	"github.com/reghost/reghost/internal/logtest"
	"github.com/reghost/reghost/internal/store/redistest"
)

// The compose services, and what docker-compose.yml promises.
const (
	composeEnvoy = "envoy"
	composeRedis = "redis"
	// composeLoader runs loader cloud at every docker compose up;
	// composeLoaderGeoIP runs loader geoip, which needs MaxMind
	// credentials, only when asked for (a profile).
	composeLoader      = "loader"
	composeLoaderGeoIP = "loader-geoip"
	// composeReghostName is the name envoy.yaml's reghost cluster
	// resolves: every replica answers to it (a network alias), and
	// Envoy balances across the addresses Docker's DNS gives.
	composeReghostName = "reghost"
	// envoyDefaultConfig is where the envoyproxy/envoy image's command
	// reads its config.
	envoyDefaultConfig = "/etc/envoy/envoy.yaml"
	publicPort         = "8443" // the host port Envoy is published on
	// envoyUser is the envoyproxy/envoy image's envoy user: run as it, the
	// image's entry point execs envoy without switching users.
	envoyUser = "101:101"
	// composeSecretsDir is where compose puts a service's secrets.
	composeSecretsDir = "/run/secrets"
)

// composeReplicas are the reghost replicas, which share Redis and the
// loaded data.
var composeReplicas = []string{"reghost-a", "reghost-b"}

// composeServices is every service docker-compose.yml must have.
var composeServices = func() []string {
	s := append([]string{composeEnvoy, composeRedis, composeLoader, composeLoaderGeoIP}, composeReplicas...)
	slices.Sort(s)
	return s
}()

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
// errors), with no environment variables set and every profile active,
// so that services run only on request are checked too.
func loadCompose(ctx context.Context, root string) (*types.Project, error) {
	data, err := os.ReadFile(filepath.Join(root, composePath))
	if err != nil {
		return nil, err
	}
	return loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, composePath), Content: data}},
		Environment: types.Mapping{},
	}, loader.WithProfiles([]string{"*"}))
}

// composeDeployment is what checkCompose found, for other checks.
type composeDeployment struct {
	Config     *config.Config // the reghost config the replicas and loaders mount
	ConfigFile string         // that config on the host
	ConfigPath string         // and in the containers (-config, --config)
	TokenEnv   string         // the replicas' environment variable holding the token
	// Images are the images run, by role: composeReghostName (the
	// replicas and the loaders), composeEnvoy, composeRedis.
	Images   map[string]string
	EnvoyLua []byte
	// EnvoyConcurrency is Envoy's --concurrency, 0 without one.
	EnvoyConcurrency int
	Redis            redisServer
	// Loaders are the loader services' command lines, by service.
	Loaders map[string]loaderArgs
}

// mountFor returns the mount of s that file is in: the one whose target
// is the deepest directory holding it.
func mountFor(s types.ServiceConfig, file string) (types.ServiceVolumeConfig, bool) {
	var best types.ServiceVolumeConfig
	found := false
	for _, v := range s.Volumes {
		if within(file, v.Target) && (!found || len(v.Target) > len(best.Target)) {
			best, found = v, true
		}
	}
	return best, found
}

// serviceNames are the names s answers to on the compose network: its
// own and its aliases.
func serviceNames(s types.ServiceConfig) []string {
	names := []string{s.Name}
	for _, n := range s.Networks {
		if n != nil {
			names = append(names, n.Aliases...)
		}
	}
	return names
}

// fileLoc is where a data file is: a volume and the path in it.
type fileLoc struct{ volume, rel string }

func (l fileLoc) String() string { return l.volume + ":/" + l.rel }

// volumeLoc is where file is in s: on a named volume, or ok is false.
func volumeLoc(s types.ServiceConfig, file string) (types.ServiceVolumeConfig, fileLoc, bool) {
	m, ok := mountFor(s, file)
	if !ok || m.Type != types.VolumeTypeVolume {
		return m, fileLoc{}, false
	}
	rel, _ := filepath.Rel(m.Target, file)
	return m, fileLoc{m.Source, filepath.ToSlash(rel)}, true
}

// checkCompose checks the compose project loaded from root against the
// image, the reghost config it mounts and the Envoy config it mounts.
func checkCompose(p *types.Project, root string, img image) (composeDeployment, problems) {
	var dep composeDeployment
	var pr problems
	dep.Images, dep.Loaders = map[string]string{}, map[string]loaderArgs{}
	names := slices.Sorted(maps.Keys(p.Services))
	if !slices.Equal(names, composeServices) {
		pr.add("compose: services %q; want %q", names, composeServices)
	}
	for _, n := range composeServices {
		if _, ok := p.Services[n]; !ok {
			return dep, pr
		}
	}
	ev, rd := p.Services[composeEnvoy], p.Services[composeRedis]

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

	// Every service: read-only root, no capabilities, no new privileges,
	// not root.
	for _, name := range composeServices {
		s := p.Services[name]
		if !s.ReadOnly {
			pr.add("compose: %s has no read_only: true; it writes only to its volumes and tmpfs", s.Name)
		}
		if !slices.Contains(s.CapDrop, "ALL") || len(s.CapAdd) > 0 {
			pr.add("compose: %s does not drop all capabilities (cap_drop: %q, cap_add: %q)", s.Name, s.CapDrop, s.CapAdd)
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") && !slices.Contains(s.SecurityOpt, "no-new-privileges") {
			pr.add("compose: %s has no security_opt no-new-privileges:true (security_opt: %q)", s.Name, s.SecurityOpt)
		}
		uid, _, _ := strings.Cut(s.User, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			pr.add("compose: %s user %q is not a numeric non-root user", s.Name, s.User)
		}
	}

	// Every service running reghost's image: built from the Dockerfile
	// (never pulled: there is no such image to pull), as its user, with
	// its volumes on directories the image makes that user's.
	reghostImage := p.Services[composeReplicas[0]].Image
	dep.Images[composeReghostName], dep.Images[composeEnvoy], dep.Images[composeRedis] = reghostImage, ev.Image, rd.Image
	for _, name := range append(slices.Clone(composeReplicas), composeLoader, composeLoaderGeoIP) {
		s := p.Services[name]
		if s.Build == nil || s.Build.Context != root || (s.Build.Dockerfile != "" && s.Build.Dockerfile != dockerfilePath) {
			pr.add("compose: %s does not build the repository's Dockerfile (build: %+v)", name, s.Build)
		}
		if s.Image != reghostImage {
			pr.add("compose: %s runs image %q, %s %q: one image, built once", name, s.Image, composeReplicas[0], reghostImage)
		}
		if s.User != img.User {
			pr.add("compose: %s user %q is not the image's USER %q", name, s.User, img.User)
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeVolume && !slices.Contains(img.OwnedDirs, v.Target) {
				pr.add("compose: %s mounts volume %s at %s, which the image does not make its user's (%q): a new volume there would be root's, and %s could not write to it", name, v.Source, v.Target, img.OwnedDirs, img.User)
			}
		}
	}

	// Redis: pinned, persistent, never evicting, reached over the
	// compose network only.
	if !redisPatchRelease.MatchString(rd.Image) {
		pr.add("compose: redis image %q is not a patch release (redis:X.Y.Z)", rd.Image)
	}
	if len(rd.Entrypoint) > 0 {
		pr.add("compose: redis overrides the image's entry point")
	}
	rs, err := parseRedisCommand(rd.Command)
	if err != nil {
		pr.add("compose: redis: %v", err)
	}
	dep.Redis = rs
	checkRedisServer(&pr, "compose: redis", rs)
	if len(rd.Ports) > 0 {
		pr.add("compose: redis publishes %+v: only the replicas use it, over the compose network", rd.Ports)
	}
	if m, ok := mountFor(rd, path.Join(rs.Dir, "appendonlydir")); !ok || m.Type != types.VolumeTypeVolume || m.ReadOnly {
		pr.add("compose: redis: no writable named volume at its dir %s: its append-only file would go with the container", rs.Dir)
	}
	if rd.User != fmt.Sprintf("%d:%d", redisUser, redisUser) {
		pr.add("compose: redis user %q is not the image's redis user %d:%d", rd.User, redisUser, redisUser)
	}

	// The replicas: one config, one Redis, one set of data files, each its
	// own data_dir.
	var lport int
	admin := map[string]string{}       // published admin host port -> replica
	dataVolumes := map[string]string{} // data_dir volume -> replica
	shared := map[string]fileLoc{}     // data file -> where the first replica reads it
	for i, name := range composeReplicas {
		rg := p.Services[name]
		if !slices.Contains(rg.Tmpfs, "/tmp") {
			pr.add("compose: %s has no tmpfs /tmp (tmpfs: %q)", name, rg.Tmpfs)
		}
		if len(rg.Entrypoint) > 0 {
			pr.add("compose: %s overrides the image's entry point %q", name, img.Entrypoint)
		}
		args := []string(rg.Command)
		if len(args) == 0 {
			args = img.Cmd
		}
		cfgPath, err := parseServerArgs(args)
		if err != nil {
			pr.add("compose: %s: %v", name, err)
		}
		file := binds(rg)[cfgPath]
		switch {
		case file == "":
			pr.add("compose: %s mounts no file at -config %s", name, cfgPath)
			return dep, pr
		case i == 0:
			dep.ConfigFile, dep.ConfigPath = file, cfgPath
			cfg, err := config.Load(file)
			if err != nil {
				pr.add("compose: %s's config: %v", name, err)
				return dep, pr
			}
			dep.Config = cfg
		case file != dep.ConfigFile || cfgPath != dep.ConfigPath:
			pr.add("compose: %s runs %s (-config %s), %s runs %s (-config %s): replicas sharing a store run one config", name, file, cfgPath, composeReplicas[0], dep.ConfigFile, dep.ConfigPath)
			return dep, pr
		}
		cfg := dep.Config

		// Its listeners: public for Envoy only, admin on the host's
		// loopback.
		lhost, lp, err := splitListen(cfg.Listen)
		if err != nil || !unspecifiedHost(lhost) {
			pr.add("compose: %s: listen %q is not reachable from Envoy's container", dep.ConfigFile, cfg.Listen)
		}
		lport = lp
		ahost, aport, err := splitListen(cfg.AdminListen)
		if err != nil || !unspecifiedHost(ahost) {
			pr.add("compose: %s: admin_listen %q is unreachable through the published port", dep.ConfigFile, cfg.AdminListen)
		}
		adminPublished := false
		for _, port := range rg.Ports {
			switch {
			case int(port.Target) == lport:
				pr.add("compose: %s publishes its public listener (%s:%d): clients would bypass Envoy", name, port.Published, port.Target)
			case int(port.Target) == aport && port.HostIP == "127.0.0.1":
				adminPublished = true
				if other, dup := admin[port.Published]; dup {
					pr.add("compose: %s and %s both publish their admin listener on 127.0.0.1:%s", other, name, port.Published)
				}
				admin[port.Published] = name
			default:
				pr.add("compose: %s publishes %s:%s:%d; only the admin listener, on 127.0.0.1", name, port.HostIP, port.Published, port.Target)
			}
		}
		if !adminPublished {
			pr.add("compose: %s's admin listener (port %d) is not published on 127.0.0.1", name, aport)
		}

		// Its data_dir: a volume of its own (its view of the store), at a
		// directory the image declares.
		var dataVolume string
		for _, v := range rg.Volumes {
			if v.Target == cfg.DataDir && v.Type == types.VolumeTypeVolume && !v.ReadOnly {
				dataVolume = v.Source
			}
		}
		if dataVolume == "" {
			pr.add("compose: %s has no writable named volume at data_dir %s", name, cfg.DataDir)
		} else if other, dup := dataVolumes[dataVolume]; dup {
			pr.add("compose: %s and %s share the data_dir volume %s: each replica keeps its own last view of the store there", other, name, dataVolume)
		} else {
			dataVolumes[dataVolume] = name
		}

		// The data files: one volume for all replicas, which only read it.
		for _, f := range dataFiles(cfg) {
			m, loc, ok := volumeLoc(rg, f)
			switch {
			case !ok:
				pr.add("compose: %s: %s is on no named volume (on the read-only root, or a bind mount), where the loader cannot put it", name, f)
				continue
			case m.Source == dataVolume:
				pr.add("compose: %s: %s is in the replica's own volume %s, which the loader does not write and the other replicas do not see", name, f, dataVolume)
			case !m.ReadOnly:
				pr.add("compose: %s mounts volume %s (with %s) writable; the replicas only read the data files, the loader writes them", name, m.Source, f)
			}
			if i == 0 {
				shared[f] = loc
			} else if shared[f] != loc {
				pr.add("compose: %s reads %s from %s, %s from %s: the replicas would decide from different data", name, f, loc, composeReplicas[0], shared[f])
			}
		}

		// The admin token: from the environment (see app.adminToken).
		if _, ok := rg.Environment[tokenEnv]; ok {
			dep.TokenEnv = tokenEnv
		} else {
			pr.add("compose: %s's environment has no %s", name, tokenEnv)
		}
		if !slices.Contains(serviceNames(rg), composeReghostName) {
			pr.add("compose: %s does not answer to %q (names %q): Envoy would not send it anything", name, composeReghostName, serviceNames(rg))
		}
	}
	cfg := dep.Config
	if !slices.Contains(img.Volumes, cfg.DataDir) {
		pr.add("compose: data_dir %s is not the image's VOLUME %q", cfg.DataDir, img.Volumes)
	}
	if cfg.Admin.TokenFile != "" {
		pr.add("compose: admin.token_file %s; docker-compose.yml passes %s", cfg.Admin.TokenFile, tokenEnv)
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
	// The store: the Redis service, the same for every replica (they run
	// one config).
	if err := checkStoreURL(cfg.Store, serviceNames(rd), rs.Port); err != nil {
		pr.add("compose: %s: %v", dep.ConfigFile, err)
	}

	// The loaders: the replicas' config, writing the data files where the
	// replicas read them, their lock and state in a volume of their own.
	commands := map[string]string{} // loader command -> service
	for _, name := range []string{composeLoader, composeLoaderGeoIP} {
		s := p.Services[name]
		if want := img.BinDir + loaderBinary; !slices.Equal(s.Entrypoint, []string{want}) {
			pr.add("compose: %s's entrypoint %q is not [%q]", name, s.Entrypoint, want)
		}
		la, err := parseLoaderArgs(s.Command)
		if err != nil {
			pr.add("compose: %s: %v", name, err)
			continue
		}
		dep.Loaders[name] = la
		if other, dup := commands[la.Command]; dup {
			pr.add("compose: %s and %s both run loader %s", other, name, la.Command)
		}
		commands[la.Command] = name
		if f := binds(s)[la.Config]; f != dep.ConfigFile {
			pr.add("compose: %s reads %q at --config %s, not the replicas' config %s: it would write elsewhere than they read", name, f, la.Config, dep.ConfigFile)
		}
		if s.Restart != "" && s.Restart != types.RestartPolicyNo {
			pr.add("compose: %s has restart %q: the loader runs once and exits, and would run again and again", name, s.Restart)
		}
		for _, f := range dataFiles(cfg) {
			m, loc, ok := volumeLoc(s, f)
			switch {
			case !ok || loc != shared[f]:
				pr.add("compose: %s writes %s to %s; the replicas read it from %s", name, f, loc, shared[f])
			case m.ReadOnly:
				pr.add("compose: %s mounts volume %s (with %s) read-only: it could not install the file", name, m.Source, f)
			}
		}
		m, ok := mountFor(s, cfg.DataDir)
		switch {
		case !ok || m.Target != cfg.DataDir || m.Type != types.VolumeTypeVolume || m.ReadOnly:
			pr.add("compose: %s has no writable named volume at data_dir %s for its lock and state: every run would download everything again", name, cfg.DataDir)
		case dataVolumes[m.Source] != "":
			pr.add("compose: %s keeps its lock and state in volume %s, %s's own data_dir", name, m.Source, dataVolumes[m.Source])
		}
	}
	for _, c := range []struct{ command, service string }{{loaderCloud, composeLoader}, {loaderGeoIP, composeLoaderGeoIP}} {
		if commands[c.command] != c.service {
			pr.add("compose: loader %s is run by %q; want %s", c.command, commands[c.command], c.service)
		}
	}
	if lc := p.Services[composeLoader]; len(lc.Profiles) > 0 {
		pr.add("compose: %s has profiles %q: docker compose up would not run it, and nothing would fetch the cloud ranges", composeLoader, lc.Profiles)
	}
	if lg, la := p.Services[composeLoaderGeoIP], dep.Loaders[composeLoaderGeoIP]; la.Command == loaderGeoIP {
		if len(lg.Profiles) == 0 {
			pr.add("compose: %s has no profile: docker compose up would run it without MaxMind credentials, and it would fail", composeLoaderGeoIP)
		}
		checkComposeMaxMind(&pr, p, root, lg, la)
	}

	// Envoy: pinned, published, its files mounted, pointing at the
	// replicas.
	if i := strings.LastIndex(ev.Image, ":"); i < 0 || strings.Contains(ev.Image[i:], "/") || ev.Image[i+1:] == "latest" {
		pr.add("compose: envoy image %q has no version tag", ev.Image)
	}
	for _, name := range composeReplicas {
		if _, ok := ev.DependsOn[name]; !ok {
			pr.add("compose: envoy does not depend on %s", name)
		}
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
	if ep.Host != composeReghostName {
		pr.add("compose: envoy.yaml's cluster %s goes to %q, not %q, the name the replicas answer to", envoyCluster, ep.Host, composeReghostName)
	}
	for _, name := range names {
		if !slices.Contains(composeReplicas, name) && slices.Contains(serviceNames(p.Services[name]), ep.Host) {
			pr.add("compose: %s answers to %q too: Envoy would send it reghost's requests", name, ep.Host)
		}
	}
	if ep.Port != lport {
		pr.add("compose: envoy.yaml's cluster %s goes to port %d; reghost listens on %d (%s)", envoyCluster, ep.Port, lport, cfg.Listen)
	}
	return dep, pr
}

// checkComposeMaxMind checks that the geoip loader s (command line la)
// gets its MaxMind credentials: the account ID from the environment or
// the command line, the license key from a compose secret (never on the
// command line, where the process list shows it).
func checkComposeMaxMind(pr *problems, p *types.Project, root string, s types.ServiceConfig, la loaderArgs) {
	if la.AccountID == "" {
		if _, ok := s.Environment["MAXMIND_ACCOUNT_ID"]; !ok {
			pr.add("compose: %s has no MAXMIND_ACCOUNT_ID in its environment and no --account-id", s.Name)
		}
	}
	if la.LicenseKey != "" {
		pr.add("compose: %s has --license-key on its command line, where the process list shows it; use --license-key-file and a secret", s.Name)
	}
	if la.LicenseKeyFile == "" {
		pr.add("compose: %s has no --license-key-file", s.Name)
		return
	}
	for _, sec := range s.Secrets {
		target := sec.Target
		if target == "" {
			target = sec.Source
		}
		if !path.IsAbs(target) {
			target = path.Join(composeSecretsDir, target)
		}
		if target != la.LicenseKeyFile {
			continue
		}
		ps, ok := p.Secrets[sec.Source]
		if !ok || ps.File == "" || !strings.HasPrefix(ps.File, root+string(filepath.Separator)) {
			pr.add("compose: secret %s (%s's --license-key-file) is not a file in the repository (%+v)", sec.Source, s.Name, ps)
		}
		return
	}
	pr.add("compose: %s's --license-key-file %s is none of its secrets (%+v)", s.Name, la.LicenseKeyFile, s.Secrets)
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
	if dep.TokenEnv != tokenEnv || dep.Config == nil || len(dep.Loaders) != 2 {
		t.Fatalf("compose: token env %q, config %v, loaders %v", dep.TokenEnv, dep.Config, dep.Loaders)
	}
	for name := range dep.Loaders {
		checkLoaderArgs(t, "compose: "+name, p.Services[name].Command)
	}

	const cfgFile = "deploy/compose/reghost.yaml"
	// The replicas' settings in common, and reghost-b's volumes.
	const (
		replicaLockdown = "  user: \"65532:65532\"\n  read_only: true\n  tmpfs:\n    - /tmp\n  cap_drop:\n    - ALL\n  security_opt:\n    - no-new-privileges:true\n  restart: unless-stopped\n"
		bData           = "        source: reghost-b-data\n        target: /data\n"
		bGeo            = "      - type: volume\n        source: geodata\n        target: /data/geo\n        read_only: true\n    ports:\n      - \"127.0.0.1:9091:9090\"\n"
		loaderGeo       = "      source: geodata\n      target: /data/geo\n  user:"
		redisCommand    = `["redis-server", "--appendonly", "yes", "--maxmemory-policy", "noeviction", "--maxmemory", "256mb"]`
	)
	broken := []struct {
		name    string
		edits   []edit
		want    string
		loadErr bool // the compose loader itself refuses it
	}{
		{name: "unknown key", edits: []edit{{composePath, "  user: \"65532:65532\"\n  read_only: true\n  tmpfs", "  user: \"65532:65532\"\n  readonly: true\n  tmpfs"}}, want: "readonly", loadErr: true},
		{name: "writable root", edits: []edit{{composePath, replicaLockdown, strings.Replace(replicaLockdown, "read_only: true", "read_only: false", 1)}}, want: "reghost-a has no read_only: true"},
		{name: "root user", edits: []edit{{composePath, replicaLockdown, strings.Replace(replicaLockdown, `"65532:65532"`, `"0:0"`, 1)}}, want: `reghost-b user "0:0" is not a numeric non-root user`},
		{name: "reghost new privileges", edits: []edit{{composePath, replicaLockdown, strings.Replace(replicaLockdown, "no-new-privileges:true", "no-new-privileges:false", 1)}}, want: "reghost-a has no security_opt no-new-privileges:true"},
		{name: "public listener published", edits: []edit{{composePath, `      - "127.0.0.1:9090:9090"`, "      - \"127.0.0.1:9090:9090\"\n      - \"8081:8080\""}}, want: "reghost-a publishes its public listener"},
		{name: "admin on every interface", edits: []edit{{composePath, `"127.0.0.1:9091:9090"`, `"9091:9090"`}}, want: "reghost-b publishes :9091:9090"},
		{name: "admin ports collide", edits: []edit{{composePath, `"127.0.0.1:9091:9090"`, `"127.0.0.1:9090:9090"`}}, want: "reghost-a and reghost-b both publish their admin listener on 127.0.0.1:9090"},
		{name: "config elsewhere", edits: []edit{{composePath, "        source: ./deploy/compose/reghost.yaml\n        target: /etc/reghost/config.yaml\n        read_only: true\n      - type: volume\n        source: reghost-b-data", "        source: ./deploy/compose/reghost.yaml\n        target: /etc/reghost.yaml\n        read_only: true\n      - type: volume\n        source: reghost-b-data"}}, want: "reghost-b mounts no file at -config /etc/reghost/config.yaml"},
		{name: "config missing", edits: []edit{{composePath, "source: ./deploy/compose/reghost.yaml", "source: ./deploy/compose/missing.yaml"}}, want: "does not exist in the repository"},
		{name: "replicas run two configs", edits: []edit{{composePath, "      - type: bind\n        source: ./deploy/compose/reghost.yaml\n        target: /etc/reghost/config.yaml\n        read_only: true\n      - type: volume\n        source: reghost-b-data", "      - type: bind\n        source: ./deploy/envoy/envoy.yaml\n        target: /etc/reghost/config.yaml\n        read_only: true\n      - type: volume\n        source: reghost-b-data"}}, want: "replicas sharing a store run one config"},
		{name: "no data volume", edits: []edit{{composePath, bData, "        source: reghost-b-data\n        target: /var/lib/reghost\n"}}, want: "reghost-b has no writable named volume at data_dir /data"},
		{name: "data volume shared", edits: []edit{{composePath, bData, "        source: reghost-a-data\n        target: /data\n"}}, want: "reghost-a and reghost-b share the data_dir volume reghost-a-data"},
		{name: "data files not shared", edits: []edit{{composePath, bGeo, strings.Replace(bGeo, "source: geodata", "source: reghost-b-data", 1)}}, want: "reghost-b: /data/geo/GeoLite2-Country.mmdb is in the replica's own volume reghost-b-data"},
		{name: "data files writable", edits: []edit{{composePath, bGeo, strings.Replace(bGeo, "        read_only: true\n", "", 1)}}, want: "reghost-b mounts volume geodata (with /data/geo/GeoLite2-Country.mmdb) writable"},
		{name: "data files unmounted", edits: []edit{{composePath, bGeo, strings.Replace(bGeo, "target: /data/geo", "target: /srv/geo", 1)}}, want: "reghost-b: /data/geo/GeoLite2-Country.mmdb is in the replica's own volume reghost-b-data"},
		{name: "data files on the root", edits: []edit{{cfgFile, "country: /data/geo/GeoLite2-Country.mmdb", "country: /etc/GeoLite2-Country.mmdb"}}, want: "reghost-a: /etc/GeoLite2-Country.mmdb is on no named volume"},
		{name: "data volume owned by root", edits: []edit{{composePath, bGeo, strings.Replace(bGeo, "target: /data/geo", "target: /geo", 1)}, {cfgFile, "/data/geo/", "/geo/"}, {cfgFile, "/data/geo/", "/geo/"}}, want: "reghost-b mounts volume geodata at /geo, which the image does not make its user's"},
		{name: "no alias", edits: []edit{{composePath, "      aliases:\n        - reghost\n", "      aliases:\n        - redirector\n"}}, want: `reghost-a does not answer to "reghost"`},
		{name: "Redis answers to reghost", edits: []edit{{composePath, "    image: redis:8.8.3-alpine\n", "    image: redis:8.8.3-alpine\n    networks:\n      default:\n        aliases: [reghost]\n"}}, want: `redis answers to "reghost" too`},
		{name: "store embedded", edits: []edit{{cfgFile, "store: redis://redis:6379/0", `store: ""`}}, want: `store is ""`},
		{name: "store elsewhere", edits: []edit{{cfgFile, "store: redis://redis:6379/0", "store: redis://cache:6379/0"}}, want: "goes to cache:6379; the Redis is redis:6379"},
		{name: "Redis on another port", edits: []edit{{composePath, `["redis-server", "--appendonly"`, `["redis-server", "--port", "6380", "--appendonly"`}}, want: "goes to redis:6379; the Redis is redis:6380"},
		{name: "Redis evicts", edits: []edit{{composePath, `"--maxmemory-policy", "noeviction"`, `"--maxmemory-policy", "allkeys-lru"`}}, want: `--maxmemory-policy "allkeys-lru"; want noeviction`},
		{name: "Redis without AOF", edits: []edit{{composePath, `"--appendonly", "yes", `, ""}}, want: `--appendonly ""; want yes`},
		{name: "Redis config file", edits: []edit{{composePath, redisCommand, `["redis-server", "/etc/redis.conf"]`}}, want: "before any --option"},
		{name: "Redis unpinned", edits: []edit{{composePath, "redis:8.8.3-alpine", "redis:8-alpine"}}, want: `redis image "redis:8-alpine" is not a patch release`},
		{name: "Redis published", edits: []edit{{composePath, "        target: /data\n    healthcheck:", "        target: /data\n    ports:\n      - \"6379:6379\"\n    healthcheck:"}}, want: "redis publishes"},
		{name: "Redis without volume", edits: []edit{{composePath, "        source: redis-data\n        target: /data\n", "        source: redis-data\n        target: /var/lib/redis\n"}}, want: "redis: no writable named volume at its dir /data"},
		{name: "Redis as root", edits: []edit{{composePath, `user: "999:999"`, `user: "0:0"`}}, want: `redis user "0:0" is not a numeric non-root user`},
		{name: "Redis capabilities", edits: []edit{{composePath, "    user: \"999:999\"\n    read_only: true\n    cap_drop:\n      - ALL\n", "    user: \"999:999\"\n    read_only: true\n    cap_drop:\n      - NET_RAW\n"}}, want: "redis does not drop all capabilities"},
		{name: "loader writes elsewhere", edits: []edit{{composePath, loaderGeo, "      source: loader-data\n      target: /data/geo\n  user:"}}, want: "loader writes /data/geo/GeoLite2-Country.mmdb to loader-data:/GeoLite2-Country.mmdb; the replicas read it from geodata:/GeoLite2-Country.mmdb"},
		{name: "loader into a subdirectory", edits: []edit{{composePath, loaderGeo, "      source: geodata\n      target: /data/geo/x\n  user:"}}, want: "the replicas read it from geodata:/GeoLite2-Country.mmdb"},
		{name: "loader read-only", edits: []edit{{composePath, loaderGeo, "      source: geodata\n      target: /data/geo\n      read_only: true\n  user:"}}, want: "loader mounts volume geodata (with /data/geo/GeoLite2-Country.mmdb) read-only"},
		{name: "loader state in a replica's volume", edits: []edit{{composePath, "      source: loader-data\n", "      source: reghost-a-data\n"}}, want: "loader keeps its lock and state in volume reghost-a-data, reghost-a's own data_dir"},
		{name: "loader state lost", edits: []edit{{composePath, "    - type: volume\n      source: loader-data\n      target: /data\n", ""}}, want: "loader has no writable named volume at data_dir /data"},
		{name: "loader other config", edits: []edit{{composePath, `command: ["cloud", "--config", "/etc/reghost/config.yaml"]`, `command: ["cloud", "--config", "/etc/reghost/other.yaml"]`}}, want: "loader reads \"\" at --config /etc/reghost/other.yaml"},
		{name: "loader without config", edits: []edit{{composePath, `command: ["cloud", "--config", "/etc/reghost/config.yaml"]`, `command: ["cloud", "--data-dir", "/data/geo"]`}}, want: "loader: loader arguments"},
		{name: "loader unknown flag", edits: []edit{{composePath, `command: ["cloud", "--config", "/etc/reghost/config.yaml"]`, `command: ["cloud", "--config", "/etc/reghost/config.yaml", "--edition", "GeoLite2-ASN"]`}}, want: "flag provided but not defined: -edition"},
		{name: "loader is the server", edits: []edit{{composePath, `  entrypoint: ["/usr/local/bin/loader"]`, `  entrypoint: ["/usr/local/bin/server"]`}}, want: `loader's entrypoint ["/usr/local/bin/server"] is not ["/usr/local/bin/loader"]`},
		{name: "loader restarted", edits: []edit{{composePath, `  restart: "no"`, `  restart: unless-stopped`}}, want: `loader has restart "unless-stopped"`},
		{name: "loader as root", edits: []edit{{composePath, "  user: \"65532:65532\"\n  read_only: true\n  cap_drop:", "  user: \"0:0\"\n  read_only: true\n  cap_drop:"}}, want: `loader user "0:0" is not a numeric non-root user`},
		{name: "loader cloud on request", edits: []edit{{composePath, "  loader:\n    <<: *loader\n", "  loader:\n    <<: *loader\n    profiles: [cloud]\n"}}, want: "docker compose up would not run it"},
		{name: "loader geoip always", edits: []edit{{composePath, "    profiles:\n      - geoip\n", ""}}, want: "loader-geoip has no profile"},
		{name: "loader geoip twice", edits: []edit{{composePath, `command: ["cloud", "--config"`, `command: ["geoip", "--config"`}}, want: "loader and loader-geoip both run loader geoip"},
		{name: "MaxMind key on the command line", edits: []edit{{composePath, `"--license-key-file", "/run/secrets/maxmind_license_key"]`, `"--license-key", "xxxx"]`}}, want: "--license-key on its command line"},
		{name: "MaxMind key not a secret", edits: []edit{{composePath, `"--license-key-file", "/run/secrets/maxmind_license_key"]`, `"--license-key-file", "/etc/maxmind.key"]`}}, want: "--license-key-file /etc/maxmind.key is none of its secrets"},
		{name: "MaxMind account", edits: []edit{{composePath, "      MAXMIND_ACCOUNT_ID: ${MAXMIND_ACCOUNT_ID:-}\n", "      MAXMIND_ACCOUNT: ${MAXMIND_ACCOUNT_ID:-}\n"}}, want: "no MAXMIND_ACCOUNT_ID"},
		{name: "Lua not mounted", edits: []edit{{composePath, "target: /etc/envoy/reghost.lua", "target: /etc/envoy/other.lua"}}, want: "reads /etc/envoy/reghost.lua, which is not mounted"},
		{name: "Envoy port", edits: []edit{{composePath, `      - "8443:8443"`, `      - "8443:8444"`}}, want: "does not publish host port 8443"},
		{name: "Envoy unpinned", edits: []edit{{composePath, "envoyproxy/envoy:v1.36.13", "envoyproxy/envoy"}}, want: "has no version tag"},
		{name: "Envoy before a replica", edits: []edit{{composePath, "      - reghost-a\n      - reghost-b\n", "      - reghost-a\n"}}, want: "envoy does not depend on reghost-b"},
		{name: "no token variable", edits: []edit{{composePath, "REGHOST_ADMIN_TOKEN: ${REGHOST_ADMIN_TOKEN:-}", "ADMIN_TOKEN: ${REGHOST_ADMIN_TOKEN:-}"}}, want: "environment has no REGHOST_ADMIN_TOKEN"},
		{name: "two images", edits: []edit{{composePath, "  build: .\n  image: reghost:dev\n  entrypoint", "  build: .\n  image: reghost-loader:dev\n  entrypoint"}}, want: `loader runs image "reghost-loader:dev", reghost-a "reghost:dev"`},
		{name: "listen port", edits: []edit{{cfgFile, `listen: ":8080"`, `listen: ":8081"`}}, want: "goes to port 8080; reghost listens on 8081"},
		{name: "admin on loopback", edits: []edit{{cfgFile, `admin_listen: "0.0.0.0:9090"`, `admin_listen: "127.0.0.1:9090"`}}, want: "admin_listen \"127.0.0.1:9090\" is unreachable"},
		{name: "trusted proxies", edits: []edit{{cfgFile, "trusted_proxies: [172.16.0.0/12, 192.168.0.0/16]", "trusted_proxies: [172.16.0.0/12]"}}, want: "do not cover Docker's address pool 192.168.0.0/16"},
		{name: "config invalid", edits: []edit{{cfgFile, "redirect_status: 307", "redirect_status: 301"}}, want: "permanent redirect"},
		{name: "Envoy writable root", edits: []edit{{composePath, "    user: \"101:101\"\n    read_only: true\n", "    user: \"101:101\"\n    read_only: false\n"}}, want: "envoy has no read_only: true"},
		{name: "Envoy as root", edits: []edit{{composePath, `user: "101:101"`, `user: "0:0"`}}, want: `envoy user "0:0" is not the image's envoy user`},
		{name: "Envoy capabilities", edits: []edit{{composePath, "    user: \"101:101\"\n    read_only: true\n    cap_drop:\n      - ALL\n", "    user: \"101:101\"\n    read_only: true\n    cap_drop:\n      - NET_RAW\n"}}, want: "envoy does not drop all capabilities"},
		{name: "Envoy entry point", edits: []edit{{composePath, `    command: ["-c"`, `    entrypoint: ["envoy"]` + "\n" + `    command: ["-c"`}}, want: "overrides the image's entry point"},
		{name: "Envoy command", edits: []edit{{composePath, `command: ["-c", "/etc/envoy/envoy.yaml",`, `command: ["envoy", "-c", "/etc/envoy/envoy.yaml",`}}, want: "does not start with an option"},
		{name: "Envoy config elsewhere", edits: []edit{{composePath, `command: ["-c", "/etc/envoy/envoy.yaml",`, `command: ["-c", "/etc/envoy/other.yaml",`}}, want: "envoy mounts nothing at /etc/envoy/other.yaml"},
		{name: "Envoy no concurrency", edits: []edit{{composePath, `, "--concurrency", "2"]`, `]`}}, want: "envoy has no --concurrency"},
		{name: "cluster elsewhere", edits: []edit{{envoyConfigPath, "{address: reghost, port_value: 8080}", "{address: redirector, port_value: 8080}"}}, want: `goes to "redirector", not "reghost"`},
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

// TestComposeRun runs what docker-compose.yml runs, as it configures it,
// without Docker: a real redis-server with the redis service's arguments,
// the loaders with their services' command lines, then both replicas'
// servers with the image's arguments and the config they mount. Each
// named volume is one directory, seen by every process that mounts it
// where compose mounts it. Only what a machine without Docker must change
// is changed: the listeners move to free loopback ports, the store to the
// test's Redis, and the loaders fetch from local fakes of the providers
// (the repository's snapshots) and of MaxMind.
func TestComposeRun(t *testing.T) {
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
	bins := buildImageBinaries(t).bins

	// Redis with the service's arguments; where it listens and keeps its
	// files are the test's.
	rs := redistest.Start(t, redistest.Persistent(), redistest.Args(testRedisArgs(dep.Redis)...))

	// The volumes, and the config as each service sees it.
	scratch := t.TempDir()
	volumes := map[string]string{}
	hostPath := func(s types.ServiceConfig, file string) string {
		t.Helper()
		m, ok := mountFor(s, file)
		if !ok {
			t.Fatalf("%s: %s is on no mount", s.Name, file)
		}
		rel, _ := filepath.Rel(m.Target, file)
		switch m.Type {
		case types.VolumeTypeVolume:
			d, ok := volumes[m.Source]
			if !ok {
				d = filepath.Join(scratch, "volumes", m.Source)
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
				volumes[m.Source] = d
			}
			return filepath.Join(d, rel)
		case types.VolumeTypeBind:
			return filepath.Join(m.Source, rel)
		}
		t.Fatalf("%s: %s is on a %s mount", s.Name, file, m.Type)
		return ""
	}
	configFor := func(s types.ServiceConfig) string {
		t.Helper()
		src, err := os.ReadFile(dep.ConfigFile)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(src, &m); err != nil {
			t.Fatal(err)
		}
		m["listen"], m["admin_listen"], m["store"] = "127.0.0.1:0", "127.0.0.1:0", rs.URL()
		m["data_dir"] = hostPath(s, dep.Config.DataDir)
		for _, k := range []string{"geoip", "cloud_ranges"} {
			sub, _ := m[k].(map[string]any)
			for kk, v := range sub {
				sub[kk] = hostPath(s, v.(string))
			}
		}
		out, err := yaml.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(scratch, s.Name+".yaml")
		if err := os.WriteFile(file, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return file
	}
	// replace returns args with the value of flag (-flag or --flag) set
	// to value.
	replace := func(args []string, flag, value string) []string {
		t.Helper()
		args = slices.Clone(args)
		for i, a := range args {
			if (a == "-"+flag || a == "--"+flag) && i+1 < len(args) {
				args[i+1] = value
				return args
			}
		}
		t.Fatalf("%q has no --%s", args, flag)
		return nil
	}

	// The loaders: cloud ranges from the repository's snapshots, GeoIP
	// from a fake MaxMind with the key in the secret's place.
	providers := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(root, "testdata", "cloud"))))
	t.Cleanup(providers.Close)
	mm := loadertest.NewMaxMind(t)
	for _, edition := range []string{"GeoLite2-Country", "GeoLite2-ASN"} {
		db := loadertest.CountryDB(t, time.Now().Add(-time.Hour), "US")
		if edition == "GeoLite2-ASN" {
			db = loadertest.ASNDB(t, time.Now().Add(-time.Hour), "Google LLC")
		}
		mm.Publish(edition, loadertest.Release{Date: "20261201", Archive: loadertest.Archive(t, edition, "20261201", db)})
	}
	keyFile := filepath.Join(scratch, "maxmind-license-key")
	if err := os.WriteFile(keyFile, []byte(mm.LicenseKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runLoader := func(name string, env []string, extra ...string) {
		t.Helper()
		s := p.Services[name]
		args := replace(s.Command, "config", configFor(s))
		cmd := exec.CommandContext(t.Context(), bins[loaderBinary], append(args, extra...)...)
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: loader %q: %v\n%s", name, cmd.Args[1:], err, out)
		}
	}
	var urls []string
	for provider, file := range dep.Config.CloudRanges {
		urls = append(urls, "--url", provider+"="+providers.URL+"/"+path.Base(file))
	}
	runLoader(composeLoader, nil, urls...)
	geoip := p.Services[composeLoaderGeoIP]
	geoip.Command = replace(geoip.Command, "license-key-file", keyFile)
	p.Services[composeLoaderGeoIP] = geoip
	runLoader(composeLoaderGeoIP, []string{"MAXMIND_ACCOUNT_ID=" + mm.AccountID}, "--base-url", mm.URL)
	for _, f := range dataFiles(dep.Config) {
		if _, err := os.Stat(hostPath(p.Services[composeReplicas[0]], f)); err != nil {
			t.Errorf("after the loaders: %v", err)
		}
	}
	// With the Redis store the loaders publish every data set there, and
	// keep their state there rather than in their data_dir.
	if n, want := rs.Do("HLEN", "{reghost}:loader-state"), int64(len(dataFiles(dep.Config))); n != want {
		t.Errorf("the loaders' state in Redis has %v data sets, want %d", n, want)
	}
	published := 0
	for _, k := range rs.Do("KEYS", "{reghost}:data:*").([]any) {
		if !strings.Contains(strings.TrimPrefix(k.(string), "{reghost}:data:"), ":") {
			published++ // a pointer, not a version's content
		}
	}
	if want := len(dataFiles(dep.Config)); published != want {
		t.Errorf("%d data sets published to Redis, want %d", published, want)
	}

	// The replicas, with the image's arguments, the token in the variable
	// compose sets.
	const token = "compose-test-token-0123456789"
	type replica struct {
		name     string
		pub, adm string
		logs     *logtest.Buffer
	}
	var replicas []*replica
	for _, name := range composeReplicas {
		s := p.Services[name]
		args := replace(img.Cmd, "config", configFor(s))
		cwd := t.TempDir()
		cmd := exec.Command(bins[serverBinary], args...)
		cmd.Dir = cwd
		cmd.Env = append(os.Environ(), dep.TokenEnv+"="+token)
		r := &replica{name: name, logs: new(logtest.Buffer)}
		cmd.Stdout, cmd.Stderr = r.logs, r.logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		waited := false
		t.Cleanup(func() {
			if !waited {
				_ = cmd.Process.Kill()
				<-exited
			}
			if t.Failed() {
				t.Logf("%s log:\n%s", name, r.logs.String())
			}
			if ents, _ := os.ReadDir(cwd); len(ents) > 0 {
				t.Errorf("%s wrote %v into its working directory; with a read-only root only its volumes are writable", name, ents)
			}
		})
		deadline := time.Now().Add(15 * time.Second)
		for {
			var ok bool
			if r.pub, r.adm, ok = logtest.ServingAddrs(r.logs.String()); ok {
				break
			}
			select {
			case err := <-exited:
				waited = true
				t.Fatalf("%s exited: %v", name, err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no \"reghost serving\" line after 15s", name)
			}
			time.Sleep(50 * time.Millisecond)
		}
		replicas = append(replicas, r)
		defer func() {
			if waited {
				return
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Error(err)
				return
			}
			select {
			case err := <-exited:
				waited = true
				if err != nil {
					t.Errorf("%s after SIGTERM: %v; want exit 0", name, err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("%s still running 15s after SIGTERM", name)
			}
		}()
	}

	client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	call := func(method, url, bearer, body string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
		if err != nil {
			return nil, nil, err
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	explain := func(r *replica, ip string) (registry, country, region string) {
		t.Helper()
		_, b, err := call(http.MethodGet, "http://"+r.adm+"/api/v1/explain?ip="+ip, token, "")
		var d struct {
			Registry string `json:"registry"`
			Facts    struct {
				Country string `json:"country"`
				Region  string `json:"region"`
			} `json:"facts"`
		}
		if err == nil {
			err = json.Unmarshal(b, &d)
		}
		if err != nil {
			t.Errorf("%s: explain %s: %v (%s)", r.name, ip, err, b)
		}
		return d.Registry, d.Facts.Country, d.Facts.Region
	}

	def := dep.Config.Default()
	for _, r := range replicas {
		pubURL, admURL := "http://"+r.pub, "http://"+r.adm
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
			resp, _, err := call(http.MethodGet, c.url, c.bearer, "")
			if err != nil {
				t.Errorf("%s: GET %s: %v", r.name, c.url, err)
				continue
			}
			if resp.StatusCode != c.status || resp.Header.Get("Location") != c.location {
				t.Errorf("%s: GET %s (token %q): %d, Location %q; want %d, %q", r.name, c.url, c.bearer, resp.StatusCode, resp.Header.Get("Location"), c.status, c.location)
			}
		}
		// The data the loaders installed decides on every replica: a GCP
		// us-east4 address (testdata/cloud/gcp-cloud.json) goes where the
		// config's cloud rule says, and the GeoIP database knows 8.8.8.8.
		// The files appear at once, but each replica loads them in its
		// own time: wait.
		deadline := time.Now().Add(10 * time.Second)
		for {
			reg, _, region := explain(r, "34.4.32.1")
			_, country, _ := explain(r, "8.8.8.8")
			if reg == "ar-us-east4" && region == "us-east4" && country == "US" {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: 34.4.32.1 goes to %q (region %q), 8.8.8.8 is in %q; want ar-us-east4 (us-east4) and US, from the loaded data", r.name, reg, region, country)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// An override written on one replica decides on the other: they
	// share the store.
	a, b := replicas[0], replicas[1]
	resp, body, err := call(http.MethodPost, "http://"+a.adm+"/api/v1/overrides", token, `{"match":{"cidr":"203.0.113.0/24"},"registries":["ar-europe-west1"]}`)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("%s: POST /api/v1/overrides: %v %v %s", a.name, resp, err, body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if reg, _, _ := explain(b, "203.0.113.7"); reg == "ar-europe-west1" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s does not apply the override written on %s within 5s", b.name, a.name)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, r := range replicas {
		if strings.Contains(r.logs.String(), "Redis may evict keys") {
			t.Errorf("%s: the store warns that Redis may evict keys: the redis service's --maxmemory-policy", r.name)
		}
	}
}
