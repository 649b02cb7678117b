package compiler

import (
	"net"
	"net/netip"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// PodCookie is the cookie of a local pod's own flows (port security,
// forwarding, self-traffic, isolation).
func PodCookie(pod *model.Pod) openflow.Cookie {
	return openflow.NewCookie(openflow.KindPod, "pod/"+pod.Key())
}

// linkLocal6 is fe80::/10: pods use link-local sources for neighbour discovery.
var linkLocal6 = netip.MustParsePrefix("fe80::/10")

// podFlows are the flows one local pod needs regardless of policy rules:
// port security, delivery, self-traffic, and the isolation drops.
func podFlows(cfg Config, pod *model.Pod, b Binding, ingressIsolated, egressIsolated bool) []openflow.Flow {
	cookie := PodCookie(pod)
	f := func(table uint8, prio uint16, match openflow.Match, actions openflow.Actions) openflow.Flow {
		return openflow.Flow{Table: table, Priority: prio, Cookie: cookie, Match: match, Actions: actions}
	}
	mac := openflow.MACFrom(b.MAC)
	inPort, ethSrc := openflow.InPort(b.OFPort), openflow.EthSrc(mac)
	toConntrack, toForward := gotoTable(TableConntrack), gotoTable(TableForward)
	output := do(openflow.Output(b.OFPort))
	// Delivery rewrites the destination MAC: a DNATed packet (to a Service)
	// was addressed to the gateway's MAC.
	setMAC := openflow.SetEthDst(mac)
	deliver, deliverInPort := do(setMAC, openflow.Output(b.OFPort)), do(setMAC, openflow.OutputInPort{})
	var flows []openflow.Flow
	var v6 []netip.Addr
	for _, ip := range pod.IPs {
		hairpin := cfg.HairpinIPv4
		if ip.Is6() {
			hairpin = cfg.HairpinIPv6
		}
		h := host(ip)
		// Port security: the pod may send only from its own MAC and IPs.
		flows = append(flows, f(TableClassify, prioClassifyPort, srcMatch(h, inPort, ethSrc), toConntrack))
		// A reply to a hairpin connection (see table 60) gets its
		// destination back before conntrack (which un-DNATs it).
		flows = append(flows, f(TableClassify, prioClassifyHairpin,
			openflow.NewMatch(ipProto(ip), inPort, ethSrc, openflow.HostSrc(ip), openflow.HostDst(hairpin)),
			do(openflow.SetIPDst(ip), openflow.Goto(TableConntrack))))
		// Nobody else may send as the pod: its address from the gateway,
		// the uplink or the tunnel is spoofed (it would pass as the pod's
		// own traffic: egress is judged by in_port, and conntrack entries
		// are keyed by address).
		// The drop carries the node's cookie: it guards the node's
		// gateway and uplink accept flows, and must stay on the bridge
		// with them when OVS refuses the pod's own flows (the agent then
		// removes the pod's cookie, while rules of other origins may still
		// admit the pod's address as a peer).
		for _, port := range []uint32{cfg.GatewayPort, cfg.UplinkPort, cfg.Overlay.TunnelPort} {
			if port != 0 {
				drop := f(TableClassify, prioClassifySpoofed, srcMatch(h, openflow.InPort(port)), openflow.Actions{})
				drop.Cookie = nodeCookie
				flows = append(flows, drop)
			}
		}
		// A pod always reaches itself, through its own port (its Service).
		self := openflow.NewMatch(ipProto(ip), openflow.HostSrc(ip), openflow.HostDst(ip), inPort)
		flows = append(flows, f(TableEgress, PrioInfra, self, gotoTable(TableCommit)))
		// Delivery by destination address, so the pod the policy checked is
		// the pod that receives; back out of its own port for replies of
		// its hairpin connections (OpenFlow drops output to in_port).
		flows = append(flows,
			f(TableForward, prioDeliver, dstMatch(h), deliver),
			f(TableForward, prioDeliverInPort, dstMatch(h, inPort), deliverInPort))
		// Hairpin: a pod reached itself through a Service. Its source
		// becomes the hairpin address, else the pod would answer itself
		// directly (to an address it did not call).
		flows = append(flows, f(TableForward, prioHairpin, self,
			do(openflow.SetIPSrc(hairpin), setMAC, openflow.OutputInPort{})))
		if ingressIsolated {
			flows = append(flows, f(TableIngress, PrioIsolation, dstMatch(h), openflow.Actions{}))
		}
		if ip.Is4() {
			flows = append(flows,
				f(TableClassify, prioClassifyPort, openflow.NewMatch(openflow.ARP, inPort, ethSrc, openflow.ARPSenderIP(ip), openflow.ARPSenderMAC(mac)), toForward),
				f(TableForward, prioDeliver, openflow.NewMatch(openflow.ARP, openflow.ARPTargetIP(ip)), output))
		} else {
			v6 = append(v6, ip)
			flows = append(flows, f(TableForward, prioDeliverND,
				openflow.NewMatch(openflow.ICMP6, ndSolicit, icmpCode0, openflow.NDTarget(h)), output))
		}
	}
	if len(v6) > 0 {
		// Neighbour discovery: solicitations from own, link-local or
		// unspecified (DAD) sources; advertisements only for own targets.
		srcs := []netip.Prefix{linkLocal6, netip.MustParsePrefix("::/128")}
		targets := []netip.Prefix{linkLocal6}
		for _, ip := range v6 {
			srcs = append(srcs, netip.PrefixFrom(ip, 128))
			targets = append(targets, netip.PrefixFrom(ip, 128))
		}
		for _, s := range srcs {
			flows = append(flows, f(TableClassify, prioClassifyND,
				openflow.NewMatch(openflow.ICMP6, inPort, ethSrc, openflow.IPSrc(s), ndSolicit, icmpCode0), toForward))
		}
		for _, t := range targets {
			flows = append(flows, f(TableClassify, prioClassifyND,
				openflow.NewMatch(openflow.ICMP6, inPort, ethSrc, ndAdvert, icmpCode0, openflow.NDTarget(t)), toForward))
		}
		flows = append(flows, f(TableClassify, prioClassifyND,
			openflow.NewMatch(openflow.ICMP6, inPort, ethSrc, ndRouterSolicit, icmpCode0), toForward))
	}
	if egressIsolated && len(pod.IPs) > 0 {
		flows = append(flows, f(TableEgress, PrioIsolation, openflow.NewMatch(inPort), openflow.Actions{}))
	}
	return flows
}

// Default hairpin source addresses (Config.HairpinIPv4/IPv6): a pod that
// reaches itself through a Service sees the connection come from here; a
// packet it sends to this address goes to itself. Link-local IPv4 away from
// the addresses clouds serve (169.254.169.0/24: metadata, DNS, NTP;
// 169.254.20.10: NodeLocal DNSCache) and an address of the ULA range for
// IPv6. kube-proxy masquerades such connections to the node's address for
// the same reason.
var (
	DefaultHairpinIPv4 = netip.MustParseAddr("169.254.123.253")
	DefaultHairpinIPv6 = netip.MustParseAddr("fd69::fffd")
)

// remoteFlows forward other nodes' pods to the uplink port.
func remoteFlows(cfg Config, pods []*model.Pod) []openflow.Flow {
	if cfg.UplinkPort == 0 {
		return nil
	}
	out := do(openflow.Output(cfg.UplinkPort))
	var flows []openflow.Flow
	for _, pod := range pods {
		if pod.Node == cfg.Node || !pod.Active() {
			continue
		}
		cookie := remoteCookie(pod)
		f := func(prio uint16, match openflow.Match) openflow.Flow {
			return openflow.Flow{Table: TableForward, Priority: prio, Cookie: cookie, Match: match, Actions: out}
		}
		for _, ip := range pod.IPs {
			flows = append(flows, f(prioRemote, dstMatch(host(ip))))
			if ip.Is4() {
				flows = append(flows, f(prioRemote, openflow.NewMatch(openflow.ARP, openflow.ARPTargetIP(ip))))
			} else {
				flows = append(flows, f(prioRemoteND, openflow.NewMatch(openflow.ICMP6, ndSolicit, icmpCode0, openflow.NDTarget(host(ip)))))
			}
		}
	}
	return flows
}

func remoteCookie(pod *model.Pod) openflow.Cookie {
	return openflow.NewCookie(openflow.KindPod, "remote/"+pod.Key())
}

// FirstDefaultOFPort is where default port numbers start (see DefaultBindings).
const FirstDefaultOFPort = 10

// DefaultBindings completes explicit bindings for every active pod of node:
// pods without one get, in namespace/name order, the lowest free OpenFlow
// port from FirstDefaultOFPort up, and a MAC derived from their IPv4 address
// (0a:58:a.b.c.d, as OVN does) or, without IPv4, from a hash of their UID.
// Explicit bindings for pods that are not on node are ignored.
func DefaultBindings(c *model.Cluster, node string, explicit map[string]Binding, reserved ...uint32) map[string]Binding {
	out := map[string]Binding{}
	used := map[uint32]bool{}
	for _, r := range reserved {
		used[r] = true
	}
	var need []*model.Pod
	for _, pod := range c.SortedPods() {
		if pod.Node != node || !pod.Active() {
			continue
		}
		if b, ok := explicit[pod.Key()]; ok {
			out[pod.Key()] = b
			used[b.OFPort] = true
			continue
		}
		need = append(need, pod)
	}
	next := uint32(FirstDefaultOFPort)
	for _, pod := range need {
		for used[next] {
			next++
		}
		used[next] = true
		out[pod.Key()] = Binding{OFPort: next, MAC: DefaultMAC(pod)}
	}
	return out
}

// DefaultMAC is the MAC DefaultBindings gives a pod.
func DefaultMAC(pod *model.Pod) net.HardwareAddr {
	for _, ip := range pod.IPs {
		if ip.Is4() {
			a := ip.As4()
			return net.HardwareAddr{0x0a, 0x58, a[0], a[1], a[2], a[3]}
		}
	}
	h := openflow.NewCookie(0, pod.UID)
	return net.HardwareAddr{0x0a, 0x58, byte(h >> 32), byte(h >> 24), byte(h >> 16), byte(h >> 8)}
}
