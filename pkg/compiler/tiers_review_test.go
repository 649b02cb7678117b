package compiler_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	manifests "github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// flowSetModel is what a FlowSet was given: each fragment's flows by key.
type flowSetModel struct {
	frags map[string]map[openflow.Key]openflow.Flow
	limit int
}

// flows returns fragment id's flows sorted as FlowSet keeps them (table,
// priority, match ascending), so that SetFragment takes them as they are.
func (m *flowSetModel) flows(id string) []openflow.Flow {
	var out []openflow.Flow
	for _, f := range m.frags[id] {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b openflow.Flow) int {
		switch {
		case a.Table != b.Table:
			return int(a.Table) - int(b.Table)
		case a.Priority != b.Priority:
			return int(a.Priority) - int(b.Priority)
		}
		return strings.Compare(a.Match.String(), b.Match.String())
	})
	return out
}

// fresh builds a FlowSet from scratch with the model's fragments and limit.
func (m *flowSetModel) fresh(t *testing.T) *compiler.FlowSet {
	t.Helper()
	s := compiler.NewFlowSet()
	s.SetConjunctionLimit(m.limit)
	for id := range m.frags {
		if err := s.SetFragment(id, m.flows(id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	return s
}

// randomPolicyFlow is one flow of a policy table or a flow elsewhere, with
// keys drawn from small sets so that fragments share them: dimension flows
// (conjunction actions of IDs 1..maxID, possibly several in one flow),
// conj_id flows, a rule's direct allow at 30001 and an isolation drop.
func randomPolicyFlow(rng *rand.Rand, cookie openflow.Cookie, maxID int) openflow.Flow {
	table := []uint8{compiler.TableEgress, compiler.TableIngress}[rng.IntN(2)]
	toCommit := openflow.Do(openflow.Goto(compiler.TableCommit))
	dst := func(i int) openflow.Match {
		return openflow.NewMatch(openflow.IP, openflow.HostDst(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)})))
	}
	switch rng.IntN(10) {
	case 0:
		return openflow.Flow{Table: table, Priority: compiler.PrioRuleConj, Cookie: cookie,
			Match: openflow.NewMatch(openflow.ConjID(1 + rng.IntN(maxID))), Actions: toCommit}
	case 1:
		return openflow.Flow{Table: table, Priority: compiler.PrioRuleAllow, Cookie: cookie,
			Match: dst(rng.IntN(3)), Actions: toCommit}
	case 2:
		return openflow.Flow{Table: table, Priority: compiler.PrioIsolation, Cookie: cookie,
			Match: dst(rng.IntN(3))}
	}
	var match openflow.Match
	k := uint8(1)
	if rng.IntN(2) == 0 {
		match = openflow.NewMatch(openflow.IP, openflow.HostSrc(netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(3))})))
	} else {
		match = openflow.NewMatch(openflow.TCP, openflow.PortDst(uint16(80+rng.IntN(2))))
		k = 2
	}
	var conjs []openflow.Conjunction
	for n := 1 + rng.IntN(4); n > 0; n-- {
		conjs = append(conjs, openflow.Conjunction{ID: uint32(1 + rng.IntN(maxID)), K: k, N: 2})
	}
	slices.SortFunc(conjs, func(a, b openflow.Conjunction) int { return int(a.ID) - int(b.ID) })
	conjs = slices.Compact(conjs)
	return openflow.Flow{Table: table, Priority: compiler.PrioRuleConj, Cookie: cookie, Match: match, Actions: openflow.Conjoin(conjs...)}
}

// TestFlowSetTiersRandomModel drives one FlowSet with random SetFragment,
// PatchFragment and SetConjunctionLimit calls (limits of 1 to 6
// conjunctions, so that the tier counts of both policy tables go up and
// down, often together with other changes in one Commit) and after each
// Commit checks it against a FlowSet built from scratch: the same flows,
// Len, Flow(k) for every key, and a report of exactly the keys added,
// changed or removed, each once, with Removed(k) the flow that was
// installed.
func TestFlowSetTiersRandomModel(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 20
	}
	var commits, tierUps, tierDowns, mixed, reportedKeys, removedKeys int
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		maxID := []int{8, 40, 4000}[seed%3]
		m := &flowSetModel{frags: map[string]map[openflow.Key]openflow.Flow{}, limit: 1 + rng.IntN(6)}
		s := compiler.NewFlowSet()
		s.SetConjunctionLimit(m.limit)
		prev := map[openflow.Key]openflow.Flow{}
		prevTiers := map[uint8]int{}
		for step := 0; step < 60; step++ {
			var ops []string
			for n := 1 + rng.IntN(4); n > 0; n-- {
				id := fmt.Sprintf("f%d", rng.IntN(8))
				cookie := openflow.Cookie(1 + rng.IntN(5))
				switch r := rng.IntN(10); {
				case r < 4:
					fl := map[openflow.Key]openflow.Flow{}
					for j := rng.IntN(8); j > 0; j-- {
						f := randomPolicyFlow(rng, cookie, maxID)
						fl[f.Key()] = f
					}
					m.frags[id] = fl
					if len(fl) == 0 {
						delete(m.frags, id)
					}
					if err := s.SetFragment(id, m.flows(id)); err != nil {
						t.Fatal(err)
					}
					ops = append(ops, fmt.Sprintf("set %s (%d flows)", id, len(fl)))
				case r < 8:
					var changes []compiler.FlowChange
					for j := 1 + rng.IntN(3); j > 0; j-- {
						fl := m.frags[id]
						if len(fl) > 0 && rng.IntN(2) == 0 {
							keys := make([]openflow.Key, 0, len(fl))
							for k := range fl {
								keys = append(keys, k)
							}
							slices.SortFunc(keys, func(a, b openflow.Key) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
							k := keys[rng.IntN(len(keys))]
							changes = append(changes, compiler.FlowChange{Flow: fl[k], Remove: true})
							delete(fl, k)
							continue
						}
						f := randomPolicyFlow(rng, cookie, maxID)
						if fl == nil {
							fl = map[openflow.Key]openflow.Flow{}
							m.frags[id] = fl
						}
						fl[f.Key()] = f
						changes = append(changes, compiler.FlowChange{Flow: f})
					}
					if len(m.frags[id]) == 0 {
						delete(m.frags, id)
					}
					s.PatchFragment(id, changes)
					ops = append(ops, fmt.Sprintf("patch %s (%d changes)", id, len(changes)))
				case r < 9:
					m.limit = 1 + rng.IntN(6)
					s.SetConjunctionLimit(m.limit)
					ops = append(ops, fmt.Sprintf("limit %d", m.limit))
				default:
					delete(m.frags, id)
					if err := s.SetFragment(id, nil); err != nil {
						t.Fatal(err)
					}
					ops = append(ops, "drop "+id)
				}
			}
			changed, err := s.Commit()
			if err != nil {
				t.Fatalf("seed %d step %d (%s): %v", seed, step, strings.Join(ops, "; "), err)
			}
			commits++
			where := fmt.Sprintf("seed %d step %d (%s)", seed, step, strings.Join(ops, "; "))
			want := m.fresh(t).Flows()
			gotFlows := s.Flows()
			if !slices.EqualFunc(gotFlows, want, openflow.Flow.Equal) {
				t.Fatalf("%s: incremental FlowSet has\n%s\nfrom scratch:\n%s", where, flowLines(gotFlows), flowLines(want))
			}
			if err := checkConjunctionLimit(gotFlows, m.limit); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if s.Len() != len(gotFlows) {
				t.Fatalf("%s: Len() %d, Flows() %d", where, s.Len(), len(gotFlows))
			}
			got := byKey(gotFlows)
			for k, f := range got {
				if g, ok := s.Flow(k); !ok || !g.Equal(f) {
					t.Fatalf("%s: Flow(%v) = %v, %t; Flows() has %v", where, k, g, ok, f)
				}
			}
			reported := map[openflow.Key]int{}
			for _, k := range changed {
				reported[k]++
				if reported[k] > 1 {
					t.Fatalf("%s: key %v reported twice", where, k)
				}
			}
			for k, f := range got {
				if p, ok := prev[k]; (!ok || !p.Equal(f)) != (reported[k] > 0) {
					t.Fatalf("%s: flow %v changed: %t, reported: %t", where, f, !ok || !p.Equal(f), reported[k] > 0)
				}
			}
			for k, p := range prev {
				if _, ok := got[k]; ok {
					continue
				}
				removedKeys++
				if reported[k] == 0 {
					t.Fatalf("%s: flow %v removed but not reported", where, p)
				}
				if g, ok := s.Flow(k); ok {
					t.Fatalf("%s: removed key %v still has Flow %v", where, k, g)
				}
				if r, ok := s.Removed(k); !ok || !r.Equal(p) {
					t.Fatalf("%s: Removed(%v) = %v, %t; the installed flow was %v", where, k, r, ok, p)
				}
			}
			for k := range reported {
				_, now := got[k]
				_, before := prev[k]
				if !now && !before {
					t.Fatalf("%s: key %v reported but neither before nor after", where, k)
				}
			}
			reportedKeys += len(changed)
			tiers := tierCounts(gotFlows)
			up, down := false, false
			for _, tb := range []uint8{compiler.TableEgress, compiler.TableIngress} {
				up = up || tiers[tb] > prevTiers[tb]
				down = down || tiers[tb] < prevTiers[tb]
			}
			if up {
				tierUps++
			}
			if down {
				tierDowns++
			}
			if (up || down) && len(ops) > 1 {
				mixed++
			}
			prev, prevTiers = got, tiers
		}
	}
	t.Logf("%d commits checked against a FlowSet built from scratch: %d whose conjunction priorities per table went up, %d down, %d of those with other changes in the same Commit; %d keys reported, %d removals",
		commits, tierUps, tierDowns, mixed, reportedKeys, removedKeys)
	if tierUps == 0 || tierDowns == 0 || mixed == 0 {
		t.Errorf("the conjunction priorities did not go both up and down with other changes (up %d, down %d, mixed %d)", tierUps, tierDowns, mixed)
	}
}

// tierCounts returns, per policy table, how many distinct conjunction
// priorities its flows use (1 when untiered, 0 when it has none).
func tierCounts(flows []openflow.Flow) map[uint8]int {
	prios := map[uint8]map[uint16]bool{}
	for _, f := range flows {
		if f.Table != compiler.TableEgress && f.Table != compiler.TableIngress {
			continue
		}
		if f.Priority > compiler.PrioRuleConj || f.Priority <= compiler.PrioRuleConj-compiler.MaxConjunctionTiers {
			continue
		}
		if prios[f.Table] == nil {
			prios[f.Table] = map[uint16]bool{}
		}
		prios[f.Table][f.Priority] = true
	}
	out := map[uint8]int{}
	for t, p := range prios {
		out[t] = len(p)
	}
	return out
}

func flowLines(flows []openflow.Flow) string {
	var b strings.Builder
	for _, f := range flows {
		fmt.Fprintf(&b, "  %v\n", f)
	}
	return b.String()
}

// TestIncrementalConjunctionLimitChanges changes Config.MaxConjunctionsPerFlow
// through SetConfig on a live Incremental (up and down, to the default and
// back), together with policies coming and going, and checks each Flush
// against a full compile: the same flows, Len, Flow(k), and exactly the
// changed keys reported, with Removed(k) the flow that was installed.
func TestIncrementalConjunctionLimitChanges(t *testing.T) {
	objs, err := manifests.Parse("many.yaml", []byte(sharedRuleManifests(40, true)))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := objs.Cluster(model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	cfg := compiler.Config{Node: "node-1", UplinkPort: 9, NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.1")}}
	cfg.Bindings = compiler.DefaultBindings(c, "node-1", nil, 9)
	inc := compiler.NewIncremental(copyCluster(c), cfg)
	if _, err := inc.Flush(); err != nil {
		t.Fatal(err)
	}
	prev := byKey(inc.Flows())
	rng := rand.New(rand.NewPCG(3, 3))
	policies := c.SortedPolicies()
	var deleted []*model.Policy
	tierSizes := map[int]bool{}
	for step := 0; step < 60; step++ {
		var ops []string
		if rng.IntN(3) > 0 {
			next := inc.Config()
			next.MaxConjunctionsPerFlow = []int{0, 1, 2, 3, 5, 8, 13, 50}[rng.IntN(8)]
			inc.SetConfig(next)
			ops = append(ops, fmt.Sprintf("limit %d", next.MaxConjunctionsPerFlow))
		}
		for n := rng.IntN(4); n > 0; n-- {
			if len(deleted) > 0 && rng.IntN(2) == 0 {
				p := deleted[len(deleted)-1]
				deleted = deleted[:len(deleted)-1]
				inc.SetPolicy(p)
				ops = append(ops, "add "+p.Key())
				continue
			}
			p := policies[rng.IntN(len(policies))]
			if _, ok := inc.Cluster().Policies[p.Key()]; !ok {
				continue
			}
			inc.DeletePolicy(p.Key())
			deleted = append(deleted, p)
			ops = append(ops, "delete "+p.Key())
		}
		where := fmt.Sprintf("step %d (%s)", step, strings.Join(ops, "; "))
		changed, err := inc.Flush()
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		full, err := compiler.Compile(inc.Cluster(), inc.Config())
		if err != nil {
			t.Fatal(err)
		}
		gotFlows := inc.Flows()
		if !slices.EqualFunc(gotFlows, full.Flows, openflow.Flow.Equal) {
			t.Fatalf("%s: incremental has %d flows, full compile %d, and they differ", where, len(gotFlows), len(full.Flows))
		}
		if err := checkConjunctionLimit(gotFlows, inc.Config().MaxConjunctionsPerFlow); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if inc.Len() != len(gotFlows) {
			t.Fatalf("%s: Len() %d, Flows() %d", where, inc.Len(), len(gotFlows))
		}
		got := byKey(gotFlows)
		reported := map[openflow.Key]bool{}
		for _, k := range changed {
			reported[k] = true
		}
		for k, f := range got {
			if g, ok := inc.Flow(k); !ok || !g.Equal(f) {
				t.Fatalf("%s: Flow(%v) = %v, %t; Flows() has %v", where, k, g, ok, f)
			}
			if p, ok := prev[k]; (!ok || !p.Equal(f)) != reported[k] {
				t.Fatalf("%s: flow %v changed: %t, reported: %t", where, f, !ok || !p.Equal(f), reported[k])
			}
		}
		for k, p := range prev {
			if _, ok := got[k]; ok {
				continue
			}
			if !reported[k] {
				t.Fatalf("%s: flow %v removed but not reported", where, p)
			}
			if r, ok := inc.Removed(k); !ok || !r.Equal(p) {
				t.Fatalf("%s: Removed(%v) = %v, %t; the installed flow was %v", where, k, r, ok, p)
			}
		}
		for _, n := range tierCounts(gotFlows) {
			tierSizes[n] = true
		}
		prev = got
	}
	t.Logf("conjunction priorities per policy table seen: %v", tierSizes)
	if len(tierSizes) < 3 {
		t.Errorf("only %v conjunction priorities per table were seen: the limit changes did not move the tiers", tierSizes)
	}
}

// TestFlowSetTierOwnerChangeUnderSameMergedFlow: in a tiered table, a
// change that leaves a key's merged flow as it was (same actions, same
// cookie: that of its lowest conjunction ID) can still change one of its
// tier flows, whose cookie is that of the tier's lowest conjunction ID.
// Commit must install (and report) that tier flow as a FlowSet built from
// scratch has it.
func TestFlowSetTierOwnerChangeUnderSameMergedFlow(t *testing.T) {
	match := openflow.NewMatch(openflow.IP, openflow.HostSrc(netip.MustParseAddr("10.0.0.1")))
	// flow is a fragment's flow for the match holding conjunctions ids
	// (each the first of two dimensions).
	flow := func(cookie openflow.Cookie, ids ...uint32) []openflow.Flow {
		var conjs []openflow.Conjunction
		for _, id := range ids {
			conjs = append(conjs, openflow.Conjunction{ID: id, K: 1, N: 2})
		}
		return []openflow.Flow{{Table: compiler.TableIngress, Priority: compiler.PrioRuleConj, Cookie: cookie, Match: match, Actions: openflow.Conjoin(conjs...)}}
	}
	type frags map[string][]openflow.Flow
	for _, tc := range []struct {
		name          string
		before, after frags
	}{
		{
			// Conjunction 2 (tier 0 of 2) is held by a and b; a drops it.
			name:   "a sharer of the tier's lowest conjunction leaves",
			before: frags{"a": flow(1, 1, 2), "b": flow(5, 2)},
			after:  frags{"a": flow(1, 1), "b": flow(5, 2)},
		},
		{
			// Conjunction 2 moves from a to b in one Commit.
			name:   "the tier's lowest conjunction moves to another fragment",
			before: frags{"a": flow(1, 1, 2), "b": nil},
			after:  frags{"a": flow(1, 1), "b": flow(5, 2)},
		},
		{
			// Conjunction 2 gains a sharer with a lower cookie.
			name:   "a sharer with a lower cookie joins the tier's lowest conjunction",
			before: frags{"a": flow(1, 1), "b": flow(5, 2)},
			after:  frags{"a": flow(1, 1, 2), "b": flow(5, 2)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			build := func(fr frags) *compiler.FlowSet {
				s := compiler.NewFlowSet()
				s.SetConjunctionLimit(1)
				for id, fs := range fr {
					if err := s.SetFragment(id, slices.Clone(fs)); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := s.Commit(); err != nil {
					t.Fatal(err)
				}
				return s
			}
			s := build(tc.before)
			prev := byKey(s.Flows())
			for id, fs := range tc.after {
				if err := s.SetFragment(id, slices.Clone(fs)); err != nil {
					t.Fatal(err)
				}
			}
			changed, err := s.Commit()
			if err != nil {
				t.Fatal(err)
			}
			want := build(tc.after).Flows()
			if got := s.Flows(); !slices.EqualFunc(got, want, openflow.Flow.Equal) {
				t.Fatalf("after the change the FlowSet has\n%sfrom scratch:\n%s", flowLines(got), flowLines(want))
			}
			reported := map[openflow.Key]bool{}
			for _, k := range changed {
				reported[k] = true
			}
			for _, f := range want {
				if p, ok := prev[f.Key()]; (!ok || !p.Equal(f)) && !reported[f.Key()] {
					t.Errorf("flow %v changed (was %v) but was not reported", f, p)
				}
			}
		})
	}
}

// TestMaxConjunctionTiersOnOVS checks the soundness argument of the tiers
// at their extreme on a real ovs-vswitchd: with a limit of one conjunction
// per flow, 1,024 rules sharing one source match (conjunction IDs 1..1024,
// one per tier) spread over MaxConjunctionTiers priorities, so a packet of
// the rule at the lowest tier matches the shared dimension at 1,023 higher
// priorities without completing a conjunction there. OVS must go on to
// that lowest tier (output); a port of no rule and another source must
// reach the drop below every tier.
func TestMaxConjunctionTiersOnOVS(t *testing.T) {
	const rules = compiler.MaxConjunctionTiers
	s := compiler.NewFlowSet()
	s.SetConjunctionLimit(1)
	tbl := compiler.TableIngress
	for id := 1; id <= rules; id++ {
		flows := []openflow.Flow{
			{Table: tbl, Priority: compiler.PrioRuleConj, Cookie: openflow.Cookie(id), Match: openflow.NewMatch(openflow.IP, openflow.HostSrc(netip.MustParseAddr("10.0.0.1"))),
				Actions: openflow.Conjoin([]openflow.Conjunction{{ID: uint32(id), K: 1, N: 2}}...)},
			{Table: tbl, Priority: compiler.PrioRuleConj, Cookie: openflow.Cookie(id), Match: openflow.NewMatch(openflow.TCP, openflow.PortDst(uint16(1000+id))),
				Actions: openflow.Conjoin([]openflow.Conjunction{{ID: uint32(id), K: 2, N: 2}}...)},
			{Table: tbl, Priority: compiler.PrioRuleConj, Cookie: openflow.Cookie(id), Match: openflow.NewMatch(openflow.ConjID(id)), Actions: openflow.Do(openflow.Output(2))},
		}
		if err := s.SetFragment(fmt.Sprint("rule", id), flows); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetFragment("isolation", []openflow.Flow{{Table: tbl, Priority: compiler.PrioIsolation, Cookie: 1, Match: openflow.NewMatch(openflow.IP)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	flows := s.Flows()
	if err := checkConjunctionLimit(flows, 1); err != nil {
		t.Fatal(err)
	}
	prioOf := map[int]uint16{} // rule ID -> priority of its conj_id flow
	var b strings.Builder
	b.WriteString("table=0,priority=0 actions=goto_table:40\n")
	for _, f := range flows {
		if id, ok := f.Match.ConjID(); ok {
			prioOf[int(id)] = f.Priority
		}
		fmt.Fprintf(&b, "%v\n", f)
	}
	if got := len(tierCounts(flows)); got != 1 || tierCounts(flows)[tbl] != compiler.MaxConjunctionTiers {
		t.Fatalf("want %d conjunction priorities in table %d, got %v", compiler.MaxConjunctionTiers, tbl, tierCounts(flows))
	}
	lowest := 0
	for id, p := range prioOf {
		if lowest == 0 || p < prioOf[lowest] {
			lowest = id
		}
	}

	sw := ovstest.Start(t)
	if err := sw.AddBridge("br-int"); err != nil {
		t.Fatal(err)
	}
	for port := 1; port <= 2; port++ {
		if err := sw.AddInternalPort("br-int", fmt.Sprint("p", port), port); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.InstallFlows("br-int", b.String()); err != nil {
		t.Fatalf("OVS refused %d flows over %d tiers: %v", len(flows), compiler.MaxConjunctionTiers, err)
	}
	for _, tc := range []struct {
		name   string
		packet string
		want   int // output port, -1: dropped
	}{
		{fmt.Sprintf("rule %d at the lowest tier (priority %d)", lowest, prioOf[lowest]), fmt.Sprintf("tcp,nw_src=10.0.0.1,nw_dst=10.0.0.9,tcp_dst=%d", 1000+lowest), 2},
		{"rule 1", "tcp,nw_src=10.0.0.1,nw_dst=10.0.0.9,tcp_dst=1001", 2},
		{fmt.Sprintf("rule %d", rules), fmt.Sprintf("tcp,nw_src=10.0.0.1,nw_dst=10.0.0.9,tcp_dst=%d", 1000+rules), 2},
		{"a port of no rule", "tcp,nw_src=10.0.0.1,nw_dst=10.0.0.9,tcp_dst=999", -1},
		{"another source", fmt.Sprintf("tcp,nw_src=10.0.0.2,nw_dst=10.0.0.9,tcp_dst=%d", 1000+lowest), -1},
		{"udp on a rule's port", fmt.Sprintf("udp,nw_src=10.0.0.1,nw_dst=10.0.0.9,udp_dst=%d", 1000+lowest), -1},
	} {
		r, err := sw.Trace("br-int", "in_port=1,"+tc.packet)
		if err != nil {
			t.Fatal(err)
		}
		got := -1
		if len(r.OutputPorts) == 1 {
			got = r.OutputPorts[0]
		}
		if got != tc.want {
			t.Errorf("%s: output %v, want %d (-1: dropped)\n%s", tc.name, r.OutputPorts, tc.want, strings.Join(r.Passes, " | "))
		}
	}
	t.Logf("%d flows over %d conjunction priorities (%d..%d) installed; rule %d completes only at priority %d",
		len(flows), compiler.MaxConjunctionTiers, compiler.PrioRuleConj-compiler.MaxConjunctionTiers+1, compiler.PrioRuleConj, lowest, prioOf[lowest])
}
