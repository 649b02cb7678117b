package synth

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// A template builds one policy for application namespace i.
type template struct {
	name  string
	build func(c *Cluster, i int) networkingv1.NetworkPolicySpec
}

// templates, in the order of the first one (always used) and then the pool
// the others are drawn from. Each is a shape common in real clusters.
var templates = []template{
	{"default-deny-ingress", func(*Cluster, int) networkingv1.NetworkPolicySpec {
		return networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}
	}},
	// Egress default deny with DNS and the own namespace allowed.
	{"allow-dns-egress", func(*Cluster, int) networkingv1.NetworkPolicySpec {
		return networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: match(LabelName, KubeSystem),
					PodSelector:       match(LabelK8sApp, "kube-dns")}},
					Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolUDP, 53), port(corev1.ProtocolTCP, 53)}},
				{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}},
			},
		}
	}},
	// The ingress controller reaches the web tier (combined peer, named port).
	{"web-from-ingress", func(*Cluster, int) networkingv1.NetworkPolicySpec {
		return ingressSpec(tier("web"), networkingv1.NetworkPolicyIngressRule{
			From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: match(LabelName, IngressNginx),
				PodSelector:       match(LabelIngress, "ingress-nginx")}},
			Ports: []networkingv1.NetworkPolicyPort{named("http"), port(corev1.ProtocolTCP, 8443)}})
	}},
	{"api-from-web", func(*Cluster, int) networkingv1.NetworkPolicySpec {
		return ingressSpec(tier("api"), networkingv1.NetworkPolicyIngressRule{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: tier("web")}},
			Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, 8080), named("grpc")}})
	}},
	{"db-from-api", func(*Cluster, int) networkingv1.NetworkPolicySpec {
		return ingressSpec(tier("db"), networkingv1.NetworkPolicyIngressRule{
			From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: LabelTier, Operator: metav1.LabelSelectorOpIn, Values: []string{"api", "worker"}}}}}},
			Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, 5432)}})
	}},
	// The team's web pods in any of its namespaces, on a port range.
	{"api-from-team", func(c *Cluster, i int) networkingv1.NetworkPolicySpec {
		return ingressSpec(tier("api"), networkingv1.NetworkPolicyIngressRule{
			From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: match(LabelTeam, Team(i)),
				PodSelector:       tier("web")}},
			Ports: []networkingv1.NetworkPolicyPort{portRange(corev1.ProtocolTCP, 8000, 8999)}})
	}},
	{"allow-monitoring", func(*Cluster, int) networkingv1.NetworkPolicySpec {
		return ingressSpec(&metav1.LabelSelector{}, networkingv1.NetworkPolicyIngressRule{
			From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: match(LabelName, Monitoring),
				PodSelector:       match(LabelApp, "prometheus")}},
			Ports: []networkingv1.NetworkPolicyPort{named("metrics")}})
	}},
	// Web pods reach the internet but not private ranges.
	{"web-egress-external", func(*Cluster, int) networkingv1.NetworkPolicySpec {
		return networkingv1.NetworkPolicySpec{
			PodSelector: *tier("web"),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0",
					Except: []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}}}},
				Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, 443), port(corev1.ProtocolTCP, 80)}}},
		}
	}},
	// Load balancers' source ranges reach the web tier.
	{"web-from-lb", func(*Cluster, int) networkingv1.NetworkPolicySpec {
		return ingressSpec(tier("web"), networkingv1.NetworkPolicyIngressRule{
			From: []networkingv1.NetworkPolicyPeer{
				{IPBlock: &networkingv1.IPBlock{CIDR: "192.168.0.0/16", Except: []string{"192.168.100.0/24"}}},
				{IPBlock: &networkingv1.IPBlock{CIDR: "172.20.0.0/16"}}},
			Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, 80), port(corev1.ProtocolTCP, 443)}})
	}},
	// The cache serves the team's production namespaces (match expressions).
	{"cache-from-prod", func(c *Cluster, i int) networkingv1.NetworkPolicySpec {
		return ingressSpec(tier("cache"), networkingv1.NetworkPolicyIngressRule{
			From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: LabelEnv, Operator: metav1.LabelSelectorOpIn, Values: []string{"prod"}},
					{Key: LabelTeam, Operator: metav1.LabelSelectorOpIn, Values: []string{Team(i)}}}},
				PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: LabelTier, Operator: metav1.LabelSelectorOpIn, Values: []string{"api", "worker"}}}}}},
			Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, 6379)}})
	}},
	// The API tier calls a partner team's databases and the service range.
	{"api-egress-partner", func(c *Cluster, i int) networkingv1.NetworkPolicySpec {
		partner := (i/NamespacesPer + 1) * NamespacesPer
		if partner >= c.AppNamespaces() {
			partner = 0
		}
		return networkingv1.NetworkPolicySpec{
			PodSelector: *tier("api"),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: match(LabelTeam, Team(partner)), PodSelector: tier("db")}},
					Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, 5432)}},
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.96.0.0/12"}}},
					Ports: []networkingv1.NetworkPolicyPort{portRange(corev1.ProtocolTCP, 30000, 32767), port(corev1.ProtocolUDP, 53)}},
			},
		}
	}},
	// Workers call the API by name in their namespace and the team's.
	{"worker-egress-api", func(c *Cluster, i int) networkingv1.NetworkPolicySpec {
		return networkingv1.NetworkPolicySpec{
			PodSelector: *tier("worker"),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{PodSelector: tier("api")},
					{NamespaceSelector: match(LabelTeam, Team(i)), PodSelector: tier("api")}},
				Ports: []networkingv1.NetworkPolicyPort{named("http"), named("grpc")}}},
		}
	}},
}

// namespacePolicies returns n policies for application namespace i: the
// default deny, then templates in a random order, numbered when n exceeds
// the number of templates.
func (c *Cluster) namespacePolicies(i, n int) []*networkingv1.NetworkPolicy {
	if n == 0 {
		return nil
	}
	out := []*networkingv1.NetworkPolicy{c.fromTemplate(i, templates[0], "")}
	pool := templates[1:]
	for round := 0; len(out) < n; round++ {
		suffix := ""
		if round > 0 {
			suffix = fmt.Sprintf("-%d", round)
		}
		for _, k := range c.rng.Perm(len(pool)) {
			if len(out) == n {
				break
			}
			out = append(out, c.fromTemplate(i, pool[k], suffix))
		}
	}
	return out
}

func (c *Cluster) fromTemplate(i int, t template, suffix string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: AppNamespace(i), Name: t.name + suffix},
		Spec:       t.build(c, i),
	}
}

// NewPolicy returns a policy (not part of c.Policies) for application
// namespace i from template k of the pool (0 is the default deny), named
// name: the policy an event adds.
func (c *Cluster) NewPolicy(i, k int, name string) *networkingv1.NetworkPolicy {
	p := c.fromTemplate(i, templates[k%len(templates)], "")
	p.Name = name
	return p
}

// Templates is the number of policy templates.
func Templates() int { return len(templates) }

func ingressSpec(sel *metav1.LabelSelector, rule networkingv1.NetworkPolicyIngressRule) networkingv1.NetworkPolicySpec {
	return networkingv1.NetworkPolicySpec{
		PodSelector: *sel,
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		Ingress:     []networkingv1.NetworkPolicyIngressRule{rule},
	}
}

func match(k, v string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}
}

func tier(t string) *metav1.LabelSelector { return match(LabelTier, t) }

func port(proto corev1.Protocol, p int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(p)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}

func portRange(proto corev1.Protocol, p, end int32) networkingv1.NetworkPolicyPort {
	r := port(proto, p)
	r.EndPort = &end
	return r
}

func named(name string) networkingv1.NetworkPolicyPort {
	proto := corev1.ProtocolTCP
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}
