package nodenet

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// These tests need root: each runs in its own network namespace, where a
// veth named br-int stands for the bridge's LOCAL device.

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetNS creates a network namespace with lo up and a veth pair br-int /
// br-peer (both up) and returns its path.
func newNetNS(t *testing.T) (name, path string) {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name = "nodenet-" + hex.EncodeToString(b)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	run(t, "ip", "-n", name, "link", "add", "br-int", "type", "veth", "peer", "name", "br-peer")
	run(t, "ip", "-n", name, "link", "set", "br-peer", "up")
	return name, filepath.Join("/var/run/netns", name)
}

// lines runs ip in the namespace and returns its non-empty output lines,
// trimmed and sorted.
func lines(t *testing.T, netns string, args ...string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(run(t, append([]string{"ip", "-n", netns}, args...)...), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

func node(name, tunnel string, cidrs ...string) *model.Node {
	n := &model.Node{Name: name, PodCIDRs: prefixes(cidrs...)}
	if tunnel != "" {
		n.InternalIPs = []netip.Addr{netip.MustParseAddr(tunnel)}
	}
	return n
}

func TestConfigureGateway(t *testing.T) {
	name, path := newNetNS(t)
	h := Host{NetNS: path}
	// Left over: the gateway with a wrong prefix length; someone else's address.
	run(t, "ip", "-n", name, "addr", "add", "10.91.1.1/16", "dev", "br-int")
	run(t, "ip", "-n", name, "addr", "add", "192.0.2.9/24", "dev", "br-int")

	gws := prefixes("10.91.1.1/24", "fd00:91:1::1/64")
	for i := range 2 { // the second time finds everything in place
		if err := h.ConfigureGateway("br-int", gws, 1450); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		link := run(t, "ip", "-n", name, "-o", "link", "show", "br-int")
		if !strings.Contains(link, "mtu 1450 ") || !strings.Contains(link, ",UP") {
			t.Errorf("round %d: link %s", i, link)
		}
		got := lines(t, name, "-o", "addr", "show", "dev", "br-int", "scope", "global")
		var addrs []string
		for _, l := range got {
			f := strings.Fields(l)
			addrs = append(addrs, f[3])
		}
		if want := []string{"10.91.1.1/24", "192.0.2.9/24", "fd00:91:1::1/64"}; !slices.Equal(addrs, want) {
			t.Errorf("round %d: addresses %v, want %v\n%s", i, addrs, want, strings.Join(got, "\n"))
		}
		// No DAD: the IPv6 address is usable at once.
		for _, l := range got {
			if strings.Contains(l, "tentative") {
				t.Errorf("round %d: %s", i, l)
			}
		}
		// The connected routes of the node's own pods.
		if r := lines(t, name, "route", "show", "10.91.1.0/24"); len(r) != 1 || !strings.Contains(r[0], "dev br-int proto kernel") {
			t.Errorf("round %d: route to the node's pods %v", i, r)
		}
	}
	// MTU 0 leaves the MTU alone.
	if err := h.ConfigureGateway("br-int", nil, 0); err != nil {
		t.Fatal(err)
	}
	if link := run(t, "ip", "-n", name, "-o", "link", "show", "br-int"); !strings.Contains(link, "mtu 1450 ") {
		t.Errorf("MTU 0 changed the MTU: %s", link)
	}

	for _, tc := range []struct {
		name   string
		bridge string
		gws    []netip.Prefix
		mtu    int
		want   string
	}{
		{"missing device", "br-none", gws, 1450, "gateway device br-none"},
		{"network address", "br-int", prefixes("10.91.1.0/24"), 1450, "not a unicast address inside its prefix"},
		{"zero prefix", "br-int", []netip.Prefix{{}}, 1450, "not a unicast address"},
		{"multicast", "br-int", prefixes("224.0.0.1/24"), 1450, "not a unicast address"},
		{"MTU too small", "br-int", gws, 1000, "outside 1280..65535"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := h.ConfigureGateway(tc.bridge, tc.gws, tc.mtu); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if err := (Host{NetNS: "/var/run/netns/nosuch-nodenet"}).ConfigureGateway("br-int", gws, 1450); err == nil || !strings.Contains(err.Error(), "nosuch-nodenet") {
		t.Errorf("missing namespace: %v", err)
	}
}

func TestUnderlayMTU(t *testing.T) {
	name, path := newNetNS(t)
	h := Host{NetNS: path}
	run(t, "ip", "-n", name, "link", "add", "eth0", "mtu", "9000", "type", "veth", "peer", "name", "eth0p")
	run(t, "ip", "-n", name, "addr", "add", "172.29.1.2/24", "dev", "eth0")
	run(t, "ip", "-n", name, "addr", "add", "fd00:29:1::2/64", "dev", "eth0", "nodad")
	run(t, "ip", "-n", name, "addr", "add", "172.29.9.2/24", "dev", "br-int")

	for _, tc := range []struct {
		ip      string
		mtu     int
		podMTU  int
		wantErr string
	}{
		{"172.29.1.2", 9000, 8950, ""},
		{"fd00:29:1::2", 9000, 8930, ""},
		{"::ffff:172.29.1.2", 9000, 8950, ""},
		{"172.29.9.2", 1500, 1450, ""},
		{"172.29.1.3", 0, 0, "no interface holds 172.29.1.3"},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			ip := netip.MustParseAddr(tc.ip)
			mtu, err := h.UnderlayMTU(ip)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || mtu != tc.mtu {
				t.Fatalf("UnderlayMTU = %d, %v; want %d", mtu, err, tc.mtu)
			}
			if pod, err := PodMTU(mtu, ip); err != nil || pod != tc.podMTU {
				t.Errorf("PodMTU = %d, %v; want %d", pod, err, tc.podMTU)
			}
		})
	}
	if _, err := h.UnderlayMTU(netip.Addr{}); err == nil {
		t.Error("UnderlayMTU of no address succeeded")
	}
	if _, err := PodMTU(1300, netip.MustParseAddr("fd00::1")); err == nil || !strings.Contains(err.Error(), "below 1280") {
		t.Errorf("PodMTU over a 1300-byte IPv6 underlay: %v", err)
	}
}

// routeState is what SyncRoutes manages, as ip prints it.
type routeState struct {
	routes4, routes6, neigh []string
}

func readState(t *testing.T, netns string) routeState {
	t.Helper()
	return routeState{
		routes4: lines(t, netns, "-4", "route", "show", "dev", "br-int"),
		routes6: lines(t, netns, "-6", "route", "show", "dev", "br-int", "proto", "78"),
		neigh:   lines(t, netns, "neigh", "show", "dev", "br-int", "nud", "permanent"),
	}
}

func TestSyncRoutes(t *testing.T) {
	name, path := newNetNS(t)
	h := Host{NetNS: path}
	if err := h.ConfigureGateway("br-int", prefixes("10.91.1.1/24", "fd00:91:1::1/64"), 1450); err != nil {
		t.Fatal(err)
	}
	// Not ours: a static route to a CIDR a node will claim, another route
	// on the bridge, and a permanent neighbour entry.
	run(t, "ip", "-n", name, "route", "add", "10.91.9.0/24", "dev", "br-int", "proto", "static")
	run(t, "ip", "-n", name, "route", "add", "198.51.100.0/24", "via", "10.91.1.254", "dev", "br-int")
	run(t, "ip", "-n", name, "neigh", "add", "10.91.1.77", "lladdr", "02:00:00:00:00:77", "dev", "br-int", "nud", "permanent")
	foreign4 := []string{
		"10.91.1.0/24 proto kernel scope link src 10.91.1.1",
		"10.91.9.0/24 proto static scope link",
		"198.51.100.0/24 via 10.91.1.254",
	}
	foreignNeigh := "10.91.1.77 lladdr 02:00:00:00:00:77 PERMANENT"
	v6only := node("n5", "fd00:29:5::2", "fd00:91:5::/64")
	mac5 := model.GatewayMAC(v6only).String()

	steps := []struct {
		name    string
		before  func()
		remotes []*model.Node
		want    routeState
		errs    []string
	}{{
		name: "nodes added",
		remotes: []*model.Node{
			node("n3", "172.29.3.2", "10.91.3.0/24"),
			node("n2", "172.29.2.2", "10.91.2.0/24", "fd00:91:2::/64"),
			node("n9", "172.29.9.2", "10.91.9.0/24"),   // the static route wins
			node("n2b", "172.29.22.2", "10.91.2.0/24"), // n2's CIDR
			node("n8", "", "10.91.8.0/24"),             // no tunnel endpoint: nothing
			node("n7", "172.29.7.2"),                   // no pod CIDR: nothing
			node("n6", "172.29.6.2", "10.91.6.5/32"),   // no gateway address
		},
		want: routeState{
			routes4: append(slices.Clone(foreign4),
				"10.91.2.0/24 via 10.91.2.1 proto 78 onlink",
				"10.91.3.0/24 via 10.91.3.1 proto 78 onlink"),
			routes6: []string{"fd00:91:2::/64 via fd00:91:2::1 metric 1024 onlink pref medium"},
			neigh: []string{
				foreignNeigh,
				"10.91.2.1 lladdr 0a:58:0a:5b:02:01 PERMANENT",
				"10.91.3.1 lladdr 0a:58:0a:5b:03:01 PERMANENT",
				"fd00:91:2::1 lladdr 0a:58:0a:5b:02:01 PERMANENT",
			},
		},
		errs: []string{
			"node n9: a route to pod CIDR 10.91.9.0/24 exists already (protocol 4,",
			"node n2b: pod CIDR 10.91.2.0/24 is node n2's too",
			"node n6: pod CIDR 10.91.6.5/32 has no gateway address",
		},
	}, {
		name: "drift repaired: a route deleted, a neighbour changed, one made reachable only",
		before: func() {
			run(t, "ip", "-n", name, "route", "del", "10.91.3.0/24")
			run(t, "ip", "-n", name, "neigh", "replace", "10.91.2.1", "lladdr", "02:00:00:00:00:02", "dev", "br-int", "nud", "permanent")
			run(t, "ip", "-n", name, "neigh", "replace", "fd00:91:2::1", "lladdr", "0a:58:0a:5b:02:01", "dev", "br-int", "nud", "reachable")
		},
		remotes: []*model.Node{
			node("n2", "172.29.2.2", "10.91.2.0/24", "fd00:91:2::/64"),
			node("n3", "172.29.3.2", "10.91.3.0/24"),
		},
		want: routeState{
			routes4: append(slices.Clone(foreign4),
				"10.91.2.0/24 via 10.91.2.1 proto 78 onlink",
				"10.91.3.0/24 via 10.91.3.1 proto 78 onlink"),
			routes6: []string{"fd00:91:2::/64 via fd00:91:2::1 metric 1024 onlink pref medium"},
			neigh: []string{
				foreignNeigh,
				"10.91.2.1 lladdr 0a:58:0a:5b:02:01 PERMANENT",
				"10.91.3.1 lladdr 0a:58:0a:5b:03:01 PERMANENT",
				"fd00:91:2::1 lladdr 0a:58:0a:5b:02:01 PERMANENT",
			},
		},
	}, {
		name: "nodes changed and removed: n2 loses IPv6, n3 gone, n4 and IPv6-only n5 new",
		remotes: []*model.Node{
			node("n2", "172.29.2.2", "10.91.2.0/24"),
			node("n4", "172.29.4.2", "10.91.4.0/24"),
			v6only,
		},
		want: routeState{
			routes4: append(slices.Clone(foreign4),
				"10.91.2.0/24 via 10.91.2.1 proto 78 onlink",
				"10.91.4.0/24 via 10.91.4.1 proto 78 onlink"),
			routes6: []string{"fd00:91:5::/64 via fd00:91:5::1 metric 1024 onlink pref medium"},
			neigh: []string{
				foreignNeigh,
				"10.91.2.1 lladdr 0a:58:0a:5b:02:01 PERMANENT",
				"10.91.4.1 lladdr 0a:58:0a:5b:04:01 PERMANENT",
				"fd00:91:5::1 lladdr " + mac5 + " PERMANENT",
			},
		},
	}, {
		name: "a left-over neighbour of ours without its route is removed",
		before: func() {
			run(t, "ip", "-n", name, "neigh", "add", "10.91.3.1", "lladdr", "0a:58:0a:5b:03:01", "dev", "br-int", "nud", "permanent")
		},
		remotes: []*model.Node{node("n2", "172.29.2.2", "10.91.2.0/24")},
		want: routeState{
			routes4: append(slices.Clone(foreign4), "10.91.2.0/24 via 10.91.2.1 proto 78 onlink"),
			neigh:   []string{foreignNeigh, "10.91.2.1 lladdr 0a:58:0a:5b:02:01 PERMANENT"},
		},
	}, {
		name: "the remote's static route removed by its owner: ours is added",
		before: func() {
			run(t, "ip", "-n", name, "route", "del", "10.91.9.0/24")
		},
		remotes: []*model.Node{node("n9", "172.29.9.2", "10.91.9.0/24")},
		want: routeState{
			routes4: []string{foreign4[0], foreign4[2], "10.91.9.0/24 via 10.91.9.1 proto 78 onlink"},
			neigh:   []string{foreignNeigh, "10.91.9.1 lladdr 0a:58:0a:5b:09:01 PERMANENT"},
		},
	}, {
		name:    "no remote node: all of ours removed, the rest untouched",
		remotes: nil,
		want: routeState{
			routes4: []string{foreign4[0], foreign4[2]},
			neigh:   []string{foreignNeigh},
		},
	}}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.before != nil {
				st.before()
			}
			err := h.SyncRoutes("br-int", st.remotes)
			checkErrs(t, err, st.errs)
			got := readState(t, name)
			want := st.want
			slices.Sort(want.routes4)
			slices.Sort(want.routes6)
			slices.Sort(want.neigh)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("state:\n%s\nwant:\n%s", fmtState(got), fmtState(want))
			}
			// Idempotent: the same input again changes nothing at all.
			changes := watchChanges(t, path, func() {
				checkErrs(t, h.SyncRoutes("br-int", st.remotes), st.errs)
			})
			if len(changes) > 0 {
				t.Errorf("second SyncRoutes with the same nodes changed:\n%s", strings.Join(changes, "\n"))
			}
		})
	}

	// A missing device is told apart (the agent's --tunnel=none cleanup
	// ignores it: no bridge, nothing of ours to remove).
	var notFound netlink.LinkNotFoundError
	if err := h.SyncRoutes("br-none", nil); err == nil || !strings.Contains(err.Error(), "bridge device br-none") || !errors.As(err, &notFound) {
		t.Errorf("missing device: %v", err)
	}
}

func fmtState(s routeState) string {
	return "routes4:\n  " + strings.Join(s.routes4, "\n  ") + "\nroutes6:\n  " + strings.Join(s.routes6, "\n  ") +
		"\nneighbours:\n  " + strings.Join(s.neigh, "\n  ")
}

func checkErrs(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Errorf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Errorf("no error, want ones containing %q", want)
		return
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Errorf("%d errors, want %d:\n%v", len(got), len(want), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

// watchChanges returns the route and neighbour changes in the namespace
// while f runs. It ends with a marker change of its own and collects every
// event before it, so it does not depend on timing.
func watchChanges(t *testing.T, path string, f func()) []string {
	t.Helper()
	netns, err := ns.GetNS(path)
	if err != nil {
		t.Fatal(err)
	}
	defer netns.Close()
	done := make(chan struct{})
	defer close(done)
	routes := make(chan netlink.RouteUpdate, 100)
	neighs := make(chan netlink.NeighUpdate, 100)
	err = netns.Do(func(ns.NetNS) error {
		if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{}); err != nil {
			return err
		}
		return netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{})
	})
	if err != nil {
		t.Fatal(err)
	}
	f()
	marker := netip.MustParsePrefix("203.0.113.0/24")
	markerNeigh := net.ParseIP("203.0.113.9").To4()
	var link netlink.Link
	err = netns.Do(func(ns.NetNS) error {
		var err error
		if link, err = netlink.LinkByName("br-peer"); err != nil {
			return err
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixNet(marker), Protocol: 99}); err != nil {
			return err
		}
		return netlink.NeighAdd(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: markerNeigh, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 9}})
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for u := range routes {
		if u.Protocol == 99 {
			break
		}
		out = append(out, fmt.Sprintf("route event %d: %s", u.Type, u.Route))
	}
	for u := range neighs {
		if u.IP.Equal(markerNeigh) {
			break
		}
		out = append(out, fmt.Sprintf("neighbour event %d: %s", u.Type, u.Neigh.String()))
	}
	err = netns.Do(func(ns.NetNS) error {
		if err := netlink.RouteDel(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixNet(marker), Protocol: 99}); err != nil {
			return err
		}
		return netlink.NeighDel(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4, IP: markerNeigh})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSyncRoutesManyNodes installs the routes of 250 dual-stack nodes,
// syncs again unchanged, removes half and then all, and logs how long each
// sync took (figures, not assertions).
func TestSyncRoutesManyNodes(t *testing.T) {
	name, path := newNetNS(t)
	h := Host{NetNS: path}
	if err := h.ConfigureGateway("br-int", prefixes("10.90.0.1/24"), 1450); err != nil {
		t.Fatal(err)
	}
	var remotes []*model.Node
	for i := 1; i <= 250; i++ {
		remotes = append(remotes, node(fmt.Sprintf("n%03d", i), fmt.Sprintf("172.30.%d.%d", i/200, i%200+1),
			fmt.Sprintf("10.%d.%d.0/24", 100+i/250, i%250), fmt.Sprintf("fd00:100:%x::/64", i)))
	}
	count := func() (int, int) {
		return len(lines(t, name, "-4", "route", "show", "proto", "78")) + len(lines(t, name, "-6", "route", "show", "proto", "78")),
			len(lines(t, name, "neigh", "show", "dev", "br-int", "nud", "permanent"))
	}
	for _, st := range []struct {
		name          string
		remotes       []*model.Node
		routes, neigh int
	}{
		{"250 nodes added", remotes, 500, 500},
		{"unchanged", remotes, 500, 500},
		{"125 removed", remotes[:125], 250, 250},
		{"all removed", nil, 0, 0},
	} {
		start := time.Now()
		if err := h.SyncRoutes("br-int", st.remotes); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		took := time.Since(start)
		routes, neigh := count()
		if routes != st.routes || neigh != st.neigh {
			t.Errorf("%s: %d routes and %d neighbour entries, want %d and %d", st.name, routes, neigh, st.routes, st.neigh)
		}
		t.Logf("SyncRoutes, %s: %v (%d routes, %d neighbour entries now)", st.name, took.Round(time.Microsecond), routes, neigh)
	}
}
