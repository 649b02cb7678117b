package compiler

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// dirtyFragments lists the fragments the next Flush computes, as their
// IDs, sorted.
func dirtyFragments(inc *Incremental) []string {
	inc.listAllRules() // what Flush does first
	var out []string
	for k := range inc.dirty {
		out = append(out, k.String())
	}
	for _, d := range inc.dirtyRules {
		out = append(out, ruleFrag(d.id).String())
	}
	slices.Sort(out)
	return out
}

// stateCluster is a small cluster whose policies share address groups
// (the same selectors in two namespaces), render a group's list as is (one
// selector peer), merge peer lists (two peers in one rule) and split egress
// rules by named ports.
func stateCluster() (*model.Cluster, Config) {
	c := model.NewCluster(model.ModeV1)
	for _, ns := range []string{"x", "y"} {
		c.AddNamespace(&model.Namespace{Name: ns, Labels: labels.Set{"ns": ns}})
	}
	for i := range 12 {
		ns := []string{"x", "y"}[i%2]
		c.AddPod(&model.Pod{UID: fmt.Sprintf("u%d", i), Namespace: ns, Name: fmt.Sprintf("p%d", i),
			Labels: labels.Set{"app": []string{"web", "db", "cache"}[i%3]},
			Node:   []string{"node-1", "node-2"}[i/6], IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, 0, byte(10 + i)})},
			Ports: []model.ContainerPort{{Name: "http", Port: 80, Protocol: model.TCP}}, Phase: "Running"})
	}
	web := labels.SelectorFromSet(labels.Set{"app": "web"})
	db := labels.SelectorFromSet(labels.Set{"app": "db"})
	for _, ns := range []string{"x", "y"} {
		c.AddPolicy(&model.Policy{Namespace: ns, Name: "from-web", APIVersion: "networking.k8s.io/v1",
			PodSelector: labels.Everything(), AffectsIngress: true,
			Ingress: []model.Rule{{Peers: []model.Peer{{PodSelector: web}, {NamespaceSelector: labels.SelectorFromSet(labels.Set{"ns": "x"}), PodSelector: db}}}}})
		c.AddPolicy(&model.Policy{Namespace: ns, Name: "from-db", APIVersion: "networking.k8s.io/v1",
			PodSelector: labels.Everything(), AffectsIngress: true,
			Ingress: []model.Rule{{Peers: []model.Peer{{NamespaceSelector: labels.Everything(), PodSelector: db}}}}})
		c.AddPolicy(&model.Policy{Namespace: ns, Name: "to-db-http", APIVersion: "networking.k8s.io/v1",
			PodSelector: labels.Everything(), AffectsEgress: true,
			Egress: []model.Rule{{Peers: []model.Peer{{NamespaceSelector: labels.Everything(), PodSelector: db}},
				Ports: []model.PortSpec{{Protocol: model.TCP, Name: "http"}}}}})
	}
	cfg := Config{Node: "node-1", UplinkPort: 9, NodeIPs: []netip.Addr{netip.MustParseAddr("172.29.1.2")}}
	cfg.Bindings = DefaultBindings(c, "node-1", nil, 9)
	return c, cfg
}

// stateEvent changes one pod or policy the way informers do: a new object
// per change. Readdressing may give a pod another's address (members of
// a group then share it).
func stateEvent(rng *rand.Rand, inc *Incremental) string {
	pods := inc.c.SortedPods()
	pod := pods[rng.IntN(len(pods))]
	np := *pod
	switch rng.IntN(5) {
	case 0:
		np.Labels = labels.Set{"app": []string{"web", "db", "cache"}[rng.IntN(3)]}
		inc.SetPod(&np)
		return "relabel " + pod.Key()
	case 1:
		np.IPs = []netip.Addr{pods[rng.IntN(len(pods))].IPs[0]}
		if rng.IntN(2) == 0 {
			np.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 1, 1, byte(1 + rng.IntN(50))})}
		}
		inc.SetPod(&np)
		return "readdress " + pod.Key()
	case 2:
		np.Ports = []model.ContainerPort{{Name: "http", Port: int32(80 + rng.IntN(3)), Protocol: model.TCP}}
		inc.SetPod(&np)
		return "renumber http of " + pod.Key()
	case 3:
		inc.DeletePod(pod.UID)
		np.UID += "r"
		inc.SetPod(&np)
		return "recreate " + pod.Key()
	default:
		pols := inc.c.SortedPolicies()
		if len(pols) == 0 {
			return "nothing"
		}
		p := *pols[rng.IntN(len(pols))] // shares its rules: the same peers
		inc.SetPolicy(&p)
		return "replace policy " + p.Key()
	}
}

// equalsFull fails unless inc's flows are a full Compile's of its state.
func equalsFull(t *testing.T, inc *Incremental, what string) {
	t.Helper()
	full, err := Compile(inc.c, inc.cfg)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got, want := fmt.Sprint(inc.Flows()), fmt.Sprint(full.Flows); got != want {
		t.Fatalf("%s: incremental flows differ from a full compile", what)
	}
}

// snapshotPeerLists copies the peer lists each rule remembers.
func snapshotPeerLists(inc *Incremental) map[ruleID][][]peerAddr {
	out := map[ruleID][][]peerAddr{}
	for id, st := range inc.ruleStates {
		if st.peers == nil {
			continue
		}
		lists := make([][]peerAddr, len(st.peers.peers))
		for i, l := range st.peers.peers {
			lists[i] = slices.Clone(l)
		}
		out[id] = lists
	}
	return out
}

// TestPeerListsNeverChange checks invariant 2 of Incremental: the peer
// lists a rule remembers after a Flush are, element for element, what
// they were then, whatever events come before the next Flush; and the
// flows stay a full compile's.
func TestPeerListsNeverChange(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		rng := rand.New(rand.NewPCG(seed, 11))
		c, cfg := stateCluster()
		inc := NewIncremental(c, cfg)
		if _, err := inc.Flush(); err != nil {
			t.Fatal(err)
		}
		checked := 0
		for step := range 40 {
			snap := snapshotPeerLists(inc)
			var what []string
			for range 1 + rng.IntN(4) {
				what = append(what, stateEvent(rng, inc))
			}
			desc := fmt.Sprintf("seed %d step %d (%s)", seed, step, strings.Join(what, "; "))
			for id, lists := range snap {
				st := inc.ruleStates[id]
				for i, l := range lists {
					checked++
					if !slices.Equal(st.peers.peers[i], l) {
						t.Fatalf("%s: rule %s's remembered peer list %d changed in place", desc, id, i)
					}
				}
			}
			if _, err := inc.Flush(); err != nil {
				t.Fatal(err)
			}
			equalsFull(t, inc, desc)
			checkGroups(t, inc, desc)
		}
		if checked == 0 {
			t.Fatalf("seed %d: no rule remembered a peer list", seed)
		}
	}
}

// checkGroups checks what the address groups rest on: a built group holds
// the cluster's version of each member (invariant 1) and exactly the
// active pods with addresses its selectors select, its list (when not
// dropped for a rebuild) is a rebuild's, and each peer finds the group of
// its own selectors.
func checkGroups(t *testing.T, inc *Incremental, what string) {
	t.Helper()
	for k, g := range inc.groups {
		if g.key != k {
			t.Fatalf("%s: group under %q has key %q", what, k, g.key)
		}
		if !g.built {
			continue
		}
		for uid, m := range g.members {
			if inc.c.Pods[uid] != m {
				t.Fatalf("%s: group %q holds a version of pod %s the cluster does not", what, k, uid)
			}
		}
		for uid, p := range inc.c.Pods {
			want := p.Active() && len(p.IPs) > 0 && inc.c.PeerSelects(&g.peer, g.policyNS, p)
			if _, got := g.members[uid]; got != want {
				t.Fatalf("%s: group %q: member %s is %t, want %t", what, k, uid, got, want)
			}
		}
		if g.sorted != nil {
			rebuilt, shared := inc.sortedAddrs(g.members)
			if !slices.EqualFunc(g.sorted, rebuilt, func(a, b peerAddr) bool { return a.prefix == b.prefix && a.pod == b.pod }) || shared != g.shared {
				t.Fatalf("%s: group %q's list differs from a rebuild", what, k)
			}
		}
	}
	for u, r := range inc.peerGroups {
		if k := groupKey(u.peer, u.ns); r.g.key != k || inc.groups[k] != r.g {
			t.Fatalf("%s: a peer of namespace %s finds group %q, its selectors are %q's", what, u.ns, r.g.key, k)
		}
	}
}

// TestMarkAllCoversEveryFragment: markAll (a new configuration) marks
// every fragment that has flows, so that none is left stale; it finds
// them from the state, not from the flow set, which this checks against.
func TestMarkAllCoversEveryFragment(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	c, cfg := stateCluster()
	inc := NewIncremental(c, cfg)
	if _, err := inc.Flush(); err != nil {
		t.Fatal(err)
	}
	for step := range 30 {
		for range 1 + rng.IntN(3) {
			stateEvent(rng, inc)
		}
		if pols := inc.c.SortedPolicies(); step%5 == 0 && len(pols) > 1 {
			inc.DeletePolicy(pols[rng.IntN(len(pols))].Key()) // its rules' fragments must go too
		}
		if _, err := inc.Flush(); err != nil {
			t.Fatal(err)
		}
		inc.markAll()
		marked := dirtyFragments(inc)
		n := 0
		inc.set.fragments(func(id string) {
			n++
			if rest, ok := strings.CutPrefix(id, "rulepeers/"); ok {
				id = "rule/" + rest // computed with its rule
			}
			if _, found := slices.BinarySearch(marked, id); !found {
				t.Fatalf("step %d: fragment %s has flows but markAll does not mark it", step, id)
			}
		})
		if n == 0 {
			t.Fatal("no fragment has flows")
		}
		if _, err := inc.Flush(); err != nil {
			t.Fatal(err)
		}
		equalsFull(t, inc, fmt.Sprintf("step %d after markAll", step))
	}
}

// TestSetPolicyRefusesPeerChangedInPlace: a held policy passed again is
// fine unchanged (a resync), and refused when a peer's selectors were
// changed in place: its group would stay the old selectors'.
func TestSetPolicyRefusesPeerChangedInPlace(t *testing.T) {
	for _, tc := range []struct {
		what   string
		change func(p *model.Policy)
		panics bool
	}{
		{"unchanged", func(*model.Policy) {}, false},
		{"pod selector changed in place", func(p *model.Policy) {
			p.Ingress[0].Peers[0].PodSelector = labels.SelectorFromSet(labels.Set{"app": "cache"})
		}, true},
		{"namespace selector set in place", func(p *model.Policy) {
			p.Ingress[0].Peers[0].NamespaceSelector = labels.Everything()
		}, true},
	} {
		t.Run(tc.what, func(t *testing.T) {
			c, cfg := stateCluster()
			inc := NewIncremental(c, cfg)
			if _, err := inc.Flush(); err != nil {
				t.Fatal(err)
			}
			p := inc.c.Policies["x/from-web"]
			tc.change(p)
			var got any
			func() {
				defer func() { got = recover() }()
				inc.SetPolicy(p)
			}()
			if (got != nil) != tc.panics {
				t.Fatalf("SetPolicy of the held policy, %s: panic %v, want a panic: %t", tc.what, got, tc.panics)
			}
			if got != nil && !strings.Contains(fmt.Sprint(got), "x/from-web was changed in place") {
				t.Fatalf("panic %q does not name the policy and the change", got)
			}
			if !tc.panics {
				if _, err := inc.Flush(); err != nil {
					t.Fatal(err)
				}
				equalsFull(t, inc, tc.what)
			}
		})
	}
}

// TestEgressSplitKeyedBySpecs: an egress split is valid for the port
// specs it resolved, compared by value: other specs (a new rule version,
// whatever its pointer) resolve every destination again; the same specs
// in a new slice keep the resolutions.
func TestEgressSplitKeyedBySpecs(t *testing.T) {
	pod := &model.Pod{UID: "u", Namespace: "x", Name: "p", IPs: []netip.Addr{netip.MustParseAddr("10.1.0.1")},
		Ports: []model.ContainerPort{{Name: "http", Port: 80, Protocol: model.TCP}, {Name: "metrics", Port: 9090, Protocol: model.TCP}}}
	pre := netip.MustParsePrefix("10.1.0.1/32")
	addrs := []peerAddr{{prefix: pre, pod: pod, match: peerMatches(pre)}}
	var m egressSplit
	for _, tc := range []struct {
		name string
		want string
	}{
		{"http", "80/TCP"},
		{"metrics", "9090/TCP"},
		{"metrics", "9090/TCP"},
		{"http", "80/TCP"},
	} {
		named := []model.PortSpec{{Protocol: model.TCP, Name: tc.name}}
		out := m.update(named, addrs)
		var got []string
		for i, l := range out {
			if len(l) > 0 {
				got = append(got, m.keys[i])
			}
		}
		if !slices.Equal(got, []string{tc.want}) {
			t.Fatalf("named port %s: destinations resolve to %v, want [%s]", tc.name, got, tc.want)
		}
	}
}

// TestSharedAddressDropsTheList: while members of a group share an
// address, a member joining or leaving drops the group's list for a
// rebuild (which decides who owns the address) rather than patching it;
// the flows stay a full compile's.
func TestSharedAddressDropsTheList(t *testing.T) {
	c, cfg := stateCluster()
	inc := NewIncremental(c, cfg)
	if _, err := inc.Flush(); err != nil {
		t.Fatal(err)
	}
	webGroup := func() *addrGroup {
		p := inc.c.Policies["x/from-web"]
		return inc.group(&p.Ingress[0].Peers[0], "x")
	}
	// p0 and p6 are web pods of x; p6 takes p0's address.
	p6 := *inc.c.Pods["u6"]
	p6.IPs = inc.c.Pods["u0"].IPs
	inc.SetPod(&p6)
	if _, err := inc.Flush(); err != nil {
		t.Fatal(err)
	}
	equalsFull(t, inc, "p6 shares p0's address")
	if g := webGroup(); !g.built || !g.shared {
		t.Fatalf("web group: built %t, shared %t; want both", g.built, g.shared)
	}
	for _, ev := range []struct {
		what  string
		event func()
	}{
		{"p0 leaves (relabelled)", func() { p := *inc.c.Pods["u0"]; p.Labels = labels.Set{"app": "db"}; inc.SetPod(&p) }},
		{"p0 comes back", func() { p := *inc.c.Pods["u0"]; p.Labels = labels.Set{"app": "web"}; inc.SetPod(&p) }},
		{"p6 deleted", func() { inc.DeletePod("u6") }},
	} {
		ev.event()
		if g := webGroup(); g.sorted != nil {
			t.Fatalf("%s: the web group's list was patched while its members shared an address", ev.what)
		}
		if _, err := inc.Flush(); err != nil {
			t.Fatal(err)
		}
		equalsFull(t, inc, ev.what)
		checkGroups(t, inc, ev.what)
	}
	if g := webGroup(); g.shared {
		t.Fatal("web group still notes a shared address after p6 left")
	}
}
