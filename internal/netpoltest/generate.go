package netpoltest

// Seeded random variations of the fixture and random NetworkPolicies over it,
// for property tests that compare the compiled flows with the reference
// evaluator. Everything is a pure function of the *rand.Rand handed in, so a
// seed replays a scenario exactly.

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
)

// Label vocabularies Randomize draws from and selectors refer to. Selectors
// also use values nobody carries, so that some peers match nothing.
var (
	podLabelVocab = map[string][]string{
		"app":  {"web", "db", "cache"},
		"tier": {"1", "2"},
		"pod":  {"a", "b", "c"},
	}
	nsLabelVocab = map[string][]string{
		"env":                         {"prod", "dev"},
		"team":                        {"blue", "red"},
		"ns":                          {"x", "y", "z"},
		"kubernetes.io/metadata.name": {"x", "y", "z"},
	}
)

// ExtraPortName is a named port Randomize adds to some pods (TCP, number
// varying per pod), besides the fixture's serve-<port>-<proto> names.
const ExtraPortName = "http"

// RandomNodeOf returns a node layout for n nodes (nil for the fixture's
// round robin). layout 0 is round robin; 1 puts each namespace on one node
// (x on 1, y on 2, z on 3 or 1); 2 puts pod a of every namespace on node 1
// and b, c on the others. The same (n, layout) always gives the same
// placement, so Worlds can be reused across scenarios.
func RandomNodeOf(n, layout int) func(ns, pod string) int {
	if n <= 1 || layout == 0 {
		return nil
	}
	return func(ns, pod string) int {
		var i int
		if layout == 1 {
			i = indexOf(NamespaceNames, ns)
		} else {
			i = indexOf(PodNames, pod)
		}
		return i%n + 1
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return 0
}

// Randomize varies a fixture without touching pod names, namespaces, nodes or
// addresses (so a World built for the fixture's options still fits): extra
// labels on namespaces (env, team) and pods (app, tier); sometimes a named
// port resolving to another number, a named port removed, an extra named port
// (ExtraPortName); rarely one pod Succeeded, Failed or host-network. In v1.6
// mode every namespace also gets a random legacy isolation annotation state.
func Randomize(rng *rand.Rand, f *Fixture) {
	for _, name := range NamespaceNames {
		ns := f.Cluster.Namespaces[name]
		if rng.IntN(10) < 6 {
			ns.Labels["env"] = pick(rng, nsLabelVocab["env"])
		}
		if rng.IntN(10) < 3 {
			ns.Labels["team"] = pick(rng, nsLabelVocab["team"])
		}
		if f.Cluster.Mode == model.ModeV16 {
			switch r := rng.IntN(20); {
			case r < 8:
				ns.LegacyIsolation = model.LegacyNone
			case r < 17:
				ns.LegacyIsolation = model.LegacyDefaultDeny
			default:
				ns.LegacyIsolation = model.LegacyMalformed
			}
		}
	}
	for _, key := range f.Order {
		pod := f.Pods[key]
		if rng.IntN(10) < 7 {
			pod.Labels["app"] = pick(rng, podLabelVocab["app"])
		}
		if rng.IntN(10) < 5 {
			pod.Labels["tier"] = pick(rng, podLabelVocab["tier"])
		}
		if rng.IntN(5) == 0 {
			// A named port resolving to another number on this pod.
			i := rng.IntN(len(pod.Ports))
			pod.Ports[i].Port = randomPortNumber(rng)
		}
		if rng.IntN(10) == 0 {
			i := rng.IntN(len(pod.Ports))
			pod.Ports = append(pod.Ports[:i:i], pod.Ports[i+1:]...)
		}
		if rng.IntN(4) == 0 {
			pod.Ports = append(pod.Ports, model.ContainerPort{Name: ExtraPortName, Port: pickInt32(rng, 80, 81, 8080), Protocol: model.TCP})
		}
	}
	if rng.IntN(8) == 0 {
		pod := f.Pods[pick(rng, f.Order)]
		switch rng.IntN(3) {
		case 0:
			pod.Phase = model.PodSucceeded
		case 1:
			pod.Phase = model.PodFailed
		default:
			pod.HostNetwork = true
		}
	}
}

func pick[T any](rng *rand.Rand, list []T) T { return list[rng.IntN(len(list))] }

func pickInt32(rng *rand.Rand, vals ...int32) int32 { return vals[rng.IntN(len(vals))] }

// randomPortNumber is a port near the probes: 80, 81, 82 or 1..100.
func randomPortNumber(rng *rand.Rand) int32 {
	if rng.IntN(2) == 0 {
		return pickInt32(rng, 80, 81, 82)
	}
	return int32(1 + rng.IntN(100))
}

// RandomPolicies returns n random policies in the fixture's namespaces, named
// gen-0 ... In v1 mode they cover every networking.k8s.io/v1 feature; in v1.6
// mode most are what an extensions/v1beta1 policy of Kubernetes 1.6 could say
// (ingress only, one selector per peer, no ipBlock or endPort), and the rest
// are unrestricted (their extra parts must be ignored by the mode).
func RandomPolicies(rng *rand.Rand, f *Fixture, n int) []*model.Policy {
	out := make([]*model.Policy, 0, n)
	for i := 0; i < n; i++ {
		ns := pick(rng, NamespaceNames)
		name := fmt.Sprintf("gen-%d", i)
		if f.Cluster.Mode == model.ModeV16 && rng.IntN(5) != 0 {
			out = append(out, randomLegacyPolicy(rng, ns, name))
		} else {
			out = append(out, randomPolicy(rng, ns, name))
		}
	}
	return out
}

func randomPolicy(rng *rand.Rand, ns, name string) *model.Policy {
	p := &model.Policy{Namespace: ns, Name: name, APIVersion: "networking.k8s.io/v1",
		PodSelector: randomSelector(rng, podLabelVocab, 4)}
	nRules := func() int {
		switch r := rng.IntN(10); {
		case r < 2:
			return 0 // deny-all for the direction
		case r < 6:
			return 1
		case r < 9:
			return 2
		}
		return 3
	}
	switch rng.IntN(6) {
	case 0, 1: // policyTypes defaulted: Ingress, plus Egress iff egress rules
		p.Ingress = randomRules(rng, nRules())
		if rng.IntN(2) == 0 {
			p.Egress = randomRules(rng, nRules())
		}
		p.AffectsIngress, p.AffectsEgress = defaultPolicyTypes(p)
	case 2: // [Ingress]
		p.AffectsIngress = true
		p.Ingress = randomRules(rng, nRules())
		if rng.IntN(4) == 0 { // egress rules that policyTypes leaves out
			p.Egress = randomRules(rng, 1+rng.IntN(2))
		}
	case 3: // [Egress]
		p.AffectsEgress = true
		p.Egress = randomRules(rng, nRules())
		if rng.IntN(4) == 0 {
			p.Ingress = randomRules(rng, 1+rng.IntN(2))
		}
	default: // [Ingress, Egress]
		p.AffectsIngress, p.AffectsEgress = true, true
		p.Ingress = randomRules(rng, nRules())
		p.Egress = randomRules(rng, nRules())
	}
	return p
}

func randomRules(rng *rand.Rand, n int) []model.Rule {
	if n == 0 {
		return nil
	}
	rules := make([]model.Rule, n)
	for i := range rules {
		rules[i] = randomRule(rng)
	}
	return rules
}

func randomRule(rng *rand.Rand) model.Rule {
	var r model.Rule
	// Peers: none (every peer) about a quarter of the time.
	if rng.IntN(4) != 0 {
		for n := 1 + rng.IntN(3); n > 0; n-- {
			r.Peers = append(r.Peers, randomPeer(rng))
		}
	}
	if rng.IntN(3) != 0 {
		for n := 1 + rng.IntN(3); n > 0; n-- {
			r.Ports = append(r.Ports, randomPortSpec(rng))
		}
		if rng.IntN(8) == 0 { // a duplicate entry
			r.Ports = append(r.Ports, r.Ports[rng.IntN(len(r.Ports))])
		}
	}
	if len(r.Peers) > 0 && rng.IntN(10) == 0 {
		r.Peers = append(r.Peers, r.Peers[rng.IntN(len(r.Peers))])
	}
	return r
}

func randomPeer(rng *rand.Rand) model.Peer {
	switch r := rng.IntN(10); {
	case r < 3: // podSelector only: pods of the policy's namespace
		return model.Peer{PodSelector: randomSelector(rng, podLabelVocab, 4)}
	case r < 5: // namespaceSelector only: every pod of those namespaces
		return model.Peer{NamespaceSelector: randomSelector(rng, nsLabelVocab, 4)}
	case r < 7: // both: AND
		return model.Peer{NamespaceSelector: randomSelector(rng, nsLabelVocab, 4), PodSelector: randomSelector(rng, podLabelVocab, 4)}
	}
	return model.Peer{IPBlock: randomIPBlock(rng)}
}

// CIDRs and exceptions the generator draws ipBlocks from: they overlap pod
// addresses (10.1.<ns>.<pod>, fd00:10:1::<ns>:<pod>), node addresses
// (172.18.0.<n>) and the external source (192.0.2.10).
var (
	blockCIDRs = []string{
		"10.1.0.0/16", "10.1.2.0/24", "10.1.2.2/32", "10.1.0.0/22", "10.0.0.0/8",
		"10.1.1.0/30", "192.0.2.0/24", "0.0.0.0/0", "172.18.0.0/16", "10.1.3.0/24",
		"fd00:10:1::/64", "::/0", "fd00:10:1::2:0/112",
	}
	blockExcepts = []string{
		"10.1.1.0/24", "10.1.2.0/24", "10.1.2.2/32", "10.1.3.0/24", "10.1.1.1/32",
		"10.1.3.2/31", "10.1.2.0/30", "192.0.2.10/32", "192.0.2.0/25", "10.1.0.0/16",
		"172.18.0.1/32", "172.18.0.0/30", "10.0.0.0/9", "10.1.1.2/32",
		"fd00:10:1::1:1/128", "fd00:10:1::2:0/112", "fd00:10:1::3:2/127", "fd00::/8",
	}
)

func randomIPBlock(rng *rand.Rand) *model.IPBlock {
	b := &model.IPBlock{CIDR: netip.MustParsePrefix(pick(rng, blockCIDRs))}
	var inside []netip.Prefix
	for _, s := range blockExcepts {
		e := netip.MustParsePrefix(s)
		if e.Addr().Is4() == b.CIDR.Addr().Is4() && e.Bits() > b.CIDR.Bits() && b.CIDR.Contains(e.Addr()) {
			inside = append(inside, e)
		}
	}
	n := rng.IntN(3)
	for i := 0; i < n && len(inside) > 0; i++ {
		j := rng.IntN(len(inside))
		b.Except = append(b.Except, inside[j])
		inside = append(inside[:j:j], inside[j+1:]...)
	}
	return b
}

// namedPortChoices are the names rules use: the fixture's, the extra one,
// and one no pod declares.
var namedPortChoices = []struct {
	name  string
	proto model.Protocol
}{
	{"serve-80-tcp", model.TCP}, {"serve-81-tcp", model.TCP}, {"serve-80-udp", model.UDP},
	{"serve-81-udp", model.UDP}, {"serve-80-sctp", model.SCTP}, {"serve-81-sctp", model.SCTP},
	{ExtraPortName, model.TCP}, {"nope", model.TCP},
}

func randomPortSpec(rng *rand.Rand) model.PortSpec {
	proto := func() model.Protocol {
		if rng.IntN(2) == 0 {
			return model.TCP // also "protocol missing"
		}
		return pick(rng, model.Protocols)
	}
	switch r := rng.IntN(20); {
	case r < 7: // numeric
		return model.PortSpec{Protocol: proto(), Port: randomPortNumber(rng)}
	case r < 9: // protocol only: every port of it
		return model.PortSpec{Protocol: proto()}
	case r < 13: // inclusive range
		lo := int32(1 + rng.IntN(100))
		if rng.IntN(3) == 0 {
			lo = pickInt32(rng, 79, 80, 81, 64, 72)
		}
		var hi int32
		switch rng.IntN(4) {
		case 0:
			hi = lo + 1
		case 1:
			hi = lo + 1 + int32(rng.IntN(40))
		case 2:
			hi = pickInt32(rng, 80, 81, 95, 127, 128, 255)
			if hi <= lo {
				hi = lo + 1
			}
		default:
			hi = 65535
		}
		return model.PortSpec{Protocol: proto(), Port: lo, EndPort: hi}
	}
	c := pick(rng, namedPortChoices)
	ps := model.PortSpec{Protocol: c.proto, Name: c.name}
	if rng.IntN(6) == 0 { // the right name with the wrong protocol resolves nowhere
		ps.Protocol = pick(rng, model.Protocols)
	}
	return ps
}

// randomLegacyPolicy is a Kubernetes 1.6 extensions/v1beta1 policy: ingress
// rules only, each peer one podSelector or one namespaceSelector, ports with
// a number or a name.
func randomLegacyPolicy(rng *rand.Rand, ns, name string) *model.Policy {
	p := &model.Policy{Namespace: ns, Name: name, APIVersion: "extensions/v1beta1",
		PodSelector: randomSelector(rng, podLabelVocab, 4), AffectsIngress: true}
	for n := rng.IntN(4); n > 0; n-- {
		var r model.Rule
		if rng.IntN(4) != 0 {
			for k := 1 + rng.IntN(2); k > 0; k-- {
				if rng.IntN(2) == 0 {
					r.Peers = append(r.Peers, model.Peer{PodSelector: randomSelector(rng, podLabelVocab, 4)})
				} else {
					r.Peers = append(r.Peers, model.Peer{NamespaceSelector: randomSelector(rng, nsLabelVocab, 4)})
				}
			}
		}
		if rng.IntN(2) == 0 {
			for k := 1 + rng.IntN(2); k > 0; k-- {
				if rng.IntN(4) == 0 {
					c := pick(rng, namedPortChoices)
					r.Ports = append(r.Ports, model.PortSpec{Protocol: c.proto, Name: c.name})
				} else {
					r.Ports = append(r.Ports, model.PortSpec{Protocol: pick(rng, model.Protocols), Port: randomPortNumber(rng)})
				}
			}
		}
		p.Ingress = append(p.Ingress, r)
	}
	return p
}

// RandomLabelSelector draws a metav1.LabelSelector over vocab: empty ({})
// one time in emptyOneIn, otherwise matchLabels and/or matchExpressions
// (In, NotIn, Exists, DoesNotExist) with one to three requirements in all,
// sometimes with values no object has.
func RandomLabelSelector(rng *rand.Rand, vocab map[string][]string, emptyOneIn int) *metav1.LabelSelector {
	ls := &metav1.LabelSelector{}
	if rng.IntN(emptyOneIn) == 0 {
		return ls
	}
	keys := make([]string, 0, len(vocab))
	for k := range vocab {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	value := func(k string) string {
		if rng.IntN(12) == 0 {
			return "none" // matches nothing
		}
		return pick(rng, vocab[k])
	}
	n := 1 // requirements: mostly one, so that selectors hit real subsets
	if r := rng.IntN(10); r >= 9 {
		n = 3
	} else if r >= 6 {
		n = 2
	}
	for ; n > 0; n-- {
		k := pick(rng, keys)
		if rng.IntN(5) < 2 {
			if ls.MatchLabels == nil {
				ls.MatchLabels = map[string]string{}
			}
			ls.MatchLabels[k] = value(k)
			continue
		}
		e := metav1.LabelSelectorRequirement{Key: k}
		switch rng.IntN(4) {
		case 0:
			e.Operator = metav1.LabelSelectorOpIn
		case 1:
			e.Operator = metav1.LabelSelectorOpNotIn
		case 2:
			e.Operator = metav1.LabelSelectorOpExists
		default:
			e.Operator = metav1.LabelSelectorOpDoesNotExist
		}
		if e.Operator == metav1.LabelSelectorOpIn || e.Operator == metav1.LabelSelectorOpNotIn {
			seen := map[string]bool{}
			for m := 1 + rng.IntN(2); m > 0; m-- {
				if v := value(k); !seen[v] {
					seen[v] = true
					e.Values = append(e.Values, v)
				}
			}
		}
		ls.MatchExpressions = append(ls.MatchExpressions, e)
	}
	return ls
}

func randomSelector(rng *rand.Rand, vocab map[string][]string, emptyOneIn int) labels.Selector {
	s, err := metav1.LabelSelectorAsSelector(RandomLabelSelector(rng, vocab, emptyOneIn))
	if err != nil {
		panic(fmt.Sprintf("netpoltest: generated an invalid selector: %v", err))
	}
	return s
}

// defaultPolicyTypes is what the API server makes of p's rules when its
// policyTypes is left out.
func defaultPolicyTypes(p *model.Policy) (ingress, egress bool) {
	spec := networkingv1.NetworkPolicySpec{Egress: make([]networkingv1.NetworkPolicyEgressRule, len(p.Egress))}
	ingress, egress, _ = normalize.EffectivePolicyTypes(&spec)
	return ingress, egress
}

// PolicyObject renders a model policy back as the networking.k8s.io/v1 (or
// extensions/v1beta1, same shape) object that means the same: policyTypes
// are written only when the defaults would differ, protocols always.
func PolicyObject(p *model.Policy) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: p.APIVersion, Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name},
	}
	if np.APIVersion == "" {
		np.APIVersion = "networking.k8s.io/v1"
	}
	np.Spec.PodSelector = *selectorObject(p.PodSelector)
	if ingress, egress := defaultPolicyTypes(p); ingress != p.AffectsIngress || egress != p.AffectsEgress {
		np.Spec.PolicyTypes = normalize.PolicyTypes(p.AffectsIngress, p.AffectsEgress)
	}
	for _, r := range p.Ingress {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peerObjects(r.Peers), Ports: portObjects(r.Ports)})
	}
	for _, r := range p.Egress {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peerObjects(r.Peers), Ports: portObjects(r.Ports)})
	}
	return np
}

// PolicyYAML renders p as a manifest (see PolicyObject), for failure reports.
func PolicyYAML(p *model.Policy) string {
	b, err := yaml.Marshal(PolicyObject(p))
	if err != nil {
		return fmt.Sprintf("# %s: %v\n", p.Key(), err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "creationTimestamp: null" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// PoliciesYAML renders several policies as one multi-document manifest.
func PoliciesYAML(ps []*model.Policy) string {
	var docs []string
	for _, p := range ps {
		docs = append(docs, strings.TrimRight(PolicyYAML(p), "\n"))
	}
	return strings.Join(docs, "\n---\n") + "\n"
}

func selectorObject(s labels.Selector) *metav1.LabelSelector {
	if s == nil {
		return nil
	}
	ls, err := metav1.ParseToLabelSelector(s.String())
	if err != nil {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"unrenderable-selector": s.String()}}
	}
	return ls
}

func peerObjects(peers []model.Peer) []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for _, p := range peers {
		var o networkingv1.NetworkPolicyPeer
		if p.IPBlock != nil {
			o.IPBlock = &networkingv1.IPBlock{CIDR: p.IPBlock.CIDR.String()}
			for _, e := range p.IPBlock.Except {
				o.IPBlock.Except = append(o.IPBlock.Except, e.String())
			}
		} else {
			o.NamespaceSelector = selectorObject(p.NamespaceSelector)
			o.PodSelector = selectorObject(p.PodSelector)
		}
		out = append(out, o)
	}
	return out
}

func portObjects(ports []model.PortSpec) []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for _, ps := range ports {
		proto := corev1.Protocol(ps.Protocol)
		o := networkingv1.NetworkPolicyPort{Protocol: &proto}
		switch {
		case ps.Name != "":
			v := intstr.FromString(ps.Name)
			o.Port = &v
		case ps.Port != 0:
			v := intstr.FromInt32(ps.Port)
			o.Port = &v
			if ps.EndPort != 0 {
				e := ps.EndPort
				o.EndPort = &e
			}
		}
		out = append(out, o)
	}
	return out
}

// DescribeCluster renders the fixture's cluster state for failure reports:
// mode and nodes, namespace labels and legacy annotation states, and per pod
// its node, addresses, labels, phase and container ports when they differ
// from the fixture's standard ones.
func DescribeCluster(f *Fixture) string {
	var b strings.Builder
	c := f.Cluster
	fmt.Fprintf(&b, "mode %s, nodes %s\n", c.Mode, strings.Join(f.Nodes, ","))
	for _, name := range NamespaceNames {
		ns := c.Namespaces[name]
		fmt.Fprintf(&b, "namespace %s labels {%s}", name, ns.Labels)
		switch ns.LegacyIsolation {
		case model.LegacyDefaultDeny:
			fmt.Fprintf(&b, " annotation %s={\"ingress\":{\"isolation\":\"DefaultDeny\"}}", model.LegacyAnnotation)
		case model.LegacyMalformed:
			fmt.Fprintf(&b, " annotation %s=<malformed>", model.LegacyAnnotation)
		}
		b.WriteByte('\n')
	}
	for _, key := range f.Order {
		pod := f.Pods[key]
		var ips []string
		for _, ip := range pod.IPs {
			ips = append(ips, ip.String())
		}
		fmt.Fprintf(&b, "pod %s on %s %s labels {%s}", key, pod.Node, strings.Join(ips, ","), pod.Labels)
		if pod.Phase != "Running" {
			fmt.Fprintf(&b, " phase=%s", pod.Phase)
		}
		if pod.HostNetwork {
			b.WriteString(" hostNetwork")
		}
		if !standardPorts(pod.Ports) {
			var ps []string
			for _, cp := range pod.Ports {
				ps = append(ps, fmt.Sprintf("%s=%d/%s", cp.Name, cp.Port, cp.Protocol))
			}
			fmt.Fprintf(&b, " ports [%s]", strings.Join(ps, " "))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func standardPorts(ports []model.ContainerPort) bool {
	if len(ports) != len(StandardProbes) {
		return false
	}
	for i, p := range StandardProbes {
		want := model.ContainerPort{Name: fmt.Sprintf("serve-%d-%s", p.Port, strings.ToLower(string(p.Protocol))), Port: p.Port, Protocol: p.Protocol}
		if ports[i] != want {
			return false
		}
	}
	return true
}
