package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/flowsync"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
	"github.com/ovs-netpol/ovs-netpol/pkg/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/synth"
)

// benchInstall installs one node's compiled flow set on an empty bridge of
// a real ovs-vswitchd, each iteration twice and interleaved (so load from
// other processes hits both alike): by raw "ovs-ofctl -O OpenFlow15
// --bundle add-flows BR FILE" of the flow text, and by the agent's full
// install, flowsync's Installer.Sync (dump, diff, one bundle); and the
// installer's bundle alone (Installer.Apply of every flow). Reports the
// medians raw-ms, sync-ms, apply-ms and the ratios to raw; also raw with
// --no-names (raw-nonames-ms, ratio-nonames), which flowsync passes.
func benchInstall(b *testing.B, s synth.Scale) {
	m := synthModel(b, s)
	res, err := compiler.Compile(m, NodeConfig(m))
	if err != nil {
		b.Fatal(err)
	}
	flows := res.Flows
	sw := ovstest.Start(b)
	if err := sw.AddBridge("br-int"); err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(b.TempDir(), "node.flows")
	if err := os.WriteFile(file, []byte(openflow.Text(flows)), 0o644); err != nil {
		b.Fatal(err)
	}
	inst := &flowsync.Installer{Bridge: "br-int", RunDir: sw.Dir}
	ctx := context.Background()
	empty := func() {
		if _, err := sw.Ofctl("-O", "OpenFlow15", "del-flows", "br-int"); err != nil {
			b.Fatal(err)
		}
	}
	mods := flowsync.Diff(flows, nil)
	var raw, rawNoNames, sync, apply []time.Duration
	for b.Loop() {
		empty()
		t0 := time.Now()
		if _, err := sw.Ofctl("-O", "OpenFlow15", "--bundle", "add-flows", "br-int", file); err != nil {
			b.Fatal(err)
		}
		raw = append(raw, time.Since(t0))
		empty()
		t0 = time.Now()
		if _, err := sw.Ofctl("-O", "OpenFlow15", "--no-names", "--bundle", "add-flows", "br-int", file); err != nil {
			b.Fatal(err)
		}
		rawNoNames = append(rawNoNames, time.Since(t0))
		empty()
		t0 = time.Now()
		st, err := inst.Sync(ctx, flows)
		if err != nil {
			b.Fatal(err)
		}
		sync = append(sync, time.Since(t0))
		if st.Added != len(flows) {
			b.Fatalf("Sync: %v, want %d added", st, len(flows))
		}
		empty()
		t0 = time.Now()
		if err := inst.Apply(ctx, mods); err != nil {
			b.Fatal(err)
		}
		apply = append(apply, time.Since(t0))
	}
	if n, err := inst.FlowCount(ctx); err != nil || n != len(flows) {
		b.Fatalf("%d flows installed (%v), want %d", n, err, len(flows))
	}
	r, y, a := Quantile(raw, 0.5), Quantile(sync, 0.5), Quantile(apply, 0.5)
	rn := Quantile(rawNoNames, 0.5)
	b.ReportMetric(float64(len(flows)), "flows")
	b.ReportMetric(Ms(r), "raw-ms")
	b.ReportMetric(Ms(rn), "raw-nonames-ms")
	b.ReportMetric(float64(y)/float64(rn), "ratio-nonames")
	b.ReportMetric(Ms(y), "sync-ms")
	b.ReportMetric(Ms(a), "apply-ms")
	b.ReportMetric(float64(y)/float64(r), "ratio")
	b.ReportMetric(float64(a)/float64(r), "apply-ratio")
}

func BenchmarkInstallS1(b *testing.B) { benchInstall(b, synth.S1) }
func BenchmarkInstallS2(b *testing.B) { benchInstall(b, synth.S2) }
