package compiler

import (
	"maps"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// TestNodeEventMarksOneFragment: a node event makes Flush recompute one
// fragment: the remote node's own, or for this node the node fragment.
func TestNodeEventMarksOneFragment(t *testing.T) {
	c := model.NewCluster(model.ModeV1)
	for i := range 50 {
		c.AddPod(&model.Pod{UID: "u" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Namespace: "x", Name: "p" + string(rune('a'+i%26)) + string(rune('a'+i/26)),
			Node: "node-1", IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, 1, byte(i + 2)})}, Phase: "Running"})
	}
	cfg := Config{Node: "node-1", NodeIPs: []netip.Addr{netip.MustParseAddr("172.29.1.2")},
		Overlay: Overlay{TunnelPort: 4096, GatewayMAC: net.HardwareAddr{0x0a, 0x58, 10, 1, 1, 1}}}
	cfg.Bindings = DefaultBindings(c, "node-1", nil)
	in := NewIncremental(c, cfg)
	if _, err := in.Flush(); err != nil {
		t.Fatal(err)
	}
	remote := &model.Node{Name: "node-2", InternalIPs: []netip.Addr{netip.MustParseAddr("172.29.2.2")}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")}}
	local := &model.Node{Name: "node-1", InternalIPs: []netip.Addr{netip.MustParseAddr("172.29.1.2")}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.1.0/24")}}
	for _, tc := range []struct {
		what  string
		event func()
		want  []string
	}{
		{"add remote", func() { in.SetNode(remote) }, []string{"node/node-2"}},
		{"change remote", func() { n := *remote; n.InternalIPs = []netip.Addr{netip.MustParseAddr("172.29.2.3")}; in.SetNode(&n) }, []string{"node/node-2"}},
		{"delete remote", func() { in.DeleteNode("node-2") }, []string{"node/node-2"}},
		{"delete unknown", func() { in.DeleteNode("node-9") }, nil},
		{"add local", func() { in.SetNode(local) }, []string{fragNode}},
		{"delete local", func() { in.DeleteNode("node-1") }, []string{fragNode}},
	} {
		tc.event()
		got := slices.Sorted(maps.Keys(in.dirty))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: dirty fragments %v, want %v", tc.what, got, tc.want)
		}
		if _, err := in.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}
