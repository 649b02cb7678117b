package compiler

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Overlay configures the Geneve overlay: other nodes' pods (and the nodes
// themselves) are reached through one flow-based tunnel port, each packet
// sent with tun_dst set to the owning node's InternalIP (see
// flows/README.md, "Overlay (Geneve)").
type Overlay struct {
	// TunnelPort is the OpenFlow port of the flow-based Geneve port (0: no
	// overlay).
	TunnelPort uint32
	// GatewayMAC is this node's gateway (LOCAL port) MAC: packets from the
	// tunnel get it as their destination MAC.
	GatewayMAC net.HardwareAddr
}

// checkOverlay rejects overlay settings that would compile flows OVS refuses or
// that cannot work together.
func (cfg *Config) checkOverlay() error {
	o := cfg.Overlay
	switch {
	case o.TunnelPort == 0 && len(o.GatewayMAC) == 0:
		return nil
	case o.TunnelPort == 0:
		return fmt.Errorf("overlay: a gateway MAC without a tunnel port")
	case o.TunnelPort == PortLocal || o.TunnelPort >= 0xff00:
		return fmt.Errorf("overlay: tunnel port %s is not a port a Geneve interface can have", PortName(o.TunnelPort))
	case cfg.UplinkPort != 0:
		return fmt.Errorf("overlay: tunnel port %s and uplink port %s exclude each other (the uplink is the flat-L2 mode)", PortName(o.TunnelPort), PortName(cfg.UplinkPort))
	case o.TunnelPort == cfg.GatewayPort:
		return fmt.Errorf("overlay: tunnel port and gateway port are both %s", PortName(o.TunnelPort))
	}
	return checkUnicastMAC(o.GatewayMAC)
}

func checkUnicastMAC(mac net.HardwareAddr) error {
	if len(mac) != 6 || mac[0]&1 != 0 || bytes.Equal(mac, make(net.HardwareAddr, 6)) {
		return fmt.Errorf("overlay: gateway MAC %q is not a unicast Ethernet address", mac.String())
	}
	return nil
}

// NodeCookie is the cookie of a remote node's tunnel flows.
func NodeCookie(name string) openflow.Cookie {
	return openflow.NewCookie(openflow.KindNode, "node/"+name)
}

// remoteNode reports whether n is a remote node of the overlay: not this
// node, with a tunnel endpoint and at least one pod CIDR. Other nodes get
// no flows (their pods cannot be reached: fail closed).
func (cfg *Config) remoteNode(n *model.Node) bool {
	return cfg.Overlay.TunnelPort != 0 && n != nil && n.Name != cfg.Node && n.TunnelIP().IsValid() && len(n.PodCIDRs) > 0
}

// overlayFlows are a remote node's tunnel flows: what it may send us
// (table 0) and what we send it (table 60).
func overlayFlows(cfg Config, n, local *model.Node) []openflow.Flow {
	if !cfg.remoteNode(n) {
		return nil
	}
	cookie := NodeCookie(n.Name)
	f := func(table uint8, prio uint16, match openflow.Match, actions openflow.Actions) openflow.Flow {
		return openflow.Flow{Table: table, Priority: prio, Cookie: cookie, Match: match, Actions: actions}
	}
	endpoint := n.TunnelIP()
	from := []openflow.Field{openflow.InPort(cfg.Overlay.TunnelPort), openflow.TunnelSrc(endpoint)}
	// A packet for this node's host (LOCAL) must carry its MAC or the
	// kernel drops it; delivery to a pod rewrites it to the pod's anyway.
	admit := do(openflow.SetEthDst(openflow.MACFrom(cfg.Overlay.GatewayMAC)), openflow.Goto(TableConntrack))
	// Our own endpoint as the outer source: n admits our packets only from
	// our InternalIP, and without it ovs-vswitchd takes the route's
	// preferred source, another address on a host with several (the port
	// has options:local_ip=flow for this).
	send := do(openflow.SetTunnelDst(endpoint), openflow.Output(cfg.Overlay.TunnelPort))
	if self := localEndpoint(local, endpoint); self.IsValid() {
		send = do(openflow.SetTunnelSrc(self), openflow.SetTunnelDst(endpoint), openflow.Output(cfg.Overlay.TunnelPort))
	}
	// The node's pod CIDRs and its own addresses: pods reach its host
	// through the tunnel too, so that the replies (its host routes our pod
	// CIDR into its bridge) come back the same way and both nodes'
	// conntrack see both directions.
	owned := slices.Clone(n.PodCIDRs)
	for _, ip := range n.InternalIPs {
		owned = append(owned, netip.PrefixFrom(ip, ip.BitLen()))
	}
	var flows []openflow.Flow
	for _, p := range owned {
		flows = append(flows,
			f(TableClassify, prioClassifyTunnelIn, srcMatch(p, from...), admit),
			f(TableForward, prioTunnelOut, dstMatch(p), send))
	}
	return flows
}

// localEndpoint is this node's tunnel source towards a peer endpoint: its
// first InternalIP of the peer's family (zero when it has none, or no Node).
func localEndpoint(local *model.Node, peer netip.Addr) netip.Addr {
	if local == nil {
		return netip.Addr{}
	}
	for _, ip := range local.InternalIPs {
		if ip.Is4() == peer.Is4() {
			return ip
		}
	}
	return netip.Addr{}
}

// localGatewayIPs are this node's gateway addresses when they are not among
// cfg.NodeIPs already: host traffic to local pods has the gateway address as
// its source (the pod CIDR is a connected route of the LOCAL port) and must
// stay node-local. Without NodeIPs all gateway traffic is node-local
// anyway.
func localGatewayIPs(cfg Config, c *model.Cluster) []netip.Addr {
	n := c.Nodes[cfg.Node]
	if cfg.Overlay.TunnelPort == 0 || n == nil || len(cfg.NodeIPs) == 0 {
		return nil
	}
	var out []netip.Addr
	for _, gw := range n.GatewayIPs() {
		if !slices.Contains(cfg.NodeIPs, gw) {
			out = append(out, gw)
		}
	}
	return out
}
