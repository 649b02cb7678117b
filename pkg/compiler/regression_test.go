package compiler_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/internal/netpoltest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Regression tests from a review of address groups, peer fragments,
// egress named-port memos and FlowSet patches. Each compares an
// Incremental after a sequence of events with a fresh Compile of the same
// state.

func selector(kv ...string) labels.Selector {
	s := labels.Set{}
	for i := 0; i+1 < len(kv); i += 2 {
		s[kv[i]] = kv[i+1]
	}
	return labels.SelectorFromSet(s)
}

// withLabels returns a copy of the current version of pod key with labels l.
func withLabels(inc *compiler.Incremental, f *netpoltest.Fixture, key string, l labels.Set) *model.Pod {
	p := *inc.Cluster().Pods[f.Pods[key].UID]
	p.Labels = l
	return &p
}

// TestSetConfigDropsPeerFragment: SetConfig marks everything and used to
// forget every rule's peer memo, so a rule that then rendered no peer
// dimension kept its old peer fragment ("rulepeers/<rule>"): when its
// targets went away, or when its policy was deleted in the same batch.
func TestSetConfigDropsPeerFragment(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(inc *compiler.Incremental, cfg compiler.Config)
	}{
		{"the node's pods no longer bound", func(inc *compiler.Incremental, cfg compiler.Config) {
			cfg.Bindings = map[string]compiler.Binding{}
			inc.SetConfig(cfg)
		}},
		{"config unchanged, policy deleted", func(inc *compiler.Incremental, cfg compiler.Config) {
			inc.SetConfig(cfg)
			inc.DeletePolicy("x/from-y")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := netpoltest.NewFixture(netpoltest.Options{Nodes: 2})
			inc, cfg := flushedSetup(t, f)
			inc.SetPolicy(&model.Policy{Namespace: "x", Name: "from-y", APIVersion: "networking.k8s.io/v1",
				PodSelector: labels.Everything(), AffectsIngress: true,
				Ingress: []model.Rule{{Peers: []model.Peer{{NamespaceSelector: selector("ns", "y")}}}}})
			flushEqualsFull(t, inc, "policy added")
			tc.change(inc, cfg)
			flushEqualsFull(t, inc, tc.name)
		})
	}
}

// TestRelabelOutOfSelector: an egress rule with a named port has a
// selector peer and an ipBlock. A pod relabelled out of the selector stops
// being a peer: its address is excepted from the block, or only its other
// family's address is in it. The relabel used to be judged by
// peerMayInvolve, true before and after (the block's CIDR, exceptions and
// families ignored), so the rule kept allowing the pod.
func TestRelabelOutOfSelector(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dualStack bool
		block     model.IPBlock
	}{
		// x/b is 10.1.1.2 (node-2); x/a is on node-1 (a target).
		{"into the block's exception", false, model.IPBlock{CIDR: netip.MustParsePrefix("10.0.0.0/8"), Except: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}},
		// x/b is also fd00:10:1::1:2.
		{"other family in the block", true, model.IPBlock{CIDR: netip.MustParsePrefix("fd00::/8")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := netpoltest.NewFixture(netpoltest.Options{Nodes: 2, DualStack: tc.dualStack})
			inc, _ := flushedSetup(t, f)
			inc.SetPod(withLabels(inc, f, "x/b", labels.Set{"pod": "b", "app": "web"}))
			inc.SetPolicy(&model.Policy{Namespace: "x", Name: "to-web", APIVersion: "networking.k8s.io/v1",
				PodSelector: labels.Everything(), AffectsEgress: true,
				Egress: []model.Rule{{
					Peers: []model.Peer{{PodSelector: selector("app", "web")}, {IPBlock: &tc.block}},
					Ports: []model.PortSpec{{Protocol: model.TCP, Name: "serve-80-tcp"}},
				}}})
			flushEqualsFull(t, inc, "x/b selected")
			inc.SetPod(withLabels(inc, f, "x/b", labels.Set{"pod": "b"}))
			flushEqualsFull(t, inc, "x/b relabelled out of the selector")
		})
	}
}

// TestRelabelChangesSharedAddressOwner: two live pods claim one
// address; an egress named-port rule with two selector peers resolves the
// address against the owner its first peer lists (the first by
// namespace/name among that peer's pods). Relabelling the owner out of the
// first peer (it stays in the second) hands the address to the other pod,
// whose named port has another number; the rule involves the relabelled pod
// before and after, so markRelabel does not recompute it.
func TestRelabelChangesSharedAddressOwner(t *testing.T) {
	f := netpoltest.NewFixture(netpoltest.Options{Nodes: 2})
	inc, _ := flushedSetup(t, f)
	shared := netip.MustParseAddr("10.1.1.2") // x/b's
	a := *inc.Cluster().Pods[f.Pods["x/a"].UID]
	b := *inc.Cluster().Pods[f.Pods["x/b"].UID]
	// Both remote, both selected by both peers; a's "http" is 8080, b's 8081.
	a.Node, a.IPs = "node-2", []netip.Addr{shared}
	a.Labels = labels.Set{"pod": "a", "app": "web", "role": "any"}
	a.Ports = []model.ContainerPort{{Name: "http", Port: 8080, Protocol: model.TCP}}
	b.Labels = labels.Set{"pod": "b", "app": "web", "role": "any"}
	b.Ports = []model.ContainerPort{{Name: "http", Port: 8081, Protocol: model.TCP}}
	inc.SetPod(&a)
	inc.SetPod(&b)
	inc.SetPolicy(&model.Policy{Namespace: "x", Name: "to-web", APIVersion: "networking.k8s.io/v1",
		PodSelector: labels.Everything(), AffectsEgress: true,
		Egress: []model.Rule{{
			Peers: []model.Peer{{PodSelector: selector("app", "web")}, {PodSelector: selector("role", "any")}},
			Ports: []model.PortSpec{{Protocol: model.TCP, Name: "http"}},
		}}})
	flushEqualsFull(t, inc, "x/a owns the shared address")
	a2 := a
	a2.Labels = labels.Set{"pod": "a", "role": "any"}
	inc.SetPod(&a2)
	flushEqualsFull(t, inc, "x/a relabelled out of the first peer")
}

// richEvent is randomEvent plus events it does not make: namespace
// labels that namespace selectors test (env, team) changing or going away,
// namespaces deleted and re-added, pods losing their addresses or gaining
// an IPv6 one, pod labels from the whole vocabulary, policies copied deeply
// (new peers, same selectors; sometimes deleted first, in the same batch)
// or shallowly under another name or namespace (peers shared by two
// policies), a pod set again as the same object or deleted and re-added
// with its UID.
func richEvent(rng *rand.Rand, f *netpoltest.Fixture, inc *compiler.Incremental) string {
	c := inc.Cluster()
	pods := c.SortedPods()
	pod := pods[rng.IntN(len(pods))]
	names := []string{"x", "y", "z"}
	switch rng.IntN(13) {
	case 0:
		ns := names[rng.IntN(3)]
		var n model.Namespace
		if old := c.Namespaces[ns]; old != nil {
			n = *old
		} else {
			n = model.Namespace{Name: ns}
		}
		n.Labels = labels.Set{"ns": ns, "kubernetes.io/metadata.name": ns}
		if rng.IntN(3) != 0 {
			n.Labels["env"] = []string{"prod", "dev"}[rng.IntN(2)]
		}
		if rng.IntN(3) == 0 {
			n.Labels["team"] = []string{"blue", "red"}[rng.IntN(2)]
		}
		inc.SetNamespace(&n)
		return "namespace labels " + ns + " " + n.Labels.String()
	case 1:
		ns := names[rng.IntN(3)]
		if _, ok := c.Namespaces[ns]; ok && rng.IntN(2) == 0 {
			inc.DeleteNamespace(ns)
			return "delete namespace " + ns
		}
		inc.SetNamespace(&model.Namespace{Name: ns, Labels: labels.Set{"ns": ns, "env": "prod"}})
		return "re-add namespace " + ns
	case 2:
		np := *pod
		switch rng.IntN(4) {
		case 0:
			np.IPs = nil
		case 1:
			if len(np.IPs) > 0 && np.IPs[0].Is4() {
				a := np.IPs[0].As4()
				np.IPs = []netip.Addr{np.IPs[0], netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x10, 0, 1, 15: a[3]})}
			}
		case 2:
			np.IPs = []netip.Addr{netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x10, 0, 1, 15: byte(1 + rng.IntN(4))})}
		default:
			if other := pods[rng.IntN(len(pods))]; len(other.IPs) > 0 {
				np.IPs = append(slices.Clone(np.IPs), other.IPs...)
			}
		}
		inc.SetPod(&np)
		return "addresses of " + pod.Key()
	case 3:
		np := *pod
		np.Labels = labels.Set{"pod": pod.Labels["pod"]}
		if rng.IntN(3) != 0 {
			np.Labels["app"] = []string{"web", "db", "cache"}[rng.IntN(3)]
		}
		if rng.IntN(2) == 0 {
			np.Labels["tier"] = []string{"1", "2"}[rng.IntN(2)]
		}
		inc.SetPod(&np)
		return "relabel pod " + pod.Key() + " " + np.Labels.String()
	case 4:
		for _, p := range c.SortedPolicies() {
			if rng.IntN(3) != 0 {
				continue
			}
			cp := *p
			cp.Ingress, cp.Egress = deepRules(p.Ingress), deepRules(p.Egress)
			if rng.IntN(2) == 0 {
				inc.DeletePolicy(p.Key())
			}
			inc.SetPolicy(&cp)
			return "deep copy of policy " + p.Key()
		}
		return "nothing"
	case 5:
		for _, p := range c.SortedPolicies() {
			if rng.IntN(3) != 0 {
				continue
			}
			cp := *p
			cp.Name = fmt.Sprintf("p%d", rng.IntN(6))
			if rng.IntN(3) == 0 { // the same peers in another namespace
				cp.Namespace = names[rng.IntN(3)]
			}
			inc.SetPolicy(&cp)
			return "shallow copy of policy " + p.Key() + " as " + cp.Key()
		}
		return "nothing"
	case 6:
		if rng.IntN(2) == 0 {
			inc.SetPod(pod) // the same version again
			return "same pod " + pod.Key() + " again"
		}
		np := *pod
		inc.DeletePod(pod.UID)
		inc.SetPod(&np)
		return "delete and re-add pod " + pod.Key() + " (same UID)"
	default:
		desc := ""
		for _, ns := range names { // randomEvent relabels existing namespaces
			if c.Namespaces[ns] == nil {
				inc.SetNamespace(&model.Namespace{Name: ns, Labels: labels.Set{"ns": ns, "kubernetes.io/metadata.name": ns}})
				desc += "re-add namespace " + ns + "; "
			}
		}
		return desc + randomEvent(rng, f, inc)
	}
}

func deepRules(rules []model.Rule) []model.Rule {
	if rules == nil {
		return nil
	}
	out := make([]model.Rule, len(rules))
	for i, r := range rules {
		out[i] = model.Rule{Peers: slices.Clone(r.Peers), Ports: slices.Clone(r.Ports)}
	}
	return out
}

// TestRandomEventBatches is TestIncrementalEqualsFull with richEvent,
// both stacks, both modes, batches of up to 8 events, and Flush's report
// checked to be exact. It found the relabel bug of
// TestRelabelOutOfSelectorIntoExcept on its own (one seed of 1500).
func TestRandomEventBatches(t *testing.T) {
	randomEventBatches(t, model.ModeV1, 100, 0)
	randomEventBatches(t, model.ModeV16, 100, 0)
}

// TestRandomEventBatchesTiered is the same with at most two conjunctions
// per flow: most shared matches are split over conjunction tiers, and the
// tier counts of the policy tables go up and down as rules come and go.
func TestRandomEventBatchesTiered(t *testing.T) {
	randomEventBatches(t, model.ModeV1, 40, 2)
	randomEventBatches(t, model.ModeV16, 20, 2)
}

func randomEventBatches(t *testing.T, mode model.Mode, seeds, conjLimit int) {
	if testing.Short() {
		seeds = 10
	}
	tieredSteps, steps := 0, 0
	for seed := int64(1); seed <= int64(seeds); seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 99))
		f := netpoltest.NewFixture(netpoltest.Options{Nodes: 2, DualStack: seed%2 == 0, Mode: mode})
		netpoltest.Randomize(rng, f)
		for _, p := range netpoltest.RandomPolicies(rng, f, 4) {
			f.Cluster.AddPolicy(p)
		}
		cfg := compiler.Config{Node: "node-1", UplinkPort: 9, NodeIPs: []netip.Addr{netpoltest.NodeIP(1)}, MaxConjunctionsPerFlow: conjLimit}
		cfg.Bindings = compiler.DefaultBindings(f.Cluster, "node-1", nil, 9)
		inc := compiler.NewIncremental(copyCluster(f.Cluster), cfg)
		if _, err := inc.Flush(); err != nil {
			t.Fatal(err)
		}
		var history []string
		prev := byKey(inc.Flows())
		for step := 0; step < 40; step++ {
			var descs []string
			for n := 1 + rng.IntN(8); n > 0; n-- {
				descs = append(descs, richEvent(rng, f, inc))
			}
			history = append(history, strings.Join(descs, "; "))
			changed, err := inc.Flush()
			if err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			full, err := compiler.Compile(inc.Cluster(), inc.Config())
			if err != nil {
				t.Fatal(err)
			}
			got, want := byKey(inc.Flows()), byKey(full.Flows)
			if len(got) != inc.Len() {
				t.Fatalf("seed %d step %d: Len() %d, Flows() %d", seed, step, inc.Len(), len(got))
			}
			steps++
			if conjLimit > 0 {
				if hasTiers(full.Flows) {
					tieredSteps++
				}
				if err := checkConjunctionLimit(full.Flows, conjLimit); err != nil {
					t.Fatalf("seed %d step %d: %v", seed, step, err)
				}
			}
			for k, w := range want {
				if g, ok := got[k]; !ok || !g.Equal(w) {
					t.Fatalf("seed %d step %d (%s): incremental has %v, full compile %v\nhistory:\n%s", seed, step, history[len(history)-1], g, w, strings.Join(history, "\n"))
				}
			}
			for k, g := range got {
				if _, ok := want[k]; !ok {
					t.Fatalf("seed %d step %d (%s): incremental has extra flow %v\nhistory:\n%s", seed, step, history[len(history)-1], g, strings.Join(history, "\n"))
				}
			}
			reported := map[openflow.Key]bool{}
			for _, k := range changed {
				reported[k] = true
			}
			// Flush reports exactly the keys whose flow was added, changed
			// or removed.
			for k, g := range got {
				if p, ok := prev[k]; (!ok || !p.Equal(g)) != reported[k] {
					t.Fatalf("seed %d step %d: flow %v changed: %t, reported: %t", seed, step, g, !ok || !p.Equal(g), reported[k])
				}
			}
			for k := range reported {
				if _, ok := got[k]; !ok {
					if _, had := prev[k]; !had {
						t.Fatalf("seed %d step %d: key %v reported but neither before nor after", seed, step, k)
					}
				}
			}
			for k := range prev {
				if _, ok := got[k]; !ok && !reported[k] {
					t.Fatalf("seed %d step %d: flow %v removed but not reported", seed, step, prev[k])
				}
			}
			prev = got
		}
	}
	if conjLimit > 0 {
		t.Logf("%s, at most %d conjunctions per flow: %d of %d steps had conjunction tiers", mode, conjLimit, tieredSteps, steps)
		if tieredSteps == 0 {
			t.Errorf("no step had conjunction tiers: the tiers were not exercised")
		}
	}
}

// checkConjunctionLimit fails if a flow holds more than limit conjunction
// actions, or if a conjunction's flows sit at different priorities (OVS
// requires one priority per conjunction).
func checkConjunctionLimit(flows []openflow.Flow, limit int) error {
	prio := map[[2]uint32]uint16{}
	note := func(f openflow.Flow, id uint32) error {
		k := [2]uint32{uint32(f.Table), id}
		if p, ok := prio[k]; ok && p != f.Priority {
			return fmt.Errorf("conjunction %d in table %d at priorities %d and %d", id, f.Table, p, f.Priority)
		}
		prio[k] = f.Priority
		return nil
	}
	for _, f := range flows {
		if id, ok := f.Match.ConjID(); ok {
			if err := note(f, id); err != nil {
				return err
			}
			continue
		}
		if !f.IsConjunction() {
			continue
		}
		acts := f.Actions.Conjunctions()
		sameTier := map[uint32]int{} // by ID mod MaxConjunctionTiers
		crowded := false
		for _, a := range acts {
			if err := note(f, a.ID); err != nil {
				return err
			}
			r := a.ID % compiler.MaxConjunctionTiers
			sameTier[r]++
			crowded = crowded || sameTier[r] > limit
		}
		// Only conjunctions that no tier count can separate may crowd a flow.
		if len(acts) > limit && !crowded {
			return fmt.Errorf("flow %s holds %d conjunctions (limit %d)", f, len(acts), limit)
		}
	}
	return nil
}

// TestFlowSetPatchModel drives a FlowSet with random SetFragment and
// PatchFragment calls (fragments given sorted and unsorted, with keys
// repeated within a fragment, conjunction and plain flows shared between
// fragments) and checks after each Commit that its flows are the Merge of
// a simple model's fragments, and that Commit reports exactly the keys
// whose merged flow changed.
func TestFlowSetPatchModel(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		rng := rand.New(rand.NewPCG(seed, 5))
		s := compiler.NewFlowSet()
		model := map[string]map[openflow.Key]openflow.Flow{} // per fragment, merged per key
		randFlow := func() openflow.Flow {
			m := openflow.NewMatch(openflow.IP, openflow.HostSrc(netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(12))})))
			if rng.IntN(2) == 0 {
				cookie := openflow.Ours | openflow.Cookie(1+rng.IntN(3))
				id := uint32(1 + rng.IntN(4))
				return openflow.Flow{Table: 40, Priority: 100, Cookie: cookie, Match: m,
					Actions: openflow.Conjoin([]openflow.Conjunction{{ID: id, K: uint8(1 + rng.IntN(2)), N: 2}}...)}
			}
			prio, cookie := uint16(100+rng.IntN(2)), openflow.Ours|openflow.Cookie(1+rng.IntN(3))
			return openflow.Flow{Table: 50, Priority: prio, Cookie: cookie, Match: m,
				Actions: openflow.Do(openflow.Output(uint32(1 + rng.IntN(2))))}
		}
		prev := map[openflow.Key]openflow.Flow{}
		for step := 0; step < 60; step++ {
			for n := 1 + rng.IntN(4); n > 0; n-- {
				id := fmt.Sprintf("f%d", rng.IntN(4))
				if rng.IntN(2) == 0 || model[id] == nil {
					var flows []openflow.Flow
					for k := rng.IntN(8); k > 0; k-- {
						flows = append(flows, randFlow())
					}
					if rng.IntN(2) == 0 {
						openflow.Sort(flows)
					}
					merged, err := compiler.Merge(flows)
					if err != nil {
						t.Fatal(err)
					}
					if err := s.SetFragment(id, flows); err != nil {
						t.Fatal(err)
					}
					// The caller's slice may now belong to the set.
					flows = nil
					m := map[openflow.Key]openflow.Flow{}
					for _, f := range merged {
						m[f.Key()] = f
					}
					model[id] = m
					continue
				}
				var changes []compiler.FlowChange
				for k := 1 + rng.IntN(5); k > 0; k-- {
					f := randFlow()
					rm := rng.IntN(2) == 0
					changes = append(changes, compiler.FlowChange{Flow: f, Remove: rm})
					if rm {
						delete(model[id], f.Key())
					} else {
						model[id][f.Key()] = f
					}
				}
				s.PatchFragment(id, changes)
			}
			changed, err := s.Commit()
			if err != nil {
				t.Fatal(err)
			}
			var all []openflow.Flow
			for _, m := range model {
				for _, f := range m {
					all = append(all, f)
				}
			}
			want, err := compiler.Merge(all)
			if err != nil {
				t.Fatal(err)
			}
			got := s.Flows()
			if !slices.EqualFunc(got, want, openflow.Flow.Equal) {
				t.Fatalf("seed %d step %d: flows\n%v\nwant\n%v", seed, step, got, want)
			}
			cur := byKey(got)
			reported := map[openflow.Key]bool{}
			for _, k := range changed {
				reported[k] = true
			}
			for k := range cur {
				if p, ok := prev[k]; (!ok || !p.Equal(cur[k])) != reported[k] {
					t.Fatalf("seed %d step %d: key %v changed %t, reported %t", seed, step, k, !ok || !p.Equal(cur[k]), reported[k])
				}
			}
			for k := range prev {
				if _, ok := cur[k]; !ok && !reported[k] {
					t.Fatalf("seed %d step %d: key %v removed, not reported", seed, step, k)
				}
			}
			prev = cur
		}
	}
}
