package compiler_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/internal/netpoltest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/evaluator"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// fuzzSource turns fuzz bytes into the random stream netpoltest's
// generator draws from: each Uint64 is the next 8 bytes, so the first bytes
// decide the first choices (mode, world, labels...) and a mutation changes
// the scenario locally; once the bytes are used up, a PCG seeded from all
// of them goes on.
type fuzzSource struct {
	data []byte
	rest *rand.PCG
}

func newFuzzSource(data []byte) *fuzzSource {
	h := fnv.New64a()
	h.Write(data)
	return &fuzzSource{data: data, rest: rand.NewPCG(h.Sum64(), uint64(len(data)))}
}

func (s *fuzzSource) Uint64() uint64 {
	if len(s.data) == 0 {
		return s.rest.Uint64()
	}
	var b [8]byte
	n := copy(b[:], s.data)
	s.data = s.data[n:]
	return binary.LittleEndian.Uint64(b[:])
}

// fuzzWorldShapes are the worlds (bridges and ports) a fuzz scenario runs
// in, started once per fuzzing process: one node; two nodes with each
// namespace on one node, dual stack; three nodes round robin.
var fuzzWorldShapes = []struct {
	nodes, layout int
	dual          bool
}{{1, 0, false}, {2, 1, true}, {3, 0, false}}

// fuzzCells is how many random cells each scenario traces.
const fuzzCells = 24

// FuzzCompileVsEvaluator builds a random cluster and policies from the fuzz
// bytes (netpoltest's generator of the property tests, drawing from the
// bytes), compiles every node's flows, installs them in a real Open vSwitch
// and checks that ofproto/trace of new connections agrees with the
// reference evaluator on fuzzCells random cells. There is no in-process
// interpreter of the flows: the trace is the flow-level check.
//
//	go test ./pkg/compiler -run '^$' -fuzz '^FuzzCompileVsEvaluator$' -fuzztime 60s
func FuzzCompileVsEvaluator(f *testing.F) {
	worlds := make([]*netpoltest.World, len(fuzzWorldShapes))
	for i := range fuzzWorldShapes {
		worlds[i] = netpoltest.NewWorld(f, netpoltest.NewFixture(fuzzOptions(model.ModeV1, i)))
	}
	f.Add([]byte{})
	f.Add([]byte("ovs-netpol"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rng := rand.New(newFuzzSource(data))
		mode := model.ModeV1
		if rng.IntN(6) == 0 {
			mode = model.ModeV16
		}
		shape := rng.IntN(len(fuzzWorldShapes))
		fx := netpoltest.NewFixture(fuzzOptions(mode, shape))
		netpoltest.Randomize(rng, fx)
		policies := netpoltest.RandomPolicies(rng, fx, 1+rng.IntN(6))
		for _, p := range policies {
			fx.Cluster.AddPolicy(p)
		}
		w := worlds[shape]
		w.F = fx
		describe := func() string {
			return fmt.Sprintf("input %q, world %+v\n%s--- policies:\n%s", data, fuzzWorldShapes[shape],
				netpoltest.DescribeCluster(fx), netpoltest.PoliciesYAML(policies))
		}
		for _, node := range fx.Nodes {
			nb := w.Nodes[node]
			res, err := compiler.Compile(fx.Cluster, nb.Config)
			if err != nil {
				t.Fatalf("compile for %s: %v\n%s", node, err, describe())
			}
			nb.Result = res
			if err := w.Switch.InstallBundle(nb.Bridge, res.Text(false)); err != nil {
				t.Fatalf("OVS refused the flows of %s: %v\n%s", node, err, describe())
			}
		}
		cells := fuzzSample(rng, fx, policies, fuzzWorldShapes[shape].dual)
		var bad []string
		allowed := 0
		var mu sync.Mutex
		var wg sync.WaitGroup
		work := make(chan fuzzCell)
		for k := 0; k < 4; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for c := range work {
					traced, detail, err := w.Trace(c.src, c.dst, c.probe, c.fam)
					se, de, _ := fx.Endpoints(c.src, c.dst, c.fam)
					v := evaluator.Allowed(fx.Cluster, se, de, c.probe.Protocol, c.probe.Port)
					mu.Lock()
					if v.Allowed {
						allowed++
					}
					mu.Unlock()
					if err != nil || traced != v.Allowed {
						mu.Lock()
						bad = append(bad, fmt.Sprintf("%s -> %s %s IPv%d: traced allowed=%v (err %v), evaluator %s\n    trace: %s",
							c.src, c.dst, c.probe, c.fam, traced, err, v, detail))
						mu.Unlock()
					}
				}
			}()
		}
		for _, c := range cells {
			work <- c
		}
		close(work)
		wg.Wait()
		t.Logf("%s, %d nodes, %d policies: %d cells traced, %d allowed by the evaluator", mode, len(fx.Nodes), len(policies), len(cells), allowed)
		if len(bad) > 0 {
			t.Fatalf("traced flows disagree with the evaluator on %d of %d cells:\n%s\n%s", len(bad), len(cells), strings.Join(bad, "\n"), describe())
		}
	})
}

func fuzzOptions(mode model.Mode, shape int) netpoltest.Options {
	s := fuzzWorldShapes[shape]
	return netpoltest.Options{Mode: mode, Nodes: s.nodes, NodeOf: netpoltest.RandomNodeOf(s.nodes, s.layout), DualStack: s.dual}
}

type fuzzCell struct {
	src, dst string
	probe    netpoltest.Probe
	fam      int
}

// fuzzSample draws usable cells: active pods, an address of the family,
// ports 80 and 81 mostly, the policies' port edges and random low ports.
func fuzzSample(rng *rand.Rand, fx *netpoltest.Fixture, policies []*model.Policy, dual bool) []fuzzCell {
	var edges []int32
	for _, p := range policies {
		for _, d := range []model.Direction{model.Ingress, model.Egress} {
			for _, r := range p.Rules(d) {
				for _, ps := range r.Ports {
					for _, e := range []int32{ps.Port - 1, ps.Port, ps.Port + 1, ps.EndPort, ps.EndPort + 1} {
						if e >= 1 && e <= 65535 {
							edges = append(edges, e)
						}
					}
				}
			}
		}
	}
	sources := fx.Sources()
	var out []fuzzCell
	for tries := 0; len(out) < fuzzCells && tries < 50*fuzzCells; tries++ {
		c := fuzzCell{src: sources[rng.IntN(len(sources))], dst: fx.Order[rng.IntN(len(fx.Order))], fam: 4}
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
		if dual && fx.Pods[c.src] != nil && rng.IntN(2) == 0 {
			c.fam = 6
		}
		if !fx.Pods[c.dst].Active() {
			continue
		}
		if p := fx.Pods[c.src]; p != nil && !p.Active() {
			continue
		}
		if _, _, ok := fx.Endpoints(c.src, c.dst, c.fam); ok {
			out = append(out, c)
		}
	}
	return out
}

// FuzzParseBindings: any --ports file either is refused with an error or
// gives bindings with a port in 1..0xfffffeff (below OpenFlow's reserved
// ports), a 6-byte MAC and a NAMESPACE/NAME key; never a panic; the same
// input gives the same answer.
//
//	go test ./pkg/compiler -run '^$' -fuzz '^FuzzParseBindings$' -fuzztime 30s
func FuzzParseBindings(f *testing.F) {
	f.Add([]byte("default/a 10 0a:58:0a:f4:01:0a\n# comment\n\ndefault/b 11 0a:58:0a:f4:01:0b\n"))
	f.Add([]byte("default/a 0 0a:58:0a:f4:01:0a\n"))
	f.Add([]byte("default/a 4294967295 ff:ff:ff:ff:ff:ff\n"))
	f.Add([]byte("a\nflow add actions=NORMAL 10 0a:58:0a:f4:01:0a\n"))
	f.Add([]byte("default/a 10 0a:58:0a:f4:01:0a\ndefault/a 11 0a:58:0a:f4:01:0b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b1, err1 := compiler.ParseBindings(bytes.NewReader(data), "ports.txt")
		b2, err2 := compiler.ParseBindings(bytes.NewReader(data), "ports.txt")
		if (err1 == nil) != (err2 == nil) || fmt.Sprint(b1) != fmt.Sprint(b2) {
			t.Fatalf("two parses differ: %v %v / %v %v", b1, err1, b2, err2)
		}
		if err1 != nil {
			return
		}
		for key, b := range b1 {
			ns, name, ok := strings.Cut(key, "/")
			if !ok || ns == "" || name == "" || strings.ContainsAny(key, " \t\r\n") {
				t.Errorf("binding key %q is not NAMESPACE/NAME", key)
			}
			if b.OFPort == 0 || b.OFPort > 0xfffffeff {
				t.Errorf("%s: OpenFlow port %d out of range", key, b.OFPort)
			}
			if len(b.MAC) != 6 {
				t.Errorf("%s: MAC %v is not 6 bytes", key, b.MAC)
			}
		}
	})
}
