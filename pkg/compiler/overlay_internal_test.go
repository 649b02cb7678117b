package compiler

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// TestNodeEventMarksOneFragment: a node event makes Flush recompute one
// fragment: the remote node's own, or for this node the node fragment; and
// besides, the fragments of the nodes whose usability it changed (see
// ResolveRemoteNodes), a chain of conflicts included.
func TestNodeEventMarksOneFragment(t *testing.T) {
	c := model.NewCluster(model.ModeV1)
	for i := range 50 {
		c.AddPod(&model.Pod{UID: "u" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Namespace: "x", Name: "p" + string(rune('a'+i%26)) + string(rune('a'+i/26)),
			Node: "node-1", IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, 1, byte(i + 2)})}, Phase: "Running"})
	}
	cfg := Config{Node: "node-1", NodeIPs: []netip.Addr{netip.MustParseAddr("172.29.1.2")},
		Overlay: Overlay{TunnelPort: 4096, GatewayMAC: net.HardwareAddr{0x0a, 0x58, 10, 1, 1, 1}}}
	cfg.Bindings = DefaultBindings(c, "node-1", nil)
	inc := NewIncremental(c, cfg)
	if _, err := inc.Flush(); err != nil {
		t.Fatal(err)
	}
	remote := &model.Node{Name: "node-2", InternalIPs: []netip.Addr{netip.MustParseAddr("172.29.2.2")}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")}}
	local := &model.Node{Name: "node-1", InternalIPs: []netip.Addr{netip.MustParseAddr("172.29.1.2")}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.1.0/24")}}
	node := func(name, ip, cidr string) *model.Node {
		return &model.Node{Name: name, InternalIPs: []netip.Addr{netip.MustParseAddr(ip)}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix(cidr)}}
	}
	for _, tc := range []struct {
		what  string
		event func()
		want  []string
	}{
		{"add remote", func() { inc.SetNode(remote) }, []string{"node/node-2"}},
		{"change remote", func() { n := *remote; n.InternalIPs = []netip.Addr{netip.MustParseAddr("172.29.2.3")}; inc.SetNode(&n) }, []string{"node/node-2"}},
		{"delete remote", func() { inc.DeleteNode("node-2") }, []string{"node/node-2"}},
		{"delete unknown", func() { inc.DeleteNode("node-9") }, nil},
		{"add local", func() { inc.SetNode(local) }, []string{"node"}},
		{"delete local", func() { inc.DeleteNode("node-1") }, []string{"node"}},
		{"add local again", func() { inc.SetNode(local) }, []string{"node"}},
		{"add node-2", func() { inc.SetNode(remote) }, []string{"node/node-2"}},
		{"add node-3 with node-2's pod CIDR", func() { inc.SetNode(node("node-3", "172.29.3.2", "10.1.2.0/24")) }, []string{"node/node-3"}},
		{"delete node-2: node-3 usable", func() { inc.DeleteNode("node-2") }, []string{"node/node-2", "node/node-3"}},
		{"this node takes node-3's pod CIDR", func() { inc.SetNode(node("node-1", "172.29.1.2", "10.1.2.0/24")) }, []string{"node", "node/node-3"}},
		{"this node gives it back", func() { inc.SetNode(local) }, []string{"node", "node/node-3"}},
		{"add node-a", func() { inc.SetNode(node("node-a", "172.29.10.2", "10.2.0.0/24")) }, []string{"node/node-a"}},
		{"add node-b around node-a", func() { inc.SetNode(node("node-b", "172.29.11.2", "10.2.0.0/23")) }, []string{"node/node-b"}},
		{"add node-c inside node-b", func() { inc.SetNode(node("node-c", "172.29.12.2", "10.2.1.0/24")) }, []string{"node/node-c"}},
		{"delete node-a: node-b usable, node-c not", func() { inc.DeleteNode("node-a") }, []string{"node/node-a", "node/node-b", "node/node-c"}},
	} {
		tc.event()
		inc.resolveNodes() // what Flush does first
		got := dirtyFragments(inc)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: dirty fragments %v, want %v", tc.what, got, tc.want)
		}
		if _, err := inc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}
