package inspect

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// TunnelEnd is the other node of a packet that crosses the overlay's
// tunnel on this node: the node it is sent to, or comes from, and that
// node's tunnel endpoint (its InternalIP).
type TunnelEnd struct {
	Node     string     `json:"node"`
	Endpoint netip.Addr `json:"endpoint"`
}

// Why a pod of another node is not traced on an overlay node (Verify's
// "not checked" counts; TraceOn notes say it with the pod's name).
const (
	skipNoTunnel     = "pods of nodes this node has no tunnel to (no valid Node with an InternalIP and a podCIDR)"
	skipOutsideCIDRs = "pods of other nodes with an address outside their node's podCIDRs (the tunnel flows do not carry it)"
)

// remoteNode returns node name when it is a remote node of this node's
// overlay as the compiler decides it (another node with a tunnel endpoint
// and a pod CIDR), else nil. Nil without an overlay.
func (v *NodeView) remoteNode(name string) *model.Node {
	if v.Config.TunnelPort == 0 || v.Node == nil || name == "" || name == v.Config.Node {
		return nil
	}
	n := v.Node.Cluster.Nodes[name]
	if n == nil || !n.TunnelIP().IsValid() || len(n.PodCIDRs) == 0 {
		return nil
	}
	return n
}

// tunnelNodeOf returns the remote node whose pod CIDRs or InternalIPs hold
// ip: the overlay sends packets for ip to that node and accepts packets
// from ip only from it. Nil when no remote node owns ip (or no overlay).
func (v *NodeView) tunnelNodeOf(ip netip.Addr) *model.Node {
	if v.Config.TunnelPort == 0 || v.Node == nil {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(v.Node.Cluster.Nodes)) {
		if n := v.remoteNode(name); n != nil && owns(n, ip) {
			return n
		}
	}
	return nil
}

// owns reports whether ip is one of n's pod CIDRs' or one of its
// InternalIPs.
func owns(n *model.Node, ip netip.Addr) bool {
	if slices.Contains(n.InternalIPs, ip) {
		return true
	}
	for _, p := range n.PodCIDRs {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// overlayProblem says why connections of p, a pod of another node, cannot
// be traced on this overlay node: its node has no tunnel here, or one of
// its addresses is outside its node's pod CIDRs (the bridge drops it from
// the tunnel as spoofed and sends it to whichever node owns it). category
// is "" when there is no problem, or no overlay, or p is no remote pod.
func (v *NodeView) overlayProblem(p *model.Pod) (category, detail string) {
	if v.Config.TunnelPort == 0 || p == nil || p.Node == v.Config.Node {
		return "", ""
	}
	n := v.remoteNode(p.Node)
	if n == nil {
		return skipNoTunnel, fmt.Sprintf("pod %s runs on node %s, to which node %s has no tunnel (no valid Node object with an InternalIP and a podCIDR): its connections are not traced",
			printable.String(p.Key()), printable.String(p.Node), printable.String(v.Config.Node))
	}
	for _, ip := range p.IPs {
		if !owns(n, ip) {
			return skipOutsideCIDRs, fmt.Sprintf("pod %s's address %s is outside the podCIDRs of its node %s: the tunnel flows do not carry it, so its connections are not traced",
				printable.String(p.Key()), ip, printable.String(n.Name))
		}
	}
	return "", ""
}

// tunnelHead is the start of a trace packet that arrives through the
// tunnel from node n.
func (v *NodeView) tunnelHead(n *model.Node) string {
	field := "tun_src"
	if n.TunnelIP().Is6() {
		field = "tun_ipv6_src"
	}
	return fmt.Sprintf("in_port=%s,%s=%s", compiler.PortName(v.Config.TunnelPort), field, n.TunnelIP())
}

func tunnelEnd(n *model.Node) *TunnelEnd {
	if n == nil {
		return nil
	}
	return &TunnelEnd{Node: n.Name, Endpoint: n.TunnelIP()}
}

// tunneled reports whether the pipeline output the packet to the overlay's
// tunnel port.
func (pr probe) tunneled(t *Trace) bool {
	return pr.tunnelPort != "" && slices.Contains(t.Outputs, pr.tunnelPort)
}

// sent reports whether the bridge sent the packet on: the datapath output
// it, or the pipeline output it to the tunnel. The latter counts even when
// the datapath could not encapsulate it (no underlay route to the
// endpoint): the policy decision was to send it.
func (pr probe) sent(t *Trace) bool {
	return t.Delivered || pr.tunneled(t)
}

// verdict says what the bridge did, naming the tunnel destination of a
// packet output to the tunnel.
func (pr probe) verdict(t *Trace) string {
	if !pr.tunneled(t) {
		return t.Verdict()
	}
	dst := "no tun_dst set"
	if t.TunnelDst != "" {
		dst = "tun_dst " + printable.String(t.TunnelDst)
	}
	s := fmt.Sprintf("sent into the tunnel (port %s, %s)", pr.tunnelPort, dst)
	if len(t.Outputs) > 1 {
		s += " and output to port " + printable.String(strings.Join(t.Outputs, ", "))
	}
	if !t.Delivered {
		why := "the datapath sent it nowhere"
		if len(t.Reports) > 0 {
			why = printable.String(strings.Join(t.Reports, "; "))
		}
		s += fmt.Sprintf(", which the datapath could not encapsulate (%s: check the underlay's route to the endpoint)", why)
	}
	return s
}

// judgeTunnel checks the tunnel destination of an allowed packet the model
// sends to a remote node ("" when right).
func (pr probe) judgeTunnel(t *Trace) string {
	if pr.tunnelTo == nil {
		return ""
	}
	want := pr.tunnelTo.TunnelIP()
	if got, err := netip.ParseAddr(t.TunnelDst); err != nil || got != want {
		return fmt.Sprintf("the model allows it and the bridge %s, but node %s's tunnel endpoint is %s",
			pr.verdict(t), printable.String(pr.tunnelTo.Name), want)
	}
	return ""
}
