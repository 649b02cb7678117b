package compiler

import (
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/addr"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// RuleKey names one policy rule: "namespace/name/direction/index".
func RuleKey(p *model.Policy, d model.Direction, index int) string {
	return p.Namespace + "/" + p.Name + "/" + string(d) + "/" + strconv.Itoa(index)
}

// RuleCookie is the cookie of every flow a rule owns.
func RuleCookie(ruleKey string) openflow.Cookie {
	return openflow.NewCookie(openflow.KindRule, "rule/"+ruleKey)
}

// ruleInput is everything one rule's flows depend on.
type ruleInput struct {
	cluster *model.Cluster
	cfg     Config
	policy  *model.Policy
	dir     model.Direction
	index   int
	rule    *model.Rule
	// targets are the bound local pods the policy selects.
	targets []*model.Pod
	// peerAddrs returns the addresses of the pods a selector peer selects
	// (exactly those model.Cluster.PeerSelects accepts), sorted by prefix,
	// one per prefix; the slice is shared: read only.
	peerAddrs func(peer *model.Peer, policyNS string) []peerAddr
	// allPods returns every pod (egress named ports with no peers).
	allPods func() []*model.Pod
	// egressSplit, if set, is the rule's memo of its egress named-port
	// split, used and updated by ruleGroups.
	egressSplit *egressSplit
}

// idSource hands out conjunction IDs by key.
type idSource interface{ ID(key string) uint32 }

// peerAddr is one address block a rule's peers cover; pod is set when the
// block is a pod's address. match holds its source and destination
// matches, built once (see peerMatches).
type peerAddr struct {
	prefix netip.Prefix
	pod    *model.Pod
	match  [2]openflow.Match
}

// peerMatches are a block's source and destination matches.
func peerMatches(p netip.Prefix) [2]openflow.Match {
	return [2]openflow.Match{srcMatch(p), dstMatch(p)}
}

// matchAs is the block as a source or destination match.
func (p peerAddr) matchAs(dir peerSide) openflow.Match {
	if m := p.match[dir]; !m.IsZero() {
		return m
	}
	if dir == peerDst {
		return dstMatch(p.prefix)
	}
	return srcMatch(p.prefix)
}

// peerSide says which address of a packet a peer is: its source (ingress)
// or its destination (egress); it indexes peerAddr.match.
type peerSide uint8

const (
	peerSrc peerSide = 0
	peerDst peerSide = 1
)

// portMatch is one transport match: every port of proto when all is set.
type portMatch struct {
	proto model.Protocol
	all   bool
	mask  addr.PortMask
}

// group is one conjunction of a rule: rules with named ports split into one
// group per distinct resolution on the destination side.
type group struct {
	key      string // "" for the numeric group, else the resolved named ports
	targets  []*model.Pod
	allPeers bool
	peers    []peerAddr
	allPorts bool
	ports    []portMatch
}

// ruleFlows compiles one rule into its conjunctions: the flows of targets,
// ports and conj_id (and direct allows), and the peer dimension of each
// conjunction, left unrendered (see peerDim); disjoint says no address is in
// two dimensions. ids hands out stable conjunction IDs.
func ruleFlows(ri ruleInput, ids idSource) (flows []openflow.Flow, dims []peerDim, disjoint bool) {
	r := ri.rule
	if len(ri.targets) == 0 {
		return nil, nil, false
	}
	var peers []peerAddr
	if !r.AllPeers() {
		peers = rulePeers(ri)
		if len(peers) == 0 {
			return nil, nil, false // peer selectors that match nothing allow nothing
		}
	}
	key := RuleKey(ri.policy, ri.dir, ri.index)
	cookie := RuleCookie(key)
	next := TableIngress
	if ri.dir == model.Ingress {
		next = TableCommit
	}
	groups := ruleGroups(ri, peers)
	// Egress named groups split the peers by how their ports resolve: no
	// address is in two of them.
	disjoint = ri.dir == model.Egress
	for _, g := range groups {
		f, d := groupFlows(ri, g, key, cookie, next, ids)
		flows = append(flows, f...)
		if d != nil {
			dims = append(dims, *d)
		}
		disjoint = disjoint && g.key != ""
	}
	return flows, dims, disjoint
}

// peerDim is the peer dimension of one conjunction: a flow per peer address
// of the families in fams, all with one action. A rule's peer dimensions
// are kept apart from its other flows because they are most of them and
// often unchanged when the rule is recomputed (a target came or went).
type peerDim struct {
	peers  []peerAddr // read only
	fams   map[family]bool
	side   peerSide
	table  uint8
	cookie openflow.Cookie
	// conj is the one conjunction of every flow (shared: read only).
	conj openflow.Actions
}

// flows renders the dimension.
func (d peerDim) flows() []openflow.Flow {
	out := make([]openflow.Flow, 0, len(d.peers))
	for _, p := range d.peers {
		if d.fams[familyOf(p.prefix.Addr())] {
			out = append(out, d.flow(p))
		}
	}
	return out
}

// signature is everything flows depends on but the peers themselves.
func (d peerDim) signature() string {
	c := d.conj.Conjunctions()[0]
	b := make([]byte, 0, 64)
	b = strconv.AppendUint(b, uint64(d.table), 10)
	b = append(b, '/', '0'+byte(d.side), '/')
	b = strconv.AppendUint(b, uint64(d.cookie), 16)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(c.ID), 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, uint64(c.K), 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(c.N), 10)
	b = append(b, "/v4="...)
	b = strconv.AppendBool(b, d.fams[4])
	b = append(b, ",v6="...)
	b = strconv.AppendBool(b, d.fams[6])
	return string(b)
}

// flow renders one peer address of the dimension.
func (d peerDim) flow(p peerAddr) openflow.Flow {
	return openflow.Flow{Table: d.table, Priority: PrioRuleConj, Cookie: d.cookie, Match: p.matchAs(d.side), Actions: d.conj}
}

// diff appends the flow changes that turn the dimension rendered from old
// into the dimension rendered from its peers (both sorted by compareAddrs).
func (d peerDim) diff(old []peerAddr, removes, adds *[]FlowChange) {
	cur := d.peers
	if len(old) == len(cur) && (len(cur) == 0 || &old[0] == &cur[0]) {
		return // the same list, unchanged (invariant 2 of Incremental)
	}
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		c := 0
		switch {
		case i == len(old):
			c = 1
		case j == len(cur):
			c = -1
		default:
			c = compareAddrs(old[i], cur[j])
		}
		switch {
		case c < 0:
			if d.fams[familyOf(old[i].prefix.Addr())] {
				*removes = append(*removes, FlowChange{Flow: d.flow(old[i]), Remove: true})
			}
			i++
		case c > 0:
			if d.fams[familyOf(cur[j].prefix.Addr())] {
				*adds = append(*adds, FlowChange{Flow: d.flow(cur[j])})
			}
			j++
		default:
			i++
			j++
		}
	}
}

// rulePeers expands a rule's peers into address blocks: ipBlocks minus their
// exceptions as disjoint prefixes, selected pods as host addresses; sorted
// by match text (see compareAddrs), one per prefix (the first peer listing
// it wins). A rule whose only peer is one selector gets that selector's
// shared list: read only.
func rulePeers(ri ruleInput) []peerAddr {
	peers := ri.rule.Peers
	if len(peers) == 1 && peers[0].IPBlock == nil {
		return ri.peerAddrs(&peers[0], ri.policy.Namespace)
	}
	var out []peerAddr
	for i := range peers {
		peer := &peers[i]
		var next []peerAddr
		if peer.IPBlock != nil {
			for _, p := range addr.Subtract(peer.IPBlock.CIDR, peer.IPBlock.Except) {
				next = append(next, peerAddr{prefix: p, match: peerMatches(p)})
			}
			slices.SortFunc(next, compareAddrs)
		} else {
			next = ri.peerAddrs(peer, ri.policy.Namespace)
		}
		out = mergeAddrs(out, next)
	}
	return out
}

// mergeAddrs merges two sorted address lists into a new one; of equal
// prefixes, a's is kept.
func mergeAddrs(a, b []peerAddr) []peerAddr {
	out := make([]peerAddr, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := compareAddrs(a[i], b[j]); {
		case c < 0:
			out = append(out, a[i])
			i++
		case c > 0:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// ruleGroups splits a rule by port resolution. Numeric ports form one group
// over every target and peer; named ports resolve per destination pod
// (targets for ingress, peer pods for egress) and pods resolving alike share
// a group. A name that resolves nowhere matches nothing.
func ruleGroups(ri ruleInput, peers []peerAddr) []group {
	r := ri.rule
	allPeers := r.AllPeers()
	if r.AllPorts() {
		return []group{{targets: ri.targets, allPeers: allPeers, peers: peers, allPorts: true}}
	}
	var numeric, named []model.PortSpec
	for _, ps := range r.Ports {
		if ps.Name != "" {
			named = append(named, ps)
		} else {
			numeric = append(numeric, ps)
		}
	}
	var groups []group
	if len(numeric) > 0 {
		groups = append(groups, group{targets: ri.targets, allPeers: allPeers, peers: peers, ports: numericPorts(numeric)})
	}
	if len(named) == 0 {
		return groups
	}
	type namedGroup struct {
		ports   []portMatch
		targets []*model.Pod
		peers   []peerAddr
	}
	byKey := map[string]*namedGroup{}
	var keys []string
	member := func(pod *model.Pod) *namedGroup {
		ports := resolveNamed(named, pod)
		if len(ports) == 0 {
			return nil
		}
		k := portsKey(ports)
		g, ok := byKey[k]
		if !ok {
			g = &namedGroup{ports: ports}
			byKey[k] = g
			keys = append(keys, k)
		}
		return g
	}
	if ri.dir == model.Ingress {
		for _, t := range ri.targets {
			if g := member(t); g != nil {
				g.targets = append(g.targets, t)
			}
		}
	} else {
		split := ri.egressSplit
		if split == nil {
			split = &egressSplit{}
		}
		for i, pa := range split.update(named, egressNamedAddrs(ri, peers)) {
			g, ok := byKey[split.keys[i]]
			if !ok {
				g = &namedGroup{ports: split.ports[i]}
				byKey[split.keys[i]] = g
				keys = append(keys, split.keys[i])
			}
			g.peers = append(g.peers, pa...)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := byKey[k]
		if ri.dir == model.Ingress {
			groups = append(groups, group{key: k, targets: g.targets, allPeers: allPeers, peers: peers, ports: g.ports})
		} else {
			groups = append(groups, group{key: k, targets: ri.targets, peers: g.peers, ports: g.ports})
		}
	}
	return groups
}

// egressSplit remembers how an egress rule's named ports resolved for each
// destination: resolving names for hundreds of pods each time the rule is
// recomputed is most of its cost, and mostly the same pods come back. A
// resolution depends on the named port specs, compared by value, and the
// destination pod's version, compared by pointer (invariant 1 of
// Incremental: a pod's ports change only with a new object).
type egressSplit struct {
	named []model.PortSpec // the specs resolved
	addrs []peerAddr       // the destinations last split, sorted by compareAddrs
	res   []int            // per destination: an index in keys, or -1 (no port)
	keys  []string         // the resolutions seen (portsKey), with their ports
	ports [][]portMatch
}

// update splits addrs (sorted by compareAddrs) by resolution: the result
// holds, per index in keys, the destinations resolving to it (nil for
// resolutions none does). A destination last seen with the same pod keeps
// its resolution while the specs are the same.
func (m *egressSplit) update(named []model.PortSpec, addrs []peerAddr) [][]peerAddr {
	if !slices.Equal(m.named, named) {
		*m = egressSplit{named: named}
	}
	index := func(ports []portMatch) int {
		k := portsKey(ports)
		if i := slices.Index(m.keys, k); i >= 0 {
			return i
		}
		m.keys = append(m.keys, k)
		m.ports = append(m.ports, ports)
		return len(m.keys) - 1
	}
	res := make([]int, len(addrs))
	i := 0 // walks the previous destinations alongside
	for j, pa := range addrs {
		for i < len(m.addrs) && compareAddrs(m.addrs[i], pa) < 0 {
			i++
		}
		if i < len(m.addrs) && m.addrs[i].prefix == pa.prefix && m.addrs[i].pod == pa.pod {
			res[j] = m.res[i]
			continue
		}
		res[j] = -1
		if ports := resolveNamed(named, pa.pod); len(ports) > 0 {
			res[j] = index(ports)
		}
	}
	m.addrs, m.res = addrs, res
	out := make([][]peerAddr, len(m.keys))
	for j, pa := range addrs {
		if res[j] >= 0 {
			out[res[j]] = append(out[res[j]], pa)
		}
	}
	return out
}

// egressNamedAddrs are the destination pod addresses an egress rule's
// named ports resolve against: the addresses of pods its selectors chose,
// pod addresses inside its ipBlocks (exceptions honoured), or every pod
// address when the rule has no peers. Only addresses the rule's peers cover
// count: a pod in an IPv4 block is no IPv6 peer.
func egressNamedAddrs(ri ruleInput, peers []peerAddr) []peerAddr {
	if !ri.rule.AllPeers() && !slices.ContainsFunc(peers, func(p peerAddr) bool { return p.pod == nil }) {
		return peers // selected pods only: already sorted, one per address
	}
	var out []peerAddr
	seen := map[netip.Prefix]int{} // index in out
	add := func(p peerAddr) {
		i, ok := seen[p.prefix]
		switch {
		case !ok:
			seen[p.prefix] = len(out)
			out = append(out, p)
		case podLess(p.pod, out[i].pod):
			// Two live pods claim the address: its ports are the first
			// pod's by namespace/name, whatever order pods come ri.
			out[i].pod = p.pod
		}
	}
	var blocks []netip.Prefix
	for _, p := range peers {
		if p.pod != nil {
			add(p)
		} else {
			blocks = append(blocks, p.prefix)
		}
	}
	for _, pod := range ri.allPods() {
		if !pod.Active() {
			continue
		}
		for _, ip := range pod.IPs {
			if ri.rule.AllPeers() || containedIn(ip, blocks) {
				pre := addr.HostPrefix(ip)
				add(peerAddr{prefix: pre, pod: pod, match: peerMatches(pre)})
			}
		}
	}
	slices.SortFunc(out, compareAddrs)
	return out
}

// podLess orders pods by namespace/name, then UID.
func podLess(a, b *model.Pod) bool {
	if a.Key() != b.Key() {
		return a.Key() < b.Key()
	}
	return a.UID < b.UID
}

func containedIn(ip netip.Addr, blocks []netip.Prefix) bool {
	for _, b := range blocks {
		if b.Contains(ip) {
			return true
		}
	}
	return false
}

func containsAny(p netip.Prefix, ips []netip.Addr) bool {
	for _, ip := range ips {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// numericPorts turns numeric port specs into matches; "every port of a
// protocol" absorbs that protocol's other entries.
func numericPorts(specs []model.PortSpec) []portMatch {
	var out []portMatch
	all := map[model.Protocol]bool{}
	for _, s := range specs {
		if s.Port == 0 {
			all[s.Protocol] = true
		}
	}
	for _, proto := range model.Protocols {
		if all[proto] {
			out = append(out, portMatch{proto: proto, all: true})
		}
	}
	for _, s := range specs {
		if all[s.Protocol] {
			continue
		}
		end := s.EndPort
		if end == 0 {
			end = s.Port
		}
		for _, m := range addr.RangeMasks(uint16(s.Port), uint16(end)) {
			out = append(out, portMatch{proto: s.Protocol, mask: m})
		}
	}
	return dedupePorts(out)
}

// resolveNamed resolves named port specs against one destination pod.
func resolveNamed(specs []model.PortSpec, pod *model.Pod) []portMatch {
	var out []portMatch
	for _, s := range specs {
		if port, ok := pod.ResolvePort(s.Name, s.Protocol); ok {
			out = append(out, portMatch{proto: s.Protocol, mask: addr.PortMask{Value: uint16(port), Mask: 0xffff}})
		}
	}
	return dedupePorts(out)
}

func dedupePorts(ports []portMatch) []portMatch {
	if len(ports) <= 1 {
		return ports
	}
	out := make([]portMatch, 0, len(ports))
	for _, m := range ports {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b portMatch) int {
		switch {
		case a.proto != b.proto:
			return strings.Compare(string(a.proto), string(b.proto))
		case a.all != b.all:
			if a.all {
				return -1
			}
			return 1
		case a.mask.Value != b.mask.Value:
			return int(a.mask.Value) - int(b.mask.Value)
		}
		return int(a.mask.Mask) - int(b.mask.Mask)
	})
	return out
}

func portsKey(ports []portMatch) string {
	var b strings.Builder
	for i, p := range ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p.mask.Value)))
		b.WriteByte('/')
		b.WriteString(string(p.proto))
	}
	return b.String()
}

// family is 4 or 6.
type family int

func familyOf(a netip.Addr) family {
	if a.Is4() {
		return 4
	}
	return 6
}

// groupFlows renders one group as a conjunction: targets × peers × ports,
// leaving out unconstrained dimensions; the peer dimension is returned
// unrendered. With only the target dimension left, the rule needs no
// conjunction: each target flow allows directly.
func groupFlows(ri ruleInput, g group, ruleKey string, cookie openflow.Cookie, next uint8, ids idSource) ([]openflow.Flow, *peerDim) {
	// Families the conjunction can ever complete for.
	fams := map[family]bool{}
	for _, t := range g.targets {
		for _, ip := range t.IPs {
			fams[familyOf(ip)] = true
		}
	}
	if !g.allPeers {
		peerFams := map[family]bool{}
		for _, p := range g.peers {
			peerFams[familyOf(p.prefix.Addr())] = true
		}
		for f := range fams {
			if !peerFams[f] {
				delete(fams, f)
			}
		}
	}
	if len(fams) == 0 {
		return nil, nil
	}

	// The dimensions in conjunction order: targets, peers, ports. Peers
	// are never empty here (a family without peers was dropped above).
	var dims [][]openflow.Match
	dims = append(dims, targetMatches(ri, g.targets, fams))
	peerIndex := -1
	if !g.allPeers {
		peerIndex = len(dims)
		dims = append(dims, nil)
	}
	if !g.allPorts {
		dims = append(dims, portMatches(g.ports, fams))
	}
	for i, d := range dims {
		if len(d) == 0 && i != peerIndex {
			return nil, nil
		}
	}

	allow := gotoTable(next)
	table := TableEgress
	if ri.dir == model.Ingress {
		table = TableIngress
	}
	var flows []openflow.Flow
	if len(dims) == 1 {
		for _, m := range dims[0] {
			flows = append(flows, openflow.Flow{Table: table, Priority: PrioRuleAllow, Cookie: cookie, Match: m, Actions: allow})
		}
		return flows, nil
	}
	conjKey := ruleKey
	if g.key != "" {
		conjKey += "/named:" + g.key
	}
	id := ids.ID(conjKey)
	n := 1
	for _, d := range dims {
		n += len(d)
	}
	flows = make([]openflow.Flow, 0, n)
	var peer *peerDim
	for k, d := range dims {
		conj := openflow.Conjoin(openflow.Conjunction{ID: id, K: uint8(k + 1), N: uint8(len(dims))})
		if k == peerIndex {
			side := peerSrc
			if ri.dir == model.Egress {
				side = peerDst
			}
			peer = &peerDim{peers: g.peers, fams: fams, side: side, table: table, cookie: cookie, conj: conj}
			continue
		}
		for _, m := range d {
			flows = append(flows, openflow.Flow{Table: table, Priority: PrioRuleConj, Cookie: cookie, Match: m, Actions: conj})
		}
	}
	flows = append(flows, openflow.Flow{Table: table, Priority: PrioRuleConj, Cookie: cookie,
		Match: openflow.NewMatch(openflow.ConjID(id)), Actions: allow})
	return flows, peer
}

// targetMatches identifies the rule's local pods: by ingress port for egress
// (port security already tied the port to the pod's addresses), by
// destination address for ingress.
func targetMatches(ri ruleInput, targets []*model.Pod, fams map[family]bool) []openflow.Match {
	var out []openflow.Match
	for _, t := range targets {
		if ri.dir == model.Egress {
			out = append(out, openflow.NewMatch(openflow.InPort(ri.cfg.Bindings[t.Key()].OFPort)))
			continue
		}
		for _, ip := range t.IPs {
			if fams[familyOf(ip)] {
				out = append(out, dstMatch(host(ip)))
			}
		}
	}
	return out
}

// transportProto is a transport protocol's match shorthand in a family
// (tcp or tcp6, ...).
func transportProto(p model.Protocol, ipv6 bool) openflow.Protocol {
	var v4, v6 openflow.Protocol
	switch p {
	case model.UDP:
		v4, v6 = openflow.UDP, openflow.UDP6
	case model.SCTP:
		v4, v6 = openflow.SCTP, openflow.SCTP6
	default:
		v4, v6 = openflow.TCP, openflow.TCP6
	}
	if ipv6 {
		return v6
	}
	return v4
}

// portMatches builds transport matches for each address family in use.
func portMatches(ports []portMatch, fams map[family]bool) []openflow.Match {
	var out []openflow.Match
	for _, f := range []family{4, 6} {
		if !fams[f] {
			continue
		}
		for _, p := range ports {
			proto := transportProto(p.proto, f == 6)
			if p.all {
				out = append(out, openflow.NewMatch(proto))
				continue
			}
			out = append(out, openflow.NewMatch(proto, openflow.TransportDst{Value: p.mask.Value, Mask: p.mask.Mask}))
		}
	}
	return out
}
