package compiler_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/internal/netpoltest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// TestIncrementalEqualsFull applies random events to an Incremental and
// checks after each Flush that its flow set equals a full Compile of the
// same state, and that the keys Flush reported are exactly those that
// changed. Flushes come after one to three events, so memos (address
// groups, peer fragments) also see several changes at once: a policy
// replaced or deleted and re-added around pod changes.
func TestIncrementalEqualsFull(t *testing.T) {
	for seed := int64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 0))
		f := netpoltest.NewFixture(netpoltest.Options{Nodes: 2, DualStack: seed%3 == 0})
		netpoltest.Randomize(rng, f)
		cfg := compiler.Config{Node: "node-1", UplinkPort: 9, NodeIPs: []netip.Addr{netpoltest.NodeIP(1)}}
		cfg.Bindings = compiler.DefaultBindings(f.Cluster, "node-1", nil, 9)
		// The incremental compiler owns its cluster; the full compile gets
		// the same objects from the fixture's.
		inc := compiler.NewIncremental(copyCluster(f.Cluster), cfg)
		if _, err := inc.Flush(); err != nil {
			t.Fatal(err)
		}
		prev := byKey(inc.Flows())
		for step := 0; step < 25; step++ {
			desc := randomEvent(rng, f, inc)
			for range rng.IntN(3) {
				desc += "; " + randomEvent(rng, f, inc)
			}
			changed, err := inc.Flush()
			if err != nil {
				t.Fatalf("seed %d step %d (%s): %v", seed, step, desc, err)
			}
			full, err := compiler.Compile(inc.Cluster(), inc.Config())
			if err != nil {
				t.Fatal(err)
			}
			got := byKey(inc.Flows())
			want := byKey(full.Flows)
			for k, w := range want {
				if g, ok := got[k]; !ok || !g.Equal(w) {
					t.Fatalf("seed %d step %d (%s): incremental has %v, full compile %v", seed, step, desc, g, w)
				}
			}
			for k, g := range got {
				if _, ok := want[k]; !ok {
					t.Fatalf("seed %d step %d (%s): incremental has extra flow %v", seed, step, desc, g)
				}
			}
			reported := map[openflow.Key]bool{}
			for _, k := range changed {
				reported[k] = true
			}
			for k, g := range got {
				if p, ok := prev[k]; (!ok || !p.Equal(g)) && !reported[k] {
					t.Fatalf("seed %d step %d (%s): flow %v changed but Flush did not report it", seed, step, desc, g)
				}
			}
			for k := range prev {
				if _, ok := got[k]; !ok && !reported[k] {
					t.Fatalf("seed %d step %d (%s): flow %v removed but not reported", seed, step, desc, prev[k])
				}
			}
			prev = got
		}
	}
}

// TestIncrementalLongBatches: hundreds of events between two Flushes, so
// that rules whose peer fragments are patched, rendered again and left
// alone meet in one Flush.
func TestIncrementalLongBatches(t *testing.T) {
	for seed := int64(1); seed <= 6; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		f := netpoltest.NewFixture(netpoltest.Options{Nodes: 2})
		netpoltest.Randomize(rng, f)
		inc, _ := flushedSetup(t, f)
		for round := 0; round < 4; round++ {
			n := []int{5, 300, 40, 150}[round]
			for range n {
				randomEvent(rng, f, inc)
			}
			flushEqualsFull(t, inc, fmt.Sprintf("seed %d round %d (%d events)", seed, round, n))
		}
	}
}

// TestGroupChurn: a peer group changes hundreds of times between two
// Flushes, then a few times; the rule's peer fragment is patched from the
// lists it rendered.
func TestGroupChurn(t *testing.T) {
	f := netpoltest.NewFixture(netpoltest.Options{Nodes: 2})
	inc, _ := flushedSetup(t, f)
	web := labels.SelectorFromSet(labels.Set{"app": "web"})
	inc.SetPolicy(&model.Policy{Namespace: "x", Name: "from-web", APIVersion: "networking.k8s.io/v1",
		PodSelector: labels.Everything(), AffectsIngress: true,
		Ingress: []model.Rule{{Peers: []model.Peer{{NamespaceSelector: labels.Everything(), PodSelector: web}}}}})
	check := func(what string) {
		t.Helper()
		flushEqualsFull(t, inc, what)
	}
	toggle := func(key string, i int) {
		pod := *inc.Cluster().Pods[f.Pods[key].UID]
		pod.Labels = labels.Set{"pod": pod.Labels["pod"]}
		if i%2 == 0 {
			pod.Labels["app"] = "web"
		}
		inc.SetPod(&pod)
	}
	toggle("y/b", 0)
	check("one peer")
	for i := range 201 { // ends out of the group
		toggle([]string{"y/a", "z/c", "z/b"}[i%3], i)
	}
	check("201 changes")
	for i := range 3 {
		toggle("z/a", i)
	}
	check("3 changes")
}

func copyCluster(c *model.Cluster) *model.Cluster {
	cp := model.NewCluster(c.Mode)
	for k, v := range c.Namespaces {
		n := *v
		cp.Namespaces[k] = &n
	}
	for k, v := range c.Pods {
		p := *v
		cp.Pods[k] = &p
	}
	for k, v := range c.Policies {
		cp.Policies[k] = v
	}
	return cp
}

// flushedSetup returns an Incremental over a copy of f's cluster, flushed,
// with node-1's pods bound.
func flushedSetup(t *testing.T, f *netpoltest.Fixture) (*compiler.Incremental, compiler.Config) {
	t.Helper()
	cfg := compiler.Config{Node: "node-1", UplinkPort: 9, NodeIPs: []netip.Addr{netpoltest.NodeIP(1)}}
	cfg.Bindings = compiler.DefaultBindings(f.Cluster, "node-1", nil, 9)
	inc := compiler.NewIncremental(copyCluster(f.Cluster), cfg)
	flushEqualsFull(t, inc, "initial")
	return inc, cfg
}

// flushEqualsFull flushes in and fails if its flows differ from a
// full Compile of its state.
func flushEqualsFull(t *testing.T, inc *compiler.Incremental, what string) {
	t.Helper()
	if _, err := inc.Flush(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	full, err := compiler.Compile(inc.Cluster(), inc.Config())
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	got, want := byKey(inc.Flows()), byKey(full.Flows)
	bad := 0
	for k, w := range want {
		if g, ok := got[k]; !ok || !g.Equal(w) {
			t.Errorf("%s: incremental has %v, full compile %v", what, g, w)
			bad++
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: incremental has extra flow %v", what, g)
			bad++
		}
	}
	gotGroups, wantGroups := inc.Groups(), full.Groups
	if len(gotGroups) != len(wantGroups) {
		t.Errorf("%s: incremental has %d groups, full compile %d", what, len(gotGroups), len(wantGroups))
		bad++
	} else {
		for i := range wantGroups {
			if !gotGroups[i].Equal(wantGroups[i]) {
				t.Errorf("%s: incremental has group %v, full compile %v", what, gotGroups[i], wantGroups[i])
				bad++
			}
		}
	}
	if bad > 0 {
		t.FailNow()
	}
}

func byKey(flows []openflow.Flow) map[openflow.Key]openflow.Flow {
	out := map[openflow.Key]openflow.Flow{}
	for _, f := range flows {
		out[f.Key()] = f
	}
	return out
}

// randomEvent changes the Incremental's state the way informer events do:
// always by replacing objects with modified copies.
func randomEvent(rng *rand.Rand, f *netpoltest.Fixture, inc *compiler.Incremental) string {
	c := inc.Cluster()
	pods := c.SortedPods()
	pod := pods[rng.IntN(len(pods))]
	switch rng.IntN(11) {
	case 0, 1:
		ps := netpoltest.RandomPolicies(rng, f, 1)
		p := ps[0]
		p.Name = fmt.Sprintf("p%d", rng.IntN(6))
		inc.SetPolicy(p)
		return "set policy " + p.Key()
	case 2:
		for _, p := range c.SortedPolicies() {
			inc.DeletePolicy(p.Key())
			return "delete policy " + p.Key()
		}
		return "nothing"
	case 3:
		np := *pod
		np.Labels = map[string]string{"pod": pod.Labels["pod"], "app": []string{"web", "db", "cache"}[rng.IntN(3)]}
		inc.SetPod(&np)
		return "relabel pod " + pod.Key()
	case 4:
		names := []string{"x", "y", "z"}
		ns := *c.Namespaces[names[rng.IntN(3)]]
		ns.Labels = map[string]string{"ns": ns.Name, "env": []string{"prod", "dev"}[rng.IntN(2)]}
		if rng.IntN(4) == 0 {
			ns.LegacyIsolation = model.LegacyIsolation(rng.IntN(3))
		}
		inc.SetNamespace(&ns)
		return "relabel namespace " + ns.Name
	case 5:
		np := *pod
		np.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 9, byte(rng.IntN(3)), byte(1 + rng.IntN(200))})}
		inc.DeletePod(pod.UID)
		np.UID = fmt.Sprintf("%s-r%d", pod.UID, rng.IntN(1000))
		inc.SetPod(&np)
		return "recreate pod " + pod.Key() + " with a new IP"
	case 6:
		np := *pod
		if np.Phase == model.PodSucceeded {
			np.Phase = "Running"
		} else {
			np.Phase = model.PodSucceeded
		}
		inc.SetPod(&np)
		return "phase of " + pod.Key()
	case 7:
		// Another pod's address (two live pods claiming one IP: an event
		// still in flight) or a fresh one, in place.
		np := *pod
		if other := pods[rng.IntN(len(pods))]; rng.IntN(2) == 0 && len(other.IPs) > 0 {
			np.IPs = other.IPs
		} else {
			np.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 8, 0, byte(1 + rng.IntN(4))})}
		}
		inc.SetPod(&np)
		return "readdress pod " + pod.Key()
	case 9:
		// A named port moves to another number (a new pod version).
		np := *pod
		np.Ports = slices.Clone(pod.Ports)
		if len(np.Ports) > 0 {
			np.Ports[rng.IntN(len(np.Ports))].Port = int32(80 + rng.IntN(3))
		}
		inc.SetPod(&np)
		return "renumber a named port of " + pod.Key()
	case 8:
		// The same policy object again, or its copy deleted and re-added.
		for _, p := range c.SortedPolicies() {
			if rng.IntN(2) == 0 {
				inc.SetPolicy(p)
				return "set policy " + p.Key() + " unchanged"
			}
			inc.DeletePolicy(p.Key())
			cp := *p
			inc.SetPolicy(&cp)
			return "delete and re-add policy " + p.Key()
		}
		return "nothing"
	default:
		b := map[string]compiler.Binding{}
		for k, v := range inc.Config().Bindings {
			b[k] = v
		}
		if pod.Node == "node-1" {
			if _, ok := b[pod.Key()]; ok && rng.IntN(2) == 0 {
				delete(b, pod.Key())
			} else {
				b[pod.Key()] = compiler.Binding{OFPort: uint32(100 + rng.IntN(50)), MAC: compiler.DefaultMAC(pod)}
			}
		}
		inc.SetBindings(b)
		return "binding of " + pod.Key()
	}
}
