package model

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestNodeAddresses(t *testing.T) {
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	prefixes := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	tests := []struct {
		name     string
		node     Node
		tunnel   string
		gateways string
		mac      string
	}{
		{"dual stack", Node{Name: "n1", InternalIPs: addrs("fd00::2", "172.29.1.2"), PodCIDRs: prefixes("10.91.1.0/24", "fd00:91:1::/64")},
			"172.29.1.2", "[10.91.1.1 fd00:91:1::1]", "0a:58:0a:5b:01:01"},
		{"IPv6 only", Node{Name: "n2", InternalIPs: addrs("fd00::3"), PodCIDRs: prefixes("fd00:91:2::/64")},
			"fd00::3", "[fd00:91:2::1]", "0a:58:" + fnvPrefix("n2")},
		{"no addresses", Node{Name: "n3"}, "invalid IP", "[]", "0a:58:" + fnvPrefix("n3")},
		{"a /32 has no gateway", Node{Name: "n4", PodCIDRs: prefixes("10.0.0.7/32")}, "invalid IP", "[]", "0a:58:" + fnvPrefix("n4")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.node.TunnelIP().String(); got != tt.tunnel {
				t.Errorf("TunnelIP = %s, want %s", got, tt.tunnel)
			}
			if got := fmt.Sprint(tt.node.GatewayIPs()); got != tt.gateways {
				t.Errorf("GatewayIPs = %s, want %s", got, tt.gateways)
			}
			if got := GatewayMAC(&tt.node).String(); got != tt.mac {
				t.Errorf("GatewayMAC = %s, want %s", got, tt.mac)
			}
		})
	}
}

// fnvPrefix is the first 4 bytes of FNV-1a(name), computed here by the
// algorithm's definition rather than with hash/fnv.
func fnvPrefix(name string) string {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return fmt.Sprintf("%02x:%02x:%02x:%02x", byte(h>>24), byte(h>>16), byte(h>>8), byte(h))
}

func TestSortedNodes(t *testing.T) {
	c := NewCluster(ModeV1)
	for _, n := range []string{"b", "c", "a"} {
		c.AddNode(&Node{Name: n})
	}
	c.AddNode(&Node{Name: "b"}) // replaces
	var got []string
	for _, n := range c.SortedNodes() {
		got = append(got, n.Name)
	}
	if fmt.Sprint(got) != "[a b c]" {
		t.Errorf("SortedNodes = %v", got)
	}
}
