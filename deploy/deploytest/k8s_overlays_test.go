package deploytest

import (
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/reghost/reghost/internal/config"
)

// The objects deploy/k8s's components add to the base.
const (
	k8sRedis = "redis" // Deployment, Service, NetworkPolicy (components/redis)
	// redisConfigCopy is reghost/config.yaml with store: set, which
	// components/redis puts in the ConfigMap instead.
	redisConfigCopy = "components/redis/config.yaml"
	baseConfig      = "base/reghost/config.yaml"
)

// k8sOverlays are deploy/k8s's overlays (relative to it) and the
// components each applies to the base.
var k8sOverlays = map[string]struct{ redis bool }{
	"overlays/redis": {redis: true},
}

// reghostConfig returns the config file reghost's Deployment runs, as
// its ConfigMap holds it.
func reghostConfig(c *cluster) ([]byte, bool) {
	rd, ok := c.Deployments[k8sReghost]
	if !ok || len(rd.Spec.Template.Spec.Containers) != 1 {
		return nil, false
	}
	ctr := rd.Spec.Template.Spec.Containers[0]
	cfgPath, err := parseServerArgs(ctr.Args)
	if err != nil {
		return nil, false
	}
	var p problems
	return mountedFile(&p, "", c, rd.Spec.Template.Spec, ctr, cfgPath)
}

// checkRedisConfigCopy checks that the overlay's config (overlay) is the
// base's (base) but for store: components/redis replaces the whole file.
func checkRedisConfigCopy(base, overlay []byte) problems {
	var p problems
	var b, o map[string]any
	if err := yaml.Unmarshal(base, &b); err != nil {
		p.add("k8s: %s: %v", baseConfig, err)
		return p
	}
	if err := yaml.Unmarshal(overlay, &o); err != nil {
		p.add("k8s: %s: %v", redisConfigCopy, err)
		return p
	}
	keys := map[string]bool{}
	for k := range b {
		keys[k] = true
	}
	for k := range o {
		keys[k] = true
	}
	var differ []string
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if k != "store" && !reflect.DeepEqual(b[k], o[k]) {
			differ = append(differ, k)
		}
	}
	if len(differ) > 0 {
		p.add("k8s: %s differs from %s in %q, not only store: copy it again (cp deploy/k8s/%s deploy/k8s/%s) and set store", redisConfigCopy, baseConfig, differ, baseConfig, redisConfigCopy)
	}
	return p
}

// podTemplates are the pod labels of every workload, by a name for
// messages ("Deployment reghost", "CronJob reghost-loader").
func podTemplates(c *cluster) map[string]map[string]string {
	pods := map[string]map[string]string{}
	for name, d := range c.Deployments {
		pods["Deployment "+name] = d.Spec.Template.Labels
	}
	for name, cj := range c.CronJobs {
		pods["CronJob "+name] = cj.Spec.JobTemplate.Spec.Template.Labels
	}
	return pods
}

// checkKubernetesRedis checks components/redis's objects: one Redis that
// neither evicts nor forgets, the Service reghost's store: names, and a
// NetworkPolicy admitting reghost's pods alone. cfg is reghost's config.
// It returns Redis's command line and image.
func checkKubernetesRedis(c *cluster, cfg *config.Config) (redisServer, string, problems) {
	var p problems
	d, ok := c.Deployments[k8sRedis]
	if !ok || len(d.Spec.Template.Spec.Containers) != 1 {
		p.add("k8s: no Deployment %s with one container", k8sRedis)
		return redisServer{}, "", p
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		p.add("k8s: Deployment %s: replicas %s; want 1: a second pod would be a second Redis, not a replica of the first", k8sRedis, show(d.Spec.Replicas))
	}
	pod := d.Spec.Template.Spec
	ctr := pod.Containers[0]
	if !redisPatchRelease.MatchString(ctr.Image) {
		p.add("k8s: redis image %q is not a patch release (redis:X.Y.Z)", ctr.Image)
	}
	if len(ctr.Command) > 0 {
		p.add("k8s: redis: command %q replaces the image's entry point", ctr.Command)
	}
	rs, err := parseRedisCommand(ctr.Args)
	if err != nil {
		p.add("k8s: redis: %v", err)
	}
	checkRedisServer(&p, "k8s: redis", rs)
	if _, ok := containerPort(ctr, intstr.FromInt(rs.Port)); !ok {
		p.add("k8s: redis: no container port %d, where redis-server listens", rs.Port)
	}

	// Its memory: noeviction refuses writes at maxmemory; the container's
	// limit must leave room above it (a rewrite of the append-only file
	// forks).
	limit := ctr.Resources.Limits[corev1.ResourceMemory]
	if mm, ok := parseRedisMemory(rs.Options["maxmemory"]); !ok {
		p.add("k8s: redis: --maxmemory %q: want a size, under limits.memory (%s), or Redis grows until the OOM killer ends it", rs.Options["maxmemory"], limit.String())
	} else if mm > limit.Value()*3/4 {
		p.add("k8s: redis: --maxmemory %s is more than 3/4 of limits.memory %s: a rewrite of the append-only file forks", rs.Options["maxmemory"], limit.String())
	}

	// Its data: a persistent volume, one pod at a time on it.
	m, ok := mountAt(pod, ctr, rs.Dir)
	v := volume(pod, m.Name)
	switch {
	case !ok || m.ReadOnly:
		p.add("k8s: redis: nothing writable mounted at its dir %s", rs.Dir)
	case v.PersistentVolumeClaim == nil:
		p.add("k8s: redis: %s is not a PersistentVolumeClaim: a restarted pod would come back empty, and reghost refuse writes until restored", rs.Dir)
	case c.PVCs[v.PersistentVolumeClaim.ClaimName] == nil:
		p.add("k8s: redis: PersistentVolumeClaim %s is not in the output", v.PersistentVolumeClaim.ClaimName)
	case d.Spec.Strategy.Type != "Recreate":
		p.add("k8s: Deployment %s: strategy %q; want Recreate: a new pod would start on the volume while the old one still writes to it", k8sRedis, d.Spec.Strategy.Type)
	}

	// The Service reghost's store: names.
	svc, ok := c.Services[k8sRedis]
	if !ok {
		p.add("k8s: no Service %s", k8sRedis)
		return rs, ctr.Image, p
	}
	checkSelects(&p, c, svc, k8sRedis)
	port := 0
	for _, sp := range svc.Spec.Ports {
		if n, ok := containerPort(ctr, sp.TargetPort); ok && n == rs.Port {
			port = int(sp.Port)
		}
	}
	ns := k8sNamespace
	hosts := []string{svc.Name, svc.Name + "." + ns, svc.Name + "." + ns + ".svc", svc.Name + "." + ns + ".svc.cluster.local"}
	if port == 0 {
		p.add("k8s: Service %s has no port to redis-server's %d", k8sRedis, rs.Port)
	} else if err := checkStoreURL(cfg.Store, hosts, port); err != nil {
		p.add("k8s: reghost's config: %v", err)
	}

	checkRedisPolicy(&p, c, ctr, rs.Port)
	return rs, ctr.Image, p
}

// checkRedisPolicy checks that NetworkPolicies admit reghost's pods to
// Redis's port (redisPort; ctr is Redis's container, for named ports) and
// no other pod.
func checkRedisPolicy(p *problems, c *cluster, ctr corev1.Container, redisPort int) {
	rd := c.Deployments[k8sRedis]
	pods := podTemplates(c)
	var pols []*networkingv1.NetworkPolicy
	for _, name := range slices.Sorted(maps.Keys(c.Policies)) {
		np := c.Policies[name]
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err == nil && sel.Matches(labels.Set(rd.Spec.Template.Labels)) {
			pols = append(pols, np)
		}
	}
	if len(pols) == 0 {
		p.add("k8s: no NetworkPolicy selects Deployment %s's pods: any pod could write overrides", k8sRedis)
		return
	}
	admitted := false
	for _, np := range pols {
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			p.add("k8s: NetworkPolicy %s: policyTypes %v, without Ingress: it admits everyone", np.Name, np.Spec.PolicyTypes)
		}
		for i, rule := range np.Spec.Ingress {
			where := fmt.Sprintf("k8s: NetworkPolicy %s ingress[%d]", np.Name, i)
			if len(rule.Ports) == 0 {
				p.add("%s admits to every port of Redis; want its port %d only", where, redisPort)
			}
			for _, rp := range rule.Ports {
				if rp.Port == nil {
					p.add("%s admits to every port of Redis; want its port %d only", where, redisPort)
				} else if n, ok := containerPort(ctr, *rp.Port); !ok || n != redisPort || rp.EndPort != nil {
					p.add("%s admits to port %s; want Redis's %d only", where, rp.Port.String(), redisPort)
				}
			}
			if len(rule.From) == 0 {
				p.add("%s admits every source; want reghost's pods only", where)
			}
			for _, peer := range rule.From {
				if peer.PodSelector == nil || peer.NamespaceSelector != nil || peer.IPBlock != nil {
					p.add("%s admits %+v; want reghost's pods of the namespace only (a podSelector alone)", where, peer)
					continue
				}
				sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
				if err != nil {
					p.add("%s: podSelector: %v", where, err)
					continue
				}
				for _, w := range slices.Sorted(maps.Keys(pods)) {
					if !sel.Matches(labels.Set(pods[w])) {
						continue
					}
					if w == "Deployment "+k8sReghost {
						admitted = true
					} else {
						p.add("%s admits %s's pods; want reghost's only", where, w)
					}
				}
			}
		}
	}
	if !admitted {
		p.add("k8s: NetworkPolicy: reghost's pods are not admitted to Redis's port %d: every write would fail", redisPort)
	}
}

// parseRedisMemory reads a redis-server memory size: bytes, or k, kb,
// m, mb, g, gb (k = 1000, kb = 1024), any letter case.
func parseRedisMemory(s string) (int64, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"gb", 1 << 30}, {"mb", 1 << 20}, {"kb", 1 << 10}, {"g", 1e9}, {"m", 1e6}, {"k", 1e3}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n * mult, true
}

// kubernetesOverlay builds the overlay (relative to dir, deploy/k8s or a
// copy of it) and runs the base's checks and its components' on it.
func kubernetesOverlay(t testing.TB, dir, overlay string) (k8sDeployment, problems) {
	t.Helper()
	c, err := buildKustomization(filepath.Join(dir, overlay))
	if err != nil {
		return k8sDeployment{}, problems{err.Error()}
	}
	img := dockerImage(t)
	dep, p := checkKubernetes(c, img, readRepoFile(t, envoyConfigPath), readRepoFile(t, envoyLuaPath))
	if dep.Config == nil {
		return dep, p
	}
	o := k8sOverlays[overlay]
	if o.redis {
		var rp problems
		dep.Redis, dep.Images[k8sRedis], rp = checkKubernetesRedis(c, dep.Config)
		p = append(p, rp...)
		base, err := buildKustomization(filepath.Join(dir, "base"))
		if err != nil {
			p.add("%v", err)
		} else if bcfg, ok := reghostConfig(base); !ok {
			p.add("k8s: the base's reghost config not found")
		} else if ocfg, ok := reghostConfig(c); ok {
			p = append(p, checkRedisConfigCopy(bcfg, ocfg)...)
		}
	} else if _, ok := c.Deployments[k8sRedis]; ok {
		p.add("k8s: %s has a Deployment %s", overlay, k8sRedis)
	}
	if len(c.CronJobs) > 0 {
		p.add("k8s: %s has CronJobs %q", overlay, slices.Sorted(maps.Keys(c.CronJobs)))
	}
	return dep, p
}

func TestKubernetesOverlays(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	k8sRoot := filepath.Join(root, k8sRoot)
	cp, err := loadCompose(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	cdep, _ := checkCompose(cp, root, dockerImage(t))
	for _, overlay := range slices.Sorted(maps.Keys(k8sOverlays)) {
		t.Run(overlay, func(t *testing.T) {
			t.Parallel()
			dep, p := kubernetesOverlay(t, k8sRoot, overlay)
			p.expectNone(t)
			if k8sOverlays[overlay].redis && dep.Images[k8sRedis] != cdep.Images[composeRedis] {
				t.Errorf("Redis image: %q in Kubernetes, %q in compose", dep.Images[k8sRedis], cdep.Images[composeRedis])
			}
		})
	}

	const (
		redis = "overlays/redis"
		rdep  = "components/redis/deployment.yaml"
	)
	for _, tc := range []struct {
		name, overlay string
		edits         []edit
		want          string
	}{
		{"Redis evicts", redis, []edit{{rdep, `"noeviction"`, `"allkeys-lru"`}}, `--maxmemory-policy "allkeys-lru"; want noeviction`},
		{"Redis without AOF", redis, []edit{{rdep, `"--appendonly", "yes", `, ""}}, `--appendonly ""; want yes`},
		{"Redis unpinned", redis, []edit{{rdep, "image: redis:8.8.3-alpine", "image: redis:8-alpine"}}, `redis image "redis:8-alpine" is not a patch release`},
		{"two Redis pods", redis, []edit{{rdep, "  replicas: 1\n", "  replicas: 2\n"}}, "Deployment redis: replicas 2; want 1"},
		{"Redis forgets", redis, []edit{{rdep, "          persistentVolumeClaim:\n            claimName: redis-data\n", "          emptyDir: {}\n"}}, "/data is not a PersistentVolumeClaim"},
		{"Redis rolling", redis, []edit{{rdep, "    type: Recreate\n", "    type: RollingUpdate\n"}}, `strategy "RollingUpdate"; want Recreate`},
		{"Redis unbounded", redis, []edit{{rdep, `, "--maxmemory", "256mb"]`, `]`}}, `--maxmemory ""`},
		{"Redis over its limit", redis, []edit{{rdep, `"--maxmemory", "256mb"`, `"--maxmemory", "500mb"`}}, "--maxmemory 500mb is more than 3/4 of limits.memory 512Mi"},
		{"Redis writable root", redis, []edit{{rdep, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"}}, "container redis: readOnlyRootFilesystem is not true"},
		{"Redis as root", redis, []edit{{rdep, "            runAsUser: 999\n", "            runAsUser: 0\n"}}, "container redis: runAsUser is not a non-root uid"},
		{"Redis port", redis, []edit{{rdep, "containerPort: 6379", "containerPort: 6380"}}, "no container port 6379, where redis-server listens"},
		{"store elsewhere", redis, []edit{{redisConfigCopy, "store: redis://redis:6379/0", "store: redis://cache:6379/0"}}, "goes to cache:6379"},
		{"store embedded", redis, []edit{{redisConfigCopy, "store: redis://redis:6379/0", `store: ""`}}, `store is ""`},
		{"store in another namespace", redis, []edit{{redisConfigCopy, "store: redis://redis:6379/0", "store: redis://redis.cache:6379/0"}}, "goes to redis.cache:6379"},
		{"store by its full name", redis, []edit{{redisConfigCopy, "store: redis://redis:6379/0", "store: redis://redis.reghost.svc.cluster.local:6379/0"}}, ""},
		{"config not replaced", redis, []edit{{"components/redis/kustomization.yaml", "    behavior: replace\n", "    behavior: merge\n"}, {"components/redis/kustomization.yaml", "config.yaml=config.yaml", "redis.yaml=config.yaml"}}, `store is ""`},
		{"config copy stale", redis, []edit{{redisConfigCopy, "redirect_status: 307", "redirect_status: 302"}}, `differs from base/reghost/config.yaml in ["redirect_status"]`},
		{"Service port", redis, []edit{{"components/redis/service.yaml", "      port: 6379\n", "      port: 6380\n"}}, "the Redis is redis|"},
		{"Service selects reghost", redis, []edit{{"components/redis/service.yaml", "  selector:\n    app.kubernetes.io/name: redis", "  selector:\n    app.kubernetes.io/name: reghost"}}, "Service redis: selector map[app.kubernetes.io/name:reghost] selects Deployment reghost's pods: true"},
		{"NetworkPolicy missing", redis, []edit{{"components/redis/kustomization.yaml", "  - networkpolicy.yaml\n", ""}}, "no NetworkPolicy selects Deployment redis's pods"},
		{"NetworkPolicy admits Envoy", redis, []edit{{"components/redis/networkpolicy.yaml", "              app.kubernetes.io/name: reghost\n", "              app.kubernetes.io/name: envoy\n"}}, "admits Deployment envoy's pods; want reghost's only"},
		{"NetworkPolicy shuts reghost out", redis, []edit{{"components/redis/networkpolicy.yaml", "              app.kubernetes.io/name: reghost\n", "              app.kubernetes.io/name: reghost-v2\n"}}, "reghost's pods are not admitted to Redis's port 6379"},
		{"NetworkPolicy every port", redis, []edit{{"components/redis/networkpolicy.yaml", "      ports:\n        - protocol: TCP\n          port: redis\n", ""}}, "admits to every port of Redis"},
		{"NetworkPolicy other namespaces", redis, []edit{{"components/redis/networkpolicy.yaml", "        - podSelector:\n", "        - namespaceSelector: {}\n          podSelector:\n"}}, "want reghost's pods of the namespace only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyTree(t, k8sRoot, tc.edits...)
			_, p := kubernetesOverlay(t, dir, tc.overlay)
			if tc.want == "" {
				p.expectNone(t)
				return
			}
			p.expect(t, tc.want)
		})
	}
}

func TestParseRedisMemory(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]int64{"256mb": 256 << 20, "1GB": 1 << 30, "100k": 100_000, "1024": 1024, "": 0, "x": 0, "-1mb": 0} {
		if got, ok := parseRedisMemory(s); got != want || ok != (want > 0) {
			t.Errorf("parseRedisMemory(%q) = %d, %v; want %d", s, got, ok, want)
		}
	}
}
