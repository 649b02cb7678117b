package flowsync

import (
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/synth"
)

// BenchmarkBundleFileS1 renders the S1 node's full install into the bundle
// file ovs-ofctl reads (on the install's critical path).
func BenchmarkBundleFileS1(b *testing.B) {
	m, _ := synth.Generate(synth.S1, synth.DefaultSeed).Model()
	cfg := compiler.Config{Node: "node-000"}
	cfg.Bindings = compiler.DefaultBindings(m, "node-000", nil, 9)
	res, err := compiler.Compile(m, cfg)
	if err != nil {
		b.Fatal(err)
	}
	mods, _ := addAll(res.Flows)
	b.Logf("%d mods", len(mods))
	for b.Loop() {
		f, err := bundleFile(bundleText(mods, nil))
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
