package compiler

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/pkg/addr"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// An address group is the set of pod addresses one selector peer selects,
// shared by every rule whose peer has the same selectors (policy templates
// repeat them across namespaces: "from the ingress controller", "to DNS").
// It is a memo of a function of the state: built by a scan the first time
// a rule needs it, then kept current by each pod event that can change it
// (the pod leaves or joins), and dropped back to "not built" when a
// namespace's labels change what its namespace selector matches. A rule
// recomputed after a pod event reads its peers' sorted addresses instead of
// selecting and sorting them again, so its cost no longer depends on how
// many pods it selects.
//
// Groups live as long as an indexed policy has a peer with their
// selectors: every pod event visits all groups that can hold the pod,
// through the same indexes that find the rules to mark.
type addrGroup struct {
	key      string     // groupKey, its key in Incremental.groups
	peer     model.Peer // the selectors (no IPBlock)
	policyNS string     // the namespace a nil namespace selector means
	refs     int        // indexed peers with these selectors

	built   bool
	members map[string]*model.Pod // by UID: active pods with addresses it selects
	sorted  []peerAddr            // members' addresses, sorted, one per prefix; nil: stale
	shared  bool                  // some members share an address: patching sorted is unsafe
}

// groupKey names a selector peer's group: its selectors, and the policy's
// namespace when the namespace selector is nil (the policy's own).
func groupKey(peer *model.Peer, policyNS string) string {
	var b strings.Builder
	if peer.NamespaceSelector == nil {
		b.WriteString("ns=" + policyNS)
	} else {
		writeSelector(&b, peer.NamespaceSelector)
	}
	b.WriteByte(0)
	if peer.PodSelector == nil {
		b.WriteString("all")
	} else {
		writeSelector(&b, peer.PodSelector)
	}
	return b.String()
}

// writeSelector writes a selector's canonical text. Everything and Nothing
// both print as "": Nothing has no requirements to list.
func writeSelector(b *strings.Builder, sel labels.Selector) {
	if _, ok := sel.Requirements(); !ok {
		b.WriteString("nothing:")
	} else {
		b.WriteString("sel:")
	}
	b.WriteString(sel.String())
}

// peerUse is a selector peer of a policy in its namespace, found by
// pointer: a peer keeps its selectors while its policy is held (invariant 1
// of Incremental, checked by refGroups).
type peerUse struct {
	peer *model.Peer
	ns   string
}

// peerRef is a peer's group and how many indexed policies hold the peer
// (more than one only when a caller shares a policy's rules).
type peerRef struct {
	g *addrGroup
	n int
}

// group returns the group of an indexed policy's selector peer, or nil.
func (inc *Incremental) group(peer *model.Peer, policyNS string) *addrGroup {
	if r := inc.peerGroups[peerUse{peer, policyNS}]; r != nil {
		return r.g
	}
	return nil
}

// refGroups takes a reference on the groups of p's selector peers,
// creating them (not built) as needed. A peer already held (p is the
// policy held, passed again, or shares its rules) must still have its
// group's selectors: else it was changed in place, and the flows of every
// rule reading the group are wrong.
func (inc *Incremental) refGroups(p *model.Policy) {
	forSelectorPeers(p, func(peer *model.Peer) {
		u := peerUse{peer, p.Namespace}
		r := inc.peerGroups[u]
		if r == nil {
			k := groupKey(peer, p.Namespace)
			g := inc.groups[k]
			if g == nil {
				g = &addrGroup{key: k, peer: model.Peer{NamespaceSelector: peer.NamespaceSelector, PodSelector: peer.PodSelector}, policyNS: p.Namespace}
				inc.groups[k] = g
			}
			r = &peerRef{g: g}
			inc.peerGroups[u] = r
		} else if k := groupKey(peer, p.Namespace); k != r.g.key {
			panic(fmt.Sprintf("compiler: policy %s was changed in place (a peer's selectors): pass a new object (invariant 1 of Incremental)", p.Key()))
		}
		r.n++
		r.g.refs++
	})
}

// unrefGroups drops p's references; a group nobody refers to is forgotten.
func (inc *Incremental) unrefGroups(p *model.Policy) {
	forSelectorPeers(p, func(peer *model.Peer) {
		u := peerUse{peer, p.Namespace}
		r := inc.peerGroups[u]
		if r == nil {
			return
		}
		if r.n--; r.n == 0 {
			delete(inc.peerGroups, u)
		}
		if r.g.refs--; r.g.refs == 0 {
			delete(inc.groups, r.g.key)
		}
	})
}

func forSelectorPeers(p *model.Policy, f func(*model.Peer)) {
	for _, d := range directions {
		rules := p.Rules(d)
		for i := range rules {
			for j := range rules[i].Peers {
				if peer := &rules[i].Peers[j]; peer.IPBlock == nil {
					f(peer)
				}
			}
		}
	}
}

// podChanged updates the built groups that can hold either version of a
// pod (nil: none). Candidates are the groups of the rules that can select
// it: its namespace's policies and the rule index.
func (inc *Incremental) podChanged(old, p *model.Pod) {
	seen := map[*addrGroup]bool{}
	visit := func(r ruleRef) {
		rule := r.rule()
		for j := range rule.Peers {
			g := inc.group(&rule.Peers[j], r.pol.Namespace)
			if g == nil || seen[g] {
				continue
			}
			seen[g] = true
			inc.groupSeesPod(g, old, p)
		}
	}
	for _, v := range []*model.Pod{old, p} {
		if v == nil {
			continue
		}
		for _, pol := range inc.polByNS[v.Namespace] {
			for _, d := range directions {
				for i := range pol.Rules(d) {
					visit(ruleRef{pol, d, i})
				}
			}
		}
		inc.rules.forPod(v, inc.nsLabelSet(v.Namespace), visit)
	}
}

// groupSeesPod moves a built group from old to p (either nil). The sorted
// addresses are patched (a pod joining or leaving costs a binary search
// and a copy), or dropped for a rebuild where members share an address:
// which pod owns a shared address is for the rebuild to say.
func (inc *Incremental) groupSeesPod(g *addrGroup, old, p *model.Pod) {
	if !g.built {
		return
	}
	if old != nil {
		if m, ok := g.members[old.UID]; ok {
			delete(g.members, old.UID)
			if g.shared {
				g.sorted = nil
			} else {
				g.sorted = inc.withoutAddrs(g.sorted, m)
			}
		}
	}
	if p != nil && len(p.IPs) > 0 && inc.c.PeerSelects(&g.peer, g.policyNS, p) {
		g.members[p.UID] = p
		if g.shared {
			g.sorted = nil
		} else {
			g.sorted = inc.withAddrs(g.sorted, p)
		}
	}
}

// withAddrs returns sorted with a new member's addresses inserted, as a new
// slice (invariant 2 of Incremental: a list once handed out never
// changes). Nil stays nil: to be rebuilt; an address already listed
// (another pod's) asks for a rebuild, which picks the pod that owns it
// deterministically and notes the sharing. Only called while no members
// share an address.
func (inc *Incremental) withAddrs(sorted []peerAddr, p *model.Pod) []peerAddr {
	if sorted == nil {
		return nil
	}
	sorted = slices.Clip(sorted) // Insert then copies
	for _, a := range inc.podPeerAddrs(p) {
		i, found := slices.BinarySearchFunc(sorted, a, compareAddrs)
		if found {
			return nil
		}
		sorted = slices.Insert(sorted, i, a)
	}
	return sorted
}

// withoutAddrs returns sorted without a leaving member's addresses, as a
// new slice (see withAddrs); only called while no members share an address.
func (inc *Incremental) withoutAddrs(sorted []peerAddr, p *model.Pod) []peerAddr {
	if sorted == nil {
		return nil
	}
	for _, a := range inc.podPeerAddrs(p) {
		i, found := slices.BinarySearchFunc(sorted, a, compareAddrs)
		if !found || sorted[i].pod.UID != p.UID {
			return nil // not listed as its: rebuild
		}
		sorted = slices.Concat(sorted[:i], sorted[i+1:])
	}
	return sorted
}

// invalidate makes a group rebuild from a scan when next read.
func (g *addrGroup) invalidate() {
	g.built, g.members, g.sorted = false, nil, nil
}

// groupAddrs returns the addresses of the pods a selector peer of an
// indexed policy selects: sorted by prefix, one per prefix (of pods
// sharing an address, the first by namespace/name). Read only.
func (inc *Incremental) groupAddrs(peer *model.Peer, policyNS string) []peerAddr {
	g := inc.group(peer, policyNS)
	if g == nil { // not an indexed policy's peer: compute without memo
		g = &addrGroup{peer: *peer, policyNS: policyNS}
	}
	if !g.built {
		g.members = map[string]*model.Pod{}
		for _, p := range inc.peerPods(&g.peer, g.policyNS) {
			if len(p.IPs) > 0 {
				g.members[p.UID] = p
			}
		}
		g.built, g.sorted = true, nil
	}
	if g.sorted == nil {
		g.sorted, g.shared = inc.sortedAddrs(g.members)
	}
	return g.sorted
}

// sortedAddrs lists the pods' host addresses with their matches, sorted by
// match text (so a rule's peer flows come out in the order the flow set
// keeps them), one per address: of pods sharing one, the first by
// namespace/name, then UID; shared tells whether any did.
func (inc *Incremental) sortedAddrs(pods map[string]*model.Pod) (sorted []peerAddr, shared bool) {
	out := make([]peerAddr, 0, len(pods))
	for _, p := range pods {
		out = append(out, inc.podPeerAddrs(p)...)
	}
	slices.SortFunc(out, func(a, b peerAddr) int {
		if c := compareAddrs(a, b); c != 0 {
			return c
		}
		if a.pod.Key() != b.pod.Key() {
			return strings.Compare(a.pod.Key(), b.pod.Key())
		}
		return strings.Compare(a.pod.UID, b.pod.UID)
	})
	n := len(out)
	out = slices.CompactFunc(out, func(a, b peerAddr) bool { return a.prefix == b.prefix })
	return out, len(out) < n
}

// compareAddrs orders pod addresses by their match text; the source and the
// destination match sort alike ("ip,nw_src=" / "ip,nw_dst=" before
// "ipv6,ipv6_src=" / "ipv6,ipv6_dst=", then the address text).
func compareAddrs(a, b peerAddr) int {
	return strings.Compare(a.match[0].String(), b.match[0].String())
}

// podPeerAddrs returns a pod's host addresses as peers, their matches
// rendered once per pod (a new version with the same addresses reuses them).
func (inc *Incremental) podPeerAddrs(p *model.Pod) []peerAddr {
	a, ok := inc.podAddrs[p.UID]
	if ok && a.pod == p {
		return a.addrs
	}
	addrs := make([]peerAddr, len(p.IPs))
	for i, ip := range p.IPs {
		pre := addr.HostPrefix(ip)
		if ok && i < len(a.addrs) && a.addrs[i].prefix == pre {
			addrs[i] = a.addrs[i]
			addrs[i].pod = p
			continue
		}
		addrs[i] = peerAddr{prefix: pre, pod: p, match: peerMatches(pre)}
	}
	inc.podAddrs[p.UID] = podAddrs{p, addrs}
	return addrs
}

// podAddrs is the memo of podPeerAddrs for one pod version.
type podAddrs struct {
	pod   *model.Pod
	addrs []peerAddr
}
