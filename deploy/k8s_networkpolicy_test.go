package deploy

// A NetworkPolicy evaluator, enough for the base's one policy: who may
// reach the gateway's pods on which port, and where they may connect.

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type npDirection int

const (
	npIngress npDirection = iota
	npEgress
)

// npPeer is the other end of a connection to or from a gateway pod.
type npPeer struct {
	name          string
	external      bool // outside the cluster
	sameNamespace bool
	nsLabels      map[string]string // when not sameNamespace
	podLabels     map[string]string
}

// allowed says whether np lets traffic through between the gateway's pods
// and p on port/proto. An ipBlock is taken to admit anyone, which errs on
// the side of reporting the admin port open.
func (m *k8sObjects) allowed(np *networkingv1.NetworkPolicy, dir npDirection, port int32, proto corev1.Protocol, p npPeer) bool {
	want := networkingv1.PolicyTypeIngress
	if dir == npEgress {
		want = networkingv1.PolicyTypeEgress
	}
	types := np.Spec.PolicyTypes
	if len(types) == 0 {
		types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			types = append(types, networkingv1.PolicyTypeEgress)
		}
	}
	if !slices.Contains(types, want) {
		return true // the policy does not restrict this direction
	}
	type rule struct {
		ports []networkingv1.NetworkPolicyPort
		peers []networkingv1.NetworkPolicyPeer
	}
	var rules []rule
	if dir == npIngress {
		for _, r := range np.Spec.Ingress {
			rules = append(rules, rule{r.Ports, r.From})
		}
	} else {
		for _, r := range np.Spec.Egress {
			rules = append(rules, rule{r.Ports, r.To})
		}
	}
	for _, r := range rules {
		if m.portMatches(r.ports, port, proto) && npPeerMatches(r.peers, p) {
			return true
		}
	}
	return false
}

func (m *k8sObjects) portMatches(ports []networkingv1.NetworkPolicyPort, port int32, proto corev1.Protocol) bool {
	if len(ports) == 0 {
		return true
	}
	for _, pp := range ports {
		pr := corev1.ProtocolTCP
		if pp.Protocol != nil {
			pr = *pp.Protocol
		}
		if pr != proto {
			continue
		}
		switch {
		case pp.Port == nil:
			return true
		case pp.Port.Type == intstr.String:
			// A name refers to the gateway's own container ports (ingress).
			if cp, ok := m.containerPort(*pp.Port); ok && cp.ContainerPort == port {
				return true
			}
		case pp.Port.IntVal == port || (pp.EndPort != nil && pp.Port.IntVal <= port && port <= *pp.EndPort):
			return true
		}
	}
	return false
}

func npPeerMatches(peers []networkingv1.NetworkPolicyPeer, p npPeer) bool {
	if len(peers) == 0 {
		return true
	}
	for _, np := range peers {
		switch {
		case np.IPBlock != nil:
			return true
		case p.external:
			continue
		case np.NamespaceSelector == nil:
			if np.PodSelector != nil && p.sameNamespace && npSelects(np.PodSelector, p.podLabels) {
				return true
			}
		default:
			nsOK := p.sameNamespace && np.NamespaceSelector.Size() == 0 // {} selects every namespace
			if !p.sameNamespace {
				nsOK = npSelects(np.NamespaceSelector, p.nsLabels)
			}
			if nsOK && (np.PodSelector == nil || npSelects(np.PodSelector, p.podLabels)) {
				return true
			}
		}
	}
	return false
}

// npSelects is a selector match where {} selects everything.
func npSelects(sel *metav1.LabelSelector, set map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(labels.Set(set))
}

func TestK8sNetworkPolicyEvaluator(t *testing.T) {
	m := &k8sObjects{deployment: &appsv1.Deployment{}}
	m.deployment.Spec.Template.Spec.Containers = []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 9090}}}}
	admin, ws := intstr.FromString("admin"), intstr.FromInt32(8080)
	other := npPeer{name: "other", nsLabels: map[string]string{"kubernetes.io/metadata.name": "default"}}
	for _, c := range []struct {
		name string
		rule networkingv1.NetworkPolicyIngressRule
		want bool
	}{
		{"no from admits everyone", networkingv1.NetworkPolicyIngressRule{Ports: []networkingv1.NetworkPolicyPort{{Port: &admin}}}, true},
		{"namespaceSelector {} admits every namespace", networkingv1.NetworkPolicyIngressRule{
			From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}},
		}, true},
		{"an ipBlock may admit anyone", networkingv1.NetworkPolicyIngressRule{
			From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}},
		}, true},
		{"podSelector {} is this namespace only", networkingv1.NetworkPolicyIngressRule{
			From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}},
		}, false},
		{"another port", networkingv1.NetworkPolicyIngressRule{Ports: []networkingv1.NetworkPolicyPort{{Port: &ws}}}, false},
	} {
		np := &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{c.rule},
		}}
		if got := m.allowed(np, npIngress, 9090, corev1.ProtocolTCP, other); got != c.want {
			t.Errorf("%s: allowed = %v, want %v", c.name, got, c.want)
		}
	}
}
