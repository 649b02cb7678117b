package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/flowsync"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
	"github.com/ovs-netpol/ovs-netpol/pkg/synth"
)

// benchInstall installs one node's compiled flow set (and, with Services,
// its groups) on an empty bridge of a real ovs-vswitchd, each iteration
// several times and interleaved (so load from other processes hits every
// side alike):
//
//   - raw "ovs-ofctl -O OpenFlow15 bundle BR FILE" of the "ovs-netpol
//     compile" text (groups, then flows: "group add" / "flow add" lines),
//     plain (rawbundle-ms) and with --no-names as flowsync runs it
//     (rawbundle-nonames-ms);
//   - without groups (S1, S2), also raw "ovs-ofctl -O OpenFlow15 --bundle
//     add-flows BR FILE" of the flow text, plain (raw-ms) and with
//     --no-names (raw-nonames-ms): the raw install of the benchmarks before
//     Services, which flowsync used until it switched to "bundle";
//   - the agent's full install, flowsync's Installer.SyncAll (dump flows,
//     dump groups, diff, one "bundle"): sync-ms; and the two dumps alone on
//     the emptied bridge (dump-ms, dumpgroups-ms), which SyncAll runs first;
//   - the installer's bundle alone (Installer.ApplyBundle of every flow and
//     group): apply-ms;
//   - with groups, not atomic, for comparison: raw "bundle" of the groups
//     alone, then raw "--bundle add-flows" of the flows alone, both
//     --no-names (rawsplit-nonames-ms).
//
// Reports medians and the ratios of sync and apply to each raw install,
// and the CPU time of ovs-ofctl itself (parsing the text, encoding the
// messages) in the plain raw "bundle" (rawbundle-ofctl-cpu-ms) and the raw
// "--bundle add-flows" (raw-ofctl-cpu-ms; with groups: of the split's
// flows).
func benchInstall(b *testing.B, s synth.Scale) {
	m := synthModel(b, s)
	res, err := compiler.Compile(m, NodeConfig(m))
	if err != nil {
		b.Fatal(err)
	}
	flows, groups := res.Flows, res.Groups
	sw := ovstest.Start(b)
	if err := sw.AddBridge("br-int"); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	flowFile, bundleFile := filepath.Join(dir, "node.flows"), filepath.Join(dir, "node.bundle")
	if err := os.WriteFile(flowFile, []byte(openflow.Text(flows)), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(bundleFile, []byte(res.Text(false)), 0o644); err != nil {
		b.Fatal(err)
	}
	inst := &flowsync.Installer{Bridge: "br-int", RunDir: sw.Dir}
	ctx := context.Background()
	empty := func() {
		if _, err := sw.Ofctl("-O", "OpenFlow15", "del-flows", "br-int"); err != nil {
			b.Fatal(err)
		}
		if _, err := sw.Ofctl("-O", "OpenFlow15", "del-groups", "br-int"); err != nil {
			b.Fatal(err)
		}
	}
	timed := func(into *[]time.Duration, f func() error) {
		empty()
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		*into = append(*into, time.Since(t0))
	}
	// ofctl runs a raw ovs-ofctl and records its own CPU time (user +
	// system: parsing the file and encoding the messages) in cpu.
	ofctl := func(cpu *[]time.Duration, args ...string) func() error {
		return func() error {
			cmd := exec.Command("ovs-ofctl", append([]string{"--timeout=60", "-O", "OpenFlow15"}, args...)...)
			cmd.Env = append(os.Environ(), "OVS_RUNDIR="+sw.Dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("ovs-ofctl %v: %v: %s", args, err, out)
			}
			*cpu = append(*cpu, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
			return nil
		}
	}
	var groupFile, groupFlowFile string
	if len(groups) > 0 {
		// For the split install below: the groups alone ("group add"
		// lines), then the flows alone as add-flows reads them.
		groupFile, groupFlowFile = filepath.Join(dir, "groups.bundle"), filepath.Join(dir, "flows.flows")
		if err := os.WriteFile(groupFile, []byte((&compiler.Result{Groups: groups}).Text(false)), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(groupFlowFile, []byte(openflow.Text(flows)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	mods, gmods := flowsync.Mods(flows, nil, groups, nil)
	var raw, rawNoNames, rawBundle, rawBundleNoNames, sync, apply, dump, dumpGroups, split []time.Duration
	var rawCPU, rawBundleCPU, discard []time.Duration
	for b.Loop() {
		if len(groups) == 0 {
			timed(&raw, ofctl(&rawCPU, "--bundle", "add-flows", "br-int", flowFile))
			timed(&rawNoNames, ofctl(&discard, "--no-names", "--bundle", "add-flows", "br-int", flowFile))
		} else {
			// Not atomic, for comparison: the groups by "bundle", then
			// the flows by "--bundle add-flows".
			timed(&split, func() error {
				if err := ofctl(&discard, "--no-names", "bundle", "br-int", groupFile)(); err != nil {
					return err
				}
				return ofctl(&rawCPU, "--no-names", "--bundle", "add-flows", "br-int", groupFlowFile)()
			})
		}
		timed(&rawBundle, ofctl(&rawBundleCPU, "bundle", "br-int", bundleFile))
		timed(&rawBundleNoNames, ofctl(&discard, "--no-names", "bundle", "br-int", bundleFile))
		timed(&dump, func() error { _, err := inst.Dump(ctx); return err })
		timed(&dumpGroups, func() error { _, err := inst.DumpGroups(ctx); return err })
		timed(&sync, func() error {
			st, err := inst.SyncAll(ctx, flows, groups)
			if err == nil && (st.Added != len(flows) || st.Groups != len(groups)) {
				b.Fatalf("SyncAll: %v, %d groups, want %d added, %d groups", st, st.Groups, len(flows), len(groups))
			}
			return err
		})
		timed(&apply, func() error { return inst.ApplyBundle(ctx, mods, gmods) })
	}
	if n, err := inst.FlowCount(ctx); err != nil || n != len(flows) {
		b.Fatalf("%d flows installed (%v), want %d", n, err, len(flows))
	}
	if g, err := inst.DumpGroups(ctx); err != nil || len(g) != len(groups) {
		b.Fatalf("%d groups installed (%v), want %d", len(g), err, len(groups))
	}
	med := func(d []time.Duration) time.Duration { return Quantile(d, 0.5) }
	y, a := med(sync), med(apply)
	b.ReportMetric(float64(len(flows)), "flows")
	b.ReportMetric(float64(len(groups)), "groups")
	b.ReportMetric(float64(len(res.Text(false)))/(1<<20), "bundle-MB")
	b.ReportMetric(Ms(y), "sync-ms")
	b.ReportMetric(Ms(a), "apply-ms")
	b.ReportMetric(Ms(med(dump)), "dump-ms")
	b.ReportMetric(Ms(med(dumpGroups)), "dumpgroups-ms")
	rb, rbn := med(rawBundle), med(rawBundleNoNames)
	b.ReportMetric(Ms(rb), "rawbundle-ms")
	b.ReportMetric(Ms(rbn), "rawbundle-nonames-ms")
	b.ReportMetric(float64(y)/float64(rb), "bundle-ratio")
	b.ReportMetric(float64(a)/float64(rb), "bundle-apply-ratio")
	b.ReportMetric(float64(y)/float64(rbn), "bundle-ratio-nonames")
	b.ReportMetric(float64(a)/float64(rbn), "bundle-apply-ratio-nonames")
	b.ReportMetric(Ms(med(rawBundleCPU)), "rawbundle-ofctl-cpu-ms")
	b.ReportMetric(Ms(med(rawCPU)), "raw-ofctl-cpu-ms")
	if len(groups) > 0 {
		b.ReportMetric(Ms(med(split)), "rawsplit-nonames-ms")
	}
	if len(groups) == 0 {
		r, rn := med(raw), med(rawNoNames)
		b.ReportMetric(Ms(r), "raw-ms")
		b.ReportMetric(Ms(rn), "raw-nonames-ms")
		b.ReportMetric(float64(y)/float64(r), "ratio")
		b.ReportMetric(float64(a)/float64(r), "apply-ratio")
		b.ReportMetric(float64(y)/float64(rn), "ratio-nonames")
		b.ReportMetric(float64(a)/float64(rn), "apply-ratio-nonames")
	}
}

func BenchmarkInstallS1(b *testing.B)         { benchInstall(b, synth.S1) }
func BenchmarkInstallS2(b *testing.B)         { benchInstall(b, synth.S2) }
func BenchmarkInstallS1Services(b *testing.B) { benchInstall(b, synth.S1Services) }
