package bench

import (
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/synth"
)

// synthModel generates scale s and returns its model alone (the API objects
// are dropped so that they do not count in the heap).
func synthModel(b *testing.B, s synth.Scale) *model.Cluster {
	b.Helper()
	m, err := synth.Generate(s, synth.DefaultSeed).Model()
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// benchCompile compiles one node's complete flow set (compiler.Compile: the
// incremental compiler's first Flush over everything) and reports:
// compile-ms (wall clock; compile-cpu-ms is the CPU time of the process
// meanwhile, the garbage collector's included), peak-heap-MB (Go heap during the compile, the model it reads
// included), model-heap-MB (the model alone), flows, groups, cross-flows (the same
// policies without conjunctions), and their ratio (x-fewer); then what
// OpenShift SDN's NetworkPolicy plugin would install for the same objects
// (OpenShiftSDN: its algorithm, rules it cannot express counted as their
// cross product): osdn-flows (our flows with our policy flows replaced by
// its), x-fewer-osdn, osdn-policy-flows (its allow flows and the
// substituted cross products) against policy-flows, x-fewer-osdn-policy,
// osdn-isolation-flows (its drop and priority-50 flows),
// osdn-substituted-flows and osdn-substituted-rules.
func benchCompile(b *testing.B, s synth.Scale) {
	m := synthModel(b, s)
	cfg := NodeConfig(m)
	base := SettledHeap()
	var peak uint64
	var total, cpu time.Duration
	var res *compiler.Result
	for b.Loop() {
		res = nil
		SettledHeap()
		hp := StartHeapPeak()
		c0 := CPUTime()
		t0 := time.Now()
		r, err := compiler.Compile(m, cfg)
		total += time.Since(t0)
		cpu += CPUTime() - c0
		peak = max(peak, hp.Stop())
		if err != nil {
			b.Fatal(err)
		}
		res = r
	}
	fc := CountFlows(res.Flows)
	b.ReportMetric(Ms(total)/float64(b.N), "compile-ms")
	b.ReportMetric(Ms(cpu)/float64(b.N), "compile-cpu-ms")
	b.ReportMetric(MB(peak), "peak-heap-MB")
	b.ReportMetric(MB(base), "model-heap-MB")
	b.ReportMetric(float64(fc.Total), "flows")
	b.ReportMetric(float64(len(res.Groups)), "groups")
	b.ReportMetric(float64(fc.Policy), "policy-flows")
	b.ReportMetric(float64(fc.CrossTotal()), "cross-flows")
	b.ReportMetric(float64(fc.CrossPolicy), "cross-policy-flows")
	b.ReportMetric(float64(fc.CrossTotal())/float64(fc.Total), "x-fewer")
	b.ReportMetric(float64(fc.CrossPolicy)/float64(fc.Policy), "x-fewer-policy")
	o := OpenShiftSDN(m, cfg.Node, res.Flows)
	b.ReportMetric(float64(o.Total(fc)), "osdn-flows")
	b.ReportMetric(float64(o.Total(fc))/float64(fc.Total), "x-fewer-osdn")
	b.ReportMetric(float64(o.Policy()), "osdn-policy-flows")
	b.ReportMetric(float64(o.Policy())/float64(fc.Policy), "x-fewer-osdn-policy")
	b.ReportMetric(float64(o.Drop+o.Default), "osdn-isolation-flows")
	b.ReportMetric(float64(o.Substituted), "osdn-substituted-flows")
	b.ReportMetric(float64(o.SubstitutedRules), "osdn-substituted-rules")
	b.ReportMetric(float64(len(cfg.Bindings)), "local-pods")
}

func BenchmarkCompileS1(b *testing.B) { benchCompile(b, synth.S1) }
func BenchmarkCompileS2(b *testing.B) { benchCompile(b, synth.S2) }

// BenchmarkCompileS1Services is S1 plus 10,000 Services of 3 endpoints.
func BenchmarkCompileS1Services(b *testing.B) { benchCompile(b, synth.S1Services) }

// BenchmarkCompileS1TenNodes is S1 on 10 nodes instead of 100 (1,000 pods
// per node): how the flow count against the cross product depends on how
// many of a rule's targets share a node.
func BenchmarkCompileS1TenNodes(b *testing.B) {
	s := synth.S1
	s.Name, s.Nodes = "S1/10 nodes", 10
	benchCompile(b, s)
}
