package compiler_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/internal/netpoltest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/evaluator"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

var (
	propN      = flag.Int("property.n", 200, "TestPropertyTracedEqualsEvaluator: number of random scenarios")
	propSeed   = flag.Uint64("property.seed", 1, "TestPropertyTracedEqualsEvaluator: seed of the first scenario (scenario i uses seed+i); with -property.n=1 it replays one seed, full matrix included")
	propCells  = flag.Int("property.cells", 150, "TestPropertyTracedEqualsEvaluator: random cells checked per scenario")
	propFull   = flag.Int("property.full-every", 10, "TestPropertyTracedEqualsEvaluator: check the full matrix of every Nth scenario (the first one included)")
	propShrink = flag.Int("property.shrink", 3, "TestPropertyTracedEqualsEvaluator: how many disagreeing scenarios to shrink to a minimal repro and report in full")
)

// propWorkers trace in parallel (each trace is an ovs-appctl run).
const propWorkers = 4

// TestPropertyTracedEqualsEvaluator compiles random policies over random
// variations of the x/y/z fixture, installs them in a real OVS and checks
// that tracing a new connection through the bridges gives the reference
// evaluator's verdict, for a random sample of cells per scenario and the full
// matrix of every -property.full-every-th one. A disagreement is shrunk to a
// minimal scenario and reported with its seed, cluster, policies (YAML), the
// cell, the evaluator's reason and the trace.
//
// Replay one scenario: go test ./pkg/compiler -run TestPropertyTracedEqualsEvaluator -property.seed=S -property.n=1 -v
func TestPropertyTracedEqualsEvaluator(t *testing.T) {
	propertyTracedEqualsEvaluator(t, *propN, 0)
}

// TestPropertyTieredConjunctions is the same with at most one conjunction
// per flow, so that most shared matches are split over conjunction tiers
// (tiers.go): a packet must find its rule at whichever tier it sits.
func TestPropertyTieredConjunctions(t *testing.T) {
	propertyTracedEqualsEvaluator(t, max(*propN/5, 1), 1)
}

func propertyTracedEqualsEvaluator(t *testing.T, n, conjLimit int) {
	start := time.Now()
	worlds := map[worldKey]*netpoltest.World{}
	st := propStats{modes: map[bool]int{}, kinds: map[string]int{}}
	failed := 0
	tiered := 0
	for i := 0; i < n; i++ {
		seed := *propSeed + uint64(i)
		s, rng := newScenario(seed)
		s.conjLimit = conjLimit
		st.scenarios++
		st.modes[s.f.Cluster.Mode == model.ModeV16]++
		w := worlds[s.key]
		if w == nil {
			t0 := time.Now()
			w = netpoltest.NewWorld(t, netpoltest.NewFixture(s.opts))
			worlds[s.key] = w
			st.worldTime += time.Since(t0)
		}
		t0 := time.Now()
		if err := s.install(w); err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, s.describe())
		}
		st.installTime += time.Since(t0)
		for _, nb := range w.Nodes {
			if hasTiers(nb.Result.Flows) {
				tiered++
				break
			}
		}
		var cells []propCell
		if *propFull > 0 && i%*propFull == 0 {
			cells = s.fullMatrix()
			st.fullScenarios++
		} else {
			cells = s.sample(rng, *propCells)
		}
		t0 = time.Now()
		results := check(w, s, cells)
		st.checkTime += time.Since(t0)
		var bad []propResult
		for _, r := range results {
			st.cells++
			if r.verdict.Allowed {
				st.allowed++
			}
			if r.mismatch() {
				bad = append(bad, r)
				st.count(r)
			}
		}
		if len(bad) == 0 {
			continue
		}
		failed++
		st.failedSeeds = append(st.failedSeeds, seed)
		if failed <= *propShrink {
			t.Errorf("%s", s.report(bad))
			t.Errorf("%s", shrink(w, s, bad[0].cell))
		} else if failed <= *propShrink+20 {
			t.Errorf("seed %d: %d of %d cells disagree, first: %s", seed, len(bad), len(results), bad[0])
		}
	}
	t.Logf("%d scenarios (%d v1, %d v1.6; %d with the full matrix), %d cells compared (%d allowed, %d denied by the evaluator), in %v (%d worlds started in %v, installs %v, traces %v)",
		st.scenarios, st.modes[false], st.modes[true], st.fullScenarios, st.cells, st.allowed, st.cells-st.allowed, time.Since(start).Round(time.Millisecond),
		len(worlds), st.worldTime.Round(time.Millisecond), st.installTime.Round(time.Millisecond), st.checkTime.Round(time.Millisecond))
	if conjLimit > 0 {
		t.Logf("at most %d conjunctions per flow: %d of %d scenarios had conjunction tiers", conjLimit, tiered, st.scenarios)
		if tiered == 0 {
			t.Errorf("no scenario had conjunction tiers: the tiers were not exercised")
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d scenarios disagree (seeds %v); %d cells: %s", failed, st.scenarios, st.failedSeeds, st.mismatches, st.kindsString())
	}
}

type propStats struct {
	scenarios, fullScenarios, cells, allowed, mismatches int
	worldTime, installTime, checkTime                    time.Duration
	modes                                                map[bool]int
	kinds                                                map[string]int
	failedSeeds                                          []uint64
}

func (s *propStats) count(r propResult) {
	s.mismatches++
	s.kinds[r.kind()]++
}

func (s *propStats) kindsString() string {
	var out []string
	for k, n := range s.kinds {
		out = append(out, fmt.Sprintf("%d× %s", n, k))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// worldKey is what a World's bridges and ports depend on: the node count,
// the pod placement and whether pods have IPv6 addresses.
type worldKey struct {
	nodes, layout int
	dual          bool
}

// scenario is one random cluster and policy set.
type scenario struct {
	seed      uint64
	conjLimit int // Config.MaxConjunctionsPerFlow (0: the default)
	key       worldKey
	opts      netpoltest.Options
	f         *netpoltest.Fixture
	policies  []*model.Policy
}

func newScenario(seed uint64) (*scenario, *rand.Rand) {
	rng := rand.New(rand.NewPCG(seed, 0x6f76732d6e6574))
	s := &scenario{seed: seed}
	mode := model.ModeV1
	if rng.IntN(6) == 0 {
		mode = model.ModeV16
	}
	s.key.nodes = 1 + rng.IntN(3)
	if s.key.nodes > 1 {
		s.key.layout = rng.IntN(3)
	}
	s.key.dual = rng.IntN(4) == 0
	s.opts = netpoltest.Options{Mode: mode, Nodes: s.key.nodes, NodeOf: netpoltest.RandomNodeOf(s.key.nodes, s.key.layout), DualStack: s.key.dual}
	s.f = netpoltest.NewFixture(s.opts)
	netpoltest.Randomize(rng, s.f)
	s.policies = netpoltest.RandomPolicies(rng, s.f, 1+rng.IntN(6))
	s.sync()
	return s, rng
}

// sync makes the cluster's policies the scenario's.
func (s *scenario) sync() {
	s.f.Cluster.Policies = map[string]*model.Policy{}
	for _, p := range s.policies {
		s.f.Cluster.AddPolicy(p)
	}
}

// install compiles every node's flows and replaces the bridges' tables,
// nodes in parallel. The World was built for a fixture with the same
// options, so its bridges, ports and bindings fit s.f (Randomize keeps pod
// names, nodes and addresses); inactive pods keep their ports but get no
// flows.
func (s *scenario) install(w *netpoltest.World) error {
	w.F = s.f
	var wg sync.WaitGroup
	errs := make([]error, len(s.f.Nodes))
	for i, node := range s.f.Nodes {
		nb := w.Nodes[node]
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := nb.Config
			cfg.MaxConjunctionsPerFlow = s.conjLimit
			res, err := compiler.Compile(s.f.Cluster, cfg)
			if err != nil {
				errs[i] = fmt.Errorf("compile for %s: %w", node, err)
				return
			}
			nb.Result = res
			if err := w.Switch.InstallBundle(nb.Bridge, res.Text(false)); err != nil {
				errs[i] = fmt.Errorf("install flows on %s: %w", nb.Bridge, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *scenario) describe() string {
	layout := map[int]string{0: "round robin", 1: "by namespace", 2: "by pod name"}[s.key.layout]
	return fmt.Sprintf("seed %d: %d node(s) (%s), dual stack %v\n%s--- policies:\n%s",
		s.seed, s.key.nodes, layout, s.key.dual, netpoltest.DescribeCluster(s.f), netpoltest.PoliciesYAML(s.policies))
}

// propCell is one new connection to check.
type propCell struct {
	src, dst string
	probe    netpoltest.Probe
	fam      int
}

func (c propCell) String() string {
	return fmt.Sprintf("%s -> %s %s IPv%d", c.src, c.dst, c.probe, c.fam)
}

// usable reports whether the cell is meaningful: inactive pods (finished or
// host-network) own no pod address, so they neither send nor receive on it.
func (s *scenario) usable(c propCell) bool {
	if !s.f.Pods[c.dst].Active() {
		return false
	}
	if p := s.f.Pods[c.src]; p != nil && !p.Active() {
		return false
	}
	_, _, ok := s.f.Endpoints(c.src, c.dst, c.fam)
	return ok
}

// interestingPorts are the edges of the scenario's numeric ports and ranges
// and the numbers its pods' named ports resolve to.
func (s *scenario) interestingPorts() []int32 {
	seen := map[int32]bool{}
	add := func(p int32) {
		if p >= 1 && p <= 65535 {
			seen[p] = true
		}
	}
	for _, p := range s.policies {
		for _, d := range []model.Direction{model.Ingress, model.Egress} {
			for _, r := range p.Rules(d) {
				for _, ps := range r.Ports {
					if ps.Port != 0 {
						add(ps.Port - 1)
						add(ps.Port)
						add(ps.Port + 1)
					}
					if ps.EndPort != 0 {
						add(ps.EndPort - 1)
						add(ps.EndPort)
						add(ps.EndPort + 1)
					}
				}
			}
		}
	}
	for _, pod := range s.f.Pods {
		for _, cp := range pod.Ports {
			add(cp.Port)
		}
	}
	out := make([]int32, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// sample draws n usable random cells.
func (s *scenario) sample(rng *rand.Rand, n int) []propCell {
	sources := s.f.Sources()
	edges := s.interestingPorts()
	var out []propCell
	for tries := 0; len(out) < n && tries < 50*n; tries++ {
		c := propCell{src: sources[rng.IntN(len(sources))], dst: s.f.Order[rng.IntN(len(s.f.Order))], fam: 4}
		c.probe.Protocol = model.Protocols[rng.IntN(len(model.Protocols))]
		switch r := rng.IntN(10); {
		case r < 4:
			c.probe.Port = 80
		case r < 7:
			c.probe.Port = 81
		case r < 9 || len(edges) == 0:
			c.probe.Port = int32(1 + rng.IntN(100))
		default:
			c.probe.Port = edges[rng.IntN(len(edges))]
		}
		if s.key.dual && s.f.Pods[c.src] != nil && rng.IntN(2) == 0 {
			c.fam = 6
		}
		if s.usable(c) {
			out = append(out, c)
		}
	}
	return out
}

// fullMatrix is every source × destination × standard probe in every
// family (sampled cells cover the other ports).
func (s *scenario) fullMatrix() []propCell {
	probes := netpoltest.StandardProbes
	fams := []int{4}
	if s.key.dual {
		fams = append(fams, 6)
	}
	var out []propCell
	for _, fam := range fams {
		for _, p := range probes {
			for _, src := range s.f.Sources() {
				for _, dst := range s.f.Order {
					c := propCell{src: src, dst: dst, probe: p, fam: fam}
					if s.usable(c) {
						out = append(out, c)
					}
				}
			}
		}
	}
	return out
}

// propResult is one cell's traced and evaluated outcome.
type propResult struct {
	cell    propCell
	traced  bool
	detail  string
	err     error
	verdict evaluator.Verdict
}

func (r propResult) mismatch() bool { return r.err != nil || r.traced != r.verdict.Allowed }

func (r propResult) kind() string {
	if r.err != nil {
		return "trace error"
	}
	src := "pod"
	if r.cell.src == netpoltest.SourceNode || r.cell.src == netpoltest.SourceExternal {
		src = r.cell.src
	}
	return fmt.Sprintf("traced %s/evaluator %s (%s source, IPv%d)", word(r.traced), word(r.verdict.Allowed), src, r.cell.fam)
}

func word(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}

func (r propResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: traced %s, evaluator %s", r.cell, word(r.traced), r.verdict)
	if r.detail != "" {
		fmt.Fprintf(&b, "\n    trace: %s", r.detail)
	}
	if r.err != nil {
		fmt.Fprintf(&b, "\n    trace error: %v", r.err)
	}
	return b.String()
}

// check traces and evaluates cells in parallel.
func check(w *netpoltest.World, s *scenario, cells []propCell) []propResult {
	out := make([]propResult, len(cells))
	idx := make(chan int)
	var wg sync.WaitGroup
	for k := 0; k < propWorkers; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				out[i] = checkOne(w, s, cells[i])
			}
		}()
	}
	for i := range cells {
		idx <- i
	}
	close(idx)
	wg.Wait()
	return out
}

func checkOne(w *netpoltest.World, s *scenario, c propCell) propResult {
	r := propResult{cell: c}
	r.traced, r.detail, r.err = w.Trace(c.src, c.dst, c.probe, c.fam)
	se, de, _ := s.f.Endpoints(c.src, c.dst, c.fam)
	r.verdict = evaluator.Allowed(s.f.Cluster, se, de, c.probe.Protocol, c.probe.Port)
	return r
}

func (s *scenario) report(bad []propResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "traced flows disagree with the evaluator on %d cells of %s", len(bad), s.describe())
	for i, r := range bad {
		if i == 5 {
			fmt.Fprintf(&b, "... and %d more\n", len(bad)-5)
			break
		}
		fmt.Fprintf(&b, "  %s\n", r)
	}
	return b.String()
}

// clone deep-copies the mutable parts of a scenario: a fresh fixture with the
// same options gets the cluster's labels, ports, phases and annotations, and
// the policies are copied down to their rules (selectors are immutable).
func (s *scenario) clone() *scenario {
	c := &scenario{seed: s.seed, conjLimit: s.conjLimit, key: s.key, opts: s.opts, f: netpoltest.NewFixture(s.opts)}
	for name, ns := range s.f.Cluster.Namespaces {
		n := c.f.Cluster.Namespaces[name]
		n.Labels = labels.Merge(nil, ns.Labels)
		n.LegacyIsolation = ns.LegacyIsolation
	}
	for key, pod := range s.f.Pods {
		p := c.f.Pods[key]
		p.Labels = labels.Merge(nil, pod.Labels)
		p.Ports = append([]model.ContainerPort(nil), pod.Ports...)
		p.Phase, p.HostNetwork = pod.Phase, pod.HostNetwork
	}
	for _, p := range s.policies {
		q := *p
		q.Ingress = cloneRules(p.Ingress)
		q.Egress = cloneRules(p.Egress)
		c.policies = append(c.policies, &q)
	}
	c.sync()
	return c
}

func cloneRules(rules []model.Rule) []model.Rule {
	if rules == nil {
		return nil
	}
	out := make([]model.Rule, len(rules))
	for i, r := range rules {
		out[i].Ports = append([]model.PortSpec(nil), r.Ports...)
		if r.Peers != nil {
			out[i].Peers = make([]model.Peer, len(r.Peers))
			for j, p := range r.Peers {
				out[i].Peers[j] = p
				if p.IPBlock != nil {
					b := *p.IPBlock
					b.Except = append([]netip.Prefix(nil), p.IPBlock.Except...)
					out[i].Peers[j].IPBlock = &b
				}
			}
		}
	}
	return out
}

// shrink simplifies a scenario step by step (fewer policies, rules, peers,
// ports, excepts, selector requirements; fixture defaults restored on pods
// and namespaces) as long as the same cell still disagrees, and reports the
// smallest scenario found with the raw trace of the cell.
func shrink(w *netpoltest.World, s *scenario, cell propCell) string {
	cur := s.clone()
	attempts, accepted := 0, 0
	var last propResult
	still := func(c *scenario) (propResult, bool) {
		attempts++
		if err := c.install(w); err != nil {
			return propResult{}, false
		}
		if !c.usable(cell) {
			return propResult{}, false
		}
		r := checkOne(w, c, cell)
		return r, r.mismatch()
	}
	last, ok := still(cur)
	if !ok {
		return fmt.Sprintf("seed %d: %s does not disagree again after reinstalling (flaky?)", s.seed, cell)
	}
	for progress := true; progress && attempts < 2000; {
		progress = false
		for _, step := range shrinkSteps(cur) {
			next := cur.clone()
			step(next)
			next.sync()
			if r, ok := still(next); ok {
				cur, last = next, r
				accepted++
				progress = true
				break
			}
		}
	}
	raw := rawTrace(w, cur, cell)
	// Leave the World as the scenario had it.
	_ = s.install(w)
	return fmt.Sprintf("MINIMAL REPRO (%d simplifications accepted in %d attempts) of %s\n%s  %s\n  raw traces:\n%s",
		accepted, attempts, cell, cur.describe(), last, indent(raw, "    "))
}

// shrinkSteps lists every one-step simplification of s, each as a mutation
// to apply to a clone.
func shrinkSteps(s *scenario) []func(*scenario) {
	var steps []func(*scenario)
	// Whole policies first, then rules, then their parts.
	for i := range s.policies {
		steps = append(steps, func(c *scenario) { c.policies = append(c.policies[:i:i], c.policies[i+1:]...) })
	}
	for i, p := range s.policies {
		for _, d := range []model.Direction{model.Ingress, model.Egress} {
			rules := p.Rules(d)
			for j := range rules {
				steps = append(steps, func(c *scenario) {
					q := c.policies[i]
					if d == model.Ingress {
						q.Ingress = append(q.Ingress[:j:j], q.Ingress[j+1:]...)
					} else {
						q.Egress = append(q.Egress[:j:j], q.Egress[j+1:]...)
					}
				})
			}
			if p.Affects(d) && len(rules) > 0 {
				// A direction that does not matter: drop it with its rules.
				steps = append(steps, func(c *scenario) {
					q := c.policies[i]
					if d == model.Ingress {
						q.AffectsIngress, q.Ingress = false, nil
					} else {
						q.AffectsEgress, q.Egress = false, nil
					}
				})
			}
			if !p.Affects(d) && len(rules) > 0 {
				steps = append(steps, func(c *scenario) {
					if d == model.Ingress {
						c.policies[i].Ingress = nil
					} else {
						c.policies[i].Egress = nil
					}
				})
			}
			for j, r := range rules {
				rule := func(c *scenario) *model.Rule { return &c.policies[i].Rules(d)[j] }
				for k := range r.Peers {
					steps = append(steps, func(c *scenario) {
						rr := rule(c)
						rr.Peers = append(rr.Peers[:k:k], rr.Peers[k+1:]...)
					})
				}
				for k := range r.Ports {
					steps = append(steps, func(c *scenario) {
						rr := rule(c)
						rr.Ports = append(rr.Ports[:k:k], rr.Ports[k+1:]...)
					})
				}
				for k, peer := range r.Peers {
					if peer.IPBlock != nil {
						for e := range peer.IPBlock.Except {
							steps = append(steps, func(c *scenario) {
								b := rule(c).Peers[k].IPBlock
								b.Except = append(b.Except[:e:e], b.Except[e+1:]...)
							})
						}
						continue
					}
					if peer.PodSelector != nil && peer.NamespaceSelector != nil {
						steps = append(steps,
							func(c *scenario) { rule(c).Peers[k].PodSelector = nil },
							func(c *scenario) { rule(c).Peers[k].NamespaceSelector = nil })
					}
					for _, simpler := range simplerSelectors(peer.PodSelector) {
						steps = append(steps, func(c *scenario) { rule(c).Peers[k].PodSelector = simpler })
					}
					for _, simpler := range simplerSelectors(peer.NamespaceSelector) {
						steps = append(steps, func(c *scenario) { rule(c).Peers[k].NamespaceSelector = simpler })
					}
				}
				for k, ps := range r.Ports {
					if ps.EndPort != 0 || ps.Name != "" {
						continue
					}
					if ps.Protocol != model.TCP {
						steps = append(steps, func(c *scenario) { rule(c).Ports[k].Protocol = model.TCP })
					}
				}
			}
		}
		for _, simpler := range simplerSelectors(p.PodSelector) {
			steps = append(steps, func(c *scenario) { c.policies[i].PodSelector = simpler })
		}
	}
	// The cluster back to the fixture's defaults, piece by piece.
	base := netpoltest.NewFixture(s.opts)
	for _, name := range netpoltest.NamespaceNames {
		ns, b := s.f.Cluster.Namespaces[name], base.Cluster.Namespaces[name]
		for k := range ns.Labels {
			if _, ok := b.Labels[k]; !ok {
				steps = append(steps, func(c *scenario) { delete(c.f.Cluster.Namespaces[name].Labels, k) })
			}
		}
		if ns.LegacyIsolation == model.LegacyMalformed {
			steps = append(steps, func(c *scenario) { c.f.Cluster.Namespaces[name].LegacyIsolation = model.LegacyDefaultDeny })
		}
		if ns.LegacyIsolation != model.LegacyNone {
			steps = append(steps, func(c *scenario) { c.f.Cluster.Namespaces[name].LegacyIsolation = model.LegacyNone })
		}
	}
	for _, key := range s.f.Order {
		pod, b := s.f.Pods[key], base.Pods[key]
		for k := range pod.Labels {
			if _, ok := b.Labels[k]; !ok {
				steps = append(steps, func(c *scenario) { delete(c.f.Pods[key].Labels, k) })
			}
		}
		if !equalPorts(pod.Ports, b.Ports) {
			steps = append(steps, func(c *scenario) { c.f.Pods[key].Ports = append([]model.ContainerPort(nil), b.Ports...) })
		}
		if pod.Phase != b.Phase || pod.HostNetwork != b.HostNetwork {
			steps = append(steps, func(c *scenario) { c.f.Pods[key].Phase, c.f.Pods[key].HostNetwork = b.Phase, b.HostNetwork })
		}
	}
	return steps
}

// simplerSelectors are sel without one of its requirements each (nil for a
// nil or empty selector).
func simplerSelectors(sel labels.Selector) []labels.Selector {
	if sel == nil || sel.Empty() {
		return nil
	}
	reqs, _ := sel.Requirements()
	var out []labels.Selector
	for i := range reqs {
		s := labels.NewSelector()
		for j, r := range reqs {
			if j != i {
				s = s.Add(r)
			}
		}
		if s.Empty() {
			s = labels.Everything()
		}
		out = append(out, s)
	}
	return out
}

func equalPorts(a, b []model.ContainerPort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// rawTrace re-runs the cell's trace leg by leg (the source pod's bridge,
// then the destination's when they differ) and returns ofproto/trace's
// output, for the report.
func rawTrace(w *netpoltest.World, s *scenario, c propCell) string {
	if err := s.install(w); err != nil {
		return err.Error()
	}
	se, de, ok := s.f.Endpoints(c.src, c.dst, c.fam)
	if !ok {
		return "no addresses"
	}
	dnb := w.Nodes[de.Pod.Node]
	dmac := dnb.Config.Bindings[c.dst].MAC.String()
	type leg struct{ bridge, inPort, dlSrc string }
	var legs []leg
	switch {
	case c.src == netpoltest.SourceExternal:
		legs = []leg{{dnb.Bridge, fmt.Sprint(netpoltest.UplinkPort), "02:00:00:00:00:ee"}}
	case se.Pod == nil || c.src == c.dst:
		legs = []leg{{dnb.Bridge, "LOCAL", "02:00:00:00:00:fe"}}
	default:
		snb := w.Nodes[se.Pod.Node]
		sb := snb.Config.Bindings[c.src]
		legs = []leg{{snb.Bridge, compiler.PortName(sb.OFPort), sb.MAC.String()}}
		if snb != dnb {
			legs = append(legs, leg{dnb.Bridge, fmt.Sprint(netpoltest.UplinkPort), sb.MAC.String()})
		}
	}
	proto := strings.ToLower(string(c.probe.Protocol))
	l3 := proto
	ipf := fmt.Sprintf("nw_src=%s,nw_dst=%s", se.IP, de.IP)
	if c.fam == 6 {
		l3 += "6"
		ipf = fmt.Sprintf("ipv6_src=%s,ipv6_dst=%s", se.IP, de.IP)
	}
	var b strings.Builder
	for _, l := range legs {
		flow := fmt.Sprintf("in_port=%s,%s,%s_src=40000,%s_dst=%d,dl_src=%s,dl_dst=%s,%s", l.inPort, l3, proto, proto, c.probe.Port, l.dlSrc, dmac, ipf)
		res, err := w.Switch.Trace(l.bridge, flow, "trk,new")
		if err != nil {
			fmt.Fprintf(&b, "%v\n", err)
			continue
		}
		fmt.Fprintf(&b, "ofproto/trace %s %s\n%s\n", l.bridge, flow, res.Raw)
	}
	return b.String()
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}

// hasTiers reports whether flows use a conjunction tier below the first.
func hasTiers(flows []openflow.Flow) bool {
	for _, f := range flows {
		if (f.Table == compiler.TableEgress || f.Table == compiler.TableIngress) &&
			f.Priority < compiler.PrioRuleConj && f.Priority > compiler.PrioRuleConj-compiler.MaxConjunctionTiers {
			return true
		}
	}
	return false
}
