package deploy

// Tests of the Kubernetes base in k8s/: it is rendered with the kustomize
// library kubectl uses, every object is decoded strictly into its API type,
// and the result is checked against the gateway's own flags and defaults
// (from the binary the Dockerfile builds). Helpers are prefixed k8s (np for
// the NetworkPolicy evaluator, img for the image) so as not to meet the
// other tests of the package.

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Paths relative to the test's working directory, deploy/.
const (
	k8sRepoRoot = ".."
	k8sDir      = "k8s"
	k8sReadme   = "k8s/README.md"
)

// k8sDrainMargin is the least time terminationGracePeriodSeconds must leave
// after the preStop sleep and the drain timeout, for the process to exit.
const k8sDrainMargin = 5 * time.Second

// k8sCmdTimeout bounds each external command (go build, kubectl).
const k8sCmdTimeout = 5 * time.Minute

// k8sObjects are the rendered objects of the base, each decoded into its
// Kubernetes API type.
type k8sObjects struct {
	ids            []string // "Kind/name", in render order
	deployment     *appsv1.Deployment
	configMap      *corev1.ConfigMap
	services       map[string]*corev1.Service
	pdb            *policyv1.PodDisruptionBudget
	hpa            *autoscalingv2.HorizontalPodAutoscaler
	serviceMonitor *monitoringv1.ServiceMonitor
	networkPolicy  *networkingv1.NetworkPolicy
}

// k8sDecodeStrict decodes one object, failing on any field its type lacks.
func k8sDecodeStrict[T any](y []byte) (*T, error) {
	v := new(T)
	if err := yaml.UnmarshalStrict(y, v); err != nil {
		return nil, err
	}
	return v, nil
}

func k8sSetOnce[T any](dst **T, v *T, id string) error {
	if *dst != nil {
		return fmt.Errorf("%s: a second one; the base has one", id)
	}
	*dst = v
	return nil
}

// decodeObject files one rendered object into m.
func (m *k8sObjects) decodeObject(apiVersion, kind, name string, y []byte) error {
	id := kind + "/" + name
	var err error
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		var v *appsv1.Deployment
		if v, err = k8sDecodeStrict[appsv1.Deployment](y); err == nil {
			err = k8sSetOnce(&m.deployment, v, id)
		}
	case "v1 ConfigMap":
		var v *corev1.ConfigMap
		if v, err = k8sDecodeStrict[corev1.ConfigMap](y); err == nil {
			err = k8sSetOnce(&m.configMap, v, id)
		}
	case "v1 Service":
		var v *corev1.Service
		if v, err = k8sDecodeStrict[corev1.Service](y); err == nil {
			m.services[name] = v
		}
	case "policy/v1 PodDisruptionBudget":
		var v *policyv1.PodDisruptionBudget
		if v, err = k8sDecodeStrict[policyv1.PodDisruptionBudget](y); err == nil {
			err = k8sSetOnce(&m.pdb, v, id)
		}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		var v *autoscalingv2.HorizontalPodAutoscaler
		if v, err = k8sDecodeStrict[autoscalingv2.HorizontalPodAutoscaler](y); err == nil {
			err = k8sSetOnce(&m.hpa, v, id)
		}
	case "monitoring.coreos.com/v1 ServiceMonitor":
		var v *monitoringv1.ServiceMonitor
		if v, err = k8sDecodeStrict[monitoringv1.ServiceMonitor](y); err == nil {
			err = k8sSetOnce(&m.serviceMonitor, v, id)
		}
	case "networking.k8s.io/v1 NetworkPolicy":
		var v *networkingv1.NetworkPolicy
		if v, err = k8sDecodeStrict[networkingv1.NetworkPolicy](y); err == nil {
			err = k8sSetOnce(&m.networkPolicy, v, id)
		}
	default:
		// A Secret among them would ship a secret value.
		return fmt.Errorf("%s (%s): not a kind the base should render", id, apiVersion)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	m.ids = append(m.ids, id)
	return nil
}

// k8sRender builds the base as `kubectl kustomize` does and decodes it.
func k8sRender(t *testing.T) *k8sObjects {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), k8sDir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", k8sDir, err)
	}
	m := &k8sObjects{services: map[string]*corev1.Service{}}
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.decodeObject(r.GetApiVersion(), r.GetKind(), r.GetName(), y); err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	missing := map[string]bool{
		"Deployment":              m.deployment == nil,
		"ConfigMap":               m.configMap == nil,
		"Service pushgate":        m.services["pushgate"] == nil,
		"Service pushgate-admin":  m.services["pushgate-admin"] == nil,
		"PodDisruptionBudget":     m.pdb == nil,
		"HorizontalPodAutoscaler": m.hpa == nil,
		"ServiceMonitor":          m.serviceMonitor == nil,
		"NetworkPolicy":           m.networkPolicy == nil,
	}
	for what, gone := range missing {
		if gone {
			t.Errorf("the base renders no %s", what)
		}
	}
	if len(m.services) != 2 {
		t.Errorf("the base renders Services %v, want pushgate and pushgate-admin", slices.Sorted(maps.Keys(m.services)))
	}
	if t.Failed() {
		t.FailNow()
	}
	if n := len(m.deployment.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("Deployment: %d containers, want 1", n)
	}
	return m
}

func TestK8sDecodeIsStrict(t *testing.T) {
	m := &k8sObjects{services: map[string]*corev1.Service{}}
	typo := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replica: 2\n")
	if err := m.decodeObject("apps/v1", "Deployment", "x", typo); err == nil {
		t.Error("a Deployment with spec.replica (a typo) decoded")
	}
	secret := []byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n")
	if err := m.decodeObject("v1", "Secret", "s", secret); err == nil {
		t.Error("a Secret was accepted into the base")
	}
}

func k8sAddrPort(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("address %q: the port is not a number", addr)
	}
	return n
}

// setting is the value the pod runs with: the ConfigMap's, else the
// gateway's default.
func (m *k8sObjects) setting(flags map[string]imgFlag, flag string) string {
	f, ok := flags[flag]
	if !ok {
		panic("no flag --" + flag)
	}
	if v, ok := m.configMap.Data[f.env]; ok {
		return v
	}
	return f.def
}

func (m *k8sObjects) container() *corev1.Container {
	return &m.deployment.Spec.Template.Spec.Containers[0]
}

// containerPort resolves a port by name or number to a container port.
func (m *k8sObjects) containerPort(p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, cp := range m.container().Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

func (m *k8sObjects) namedPort(name string) int32 {
	cp, _ := m.containerPort(intstr.FromString(name))
	return cp.ContainerPort
}

func k8sSelects(sel *metav1.LabelSelector, set map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() {
		return false // an empty selector selects everything: never what is meant here
	}
	return s.Matches(labels.Set(set))
}

func TestK8sManifests(t *testing.T) {
	m := k8sRender(t)
	bin := imgBuildGateway(t)
	flags := imgGatewayFlags(t, bin)
	c := m.container()
	podLabels := m.deployment.Spec.Template.Labels

	t.Run("secrets", func(t *testing.T) { k8sCheckSecrets(t, m, flags) })
	t.Run("secrets start the gateway", func(t *testing.T) { k8sStartWithSecrets(t, m, flags, bin) })
	t.Run("admin address", func(t *testing.T) { k8sCheckAdminAddr(t, m, flags) })

	t.Run("settings", func(t *testing.T) {
		envs := map[string]bool{}
		for _, f := range flags {
			envs[f.env] = true
		}
		for key := range m.configMap.Data {
			if !envs[key] {
				t.Errorf("ConfigMap %s: %s is no setting of the gateway (pushgate --help)", m.configMap.Name, key)
			}
		}
		for _, e := range c.Env {
			if strings.HasPrefix(e.Name, "PUSHGATE_") && !envs[e.Name] {
				t.Errorf("Deployment: env %s is no setting of the gateway", e.Name)
			}
		}
		readme, err := os.ReadFile(k8sReadme)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range regexp.MustCompile(`PUSHGATE_[A-Z0-9_]*[A-Z0-9]`).FindAllString(string(readme), -1) {
			if !envs[name] {
				t.Errorf("%s: %s is no setting of the gateway", k8sReadme, name)
			}
		}
		var fromConfig bool
		for _, ef := range c.EnvFrom {
			switch {
			case ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == m.configMap.Name:
				fromConfig = true
			case ef.SecretRef != nil:
				t.Errorf("Deployment: envFrom Secret %s: secrets go in files (a mounted Secret named by the *_FILE settings), not in the environment", ef.SecretRef.Name)
			}
		}
		if !fromConfig {
			t.Errorf("Deployment: no envFrom the ConfigMap %s", m.configMap.Name)
		}
		if repo, _, _ := strings.Cut(c.Image, ":"); repo != "pushgate" {
			t.Errorf("Deployment: image %s, want pushgate[:tag] (what kustomize images: overrides)", c.Image)
		}
	})

	t.Run("ports", func(t *testing.T) {
		for name, flag := range map[string]string{"ws": "addr", "admin": "admin-addr"} {
			want := k8sAddrPort(t, m.setting(flags, flag))
			if def := k8sAddrPort(t, flags[flag].def); def != want {
				t.Errorf("the ConfigMap moves --%s off its default port %d to %d", flag, def, want)
			}
			if got := m.namedPort(name); int(got) != want {
				t.Errorf("Deployment: container port %s = %d, want %d (--%s)", name, got, want, flag)
			}
		}
		if len(c.Ports) != 2 {
			t.Errorf("Deployment: %d container ports, want ws and admin", len(c.Ports))
		}
	})

	t.Run("probes", func(t *testing.T) {
		admin := m.namedPort("admin")
		for _, p := range []struct {
			what  string
			probe *corev1.Probe
			path  string
		}{
			{"livenessProbe", c.LivenessProbe, "/healthz"},
			{"readinessProbe", c.ReadinessProbe, "/readyz"},
		} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("Deployment: no %s httpGet", p.what)
				continue
			}
			g := p.probe.HTTPGet
			if g.Path != p.path {
				t.Errorf("Deployment: %s path %s, want %s", p.what, g.Path, p.path)
			}
			if cp, ok := m.containerPort(g.Port); !ok || cp.ContainerPort != admin {
				t.Errorf("Deployment: %s on port %s, want the admin port %d", p.what, g.Port.String(), admin)
			}
		}
	})

	t.Run("drain", func(t *testing.T) {
		spec := m.deployment.Spec.Template.Spec
		ps := c.Lifecycle
		if ps == nil || ps.PreStop == nil || ps.PreStop.Sleep == nil {
			t.Fatal("Deployment: no lifecycle.preStop.sleep (the image has no shell for exec)")
		}
		if ps.PreStop.Exec != nil || ps.PreStop.HTTPGet != nil {
			t.Error("Deployment: preStop has an action besides sleep")
		}
		drain, err := time.ParseDuration(m.setting(flags, "drain-timeout"))
		if err != nil {
			t.Fatalf("drain timeout: %v", err)
		}
		sleep := time.Duration(ps.PreStop.Sleep.Seconds) * time.Second
		if spec.TerminationGracePeriodSeconds == nil {
			t.Fatal("Deployment: no terminationGracePeriodSeconds")
		}
		grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
		if need := sleep + drain + k8sDrainMargin; grace < need {
			t.Errorf("Deployment: terminationGracePeriodSeconds %v < preStop sleep %v + drain timeout %v + margin %v: pods would be killed mid-drain",
				grace, sleep, drain, k8sDrainMargin)
		}
	})

	t.Run("services", func(t *testing.T) {
		for _, svc := range m.services {
			if !k8sSelects(&metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, podLabels) {
				t.Errorf("Service %s: selector %v does not select the pods %v", svc.Name, svc.Spec.Selector, podLabels)
			}
			for _, p := range svc.Spec.Ports {
				if p.TargetPort.Type != intstr.String {
					t.Errorf("Service %s: targetPort %s is a number; name the container port", svc.Name, p.TargetPort.String())
				} else if _, ok := m.containerPort(p.TargetPort); !ok {
					t.Errorf("Service %s: targetPort %s is no container port", svc.Name, p.TargetPort.String())
				}
			}
		}
		pub := m.services["pushgate"]
		if len(pub.Spec.Ports) != 1 || pub.Spec.Ports[0].Port != 80 || pub.Spec.Ports[0].TargetPort.StrVal != "ws" {
			t.Errorf("Service pushgate: ports %v, want 80 to ws only", pub.Spec.Ports)
		}
		adm := m.services["pushgate-admin"]
		if adm.Spec.Type != "" && adm.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("Service pushgate-admin: type %s, want ClusterIP", adm.Spec.Type)
		}
		if len(adm.Spec.Ports) != 1 || adm.Spec.Ports[0].TargetPort.StrVal != "admin" {
			t.Errorf("Service pushgate-admin: ports %v, want one to admin", adm.Spec.Ports)
		}
	})

	t.Run("security", func(t *testing.T) {
		df, err := imgReadDockerfile()
		if err != nil {
			t.Fatal(err)
		}
		imageUID, err := df.imageUID()
		if err != nil {
			t.Fatal(err)
		}
		pod := m.deployment.Spec.Template.Spec.SecurityContext
		if pod == nil {
			pod = &corev1.PodSecurityContext{}
		}
		sc := c.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		nonRoot := k8sEffective(sc.RunAsNonRoot, pod.RunAsNonRoot)
		uid := k8sEffective(sc.RunAsUser, pod.RunAsUser)
		seccomp := k8sEffective(sc.SeccompProfile, pod.SeccompProfile)
		if nonRoot == nil || !*nonRoot {
			t.Error("Deployment: runAsNonRoot is not true")
		}
		if uid == nil || *uid == 0 || *uid != imageUID {
			t.Errorf("Deployment: runAsUser %v, want the image's non-root user %d", k8sDeref(uid), imageUID)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("Deployment: readOnlyRootFilesystem is not true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("Deployment: allowPrivilegeEscalation is not false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Error("Deployment: privileged")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Error("Deployment: capabilities do not drop ALL and add none")
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Error("Deployment: seccompProfile is not RuntimeDefault")
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[res]
			lim, okLim := c.Resources.Limits[res]
			if !okReq || !okLim {
				t.Errorf("Deployment: no %s request and limit", res)
			} else if req.Cmp(lim) > 0 {
				t.Errorf("Deployment: %s request %s above its limit %s", res, req.String(), lim.String())
			}
		}
	})

	t.Run("scaling", func(t *testing.T) {
		if r := m.deployment.Spec.Replicas; r != nil {
			t.Errorf("Deployment: replicas %d: the autoscaler owns the count, and apply would reset it", *r)
		}
		if !k8sSelects(m.deployment.Spec.Selector, podLabels) {
			t.Error("Deployment: its selector does not select its own pods")
		}
		ref := m.hpa.Spec.ScaleTargetRef
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != m.deployment.Name {
			t.Errorf("HorizontalPodAutoscaler: targets %s %s/%s, want apps/v1 Deployment/%s", ref.APIVersion, ref.Kind, ref.Name, m.deployment.Name)
		}
		if lo := m.hpa.Spec.MinReplicas; lo == nil || *lo < 2 {
			t.Errorf("HorizontalPodAutoscaler: minReplicas %v, want at least 2", k8sDeref(lo))
		} else if m.hpa.Spec.MaxReplicas < *lo {
			t.Errorf("HorizontalPodAutoscaler: maxReplicas %d < minReplicas %d", m.hpa.Spec.MaxReplicas, *lo)
		}
		cpu := false
		for _, mt := range m.hpa.Spec.Metrics {
			if mt.Type == autoscalingv2.ResourceMetricSourceType && mt.Resource != nil && mt.Resource.Name == corev1.ResourceCPU &&
				mt.Resource.Target.Type == autoscalingv2.UtilizationMetricType && mt.Resource.Target.AverageUtilization != nil {
				cpu = true
			}
		}
		if !cpu {
			t.Error("HorizontalPodAutoscaler: no CPU utilization metric")
		}
		if rate := k8sScaleDownPerMinute(m.hpa); rate > 1 {
			t.Errorf("HorizontalPodAutoscaler: scales down up to %.2f pods a minute, want at most 1: each one removed disconnects its clients", rate)
		}
		if !k8sSelects(m.pdb.Spec.Selector, podLabels) {
			t.Errorf("PodDisruptionBudget: selector does not select the pods %v", podLabels)
		}
		if mu := m.pdb.Spec.MaxUnavailable; mu == nil || *mu != intstr.FromInt32(1) {
			t.Errorf("PodDisruptionBudget: maxUnavailable %v, want 1", mu)
		}
	})

	t.Run("servicemonitor", func(t *testing.T) {
		sm := m.serviceMonitor
		adm := m.services["pushgate-admin"]
		if !k8sSelects(&sm.Spec.Selector, adm.Labels) {
			t.Errorf("ServiceMonitor: selector %v does not select Service pushgate-admin (labels %v)", sm.Spec.Selector.MatchLabels, adm.Labels)
		}
		if k8sSelects(&sm.Spec.Selector, m.services["pushgate"].Labels) {
			t.Error("ServiceMonitor: selects the public Service too")
		}
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("ServiceMonitor: %d endpoints, want 1", len(sm.Spec.Endpoints))
		}
		ep := sm.Spec.Endpoints[0]
		var target *corev1.ServicePort
		for i, p := range adm.Spec.Ports {
			if p.Name == ep.Port {
				target = &adm.Spec.Ports[i]
			}
		}
		if target == nil {
			t.Fatalf("ServiceMonitor: endpoint port %q is no port of Service pushgate-admin", ep.Port)
		}
		if cp, ok := m.containerPort(target.TargetPort); !ok || cp.ContainerPort != m.namedPort("admin") {
			t.Errorf("ServiceMonitor: scrapes %s, not the admin listener", target.TargetPort.String())
		}
		if ep.Path != "/metrics" {
			t.Errorf("ServiceMonitor: path %q, want /metrics", ep.Path)
		}
		if ep.Interval != "15s" {
			t.Errorf("ServiceMonitor: interval %q, want 15s", ep.Interval)
		}
	})

	t.Run("networkpolicy", func(t *testing.T) {
		np := m.networkPolicy
		if !k8sSelects(&np.Spec.PodSelector, podLabels) {
			t.Fatalf("NetworkPolicy: podSelector does not select the pods %v", podLabels)
		}
		ws, admin := m.namedPort("ws"), m.namedPort("admin")
		self := npPeer{name: "a pod in the same namespace", sameNamespace: true, podLabels: map[string]string{"app": "backend"}}
		prom := npPeer{name: "Prometheus in namespace monitoring", nsLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}, podLabels: map[string]string{"app.kubernetes.io/name": "prometheus"}}
		other := npPeer{name: "a pod in namespace default", nsLabels: map[string]string{"kubernetes.io/metadata.name": "default"}, podLabels: map[string]string{"app": "x"}}
		outside := npPeer{name: "a client outside the cluster", external: true}
		for _, c := range []struct {
			who  npPeer
			port int32
			want bool
		}{
			{outside, ws, true}, {other, ws, true}, {self, ws, true},
			{self, admin, true}, {prom, admin, true},
			{other, admin, false}, {outside, admin, false},
		} {
			if got := m.allowed(np, npIngress, c.port, corev1.ProtocolTCP, c.who); got != c.want {
				t.Errorf("NetworkPolicy: ingress from %s to port %d allowed = %v, want %v", c.who.name, c.port, got, c.want)
			}
		}
		dns := npPeer{name: "kube-dns", nsLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}, podLabels: map[string]string{"k8s-app": "kube-dns"}}
		for _, proto := range []corev1.Protocol{corev1.ProtocolUDP, corev1.ProtocolTCP} {
			if !m.allowed(np, npEgress, 53, proto, dns) {
				t.Errorf("NetworkPolicy: egress to DNS (53/%s) denied", proto)
			}
		}
		nats := npPeer{name: "NATS in the same namespace", sameNamespace: true, podLabels: map[string]string{"app.kubernetes.io/name": "nats"}}
		for _, port := range k8sBrokerPorts(t, m.setting(flags, "broker")) {
			if !m.allowed(np, npEgress, port, corev1.ProtocolTCP, nats) {
				t.Errorf("NetworkPolicy: egress to the broker's port %d (PUSHGATE_BROKER) denied", port)
			}
		}
	})
}

func k8sEffective[T any](container, pod *T) *T {
	if container != nil {
		return container
	}
	return pod
}

func k8sDeref[T any](p *T) any {
	if p == nil {
		return "unset"
	}
	return *p
}

// k8sScaleDownPerMinute is the most pods the autoscaler may remove in a
// minute at maxReplicas.
func k8sScaleDownPerMinute(hpa *autoscalingv2.HorizontalPodAutoscaler) float64 {
	b := hpa.Spec.Behavior
	if b == nil || b.ScaleDown == nil || len(b.ScaleDown.Policies) == 0 {
		return math.Inf(1) // the default removes up to 100% of the pods every 15s
	}
	sel := autoscalingv2.MaxChangePolicySelect
	if b.ScaleDown.SelectPolicy != nil {
		sel = *b.ScaleDown.SelectPolicy
	}
	if sel == autoscalingv2.DisabledPolicySelect {
		return 0
	}
	var rates []float64
	for _, p := range b.ScaleDown.Policies {
		pods := float64(p.Value)
		if p.Type == autoscalingv2.PercentScalingPolicy {
			pods = math.Ceil(float64(p.Value) * float64(hpa.Spec.MaxReplicas) / 100)
		}
		// A period shorter than a minute fits several times in one.
		rates = append(rates, pods*math.Ceil(60/float64(max(p.PeriodSeconds, 1))))
	}
	if sel == autoscalingv2.MinChangePolicySelect {
		return slices.Min(rates)
	}
	return slices.Max(rates)
}

func k8sBrokerPorts(t *testing.T, broker string) []int32 {
	t.Helper()
	var ports []int32
	for u := range strings.SplitSeq(broker, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatalf("PUSHGATE_BROKER %q: %v", broker, err)
		}
		port := int64(4222) // NATS's default
		if p := pu.Port(); p != "" {
			if port, err = strconv.ParseInt(p, 10, 32); err != nil {
				t.Fatalf("PUSHGATE_BROKER %q: %v", broker, err)
			}
		}
		ports = append(ports, int32(port))
	}
	return ports
}

// TestK8sKubectlKustomize renders the base with kubectl's own kustomize and
// compares the objects with the krusty render. kubectl is not among the
// project's dependencies (make deps does not install it), so its absence
// skips this test even under CI; TestK8sManifests is the real check.
func TestK8sKubectlKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not on PATH; the krusty render in TestK8sManifests covers the base")
	}
	ctx, cancel := context.WithTimeout(t.Context(), k8sCmdTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, "kustomize", k8sDir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", k8sDir, err, stderr.String())
	}
	var got []string
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(out), -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var obj struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("kubectl kustomize output: %v", err)
		}
		got = append(got, obj.Kind+"/"+obj.Metadata.Name)
	}
	want := k8sRender(t).ids
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("kubectl kustomize renders %v, krusty %v", got, want)
	}
}
