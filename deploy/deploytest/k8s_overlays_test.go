package deploytest

import (
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
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
	k8sRedis  = "redis"          // Deployment, Service, NetworkPolicy (components/redis)
	k8sLoader = "reghost-loader" // CronJob (components/loader)
	// redisConfigCopy is reghost/config.yaml with store: set, which
	// components/redis puts in the ConfigMap instead.
	redisConfigCopy = "components/redis/config.yaml"
	baseConfig      = "base/reghost/config.yaml"
	// maxMindAccountEnv is where the loader reads the account ID.
	maxMindAccountEnv = "MAXMIND_ACCOUNT_ID"
)

// k8sOverlays are deploy/k8s's overlays (relative to it) and the
// components each applies to the base.
var k8sOverlays = map[string]struct{ redis, loader bool }{
	"overlays/redis":        {redis: true},
	"overlays/loader":       {loader: true},
	"overlays/redis-loader": {redis: true, loader: true},
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

// mountHolding returns the mount of ctr that file is in: the deepest
// mount path holding it.
func mountHolding(ctr corev1.Container, file string) (corev1.VolumeMount, bool) {
	var best corev1.VolumeMount
	found := false
	for _, m := range ctr.VolumeMounts {
		if m.SubPath == "" && within(file, m.MountPath) && (!found || len(m.MountPath) > len(best.MountPath)) {
			best, found = m, true
		}
	}
	return best, found
}

// claimLoc is where a file is: a PersistentVolumeClaim and the path in it.
type claimLoc struct{ claim, rel string }

func (l claimLoc) String() string { return "PersistentVolumeClaim " + l.claim + ":/" + l.rel }

// claimFor returns where file is in ctr of pod: on a
// PersistentVolumeClaim, or ok is false. m is the mount.
func claimFor(pod corev1.PodSpec, ctr corev1.Container, file string) (m corev1.VolumeMount, loc claimLoc, ok bool) {
	m, ok = mountHolding(ctr, file)
	if !ok {
		return m, loc, false
	}
	pvc := volume(pod, m.Name).PersistentVolumeClaim
	if pvc == nil {
		return m, loc, false
	}
	rel, _ := filepath.Rel(m.MountPath, file)
	return m, claimLoc{pvc.ClaimName, filepath.ToSlash(rel)}, true
}

// checkDailySchedule checks that a cron schedule runs once a day, at a
// minute off the hour.
func checkDailySchedule(p *problems, where, schedule string) {
	f := strings.Fields(schedule)
	if len(f) != 5 {
		p.add("%s: schedule %q: want five fields (minute hour * * *)", where, schedule)
		return
	}
	if m, err := strconv.Atoi(f[0]); err != nil || m <= 0 || m > 59 {
		p.add("%s: schedule %q: minute %q; want one minute off the hour (such as 17): at :00 every cron job in the world fetches at once", where, schedule, f[0])
	}
	if h, err := strconv.Atoi(f[1]); err != nil || h < 0 || h > 23 {
		p.add("%s: schedule %q: hour %q; want one hour: daily (MaxMind counts downloads)", where, schedule, f[1])
	}
	if f[2] != "*" || f[3] != "*" || f[4] != "*" {
		p.add("%s: schedule %q: want every day (minute hour * * *)", where, schedule)
	}
}

// failsOnUsage reports whether a pod failure policy fails the Job at
// once when any container exits 2, the loader's bad usage.
func failsOnUsage(pfp *batchv1.PodFailurePolicy) bool {
	if pfp == nil {
		return false
	}
	for _, r := range pfp.Rules {
		if r.Action == batchv1.PodFailurePolicyActionFailJob && r.OnExitCodes != nil && r.OnExitCodes.ContainerName == nil &&
			r.OnExitCodes.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn && slices.Contains(r.OnExitCodes.Values, 2) {
			return true
		}
	}
	return false
}

// checkKubernetesLoader checks components/loader's objects: a daily
// CronJob running loader cloud and geoip with reghost's own config and
// image, writing the data files to a ReadWriteMany volume reghost's pods
// mount read-only where the config names them, keeping its state on a
// volume of its own. cfg is reghost's config.
func checkKubernetesLoader(c *cluster, cfg *config.Config, img image) problems {
	var p problems
	cj, ok := c.CronJobs[k8sLoader]
	if !ok {
		p.add("k8s: no CronJob %s", k8sLoader)
		return p
	}
	rd, ok := c.Deployments[k8sReghost]
	if !ok || len(rd.Spec.Template.Spec.Containers) != 1 {
		p.add("k8s: no Deployment %s with one container", k8sReghost)
		return p
	}
	rpod := rd.Spec.Template.Spec
	rctr := rpod.Containers[0]
	cfgPath, _ := parseServerArgs(rctr.Args)
	rm, _ := mountAt(rpod, rctr, path.Dir(cfgPath))
	var reghostConfigMap string
	if v := volume(rpod, rm.Name).ConfigMap; v != nil {
		reghostConfigMap = v.Name
	}

	where := "k8s: CronJob " + k8sLoader
	spec := cj.Spec
	checkDailySchedule(&p, where, spec.Schedule)
	if spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		p.add("%s: concurrencyPolicy %q; want Forbid: a run still going when the next starts", where, spec.ConcurrencyPolicy)
	}
	if d := spec.StartingDeadlineSeconds; d == nil || *d <= 0 || *d >= 24*3600 {
		p.add("%s: startingDeadlineSeconds %s; want some, under a day: a run missed while the controller was down would start whenever it returns, or never", where, show(d))
	}
	js := spec.JobTemplate.Spec
	if js.BackoffLimit == nil || *js.BackoffLimit > 1 {
		p.add("%s: backoffLimit %s; want 0 or 1: a failing run retried many times spends MaxMind's daily downloads", where, show(js.BackoffLimit))
	}
	if !failsOnUsage(js.PodFailurePolicy) {
		p.add("%s: no podFailurePolicy rule failing the Job when a container exits 2 (bad usage, no MaxMind credentials): a retry would end the same", where)
	}
	pod := js.Template.Spec
	if pod.RestartPolicy != corev1.RestartPolicyNever {
		p.add("%s: restartPolicy %q; want Never (podFailurePolicy needs it; backoffLimit retries the pod)", where, pod.RestartPolicy)
	}
	if sel := js.Template.Labels; len(sel) == 0 {
		p.add("%s: its pods have no labels for NetworkPolicies to tell them apart", where)
	}

	commands := map[string]string{} // loader command -> container
	var longest time.Duration
	dataClaims := map[string]bool{}
	reghostClaims := map[string]bool{}
	for _, v := range rpod.Volumes {
		if v.PersistentVolumeClaim != nil {
			reghostClaims[v.PersistentVolumeClaim.ClaimName] = true
		}
	}
	for _, ctr := range pod.Containers {
		cw := where + " container " + ctr.Name
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := ctr.Resources.Requests[res]; !ok || q.IsZero() {
				p.add("%s: no %s request", cw, res)
			}
			if q, ok := ctr.Resources.Limits[res]; !ok || q.IsZero() {
				p.add("%s: no %s limit", cw, res)
			}
		}
		checkSecurity(&p, cw, pod.SecurityContext, ctr.SecurityContext)
		if ctr.Image != rctr.Image {
			p.add("%s: image %q; reghost runs %q: the loader checks the files with the server's own code, so the same build", cw, ctr.Image, rctr.Image)
		}
		if want := img.BinDir + loaderBinary; !slices.Equal(ctr.Command, []string{want}) {
			p.add("%s: command %q; want [%q], the image's loader", cw, ctr.Command, want)
		}
		la, err := parseLoaderArgs(ctr.Args)
		if err != nil {
			p.add("%s: %v", cw, err)
			continue
		}
		if other, dup := commands[la.Command]; dup {
			p.add("%s: containers %s and %s both run loader %s", where, other, ctr.Name, la.Command)
		}
		commands[la.Command] = ctr.Name
		longest = max(longest, la.Timeout)

		// reghost's config, from the ConfigMap reghost's pods mount.
		m, ok := mountAt(pod, ctr, path.Dir(la.Config))
		if v := volume(pod, m.Name).ConfigMap; !ok || v == nil || v.Name != reghostConfigMap {
			p.add("%s: --config %s is not from reghost's ConfigMap %s: it would write elsewhere than reghost reads", cw, la.Config, reghostConfigMap)
		}

		// The data files, where reghost's pods read them.
		for _, f := range dataFiles(cfg) {
			lm, loc, ok := claimFor(pod, ctr, f)
			if !ok {
				p.add("%s: %s is on no PersistentVolumeClaim: reghost's pods could not see it", cw, f)
				continue
			}
			if lm.ReadOnly {
				p.add("%s mounts %s (with %s) read-only: it could not install the file", cw, loc.claim, f)
			}
			rmnt, rloc, rok := claimFor(rpod, rctr, f)
			switch {
			case !rok:
				p.add("%s writes %s to %s; reghost's pods have it on no PersistentVolumeClaim", cw, f, loc)
			case rloc != loc:
				p.add("%s writes %s to %s; reghost reads it from %s", cw, f, loc, rloc)
			case !rmnt.ReadOnly:
				p.add("k8s: reghost mounts %s (with %s) writable; it only reads the data files, the loader writes them", rloc.claim, f)
			}
			dataClaims[loc.claim] = true
		}

		// data_dir: the lock and the state, kept between runs, the
		// loader's alone.
		m, ok = mountAt(pod, ctr, cfg.DataDir)
		v := volume(pod, m.Name)
		switch {
		case !ok || m.ReadOnly:
			p.add("%s: nothing writable at data_dir %s for the loader's lock and state", cw, cfg.DataDir)
		case v.PersistentVolumeClaim == nil:
			p.add("%s: data_dir %s is not a PersistentVolumeClaim: the state would go with the pod, and every run download everything and check no shrink", cw, cfg.DataDir)
		case reghostClaims[v.PersistentVolumeClaim.ClaimName]:
			p.add("%s: data_dir %s is PersistentVolumeClaim %s, which reghost's pods mount too", cw, cfg.DataDir, v.PersistentVolumeClaim.ClaimName)
		}
		if la.Command == loaderGeoIP {
			checkKubernetesMaxMind(&p, cw, pod, ctr, la)
		}
	}
	for _, want := range []string{loaderCloud, loaderGeoIP} {
		if commands[want] == "" {
			p.add("%s runs no loader %s", where, want)
		}
	}
	tries := int64(1)
	if js.BackoffLimit != nil {
		tries += int64(*js.BackoffLimit)
	}
	// Each try runs at most --timeout (waiting for the lock included),
	// plus the time to schedule the pod and pull the image.
	const start = 5 * time.Minute
	if d := js.ActiveDeadlineSeconds; d == nil || time.Duration(*d)*time.Second < time.Duration(tries)*longest+start {
		p.add("%s: activeDeadlineSeconds %s ends before %d tries of --timeout %v and %v to start: a slow run is killed before it gives up by itself", where, show(d), tries, longest, start)
	} else if *d >= 24*3600 {
		p.add("%s: activeDeadlineSeconds %d: a stuck run would hold back the next day's (Forbid)", where, *d)
	}
	for _, claim := range slices.Sorted(maps.Keys(dataClaims)) {
		pvc, ok := c.PVCs[claim]
		switch {
		case !ok:
			p.add("k8s: PersistentVolumeClaim %s (the data files) is not in the output", claim)
		case !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany):
			p.add("k8s: PersistentVolumeClaim %s: access modes %v; want ReadWriteMany: reghost's pods on other nodes read it while the loader writes", claim, pvc.Spec.AccessModes)
		}
	}
	return p
}

// checkKubernetesMaxMind checks that the geoip container gets MaxMind's
// credentials from a Secret that may be missing (so that the pod, and the
// cloud container, still run), the key from a file.
func checkKubernetesMaxMind(p *problems, where string, pod corev1.PodSpec, ctr corev1.Container, la loaderArgs) {
	if la.LicenseKey != "" {
		p.add("%s: --license-key on the command line, where anyone who can read the CronJob sees it; use --license-key-file and a Secret", where)
	}
	if la.AccountID == "" {
		var ref *corev1.SecretKeySelector
		for _, e := range ctr.Env {
			if e.Name == maxMindAccountEnv && e.ValueFrom != nil {
				ref = e.ValueFrom.SecretKeyRef
			}
		}
		switch {
		case ref == nil:
			p.add("%s: no %s from a Secret, nor --account-id", where, maxMindAccountEnv)
		case ref.Optional == nil || !*ref.Optional:
			p.add("%s: %s from Secret %s is not optional: without the Secret no container would start, the cloud one neither", where, maxMindAccountEnv, ref.Name)
		}
	}
	if la.LicenseKeyFile == "" {
		p.add("%s: no --license-key-file", where)
		return
	}
	m, ok := mountAt(pod, ctr, path.Dir(la.LicenseKeyFile))
	s := volume(pod, m.Name).Secret
	switch {
	case !ok || s == nil:
		p.add("%s: --license-key-file %s is not in a Secret volume", where, la.LicenseKeyFile)
	case s.Optional == nil || !*s.Optional:
		p.add("%s: Secret %s (--license-key-file) is not optional: without it no container would start, the cloud one neither", where, s.SecretName)
	case len(s.Items) > 0 && !slices.ContainsFunc(s.Items, func(it corev1.KeyToPath) bool { return it.Path == path.Base(la.LicenseKeyFile) }):
		p.add("%s: Secret %s's items put no file at %s", where, s.SecretName, la.LicenseKeyFile)
	}
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
	if o.loader {
		p = append(p, checkKubernetesLoader(c, dep.Config, img)...)
	} else if len(c.CronJobs) > 0 {
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
			if !k8sOverlays[overlay].loader {
				return
			}
			c, err := buildKustomization(filepath.Join(k8sRoot, overlay))
			if err != nil {
				t.Fatal(err)
			}
			for _, ctr := range c.CronJobs[k8sLoader].Spec.JobTemplate.Spec.Template.Spec.Containers {
				checkLoaderArgs(t, "CronJob "+k8sLoader+" container "+ctr.Name, ctr.Args)
			}
		})
	}

	const (
		redis  = "overlays/redis"
		loader = "overlays/loader"
		both   = "overlays/redis-loader"
		rdep   = "components/redis/deployment.yaml"
		cron   = "components/loader/cronjob.yaml"
		cloud  = `args: ["cloud", "--config", "/etc/reghost/config.yaml", "--timeout", "25m", "--lock-wait", "20m"]`
	)
	for _, tc := range []struct {
		name, overlay string
		edits         []edit
		want          string
	}{
		{"Redis evicts", redis, []edit{{rdep, `"noeviction"`, `"allkeys-lru"`}}, `--maxmemory-policy "allkeys-lru"; want noeviction`},
		{"Redis without AOF", both, []edit{{rdep, `"--appendonly", "yes", `, ""}}, `--appendonly ""; want yes`},
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
		{"store embedded", both, []edit{{redisConfigCopy, "store: redis://redis:6379/0", `store: ""`}}, `store is ""`},
		{"store in another namespace", redis, []edit{{redisConfigCopy, "store: redis://redis:6379/0", "store: redis://redis.cache:6379/0"}}, "goes to redis.cache:6379"},
		{"store by its full name", redis, []edit{{redisConfigCopy, "store: redis://redis:6379/0", "store: redis://redis.reghost.svc.cluster.local:6379/0"}}, ""},
		{"config not replaced", redis, []edit{{"components/redis/kustomization.yaml", "    behavior: replace\n", "    behavior: merge\n"}, {"components/redis/kustomization.yaml", "config.yaml=config.yaml", "redis.yaml=config.yaml"}}, `store is ""`},
		{"config copy stale", redis, []edit{{redisConfigCopy, "redirect_status: 307", "redirect_status: 302"}}, `differs from base/reghost/config.yaml in ["redirect_status"]`},
		{"Service port", redis, []edit{{"components/redis/service.yaml", "      port: 6379\n", "      port: 6380\n"}}, "the Redis is redis|"},
		{"Service selects reghost", redis, []edit{{"components/redis/service.yaml", "  selector:\n    app.kubernetes.io/name: redis", "  selector:\n    app.kubernetes.io/name: reghost"}}, "Service redis: selector map[app.kubernetes.io/name:reghost] selects Deployment reghost's pods: true"},
		{"NetworkPolicy missing", redis, []edit{{"components/redis/kustomization.yaml", "  - networkpolicy.yaml\n", ""}}, "no NetworkPolicy selects Deployment redis's pods"},
		{"NetworkPolicy admits Envoy", redis, []edit{{"components/redis/networkpolicy.yaml", "              app.kubernetes.io/name: reghost\n", "              app.kubernetes.io/name: envoy\n"}}, "admits Deployment envoy's pods; want reghost's only"},
		{"NetworkPolicy admits the loader", both, []edit{{"components/redis/networkpolicy.yaml", "        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: reghost\n", "        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: reghost\n        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: reghost-loader\n"}}, "admits CronJob reghost-loader's pods"},
		{"NetworkPolicy shuts reghost out", redis, []edit{{"components/redis/networkpolicy.yaml", "              app.kubernetes.io/name: reghost\n", "              app.kubernetes.io/name: reghost-v2\n"}}, "reghost's pods are not admitted to Redis's port 6379"},
		{"NetworkPolicy every port", redis, []edit{{"components/redis/networkpolicy.yaml", "      ports:\n        - protocol: TCP\n          port: redis\n", ""}}, "admits to every port of Redis"},
		{"NetworkPolicy other namespaces", redis, []edit{{"components/redis/networkpolicy.yaml", "        - podSelector:\n", "        - namespaceSelector: {}\n          podSelector:\n"}}, "want reghost's pods of the namespace only"},
		{"schedule on the hour", loader, []edit{{cron, `schedule: "17 4 * * *"`, `schedule: "0 4 * * *"`}}, `minute "0"; want one minute off the hour`},
		{"schedule hourly", loader, []edit{{cron, `schedule: "17 4 * * *"`, `schedule: "17 * * * *"`}}, `hour "*"; want one hour`},
		{"schedule weekly", loader, []edit{{cron, `schedule: "17 4 * * *"`, `schedule: "17 4 * * 1"`}}, "want every day"},
		{"runs at once", loader, []edit{{cron, "concurrencyPolicy: Forbid", "concurrencyPolicy: Allow"}}, `concurrencyPolicy "Allow"; want Forbid`},
		{"no starting deadline", loader, []edit{{cron, "  startingDeadlineSeconds: 3600\n", ""}}, "startingDeadlineSeconds unset"},
		{"many retries", loader, []edit{{cron, "backoffLimit: 1", "backoffLimit: 6"}}, "backoffLimit 6; want 0 or 1"},
		{"deadline too short", loader, []edit{{cron, "activeDeadlineSeconds: 3600", "activeDeadlineSeconds: 1800"}}, "activeDeadlineSeconds 1800 ends before 2 tries of --timeout 25m0s"},
		{"longer timeout", both, []edit{{cron, cloud, strings.Replace(cloud, `"25m"`, `"40m"`, 1)}}, "ends before 2 tries of --timeout 40m0s"},
		{"default timeout", loader, []edit{{cron, cloud, strings.Replace(cloud, `, "--timeout", "25m"`, "", 1)}}, "ends before 2 tries of --timeout 30m0s"},
		{"deadline past a day", loader, []edit{{cron, "activeDeadlineSeconds: 3600", "activeDeadlineSeconds: 90000"}}, "activeDeadlineSeconds 90000: a stuck run would hold back"},
		{"restarted in place", loader, []edit{{cron, "restartPolicy: Never", "restartPolicy: OnFailure"}}, `restartPolicy "OnFailure"; want Never`},
		{"no pod failure policy", loader, []edit{{cron, "            onExitCodes:\n              operator: In\n              values: [2]\n", "            onExitCodes:\n              operator: In\n              values: [1]\n"}}, "no podFailurePolicy rule failing the Job when a container exits 2"},
		{"loader writes elsewhere", loader, []edit{{cron, "                - name: geodata\n                  mountPath: /data/geo\n", "                - name: geodata\n                  mountPath: /data/geo2\n"}}, "container cloud writes /data/geo/GeoLite2-Country.mmdb to PersistentVolumeClaim reghost-loader:/geo/GeoLite2-Country.mmdb; reghost reads it from PersistentVolumeClaim reghost-geodata:/GeoLite2-Country.mmdb"},
		{"reghost writes the data", loader, []edit{{"components/loader/reghost-geodata.yaml", "              mountPath: /data/geo\n              readOnly: true\n", "              mountPath: /data/geo\n"}}, "k8s: reghost mounts reghost-geodata (with /data/geo/GeoLite2-Country.mmdb) writable"},
		{"reghost reads elsewhere", loader, []edit{{"components/loader/reghost-geodata.yaml", "            claimName: reghost-geodata\n", "            claimName: other-geodata\n"}}, "reghost reads it from PersistentVolumeClaim other-geodata:/GeoLite2-Country.mmdb"},
		{"reghost without the data", both, []edit{{"components/loader/kustomization.yaml", "  - path: reghost-geodata.yaml\n", ""}, {"components/loader/kustomization.yaml", "patches:\n", ""}}, "reghost's pods have it on no PersistentVolumeClaim"},
		{"data volume on one node", loader, []edit{{"components/loader/pvc.yaml", "  accessModes: [ReadWriteMany]\n", "  accessModes: [ReadWriteOnce]\n"}}, "PersistentVolumeClaim reghost-geodata: access modes [ReadWriteOnce]; want ReadWriteMany"},
		{"state lost", loader, []edit{{cron, "              persistentVolumeClaim:\n                claimName: reghost-loader\n", "              emptyDir: {}\n"}}, "data_dir /data is not a PersistentVolumeClaim"},
		{"state shared with reghost", loader, []edit{{cron, "                claimName: reghost-loader\n", "                claimName: reghost-geodata\n"}}, "data_dir /data is PersistentVolumeClaim reghost-geodata, which reghost's pods mount too"},
		{"another config", loader, []edit{{cron, "              configMap:\n                name: reghost-config\n", "              configMap:\n                name: envoy-config\n"}}, "--config /etc/reghost/config.yaml is not from reghost's ConfigMap reghost-config-"},
		{"image set in the base", both, []edit{{"base/kustomization.yaml", "configMapGenerator:\n", "images:\n  - name: reghost\n    newName: registry.example/reghost\n    newTag: \"1.0\"\n\nconfigMapGenerator:\n"}}, ""},
		{"image not copied", loader, []edit{{"components/loader/kustomization.yaml", "          - spec.jobTemplate.spec.template.spec.containers.[name=cloud].image\n", ""}, {"base/kustomization.yaml", "configMapGenerator:\n", "images:\n  - name: reghost\n    newTag: \"1.0\"\n\nconfigMapGenerator:\n"}}, `container cloud: image "reghost:dev"; reghost runs "reghost:1.0"`},
		{"the server", loader, []edit{{cron, `command: ["/usr/local/bin/loader"]`, `command: ["/usr/local/bin/server"]`}}, `container cloud: command ["/usr/local/bin/server"]; want ["/usr/local/bin/loader"]`},
		{"no geoip", loader, []edit{{cron, `args: ["geoip", "--config"`, `args: ["cloud", "--config"`}}, "runs no loader geoip"},
		{"loader without config", loader, []edit{{cron, cloud, `args: ["cloud", "--data-dir", "/data/geo"]`}}, "no --config"},
		{"MaxMind account required", loader, []edit{{cron, "                      key: account-id\n                      optional: true\n", "                      key: account-id\n"}}, "MAXMIND_ACCOUNT_ID from Secret reghost-maxmind is not optional"},
		{"MaxMind key required", loader, []edit{{cron, "                secretName: reghost-maxmind\n                optional: true\n", "                secretName: reghost-maxmind\n"}}, "Secret reghost-maxmind (--license-key-file) is not optional"},
		{"MaxMind key on the command line", loader, []edit{{cron, `"--license-key-file", "/run/secrets/maxmind/license-key"`, `"--license-key", "xxxx"`}}, "--license-key on the command line"},
		{"MaxMind key elsewhere", loader, []edit{{cron, "                  - key: license-key\n                    path: license-key\n", "                  - key: license-key\n                    path: key\n"}}, "items put no file at /run/secrets/maxmind/license-key"},
		{"loader writable root", loader, []edit{{cron, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"}}, "container cloud: readOnlyRootFilesystem is not true"},
		{"loader without limits", loader, []edit{{cron, "                limits:\n                  cpu: \"1\"\n", "                limits:\n"}}, "container cloud: no cpu limit"},
		{"loader unknown field", loader, []edit{{cron, "concurrencyPolicy: Forbid", "concurrency: Forbid"}}, `unknown field "spec.concurrency"`},
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
