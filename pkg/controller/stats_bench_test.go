package controller

import (
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/synth"
)

// BenchmarkStatsS1 is the agent's work per flow-counter scrape (beyond the
// dump itself) on the S1 node (10k pods, 1k policies): reading the
// attribution tables under the controller's lock, and folding every flow's
// counters into the totals.
func BenchmarkStatsS1(b *testing.B) {
	m, _ := synth.Generate(synth.S1, synth.DefaultSeed).Model()
	cfg := compiler.Config{Node: "node-000"}
	cfg.Bindings = compiler.DefaultBindings(m, "node-000", nil, 9)
	c := New(nil, nil, nil, Options{Compiler: cfg, Mode: model.ModeV1})
	c.inc = compiler.NewIncremental(m, cfg)
	for _, p := range m.Pods {
		c.podUIDs[p.Key()] = p.UID // as applyPod keeps it
	}
	if _, err := c.inc.Flush(); err != nil {
		b.Fatal(err)
	}
	flows := c.inc.Flows()
	counters := make([]FlowCounter, len(flows))
	for i, f := range flows {
		counters[i] = FlowCounter{Table: f.Table, Priority: f.Priority, Cookie: f.Cookie, Match: f.Match.String(), Packets: uint64(i), Bytes: uint64(i) * 100}
	}
	tot := newFlowTotals()
	v := c.statsView()
	tot.add(counters, v)
	b.Logf("%d flows, %d conjunctions, %d rules, %d local pods: %d rule series, %d pod series",
		len(flows), len(v.conj), len(v.ruleSet), len(v.pods), len(tot.rules), len(tot.pods))
	b.Run("view", func(b *testing.B) {
		for b.Loop() {
			c.statsView()
		}
	})
	b.Run("add", func(b *testing.B) {
		for b.Loop() {
			tot.add(counters, v)
		}
	})
}
