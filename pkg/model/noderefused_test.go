package model

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func TestRefusedNodes(t *testing.T) {
	at := func(minute int) time.Time { return time.Date(2026, 1, 1, 0, minute, 0, 0, time.UTC) }
	node := func(name string, minute int, cidrs []string, ips ...string) *Node {
		n := &Node{Name: name, Created: at(minute)}
		for _, c := range cidrs {
			n.PodCIDRs = append(n.PodCIDRs, netip.MustParsePrefix(c))
		}
		for _, ip := range ips {
			n.InternalIPs = append(n.InternalIPs, netip.MustParseAddr(ip))
		}
		return n
	}
	local := node("n1", 5, []string{"10.91.1.0/24", "fd00:91:1::/64"}, "172.29.1.2")
	n2 := node("n2", 1, []string{"10.91.2.0/24"}, "172.29.2.2")
	tests := []struct {
		name     string
		localIPs []string
		nodes    []*Node
		want     map[string]string
	}{
		{"disjoint", nil, []*Node{local, n2, node("n3", 2, []string{"10.91.3.0/24"}, "172.29.3.2")}, map[string]string{}},
		{"the local node wins though younger", nil, []*Node{local, node("n0", 0, []string{"10.91.0.0/16"}, "172.29.0.2")},
			map[string]string{"n0": "its 10.91.0.0/16 overlaps 10.91.1.0/24 of node n1"}},
		{"IPv6 inside the local pod CIDR", nil, []*Node{local, node("n3", 2, []string{"fd00:91:1:0:8000::/65"}, "fd00:29::3")},
			map[string]string{"n3": "its fd00:91:1:0:8000::/65 overlaps fd00:91:1::/64 of node n1"}},
		{"a local address given apart", []string{"192.0.2.1"}, []*Node{local, node("n3", 2, []string{"192.0.2.0/24"}, "172.29.3.2")},
			map[string]string{"n3": "its 192.0.2.0/24 overlaps 192.0.2.1/32 of node n1"}},
		{"without the local node's object", []string{"192.0.2.1"}, []*Node{n2, node("n3", 2, []string{"10.91.3.0/24"}, "192.0.2.1")},
			map[string]string{"n3": "its 192.0.2.1/32 overlaps 192.0.2.1/32 of node n1"}},
		{"older keeps, by creation time", nil, []*Node{node("n3", 2, []string{"10.91.2.0/25"}, "172.29.3.2"), n2},
			map[string]string{"n3": "its 10.91.2.0/25 overlaps 10.91.2.0/24 of node n2"}},
		{"same time: by name", nil, []*Node{node("n3", 1, []string{"10.91.2.0/24"}, "172.29.3.2"), n2},
			map[string]string{"n3": "its 10.91.2.0/24 overlaps 10.91.2.0/24 of node n2"}},
		{"a refused node claims nothing", nil, []*Node{n2, node("n3", 2, []string{"10.91.0.0/16"}, "172.29.3.2"),
			node("n4", 3, []string{"10.91.4.0/24"}, "172.29.4.2")},
			map[string]string{"n3": "its 10.91.0.0/16 overlaps 10.91.2.0/24 of node n2"}},
		{"InternalIP in another's pod CIDR", nil, []*Node{n2, node("n3", 2, []string{"10.91.3.0/24"}, "172.29.3.2", "10.91.2.20")},
			map[string]string{"n3": "its 10.91.2.20/32 overlaps 10.91.2.0/24 of node n2"}},
		{"pod CIDR holding its own InternalIP", nil, []*Node{node("n3", 2, []string{"fd00::/8"}, "fd00::3")},
			map[string]string{"n3": "its pod CIDR fd00::/8 holds its InternalIP fd00::3"}},
		{"::/0 where no other node has IPv6", nil, []*Node{node("n1", 0, []string{"10.91.1.0/24"}, "172.29.1.2"),
			node("n3", 2, []string{"10.91.3.0/24", "::/0"}, "172.29.3.2")},
			map[string]string{"n3": "its pod CIDR ::/0 is every address of its family"}},
		{"link-local pod CIDR (the cloud metadata address)", nil, []*Node{local, node("n3", 2, []string{"169.254.0.0/16"}, "172.29.3.2")},
			map[string]string{"n3": "its pod CIDR 169.254.0.0/16 overlaps 169.254.0.0/16 (link-local)"}},
		{"loopback pod CIDR", nil, []*Node{local, node("n3", 2, []string{"127.0.0.0/8"}, "172.29.3.2")},
			map[string]string{"n3": "its pod CIDR 127.0.0.0/8 overlaps 127.0.0.0/8 (loopback)"}},
		{"multicast IPv6 pod CIDR", nil, []*Node{local, node("n3", 2, []string{"ff02::/64"}, "172.29.3.2")},
			map[string]string{"n3": "its pod CIDR ff02::/64 overlaps ff00::/8 (multicast)"}},
		{"IPv6 pod CIDR over the link-local range", nil, []*Node{local, node("n3", 2, []string{"fe80::/9"}, "172.29.3.2")},
			map[string]string{"n3": "its pod CIDR fe80::/9 overlaps fe80::/10 (link-local)"}},
		{"pod CIDR over 0.0.0.0/8", nil, []*Node{local, node("n3", 2, []string{"0.0.0.0/7"}, "172.29.3.2")},
			map[string]string{"n3": "its pod CIDR 0.0.0.0/7 overlaps 0.0.0.0/8 (this network)"}},
		{"link-local InternalIP", nil, []*Node{local, node("n3", 2, []string{"10.91.3.0/24"}, "169.254.169.254")},
			map[string]string{"n3": "its InternalIP 169.254.169.254 is in 169.254.0.0/16 (link-local)"}},
		{"loopback InternalIP", nil, []*Node{local, node("n3", 2, []string{"10.91.3.0/24"}, "172.29.3.2", "::1")},
			map[string]string{"n3": "its InternalIP ::1 is in ::1/128 (loopback)"}},
		{"nil entries", nil, []*Node{nil, n2}, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ips []netip.Addr
			for _, s := range tt.localIPs {
				ips = append(ips, netip.MustParseAddr(s))
			}
			if got := RefusedNodes("n1", ips, tt.nodes); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("RefusedNodes = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRefusedNodesManyNodes: 5000 dual-stack nodes, none in conflict, then
// one that overlaps them all; the time of each call is logged.
func TestRefusedNodesManyNodes(t *testing.T) {
	var nodes []*Node
	for i := range 5000 {
		nodes = append(nodes, &Node{Name: fmt.Sprintf("n%04d", i),
			InternalIPs: []netip.Addr{netip.AddrFrom4([4]byte{172, 29, byte(i >> 8), byte(i)})},
			PodCIDRs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(64 + i>>8), byte(i), 0}), 24),
				netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x91, byte(i >> 8), byte(i)}), 64)}})
	}
	start := time.Now()
	if got := RefusedNodes("n0000", nil, nodes); len(got) != 0 {
		t.Fatalf("refused %d disjoint nodes: %v", len(got), got)
	}
	t.Logf("5000 disjoint dual-stack nodes: %v", time.Since(start))
	nodes = append(nodes, &Node{Name: "wide", Created: time.Now(), InternalIPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	start = time.Now()
	if got := RefusedNodes("n0000", nil, nodes); len(got) != 1 || got["wide"] == "" {
		t.Fatalf("refused %v, want the wide node only", got)
	}
	t.Logf("and one overlapping them all: %v", time.Since(start))
}
