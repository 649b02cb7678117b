package nodenet

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// hostRoute is one wanted route, Dst via Gw on the bridge, with the
// permanent neighbour entry Gw lladdr MAC, for Node.
type hostRoute struct {
	Dst  netip.Prefix
	Gw   netip.Addr
	MAC  net.HardwareAddr
	Node string
}

// desired computes the routes and neighbour entries for the remote nodes.
// Nodes without a tunnel endpoint or pod CIDR get none (the compiler gives
// them no flows either). A pod CIDR or gateway claimed by two nodes goes to
// the first by name; the other claim, and a CIDR without a gateway
// address, is an error, and everything else is still wanted.
func desired(remotes []*model.Node) ([]hostRoute, []error) {
	nodes := slices.Clone(remotes)
	slices.SortFunc(nodes, func(a, b *model.Node) int { return strings.Compare(a.Name, b.Name) })
	var (
		routes []hostRoute
		errs   []error
		dsts   = map[netip.Prefix]string{}
		gws    = map[netip.Addr]string{}
	)
	for _, n := range nodes {
		if n == nil || !n.TunnelIP().IsValid() {
			continue
		}
		mac := model.GatewayMAC(n)
		for _, c := range n.PodCIDRs {
			c = c.Masked()
			gw := c.Addr().Next()
			switch {
			case !c.IsValid() || !gw.IsValid() || !c.Contains(gw):
				errs = append(errs, fmt.Errorf("node %s: pod CIDR %s has no gateway address", n.Name, c))
				continue
			case dsts[c] != "":
				errs = append(errs, fmt.Errorf("node %s: pod CIDR %s is node %s's too; no route for %s", n.Name, c, dsts[c], n.Name))
				continue
			case gws[gw] != "":
				errs = append(errs, fmt.Errorf("node %s: gateway %s is node %s's too; no route for %s", n.Name, gw, gws[gw], c))
				continue
			}
			dsts[c], gws[gw] = n.Name, n.Name
			routes = append(routes, hostRoute{Dst: c, Gw: gw, MAC: mac, Node: n.Name})
		}
	}
	return routes, errs
}

// SyncRoutes makes the host routes and permanent neighbour entries on the
// bridge's LOCAL device those of the remote nodes (see the package
// documentation), removing ours that are no longer wanted. The local node
// must not be among remotes. It applies everything it can and returns every
// problem joined: a pod CIDR that has a route of another protocol, claims
// two nodes make, and netlink errors.
func (h Host) SyncRoutes(bridge string, remotes []*model.Node) error {
	routes, errs := desired(remotes)
	err := h.do(func() error {
		link, err := netlinksafe.LinkByName(bridge)
		if err != nil {
			return fmt.Errorf("nodenet: bridge device %s: %w", bridge, err)
		}
		idx := link.Attrs().Index
		var installed []netlink.Route
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			rs, err := netlinksafe.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
			if err != nil {
				return fmt.Errorf("nodenet: list routes: %w", err)
			}
			installed = append(installed, rs...)
		}
		ours := map[netip.Prefix]netlink.Route{}
		foreign := map[netip.Prefix]netlink.Route{}
		oldGateways := map[netip.Addr]bool{}
		for _, r := range installed {
			dst, ok := routeDst(r)
			if !ok {
				continue
			}
			switch {
			case r.Protocol != RouteProtocol:
				foreign[dst] = r
			case r.LinkIndex == idx:
				ours[dst] = r
				if gw, ok := netip.AddrFromSlice(r.Gw); ok {
					oldGateways[gw.Unmap()] = true
				}
			}
		}

		hs, err := readHostState(installed)
		if err != nil {
			return err
		}

		// Neighbour entries first: a new route must not send packets
		// into the bridge with a MAC resolved some other way.
		wantRoutes := map[netip.Prefix]bool{}
		wantNeigh := map[netip.Addr]bool{}
		var add, keep []hostRoute
		for _, r := range routes {
			if f, ok := foreign[r.Dst]; ok {
				errs = append(errs, fmt.Errorf("node %s: a route to pod CIDR %s exists already (protocol %d, device index %d); it is not ours, so it is left alone and the node's pods are not reached through the overlay from this host", r.Node, r.Dst, f.Protocol, f.LinkIndex))
				continue
			}
			if why := hs.conflict(r.Dst); why != "" {
				errs = append(errs, fmt.Errorf("node %s: pod CIDR %s %s: no route (it would take the host's own traffic into the overlay)", r.Node, r.Dst, why))
				continue
			}
			wantRoutes[r.Dst] = true
			keep = append(keep, r)
			if cur, ok := ours[r.Dst]; !ok || !sameRoute(cur, r, idx) {
				add = append(add, r)
			}
		}
		current, err := neighbours(idx)
		if err != nil {
			return err
		}
		for _, r := range keep {
			wantNeigh[r.Gw] = true
			if cur, ok := current[r.Gw]; ok && cur.State == netlink.NUD_PERMANENT && bytes.Equal(cur.HardwareAddr, r.MAC) {
				continue
			}
			err := netlink.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: familyOf(r.Gw), State: netlink.NUD_PERMANENT,
				IP: net.IP(r.Gw.AsSlice()), HardwareAddr: r.MAC})
			if err != nil {
				errs = append(errs, fmt.Errorf("node %s: neighbour %s lladdr %s on %s: %w", r.Node, r.Gw, r.MAC, bridge, err))
			}
		}
		for _, r := range add {
			err := netlink.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: prefixNet(r.Dst), Gw: net.IP(r.Gw.AsSlice()),
				Flags: int(netlink.FLAG_ONLINK), Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN, Scope: netlink.SCOPE_UNIVERSE})
			if err != nil {
				errs = append(errs, fmt.Errorf("node %s: route %s via %s dev %s: %w", r.Node, r.Dst, r.Gw, bridge, err))
			}
		}

		// Then what is no longer wanted: routes before their neighbours.
		for dst, r := range ours {
			if wantRoutes[dst] {
				continue
			}
			if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("nodenet: remove route %s dev %s: %w", dst, bridge, err))
			}
		}
		for ip, n := range current {
			if wantNeigh[ip] || n.State != netlink.NUD_PERMANENT || !(oldGateways[ip] || bytes.Equal(n.HardwareAddr, ipv4MAC(ip))) {
				continue
			}
			if err := netlink.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("nodenet: remove neighbour %s dev %s: %w", ip, bridge, err))
			}
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// hostState is what a host route to a pod CIDR must leave alone: the
// host's addresses (any device), the next hops of its routes, and the
// subnets it is attached to (routes without a next hop), all not ours.
type hostState struct {
	addrs, nextHops []netip.Addr
	connected       []netip.Prefix
}

func readHostState(installed []netlink.Route) (hostState, error) {
	var hs hostState
	addrs, err := netlinksafe.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return hs, fmt.Errorf("nodenet: list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			hs.addrs = append(hs.addrs, ip.Unmap())
		}
	}
	for _, r := range installed {
		if r.Protocol == RouteProtocol {
			continue
		}
		gw := func(ip net.IP) {
			if a, ok := netip.AddrFromSlice(ip); ok {
				hs.nextHops = append(hs.nextHops, a.Unmap())
			}
		}
		gw(r.Gw)
		for _, nh := range r.MultiPath {
			gw(nh.Gw)
		}
		if dst, ok := routeDst(r); ok && dst.Bits() > 0 && r.Gw == nil && len(r.MultiPath) == 0 && r.Type == unix.RTN_UNICAST {
			hs.connected = append(hs.connected, dst)
		}
	}
	return hs, nil
}

// conflict says why a route to pod CIDR c would take the host's own
// traffic ("" when it would not).
func (hs hostState) conflict(c netip.Prefix) string {
	if c.Bits() == 0 {
		return "is every address of its family (a default route)"
	}
	for _, ip := range hs.addrs {
		if c.Contains(ip) {
			return fmt.Sprintf("holds %s, an address of this host", ip)
		}
	}
	for _, ip := range hs.nextHops {
		if c.Contains(ip) {
			return fmt.Sprintf("holds %s, a next hop of this host's routes", ip)
		}
	}
	for _, p := range hs.connected {
		if c.Overlaps(p) {
			return fmt.Sprintf("overlaps %s, a subnet this host is attached to", p)
		}
	}
	return ""
}

func routeDst(r netlink.Route) (netip.Prefix, bool) {
	if r.Dst == nil {
		return netip.Prefix{}, false // a default route
	}
	ip, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones).Masked(), true
}

func sameRoute(cur netlink.Route, want hostRoute, idx int) bool {
	gw, ok := netip.AddrFromSlice(cur.Gw)
	return ok && gw.Unmap() == want.Gw && cur.LinkIndex == idx && cur.Flags&int(netlink.FLAG_ONLINK) != 0 &&
		cur.Table == unix.RT_TABLE_MAIN && len(cur.MultiPath) == 0
}

// neighbours lists the device's neighbour entries of both families.
func neighbours(idx int) (map[netip.Addr]netlink.Neigh, error) {
	out := map[netip.Addr]netlink.Neigh{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		var ns []netlink.Neigh
		var err error
		for range 5 { // a dump interrupted by a concurrent change is retried
			if ns, err = netlink.NeighList(idx, fam); !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("nodenet: list neighbours: %w", err)
		}
		for _, n := range ns {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out[ip.Unmap()] = n
			}
		}
	}
	return out, nil
}

// ipv4MAC is the MAC our rule gives an IPv4 gateway (nil for IPv6).
func ipv4MAC(ip netip.Addr) net.HardwareAddr {
	if !ip.Is4() {
		return nil
	}
	a := ip.As4()
	return net.HardwareAddr{0x0a, 0x58, a[0], a[1], a[2], a[3]}
}
