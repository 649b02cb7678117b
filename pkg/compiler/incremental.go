package compiler

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Incremental keeps a node's desired flow set up to date as the cluster
// changes. The flow set is a function of the state, memoized per fragment:
// one fragment per local pod, per remote pod, per policy rule (and its peer
// flows, see setRulePeers), plus the pipeline and node fragments. A change
// marks the fragments it can affect; Flush recomputes only those and reports
// which flows changed. Rules read their peers from address groups shared by
// rules with the same selectors (groups.go), kept current by pod events.
//
// All changes to the cluster go through Incremental's methods, so it sees
// the old and the new version of each object. It is not safe for concurrent
// use.
type Incremental struct {
	c   *model.Cluster
	cfg Config
	ids *IDAllocator

	// Indexes of c (see index.go): pods by namespace (peer selection),
	// policies by namespace (isolation, targets), namespaces by label
	// (namespace selectors), rules by what their peers can select.
	podsByNS map[string]map[string]*model.Pod
	polByNS  map[string]map[string]*model.Policy
	nsLabels labelIndex
	rules    *ruleIndex
	// ruleConjKeys remembers the conjunction keys each rule allocated.
	ruleConjKeys map[string][]string
	// groups are the selector peers' address groups by groupKey, and
	// peerGroups each indexed peer's group (see groups.go); podAddrs
	// memoizes pods' addresses as rendered peers.
	groups     map[string]*addrGroup
	peerGroups map[peerUse]*peerRef
	podAddrs   map[string]podAddrs
	// peerMemos holds, per rule with a peer fragment, what its peer flows
	// were rendered from (see setRulePeers).
	peerMemos map[string]*peerMemo
	// egressSplits memoizes egress named-port splits per rule (see egressSplit).
	egressSplits map[string]*egressSplit

	// Services: each Service's EndpointSlices by Service key; group IDs;
	// per Service the group keys it holds and the backends serving its UDP
	// ports (for conntrack flushes, see staleUDP).
	slicesBySvc  map[string]map[string]*model.EndpointSlice
	groupIDs     *IDAllocator
	svcGroupKeys map[string][]string
	svcServing   map[string]map[serviceFamilyPort]map[model.Backend]bool

	// usable and rejected are the overlay's verdict on the other nodes
	// (see ResolveRemoteNodes) by name, recomputed by Flush after node
	// events: of the nodes in nodesChanged, or of all (nodesAll: this node
	// or the configuration changed).
	usable       map[string]bool
	rejected     map[string]RejectedNode
	nodesChanged map[string]bool
	nodesAll     bool

	set      *FlowSet
	ofGroups *GroupSet // OpenFlow groups (not address groups)
	dirty    map[string]bool
	// changedGroups and ctFlushes are what the last Flush changed besides
	// flows.
	changedGroups []uint32
	ctFlushes     []openflow.ConntrackFlush
}

// NewIncremental takes ownership of c (change it only through the returned
// value from now on); everything is dirty until the first Flush.
func NewIncremental(c *model.Cluster, cfg Config) *Incremental {
	in := &Incremental{
		c: c, ids: NewIDAllocator(),
		podsByNS:     map[string]map[string]*model.Pod{},
		polByNS:      map[string]map[string]*model.Policy{},
		nsLabels:     labelIndex{},
		rules:        newRuleIndex(),
		ruleConjKeys: map[string][]string{},
		groups:       map[string]*addrGroup{},
		peerGroups:   map[peerUse]*peerRef{},
		podAddrs:     map[string]podAddrs{},
		peerMemos:    map[string]*peerMemo{},
		egressSplits: map[string]*egressSplit{},
		slicesBySvc:  map[string]map[string]*model.EndpointSlice{},
		groupIDs:     newIDAllocatorIn(openflow.GroupIDOurs, ^openflow.GroupIDOursMask),
		svcGroupKeys: map[string][]string{},
		svcServing:   map[string]map[serviceFamilyPort]map[model.Backend]bool{},
		set:          NewFlowSet(),
		ofGroups:     NewGroupSet(),
		dirty:        map[string]bool{},
		nodesChanged: map[string]bool{},
		usable:       map[string]bool{},
		rejected:     map[string]RejectedNode{},
	}
	for _, sl := range c.EndpointSlices {
		in.indexSlice(sl)
	}
	for _, p := range c.Pods {
		in.indexPod(p)
	}
	for _, ns := range c.Namespaces {
		in.nsLabels.add(ns.Name, ns.Labels)
	}
	for _, p := range c.Policies {
		in.indexPolicy(p)
		in.refGroups(p)
	}
	in.SetConfig(cfg)
	return in
}

// Cluster returns the state (read only).
func (in *Incremental) Cluster() *model.Cluster { return in.c }

// Config returns the effective configuration.
func (in *Incremental) Config() Config { return in.cfg }

// SetConfig replaces the configuration (bindings included) and marks
// everything dirty.
func (in *Incremental) SetConfig(cfg Config) {
	in.cfg = cfg.withDefaults()
	in.set.SetConjunctionLimit(in.cfg.MaxConjunctionsPerFlow)
	in.markAll()
}

// SetBindings replaces the local pods' port bindings, marking only the pods
// whose binding changed.
func (in *Incremental) SetBindings(b map[string]Binding) {
	old := in.cfg.Bindings
	in.cfg.Bindings = b
	changed := map[string]bool{}
	for k, ob := range old {
		if nb, ok := b[k]; !ok || nb.OFPort != ob.OFPort || nb.MAC.String() != ob.MAC.String() {
			changed[k] = true
		}
	}
	for k := range b {
		if _, ok := old[k]; !ok {
			changed[k] = true
		}
	}
	for key := range changed {
		ns, name, _ := strings.Cut(key, "/")
		for _, p := range in.podsByNS[ns] {
			if p.Name == name {
				in.markPodAsTarget(p)
			}
		}
	}
}

func (in *Incremental) markAll() {
	in.dirty[fragPipeline] = true
	in.dirty[fragNode] = true
	for _, p := range in.c.Pods {
		in.dirty[podFrag(p)] = true
	}
	for _, p := range in.c.Policies {
		in.markPolicy(p)
	}
	for key := range in.c.Services {
		in.dirty[serviceFrag(key)] = true
	}
	for name := range in.c.Nodes {
		in.dirty[nodeFrag(name)] = true
	}
	in.nodesAll = true
	// Render every peer fragment again, but keep knowing which exist: a
	// rule that now has no peer flows must still remove its fragment.
	for _, m := range in.peerMemos {
		m.sig = staleMemo
	}
	in.set.fragments(func(id string) {
		if key, ok := strings.CutPrefix(id, "rulepeers/"); ok {
			id = ruleFrag(key) // computed with its rule
		}
		in.dirty[id] = true
	})
}

// Fragment IDs.
const (
	fragPipeline = "pipeline"
	fragNode     = "node"
)

func podFrag(p *model.Pod) string   { return "pod/" + p.UID }
func ruleFrag(key string) string    { return "rule/" + key }
func serviceFrag(key string) string { return "svc/" + key }

func (in *Incremental) indexPod(p *model.Pod) {
	m := in.podsByNS[p.Namespace]
	if m == nil {
		m = map[string]*model.Pod{}
		in.podsByNS[p.Namespace] = m
	}
	m[p.UID] = p
}

func (in *Incremental) unindexPod(p *model.Pod) {
	if m := in.podsByNS[p.Namespace]; m != nil {
		delete(m, p.UID)
		if len(m) == 0 {
			delete(in.podsByNS, p.Namespace)
		}
	}
}

func (in *Incremental) indexPolicy(p *model.Policy) {
	m := in.polByNS[p.Namespace]
	if m == nil {
		m = map[string]*model.Policy{}
		in.polByNS[p.Namespace] = m
	}
	m[p.Key()] = p
	in.rules.add(p, in.nsLabels)
}

func (in *Incremental) unindexPolicy(p *model.Policy) {
	if m := in.polByNS[p.Namespace]; m != nil {
		delete(m, p.Key())
		if len(m) == 0 {
			delete(in.polByNS, p.Namespace)
		}
	}
	in.rules.remove(p.Key())
}

// SetPod adds or replaces a pod (by UID).
func (in *Incremental) SetPod(p *model.Pod) {
	old, ok := in.c.Pods[p.UID]
	relabel := ok && onlyLabelsDiffer(old, p)
	switch {
	case relabel:
		in.markRelabel(old, p)
	case ok:
		in.markPodEverywhere(old)
	}
	if ok {
		in.unindexPod(old)
	}
	in.c.AddPod(p)
	in.indexPod(p)
	in.podChanged(old, p)
	if !relabel {
		in.markPodEverywhere(p)
	}
}

// onlyLabelsDiffer reports whether two versions of a pod differ in labels
// only (the common update: addresses, ports and phase stay).
func onlyLabelsDiffer(a, b *model.Pod) bool {
	x, y := *a, *b
	x.Labels, y.Labels = nil, nil
	return reflect.DeepEqual(x, y)
}

// DeletePod removes a pod.
func (in *Incremental) DeletePod(uid string) {
	old, ok := in.c.Pods[uid]
	if !ok {
		return
	}
	in.markPodEverywhere(old)
	in.unindexPod(old)
	delete(in.c.Pods, uid)
	in.podChanged(old, nil)
	delete(in.podAddrs, uid)
}

// markPodEverywhere marks what one version of a pod takes part in: its own
// fragment, the rules targeting it, the rules it is a peer of. Candidate
// rules come from the policies of the pod's namespace and the rule index;
// peerMayInvolve decides.
func (in *Incremental) markPodEverywhere(p *model.Pod) {
	in.markPodAsTarget(p)
	check := func(r ruleRef) {
		if in.peerMayInvolve(r.pol, r.dir, r.rule(), p) {
			in.dirty[ruleFrag(RuleKey(r.pol, r.dir, r.index))] = true
		}
	}
	for _, pol := range in.polByNS[p.Namespace] {
		for _, d := range directions {
			for i := range pol.Rules(d) {
				check(ruleRef{pol, d, i})
			}
		}
	}
	in.rules.forPod(p, in.nsLabelSet(p.Namespace), check)
}

// markRelabel marks what a change of a pod's labels alone affects: its own
// fragment (isolation), the rules of policies whose selection of it flips,
// and the rules one of whose selector peers selects one version and not the
// other (selectionFlips). Other rules see the same peers, addresses and
// ports, so their flows stay.
func (in *Incremental) markRelabel(old, p *model.Pod) {
	in.dirty[podFrag(p)] = true
	if p.Node == in.cfg.Node {
		for _, pol := range in.polByNS[p.Namespace] {
			if pol.PodSelector.Matches(old.Labels) != pol.PodSelector.Matches(p.Labels) {
				in.markPolicy(pol)
			}
		}
	}
	check := func(r ruleRef) {
		if in.selectionFlips(r, old, p) {
			in.dirty[ruleFrag(RuleKey(r.pol, r.dir, r.index))] = true
		}
	}
	for _, pol := range in.polByNS[p.Namespace] {
		for _, d := range directions {
			for i := range pol.Rules(d) {
				check(ruleRef{pol, d, i})
			}
		}
	}
	nsLabels := in.nsLabelSet(p.Namespace)
	in.rules.forPod(old, nsLabels, check)
	in.rules.forPod(p, nsLabels, check)
}

// selectionFlips reports whether one of the rule's selector peers selects
// one version of a relabelled pod and not the other. Labels matter to a
// rule's peers only through its selectors: whether the pod's addresses are
// peers, and which peer lists a shared address first (its owner, whose
// named ports count). ipBlocks and named-port resolution see addresses and
// ports, which a relabel keeps.
func (in *Incremental) selectionFlips(r ruleRef, old, p *model.Pod) bool {
	rule := r.rule()
	for i := range rule.Peers {
		peer := &rule.Peers[i]
		if peer.IPBlock == nil && in.c.PeerSelects(peer, r.pol.Namespace, old) != in.c.PeerSelects(peer, r.pol.Namespace, p) {
			return true
		}
	}
	return false
}

// markPodAsTarget marks the pod's own fragment and the rules of policies
// that select it.
func (in *Incremental) markPodAsTarget(p *model.Pod) {
	in.dirty[podFrag(p)] = true
	if p.Node != in.cfg.Node {
		return
	}
	for _, pol := range in.polByNS[p.Namespace] {
		if pol.PodSelector.Matches(p.Labels) {
			in.markPolicy(pol)
		}
	}
}

var directions = []model.Direction{model.Ingress, model.Egress}

// peerMayInvolve reports whether pod p can be one of the rule's peers or
// (egress named ports) a destination its names resolve against.
func (in *Incremental) peerMayInvolve(pol *model.Policy, d model.Direction, r *model.Rule, p *model.Pod) bool {
	named := false
	for _, ps := range r.Ports {
		if ps.Name != "" {
			named = true
		}
	}
	if r.AllPeers() {
		return named && d == model.Egress
	}
	for i := range r.Peers {
		peer := &r.Peers[i]
		if peer.IPBlock != nil {
			if named && d == model.Egress && containsAny(peer.IPBlock.CIDR, p.IPs) {
				return true
			}
			continue
		}
		if in.c.PeerSelects(peer, pol.Namespace, p) {
			return true
		}
	}
	return false
}

// SetNamespace adds or replaces a namespace.
func (in *Incremental) SetNamespace(ns *model.Namespace) {
	old := in.c.Namespaces[ns.Name]
	in.markNamespaceChange(old, ns)
	if old != nil {
		in.nsLabels.remove(old.Name, old.Labels)
	}
	in.c.AddNamespace(ns)
	in.nsLabels.add(ns.Name, ns.Labels)
}

// DeleteNamespace removes a namespace (its pods and policies go separately).
func (in *Incremental) DeleteNamespace(name string) {
	if old, ok := in.c.Namespaces[name]; ok {
		in.markNamespaceChange(old, nil)
		in.nsLabels.remove(old.Name, old.Labels)
		delete(in.c.Namespaces, name)
	}
}

// markNamespaceChange marks what a namespace going from old to new affects
// (nil is a namespace not known, which the model treats as one without
// labels or annotation). Its annotation decides the ingress isolation of
// its local pods and, in v1.6 mode, whether its policies apply; its labels
// decide which namespace selectors match it, so a rule is marked when one
// of its peers' namespace selectors matches one version and not the other.
func (in *Incremental) markNamespaceChange(old, ns *model.Namespace) {
	var name string
	if ns != nil {
		name = ns.Name
	} else {
		name = old.Name
	}
	if legacyIsolates(old) != legacyIsolates(ns) {
		for _, p := range in.podsByNS[name] {
			if p.Node == in.cfg.Node { // other nodes' pods' flows ignore namespaces
				in.dirty[podFrag(p)] = true
			}
		}
		if in.c.Mode == model.ModeV16 {
			for _, pol := range in.polByNS[name] {
				in.markPolicy(pol)
			}
		}
	}
	in.markAuditChange(name, old, ns)
	oldLabels, newLabels := namespaceLabels(old), namespaceLabels(ns)
	check := func(r ruleRef) {
		rule := r.rule()
		for j := range rule.Peers {
			peer := &rule.Peers[j]
			if peer.NamespaceSelector != nil && peer.NamespaceSelector.Matches(oldLabels) != peer.NamespaceSelector.Matches(newLabels) {
				in.dirty[ruleFrag(RuleKey(r.pol, r.dir, r.index))] = true
				if g := in.group(peer, r.pol.Namespace); g != nil {
					g.invalidate()
				}
			}
		}
	}
	in.rules.forNamespace(oldLabels, check)
	in.rules.forNamespace(newLabels, check)
}

func legacyIsolates(ns *model.Namespace) bool { return ns != nil && ns.LegacyIsolation.Isolates() }

func namespaceLabels(ns *model.Namespace) labels.Set {
	if ns == nil || ns.Labels == nil {
		return labels.Set{}
	}
	return ns.Labels
}

// SetPolicy adds or replaces a policy.
func (in *Incremental) SetPolicy(p *model.Policy) {
	in.refGroups(p) // before the old version lets go of groups both share
	if old, ok := in.c.Policies[p.Key()]; ok {
		in.markPolicyAndTargets(old)
		in.unindexPolicy(old)
		in.unrefGroups(old)
	}
	in.c.AddPolicy(p)
	in.indexPolicy(p)
	in.markPolicyAndTargets(p)
}

// DeletePolicy removes a policy by namespace/name.
func (in *Incremental) DeletePolicy(key string) {
	if old, ok := in.c.Policies[key]; ok {
		in.markPolicyAndTargets(old)
		in.unindexPolicy(old)
		in.unrefGroups(old)
		delete(in.c.Policies, key)
	}
}

func (in *Incremental) markPolicy(p *model.Policy) {
	for _, d := range directions {
		for i := range p.Rules(d) {
			in.dirty[ruleFrag(RuleKey(p, d, i))] = true
		}
	}
}

// markPolicyAndTargets also marks the pods whose isolation the policy decides.
func (in *Incremental) markPolicyAndTargets(p *model.Policy) {
	in.markPolicy(p)
	for _, pod := range in.podsByNS[p.Namespace] {
		if pod.Node == in.cfg.Node && p.PodSelector.Matches(pod.Labels) {
			in.dirty[podFrag(pod)] = true
		}
	}
}

// Flush recomputes the dirty fragments and returns the keys of flows that
// were added, changed or removed since the last Flush, sorted: exactly
// those (a flow that changed and changed back within one Flush is not
// reported), so a caller that installed the previous Flush's flows installs
// Flow(k) for each key and deletes Removed(k) for those without one.
func (in *Incremental) Flush() ([]openflow.Key, error) {
	if err := in.cfg.checkOverlay(); err != nil {
		return nil, err
	}
	in.resolveNodes()
	ids := make([]string, 0, len(in.dirty))
	for id := range in.dirty {
		ids = append(ids, id)
	}
	sort.Strings(ids) // deterministic conjunction ID allocation
	in.dirty = map[string]bool{}
	in.ctFlushes = nil
	for _, id := range ids {
		flows, err := in.compute(id)
		if err != nil {
			return nil, err
		}
		if err := in.set.SetFragment(id, flows); err != nil {
			return nil, err
		}
	}
	out, err := in.set.Commit()
	if err != nil {
		return nil, err
	}
	in.changedGroups = in.ofGroups.Commit()
	sort.Slice(out, func(i, j int) bool { return keyLess(out[i], out[j]) })
	return out, nil
}

func keyLess(a, b openflow.Key) bool {
	if a.Table != b.Table {
		return a.Table < b.Table
	}
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.Match < b.Match
}

// Flows returns the whole desired flow set, sorted.
func (in *Incremental) Flows() []openflow.Flow { return in.set.Flows() }

// Flow returns the desired flow with key k, if any.
func (in *Incremental) Flow(k openflow.Key) (openflow.Flow, bool) { return in.set.Flow(k) }

// Removed returns the flow key k had before the last Flush removed it
// (Flush reported k and Flow(k) has none).
func (in *Incremental) Removed(k openflow.Key) (openflow.Flow, bool) { return in.set.Removed(k) }

// Len is the number of desired flows.
func (in *Incremental) Len() int { return in.set.Len() }

// compute builds one fragment from the current state.
func (in *Incremental) compute(id string) ([]openflow.Flow, error) {
	switch {
	case id == fragPipeline:
		return pipelineFlows(in.cfg), nil
	case id == fragNode:
		cfg := in.cfg
		if gws := localGatewayIPs(in.cfg, in.c); len(gws) > 0 {
			cfg.NodeIPs = append(append([]netip.Addr{}, cfg.NodeIPs...), gws...)
		}
		return nodeFlows(cfg), nil
	case strings.HasPrefix(id, "node/"):
		name := strings.TrimPrefix(id, "node/")
		if !in.usable[name] {
			return nil, nil // not a remote node, or rejected for a conflict
		}
		return overlayFlows(in.cfg, in.c.Nodes[name], in.c.Nodes[in.cfg.Node]), nil
	case strings.HasPrefix(id, "pod/"):
		pod, ok := in.c.Pods[strings.TrimPrefix(id, "pod/")]
		if !ok || !pod.Active() {
			return nil, nil
		}
		if pod.Node != in.cfg.Node {
			return remoteFlows(in.cfg, []*model.Pod{pod}), nil
		}
		b, ok := in.cfg.Bindings[pod.Key()]
		if !ok {
			return nil, nil
		}
		ing, _ := in.c.IsolatedAmong(pod, model.Ingress, in.polByNS[pod.Namespace])
		eg, _ := in.c.IsolatedAmong(pod, model.Egress, in.polByNS[pod.Namespace])
		return in.auditPodFlows(pod, b, ing, eg, podFlows(in.cfg, pod, b, ing, eg)), nil
	case strings.HasPrefix(id, "rule/"):
		return in.computeRule(strings.TrimPrefix(id, "rule/"))
	case strings.HasPrefix(id, "svc/"):
		return in.computeService(strings.TrimPrefix(id, "svc/")), nil
	}
	return nil, fmt.Errorf("unknown fragment %q", id)
}

// computeRule compiles rule key "ns/name/direction/index"; a rule that no
// longer exists yields nothing and gives back its conjunction IDs.
func (in *Incremental) computeRule(key string) ([]openflow.Flow, error) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 {
		return nil, fmt.Errorf("bad rule key %q", key)
	}
	index, _ := strconv.Atoi(parts[3])
	d := model.Direction(parts[2])
	pol := in.c.Policies[parts[0]+"/"+parts[1]]
	var flows []openflow.Flow
	var dims []peerDim
	var used []string
	var disjoint bool
	if pol != nil && in.c.PolicyAffects(pol, d) && index < len(pol.Rules(d)) {
		var targets []*model.Pod
		for _, pod := range in.podsByNS[pol.Namespace] {
			if pod.Node != in.cfg.Node || len(pod.IPs) == 0 || !in.c.Selects(pol, pod) {
				continue
			}
			if _, ok := in.cfg.Bindings[pod.Key()]; ok {
				targets = append(targets, pod)
			}
		}
		sort.Slice(targets, func(i, j int) bool { return targets[i].Key() < targets[j].Key() })
		rec := &recordingIDs{IDAllocator: in.ids}
		rule := &pol.Rules(d)[index]
		var split *egressSplit
		if d == model.Egress && hasNamedPort(rule) {
			if split = in.egressSplits[key]; split == nil {
				split = &egressSplit{}
				in.egressSplits[key] = split
			}
		}
		flows, dims, disjoint = ruleFlows(ruleInput{
			cluster: in.c, cfg: in.cfg, policy: pol, dir: d, index: index,
			rule: rule, targets: targets, peerAddrs: in.groupAddrs, allPods: in.allPods,
			egressSplit: split,
		}, rec)
		used = rec.keys
		flows = in.auditRuleFlows(pol, d, index, flows)
	}
	if len(flows) == 0 {
		delete(in.egressSplits, key)
	}
	if err := in.setRulePeers(key, dims, disjoint); err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	for _, k := range used {
		keep[k] = true
	}
	for _, k := range in.ruleConjKeys[key] {
		if !keep[k] {
			in.ids.Release(k)
		}
	}
	if len(used) > 0 {
		in.ruleConjKeys[key] = used
	} else {
		delete(in.ruleConjKeys, key)
	}
	return flows, nil
}

// Peer dimensions live in a fragment of their own per rule, "rulepeers/"
// + rule key, computed with the rule's. A rule remembers the peer lists it
// rendered (lists are never changed in place: see withAddrs), so when it is
// recomputed its peer flows are
//   - left alone when its dimensions and their lists are the same (a local
//     target came or went: one flow changes, not its hundreds of peers);
//   - patched, one flow per address that came or went, when only the lists
//     changed (a pod joined or left a group) and no two dimensions can
//     share an address;
//   - rendered again otherwise.
func rulePeersFrag(key string) string { return "rulepeers/" + key }

// staleMemo is a signature no dimension has: the fragment is rendered again.
const staleMemo = "\x00stale"

// peerMemo is what a rule's peer fragment was rendered from.
type peerMemo struct {
	sig   string       // the dimensions' signatures
	peers [][]peerAddr // each dimension's list
}

// setRulePeers updates the rule's peer fragment from its dimensions.
// disjoint says no address can be in two of them (so that each flow of the
// fragment comes from one dimension).
func (in *Incremental) setRulePeers(key string, dims []peerDim, disjoint bool) error {
	old := in.peerMemos[key]
	id := rulePeersFrag(key)
	if len(dims) == 0 {
		if old != nil {
			delete(in.peerMemos, key)
			return in.set.SetFragment(id, nil)
		}
		return nil
	}
	next := &peerMemo{peers: make([][]peerAddr, len(dims))}
	var b strings.Builder
	for i, d := range dims {
		b.WriteString(d.signature())
		b.WriteByte('|')
		next.peers[i] = d.peers
	}
	next.sig = b.String()
	in.peerMemos[key] = next
	if old != nil && old.sig == next.sig && (disjoint || len(dims) == 1) {
		var removes, adds []FlowChange
		for i, d := range dims {
			d.diff(old.peers[i], &removes, &adds)
		}
		// Removes first: an address moving between dimensions is removed
		// from one before it is added to the other.
		in.set.PatchFragment(id, append(removes, adds...))
		return nil
	}
	var flows []openflow.Flow
	for _, d := range dims {
		flows = append(flows, d.flows()...)
	}
	return in.set.SetFragment(id, flows)
}

// peerPods returns the pods a selector peer selects: what
// model.Cluster.PeerSelects accepts, with the namespace part decided once
// per namespace, and namespace selectors looked up in the label index.
func (in *Incremental) peerPods(peer *model.Peer, policyNS string) []*model.Pod {
	var out []*model.Pod
	add := func(ns string) {
		for _, p := range in.podsByNS[ns] {
			if p.Active() && (peer.PodSelector == nil || peer.PodSelector.Matches(p.Labels)) {
				out = append(out, p)
			}
		}
	}
	if peer.NamespaceSelector == nil {
		add(policyNS)
		return out
	}
	names, ok := in.nsLabels.candidates(peer.NamespaceSelector)
	if !ok {
		// No anchor: any namespace, also one not known (empty labels).
		for ns := range in.podsByNS {
			names = append(names, ns)
		}
	}
	for _, ns := range names {
		if peer.NamespaceSelector.Matches(in.nsLabelSet(ns)) {
			add(ns)
		}
	}
	return out
}

func (in *Incremental) nsLabelSet(name string) labels.Set {
	if ns, ok := in.c.Namespaces[name]; ok && ns.Labels != nil {
		return ns.Labels
	}
	return labels.Set{}
}

func (in *Incremental) allPods() []*model.Pod {
	out := make([]*model.Pod, 0, len(in.c.Pods))
	for _, p := range in.c.Pods {
		out = append(out, p)
	}
	return out
}

// recordingIDs notes the conjunction keys a rule asks for.
type recordingIDs struct {
	*IDAllocator
	keys []string
}

func (r *recordingIDs) ID(key string) uint32 {
	r.keys = append(r.keys, key)
	return r.IDAllocator.ID(key)
}

// Conjunctions maps every allocated conjunction ID to its key.
func (in *Incremental) Conjunctions() map[uint32]string {
	out := make(map[uint32]string, len(in.ids.used))
	for id, k := range in.ids.used {
		out[id] = k
	}
	return out
}

// Origins describes every cookie the desired flows carry.
func (in *Incremental) Origins() map[openflow.Cookie]string {
	out := map[openflow.Cookie]string{
		pipelineCookie: "pipeline skeleton",
		nodeCookie:     fmt.Sprintf("node %s (gateway port %s)", in.cfg.Node, PortName(in.cfg.GatewayPort)),
	}
	for _, p := range in.c.Pods {
		if p.Node == in.cfg.Node {
			out[PodCookie(p)] = "pod " + p.Key()
		} else {
			out[remoteCookie(p)] = "remote pod " + p.Key()
		}
	}
	for _, pol := range in.c.Policies {
		for _, d := range directions {
			for i := range pol.Rules(d) {
				out[RuleCookie(RuleKey(pol, d, i))] = fmt.Sprintf("policy %s %s rule %d", pol.Key(), d, i)
			}
		}
	}
	for _, svc := range in.c.Services {
		out[ServiceCookie(svc)] = "service " + svc.Key()
	}
	for name := range in.c.Nodes {
		if name != in.cfg.Node {
			out[NodeCookie(name)] = "remote node " + name
		}
	}
	return out
}

// SetNode adds or replaces a node (by name). Its own fragment is recomputed
// (for this node: the node fragment, whose node-local sources include its
// gateway addresses), and those of the nodes whose usability it changes
// (see resolveNodes): none when it conflicts with no node before and after.
func (in *Incremental) SetNode(n *model.Node) {
	in.c.AddNode(n)
	in.markNode(n.Name)
}

// DeleteNode removes a node by name.
func (in *Incremental) DeleteNode(name string) {
	if _, ok := in.c.Nodes[name]; ok {
		delete(in.c.Nodes, name)
		in.markNode(name)
	}
}

func (in *Incremental) markNode(name string) {
	if name == in.cfg.Node {
		in.nodesAll = true // its claims are everyone's business
		in.dirty[fragNode] = true
		// Its InternalIPs are the tunnel source of every remote node's
		// flows.
		for other := range in.c.Nodes {
			if other != name {
				in.dirty[nodeFrag(other)] = true
			}
		}
		return
	}
	in.nodesChanged[name] = true
	in.dirty[nodeFrag(name)] = true
}

// resolveNodes recomputes which remote nodes are usable after node events
// and marks the fragments of the nodes whose usability changed. The whole
// list is resolved again (ResolveRemoteNodes) rather than only the event's
// overlapping nodes, because a rejected node does not block others: one
// change can ripple along a chain of conflicts to nodes it does not
// overlap. Once per Flush, so a batch of node events costs one resolution;
// and none in the common case (resolveFew). Without an overlay no node is
// usable.
func (in *Incremental) resolveNodes() {
	if !in.nodesAll && len(in.nodesChanged) == 0 {
		return
	}
	changed, all := in.nodesChanged, in.nodesAll
	in.nodesChanged, in.nodesAll = map[string]bool{}, false
	if !all && in.resolveFew(changed) {
		return
	}
	var r RemoteNodes
	if in.cfg.Overlay.TunnelPort != 0 {
		nodes := make([]*model.Node, 0, len(in.c.Nodes))
		for _, n := range in.c.Nodes {
			nodes = append(nodes, n)
		}
		r = ResolveRemoteNodes(nodes, in.cfg.Node, in.cfg.NodeIPs...)
	}
	usable := r.usableNames()
	for name := range in.usable {
		if !usable[name] {
			in.dirty[nodeFrag(name)] = true
		}
	}
	for name := range usable {
		if !in.usable[name] {
			in.dirty[nodeFrag(name)] = true
		}
	}
	in.usable, in.rejected = usable, map[string]RejectedNode{}
	for _, rej := range r.Rejected {
		in.rejected[rej.Name] = rej
	}
}

// resolveFew updates the verdict for the changed nodes only, and reports
// whether it could: when no node was rejected before and each changed node
// overlaps no other node and none of this node's addresses, no other
// node's standing can change, and a changed node's own (usable, or
// rejected for its own claims) is what it gets resolved alone. Its cost is
// the pairwise checks of the changed nodes, not a map operation per
// address bit of every node.
func (in *Incremental) resolveFew(changed map[string]bool) bool {
	const few = 8 // beyond, the pairwise checks cost more than the resolution
	if len(changed) > few || len(in.rejected) > 0 || in.cfg.Overlay.TunnelPort == 0 {
		return false
	}
	for name := range changed {
		n := in.c.Nodes[name]
		if n == nil {
			continue
		}
		for _, ip := range in.cfg.NodeIPs {
			if overlapsNode(n, netip.PrefixFrom(ip, ip.BitLen())) {
				return false
			}
		}
		for _, m := range in.c.Nodes {
			if m != n && nodesOverlap(n, m) {
				return false
			}
		}
	}
	for name := range changed {
		delete(in.usable, name)
		in.dirty[nodeFrag(name)] = true
		n := in.c.Nodes[name]
		if n == nil {
			continue
		}
		// It overlaps nobody: only its own claims can get it rejected.
		one := ResolveRemoteNodes([]*model.Node{n}, in.cfg.Node)
		if len(one.Usable) > 0 {
			in.usable[name] = true
		}
		for _, rej := range one.Rejected {
			in.rejected[name] = rej
		}
	}
	return true
}

// nodesOverlap reports whether a claim of a (a pod CIDR or an InternalIP)
// overlaps one of b.
func nodesOverlap(a, b *model.Node) bool {
	for _, p := range b.PodCIDRs {
		if overlapsNode(a, p) {
			return true
		}
	}
	for _, ip := range b.InternalIPs {
		if overlapsNode(a, netip.PrefixFrom(ip, ip.BitLen())) {
			return true
		}
	}
	return false
}

// overlapsNode reports whether p overlaps a claim of n.
func overlapsNode(n *model.Node, p netip.Prefix) bool {
	for _, q := range n.PodCIDRs {
		if q.Overlaps(p) {
			return true
		}
	}
	for _, ip := range n.InternalIPs {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// RemoteNodes is the overlay's verdict on the other nodes as of the last
// Flush: the usable ones (with tunnel flows) and the rejected ones.
func (in *Incremental) RemoteNodes() RemoteNodes {
	var r RemoteNodes
	for _, name := range slices.Sorted(maps.Keys(in.usable)) {
		r.Usable = append(r.Usable, in.c.Nodes[name])
	}
	for _, name := range slices.Sorted(maps.Keys(in.rejected)) {
		r.Rejected = append(r.Rejected, in.rejected[name])
	}
	return r
}

// SetService adds or replaces a Service (nil-safe callers leave headless
// and ExternalName Services out: they are deleted).
func (in *Incremental) SetService(svc *model.Service) {
	in.c.AddService(svc)
	in.dirty[serviceFrag(svc.Key())] = true
}

// DeleteService removes a Service by namespace/name.
func (in *Incremental) DeleteService(key string) {
	if _, ok := in.c.Services[key]; ok {
		delete(in.c.Services, key)
		in.dirty[serviceFrag(key)] = true
	}
}

// SetEndpointSlice adds or replaces an EndpointSlice.
func (in *Incremental) SetEndpointSlice(sl *model.EndpointSlice) {
	if old, ok := in.c.EndpointSlices[sl.Key()]; ok {
		in.unindexSlice(old)
		in.dirty[serviceFrag(old.ServiceKey())] = true
	}
	in.c.AddEndpointSlice(sl)
	in.indexSlice(sl)
	in.dirty[serviceFrag(sl.ServiceKey())] = true
}

// DeleteEndpointSlice removes an EndpointSlice by namespace/name.
func (in *Incremental) DeleteEndpointSlice(key string) {
	if old, ok := in.c.EndpointSlices[key]; ok {
		in.unindexSlice(old)
		delete(in.c.EndpointSlices, key)
		in.dirty[serviceFrag(old.ServiceKey())] = true
	}
}

func (in *Incremental) indexSlice(sl *model.EndpointSlice) {
	m := in.slicesBySvc[sl.ServiceKey()]
	if m == nil {
		m = map[string]*model.EndpointSlice{}
		in.slicesBySvc[sl.ServiceKey()] = m
	}
	m[sl.Key()] = sl
}

func (in *Incremental) unindexSlice(sl *model.EndpointSlice) {
	if m := in.slicesBySvc[sl.ServiceKey()]; m != nil {
		delete(m, sl.Key())
		if len(m) == 0 {
			delete(in.slicesBySvc, sl.ServiceKey())
		}
	}
}

// computeService compiles Service key's load balancing: its flows (the
// fragment's), its groups, and the UDP conntrack entries its changed
// backends leave stale. A Service that is gone yields nothing and gives
// back its group IDs.
func (in *Incremental) computeService(key string) []openflow.Flow {
	svc := in.c.Services[key]
	var res serviceResult
	if svc != nil {
		slices := make([]*model.EndpointSlice, 0, len(in.slicesBySvc[key]))
		for _, sl := range in.slicesBySvc[key] {
			slices = append(slices, sl)
		}
		// In key order: a backend in two slices is taken from the later one.
		sort.Slice(slices, func(i, j int) bool { return slices[i].Key() < slices[j].Key() })
		res = serviceFlows(in.cfg, svc, slices, in.groupIDs.ID)
		if old, ok := in.svcServing[key]; ok {
			in.ctFlushes = append(in.ctFlushes, staleUDP(in.cfg.CTZone, old, res.serving)...)
		}
		in.svcServing[key] = res.serving
	} else {
		delete(in.svcServing, key)
	}
	keep := map[string]bool{}
	for _, k := range res.groupKeys {
		keep[k] = true
	}
	for _, k := range in.svcGroupKeys[key] {
		if !keep[k] {
			in.groupIDs.Release(k)
		}
	}
	if len(res.groupKeys) > 0 {
		in.svcGroupKeys[key] = res.groupKeys
	} else {
		delete(in.svcGroupKeys, key)
	}
	in.ofGroups.SetFragment(serviceFrag(key), res.groups)
	return res.flows
}

// GroupChanges returns the IDs of the groups the last Flush added, changed
// or removed, sorted: install Group(id) for each, or delete the ID when it
// has none.
func (in *Incremental) GroupChanges() []uint32 { return in.changedGroups }

// Group returns the desired group with ID id, if any.
func (in *Incremental) Group(id uint32) (openflow.Group, bool) { return in.ofGroups.Group(id) }

// Groups returns every desired group, by ID.
func (in *Incremental) Groups() []openflow.Group { return in.ofGroups.Groups() }

// GroupCount is the number of desired groups.
func (in *Incremental) GroupCount() int { return in.ofGroups.Len() }

// ConntrackFlushes returns the conntrack entries the last Flush made stale
// (UDP to backends that stopped serving a Service port): delete them after
// the flows and groups are installed.
func (in *Incremental) ConntrackFlushes() []openflow.ConntrackFlush { return in.ctFlushes }
