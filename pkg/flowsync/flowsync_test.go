package flowsync

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/internal/netpoltest"
	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// newBridge adds a bridge to s and returns an Installer for it.
func newBridge(t testing.TB, s *ovstest.Switch, name string) *Installer {
	t.Helper()
	if err := s.AddBridge(name); err != nil {
		t.Fatal(err)
	}
	return &Installer{Bridge: name, RunDir: s.Dir}
}

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

// TestRoundTripCompiled is the key test: everything the compiler emits,
// installed and dumped, compares equal to what was compiled (Diff is empty),
// both when the compiler's text is installed and when its canonical form is.
func TestRoundTripCompiled(t *testing.T) {
	results := compiledResults(t, true)
	sets := map[string][]openflow.Flow{}
	// The fixture must keep exercising every form; otherwise the test
	// proves less than it claims.
	var all strings.Builder
	for node, res := range results {
		sets[node] = res.Flows
		all.WriteString(openflow.Text(res.Flows))
		for _, g := range res.Groups {
			all.WriteString(g.String() + "\n")
		}
	}
	for _, want := range []string{
		"conjunction(", "conj_id=", "tp_dst=0x", "tcp6", "udp6", "sctp6", "sctp,", "ipv6_dst=fd00:10:1::/",
		"nw_dst=10.", "/9", "ct_state=+trk", "ct_state=+rpl+trk", "ct_mark=0/0x2", "ct(commit,zone=", "ct(table=20,zone=",
		",nat)", "nat(dst=10.", "nat(dst=[fd00:", "exec(set_field:0x2/0x2->ct_mark)", "exec(set_field:0/0x2->ct_mark)",
		"group:", "resubmit(,26)", "learn(table=26,idle_timeout=30,", "idle_timeout=65535", "NXM_NX_IPV6_SRC[]",
		"multipath(symmetric_l3l4+udp,0,hrw,", "NXM_NX_REG3[]", "reg3=", "load:0x", "reg2=0x",
		"fields(ipv6_src,ipv6_dst,udp_src,udp_dst)", "fields(ip_src,ip_dst,sctp_src,sctp_dst)",
		"->eth_dst", "IN_PORT", "set_field:169.254.123.253->ip_src", "set_field:fd69::fffd->ipv6_src", "->ipv6_dst,goto_table:10",
		"set_field:0x1/0x1->reg0",
		"reg0=0x1/0x1", "output:9", "output:3", "in_port=LOCAL", "in_port=3", "nd_target=fe80::/10",
		"ipv6_src=::,", "arp_spa=", "dl_src=", "actions=drop", "priority=30001", "ipv6,in_port=3", "nw_src=172.18.0.1",
		"ipv6_src=fd00:172:18::1",
	} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("compiled flows never contain %q: the round trip does not cover it", want)
		}
	}

	s := ovstest.Start(t)
	ctx := context.Background()
	names := make([]string, 0, len(sets))
	for n := range sets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, node := range names {
		flows := sets[node]
		for _, canon := range []bool{false, true} {
			br := node
			if canon {
				br += "-c"
			}
			in := newBridge(t, s, br)
			var mods []Mod
			for _, f := range flows {
				if canon {
					f = Canonical(f)
				}
				mods = append(mods, Mod{Add, f})
			}
			var groups []GroupMod
			for _, g := range results[node].Groups {
				groups = append(groups, GroupMod{Group: g})
			}
			if err := in.ApplyBundle(ctx, mods, groups); err != nil {
				t.Fatalf("%s: %v", br, err)
			}
			// Groups are rendered as OVS prints them: nothing to change.
			dumpedGroups, err := in.DumpGroups(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(dumpedGroups) != len(groups) {
				t.Errorf("%s: %d groups installed, %d dumped", br, len(groups), len(dumpedGroups))
			}
			if d := DiffGroups(results[node].Groups, dumpedGroups); len(d) != 0 {
				for _, m := range d {
					t.Errorf("%s: group %d: ours\n  %s\nOVS's\n  %s", br, m.Group.ID, m.Group, dumpedGroups[m.Group.ID])
				}
			}
			dumped, err := in.Dump(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(dumped) != len(flows) {
				t.Errorf("%s: %d flows compiled, %d dumped", br, len(flows), len(dumped))
			}
			if d := Diff(flows, dumped); len(d) != 0 {
				t.Errorf("%s: %d flows differ between compiler text and OVS's:\n%s", br, len(d), explainDiff(d, flows, dumped))
			}
			n, err := in.FlowCount(ctx)
			if err != nil || n != len(flows) {
				t.Errorf("%s: FlowCount = %d, %v; want %d", br, n, err, len(flows))
			}
			checkPrintedForm(t, in, flows)
		}
		t.Logf("%s: %d compiled flows and %d groups round-trip", node, len(flows), len(results[node].Groups))
	}
}

// checkPrintedForm asserts the stronger property behind an empty Diff:
// Canonical of every compiled flow is exactly the text OVS prints for it
// (actions verbatim, match fields up to their order), so Canonical agrees
// with OVS and not merely with itself.
func checkPrintedForm(t *testing.T, in *Installer, flows []openflow.Flow) {
	t.Helper()
	out, err := in.run(context.Background(), nil, "--no-names", "--no-stats", "dump-flows", in.Bridge, ourCookie)
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		table    uint8
		priority uint16
		match    string // fields sorted
	}
	sortedFields := func(m string) string {
		fs := strings.Split(m, ",")
		sort.Strings(fs)
		return strings.Join(fs, ",")
	}
	printed := map[key]openflow.Flow{}
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, " ") {
			continue
		}
		f, err := parseFlowText(l)
		if err != nil {
			t.Fatal(err)
		}
		printed[key{f.Table, f.Priority, sortedFields(f.Match)}] = f
	}
	bad := 0
	for _, f := range flows {
		c := Canonical(f)
		p, ok := printed[key{c.Table, c.Priority, sortedFields(c.Match)}]
		if !ok || p.Actions != c.Actions || p.Cookie != c.Cookie {
			if bad++; bad <= 10 {
				t.Errorf("compiled  %s\ncanonical %s\nOVS prints %s (found: %v)", f, c, p, ok)
			}
		}
	}
}

// explainDiff shows, for mods of a failed round trip, the compiled flow and
// OVS's dumped flow of the same table and priority, both canonical.
func explainDiff(mods []Mod, desired, dumped []openflow.Flow) string {
	var b strings.Builder
	for i, m := range mods {
		if i == 20 {
			fmt.Fprintf(&b, "... %d more\n", len(mods)-i)
			break
		}
		c := Canonical(m.Flow)
		fmt.Fprintf(&b, "%s %s\n", m.Op, m.Flow)
		fmt.Fprintf(&b, "    canonical: %s\n", c)
	}
	return b.String()
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
					len(dumped), len(res.Flows), explainDiff(d, res.Flows, dumped))
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

// foreignFlows are installed behind our back; Sync must never touch them.
const foreignFlows = `table=0,priority=500,cookie=0x1,ip,nw_src=192.0.2.1 actions=drop
table=40,priority=30000,cookie=0x4f00000000000001,ip,nw_src=10.9.9.7 actions=drop
table=40,priority=30000,ip,nw_src=10.9.9.8 actions=drop
table=77,priority=1,cookie=0xff4e000000000000 actions=drop
`

func dumpAll(t testing.TB, s *ovstest.Switch, br string) []string {
	t.Helper()
	lines, err := s.DumpFlows(br, true)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return lines
}

func foreignLines(t testing.TB, s *ovstest.Switch, br string) []string {
	var out []string
	for _, l := range dumpAll(t, s, br) {
		if !strings.HasPrefix(l, "cookie=0x4e") {
			out = append(out, l)
		}
	}
	return out
}

func TestSyncFromOtherState(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	if err := s.AddFlows("br-int", foreignFlows); err != nil {
		t.Fatal(err)
	}
	foreign := foreignLines(t, s, "br-int")
	if len(foreign) != 4 {
		t.Fatalf("foreign flows: %q", foreign)
	}

	c1, c2 := openflow.Ours|openflow.Cookie(openflow.KindRule)<<48|1, openflow.Ours|openflow.Cookie(openflow.KindPod)<<48|2
	fl := func(table uint8, prio uint16, c openflow.Cookie, match, actions string) openflow.Flow {
		return openflow.Flow{Table: table, Priority: prio, Cookie: c, Match: match, Actions: actions}
	}
	a := []openflow.Flow{
		fl(0, 0, c1, "", "drop"),
		fl(10, 100, c1, "ip", "ct(table=20,zone=64000)"),
		fl(20, 150, c1, "ip,ct_state=+new+trk,nw_src=10.1.1.1,nw_dst=10.1.1.1", "goto_table:50"),
		fl(40, 30000, c1, "ip,nw_src=10.9.9.9", "conjunction(5,1/2)"),
		fl(40, 30000, c2, "tcp,tp_dst=0x50/0xfff0", "conjunction(5,2/2)"),
		fl(40, 30000, c2, "conj_id=5", "goto_table:50"),
		fl(60, 0, c1, "", "output:LOCAL"),
	}
	b := []openflow.Flow{
		fl(0, 0, c1, "", ""),                             // unchanged ("" = drop)
		fl(10, 100, c1, "ip", "ct(zone=64000,table=20)"), // unchanged (other text)
		fl(20, 150, c2, "ip,ct_state=+trk+new,nw_dst=10.1.1.1,nw_src=10.1.1.1/32", "goto_table:50"), // replaced: cookie
		fl(40, 30000, c1, "ip,nw_src=10.9.9.9", "conjunction(6,1/2)"),                               // replaced: actions
		fl(40, 30000, c1, "ipv6,ipv6_src=fd00::1", "conjunction(6,1/2)"),                            // added
		fl(40, 30000, c1, "tcp6,tcp_dst=443", "conjunction(6,2/2)"),                                 // added
		fl(40, 30000, c1, "conj_id=6", "goto_table:50"),                                             // added
		fl(60, 0, c1, "", "output:65534"),                                                           // unchanged
		// deleted: the tcp port flow, conj_id=5
	}
	var mods []Mod
	for _, f := range a {
		mods = append(mods, Mod{Add, f})
	}
	if err := in.Apply(ctx, mods); err != nil {
		t.Fatal(err)
	}
	if n, err := in.FlowCount(ctx); err != nil || n != len(a) {
		t.Fatalf("FlowCount after A = %d, %v; want %d", n, err, len(a))
	}
	st, err := in.Sync(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if want := (SyncStats{Added: 3, Replaced: 2, Deleted: 2, Unchanged: 3}); st != want {
		t.Errorf("Sync stats %v, want %v", st, want)
	}
	dumped, err := in.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(b, dumped); len(d) != 0 || len(dumped) != len(b) {
		t.Errorf("after Sync(B): %d flows, diff %v", len(dumped), d)
	}
	if got := foreignLines(t, s, "br-int"); strings.Join(got, "\n") != strings.Join(foreign, "\n") {
		t.Errorf("foreign flows changed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(foreign, "\n"))
	}

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

// TestApplyAtomic: one bad line in a bundle of good ones changes nothing,
// whether ovs-ofctl refuses it (syntax) or the switch does (unknown group).
func TestApplyAtomic(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	base := compiledSets(t)["node-1"]
	var mods []Mod
	for _, f := range base {
		mods = append(mods, Mod{Add, f})
	}
	if err := in.Apply(ctx, mods); err != nil {
		t.Fatal(err)
	}
	before := dumpAll(t, s, "br-int")

	good := func() []Mod {
		var m []Mod
		for i, f := range base {
			if i%3 == 0 {
				m = append(m, Mod{Delete, f})
			} else if i%3 == 1 {
				f.Actions = "drop"
				m = append(m, Mod{Add, f})
			}
		}
		for i := range 50 {
			m = append(m, Mod{Add, openflow.Flow{Table: 70, Priority: uint16(i), Cookie: openflow.Ours | 7,
				Match: fmt.Sprintf("ip,nw_dst=10.200.0.%d", i), Actions: "drop"}})
		}
		return m
	}
	for _, bad := range []struct{ name, actions string }{
		{"switch refuses", "group:7"},
		{"ofctl refuses", "no_such_action"},
		{"bad table", "goto_table:5"}, // table 70 cannot go back to 5
	} {
		m := good()
		badFlow := openflow.Flow{Table: 70, Priority: 999, Cookie: openflow.Ours | 7, Match: "ip", Actions: bad.actions}
		m = append(m[:len(m)/2:len(m)/2], append([]Mod{{Add, badFlow}}, m[len(m)/2:]...)...)
		err := in.Apply(ctx, m)
		if err == nil {
			t.Errorf("%s: Apply with %q succeeded", bad.name, bad.actions)
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

// TestAddReplaces: "add" of an existing table/priority/match replaces
// actions and cookie (keeping the counters), so no modify is needed.
func TestAddReplaces(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	f := openflow.Flow{Table: 40, Priority: 30000, Cookie: openflow.Ours | 1, Match: "ip,nw_src=10.1.1.1", Actions: "drop"}
	g := f
	g.Cookie, g.Actions = openflow.Ours|2, "conjunction(1,1/2),conjunction(9,2/2)"
	// Written in another text of the same match: still the same flow.
	g.Match = "nw_src=10.1.1.1/32,dl_type=0x0800"
	if err := in.Apply(ctx, []Mod{{Add, f}}); err != nil {
		t.Fatal(err)
	}
	// One packet through the flow, so that we see what happens to counters.
	pkt := "ffffffffffff0a000000000108004500001400000000400000000a0101010a010102"
	if _, err := s.Ofctl("-O", "OpenFlow15", "packet-out", "br-int", "in_port=LOCAL packet="+pkt+" actions=resubmit(,40)"); err != nil {
		t.Fatal(err)
	}
	if err := in.Apply(ctx, []Mod{{Add, g}}); err != nil {
		t.Fatal(err)
	}
	got, err := in.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != Canonical(g) {
		t.Errorf("after replacing add: %v, want [%v]", got, Canonical(g))
	}
	if out, err := s.Ofctl("-O", "OpenFlow15", "dump-flows", "br-int", "table=40"); err != nil || !strings.Contains(out, "n_packets=1,") {
		t.Errorf("counters not kept by a replacing add: %v\n%s", err, out)
	}
	// A foreign flow at the same identity is replaced too: one identity
	// holds one flow, ours wins.
	if err := s.AddFlows("br-int", "table=40,priority=5,cookie=0x1,udp actions=drop\n"); err != nil {
		t.Fatal(err)
	}
	h := openflow.Flow{Table: 40, Priority: 5, Cookie: openflow.Ours | 3, Match: "udp", Actions: "goto_table:50"}
	if err := in.Apply(ctx, []Mod{{Add, h}}); err != nil {
		t.Fatal(err)
	}
	if fl := dumpAll(t, s, "br-int"); len(fl) != 2 || !strings.Contains(strings.Join(fl, "\n"), "cookie=0x4e00000000000003, table=40, priority=5,udp actions=goto_table:50") {
		t.Errorf("flows: %q", fl)
	}
}

// TestDeleteOnlyOurs: a Delete removes exactly our flow at its table,
// priority and match; a foreign flow at that identity, and our flows at
// other priorities or with wider matches, survive.
func TestDeleteOnlyOurs(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	if err := s.AddFlows("br-int", "table=40,priority=7,cookie=0x1,ip,nw_src=10.0.0.7 actions=drop\n"); err != nil {
		t.Fatal(err)
	}
	ours := []openflow.Flow{
		{Table: 40, Priority: 7, Cookie: openflow.Ours | 1, Match: "ip,nw_src=10.0.0.8", Actions: "drop"},
		{Table: 40, Priority: 8, Cookie: openflow.Ours | 1, Match: "ip,nw_src=10.0.0.8", Actions: "drop"},
		{Table: 40, Priority: 7, Cookie: openflow.Ours | 1, Match: "ip", Actions: "drop"},
	}
	var mods []Mod
	for _, f := range ours {
		mods = append(mods, Mod{Add, f})
	}
	if err := in.Apply(ctx, mods); err != nil {
		t.Fatal(err)
	}
	del := []Mod{
		{Delete, openflow.Flow{Table: 40, Priority: 7, Cookie: openflow.Ours, Match: "ip,nw_src=10.0.0.7"}},    // foreign: stays
		{Delete, openflow.Flow{Table: 40, Priority: 7, Cookie: openflow.Ours, Match: "nw_src=10.0.0.8/32,ip"}}, // ours: gone
	}
	if err := in.Apply(ctx, del); err != nil {
		t.Fatal(err)
	}
	got, err := in.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(ours[1:], got); len(d) != 0 || len(got) != 2 {
		t.Errorf("after delete: %v", got)
	}
	if f := foreignLines(t, s, "br-int"); len(f) != 1 {
		t.Errorf("foreign flow deleted: %q", f)
	}
	// Deleting what is not there is not an error.
	if err := in.Apply(ctx, del[1:]); err != nil {
		t.Errorf("delete of a missing flow: %v", err)
	}
}

// TestSyncReplacesAttributes: a flow of ours that carries an attribute we
// never set (here an idle timeout) is not equal to the desired flow; Sync
// deletes it and adds the desired one in one bundle.
func TestSyncReplacesAttributes(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	if err := s.AddFlows("br-int", "table=60,priority=100,cookie=0x4e00000000000001,idle_timeout=600,importance=3,send_flow_rem,ip,nw_dst=10.1.1.1 actions=output:5\n"); err != nil {
		t.Fatal(err)
	}
	want := []openflow.Flow{{Table: 60, Priority: 100, Cookie: openflow.Ours | 1, Match: "ip,nw_dst=10.1.1.1", Actions: "output:5"}}
	st, err := in.Sync(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if st != (SyncStats{Added: 1, Deleted: 1}) {
		t.Errorf("stats %v", st)
	}
	if fl := dumpAll(t, s, "br-int"); len(fl) != 1 || fl[0] != "cookie=0x4e00000000000001, table=60, priority=100,ip,nw_dst=10.1.1.1 actions=output:5" {
		t.Errorf("flows %q", fl)
	}
}

// TestSyncOntoEmptySwitch: with none of our flows installed, Sync adds the
// desired flows as given, without canonicalizing them; a later flow of one
// identity still replaces an earlier one, and foreign flows stay.
func TestSyncOntoEmptySwitch(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	if err := s.AddFlows("br-int", "table=0,priority=5,cookie=0x1234,actions=drop\n"); err != nil {
		t.Fatal(err)
	}
	want := []openflow.Flow{
		{Table: 60, Priority: 100, Cookie: openflow.Ours | 1, Match: "ip,nw_dst=10.1.1.1", Actions: "output:5"},
		{Table: 60, Priority: 100, Cookie: openflow.Ours | 2, Match: "ip,nw_dst=10.1.1.2", Actions: "output:6"},
		{Table: 60, Priority: 100, Cookie: openflow.Ours | 1, Match: "ip,nw_dst=10.1.1.1", Actions: "output:7"},
	}
	st, err := in.Sync(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if st != (SyncStats{Added: 2}) {
		t.Errorf("stats %v, want 2 added", st)
	}
	got := dumpAll(t, s, "br-int")
	wantDump := []string{
		"cookie=0x1234, priority=5 actions=drop",
		"cookie=0x4e00000000000001, table=60, priority=100,ip,nw_dst=10.1.1.1 actions=output:7",
		"cookie=0x4e00000000000002, table=60, priority=100,ip,nw_dst=10.1.1.2 actions=output:6",
	}
	if !slices.Equal(got, wantDump) {
		t.Errorf("flows %q, want %q", got, wantDump)
	}
	if st, err := in.Sync(ctx, want[1:]); err != nil || st != (SyncStats{Unchanged: 2}) {
		t.Errorf("second Sync: %v, %v", st, err)
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

func TestErrors(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	f := openflow.Flow{Table: 1, Priority: 1, Cookie: 0x1, Match: "ip", Actions: "drop"}
	if err := in.Apply(ctx, []Mod{{Add, f}}); err == nil || !strings.Contains(err.Error(), "cookie") {
		t.Errorf("Apply of a foreign cookie: %v", err)
	}
	if _, err := in.Sync(ctx, []openflow.Flow{f}); err == nil {
		t.Error("Sync of a foreign cookie succeeded")
	}
	if n, _ := in.FlowCount(ctx); n != 0 {
		t.Errorf("refused mods installed %d flows", n)
	}
	missing := &Installer{Bridge: "br-nope", RunDir: s.Dir}
	if _, err := missing.Dump(ctx); err == nil || !strings.Contains(err.Error(), "br-nope") {
		t.Errorf("Dump of a missing bridge: %v", err)
	}
	if _, err := missing.FlowCount(ctx); err == nil {
		t.Error("FlowCount of a missing bridge succeeded")
	}
	noOfctl := &Installer{Bridge: "br-int", RunDir: s.Dir, Ofctl: filepath.Join(t.TempDir(), "ovs-ofctl")}
	if _, err := noOfctl.Dump(ctx); err == nil {
		t.Error("Dump with a missing ovs-ofctl succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := in.Dump(cctx); err == nil {
		t.Error("Dump with a cancelled context succeeded")
	}
	if err := in.Apply(ctx, nil); err != nil {
		t.Errorf("empty Apply: %v", err)
	}
}

// syntheticFlows returns n distinct flows of ours shaped like the
// compiler's policy flows (peer addresses, port masks, conj_id flows).
func syntheticFlows(n int) []openflow.Flow {
	flows := make([]openflow.Flow, 0, n)
	for i := 0; len(flows) < n; i++ {
		c := openflow.Ours | openflow.Cookie(openflow.KindRule)<<48 | openflow.Cookie(i/100)
		id, j := 1000+i/100, i/4
		var f openflow.Flow
		switch i % 4 {
		case 0:
			f = openflow.Flow{Table: 40, Priority: 30000, Cookie: c, Match: fmt.Sprintf("ip,nw_src=10.%d.%d.%d", j>>16, j>>8&0xff, j&0xff),
				Actions: fmt.Sprintf("conjunction(%d,2/3)", id)}
		case 1:
			f = openflow.Flow{Table: 40, Priority: 30000, Cookie: c, Match: fmt.Sprintf("ipv6,ipv6_src=fd00::%x", j),
				Actions: fmt.Sprintf("conjunction(%d,2/3)", id)}
		case 2:
			f = openflow.Flow{Table: 30, Priority: 30000, Cookie: c, Match: fmt.Sprintf("tcp,nw_dst=%d.%d.%d.0/24,tp_dst=0x%x/0xfff0", 100+j>>16, j>>8&0xff, j&0xff, j&0xfff0),
				Actions: fmt.Sprintf("conjunction(%d,1/2)", id)}
		default:
			f = openflow.Flow{Table: 60, Priority: 100, Cookie: c, Match: fmt.Sprintf("ip,nw_dst=172.%d.%d.%d", 16+j>>16, j>>8&0xff, j&0xff),
				Actions: fmt.Sprintf("output:%d", 10+i%1000)}
		}
		flows = append(flows, f)
	}
	return flows
}

func addMods(flows []openflow.Flow) []Mod {
	mods := make([]Mod, len(flows))
	for i, f := range flows {
		mods[i] = Mod{Add, f}
	}
	return mods
}

// flowFile is the ovs-ofctl flow file of flows (plain lines, which both
// add-flows and replace-flows accept).
func flowFile(flows []openflow.Flow) string {
	var b strings.Builder
	for _, f := range flows {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// TestLargeSync installs, re-syncs and changes a large flow set, and logs
// the times next to raw ovs-ofctl on the same text. FLOWSYNC_LARGE sets the
// size (default 10000; the report's numbers use 100000).
func TestLargeSync(t *testing.T) {
	n := 10000
	if v := os.Getenv("FLOWSYNC_LARGE"); v != "" {
		fmt.Sscan(v, &n)
	}
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	newBridge(t, s, "br-raw")
	flows := syntheticFlows(n)

	file := filepath.Join(s.Dir, "large.flows")
	text := flowFile(flows)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := s.Ofctl("-O", "OpenFlow15", "--bundle", "add-flows", "br-raw", file); err != nil {
		t.Fatal(err)
	}
	tRaw := time.Since(t0)
	t0 = time.Now()
	if _, err := s.Ofctl("-O", "OpenFlow15", "--bundle", "replace-flows", "br-raw", file); err != nil {
		t.Fatal(err)
	}
	tRawReplace := time.Since(t0)

	t0 = time.Now()
	st, err := in.Sync(ctx, flows)
	if err != nil {
		t.Fatal(err)
	}
	tInstall := time.Since(t0)
	if st.Added != n {
		t.Errorf("first Sync: %v", st)
	}
	t0 = time.Now()
	dumped, err := in.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tDump := time.Since(t0)
	if len(dumped) != n {
		t.Errorf("dumped %d flows, want %d", len(dumped), n)
	}
	t0 = time.Now()
	st, err = in.Sync(ctx, flows)
	if err != nil {
		t.Fatal(err)
	}
	tResync := time.Since(t0)
	if st != (SyncStats{Unchanged: n}) {
		t.Errorf("identical re-Sync: %v", st)
	}
	// Change 1%: drop 0.5%, replace 0.5%, add 0.5%.
	changed := append([]openflow.Flow(nil), flows[n/200:]...)
	for i := 0; i < n/200; i++ {
		changed[i].Actions = "drop"
	}
	changed = append(changed, syntheticFlows(n + n/200)[n:]...)
	t0 = time.Now()
	st, err = in.Sync(ctx, changed)
	if err != nil {
		t.Fatal(err)
	}
	tChange := time.Since(t0)
	if st.Added != n/200 || st.Replaced != n/200 || st.Deleted != n/200 {
		t.Errorf("1%% change: %v", st)
	}
	if c, err := in.FlowCount(ctx); err != nil || c != len(changed) {
		t.Errorf("FlowCount %d, %v; want %d", c, err, len(changed))
	}
	t.Logf("%d flows: raw add-flows %v, raw replace-flows (identical) %v; Sync install %v, Dump %v, identical re-Sync %v, 1%% change Sync %v",
		n, tRaw, tRawReplace, tInstall, tDump, tResync, tChange)
}

// benchInstall compares, in each iteration and interleaved (so that load
// from other processes hits both alike): Apply of n adds vs raw
// "ovs-ofctl --bundle add-flows" of the same text, each on an emptied bridge;
// and an identical Sync (Dump + Diff, nothing to apply) vs a raw dump-flows
// and a raw "--bundle replace-flows" of the same (identical) file, which
// diffs too. Reported as apply-ns, raw-add-ns, resync-ns, raw-dump-ns,
// raw-replace-ns.
func benchInstall(b *testing.B, n int) {
	s := ovstest.Start(b)
	ctx := context.Background()
	in := newBridge(b, s, "br-int")
	flows := syntheticFlows(n)
	mods := addMods(flows)
	file := filepath.Join(s.Dir, "bench.flows")
	if err := os.WriteFile(file, []byte(flowFile(flows)), 0o644); err != nil {
		b.Fatal(err)
	}
	emptyBridge := func() {
		if _, err := s.Ofctl("-O", "OpenFlow15", "del-flows", "br-int"); err != nil {
			b.Fatal(err)
		}
	}
	timed := func(sum *time.Duration, f func() error) {
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		*sum += time.Since(t0)
	}
	var apply, raw, resync, dump, replace time.Duration
	for b.Loop() {
		emptyBridge()
		timed(&raw, func() error {
			_, err := s.Ofctl("-O", "OpenFlow15", "--bundle", "add-flows", "br-int", file)
			return err
		})
		emptyBridge()
		timed(&apply, func() error { return in.Apply(ctx, mods) })
		timed(&resync, func() error {
			st, err := in.Sync(ctx, flows)
			if err == nil && st.Unchanged != n {
				err = fmt.Errorf("identical Sync: %v", st)
			}
			return err
		})
		timed(&dump, func() error {
			_, err := s.Ofctl("-O", "OpenFlow15", "--no-stats", "dump-flows", "br-int", ourCookie)
			return err
		})
		timed(&replace, func() error {
			_, err := s.Ofctl("-O", "OpenFlow15", "--bundle", "replace-flows", "br-int", file)
			return err
		})
	}
	for name, d := range map[string]time.Duration{"apply-ns": apply, "raw-add-ns": raw, "resync-ns": resync,
		"raw-dump-ns": dump, "raw-replace-ns": replace} {
		b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), name)
	}
}

func BenchmarkInstall10k(b *testing.B)  { benchInstall(b, 10000) }
func BenchmarkInstall100k(b *testing.B) { benchInstall(b, 100000) }

func BenchmarkCanonical(b *testing.B) {
	flows := syntheticFlows(1000)
	for b.Loop() {
		for _, f := range flows {
			Canonical(f)
		}
	}
}

// BenchmarkDiff100k is the Go side of an identical re-Sync of 100k flows:
// parsing the dump text and diffing against the desired set.
func BenchmarkDiff100k(b *testing.B) {
	flows := syntheticFlows(100000)
	var dump strings.Builder
	dump.WriteString("OFPST_FLOW reply (OF1.5) (xid=0x2):\n")
	for _, f := range flows {
		c := Canonical(f)
		fmt.Fprintf(&dump, " cookie=%s, table=%d, priority=%d,%s actions=%s\n", c.Cookie, c.Table, c.Priority, c.Match, c.Actions)
	}
	text := []byte(dump.String())
	for b.Loop() {
		installed, err := parseDump(text)
		if err != nil {
			b.Fatal(err)
		}
		if mods, _ := diff(flows, installed, true); len(mods) != 0 {
			b.Fatalf("%d mods", len(mods))
		}
	}
}
