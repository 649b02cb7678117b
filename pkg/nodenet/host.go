// Package nodenet is the agent's netlink side of the Geneve overlay: the
// node's gateway addresses and MTU on the bridge's LOCAL device, the host
// routes and neighbour entries that send other nodes' pod CIDRs into the
// bridge, the underlay MTU, and the CNI network configuration the agent
// writes for its node. It makes no policy decisions.
//
// Every netlink operation runs in the network namespace Host.NetNS (a path
// such as /var/run/netns/NODE; "" is the caller's own), where the bridge's
// LOCAL device lives: the host's in production, a test node's in the e2e.
//
// # Host routes (SyncRoutes)
//
// For every remote node R with a tunnel endpoint and for each of its pod
// CIDRs C, with G_R the first address of C:
//
//	ip route replace C via G_R dev BRIDGE onlink proto 78
//	ip neigh replace G_R lladdr GatewayMAC(R) dev BRIDGE nud permanent
//
// The route sends the host's traffic for R's pods into the bridge, where the
// flows tunnel it to R; the neighbour entry gives the packet R's gateway MAC
// without ARP or neighbour discovery (nothing answers for G_R on this
// node's bridge). Routes of protocol 78 on the bridge are ours: those not
// wanted any more are removed. A route to C of any other protocol is never
// replaced nor removed (it is reported as an error: the operator's route
// wins). Nor is a route added for a pod CIDR that holds an address of this
// host or a next hop of its routes, overlaps a subnet it is attached to, or
// has prefix length 0 (reported as errors): more specific than the host's
// own routes, it would send the host's underlay traffic into the bridge. Neighbour entries carry no protocol that netlink here could set,
// so a permanent entry on the bridge is taken as ours when its address was
// the gateway of one of our routes, or when it is an IPv4 address with the
// MAC our rule gives it (0a:58 and the address): those not wanted any more
// are removed, others left alone.
package nodenet

import (
	"fmt"

	"github.com/containernetworking/plugins/pkg/ns"
)

// RouteProtocol marks the host routes the agent owns (rtm_protocol, as
// "ip route ... proto 78" shows it). 78 is not assigned in iproute2's
// rt_protos.
const RouteProtocol = 78

// Host runs netlink operations in one network namespace.
type Host struct {
	// NetNS is the path of the network namespace ("" = the caller's own).
	NetNS string
}

// do runs f in the host's network namespace, on a locked OS thread when
// that is another one.
func (h Host) do(f func() error) error {
	if h.NetNS == "" {
		return f()
	}
	netns, err := ns.GetNS(h.NetNS)
	if err != nil {
		return fmt.Errorf("nodenet: network namespace %s: %w", h.NetNS, err)
	}
	defer netns.Close()
	return netns.Do(func(ns.NetNS) error { return f() })
}
