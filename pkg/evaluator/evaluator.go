// Package evaluator is the reference answer to "is this connection allowed?",
// written straight from the NetworkPolicy semantics with no regard for flows.
// It is the oracle the compiled pipeline is tested against, and what
// `explain` reports from.
package evaluator

import (
	"fmt"
	"net/netip"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// Endpoint is one side of a connection.
type Endpoint struct {
	// Pod is set when the address belongs to a pod.
	Pod *model.Pod
	// IP is the address the connection uses.
	IP netip.Addr
	// HostOf is set when the endpoint is a node itself (kubelet, host
	// processes): the node's name.
	HostOf string
}

// PodEndpoint is pod's address of ip's family.
func PodEndpoint(p *model.Pod, ip netip.Addr) Endpoint { return Endpoint{Pod: p, IP: ip} }

// String names the endpoint for messages.
func (e Endpoint) String() string {
	switch {
	case e.Pod != nil:
		return fmt.Sprintf("pod %s (%s)", e.Pod.Key(), e.IP)
	case e.HostOf != "":
		return fmt.Sprintf("node %s (%s)", e.HostOf, e.IP)
	}
	return e.IP.String()
}

// Decision is the outcome for one direction.
type Decision struct {
	Allowed bool
	// Isolated is false when no policy isolates the pod for this direction
	// (or the side is not a pod).
	Isolated bool
	// Reason says why: the isolating policy, the rule that allowed, or a
	// special case such as node-local traffic.
	Reason string
	// Policy and Rule name the allowing rule when one did.
	Policy string
	Rule   int
}

// Verdict combines the source's egress and the destination's ingress.
type Verdict struct {
	Allowed bool
	Egress  Decision
	Ingress Decision
}

func (v Verdict) String() string {
	word := "denied"
	if v.Allowed {
		word = "allowed"
	}
	return fmt.Sprintf("%s (egress: %s; ingress: %s)", word, v.Egress.Reason, v.Ingress.Reason)
}

// Allowed decides a new connection from src to dst on proto/port.
func Allowed(c *model.Cluster, src, dst Endpoint, proto model.Protocol, port int32) Verdict {
	if dst.Pod != nil && src.HostOf != "" && src.HostOf == dst.Pod.Node {
		d := Decision{Allowed: true, Reason: "traffic from the pod's own node is always allowed"}
		return Verdict{Allowed: true, Egress: d, Ingress: d}
	}
	if src.Pod != nil && dst.Pod != nil && src.Pod.UID == dst.Pod.UID {
		d := Decision{Allowed: true, Reason: "a pod may always reach itself"}
		return Verdict{Allowed: true, Egress: d, Ingress: d}
	}
	v := Verdict{
		Egress:  decide(c, model.Egress, src.Pod, dst, proto, port, dst.Pod),
		Ingress: decide(c, model.Ingress, dst.Pod, src, proto, port, dst.Pod),
	}
	v.Allowed = v.Egress.Allowed && v.Ingress.Allowed
	return v
}

// decide evaluates direction d for the pod `self` talking to `peer`. dstPod is
// the destination pod (for named ports), nil when the destination is no pod.
func decide(c *model.Cluster, d model.Direction, self *model.Pod, peer Endpoint, proto model.Protocol, port int32, dstPod *model.Pod) Decision {
	if self == nil {
		return Decision{Allowed: true, Reason: fmt.Sprintf("not a pod: no %s policy applies", d)}
	}
	isolated, why := c.Isolated(self, d)
	if !isolated {
		return Decision{Allowed: true, Reason: fmt.Sprintf("pod %s is not isolated for %s", self.Key(), d)}
	}
	for _, p := range c.SortedPolicies() {
		if !c.PolicyAffects(p, d) || !c.Selects(p, self) {
			continue
		}
		for i, r := range p.Rules(d) {
			if ruleAllows(c, p, &r, peer, proto, port, dstPod) {
				return Decision{Allowed: true, Isolated: true, Policy: p.Key(), Rule: i,
					Reason: fmt.Sprintf("allowed by policy %s %s rule %d", p.Key(), d, i)}
			}
		}
	}
	return Decision{Isolated: true, Reason: fmt.Sprintf("pod %s is isolated for %s (%s) and no rule allows %s %s/%d", self.Key(), d, why, peer, proto, port)}
}

func ruleAllows(c *model.Cluster, p *model.Policy, r *model.Rule, peer Endpoint, proto model.Protocol, port int32, dstPod *model.Pod) bool {
	if !r.AllPorts() {
		ok := false
		for _, ps := range r.Ports {
			if ps.Matches(proto, port, dstPod) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if r.AllPeers() {
		return true
	}
	for i := range r.Peers {
		if peerMatches(c, p, &r.Peers[i], peer) {
			return true
		}
	}
	return false
}

func peerMatches(c *model.Cluster, p *model.Policy, peer *model.Peer, e Endpoint) bool {
	if peer.IPBlock != nil {
		return peer.IPBlock.Contains(e.IP)
	}
	return e.Pod != nil && c.PeerSelects(peer, p.Namespace, e.Pod)
}
