package deploytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/reghost/reghost/internal/app"
	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/store/redistest"
)

// The objects the kustomization makes.
const (
	k8sNamespace   = "reghost"
	k8sReghost     = "reghost" // Deployment, Service, PodDisruptionBudget and NetworkPolicy
	k8sEnvoy       = "envoy"   // the same
	reghostReplica = 2
)

// cluster is the kustomize output, every object decoded into its type.
type cluster struct {
	Namespaces  map[string]*corev1.Namespace
	Deployments map[string]*appsv1.Deployment
	CronJobs    map[string]*batchv1.CronJob
	Services    map[string]*corev1.Service
	ConfigMaps  map[string]*corev1.ConfigMap
	Secrets     map[string]*corev1.Secret
	PVCs        map[string]*corev1.PersistentVolumeClaim
	PDBs        map[string]*policyv1.PodDisruptionBudget
	Policies    map[string]*networkingv1.NetworkPolicy
}

// buildKustomization runs kustomize as `kubectl apply -k dir` does (files
// outside dir refused, no plugins) and decodes each object strictly into
// its Kubernetes API type: an unknown or misspelt field is an error.
func buildKustomization(dir string) (*cluster, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	c := &cluster{
		Namespaces: map[string]*corev1.Namespace{}, Deployments: map[string]*appsv1.Deployment{},
		CronJobs: map[string]*batchv1.CronJob{},
		Services: map[string]*corev1.Service{}, ConfigMaps: map[string]*corev1.ConfigMap{},
		Secrets: map[string]*corev1.Secret{}, PVCs: map[string]*corev1.PersistentVolumeClaim{},
		PDBs:     map[string]*policyv1.PodDisruptionBudget{},
		Policies: map[string]*networkingv1.NetworkPolicy{},
	}
	for _, r := range m.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		gvk := r.GetApiVersion() + " " + r.GetKind()
		var obj metav1.Object
		switch gvk {
		case "v1 Namespace":
			obj, err = decodeInto(data, c.Namespaces)
		case "apps/v1 Deployment":
			obj, err = decodeInto(data, c.Deployments)
		case "batch/v1 CronJob":
			obj, err = decodeInto(data, c.CronJobs)
		case "v1 PersistentVolumeClaim":
			obj, err = decodeInto(data, c.PVCs)
		case "v1 Service":
			obj, err = decodeInto(data, c.Services)
		case "v1 ConfigMap":
			obj, err = decodeInto(data, c.ConfigMaps)
		case "v1 Secret":
			obj, err = decodeInto(data, c.Secrets)
		case "policy/v1 PodDisruptionBudget":
			obj, err = decodeInto(data, c.PDBs)
		case "networking.k8s.io/v1 NetworkPolicy":
			obj, err = decodeInto(data, c.Policies)
		default:
			return nil, fmt.Errorf("%s %s: a kind deploytest does not check", gvk, r.GetName())
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", gvk, r.GetName(), err)
		}
		if gvk != "v1 Namespace" && obj.GetNamespace() != k8sNamespace {
			return nil, fmt.Errorf("%s %s: namespace %q; want %q", gvk, r.GetName(), obj.GetNamespace(), k8sNamespace)
		}
	}
	return c, nil
}

// decodeInto decodes data into a new T as strictly as the API server
// does (field names case-sensitive, unknown and duplicate fields errors)
// and files it by name.
func decodeInto[T any, PT interface {
	*T
	metav1.Object
}](data []byte, into map[string]PT) (metav1.Object, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	obj := PT(new(T))
	strict, err := kjson.UnmarshalStrict(js, obj)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, errors.Join(strict...)
	}
	if _, dup := into[obj.GetName()]; dup {
		return nil, fmt.Errorf("defined twice")
	}
	into[obj.GetName()] = obj
	return obj, nil
}

// k8sDeployment is what checkKubernetes found, for other checks (and
// kubernetesOverlay, about the components).
type k8sDeployment struct {
	// Redis is the Redis Deployment's redis-server command line, with
	// components/redis.
	Redis      redisServer
	Config     *config.Config
	TokenEnv   string // the variable the reghost container gets the token in
	ProbePaths []string
	Images     map[string]string
	// EnvoyConcurrency is Envoy's --concurrency, 0 without one.
	EnvoyConcurrency int
}

// checkKubernetes checks the kustomize output against the image, the
// reghost config in its ConfigMap, and Envoy's config in its ConfigMap,
// which must be deploy/envoy's files (envoyYAML, envoyLua) unchanged.
func checkKubernetes(c *cluster, img image, envoyYAML, envoyLua []byte) (k8sDeployment, problems) {
	var dep k8sDeployment
	var p problems
	dep.Images = map[string]string{}
	if _, ok := c.Namespaces[k8sNamespace]; !ok || len(c.Namespaces) != 1 {
		p.add("k8s: namespaces %v; want %s", slices.Sorted(maps.Keys(c.Namespaces)), k8sNamespace)
	}

	// Every Deployment: selector, resources, and locked down.
	for name, d := range c.Deployments {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			p.add("k8s: Deployment %s: selector %v does not select its pods %v", name, d.Spec.Selector, d.Spec.Template.Labels)
		}
		pod := d.Spec.Template.Spec
		for _, ctr := range pod.Containers {
			where := fmt.Sprintf("k8s: Deployment %s container %s", name, ctr.Name)
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if q, ok := ctr.Resources.Requests[res]; !ok || q.IsZero() {
					p.add("%s: no %s request", where, res)
				}
				if q, ok := ctr.Resources.Limits[res]; !ok || q.IsZero() {
					p.add("%s: no %s limit", where, res)
				}
			}
			checkSecurity(&p, where, pod.SecurityContext, ctr.SecurityContext)
			// Behind Envoy or a load balancer: a preStop sleep, so that
			// Services and load balancers stop sending before the process
			// stops, and the time to finish. (Redis's clients, reghost,
			// see it go at once and reconnect.)
			if name != k8sReghost && name != k8sEnvoy {
				continue
			}
			if ctr.Lifecycle == nil || ctr.Lifecycle.PreStop == nil || ctr.Lifecycle.PreStop.Sleep == nil || ctr.Lifecycle.PreStop.Sleep.Seconds <= 0 {
				p.add("%s: no preStop sleep: traffic would still arrive after it stops", where)
				continue
			}
			sleep := ctr.Lifecycle.PreStop.Sleep.Seconds
			if g := pod.TerminationGracePeriodSeconds; g == nil || *g < sleep+10 {
				p.add("%s: terminationGracePeriodSeconds %s leaves less than 10s after the preStop sleep of %ds", where, show(g), sleep)
			}
			// Envoy takes client connections from a cloud load balancer,
			// which needs several failed node health checks (GKE: 24 s)
			// before it stops sending to a node.
			if ctr.Name == "envoy" && sleep < 30 {
				p.add("%s: preStop sleep of %ds is shorter than a cloud load balancer takes to stop sending (30s or more)", where, sleep)
			}
			// reghost's leave Envoy's DNS answers, which cluster DNS may
			// cache for 30 s and Envoy asks again every 5 s.
			if ctr.Name == "reghost" && sleep < 35 {
				p.add("%s: preStop sleep of %ds ends before Envoy can see the pod leave DNS (35s or more)", where, sleep)
			}
		}
	}

	// reghost.
	rd, ok := c.Deployments[k8sReghost]
	if !ok || len(rd.Spec.Template.Spec.Containers) != 1 {
		p.add("k8s: no Deployment %s with one container", k8sReghost)
		return dep, p
	}
	if rd.Spec.Replicas == nil || *rd.Spec.Replicas != reghostReplica {
		p.add("k8s: Deployment %s: replicas %s; want %d", k8sReghost, show(rd.Spec.Replicas), reghostReplica)
	}
	pod := rd.Spec.Template.Spec
	ctr := pod.Containers[0]
	dep.Images[k8sReghost] = ctr.Image
	if len(ctr.Command) > 0 {
		p.add("k8s: reghost: command %q replaces the image's ENTRYPOINT", ctr.Command)
	}
	cfgPath, err := parseServerArgs(ctr.Args)
	if err != nil {
		p.add("k8s: reghost: %v", err)
	}
	cfgData, ok := mountedFile(&p, "k8s: reghost", c, pod, ctr, cfgPath)
	if !ok {
		return dep, p
	}
	cfg, err := config.Parse(cfgData, "ConfigMap "+cfgPath)
	if err != nil {
		p.add("k8s: reghost's config: %v", err)
		return dep, p
	}
	dep.Config = cfg
	lhost, lport, err := splitListen(cfg.Listen)
	if err != nil || !unspecifiedHost(lhost) {
		p.add("k8s: reghost: listen %q does not accept connections from other pods", cfg.Listen)
	}
	ahost, aport, err := splitListen(cfg.AdminListen)
	if err != nil || !unspecifiedHost(ahost) {
		p.add("k8s: reghost: admin_listen %q does not accept connections from other pods", cfg.AdminListen)
	}
	wantPorts := map[string]int{"http": lport, "admin": aport}
	for _, cp := range ctr.Ports {
		if want, ok := wantPorts[cp.Name]; !ok || int(cp.ContainerPort) != want {
			p.add("k8s: reghost: container port %s %d; the config listens on %v", cp.Name, cp.ContainerPort, wantPorts)
		}
		delete(wantPorts, cp.Name)
	}
	if len(wantPorts) > 0 {
		p.add("k8s: reghost: no container port for %v", wantPorts)
	}
	for _, pr := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{{"readiness", ctr.ReadinessProbe, "/readyz"}, {"liveness", ctr.LivenessProbe, "/healthz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			p.add("k8s: reghost: no HTTP %s probe", pr.kind)
			continue
		}
		g := pr.probe.HTTPGet
		dep.ProbePaths = append(dep.ProbePaths, g.Path)
		if port, ok := containerPort(ctr, g.Port); g.Path != pr.path || !ok || port != lport {
			p.add("k8s: reghost: %s probe GET %s on port %s; want %s on the public listener (%d)", pr.kind, g.Path, g.Port.String(), pr.path, lport)
		}
	}
	if m, ok := mountAt(pod, ctr, cfg.DataDir); !ok || m.ReadOnly || volume(pod, m.Name).EmptyDir == nil {
		p.add("k8s: reghost: no writable emptyDir at data_dir %s", cfg.DataDir)
	}
	if !slices.Contains(img.Volumes, cfg.DataDir) {
		p.add("k8s: reghost: data_dir %s is not the image's VOLUME %q", cfg.DataDir, img.Volumes)
	}
	for _, f := range dataFiles(cfg) {
		if !within(f, cfg.DataDir) {
			p.add("k8s: reghost: %s is outside data_dir %s, on the read-only root", f, cfg.DataDir)
		}
	}
	if cfg.ClientIP.Header != config.HeaderXRealIP {
		p.add("k8s: reghost: client_ip.header %s; reghost.lua sends X-Real-IP", cfg.ClientIP.Header)
	}
	if len(cfg.ClientIP.TrustedProxies) == 0 {
		p.add("k8s: reghost: client_ip.trusted_proxies is empty: Envoy's X-Real-IP would be ignored")
	}

	// The admin token: REGHOST_ADMIN_TOKEN from a Secret, which either is
	// in the output or is optional (deploy/README.md says to create it).
	if cfg.Admin.TokenFile != "" {
		p.add("k8s: reghost: admin.token_file %s; the Deployment passes %s", cfg.Admin.TokenFile, tokenEnv)
	}
	for _, e := range ctr.Env {
		if e.Name != tokenEnv {
			continue
		}
		dep.TokenEnv = e.Name
		ref := (*corev1.SecretKeySelector)(nil)
		if e.ValueFrom != nil {
			ref = e.ValueFrom.SecretKeyRef
		}
		switch {
		case ref == nil:
			p.add("k8s: reghost: %s is not from a Secret", tokenEnv)
		case ref.Optional != nil && *ref.Optional:
		case c.Secrets[ref.Name] == nil || (c.Secrets[ref.Name].Data[ref.Key] == nil && c.Secrets[ref.Name].StringData[ref.Key] == ""):
			p.add("k8s: reghost: %s from Secret %s key %s, which is not in the output and not optional: the pod would not start", tokenEnv, ref.Name, ref.Key)
		}
	}
	if dep.TokenEnv == "" {
		p.add("k8s: reghost: no %s in the container's environment", tokenEnv)
	}

	// The Go soft memory limit must sit below the container's limit, or
	// the collector, running at GOGC=400, lets the heap reach the OOM killer.
	memLimit := ctr.Resources.Limits[corev1.ResourceMemory]
	var soft string
	for _, e := range ctr.Env {
		if e.Name == "GOMEMLIMIT" {
			soft = e.Value
		}
	}
	if n, ok := parseGoMemLimit(soft); !ok {
		p.add("k8s: reghost: GOMEMLIMIT %q is not a Go memory limit (such as 384MiB)", soft)
	} else if n >= memLimit.Value() || n < memLimit.Value()*7/10 {
		p.add("k8s: reghost: GOMEMLIMIT %s is not 70-99%% of limits.memory %s", soft, memLimit.String())
	}

	checkNetworkPolicy(&p, c, ctr, lport, aport)

	// Its Service: headless, so that Envoy's STRICT_DNS cluster sees
	// every pod; the cluster's host and port.
	rs, ok := c.Services[k8sReghost]
	if !ok {
		p.add("k8s: no Service %s", k8sReghost)
		return dep, p
	}
	checkSelects(&p, c, rs, k8sReghost)
	if rs.Spec.ClusterIP != corev1.ClusterIPNone || rs.Spec.Type != "" && rs.Spec.Type != corev1.ServiceTypeClusterIP {
		p.add("k8s: Service %s: not headless (clusterIP %q, type %q): Envoy would see one address for all replicas", k8sReghost, rs.Spec.ClusterIP, rs.Spec.Type)
	}
	for _, sp := range rs.Spec.Ports {
		if port, ok := containerPort(ctr, sp.TargetPort); !ok || port != int(sp.Port) {
			p.add("k8s: Service %s port %s %d: targets %s, not container port %d (a headless Service's clients connect to the pod's port)", k8sReghost, sp.Name, sp.Port, sp.TargetPort.String(), sp.Port)
		}
	}

	// Envoy: deploy/envoy's files, pointing at that Service.
	ed, ok := c.Deployments[k8sEnvoy]
	if !ok || len(ed.Spec.Template.Spec.Containers) != 1 {
		p.add("k8s: no Deployment %s with one container", k8sEnvoy)
		return dep, p
	}
	epod := ed.Spec.Template.Spec
	ectr := epod.Containers[0]
	dep.Images[k8sEnvoy] = ectr.Image
	envoyFile := envoyDefaultConfig
	if i := slices.Index(ectr.Args, "-c"); i >= 0 && i+1 < len(ectr.Args) {
		envoyFile = ectr.Args[i+1]
	}
	data, ok := mountedFile(&p, "k8s: envoy", c, epod, ectr, envoyFile)
	if !ok {
		return dep, p
	}
	if !bytes.Equal(data, envoyYAML) {
		p.add("k8s: envoy's %s is not %s; run: %s", envoyFile, envoyConfigPath, copyEnvoyFiles)
	}
	ec, err := parseEnvoy(data)
	if err != nil {
		p.add("k8s: %v", err)
		return dep, p
	}
	for _, f := range ec.Files {
		fdata, ok := mountedFile(&p, "k8s: envoy", c, epod, ectr, f)
		if ok && path.Base(f) == path.Base(envoyLuaPath) && !bytes.Equal(fdata, envoyLua) {
			p.add("k8s: envoy's %s is not %s; run: %s", f, envoyLuaPath, copyEnvoyFiles)
		}
	}
	ep, err := ec.Cluster(envoyCluster)
	if err != nil {
		p.add("k8s: %v", err)
		return dep, p
	}
	if ep.Host != rs.Name {
		p.add("k8s: envoy.yaml's cluster %s goes to %q, not the Service %s in Envoy's namespace", envoyCluster, ep.Host, rs.Name)
	}
	if !slices.ContainsFunc(rs.Spec.Ports, func(sp corev1.ServicePort) bool { return int(sp.Port) == ep.Port && sp.Name == "http" }) {
		p.add("k8s: envoy.yaml's cluster %s goes to port %d, which is not Service %s's http port", envoyCluster, ep.Port, rs.Name)
	}
	for _, hp := range ep.HealthPaths {
		if !slices.Contains(dep.ProbePaths, hp) {
			p.add("k8s: envoy.yaml health-checks %s, which the kubelet does not probe (%v)", hp, dep.ProbePaths)
		}
	}
	// Envoy's workers: one per CPU of the limit, not of the node.
	cpu := ectr.Resources.Limits[corev1.ResourceCPU]
	dep.EnvoyConcurrency = envoyConcurrency(ectr.Args)
	if n := dep.EnvoyConcurrency; n == 0 {
		p.add("k8s: envoy: no --concurrency in %q: Envoy would start a worker per CPU of the node", ectr.Args)
	} else if cpu.MilliValue() != int64(n)*1000 {
		p.add("k8s: envoy: --concurrency %d, but limits.cpu %s: keep them equal", n, cpu.String())
	}
	listeners := ec.ListenerPorts()
	for _, cp := range ectr.Ports {
		if !slices.Contains(listeners, int(cp.ContainerPort)) {
			p.add("k8s: envoy: container port %s %d; envoy.yaml listens on %v", cp.Name, cp.ContainerPort, listeners)
		}
	}
	for _, pr := range []*corev1.Probe{ectr.ReadinessProbe, ectr.LivenessProbe} {
		if pr == nil || pr.TCPSocket == nil {
			p.add("k8s: envoy: a readiness or liveness probe is not a TCP probe of the listener")
		} else if port, ok := containerPort(ectr, pr.TCPSocket.Port); !ok || !slices.Contains(listeners, port) {
			p.add("k8s: envoy: probe on port %s, not a listener of envoy.yaml %v", pr.TCPSocket.Port.String(), listeners)
		}
	}
	es, ok := c.Services[k8sEnvoy]
	if !ok {
		p.add("k8s: no Service %s", k8sEnvoy)
		return dep, p
	}
	checkSelects(&p, c, es, k8sEnvoy)
	if es.Spec.Type != corev1.ServiceTypeLoadBalancer || es.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		p.add("k8s: Service %s: type %q, externalTrafficPolicy %q; want LoadBalancer with Local, which keeps the client's address", k8sEnvoy, es.Spec.Type, es.Spec.ExternalTrafficPolicy)
	}
	for _, sp := range es.Spec.Ports {
		if port, ok := containerPort(ectr, sp.TargetPort); !ok || !slices.Contains(listeners, port) {
			p.add("k8s: Service %s port %s: targets %s, not an Envoy listener %v", k8sEnvoy, sp.Name, sp.TargetPort.String(), listeners)
		}
	}

	// PodDisruptionBudgets: one per Deployment, which it can satisfy.
	for _, name := range []string{k8sReghost, k8sEnvoy} {
		pdb, ok := c.PDBs[name]
		d := c.Deployments[name]
		if !ok {
			p.add("k8s: no PodDisruptionBudget %s", name)
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			p.add("k8s: PodDisruptionBudget %s: selector %v does not select Deployment %s's pods %v", name, pdb.Spec.Selector, name, d.Spec.Template.Labels)
		}
		for other, od := range c.Deployments {
			if other != name && err == nil && sel.Matches(labels.Set(od.Spec.Template.Labels)) {
				p.add("k8s: PodDisruptionBudget %s also selects Deployment %s's pods", name, other)
			}
		}
		if pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromInt32(1) {
			p.add("k8s: PodDisruptionBudget %s: minAvailable %s; want 1", name, show(pdb.Spec.MinAvailable))
		} else if d.Spec.Replicas == nil || *d.Spec.Replicas <= 1 {
			p.add("k8s: PodDisruptionBudget %s: minAvailable 1 of %s replicas blocks every node drain", name, show(d.Spec.Replicas))
		}
	}
	return dep, p
}

// checkNetworkPolicy checks that NetworkPolicies admit to reghost's public
// port (lport) the Envoy pods of the namespace and no other pod, and to its
// admin port (aport) no pod. ctr is reghost's container, for named ports.
func checkNetworkPolicy(p *problems, c *cluster, ctr corev1.Container, lport, aport int) {
	rd := c.Deployments[k8sReghost]
	var pols []*networkingv1.NetworkPolicy
	for _, name := range slices.Sorted(maps.Keys(c.Policies)) {
		np := c.Policies[name]
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			p.add("k8s: NetworkPolicy %s: podSelector: %v", name, err)
			continue
		}
		if sel.Matches(labels.Set(rd.Spec.Template.Labels)) {
			pols = append(pols, np)
		}
	}
	if len(pols) == 0 {
		p.add("k8s: no NetworkPolicy selects Deployment %s's pods: any pod could reach port %d and choose a client address", k8sReghost, lport)
		return
	}
	envoyAdmitted := false
	for _, np := range pols {
		if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
			p.add("k8s: NetworkPolicy %s: policyTypes %v; want [Ingress]", np.Name, np.Spec.PolicyTypes)
		}
		for i, rule := range np.Spec.Ingress {
			where := fmt.Sprintf("k8s: NetworkPolicy %s ingress[%d]", np.Name, i)
			// covers reports whether the rule's ports include port; no
			// ports means every port.
			covers := func(port int) bool {
				if len(rule.Ports) == 0 {
					return true
				}
				for _, rp := range rule.Ports {
					if rp.Protocol != nil && *rp.Protocol != corev1.ProtocolTCP {
						continue
					}
					if rp.Port == nil {
						return true
					}
					n, ok := containerPort(ctr, *rp.Port)
					if !ok {
						p.add("%s: port %s is not a port of reghost's container", where, rp.Port.String())
						continue
					}
					if n == port || (rp.EndPort != nil && n < port && port <= int(*rp.EndPort)) {
						return true
					}
				}
				return false
			}
			if covers(aport) {
				p.add("%s admits pods to the admin port %d; want none (kubectl port-forward needs no rule)", where, aport)
			}
			if !covers(lport) {
				continue
			}
			if len(rule.From) == 0 {
				p.add("%s admits every source to port %d; want Envoy's pods only", where, lport)
			}
			for _, peer := range rule.From {
				if peer.PodSelector == nil || peer.NamespaceSelector != nil || peer.IPBlock != nil {
					p.add("%s admits %+v to port %d; want Envoy's pods of the namespace only (a podSelector alone)", where, peer, lport)
					continue
				}
				sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
				if err != nil {
					p.add("%s: podSelector: %v", where, err)
					continue
				}
				for _, name := range slices.Sorted(maps.Keys(c.Deployments)) {
					if !sel.Matches(labels.Set(c.Deployments[name].Spec.Template.Labels)) {
						continue
					}
					if name == k8sEnvoy {
						envoyAdmitted = true
					} else {
						p.add("%s admits Deployment %s's pods to port %d; want Envoy's only", where, name, lport)
					}
				}
			}
		}
	}
	if !envoyAdmitted {
		p.add("k8s: NetworkPolicy: Envoy's pods are not admitted to reghost's port %d: every pull would go to the default registry", lport)
	}
}

// envoyConcurrency returns the value of --concurrency in Envoy's
// arguments, or 0 when there is none or it is not a positive number.
func envoyConcurrency(args []string) int {
	for i, a := range args {
		v, ok := strings.CutPrefix(a, "--concurrency=")
		if !ok && a == "--concurrency" && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if n, err := strconv.Atoi(v); ok && err == nil && n > 0 {
			return n
		}
	}
	return 0
}

// show prints what a pointer points to, or "unset".
func show[T any](v *T) string {
	if v == nil {
		return "unset"
	}
	if s, ok := any(v).(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprint(*v)
}

// checkSecurity checks a container's effective security settings (the
// container's, else the pod's): what the restricted Pod Security
// Standard asks, plus a read-only root.
func checkSecurity(p *problems, where string, pod *corev1.PodSecurityContext, ctr *corev1.SecurityContext) {
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	if ctr == nil {
		ctr = &corev1.SecurityContext{}
	}
	nonRoot := ctr.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = pod.RunAsNonRoot
	}
	user := ctr.RunAsUser
	if user == nil {
		user = pod.RunAsUser
	}
	seccomp := ctr.SeccompProfile
	if seccomp == nil {
		seccomp = pod.SeccompProfile
	}
	if nonRoot == nil || !*nonRoot {
		p.add("%s: runAsNonRoot is not true", where)
	}
	if user == nil || *user == 0 {
		p.add("%s: runAsUser is not a non-root uid", where)
	}
	if ctr.ReadOnlyRootFilesystem == nil || !*ctr.ReadOnlyRootFilesystem {
		p.add("%s: readOnlyRootFilesystem is not true", where)
	}
	if ctr.AllowPrivilegeEscalation == nil || *ctr.AllowPrivilegeEscalation {
		p.add("%s: allowPrivilegeEscalation is not false", where)
	}
	if ctr.Capabilities == nil || !slices.Contains(ctr.Capabilities.Drop, "ALL") || len(ctr.Capabilities.Add) > 0 {
		p.add("%s: capabilities do not drop ALL (and add none)", where)
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		p.add("%s: seccompProfile is not RuntimeDefault", where)
	}
}

// checkSelects checks that Service svc selects the pods of Deployment
// want and of no other.
func checkSelects(p *problems, c *cluster, svc *corev1.Service, want string) {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	for name, d := range c.Deployments {
		got := len(svc.Spec.Selector) > 0 && sel.Matches(labels.Set(d.Spec.Template.Labels))
		if got != (name == want) {
			p.add("k8s: Service %s: selector %v selects Deployment %s's pods: %v; want %v", svc.Name, svc.Spec.Selector, name, got, name == want)
		}
	}
}

// containerPort resolves a probe's or Service's port (a number or a
// container port's name) to a number of ctr's ports.
func containerPort(ctr corev1.Container, port intstr.IntOrString) (int, bool) {
	for _, cp := range ctr.Ports {
		if (port.Type == intstr.String && cp.Name == port.StrVal) || (port.Type == intstr.Int && cp.ContainerPort == port.IntVal) {
			return int(cp.ContainerPort), true
		}
	}
	return 0, false
}

// mountAt returns the volume mount of ctr whose directory is dir.
func mountAt(pod corev1.PodSpec, ctr corev1.Container, dir string) (corev1.VolumeMount, bool) {
	for _, m := range ctr.VolumeMounts {
		if path.Clean(m.MountPath) == path.Clean(dir) && m.SubPath == "" {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

func volume(pod corev1.PodSpec, name string) corev1.Volume {
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v
		}
	}
	return corev1.Volume{}
}

// mountedFile returns the content of file in ctr: a key of a ConfigMap
// that the output holds, mounted read-only at file's directory.
func mountedFile(p *problems, where string, c *cluster, pod corev1.PodSpec, ctr corev1.Container, file string) ([]byte, bool) {
	m, ok := mountAt(pod, ctr, path.Dir(file))
	if !ok {
		p.add("%s: nothing mounted at %s, for %s", where, path.Dir(file), file)
		return nil, false
	}
	v := volume(pod, m.Name)
	if v.ConfigMap == nil || !m.ReadOnly {
		p.add("%s: %s is not a read-only ConfigMap mount", where, m.MountPath)
		return nil, false
	}
	cm, ok := c.ConfigMaps[v.ConfigMap.Name]
	if !ok {
		p.add("%s: ConfigMap %s (mounted at %s) is not in the output", where, v.ConfigMap.Name, m.MountPath)
		return nil, false
	}
	data, ok := cm.Data[path.Base(file)]
	if !ok {
		p.add("%s: ConfigMap %s mounted at %s has no key %s", where, cm.Name, m.MountPath, path.Base(file))
		return nil, false
	}
	return []byte(data), true
}

// kubernetes builds deploy/k8s and checks it.
func kubernetes(t testing.TB, dir string) (k8sDeployment, problems) {
	t.Helper()
	c, err := buildKustomization(dir)
	if err != nil {
		return k8sDeployment{}, problems{err.Error()}
	}
	return checkKubernetes(c, dockerImage(t), readRepoFile(t, envoyConfigPath), readRepoFile(t, envoyLuaPath))
}

func TestKubernetes(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	dep, p := kubernetes(t, filepath.Join(root, k8sDir))
	p.expectNone(t)
	if t.Failed() {
		t.FailNow()
	}

	t.Run("args", func(t *testing.T) {
		t.Parallel()
		c, err := buildKustomization(filepath.Join(root, k8sDir))
		if err != nil {
			t.Fatal(err)
		}
		checkServerArgs(t, "Deployment reghost args", c.Deployments[k8sReghost].Spec.Template.Spec.Containers[0].Args)
	})
	t.Run("images agree with compose", func(t *testing.T) {
		t.Parallel()
		cp, err := loadCompose(t.Context(), root)
		if err != nil {
			t.Fatal(err)
		}
		cdep, p := checkCompose(cp, root, dockerImage(t))
		p.expectNone(t)
		for k8s, compose := range map[string]string{k8sReghost: composeReghostName, k8sEnvoy: composeEnvoy} {
			if dep.Images[k8s] != cdep.Images[compose] {
				t.Errorf("image of %s: %q in Kubernetes, %q in compose", k8s, dep.Images[k8s], cdep.Images[compose])
			}
		}
		if dep.EnvoyConcurrency != cdep.EnvoyConcurrency {
			t.Errorf("Envoy --concurrency: %d in Kubernetes, %d in compose", dep.EnvoyConcurrency, cdep.EnvoyConcurrency)
		}
	})

	broken := []struct {
		name  string
		edits []edit
		want  string
	}{
		{"unknown field", []edit{{"reghost/deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"}}, `unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem"`},
		{"file outside the kustomization", []edit{{"kustomization.yaml", "      - envoy/envoy.yaml\n", "      - ../../envoy/envoy.yaml\n"}}, "kustomize build"},
		{"writable root", []edit{{"envoy/deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"}}, "container envoy: readOnlyRootFilesystem is not true"},
		{"privilege escalation", []edit{{"reghost/deployment.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"}}, "container reghost: allowPrivilegeEscalation is not false"},
		{"capabilities", []edit{{"reghost/deployment.yaml", "drop: [ALL]", "drop: [NET_RAW]"}}, "container reghost: capabilities do not drop ALL"},
		{"root", []edit{{"reghost/deployment.yaml", "runAsNonRoot: true\n            runAsUser: 65532", "runAsNonRoot: false\n            runAsUser: 65532"}}, "container reghost: runAsNonRoot is not true"},
		{"seccomp", []edit{{"envoy/deployment.yaml", "seccompProfile:\n          type: RuntimeDefault\n      topology", "seccompProfile:\n          type: Unconfined\n      topology"}, {"envoy/deployment.yaml", "            seccompProfile:\n              type: RuntimeDefault\n", ""}}, "container envoy: seccompProfile is not RuntimeDefault"},
		{"no limits", []edit{{"reghost/deployment.yaml", "            limits:\n              cpu: \"1\"\n", "            limits:\n"}}, "container reghost: no cpu limit"},
		{"one replica", []edit{{"reghost/deployment.yaml", "replicas: 2", "replicas: 1"}}, "Deployment reghost: replicas 1; want 2"},
		{"PDB blocks drains", []edit{{"envoy/deployment.yaml", "replicas: 2", "replicas: 1"}}, "minAvailable 1 of 1 replicas blocks every node drain"},
		{"readiness path", []edit{{"reghost/deployment.yaml", "path: /readyz", "path: /ready"}}, "readiness probe GET /ready on port http"},
		{"liveness port", []edit{{"reghost/deployment.yaml", "path: /healthz\n              port: http", "path: /healthz\n              port: admin"}}, "liveness probe GET /healthz on port admin"},
		{"unknown flag", []edit{{"reghost/deployment.yaml", `args: ["-config",`, `args: ["--conf",`}}, "flag provided but not defined: -conf"},
		{"config not mounted", []edit{{"reghost/deployment.yaml", "mountPath: /etc/reghost\n", "mountPath: /etc/reghost.d\n"}}, "nothing mounted at /etc/reghost"},
		{"config key", []edit{{"kustomization.yaml", "config.yaml=reghost/config.yaml", "reghost.yaml=reghost/config.yaml"}}, "has no key config.yaml"},
		{"config invalid", []edit{{"reghost/config.yaml", "    default: true\n", ""}}, "k8s: reghost's config:"},
		{"listen port", []edit{{"reghost/config.yaml", `listen: ":8080"`, `listen: ":8081"`}}, "container port http 8080"},
		{"admin on loopback", []edit{{"reghost/config.yaml", `admin_listen: ":9090"`, `admin_listen: "127.0.0.1:9090"`}}, "does not accept connections from other pods"},
		{"data outside emptyDir", []edit{{"reghost/config.yaml", "data_dir: /data", "data_dir: /var/lib/reghost"}}, "no writable emptyDir at data_dir /var/lib/reghost"},
		{"GOMEMLIMIT above the limit", []edit{{"reghost/deployment.yaml", "value: 384MiB", "value: 600MiB"}}, "GOMEMLIMIT 600MiB is not 70-99% of limits.memory 512Mi"},
		{"GOMEMLIMIT missing", []edit{{"reghost/deployment.yaml", "- name: GOMEMLIMIT", "- name: GOMEMLIMITX"}}, `GOMEMLIMIT "" is not a Go memory limit`},
		{"token variable", []edit{{"reghost/deployment.yaml", "- name: REGHOST_ADMIN_TOKEN", "- name: ADMIN_TOKEN"}}, "no REGHOST_ADMIN_TOKEN in the container's environment"},
		{"token Secret required", []edit{{"reghost/deployment.yaml", "                  optional: true\n", ""}}, "not in the output and not optional"},
		{"Service selects Envoy", []edit{{"reghost/service.yaml", "  selector:\n    app.kubernetes.io/name: reghost", "  selector:\n    app.kubernetes.io/part-of: reghost"}}, "selects Deployment envoy's pods: true"},
		{"Service not headless", []edit{{"reghost/service.yaml", "  clusterIP: None\n", ""}}, "not headless"},
		{"Service port", []edit{{"reghost/service.yaml", "    - name: http\n      port: 8080", "    - name: http\n      port: 80"}}, "goes to port 8080, which is not Service reghost's http port"},
		{"PDB selector", []edit{{"reghost/pdb.yaml", "app.kubernetes.io/name: reghost", "app.kubernetes.io/name: reghos"}}, "PodDisruptionBudget reghost: selector"},
		{"PDB minAvailable", []edit{{"envoy/pdb.yaml", "minAvailable: 1", "minAvailable: 2"}}, "PodDisruptionBudget envoy: minAvailable 2"},
		{"Envoy copy stale", []edit{{"envoy/envoy.yaml", "connect_timeout: 0.25s", "connect_timeout: 1s"}}, "run: cp deploy/envoy/envoy.yaml"},
		{"Lua copy stale", []edit{{"envoy/reghost.lua", "local DECIDE_TIMEOUT_MS = 250", "local DECIDE_TIMEOUT_MS = 1000"}}, "envoy's /etc/envoy/reghost.lua is not deploy/envoy/reghost.lua"},
		{"Lua not mounted", []edit{{"kustomization.yaml", "      - envoy/reghost.lua\n", ""}}, "has no key reghost.lua"},
		{"Envoy port", []edit{{"envoy/deployment.yaml", "containerPort: 8443", "containerPort: 10000"}}, "container port https 10000; envoy.yaml listens on [8443]"},
		{"client address lost", []edit{{"envoy/service.yaml", "externalTrafficPolicy: Local", "externalTrafficPolicy: Cluster"}}, "want LoadBalancer with Local"},
		{"namespace", []edit{{"kustomization.yaml", "namespace: reghost\n", "namespace: default\n"}}, `namespace "default"`},
		{"Envoy concurrency", []edit{{"envoy/deployment.yaml", `"--concurrency", "2"]`, `"--concurrency", "4"]`}}, "--concurrency 4, but limits.cpu 2"},
		{"Envoy no concurrency", []edit{{"envoy/deployment.yaml", `, "--concurrency", "2"]`, `]`}}, "no --concurrency"},
		{"Envoy no preStop", []edit{{"envoy/deployment.yaml", "            preStop:\n              sleep:\n                seconds: 45\n", "            postStart:\n              sleep:\n                seconds: 1\n"}}, "container envoy: no preStop sleep"},
		{"reghost preStop too short", []edit{{"reghost/deployment.yaml", "                seconds: 40\n", "                seconds: 10\n"}}, "container reghost: preStop sleep of 10s ends before"},
		{"Envoy preStop too short", []edit{{"envoy/deployment.yaml", "                seconds: 45\n", "                seconds: 10\n"}}, "container envoy: preStop sleep of 10s is shorter"},
		{"Envoy grace too short", []edit{{"envoy/deployment.yaml", "terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 45"}}, "container envoy: terminationGracePeriodSeconds 45"},
		{"NetworkPolicy missing", []edit{{"kustomization.yaml", "  - reghost/networkpolicy.yaml\n", ""}}, "no NetworkPolicy selects Deployment reghost's pods"},
		{"NetworkPolicy wrong pods", []edit{{"reghost/networkpolicy.yaml", "  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: reghost", "  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: reghost-v2"}}, "no NetworkPolicy selects Deployment reghost's pods"},
		{"NetworkPolicy policyTypes", []edit{{"reghost/networkpolicy.yaml", "policyTypes: [Ingress]", "policyTypes: [Ingress, Egress]"}}, "policyTypes [Ingress Egress]; want [Ingress]"},
		{"NetworkPolicy from anywhere", []edit{{"reghost/networkpolicy.yaml", "    - from:\n        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: envoy\n      ports:", "    - ports:"}}, "admits every source to port 8080"},
		{"NetworkPolicy other namespaces", []edit{{"reghost/networkpolicy.yaml", "        - podSelector:\n", "        - namespaceSelector: {}\n          podSelector:\n"}}, "want Envoy's pods of the namespace only"},
		{"NetworkPolicy every pod", []edit{{"reghost/networkpolicy.yaml", "        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: envoy\n", "        - podSelector: {}\n"}}, "admits Deployment reghost's pods to port 8080"},
		{"NetworkPolicy Envoy label", []edit{{"reghost/networkpolicy.yaml", "              app.kubernetes.io/name: envoy\n", "              app.kubernetes.io/name: envoy-proxy\n"}}, "Envoy's pods are not admitted to reghost's port 8080"},
		{"NetworkPolicy every port", []edit{{"reghost/networkpolicy.yaml", "      ports:\n        - protocol: TCP\n          port: http\n", ""}}, "admits pods to the admin port 9090"},
		{"NetworkPolicy admin port", []edit{{"reghost/networkpolicy.yaml", "          port: http\n", "          port: http\n        - protocol: TCP\n          port: admin\n"}}, "admits pods to the admin port 9090"},
		{"NetworkPolicy unknown port", []edit{{"reghost/networkpolicy.yaml", "          port: http\n", "          port: https\n"}}, "port https is not a port of reghost's container"},
	}
	for _, tc := range broken {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyTree(t, filepath.Join(root, k8sDir), tc.edits...)
			_, p := kubernetes(t, dir)
			p.expect(t, tc.want)
		})
	}
}

// copyTree copies the directory src to a new one, applying edits (whose
// file is relative to src).
func copyTree(t testing.TB, src string, edits ...edit) string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(src, p)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return copyFiles(t, src, files, edits...)
}

// TestKubernetesServer starts reghost in-process with the ConfigMap's
// config and the token handed over in the variable the Deployment sets,
// then asks what the kubelet and Envoy ask, for the base and for the
// overlay with the Redis store (against a real redis-server started with
// the Redis Deployment's arguments). Only the listeners (to free loopback
// ports), the data directory (to a scratch one) and the store's address
// change.
func TestKubernetesServer(t *testing.T) {
	t.Parallel()
	for _, overlay := range []string{"", "overlays/redis"} {
		name := overlay
		if name == "" {
			name = "base"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testKubernetesServer(t, overlay)
		})
	}
}

func testKubernetesServer(t *testing.T, overlay string) {
	var dep k8sDeployment
	var p problems
	if overlay == "" {
		dep, p = kubernetes(t, filepath.Join(repoRoot(t), k8sDir))
	} else {
		dep, p = kubernetesOverlay(t, filepath.Join(repoRoot(t), k8sRoot), overlay)
	}
	p.expectNone(t)
	if t.Failed() {
		t.FailNow()
	}
	cfg := *dep.Config
	if cfg.Store != "" {
		cfg.Store = redistest.Start(t, redistest.Persistent(), redistest.Args(testRedisArgs(dep.Redis)...)).URL()
	}
	data := t.TempDir()
	move := func(f string) string {
		if f == "" {
			return ""
		}
		return filepath.Join(data, strings.TrimPrefix(f, cfg.DataDir))
	}
	cfg.GeoIP.ASN, cfg.GeoIP.Country = move(cfg.GeoIP.ASN), move(cfg.GeoIP.Country)
	cfg.CloudRanges = map[string]string{}
	for k, v := range dep.Config.CloudRanges {
		cfg.CloudRanges[k] = move(v)
	}
	cfg.DataDir, cfg.Listen, cfg.AdminListen = data, "127.0.0.1:0", "127.0.0.1:0"

	const token = "k8s-secret-token-0123456789"
	var asked []string
	a, err := app.New(&cfg, app.Options{Getenv: func(k string) string {
		asked = append(asked, k)
		if k == dep.TokenEnv {
			return token
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	if a.AdminToken() != token {
		t.Errorf("admin token %q; the server read %q, the Deployment sets %s", a.AdminToken(), asked, dep.TokenEnv)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx) }()

	client := &http.Client{Timeout: 5 * time.Second}
	ec, err := parseEnvoy(readRepoFile(t, envoyConfigPath))
	if err != nil {
		t.Fatal(err)
	}
	ep, err := ec.Cluster(envoyCluster)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range append(slices.Clone(dep.ProbePaths), ep.HealthPaths...) {
		resp, err := client.Get("http://" + a.PublicAddr() + path)
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d; probes and Envoy's health check want 200", path, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+a.AdminAddr()+"/api/v1/registries", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := client.Do(req); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("admin API with the Secret's token: %d", resp.StatusCode)
		}
	}
	// The store takes a write (with Redis: Redis is reachable, and
	// the store's checks of it pass).
	req, _ = http.NewRequest(http.MethodPost, "http://"+a.AdminAddr()+"/api/v1/overrides", strings.NewReader(`{"match":{"cidr":"203.0.113.0/24"},"registries":["`+cfg.Default().Name+`"]}`))
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := client.Do(req); err != nil {
		t.Error(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("POST /api/v1/overrides: %d %s", resp.StatusCode, b)
		}
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// parseGoMemLimit reads a GOMEMLIMIT value as the Go runtime does: a
// number of bytes with an optional B, KiB, MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, bool) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
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

// TestKubernetesRoot checks that deploy/k8s, kept so that
// kubectl apply -k deploy/k8s goes on working, builds the base, object
// for object.
func TestKubernetesRoot(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	build := func(dir string) []byte {
		m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(root, dir))
		if err != nil {
			t.Fatal(err)
		}
		out, err := m.AsYaml()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if !bytes.Equal(build(k8sRoot), build(k8sDir)) {
		t.Errorf("kustomize build %s differs from %s", k8sRoot, k8sDir)
	}
}
