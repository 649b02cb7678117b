package flowsync

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/internal/netpoltest"
	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
	"github.com/ovs-netpol/ovs-netpol/pkg/synth"
)

// This file's tests install the compiler's real output.

func sel(t testing.TB, s string) labels.Selector {
	t.Helper()
	l, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// modelPolicies are policies over the netpoltest fixture that together use
// every kind of flow the compiler emits: peers by pod and namespace
// selector, numeric ports, endPort ranges, named ports (ingress and egress),
// protocol-only ports, ipBlocks with except (IPv4 and IPv6), allow-all rules
// `{}`, deny-all policies.
func modelPolicies(t testing.TB) []*model.Policy {
	block := func(cidr string, except ...string) *model.IPBlock {
		b := &model.IPBlock{CIDR: netip.MustParsePrefix(cidr)}
		for _, e := range except {
			b.Except = append(b.Except, netip.MustParsePrefix(e))
		}
		return b
	}
	return []*model.Policy{
		{Namespace: "x", Name: "web", PodSelector: sel(t, "pod in (a,c)"), AffectsIngress: true,
			Ingress: []model.Rule{
				{Peers: []model.Peer{{PodSelector: sel(t, "pod=b")}, {NamespaceSelector: sel(t, "ns=y")}},
					Ports: []model.PortSpec{
						{Protocol: model.TCP, Port: 80}, {Protocol: model.UDP, Port: 53},
						{Protocol: model.TCP, Port: 8000, EndPort: 8080}, {Protocol: model.SCTP, Port: 1, EndPort: 65535},
						{Protocol: model.TCP, Name: "serve-80-tcp"}, {Protocol: model.SCTP, Name: "serve-81-sctp"},
					}},
				{Peers: []model.Peer{{NamespaceSelector: sel(t, "ns=z"), PodSelector: sel(t, "pod=a")}},
					Ports: []model.PortSpec{{Protocol: model.UDP}}},
				{Peers: []model.Peer{{IPBlock: block("192.0.2.0/24", "192.0.2.10/32")}}},
			}},
		{Namespace: "y", Name: "egress", PodSelector: labels.Everything(), AffectsEgress: true,
			Egress: []model.Rule{
				{Peers: []model.Peer{{IPBlock: block("10.0.0.0/8", "10.1.2.0/24", "10.1.1.1/32")},
					{IPBlock: block("fd00:10:1::/64", "fd00:10:1::2:0/112")}},
					Ports: []model.PortSpec{{Protocol: model.TCP, Port: 443}, {Protocol: model.UDP, Port: 1000, EndPort: 2000}}},
				{Peers: []model.Peer{{NamespaceSelector: sel(t, "ns=z"), PodSelector: sel(t, "pod=c")}},
					Ports: []model.PortSpec{{Protocol: model.UDP, Name: "serve-80-udp"}, {Protocol: model.TCP, Name: "serve-81-tcp"}}},
				{Ports: []model.PortSpec{{Protocol: model.UDP, Port: 53}}},
			}},
		{Namespace: "z", Name: "allow-all", PodSelector: sel(t, "pod=c"), AffectsIngress: true, AffectsEgress: true,
			Ingress: []model.Rule{{}}, Egress: []model.Rule{{}}},
		{Namespace: "z", Name: "deny-all", PodSelector: sel(t, "pod=a"), AffectsIngress: true, AffectsEgress: true},
		{Namespace: "x", Name: "from-anywhere", PodSelector: sel(t, "pod=b"), AffectsIngress: true,
			Ingress: []model.Rule{{Peers: []model.Peer{{IPBlock: block("0.0.0.0/0", "10.0.0.0/9")}, {IPBlock: block("::/0")}}}}},
	}
}

// compiledSets compiles the model policies for both nodes of a dual-stack
// two-node fixture under two configurations (uplink and node IPs; a
// numbered gateway port without node IPs).
func compiledSets(t testing.TB) map[string][]openflow.Flow {
	out := map[string][]openflow.Flow{}
	for node, res := range compiledResults(t, false) {
		out[node] = res.Flows
	}
	return out
}

// compiledResults is compiledSets with, if services, the fixture's sample
// Services (netpoltest.SampleServices): flows and groups.
func compiledResults(t testing.TB, services bool) map[string]*compiler.Result {
	f := netpoltest.NewFixture(netpoltest.Options{Nodes: 2, DualStack: true})
	for _, p := range modelPolicies(t) {
		f.Cluster.AddPolicy(p)
	}
	if services {
		netpoltest.SampleServices(f)
	}
	out := map[string]*compiler.Result{}
	for _, c := range []struct {
		name string
		cfg  compiler.Config
	}{
		{"node-1", compiler.Config{Node: "node-1", UplinkPort: 9,
			NodeIPs: []netip.Addr{netpoltest.NodeIP(1), netip.MustParseAddr("fd00:172:18::1")}}},
		{"node-2", compiler.Config{Node: "node-2", GatewayPort: 3, CTZone: 7}},
	} {
		c.cfg.Bindings = compiler.DefaultBindings(f.Cluster, c.cfg.Node, nil, 9, 3)
		res, err := compiler.Compile(f.Cluster, c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		out[c.name] = res
	}
	return out
}

// exampleCompile compiles example manifests for node-1 as
// "ovs-netpol compile" does for the golden files (flows/golden, see
// cmd/ovs-netpol's TestSeedGolden and TestOverlayGolden): the gateway on
// LOCAL, conntrack zone 64000, the Node's InternalIPs, the seed's ports.
func exampleCompile(t *testing.T, isolation, ports, tunnelPort string, files ...string) *compiler.Result {
	t.Helper()
	mode, err := model.ParseMode(isolation)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifest.Load(files)
	if err != nil {
		t.Fatal(err)
	}
	cluster, _, err := objs.Cluster(mode)
	if err != nil {
		t.Fatal(err)
	}
	nf := compiler.NodeFlags{Node: "node-1", CTZone: 64000, GatewayPort: "LOCAL", TunnelPort: tunnelPort}
	if n := cluster.Nodes["node-1"]; tunnelPort != "" && n != nil {
		nf.GatewayMAC = model.GatewayMAC(n).String()
	}
	cfg, err := nf.Config()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range objs.Nodes {
		if n.Name == "node-1" {
			ips, err := normalize.NodeInternalIPs(n)
			if err != nil {
				t.Fatal(err)
			}
			cfg.NodeIPs = append(cfg.NodeIPs, ips...)
		}
	}
	explicit := map[string]compiler.Binding{}
	if ports != "" {
		fh, err := os.Open(ports)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		if explicit, err = compiler.ParseBindings(fh, ports); err != nil {
			t.Fatal(err)
		}
	}
	reserved := []uint32{cfg.GatewayPort}
	if cfg.Overlay.TunnelPort != 0 {
		reserved = append(reserved, cfg.Overlay.TunnelPort)
	}
	cfg.Bindings = compiler.DefaultBindings(cluster, "node-1", explicit, reserved...)
	res, err := compiler.Compile(cluster, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// auditResult compiles a random dual-stack cluster whose namespaces audit
// denials and allows (controller(userdata,meter_id) packet-ins), with the
// largest notes: a namespace name of 63 characters, policies of 253.
func auditResult(t *testing.T) (*compiler.Result, []Meter) {
	rng := rand.New(rand.NewPCG(4, 12))
	f := netpoltest.NewFixture(netpoltest.Options{DualStack: true})
	netpoltest.Randomize(rng, f)
	for _, p := range netpoltest.RandomPolicies(rng, f, 8) {
		f.Cluster.AddPolicy(p)
	}
	long := strings.Repeat("n", 63)
	f.Cluster.AddNamespace(&model.Namespace{Name: long, Labels: map[string]string{"kubernetes.io/metadata.name": long}})
	f.Cluster.AddPod(&model.Pod{UID: "long-pod", Namespace: long, Name: "p", Node: "node-1",
		IPs: []netip.Addr{netip.MustParseAddr("10.89.200.2"), netip.MustParseAddr("fd00:89::200:2")}})
	for i := range 20 {
		f.Cluster.AddPolicy(&model.Policy{Namespace: long, Name: fmt.Sprintf("%02d", i) + strings.Repeat("p", 251),
			PodSelector: labels.Everything(), AffectsIngress: true, AffectsEgress: true})
	}
	for _, ns := range f.Cluster.Namespaces {
		ns.Audit = model.AuditDeny | model.AuditAllow
	}
	cfg := compiler.Config{Node: "node-1", Audit: compiler.AuditConfig{DenyMeter: compiler.DefaultAuditDenyMeter, AllowMeter: compiler.DefaultAuditAllowMeter}}
	cfg.Bindings = compiler.DefaultBindings(f.Cluster, "node-1", nil)
	res, err := compiler.Compile(f.Cluster, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Every kind of packet-in: isolation drops, the default of pods not
	// isolated, rule allows.
	kinds := map[string]int{}
	for _, fl := range res.Flows {
		l := fl.Actions.List()
		if len(l) == 0 {
			continue
		}
		if _, ok := l[0].(openflow.Controller); !ok {
			continue
		}
		switch {
		case len(l) == 1:
			kinds["deny"]++
		case fl.Priority == compiler.PrioAuditDefault:
			kinds["not isolated"]++
		default:
			kinds["rule"]++
		}
	}
	if kinds["deny"] == 0 || kinds["not isolated"] == 0 || kinds["rule"] == 0 {
		t.Fatalf("audit flows compiled: %v; want every kind", kinds)
	}
	return res, []Meter{{ID: compiler.DefaultAuditDenyMeter, Rate: 100, Burst: 20}, {ID: compiler.DefaultAuditAllowMeter, Rate: 100}}
}

// TestInstalledEqualsRenderedCompiled is the key test: every kind of flow
// the compiler emits — the golden files' clusters (the seed in both
// isolation modes, with its Service, the overlay example's node), a
// dual-stack two-node fixture with every policy form, Services with
// session affinity (learn, multipath, reg3) and IPv6 neighbour discovery,
// an audited cluster (packet-ins through meters) — installed on a real
// ovs-vswitchd dumps as exactly the text the typed flows render: table,
// priority, cookie, sorted match fields (Match.Sorted) and actions
// (ActionsText), groups as Group.String; nothing is stale and a second
// Sync changes nothing. Desired flows need no canonicalization because of
// this test.
func TestInstalledEqualsRenderedCompiled(t *testing.T) {
	const seed = "../../examples/seed/"
	seedFiles := []string{seed + "namespace.yaml", seed + "policy.yaml", seed + "pods.yaml"}
	cases := map[string]func(t *testing.T) rendered{
		"seed-v1": func(t *testing.T) rendered {
			return rendered{flows: exampleCompile(t, "v1", seed+"ports.txt", "", seedFiles...).Flows}
		},
		"seed-v1.6": func(t *testing.T) rendered {
			return rendered{flows: exampleCompile(t, "v1.6", seed+"ports.txt", "", seedFiles...).Flows}
		},
		"seed-v1-service": func(t *testing.T) rendered {
			res := exampleCompile(t, "v1", seed+"ports.txt", "", append(seedFiles, seed+"service.yaml")...)
			return rendered{flows: res.Flows, groups: res.Groups}
		},
		"overlay-node-1": func(t *testing.T) rendered {
			res := exampleCompile(t, "v1", "", "4096", "../../examples/overlay/cluster.yaml")
			return rendered{flows: res.Flows, groups: res.Groups}
		},
		"audit": func(t *testing.T) rendered {
			res, meters := auditResult(t)
			return rendered{flows: res.Flows, groups: res.Groups, meters: meters}
		},
	}
	for node, res := range compiledResults(t, true) {
		cases["fixture-services-"+node] = func(*testing.T) rendered { return rendered{flows: res.Flows, groups: res.Groups} }
	}
	names := make([]string, 0, len(cases))
	for n := range cases {
		names = append(names, n)
	}
	sort.Strings(names)
	s := ovstest.Start(t)
	all := map[string]int{}
	total, groups := 0, 0
	for _, name := range names {
		want := cases[name](t)
		n := checkInstalledEqualsRendered(t, s, name, want)
		kinds := kindsOf(want.flows, want.groups)
		for k, c := range kinds {
			all[k] += c
		}
		total += n
		groups += len(want.groups)
		t.Logf("%s: %d flows, %d groups installed and compared", name, n, len(want.groups))
	}
	t.Logf("in all %d flows and %d groups of %d clusters; kinds: %s", total, groups, len(names), kindsText(all))
	// The clusters must keep exercising every kind the compiler emits;
	// otherwise the test proves less than it claims.
	for _, k := range []string{"match openflow.InPort", "match openflow.EthSrc", "match openflow.IPSrc", "match openflow.IPDst",
		"match openflow.ARPSenderIP", "match openflow.ARPSenderMAC", "match openflow.NDTarget", "match openflow.ICMPType",
		"match openflow.TransportDst", "match openflow.ConjID", "match openflow.CTState", "match openflow.CTMark", "match openflow.Reg",
		"match openflow.TunnelSrc", "match tcp6", "match udp6", "match sctp6", "match icmp6", "match arp",
		"action openflow.Conjunction", "action openflow.Goto", "action openflow.Resubmit", "action openflow.Output",
		"action openflow.OutputInPort", "action openflow.ToGroup", "action openflow.SetEthDst", "action openflow.SetIPSrc",
		"action openflow.SetIPDst", "action openflow.SetTunnelSrc", "action openflow.SetTunnelDst", "action openflow.SetReg",
		"action openflow.CT", "action openflow.Multipath", "action openflow.LearnClient", "action openflow.Controller",
		"action (none: drop)", "bucket openflow.CT"} {
		if all[k] == 0 {
			t.Errorf("no compiled flow uses %s: the test does not cover it", k)
		}
	}
}

// TestSyncRandomScenarios syncs one bridge per node through a series of
// random clusters and policies (as the compiler's property tests draw them):
// every Sync must leave exactly the compiled flows, a repeated Sync must
// change nothing.
func TestSyncRandomScenarios(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	var bridges []*Installer
	for i := range 3 {
		bridges = append(bridges, newBridge(t, s, fmt.Sprintf("br%d", i+1)))
	}
	total := 0
	for seed := uint64(0); seed < 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
		mode := model.ModeV1
		if rng.IntN(4) == 0 {
			mode = model.ModeV16
		}
		nodes := 1 + rng.IntN(3)
		f := netpoltest.NewFixture(netpoltest.Options{Mode: mode, Nodes: nodes,
			NodeOf: netpoltest.RandomNodeOf(nodes, rng.IntN(3)), DualStack: rng.IntN(2) == 0})
		netpoltest.Randomize(rng, f)
		for _, p := range netpoltest.RandomPolicies(rng, f, 1+rng.IntN(6)) {
			f.Cluster.AddPolicy(p)
		}
		for i, node := range f.Nodes {
			cfg := compiler.Config{Node: node, NodeIPs: []netip.Addr{netpoltest.NodeIP(i + 1)}}
			if nodes > 1 {
				cfg.UplinkPort = 9
			}
			cfg.Bindings = compiler.DefaultBindings(f.Cluster, node, nil, 9)
			res, err := compiler.Compile(f.Cluster, cfg)
			if err != nil {
				t.Fatal(err)
			}
			in := bridges[i]
			st, err := in.Sync(ctx, res.Flows)
			if err != nil {
				t.Fatalf("seed %d %s: %v", seed, node, err)
			}
			if got := st.Added + st.Replaced + st.Unchanged; got != len(res.Flows) {
				t.Errorf("seed %d %s: %v does not add up to %d flows", seed, node, st, len(res.Flows))
			}
			dumped, err := in.Dump(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if d := Diff(res.Flows, dumped); len(d) != 0 || len(dumped) != len(res.Flows) {
				t.Fatalf("seed %d %s: after Sync %d flows dumped, %d compiled, diff:\n%s", seed, node,
					len(dumped), len(res.Flows), modsText(d))
			}
			st, err = in.Sync(ctx, res.Flows)
			if err != nil || st != (SyncStats{Unchanged: len(res.Flows)}) {
				t.Errorf("seed %d %s: repeated Sync: %v, %v", seed, node, st, err)
			}
			total += len(res.Flows)
		}
	}
	t.Logf("%d compiled flows synced and verified", total)
}

// TestApplyAtomic: one bad line in a bundle of good ones changes nothing,
// whether ovs-ofctl refuses it (syntax) or the switch does (unknown group).
func TestApplyAtomic(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	base := compiledSets(t)["node-1"]
	if err := in.Apply(ctx, addMods(base)); err != nil {
		t.Fatal(err)
	}
	before := dumpAll(t, s, "br-int")

	good := func() []Mod {
		var m []Mod
		for i, f := range base {
			if i%3 == 0 {
				m = append(m, Mod{Op: Delete, Flow: f})
			} else if i%3 == 1 {
				f.Actions = openflow.Actions{} // drop
				m = append(m, Mod{Op: Add, Flow: f})
			}
		}
		for i := range 50 {
			m = append(m, Mod{Op: Add, Flow: fl(70, uint16(i), openflow.Ours|7, match(openflow.IP, openflow.HostDst(netip.AddrFrom4([4]byte{10, 200, 0, byte(i)}))))})
		}
		return m
	}
	for _, bad := range []struct {
		name    string
		actions []openflow.Action
	}{
		{"switch refuses", []openflow.Action{openflow.ToGroup(7)}},
		{"ofctl refuses", hugeActions()},
		{"bad table", []openflow.Action{openflow.Goto(5)}}, // table 70 cannot go back to 5
	} {
		m := good()
		badFlow := fl(70, 999, openflow.Ours|7, match(openflow.IP), bad.actions...)
		m = append(m[:len(m)/2:len(m)/2], append([]Mod{{Op: Add, Flow: badFlow}}, m[len(m)/2:]...)...)
		err := in.Apply(ctx, m)
		if err == nil {
			t.Errorf("%s: Apply with %.80s succeeded", bad.name, openflow.ActionsText(bad.actions))
		} else {
			t.Logf("%s: %v", bad.name, err)
		}
		if after := dumpAll(t, s, "br-int"); strings.Join(after, "\n") != strings.Join(before, "\n") {
			t.Errorf("%s: a failed bundle changed the table (%d flows before, %d after)", bad.name, len(before), len(after))
		}
	}
	// The same bundle without the bad line commits.
	if err := in.Apply(ctx, good()); err != nil {
		t.Fatal(err)
	}
	if after := dumpAll(t, s, "br-int"); strings.Join(after, "\n") == strings.Join(before, "\n") {
		t.Error("good bundle changed nothing")
	}
}

// TestNamedTables: the agent names the pipeline's tables in OVSDB; dumps
// must keep printing numbers (--no-names), in "table=" and in goto_table.
func TestNamedTables(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	args := []string{}
	for table, name := range compiler.TableNames {
		id := fmt.Sprintf("ft%d", table)
		args = append(args, "--", "--id=@"+id, "create", "Flow_Table", "name="+name,
			"--", "set", "Bridge", "br-int", fmt.Sprintf("flow_tables:%d=@%s", table, id))
	}
	if _, err := s.Vsctl(args...); err != nil {
		t.Fatal(err)
	}
	flows := compiledSets(t)["node-1"]
	if _, err := in.Sync(ctx, flows); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Ofctl("--names", "dump-flows", "br-int", "table=ingress"); err != nil || !strings.Contains(out, "table=ingress") {
		t.Fatalf("tables not named (the test would prove nothing): %v\n%s", err, out)
	}
	st, err := in.Sync(ctx, flows)
	if err != nil || st != (SyncStats{Unchanged: len(flows)}) {
		t.Errorf("re-Sync with named tables: %v, %v", st, err)
	}
}

func TestFlowCount(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	if n, err := in.FlowCount(ctx); err != nil || n != 0 {
		t.Errorf("empty bridge: FlowCount = %d, %v", n, err)
	}
	if err := s.AddFlows("br-int", foreignFlows); err != nil {
		t.Fatal(err)
	}
	flows := compiledSets(t)["node-1"]
	if _, err := in.Sync(ctx, flows); err != nil {
		t.Fatal(err)
	}
	if n, err := in.FlowCount(ctx); err != nil || n != len(flows) {
		t.Errorf("FlowCount = %d, %v; want %d (foreign flows not counted)", n, err, len(flows))
	}
	// What the agent watches for: the tables emptied behind its back.
	if _, err := s.Ofctl("-O", "OpenFlow15", "del-flows", "br-int"); err != nil {
		t.Fatal(err)
	}
	if n, err := in.FlowCount(ctx); err != nil || n != 0 {
		t.Errorf("after del-flows: FlowCount = %d, %v", n, err)
	}
}

// modsText shows the first mods of a failed comparison.
func modsText(mods []Mod) string {
	var b strings.Builder
	for i, m := range mods {
		if i == 20 {
			fmt.Fprintf(&b, "... %d more\n", len(mods)-i)
			break
		}
		fmt.Fprintf(&b, "%s\n", m)
	}
	return b.String()
}

// TestSyncCompiledSets syncs one bridge from node-1's compiled flows to
// node-2's and to nothing, next to foreign flows.
func TestSyncCompiledSets(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	if err := s.AddFlows("br-int", foreignFlows); err != nil {
		t.Fatal(err)
	}
	foreign := foreignLines(t, s, "br-int")
	// Compiled sets: from node-1's flows to node-2's and to nothing.
	sets := compiledSets(t)
	for _, step := range []string{"node-1", "node-2", ""} {
		want := sets[step]
		before, _ := in.Dump(ctx)
		st, err := in.Sync(ctx, want)
		if err != nil {
			t.Fatal(err)
		}
		after, _ := in.Dump(ctx)
		if d := Diff(want, after); len(d) != 0 || len(after) != len(want) {
			t.Errorf("Sync(%q): %d flows, want %d; diff %v", step, len(after), len(want), d)
		}
		if st.Added+st.Replaced+st.Unchanged != len(want) || st.Deleted+st.Replaced+st.Unchanged != len(before) {
			t.Errorf("Sync(%q): %v inconsistent with %d before, %d after", step, st, len(before), len(want))
		}
		if got := foreignLines(t, s, "br-int"); len(got) != len(foreign) {
			t.Errorf("Sync(%q) touched foreign flows: %q", step, got)
		}
		t.Logf("Sync(%q): %v", step, st)
	}
	if n, err := in.FlowCount(ctx); err != nil || n != 0 {
		t.Errorf("FlowCount after Sync(nil) = %d, %v", n, err)
	}
}

// BenchmarkDumpStatsS1 is one scrape's dump with counters of the S1 node's
// full flow set (10k pods, 1k policies) on a real ovs-vswitchd.
func BenchmarkDumpStatsS1(b *testing.B) {
	m, _ := synth.Generate(synth.S1, synth.DefaultSeed).Model()
	cfg := compiler.Config{Node: "node-000"}
	cfg.Bindings = compiler.DefaultBindings(m, "node-000", nil, 9)
	res, err := compiler.Compile(m, cfg)
	if err != nil {
		b.Fatal(err)
	}
	s := ovstest.Start(b)
	in := newBridge(b, s, "br-s1")
	if _, err := in.SyncAll(context.Background(), res.Flows, res.Groups); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		got, err := in.DumpStats(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != len(res.Flows) {
			b.Fatalf("%d flows dumped, %d installed", len(got), len(res.Flows))
		}
	}
	b.ReportMetric(float64(len(res.Flows)), "flows")
}
