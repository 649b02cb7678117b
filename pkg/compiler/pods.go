package compiler

import (
	"fmt"
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
	f := func(table uint8, prio uint16, match, actions string) openflow.Flow {
		return openflow.Flow{Table: table, Priority: prio, Cookie: cookie, Match: match, Actions: actions}
	}
	in := fmt.Sprintf("in_port=%s,dl_src=%s", PortName(b.OFPort), b.MAC)
	inPort := "in_port=" + PortName(b.OFPort)
	// Delivery rewrites the destination MAC: a DNATed packet (to a Service)
	// was addressed to the gateway's MAC.
	setMAC := "set_field:" + b.MAC.String() + "->eth_dst,"
	out := setMAC + outputAction(b.OFPort)
	var flows []openflow.Flow
	var v6 []netip.Addr
	for _, ip := range pod.IPs {
		hairpin := cfg.HairpinIPv4
		if ip.Is6() {
			hairpin = cfg.HairpinIPv6
		}
		// Port security: the pod may send only from its own MAC and IPs.
		flows = append(flows, f(TableClassify, prioPort, ipMatch(ip, "src", in), gotoTable(TableConntrack)))
		// A reply to a hairpin connection (see table 60) gets its
		// destination back before conntrack (which un-DNATs it).
		flows = append(flows, f(TableClassify, prioHairpinReply, ipMatch(ip, "src", in)+","+ipField(ip, "dst")+"="+hairpin.String(),
			"set_field:"+ip.String()+"->"+setFieldName(ip, "dst")+","+gotoTable(TableConntrack)))
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
				drop := f(TableClassify, prioSpoofedPod, ipMatch(ip, "src", "in_port="+PortName(port)), "drop")
				drop.Cookie = nodeCookie
				flows = append(flows, drop)
			}
		}
		// A pod always reaches itself, through its own port (its Service).
		self := ipMatch(ip, "src", "") + "," + ipField(ip, "dst") + "=" + ip.String()
		flows = append(flows, f(TableEgress, PrioInfra, self+","+inPort, gotoTable(TableCommit)))
		// Delivery by destination address, so the pod the policy checked is
		// the pod that receives; back out of its own port for replies of
		// its hairpin connections (OpenFlow drops output to in_port).
		flows = append(flows,
			f(TableForward, prioPort, ipMatch(ip, "dst", ""), out),
			f(TableForward, prioDeliverInPort, ipMatch(ip, "dst", inPort), setMAC+"IN_PORT"))
		// Hairpin: a pod reached itself through a Service. Its source
		// becomes the hairpin address, else the pod would answer itself
		// directly (to an address it did not call).
		flows = append(flows, f(TableForward, prioHairpin, self+","+inPort,
			"set_field:"+hairpin.String()+"->"+setFieldName(ip, "src")+","+setMAC+"IN_PORT"))
		if ingressIsolated {
			flows = append(flows, f(TableIngress, PrioIsolation, ipMatch(ip, "dst", ""), "drop"))
		}
		if ip.Is4() {
			flows = append(flows,
				f(TableClassify, prioPort, fmt.Sprintf("arp,%s,arp_spa=%s,arp_sha=%s", in, ip, b.MAC), gotoTable(TableForward)),
				f(TableForward, prioPort, "arp,arp_tpa="+ip.String(), outputAction(b.OFPort)))
		} else {
			v6 = append(v6, ip)
			flows = append(flows, f(TableForward, prioPortND,
				"icmp6,icmp_type=135,icmp_code=0,nd_target="+ip.String(), outputAction(b.OFPort)))
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
			flows = append(flows, f(TableClassify, prioPortND,
				fmt.Sprintf("icmp6,%s,ipv6_src=%s,icmp_type=135,icmp_code=0", in, prefixText(s)), gotoTable(TableForward)))
		}
		for _, t := range targets {
			flows = append(flows, f(TableClassify, prioPortND,
				fmt.Sprintf("icmp6,%s,icmp_type=136,icmp_code=0,nd_target=%s", in, prefixText(t)), gotoTable(TableForward)))
		}
		flows = append(flows, f(TableClassify, prioPortND,
			fmt.Sprintf("icmp6,%s,icmp_type=133,icmp_code=0", in), gotoTable(TableForward)))
	}
	if egressIsolated && len(pod.IPs) > 0 {
		flows = append(flows, f(TableEgress, PrioIsolation, "in_port="+PortName(b.OFPort), "drop"))
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

// Priorities of the hairpin flows: distinct from prioPort/prioPortND so
// that no two flows that may overlap share a priority.
const (
	prioSpoofedPod    uint16 = 106 // table 0: above the node-local flows
	prioHairpinReply  uint16 = 103 // table 0
	prioDeliverInPort uint16 = 105 // table 60
	prioHairpin       uint16 = 107 // table 60
)

// setFieldName is the field set_field names for an address (as OVS prints).
func setFieldName(ip netip.Addr, dir string) string {
	if ip.Is6() {
		return "ipv6_" + dir
	}
	return "ip_" + dir
}

func ipField(ip netip.Addr, dir string) string {
	if ip.Is6() {
		return "ipv6_" + dir
	}
	return "nw_" + dir
}

func prefixText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.Masked().String()
}

// remoteFlows forward other nodes' pods to the uplink port.
func remoteFlows(cfg Config, pods []*model.Pod) []openflow.Flow {
	if cfg.UplinkPort == 0 {
		return nil
	}
	out := outputAction(cfg.UplinkPort)
	var flows []openflow.Flow
	for _, pod := range pods {
		if pod.Node == cfg.Node || !pod.Active() {
			continue
		}
		cookie := remoteCookie(pod)
		for _, ip := range pod.IPs {
			flows = append(flows, openflow.Flow{Table: TableForward, Priority: prioPort - 10, Cookie: cookie, Match: ipMatch(ip, "dst", ""), Actions: out})
			if ip.Is4() {
				flows = append(flows, openflow.Flow{Table: TableForward, Priority: prioPort - 10, Cookie: cookie, Match: "arp,arp_tpa=" + ip.String(), Actions: out})
			} else {
				flows = append(flows, openflow.Flow{Table: TableForward, Priority: prioPortND - 10, Cookie: cookie, Match: "icmp6,icmp_type=135,icmp_code=0,nd_target=" + ip.String(), Actions: out})
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
