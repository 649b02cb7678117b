package netpoltest

import (
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/yaml"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// generateScenario builds what a property test builds for one seed.
func generateScenario(seed uint64) (*Fixture, []*model.Policy) {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	mode := model.ModeV1
	if rng.IntN(4) == 0 {
		mode = model.ModeV16
	}
	nodes := 1 + rng.IntN(3)
	f := NewFixture(Options{Mode: mode, Nodes: nodes, NodeOf: RandomNodeOf(nodes, rng.IntN(3)), DualStack: rng.IntN(3) == 0})
	Randomize(rng, f)
	return f, RandomPolicies(rng, f, 1+rng.IntN(6))
}

func TestGenerateDeterministic(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		f1, p1 := generateScenario(seed)
		f2, p2 := generateScenario(seed)
		if a, b := DescribeCluster(f1), DescribeCluster(f2); a != b {
			t.Fatalf("seed %d: clusters differ:\n%s\nvs\n%s", seed, a, b)
		}
		if a, b := PoliciesYAML(p1), PoliciesYAML(p2); a != b {
			t.Fatalf("seed %d: policies differ:\n%s\nvs\n%s", seed, a, b)
		}
	}
	_, a := generateScenario(1)
	_, b := generateScenario(2)
	if PoliciesYAML(a) == PoliciesYAML(b) {
		t.Fatalf("seeds 1 and 2 generate the same policies")
	}
}

// TestGenerateInvariants: Randomize keeps what Worlds depend on; generated
// policies are well formed (what normalize would produce) and their YAML
// parses back as a NetworkPolicy.
func TestGenerateInvariants(t *testing.T) {
	for seed := uint64(0); seed < 200; seed++ {
		f, ps := generateScenario(seed)
		base := NewFixture(Options{Nodes: len(f.Nodes), DualStack: len(f.Pods["x/a"].IPs) == 2})
		for _, key := range f.Order {
			p, b := f.Pods[key], base.Pods[key]
			if p.Name != b.Name || p.Namespace != b.Namespace || p.UID != b.UID || len(p.IPs) != len(b.IPs) || p.IPs[0] != b.IPs[0] {
				t.Fatalf("seed %d: Randomize changed the identity of %s", seed, key)
			}
			if p.Labels["pod"] != b.Labels["pod"] {
				t.Fatalf("seed %d: Randomize changed the pod label of %s", seed, key)
			}
		}
		names := map[string]bool{}
		for _, p := range ps {
			if names[p.Key()] {
				t.Fatalf("seed %d: duplicate policy %s", seed, p.Key())
			}
			names[p.Key()] = true
			if p.PodSelector == nil {
				t.Fatalf("seed %d: %s has no podSelector", seed, p.Key())
			}
			for _, d := range []model.Direction{model.Ingress, model.Egress} {
				for _, r := range p.Rules(d) {
					for _, peer := range r.Peers {
						if peer.IPBlock != nil {
							if peer.PodSelector != nil || peer.NamespaceSelector != nil {
								t.Fatalf("seed %d: %s: ipBlock combined with selectors", seed, p.Key())
							}
							for _, e := range peer.IPBlock.Except {
								if e.Bits() <= peer.IPBlock.CIDR.Bits() || !peer.IPBlock.CIDR.Contains(e.Addr()) {
									t.Fatalf("seed %d: %s: except %s not strictly inside %s", seed, p.Key(), e, peer.IPBlock.CIDR)
								}
							}
						} else if peer.PodSelector == nil && peer.NamespaceSelector == nil {
							t.Fatalf("seed %d: %s: empty peer", seed, p.Key())
						}
					}
					for _, ps := range r.Ports {
						if ps.EndPort != 0 && (ps.Name != "" || ps.EndPort <= ps.Port || ps.EndPort > 65535) {
							t.Fatalf("seed %d: %s: bad port %+v", seed, p.Key(), ps)
						}
					}
				}
			}
			var back networkingv1.NetworkPolicy
			if err := yaml.UnmarshalStrict([]byte(PolicyYAML(p)), &back); err != nil {
				t.Fatalf("seed %d: YAML of %s does not parse: %v\n%s", seed, p.Key(), err, PolicyYAML(p))
			}
		}
	}
}

// TestGenerateVariety: over 100 seeds every feature the generator promises
// shows up.
func TestGenerateVariety(t *testing.T) {
	seen := map[string]int{}
	for seed := uint64(0); seed < 100; seed++ {
		f, ps := generateScenario(seed)
		clusterFeatures(f, seen)
		for _, p := range ps {
			policyFeatures(p, seen)
		}
	}
	want := []string{
		"mode v1", "mode v1.6", "dual stack", "nodes 1", "nodes 2", "nodes 3",
		"ns label env", "ns label team", "pod label app", "pod label tier",
		"port renumbered", "port removed", "extra port", "pod inactive",
		"legacy none", "legacy DefaultDeny", "legacy malformed",
		"v1beta1 policy", "types defaulted", "types explicit", "affects ingress only", "affects egress only", "affects both",
		"deny-all ingress", "deny-all egress", "rules ignored by policyTypes",
		"rule all peers", "rule all ports",
		"peer podSelector", "peer namespaceSelector", "peer both", "peer ipBlock",
		"ipBlock 0 excepts", "ipBlock 1 excepts", "ipBlock 2 excepts", "ipBlock v6", "duplicate peer",
		"empty policy podSelector", "empty peer podSelector", "empty namespaceSelector",
		"selector =", "selector in", "selector notin", "selector exists", "selector !",
		"port TCP", "port UDP", "port SCTP", "port protocol-only", "port range", "port range to 65535",
		"named port", "named port unknown", "named port wrong protocol", "named port extra", "duplicate port",
	}
	var missing []string
	for _, w := range want {
		if seen[w] == 0 {
			missing = append(missing, w)
		}
	}
	var all []string
	for k, v := range seen {
		all = append(all, k+"="+strconv.Itoa(v))
	}
	sort.Strings(all)
	t.Logf("features over 100 seeds: %s", strings.Join(all, ", "))
	if len(missing) > 0 {
		t.Fatalf("features never generated over 100 seeds: %v", missing)
	}
}

func clusterFeatures(f *Fixture, seen map[string]int) {
	seen["mode "+string(f.Cluster.Mode)]++
	seen["nodes "+strconv.Itoa(len(f.Nodes))]++
	if len(f.Pods["x/a"].IPs) == 2 {
		seen["dual stack"]++
	}
	for _, ns := range f.Cluster.Namespaces {
		for _, k := range []string{"env", "team"} {
			if ns.Labels[k] != "" {
				seen["ns label "+k]++
			}
		}
		if f.Cluster.Mode == model.ModeV16 {
			seen[map[model.LegacyIsolation]string{model.LegacyNone: "legacy none", model.LegacyDefaultDeny: "legacy DefaultDeny", model.LegacyMalformed: "legacy malformed"}[ns.LegacyIsolation]]++
		}
	}
	for _, pod := range f.Pods {
		for _, k := range []string{"app", "tier"} {
			if pod.Labels[k] != "" {
				seen["pod label "+k]++
			}
		}
		if !pod.Active() {
			seen["pod inactive"]++
		}
		n := 0
		for _, cp := range pod.Ports {
			if cp.Name == ExtraPortName {
				seen["extra port"]++
				continue
			}
			n++
			if !strings.HasPrefix(cp.Name, "serve-"+strconv.Itoa(int(cp.Port))+"-") {
				seen["port renumbered"]++
			}
		}
		if n < len(StandardProbes) {
			seen["port removed"]++
		}
	}
}

func policyFeatures(p *model.Policy, seen map[string]int) {
	if p.APIVersion == "extensions/v1beta1" {
		seen["v1beta1 policy"]++
		return
	}
	if len(PolicyObject(p).Spec.PolicyTypes) == 0 {
		seen["types defaulted"]++
	} else {
		seen["types explicit"]++
	}
	switch {
	case p.AffectsIngress && p.AffectsEgress:
		seen["affects both"]++
	case p.AffectsIngress:
		seen["affects ingress only"]++
	case p.AffectsEgress:
		seen["affects egress only"]++
	}
	if p.PodSelector.Empty() {
		seen["empty policy podSelector"]++
	}
	selectorFeatures(p.PodSelector, seen)
	for _, d := range []model.Direction{model.Ingress, model.Egress} {
		rules := p.Rules(d)
		if p.Affects(d) && len(rules) == 0 {
			seen["deny-all "+string(d)]++
		}
		if !p.Affects(d) && len(rules) > 0 {
			seen["rules ignored by policyTypes"]++
		}
		for _, r := range rules {
			if r.AllPeers() {
				seen["rule all peers"]++
			}
			if r.AllPorts() {
				seen["rule all ports"]++
			}
			peerSeen := map[string]bool{}
			for _, peer := range r.Peers {
				k := PolicyYAML(&model.Policy{PodSelector: labels.Everything(), Ingress: []model.Rule{{Peers: []model.Peer{peer}}}})
				if peerSeen[k] {
					seen["duplicate peer"]++
				}
				peerSeen[k] = true
				switch {
				case peer.IPBlock != nil:
					seen["peer ipBlock"]++
					seen["ipBlock "+strconv.Itoa(len(peer.IPBlock.Except))+" excepts"]++
					if peer.IPBlock.CIDR.Addr().Is6() {
						seen["ipBlock v6"]++
					}
				case peer.PodSelector != nil && peer.NamespaceSelector != nil:
					seen["peer both"]++
				case peer.PodSelector != nil:
					seen["peer podSelector"]++
				default:
					seen["peer namespaceSelector"]++
				}
				if peer.PodSelector != nil {
					if peer.PodSelector.Empty() {
						seen["empty peer podSelector"]++
					}
					selectorFeatures(peer.PodSelector, seen)
				}
				if peer.NamespaceSelector != nil {
					if peer.NamespaceSelector.Empty() {
						seen["empty namespaceSelector"]++
					}
					selectorFeatures(peer.NamespaceSelector, seen)
				}
			}
			portSeen := map[model.PortSpec]bool{}
			for _, ps := range r.Ports {
				if portSeen[ps] {
					seen["duplicate port"]++
				}
				portSeen[ps] = true
				switch {
				case ps.Name != "":
					seen["named port"]++
					switch {
					case ps.Name == ExtraPortName:
						seen["named port extra"]++
					case !strings.HasPrefix(ps.Name, "serve-"):
						seen["named port unknown"]++
					case !strings.HasSuffix(ps.Name, "-"+strings.ToLower(string(ps.Protocol))):
						seen["named port wrong protocol"]++
					}
				case ps.Port == 0:
					seen["port protocol-only"]++
				case ps.EndPort != 0:
					seen["port range"]++
					if ps.EndPort == 65535 {
						seen["port range to 65535"]++
					}
				default:
					seen["port "+string(ps.Protocol)]++
				}
			}
		}
	}
}

func selectorFeatures(s labels.Selector, seen map[string]int) {
	reqs, _ := s.Requirements()
	for _, r := range reqs {
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals:
			seen["selector ="]++
		case selection.In:
			seen["selector in"]++
		case selection.NotIn:
			seen["selector notin"]++
		case selection.Exists:
			seen["selector exists"]++
		case selection.DoesNotExist:
			seen["selector !"]++
		}
	}
}
