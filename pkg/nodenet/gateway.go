package nodenet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Encapsulation overhead of Geneve without options: outer IP header (20
// bytes IPv4, 40 IPv6), UDP 8, Geneve 8, inner Ethernet 14.
const (
	GeneveOverheadIPv4 = 50
	GeneveOverheadIPv6 = 70
)

// minMTU is the smallest MTU a pod interface may get: IPv6 needs 1280
// (RFC 8200), and IPv4 pods would be unusable far below it anyway.
const minMTU = 1280

// PodMTU is the MTU of pod interfaces and the gateway when packets to other
// nodes are Geneve-encapsulated over an underlay of underlayMTU reached
// through the tunnel endpoint tunnelIP.
func PodMTU(underlayMTU int, tunnelIP netip.Addr) (int, error) {
	overhead := GeneveOverheadIPv4
	if tunnelIP.Is6() && !tunnelIP.Is4In6() {
		overhead = GeneveOverheadIPv6
	}
	mtu := underlayMTU - overhead
	if mtu < minMTU {
		return 0, fmt.Errorf("nodenet: underlay MTU %d leaves %d for pods after %d bytes of Geneve encapsulation, below %d", underlayMTU, mtu, overhead, minMTU)
	}
	return mtu, nil
}

// UnderlayMTU returns the MTU of the interface that holds ip (the node's
// tunnel endpoint). When that says nothing of the underlay — ip on the
// loopback device, or a host address (/32, /128) such as a routed node's
// address on a dummy device — it is at most the smallest MTU of the devices
// (and route MTUs) of the host's default routes of ip's family: the
// packets leave there.
func (h Host) UnderlayMTU(ip netip.Addr) (int, error) {
	if !ip.IsValid() {
		return 0, errors.New("nodenet: underlay MTU: no tunnel endpoint address")
	}
	ip = ip.Unmap()
	var mtu int
	err := h.do(func() error {
		addrs, err := netlinksafe.AddrList(nil, familyOf(ip))
		if err != nil {
			return fmt.Errorf("nodenet: list addresses: %w", err)
		}
		for _, a := range addrs {
			if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
				link, err := netlink.LinkByIndex(a.LinkIndex)
				if err != nil {
					return fmt.Errorf("nodenet: the interface of %s (index %d): %w", ip, a.LinkIndex, err)
				}
				mtu = link.Attrs().MTU
				ones, bits := a.Mask.Size()
				if link.Attrs().Flags&net.FlagLoopback != 0 || ones == bits {
					def, err := defaultRouteMTU(familyOf(ip))
					if err != nil {
						return fmt.Errorf("nodenet: %s is a host address on %s: %w", ip, link.Attrs().Name, err)
					}
					mtu = min(mtu, def)
				}
				return nil
			}
		}
		return fmt.Errorf("nodenet: no interface holds %s", ip)
	})
	return mtu, err
}

// ConfigureGateway makes the bridge's LOCAL device (named bridge) up with
// the given MTU (0: leave it) and the gateway addresses gws (each the
// gateway address with its pod CIDR's prefix length, e.g. 10.244.1.1/24,
// which also gives the connected route of the node's own pods). The same
// address with another prefix length is replaced; other addresses stay.
// IPv6 addresses skip duplicate address detection: nothing else on the
// bridge may own them, and they are needed at once.
func (h Host) ConfigureGateway(bridge string, gws []netip.Prefix, mtu int) error {
	for _, gw := range gws {
		if !gw.IsValid() || gw.Addr().Zone() != "" || !gw.Addr().IsGlobalUnicast() || gw.Addr().Is4In6() || gw.Masked().Addr() == gw.Addr() {
			return fmt.Errorf("nodenet: gateway %s: not a unicast address inside its prefix", gw)
		}
	}
	if mtu != 0 && (mtu < minMTU || mtu > 65535) {
		return fmt.Errorf("nodenet: gateway MTU %d is outside %d..65535", mtu, minMTU)
	}
	return h.do(func() error {
		link, err := netlinksafe.LinkByName(bridge)
		if err != nil {
			return fmt.Errorf("nodenet: gateway device %s: %w", bridge, err)
		}
		if mtu != 0 && link.Attrs().MTU != mtu {
			if err := netlink.LinkSetMTU(link, mtu); err != nil {
				return fmt.Errorf("nodenet: set MTU %d of %s: %w", mtu, bridge, err)
			}
		}
		if link.Attrs().Flags&net.FlagUp == 0 {
			if err := netlink.LinkSetUp(link); err != nil {
				return fmt.Errorf("nodenet: set %s up: %w", bridge, err)
			}
		}
		for _, gw := range gws {
			if err := ensureAddr(link, gw); err != nil {
				return fmt.Errorf("nodenet: address %s on %s: %w", gw, bridge, err)
			}
		}
		return nil
	})
}

func ensureAddr(link netlink.Link, gw netip.Prefix) error {
	addrs, err := netlinksafe.AddrList(link, familyOf(gw.Addr()))
	if err != nil {
		return err
	}
	present := false
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != gw.Addr() {
			continue
		}
		if ones, _ := a.Mask.Size(); ones == gw.Bits() {
			present = true
			continue
		}
		if err := netlink.AddrDel(link, &a); err != nil {
			return fmt.Errorf("remove %s: %w", a.IPNet, err)
		}
	}
	if present {
		return nil
	}
	a := &netlink.Addr{IPNet: prefixNet(gw)}
	if gw.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return netlink.AddrReplace(link, a)
}

// defaultRouteMTU is the smallest MTU of the devices of the main table's
// default routes of family (and of their route MTU, when set).
func defaultRouteMTU(family int) (int, error) {
	routes, err := netlinksafe.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return 0, fmt.Errorf("list routes: %w", err)
	}
	mtu := 0
	use := func(v int) {
		if v > 0 && (mtu == 0 || v < mtu) {
			mtu = v
		}
	}
	for _, r := range routes {
		if dst, ok := routeDst(r); !ok || dst.Bits() != 0 || r.Type != unix.RTN_UNICAST {
			continue
		}
		use(r.MTU)
		idxs := []int{r.LinkIndex}
		for _, nh := range r.MultiPath {
			idxs = append(idxs, nh.LinkIndex)
		}
		for _, idx := range idxs {
			if idx == 0 {
				continue
			}
			link, err := netlink.LinkByIndex(idx)
			if err != nil {
				return 0, fmt.Errorf("the device of a default route (index %d): %w", idx, err)
			}
			use(link.Attrs().MTU)
		}
	}
	if mtu == 0 {
		return 0, errors.New("no default route of its family to learn the underlay MTU from")
	}
	return mtu, nil
}

func familyOf(ip netip.Addr) int {
	if ip.Is4() || ip.Is4In6() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// prefixNet is p (not masked: the address itself) as a net.IPNet.
func prefixNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}
