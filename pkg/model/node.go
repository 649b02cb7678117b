package model

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"sort"
	"time"
)

// Node is the part of a Node that the overlay depends on: where its tunnel
// ends and which pod addresses it owns.
type Node struct {
	Name string
	// InternalIPs are its InternalIP addresses, IPv4 first, deduplicated.
	InternalIPs []netip.Addr
	// PodCIDRs are masked, at most one per family, IPv4 first.
	PodCIDRs []netip.Prefix
	// Created is the Node's metadata.creationTimestamp: of two nodes that
	// claim one address, the older keeps it (RefusedNodes).
	Created time.Time
}

// TunnelIP is the node's tunnel endpoint: its first InternalIP, IPv4
// preferred; the zero Addr when it has none.
func (n *Node) TunnelIP() netip.Addr {
	var first netip.Addr
	for _, ip := range n.InternalIPs {
		if ip.Is4() {
			return ip
		}
		if !first.IsValid() {
			first = ip
		}
	}
	return first
}

// GatewayIPs are the first addresses of its pod CIDRs (network + 1): the
// addresses of its bridge's LOCAL port, its pods' default gateway.
func (n *Node) GatewayIPs() []netip.Addr {
	var out []netip.Addr
	for _, p := range n.PodCIDRs {
		if gw := p.Masked().Addr().Next(); gw.IsValid() && p.Contains(gw) {
			out = append(out, gw)
		}
	}
	return out
}

// GatewayMAC is the MAC of a node's gateway (its bridge's LOCAL port):
// 0a:58 and the 4 bytes of its IPv4 gateway, like pods' MACs, or for a node
// without IPv4 pod CIDR 0a:58 and the first 4 bytes of the FNV-1a hash of
// its name. Every node computes every node's MAC the same way, so none has
// to be published.
func GatewayMAC(n *Node) net.HardwareAddr {
	for _, gw := range n.GatewayIPs() {
		if gw.Is4() {
			a := gw.As4()
			return net.HardwareAddr{0x0a, 0x58, a[0], a[1], a[2], a[3]}
		}
	}
	h := fnv.New32a()
	h.Write([]byte(n.Name))
	s := h.Sum(nil)
	return net.HardwareAddr{0x0a, 0x58, s[0], s[1], s[2], s[3]}
}

// AddNode inserts or replaces a node (by name).
func (c *Cluster) AddNode(n *Node) { c.Nodes[n.Name] = n }

// SortedNodes returns the nodes ordered by name.
func (c *Cluster) SortedNodes() []*Node {
	out := make([]*Node, 0, len(c.Nodes))
	for _, n := range c.Nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// RefusedNodes decides which nodes' claims the overlay can honour: a node
// claims its pod CIDRs and its InternalIPs (the overlay sends their traffic
// to its tunnel endpoint and accepts them from there only). A node whose
// claim overlaps one of a node decided before it is refused, as is a node
// with a pod CIDR of prefix length 0, a pod CIDR or InternalIP in a
// special-purpose range (loopback, link-local, multicast, ...), or a pod
// CIDR that holds one of its own InternalIPs (the host route to its pods would replace the default route,
// or capture its tunnel traffic). The local node is decided first,
// with localIPs (this host's other addresses) among its claims, and is
// never refused; the others by creation time, then name, so that the older
// node keeps an address (a Node created later cannot take over another's
// pods or host). The result maps each refused node to why; refused nodes
// must be treated as absent: no tunnel flows, no host routes.
func RefusedNodes(local string, localIPs []netip.Addr, nodes []*Node) map[string]string {
	order := make([]*Node, 0, len(nodes))
	for _, n := range nodes {
		if n != nil {
			order = append(order, n)
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if (a.Name == local) != (b.Name == local) {
			return a.Name == local
		}
		if !a.Created.Equal(b.Created) {
			return a.Created.Before(b.Created)
		}
		return a.Name < b.Name
	})
	cl := claims{exact: map[netip.Prefix]string{}, within: map[netip.Prefix]heldClaim{}}
	refused := map[string]string{}
	localSeen := false
	for _, n := range order {
		var mine []netip.Prefix
		for _, p := range n.PodCIDRs {
			mine = append(mine, p.Masked())
		}
		for _, ip := range n.InternalIPs {
			mine = append(mine, netip.PrefixFrom(ip, ip.BitLen()))
		}
		if n.Name == local {
			localSeen = true
			for _, ip := range localIPs {
				mine = append(mine, netip.PrefixFrom(ip, ip.BitLen()))
			}
			cl.add(n.Name, mine)
			continue
		}
		if !localSeen {
			localSeen = true
			var ips []netip.Prefix
			for _, ip := range localIPs {
				ips = append(ips, netip.PrefixFrom(ip, ip.BitLen()))
			}
			cl.add(local, ips)
		}
		if why := ownConflict(n); why != "" {
			refused[n.Name] = why
			continue
		}
		for _, p := range mine {
			if owner, q, ok := cl.overlap(p); ok {
				refused[n.Name] = fmt.Sprintf("its %s overlaps %s of node %s", p, q, owner)
				break
			}
		}
		if refused[n.Name] == "" {
			cl.add(n.Name, mine)
		}
	}
	return refused
}

// specialRanges are addresses no node may claim: neither pod CIDRs (the
// host route and the table-60 flows would take, say, the cloud metadata
// address 169.254.169.254 into the tunnel) nor tunnel endpoints.
var specialRanges = []struct {
	p    netip.Prefix
	what string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// ClaimProblem says why a node's claims cannot be used whatever the other
// nodes claim ("" when they can): the reasons RefusedNodes refuses a node
// by itself. The agent checks its own Node with it.
func ClaimProblem(n *Node) string { return ownConflict(n) }

// ownConflict says why a node's own claims cannot work together or cannot
// be a node's: a pod CIDR of prefix length 0 (every destination of its
// family, and a host route that would replace the default route: refused
// even when no other claim of that family exists), a pod CIDR or InternalIP
// in a special-purpose range, or a pod CIDR that holds one of its
// InternalIPs.
func ownConflict(n *Node) string {
	for _, p := range n.PodCIDRs {
		if p.Bits() == 0 {
			return fmt.Sprintf("its pod CIDR %s is every address of its family", p.Masked())
		}
		for _, sr := range specialRanges {
			if p.Overlaps(sr.p) {
				return fmt.Sprintf("its pod CIDR %s overlaps %s (%s)", p.Masked(), sr.p, sr.what)
			}
		}
	}
	for _, ip := range n.InternalIPs {
		for _, sr := range specialRanges {
			if sr.p.Contains(ip) {
				return fmt.Sprintf("its InternalIP %s is in %s (%s)", ip, sr.p, sr.what)
			}
		}
	}
	for _, p := range n.PodCIDRs {
		for _, ip := range n.InternalIPs {
			if p.Contains(ip) {
				return fmt.Sprintf("its pod CIDR %s holds its InternalIP %s", p.Masked(), ip)
			}
		}
	}
	return ""
}

// claims are the accepted claims (exact: prefix → owner) and every prefix
// that holds one of them (within: prefix → the first claim inside and its
// owner). Two prefixes overlap exactly when one holds the other.
type claims struct {
	exact  map[netip.Prefix]string
	within map[netip.Prefix]heldClaim
}

type heldClaim struct {
	owner string
	claim netip.Prefix
}

func (c claims) add(owner string, ps []netip.Prefix) {
	for _, p := range ps {
		if _, ok := c.exact[p]; !ok {
			c.exact[p] = owner
		}
		for b := p.Bits(); b >= 0; b-- {
			q := netip.PrefixFrom(p.Addr(), b).Masked()
			if _, ok := c.within[q]; ok {
				break // and so are all shorter ones
			}
			c.within[q] = heldClaim{owner, p}
		}
	}
}

// overlap returns an accepted claim that holds p or that p holds.
func (c claims) overlap(p netip.Prefix) (owner string, q netip.Prefix, ok bool) {
	if o, exact := c.exact[p]; exact {
		return o, p, true
	}
	if h, ok := c.within[p]; ok {
		return h.owner, h.claim, true
	}
	for b := p.Bits() - 1; b >= 0; b-- {
		q := netip.PrefixFrom(p.Addr(), b).Masked()
		if owner, ok := c.exact[q]; ok {
			return owner, q, true
		}
	}
	return "", netip.Prefix{}, false
}
