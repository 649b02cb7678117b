package nodenet

import (
	"slices"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// TestSyncRoutesLeavesTheHostsNetworkAlone: a remote node's pod CIDR that
// holds an address of this host, the next hop of one of its routes, or
// overlaps a subnet it is attached to gets no host route (an error says
// why): the route, more specific than the host's own, would send the host's
// underlay traffic (to its router, its neighbours, its own tunnel
// endpoint's subnet) into the bridge and the tunnel. Other nodes' routes
// are still installed and the host's routes stay as they were.
func TestSyncRoutesLeavesTheHostsNetworkAlone(t *testing.T) {
	name, path := newNetNS(t)
	h := Host{NetNS: path}
	run(t, "ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer")
	run(t, "ip", "-n", name, "link", "set", "eth0", "up")
	run(t, "ip", "-n", name, "link", "set", "eth0-peer", "up")
	run(t, "ip", "-n", name, "addr", "add", "172.29.1.2/24", "dev", "eth0")
	run(t, "ip", "-n", name, "addr", "add", "fd00:29:1::2/64", "dev", "eth0", "nodad")
	run(t, "ip", "-n", name, "route", "add", "default", "via", "172.29.1.1")
	run(t, "ip", "-n", name, "route", "add", "198.51.100.0/24", "via", "172.29.1.254")
	run(t, "ip", "-n", name, "addr", "add", "192.0.2.7/32", "dev", "lo")
	if err := h.ConfigureGateway("br-int", prefixes("10.91.1.1/24"), 1450); err != nil {
		t.Fatal(err)
	}
	hostRoutes := func() []string {
		return slices.DeleteFunc(append(lines(t, name, "-4", "route", "show"), lines(t, name, "-6", "route", "show")...),
			func(s string) bool { return strings.Contains(s, "proto 78") })
	}
	before := hostRoutes()

	remotes := []*model.Node{
		node("n2", "172.29.2.2", "10.91.2.0/24"),
		node("router", "172.29.3.2", "172.29.1.0/25"),      // this host's router and address
		node("neighbours", "172.29.4.2", "172.29.1.64/26"), // part of its underlay subnet
		node("nexthop", "172.29.5.2", "172.29.1.254/31"),   // a static route's next hop
		node("vip", "172.29.6.2", "192.0.2.0/24"),          // an address on lo
		node("inlocal", "172.29.7.2", "10.91.1.128/25"),    // inside this node's pod CIDR
		node("v6", "172.29.8.2", "fd00:29::/32"),           // its IPv6 underlay
	}
	err := h.SyncRoutes("br-int", remotes)
	checkErrs(t, err, []string{
		"node router: pod CIDR 172.29.1.0/25 holds 172.29.1.2, an address of this host",
		"node neighbours: pod CIDR 172.29.1.64/26 overlaps 172.29.1.0/24, a subnet this host is attached to",
		"node nexthop: pod CIDR 172.29.1.254/31 holds 172.29.1.254, a next hop of this host's routes",
		"node vip: pod CIDR 192.0.2.0/24 holds 192.0.2.7, an address of this host",
		"node inlocal: pod CIDR 10.91.1.128/25 overlaps 10.91.1.0/24, a subnet this host is attached to",
		"node v6: pod CIDR fd00:29::/32 holds fd00:29:1::2, an address of this host",
	})
	if got, want := lines(t, name, "route", "show", "proto", "78"), []string{"10.91.2.0/24 via 10.91.2.1 dev br-int onlink"}; !slices.Equal(got, want) {
		t.Errorf("our routes %q, want %q", got, want)
	}
	if got := lines(t, name, "-6", "route", "show", "proto", "78"); len(got) != 0 {
		t.Errorf("our IPv6 routes %q, want none", got)
	}
	if got := hostRoutes(); !slices.Equal(got, before) {
		t.Errorf("the host's routes changed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(before, "\n"))
	}
	if got, want := lines(t, name, "neigh", "show", "nud", "permanent"), []string{"10.91.2.1 dev br-int lladdr 0a:58:0a:5b:02:01 PERMANENT"}; !slices.Equal(got, want) {
		t.Errorf("permanent neighbours %q, want %q", got, want)
	}
}
