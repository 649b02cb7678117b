package compiler

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// Why a remote node gets no tunnel flows and no host routes. The
// vocabulary is fixed: logs and metrics never carry text read from the Node
// objects, only these, the nodes' names and validated addresses.
const (
	// ConflictPodCIDR: one of its pod CIDRs overlaps a pod CIDR of the
	// node named in With (same family; equal, inside or around it).
	ConflictPodCIDR = "pod-cidr-overlap"
	// ConflictInternalIPInPodCIDR: one of its InternalIPs is inside a pod
	// CIDR of the node named in With, or one of the other node's addresses
	// (InternalIPs, this node's gateways and node IPs) is inside one of its
	// pod CIDRs.
	ConflictInternalIPInPodCIDR = "internal-ip-in-pod-cidr"
	// ConflictSameInternalIP: it has an address of the node named in With
	// as InternalIP: a tunnel endpoint of two nodes makes tun_src
	// ambiguous.
	ConflictSameInternalIP = "same-internal-ip"
	// ConflictOwnInternalIP: one of its InternalIPs is inside its own pod
	// CIDR: the host route to that CIDR would send the tunnel's own
	// packets into the bridge.
	ConflictOwnInternalIP = "internal-ip-in-own-pod-cidr"
	// ConflictDefaultRoute: a pod CIDR of prefix length 0 (0.0.0.0/0,
	// ::/0) would take every destination of its family into the tunnel and
	// replace the host's default route.
	ConflictDefaultRoute = "pod-cidr-is-default-route"
	// ConflictOther: refused by model.RefusedNodes for none of the reasons
	// above (today: a claim in a special-purpose range such as link-local
	// or loopback).
	ConflictOther = "special-purpose-or-other"
	// ConflictInvalid: an address or prefix the Node's validation would
	// not have let through (invalid, zoned, IPv4-mapped, unspecified).
	ConflictInvalid = "invalid-address"
	// ConflictDuplicateName: two Nodes of that name were given.
	ConflictDuplicateName = "duplicate-name"
)

// RejectedNode is a remote node left out of the overlay because of a
// conflict.
type RejectedNode struct {
	Name   string // the rejected node
	Reason string // one of the Conflict constants
	// With is the node whose claim won: this node (Local) or an older
	// remote node (same age: earlier by name); "" when the reason concerns
	// the node alone.
	With  string
	Local bool // With is this node
	// Claim and WithClaim are the two overlapping claims (a pod CIDR, or
	// an InternalIP as a host prefix); zero when not applicable.
	Claim, WithClaim netip.Prefix
}

func (r RejectedNode) String() string {
	s := fmt.Sprintf("node %q: %s", r.Name, r.Reason)
	if r.Claim.IsValid() {
		s += " (" + r.Claim.String() + ")"
	}
	if r.With != "" {
		who := "node"
		if r.Local {
			who = "this node"
		}
		s += fmt.Sprintf(" with %s %q", who, r.With)
		if r.WithClaim.IsValid() {
			s += " (" + r.WithClaim.String() + ")"
		}
	}
	return s
}

// RemoteNodes is the overlay's view of the other nodes.
type RemoteNodes struct {
	// Usable are the remote nodes that get tunnel flows and host routes,
	// sorted by name.
	Usable []*model.Node
	// Rejected are the other nodes refused (those without tunnel endpoint
	// or pod CIDR included: they claim addresses too), sorted by name.
	Rejected []RejectedNode
}

// ResolveRemoteNodes decides which of the cluster's nodes are this node's
// (local's) remote nodes in the overlay: the compiler gives tunnel flows to
// its Usable nodes only, and the agent's controller makes the same decision
// (model.RefusedNodes, the one rule) before its nodes reach the compiler
// and the host routes, so the bridge and the host always agree; inspect
// leaves the same Nodes out.
//
// A remote node is another node with a tunnel endpoint (InternalIP) and at
// least one pod CIDR. Each node claims its pod CIDRs and its InternalIPs
// (as host prefixes): the tunnel flows send every claimed address to it and
// admit it from its tunnel endpoint only, so two claims that overlap would
// give overlapping flows at one priority (OVS picks either) or let a node
// speak for another's addresses. The rule (model.RefusedNodes; fail
// closed, deterministic):
//
//   - This node's own pod CIDRs (hence its gateways), InternalIPs and
//     localIPs (the compiler's Config.NodeIPs) are authoritative: a node
//     claiming any address of them is refused.
//   - A node with a /0 pod CIDR, a claim in a special-purpose range, or an
//     InternalIP inside its own pod CIDR is refused alone.
//   - The others are taken oldest first (creation time, then name); one
//     whose claim overlaps a claim of an already accepted node (same
//     family) is refused whole (no flows, no routes): the older node wins
//     every conflict, so a Node created later cannot take over another's
//     pods, whatever its name.
//   - A refused node claims nothing: it does not block a later one. Of
//     a, b, c (oldest first) where a and b conflict and b and c conflict, a
//     and c are usable. Blocking would cut c off because of a node that
//     gets no traffic; the price is that one node's change can change the
//     usability of nodes it does not overlap (removing a makes b usable,
//     which refuses c), so callers recompute the whole list on a change
//     (the incremental compiler does and diffs it, unless the change
//     overlaps nothing).
//
// Besides (unreachable through normalize.Node, which the agent, compile
// and inspect all use): Nodes sharing a name, and Nodes with an invalid,
// zoned, IPv4-mapped or unspecified address, are rejected before the rule.
// Each rejection gets a reason from a fixed vocabulary and, for a
// conflict, the node and claim that won.
//
// The result depends only on the set of nodes, not on their order. Cost:
// model.RefusedNodes (map operations per address bit of every claim), and
// as much again to name the winners when a node is refused.
func ResolveRemoteNodes(nodes []*model.Node, local string, localIPs ...netip.Addr) RemoteNodes {
	var out RemoteNodes
	byName := map[string][]*model.Node{}
	for _, n := range nodes {
		if n != nil {
			byName[n.Name] = append(byName[n.Name], n)
		}
	}
	var judged []*model.Node
	for name, same := range byName {
		switch {
		case name == local:
			if len(same) == 1 {
				judged = append(judged, same[0])
			}
		case len(same) > 1:
			out.Rejected = append(out.Rejected, RejectedNode{Name: name, Reason: ConflictDuplicateName})
		case !validNode(same[0]):
			out.Rejected = append(out.Rejected, RejectedNode{Name: name, Reason: ConflictInvalid})
		default:
			judged = append(judged, same[0])
		}
	}
	refused := model.RefusedNodes(local, localIPs, judged)
	// Replay the rule's order to name what each refused node conflicts
	// with: the claims accepted before it are this node's, then those of
	// the older nodes that were not refused.
	slices.SortFunc(judged, func(a, b *model.Node) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	// The index is only needed to explain refusals (the common case has
	// none: it then costs nothing).
	var idx *claimIndex
	if len(refused) > 0 {
		idx = newClaimIndex()
		for _, ip := range localIPs {
			idx.add(claim{prefix: netip.PrefixFrom(ip, ip.BitLen()).Masked()}, local)
		}
		for _, n := range judged {
			if n.Name == local {
				for _, c := range nodeClaims(n) {
					idx.add(c, local)
				}
			}
		}
	}
	for _, n := range judged {
		if n.Name == local {
			continue
		}
		if refused[n.Name] != "" {
			out.Rejected = append(out.Rejected, classify(n, nodeClaims(n), idx, local))
			continue
		}
		if idx != nil {
			for _, c := range nodeClaims(n) {
				idx.add(c, n.Name)
			}
		}
		if isRemoteCandidate(n) {
			out.Usable = append(out.Usable, n)
		}
	}
	slices.SortFunc(out.Usable, func(a, b *model.Node) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(out.Rejected, func(a, b RejectedNode) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// classify names why model.RefusedNodes refused n, in the fixed
// vocabulary.
func classify(n *model.Node, claims []claim, idx *claimIndex, local string) RejectedNode {
	for _, c := range claims {
		if c.podCIDR && c.prefix.Bits() == 0 {
			return RejectedNode{Name: n.Name, Reason: ConflictDefaultRoute, Claim: c.prefix}
		}
	}
	for _, c := range claims {
		if c.podCIDR {
			continue
		}
		for _, p := range claims {
			if p.podCIDR && p.prefix.Overlaps(c.prefix) {
				return RejectedNode{Name: n.Name, Reason: ConflictOwnInternalIP, Claim: c.prefix, WithClaim: p.prefix}
			}
		}
	}
	if r, ok := idx.conflict(n.Name, claims, local); ok {
		return r
	}
	return RejectedNode{Name: n.Name, Reason: ConflictOther}
}

// isRemoteCandidate: the nodes the overlay would reach without conflicts.
func isRemoteCandidate(n *model.Node) bool {
	return n.TunnelIP().IsValid() && len(n.PodCIDRs) > 0
}

// claim is an address range a node's tunnel flows cover.
type claim struct {
	prefix  netip.Prefix // masked
	podCIDR bool         // else an InternalIP (a host prefix)
}

func nodeClaims(n *model.Node) []claim {
	var out []claim
	for _, p := range n.PodCIDRs {
		out = append(out, claim{prefix: p.Masked(), podCIDR: true})
	}
	for _, ip := range n.InternalIPs {
		out = append(out, claim{prefix: netip.PrefixFrom(ip, ip.BitLen()).Masked()})
	}
	return out
}

func validAddr(a netip.Addr) bool {
	return a.IsValid() && a.Zone() == "" && !a.Is4In6() && !a.IsUnspecified()
}

// validNode rejects what normalize.Node would not let through.
func validNode(n *model.Node) bool {
	for _, p := range n.PodCIDRs {
		if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return false
		}
	}
	return !slices.ContainsFunc(n.InternalIPs, func(a netip.Addr) bool { return !validAddr(a) })
}

// claimIndex holds the accepted claims: exact by prefix, and every strict
// ancestor prefix of each (inner), so that a query finds a claim around it
// (one of its ancestors in exact) or inside it (itself in inner) with one
// map lookup per prefix length. The first owner inserted is kept: the
// local node, then remote nodes by name.
type claimIndex struct {
	exact, inner map[netip.Prefix]owned
}

type owned struct {
	node  string
	claim claim
}

func newClaimIndex() *claimIndex {
	return &claimIndex{exact: map[netip.Prefix]owned{}, inner: map[netip.Prefix]owned{}}
}

func (x *claimIndex) add(c claim, node string) {
	if _, ok := x.exact[c.prefix]; !ok {
		x.exact[c.prefix] = owned{node, c}
	}
	for bits := c.prefix.Bits() - 1; bits >= 0; bits-- {
		anc := netip.PrefixFrom(c.prefix.Addr(), bits).Masked()
		if _, ok := x.inner[anc]; ok {
			break // its ancestors are in already
		}
		x.inner[anc] = owned{node, c}
	}
}

// find returns an accepted claim overlapping p: around or equal to it
// (shortest first), else inside it.
func (x *claimIndex) find(p netip.Prefix) (owned, bool) {
	for bits := 0; bits <= p.Bits(); bits++ {
		if o, ok := x.exact[netip.PrefixFrom(p.Addr(), bits).Masked()]; ok {
			return o, true
		}
	}
	o, ok := x.inner[p]
	return o, ok
}

func (x *claimIndex) conflict(name string, claims []claim, local string) (RejectedNode, bool) {
	for _, c := range claims {
		o, ok := x.find(c.prefix)
		if !ok {
			continue
		}
		r := RejectedNode{Name: name, With: o.node, Local: o.node == local, Claim: c.prefix, WithClaim: o.claim.prefix}
		switch {
		case c.podCIDR && o.claim.podCIDR:
			r.Reason = ConflictPodCIDR
		case !c.podCIDR && !o.claim.podCIDR:
			r.Reason = ConflictSameInternalIP
		default:
			r.Reason = ConflictInternalIPInPodCIDR
		}
		return r, true
	}
	return RejectedNode{}, false
}

// usableNames returns the names in r.Usable as a set.
func (r RemoteNodes) usableNames() map[string]bool {
	out := make(map[string]bool, len(r.Usable))
	for _, n := range r.Usable {
		out[n.Name] = true
	}
	return out
}

// RejectedSummary is the rejections as one line (for logs).
func (r RemoteNodes) RejectedSummary() string {
	parts := make([]string, len(r.Rejected))
	for i, rej := range r.Rejected {
		parts[i] = rej.String()
	}
	return strings.Join(parts, "; ")
}
