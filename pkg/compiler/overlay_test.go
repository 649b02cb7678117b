package compiler_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/netpoltest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

var testGatewayMAC = net.HardwareAddr{0x0a, 0x58, 10, 91, 1, 1}

func overlayConfig() compiler.Config {
	return compiler.Config{Node: "node-1", NodeIPs: []netip.Addr{netip.MustParseAddr("172.29.1.2")},
		Overlay: compiler.Overlay{TunnelPort: 4096, GatewayMAC: testGatewayMAC}}
}

func mustNode(name string, ips []string, cidrs ...string) *model.Node {
	n := &model.Node{Name: name}
	for _, s := range ips {
		n.InternalIPs = append(n.InternalIPs, netip.MustParseAddr(s))
	}
	for _, s := range cidrs {
		n.PodCIDRs = append(n.PodCIDRs, netip.MustParsePrefix(s))
	}
	return n
}

// nodeFlowText renders the flows carrying cookie as "table,priority,match
// actions" lines, sorted.
func nodeFlowText(flows []openflow.Flow, cookie openflow.Cookie) []string {
	var out []string
	for _, f := range flows {
		if f.Cookie == cookie {
			out = append(out, fmt.Sprintf("table=%d,priority=%d,%s actions=%s", f.Table, f.Priority, f.Match, f.ActionsText()))
		}
	}
	slices.Sort(out)
	return out
}

func TestOverlayFlows(t *testing.T) {
	const mac = "0a:58:0a:5b:01:01"
	tests := []struct {
		name string
		node *model.Node
		want []string
	}{
		{"IPv4 endpoint, one pod CIDR", mustNode("node-2", []string{"172.29.2.2"}, "10.91.2.0/24"), []string{
			"table=0,priority=100,ip,in_port=4096,tun_src=172.29.2.2,nw_src=10.91.2.0/24 actions=set_field:" + mac + "->eth_dst,goto_table:10",
			"table=0,priority=100,ip,in_port=4096,tun_src=172.29.2.2,nw_src=172.29.2.2 actions=set_field:" + mac + "->eth_dst,goto_table:10",
			"table=60,priority=90,ip,nw_dst=10.91.2.0/24 actions=set_field:172.29.2.2->tun_dst,output:4096",
			"table=60,priority=90,ip,nw_dst=172.29.2.2 actions=set_field:172.29.2.2->tun_dst,output:4096",
		}},
		{"dual stack, IPv4 endpoint", mustNode("node-3", []string{"172.29.3.2", "fd00:29:3::2"}, "10.91.3.0/24", "fd00:91:3::/64"), []string{
			"table=0,priority=100,ip,in_port=4096,tun_src=172.29.3.2,nw_src=10.91.3.0/24 actions=set_field:" + mac + "->eth_dst,goto_table:10",
			"table=0,priority=100,ip,in_port=4096,tun_src=172.29.3.2,nw_src=172.29.3.2 actions=set_field:" + mac + "->eth_dst,goto_table:10",
			"table=0,priority=100,ipv6,in_port=4096,tun_src=172.29.3.2,ipv6_src=fd00:29:3::2 actions=set_field:" + mac + "->eth_dst,goto_table:10",
			"table=0,priority=100,ipv6,in_port=4096,tun_src=172.29.3.2,ipv6_src=fd00:91:3::/64 actions=set_field:" + mac + "->eth_dst,goto_table:10",
			"table=60,priority=90,ip,nw_dst=10.91.3.0/24 actions=set_field:172.29.3.2->tun_dst,output:4096",
			"table=60,priority=90,ip,nw_dst=172.29.3.2 actions=set_field:172.29.3.2->tun_dst,output:4096",
			"table=60,priority=90,ipv6,ipv6_dst=fd00:29:3::2 actions=set_field:172.29.3.2->tun_dst,output:4096",
			"table=60,priority=90,ipv6,ipv6_dst=fd00:91:3::/64 actions=set_field:172.29.3.2->tun_dst,output:4096",
		}},
		{"IPv6 endpoint", mustNode("node-4", []string{"fd00:29:4::2"}, "fd00:91:4::/64"), []string{
			"table=0,priority=100,ipv6,in_port=4096,tun_ipv6_src=fd00:29:4::2,ipv6_src=fd00:29:4::2 actions=set_field:" + mac + "->eth_dst,goto_table:10",
			"table=0,priority=100,ipv6,in_port=4096,tun_ipv6_src=fd00:29:4::2,ipv6_src=fd00:91:4::/64 actions=set_field:" + mac + "->eth_dst,goto_table:10",
			"table=60,priority=90,ipv6,ipv6_dst=fd00:29:4::2 actions=set_field:fd00:29:4::2->tun_ipv6_dst,output:4096",
			"table=60,priority=90,ipv6,ipv6_dst=fd00:91:4::/64 actions=set_field:fd00:29:4::2->tun_ipv6_dst,output:4096",
		}},
		{"no InternalIP: no flows", mustNode("node-5", nil, "10.91.5.0/24"), nil},
		{"no pod CIDR: no flows", mustNode("node-6", []string{"172.29.6.2"}), nil},
		{"this node: no tunnel flows", mustNode("node-1", []string{"172.29.1.2"}, "10.91.1.0/24"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := model.NewCluster(model.ModeV1)
			c.AddNode(tt.node)
			res, err := compiler.Compile(c, overlayConfig())
			if err != nil {
				t.Fatal(err)
			}
			got := nodeFlowText(res.Flows, compiler.NodeCookie(tt.node.Name))
			if !slices.Equal(got, tt.want) {
				t.Errorf("flows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if len(tt.want) > 0 && res.Origins[compiler.NodeCookie(tt.node.Name)] != "remote node "+tt.node.Name {
				t.Errorf("origin %q", res.Origins[compiler.NodeCookie(tt.node.Name)])
			}
			// Without the overlay, nodes give no flows at all.
			plain, err := compiler.Compile(c, compiler.Config{Node: "node-1", NodeIPs: overlayConfig().NodeIPs})
			if err != nil {
				t.Fatal(err)
			}
			empty, err := compiler.Compile(model.NewCluster(model.ModeV1), compiler.Config{Node: "node-1", NodeIPs: overlayConfig().NodeIPs})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(plain.Flows, empty.Flows, openflow.Flow.Equal) {
				t.Errorf("without the overlay, node %s changed the flows", tt.node.Name)
			}
		})
	}
}

// TestOverlayLocalNode: the local node's gateway addresses are node-local
// sources; a local pod's address from the tunnel is dropped as spoofed.
func TestOverlayLocalNode(t *testing.T) {
	c := model.NewCluster(model.ModeV1)
	c.AddNode(mustNode("node-1", []string{"172.29.1.2"}, "10.91.1.0/24", "fd00:91:1::/64"))
	c.AddPod(&model.Pod{UID: "u1", Namespace: "x", Name: "a", Node: "node-1", IPs: []netip.Addr{netip.MustParseAddr("10.91.1.5")}, Phase: "Running"})
	cfg := overlayConfig()
	cfg.Bindings = compiler.DefaultBindings(c, "node-1", nil)
	res, err := compiler.Compile(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var text []string
	for _, f := range res.Flows {
		text = append(text, fmt.Sprintf("table=%d,priority=%d,%s actions=%s", f.Table, f.Priority, f.Match, f.ActionsText()))
	}
	for _, want := range []string{
		"table=0,priority=105,ip,in_port=LOCAL,nw_src=10.91.1.1 actions=set_field:0x1/0x1->reg0,goto_table:10",
		"table=0,priority=105,ipv6,in_port=LOCAL,ipv6_src=fd00:91:1::1 actions=set_field:0x1/0x1->reg0,goto_table:10",
		"table=0,priority=106,ip,in_port=4096,nw_src=10.91.1.5 actions=drop",
	} {
		if !slices.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, strings.Join(text, "\n"))
		}
	}
}

func TestOverlayConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*compiler.Config)
		wantErr string
	}{
		{"uplink and tunnel", func(c *compiler.Config) { c.UplinkPort = 9 }, "exclude each other"},
		{"no MAC", func(c *compiler.Config) { c.Overlay.GatewayMAC = nil }, "not a unicast Ethernet address"},
		{"multicast MAC", func(c *compiler.Config) { c.Overlay.GatewayMAC = net.HardwareAddr{1, 0, 0x5e, 0, 0, 1} }, "not a unicast"},
		{"MAC without tunnel", func(c *compiler.Config) { c.Overlay.TunnelPort = 0 }, "without a tunnel port"},
		{"tunnel is the gateway", func(c *compiler.Config) { c.GatewayPort = 4096 }, "both 4096"},
		{"tunnel is LOCAL", func(c *compiler.Config) { c.Overlay.TunnelPort = compiler.PortLocal }, "not a port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := overlayConfig()
			tc.change(&cfg)
			_, err := compiler.Compile(model.NewCluster(model.ModeV1), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestOverlayNodeFlags(t *testing.T) {
	for _, tc := range []struct {
		flags   compiler.NodeFlags
		want    compiler.Overlay
		wantErr string
	}{
		{flags: compiler.NodeFlags{GatewayPort: "LOCAL", TunnelPort: "4096", GatewayMAC: "0a:58:0a:5b:01:01"},
			want: compiler.Overlay{TunnelPort: 4096, GatewayMAC: testGatewayMAC}},
		{flags: compiler.NodeFlags{GatewayPort: "LOCAL"}},
		{flags: compiler.NodeFlags{GatewayPort: "LOCAL", TunnelPort: "4096"}, wantErr: "--tunnel-port needs --gateway-mac"},
		{flags: compiler.NodeFlags{GatewayPort: "LOCAL", GatewayMAC: "0a:58:0a:5b:01:01"}, wantErr: "needs --tunnel-port"},
		{flags: compiler.NodeFlags{GatewayPort: "LOCAL", TunnelPort: "LOCAL", GatewayMAC: "0a:58:0a:5b:01:01"}, wantErr: "--tunnel-port: invalid"},
		{flags: compiler.NodeFlags{GatewayPort: "LOCAL", TunnelPort: "x", GatewayMAC: "0a:58:0a:5b:01:01"}, wantErr: "--tunnel-port: invalid"},
		{flags: compiler.NodeFlags{GatewayPort: "LOCAL", TunnelPort: "4096", GatewayMAC: "nope"}, wantErr: `--gateway-mac "nope"`},
		{flags: compiler.NodeFlags{GatewayPort: "LOCAL", TunnelPort: "4096", GatewayMAC: "ff:ff:ff:ff:ff:ff"}, wantErr: "not a unicast"},
		{flags: compiler.NodeFlags{GatewayPort: "LOCAL", UplinkPort: "9", TunnelPort: "4096", GatewayMAC: "0a:58:0a:5b:01:01"}, wantErr: "exclude each other"},
	} {
		got, err := tc.flags.Config()
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%+v: error %v, want %q", tc.flags, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%+v: %v", tc.flags, err)
		case got.Overlay.TunnelPort != tc.want.TunnelPort || got.Overlay.GatewayMAC.String() != tc.want.GatewayMAC.String():
			t.Errorf("%+v: %+v, want %+v", tc.flags, got.Overlay, tc.want)
		}
	}
}

// randomNode is a version of one of node-1 ... node-5: random tunnel
// endpoint (IPv4, IPv6, none), pod CIDRs (IPv4, IPv6, both, none), and
// conflicts (see ResolveRemoteNodes): sometimes another node's CIDR, an
// IPv4 CIDR around others' (/16), a /0, another node's InternalIP, or an
// InternalIP inside a pod CIDR; and a creation time.
func randomNode(rng *rand.Rand) *model.Node {
	i := 1 + rng.IntN(5)
	// Creation times of a few values: the older node wins a conflict,
	// the name breaks ties.
	n := &model.Node{Name: fmt.Sprintf("node-%d", i), Created: time.Unix(int64(rng.IntN(3)), 0)}
	ipOf := byte(i)
	if rng.IntN(8) == 0 {
		ipOf = byte(1 + rng.IntN(5)) // another node's tunnel endpoint
	}
	switch rng.IntN(6) {
	case 0:
	case 1:
		n.InternalIPs = []netip.Addr{netip.MustParseAddr(fmt.Sprintf("fd00:29:%d::2", ipOf))}
	case 2:
		n.InternalIPs = []netip.Addr{netip.AddrFrom4([4]byte{172, 29, ipOf, byte(2 + rng.IntN(2))}), netip.MustParseAddr(fmt.Sprintf("fd00:29:%d::2", ipOf))}
	case 3:
		// An address among pod addresses (of its own CIDR or another's).
		n.InternalIPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(1 + rng.IntN(5)), 7})}
	default:
		n.InternalIPs = []netip.Addr{netip.AddrFrom4([4]byte{172, 29, ipOf, byte(2 + rng.IntN(2))})}
	}
	third := byte(i)
	if rng.IntN(6) == 0 {
		third = byte(1 + rng.IntN(5)) // another node's CIDR (bad data, or a move in flight)
	}
	if rng.IntN(5) > 0 {
		bits := []int{24, 24, 24, 24, 24, 16, 0}[rng.IntN(7)]
		n.PodCIDRs = append(n.PodCIDRs, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, third, 0}), bits).Masked())
	}
	if rng.IntN(3) == 0 {
		bits := []int{64, 64, 64, 64, 0}[rng.IntN(5)]
		n.PodCIDRs = append(n.PodCIDRs, netip.PrefixFrom(netip.MustParseAddr(fmt.Sprintf("fd00:10:%d::", third)), bits).Masked())
	}
	return n
}

// TestOverlayIncrementalEqualsFull: node adds, changes and deletes mixed
// with pod, policy and binding events keep the incremental flow set equal
// to a full Compile, and Flush reports exactly the flows that changed;
// Flushes come after one to three events, some after 150.
func TestOverlayIncrementalEqualsFull(t *testing.T) {
	events, flushes, withRejected, flips := 0, 0, 0, 0
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 13))
		f := netpoltest.NewFixture(netpoltest.Options{Nodes: 3, DualStack: seed%2 == 0})
		netpoltest.Randomize(rng, f)
		cfg := overlayConfig()
		cfg.Bindings = compiler.DefaultBindings(f.Cluster, "node-1", nil, 4096)
		c := copyCluster(f.Cluster)
		for range rng.IntN(4) {
			c.AddNode(randomNode(rng))
		}
		inc := compiler.NewIncremental(c, cfg)
		flushEqualsFull(t, inc, fmt.Sprintf("seed %d initial", seed))
		prev := byKey(inc.Flows())
		prevUsable := inc.RemoteNodes()
		for step := 0; step < 30; step++ {
			var desc []string
			n := 1 + rng.IntN(3)
			if step%10 == 9 {
				n = 150 // a long batch: a node changed and changed back within one Flush
			}
			for range n {
				events++
				if rng.IntN(2) == 0 {
					desc = append(desc, randomEvent(rng, f, inc))
					continue
				}
				if n := randomNode(rng); rng.IntN(4) == 0 {
					inc.DeleteNode(n.Name)
					desc = append(desc, "delete node "+n.Name)
				} else {
					inc.SetNode(n)
					desc = append(desc, fmt.Sprintf("set node %s %v %v", n.Name, n.InternalIPs, n.PodCIDRs))
				}
			}
			if len(desc) > 5 {
				desc = append(desc[:5], fmt.Sprintf("... %d events", len(desc)))
			}
			what := fmt.Sprintf("seed %d step %d (%s)", seed, step, strings.Join(desc, "; "))
			changed, err := inc.Flush()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			checkEqualsFull(t, inc, what)
			flushes++
			if r := inc.RemoteNodes(); len(r.Rejected) > 0 {
				withRejected++
			}
			flips += usabilityFlips(prevUsable, inc.RemoteNodes())
			prevUsable = inc.RemoteNodes()
			got := byKey(inc.Flows())
			reported := map[openflow.Key]bool{}
			for _, k := range changed {
				reported[k] = true
			}
			for k, g := range got {
				if p, ok := prev[k]; (!ok || !p.Equal(g)) && !reported[k] {
					t.Fatalf("%s: flow %v changed but Flush did not report it", what, g)
				}
			}
			for k := range prev {
				if _, ok := got[k]; !ok && !reported[k] {
					t.Fatalf("%s: flow %v removed but not reported", what, prev[k])
				}
			}
			for _, k := range changed {
				p, had := prev[k]
				g, has := got[k]
				if had == has && p.Equal(g) {
					t.Fatalf("%s: Flush reported %v, which did not change", what, k)
				}
			}
			prev = got
		}
	}
	t.Logf("%d events (about half of them node events) checked against full compiles in %d flushes; %d flushes with rejected nodes, %d times a node went usable or unusable between flushes", events, flushes, withRejected, flips)
}

// usabilityFlips counts the nodes usable in one of a and b only.
func usabilityFlips(a, b compiler.RemoteNodes) int {
	usable := map[string]int{}
	for _, n := range a.Usable {
		usable[n.Name]++
	}
	for _, n := range b.Usable {
		usable[n.Name]++
	}
	flips := 0
	for _, c := range usable {
		if c == 1 {
			flips++
		}
	}
	return flips
}

// checkEqualsFull fails if in's flows (already flushed) differ from a full
// Compile of its state.
func checkEqualsFull(t *testing.T, inc *compiler.Incremental, what string) {
	t.Helper()
	full, err := compiler.Compile(inc.Cluster(), inc.Config())
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	got, want := byKey(inc.Flows()), byKey(full.Flows)
	for k, w := range want {
		if g, ok := got[k]; !ok || !g.Equal(w) {
			t.Fatalf("%s: incremental has %v, full compile %v", what, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Fatalf("%s: incremental has extra flow %v", what, g)
		}
	}
}

// TestNodeEventTouchesOnlyItsFlows: a remote node's add, change and delete
// change only flows with its cookie, as many as its tunnel flows differ.
func TestNodeEventTouchesOnlyItsFlows(t *testing.T) {
	f := netpoltest.NewFixture(netpoltest.Options{Nodes: 3, DualStack: true})
	cfg := overlayConfig()
	cfg.Bindings = compiler.DefaultBindings(f.Cluster, "node-1", nil, 4096)
	inc := compiler.NewIncremental(copyCluster(f.Cluster), cfg)
	inc.SetNode(mustNode("node-3", []string{"172.29.3.2"}, "10.1.3.0/24"))
	if _, err := inc.Flush(); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		what  string
		apply func()
		want  int // flows changed
	}{
		{"add node-2", func() { inc.SetNode(mustNode("node-2", []string{"172.29.2.2"}, "10.1.2.0/24")) }, 4},
		{"node-2 gets an IPv6 pod CIDR", func() { inc.SetNode(mustNode("node-2", []string{"172.29.2.2"}, "10.1.2.0/24", "fd00:10:2::/64")) }, 2},
		{"node-2 changes InternalIP", func() { inc.SetNode(mustNode("node-2", []string{"172.29.2.9"}, "10.1.2.0/24", "fd00:10:2::/64")) }, 3 + 3 + 2 + 2}, // table 0: 3 removed, 3 added (tun_src); table 60: 2 CIDRs re-pointed, the address flow replaced
		{"node-2 unchanged", func() { inc.SetNode(mustNode("node-2", []string{"172.29.2.9"}, "10.1.2.0/24", "fd00:10:2::/64")) }, 0},
		{"delete node-2", func() { inc.DeleteNode("node-2") }, 6},
		{"delete node-2 again", func() { inc.DeleteNode("node-2") }, 0},
	}
	for _, s := range steps {
		before := byKey(inc.Flows())
		s.apply()
		changed, err := inc.Flush()
		if err != nil {
			t.Fatal(err)
		}
		after := byKey(inc.Flows())
		for _, k := range changed {
			for _, fl := range []openflow.Flow{before[k], after[k]} {
				if fl.Cookie != 0 && fl.Cookie != compiler.NodeCookie("node-2") {
					t.Errorf("%s: changed flow %v is not node-2's", s.what, fl)
				}
			}
		}
		if len(changed) != s.want {
			t.Errorf("%s: %d flows changed, want %d", s.what, len(changed), s.want)
		}
		checkEqualsFull(t, inc, s.what)
	}
}

// TestOverlayConflictingNodes: a remote node whose pod CIDR is /0, or
// overlaps another's, gets no tunnel flows; the others keep exactly the
// flows they have alone, and the rejected node's flows come back when the
// conflict goes.
func TestOverlayConflictingNodes(t *testing.T) {
	good := []*model.Node{
		mustNode("node-2", []string{"172.29.2.2"}, "10.91.2.0/24"),
		mustNode("node-3", []string{"172.29.3.2", "fd00:29:3::2"}, "10.91.3.0/24", "fd00:91:3::/64"),
	}
	alone := func(n *model.Node) []string {
		c := model.NewCluster(model.ModeV1)
		c.AddNode(mustNode("node-1", []string{"172.29.1.2"}, "10.91.1.0/24"))
		c.AddNode(n)
		res, err := compiler.Compile(c, overlayConfig())
		if err != nil {
			t.Fatal(err)
		}
		return nodeFlowText(res.Flows, compiler.NodeCookie(n.Name))
	}
	tests := []struct {
		name string
		bad  *model.Node
	}{
		{"IPv4 /0 pod CIDR", mustNode("node-0", []string{"172.29.9.2"}, "0.0.0.0/0")},
		{"IPv6 /0 pod CIDR", mustNode("node-9", []string{"172.29.9.2"}, "10.91.9.0/24", "::/0")},
		{"pod CIDR around others'", mustNode("node-9", []string{"172.29.9.2"}, "10.91.0.0/16")},
		{"another node's tunnel endpoint", mustNode("node-9", []string{"172.29.2.2"}, "10.91.9.0/24")},
		{"this node's InternalIP", mustNode("node-0", []string{"172.29.1.2"}, "10.91.9.0/24")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := model.NewCluster(model.ModeV1)
			c.AddNode(mustNode("node-1", []string{"172.29.1.2"}, "10.91.1.0/24"))
			for _, n := range good {
				c.AddNode(n)
			}
			c.AddNode(tc.bad)
			res, err := compiler.Compile(c, overlayConfig())
			if err != nil {
				t.Fatal(err)
			}
			if got := nodeFlowText(res.Flows, compiler.NodeCookie(tc.bad.Name)); len(got) > 0 {
				t.Errorf("rejected %s has flows: %v", tc.bad.Name, got)
			}
			for _, n := range good {
				if got, want := nodeFlowText(res.Flows, compiler.NodeCookie(n.Name)), alone(n); !slices.Equal(got, want) {
					t.Errorf("%s's flows next to %s:\n%v\nalone:\n%v", n.Name, tc.bad.Name, got, want)
				}
			}
			// The incremental compiler: the conflict resolved by fixing
			// the bad node gives it its flows.
			inc := compiler.NewIncremental(c, overlayConfig())
			if _, err := inc.Flush(); err != nil {
				t.Fatal(err)
			}
			fixed := mustNode(tc.bad.Name, []string{"172.29.9.2"}, "10.91.9.0/24")
			inc.SetNode(fixed)
			if _, err := inc.Flush(); err != nil {
				t.Fatal(err)
			}
			if got, want := nodeFlowText(inc.Flows(), compiler.NodeCookie(fixed.Name)), alone(fixed); len(want) == 0 || !slices.Equal(got, want) {
				t.Errorf("fixed %s: flows %v, want %v", fixed.Name, got, want)
			}
			checkEqualsFull(t, inc, tc.name+", fixed")
		})
	}
}
