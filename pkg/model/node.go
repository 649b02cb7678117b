package model

import (
	"hash/fnv"
	"net"
	"net/netip"
	"sort"
)

// Node is the part of a Node that the overlay depends on: where its tunnel
// ends and which pod addresses it owns.
type Node struct {
	Name string
	// InternalIPs are its InternalIP addresses, IPv4 first, deduplicated.
	InternalIPs []netip.Addr
	// PodCIDRs are masked, at most one per family, IPv4 first.
	PodCIDRs []netip.Prefix
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
