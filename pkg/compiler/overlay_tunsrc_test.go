package compiler_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// TestTunnelFlowsSetTheLocalEndpoint: every node admits a peer's tunnel
// packets only with tun_src = the peer's InternalIP (table 0), so the
// sender puts its own InternalIP of the peer endpoint's family there:
// without it ovs-vswitchd takes the route's preferred source, which on a
// host with several addresses (a secondary address, a VIP, a routed node's
// address on lo) is not the InternalIP, and every peer drops the packet.
// Without a Node of its own (or an address of that family) nothing is set.
// The local Node's InternalIPs changing recomputes every remote node's
// flows.
func TestTunnelFlowsSetTheLocalEndpoint(t *testing.T) {
	tests := []struct {
		name         string
		local, other *model.Node
		want         string
	}{
		{"IPv4 endpoints", mustNode("node-1", []string{"172.29.1.2"}, "10.91.1.0/24"), mustNode("node-2", []string{"172.29.2.2"}, "10.91.2.0/24"),
			"set_field:172.29.1.2->tun_src,set_field:172.29.2.2->tun_dst,output:4096"},
		{"IPv6 peer of a dual-stack node", mustNode("node-1", []string{"172.29.1.2", "fd00:29:1::2"}, "10.91.1.0/24"),
			mustNode("node-2", []string{"fd00:29:2::2"}, "10.91.2.0/24"),
			"set_field:fd00:29:1::2->tun_ipv6_src,set_field:fd00:29:2::2->tun_ipv6_dst,output:4096"},
		{"IPv6 peer, no IPv6 address here", mustNode("node-1", []string{"172.29.1.2"}, "10.91.1.0/24"),
			mustNode("node-2", []string{"fd00:29:2::2"}, "10.91.2.0/24"), "set_field:fd00:29:2::2->tun_ipv6_dst,output:4096"},
		{"no Node of its own", nil, mustNode("node-2", []string{"172.29.2.2"}, "10.91.2.0/24"),
			"set_field:172.29.2.2->tun_dst,output:4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := model.NewCluster(model.ModeV1)
			if tt.local != nil {
				c.AddNode(tt.local)
			}
			c.AddNode(tt.other)
			res, err := compiler.Compile(c, overlayConfig())
			if err != nil {
				t.Fatal(err)
			}
			sends := 0
			for _, f := range res.Flows {
				if f.Table == compiler.TableForward && slices.Contains(f.Actions.List(), openflow.Action(openflow.Output(4096))) {
					sends++
					if f.ActionsText() != tt.want {
						t.Errorf("table 60 %s: actions %s, want %s", f.Match, f.ActionsText(), tt.want)
					}
				}
			}
			if sends == 0 {
				t.Fatal("no tunnel flow")
			}
		})
	}

	// This node renumbered: every remote node's flows follow.
	c := model.NewCluster(model.ModeV1)
	c.AddNode(mustNode("node-1", []string{"172.29.1.2"}, "10.91.1.0/24"))
	c.AddNode(mustNode("node-2", []string{"172.29.2.2"}, "10.91.2.0/24"))
	c.AddNode(mustNode("node-3", []string{"172.29.3.2"}, "10.91.3.0/24"))
	inc := compiler.NewIncremental(c, overlayConfig())
	if _, err := inc.Flush(); err != nil {
		t.Fatal(err)
	}
	inc.SetNode(mustNode("node-1", []string{"172.29.1.7"}, "10.91.1.0/24"))
	if _, err := inc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node-2", "node-3"} {
		for _, f := range nodeFlowText(inc.Flows(), compiler.NodeCookie(name)) {
			if strings.Contains(f, "table=60") && !strings.Contains(f, "set_field:172.29.1.7->tun_src") {
				t.Errorf("after this node's renumbering: %s", f)
			}
		}
	}
	checkEqualsFull(t, inc, "this node renumbered")
}
