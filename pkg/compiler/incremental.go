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
//
// Its memos rest on two invariants, stated here once:
//
//  1. An object handed to Incremental (in NewIncremental's cluster or to a
//     Set method) is never changed afterwards: a change is a new object;
//     the object held may be passed again only unchanged (a resync).
//     Versions are told apart by pointer: a policy's selector peers find
//     their address groups by *model.Peer (peerUse); groups and egress
//     named-port splits hold the pod versions (*model.Pod) whose addresses
//     and ports they listed (groupSeesPod, podPeerAddrs,
//     egressSplit.update); and events compare the old version with the new
//     one (markRelabel, markNamespaceChange, the label and slice indexes).
//     Checked where a pointer is a key: SetPolicy, given the policy it
//     holds, panics when a peer's selectors changed in place (refGroups):
//     the old version is lost, so no flow derived from it can be trusted.
//     Elsewhere the memos compare by value where that is cheap (an egress
//     split's port specs, a group member by UID); an in-place change of a
//     pod or namespace passed again is not detected (that needs a copy of
//     every object).
//  2. A peer list once handed out (an address group's, a rule's merged
//     peers, an egress split's) is never changed: rules remember the lists
//     they rendered (peerMemo) and diff the current ones against them,
//     taking the same array for the same list (peerDim.diff). Held by
//     construction: the functions making lists (sortedAddrs, withAddrs,
//     withoutAddrs, rulePeers, mergeAddrs, egressNamedAddrs,
//     egressSplit.update) return new arrays, and nothing writes to a listed
//     element. TestPeerListsNeverChange checks it after random events.
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
	// ruleStates is what each rule left for the next Flush (see ruleState);
	// dirtyRules lists, in marking order, those marked since the last Flush.
	ruleStates map[ruleID]*ruleState
	dirtyRules []dirtyRule
	// allRules: every rule is to be computed at the next Flush (markAll),
	// which lists them then rather than giving each a state now.
	allRules bool
	// groups are the selector peers' address groups by groupKey, and
	// peerGroups each indexed peer's group (see groups.go); podAddrs
	// memoizes pods' addresses as rendered peers.
	groups     map[string]*addrGroup
	peerGroups map[peerUse]*peerRef
	podAddrs   map[string]podAddrs

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
	// dirty marks the fragments to compute at the next Flush; a rule's
	// mark is in its ruleState.
	dirty map[fragKey]bool
	// changedGroups and ctFlushes are what the last Flush changed besides
	// flows.
	changedGroups []uint32
	ctFlushes     []openflow.ConntrackFlush
}

// NewIncremental takes ownership of c (change it only through the returned
// value from now on); everything is dirty until the first Flush.
func NewIncremental(c *model.Cluster, cfg Config) *Incremental {
	inc := &Incremental{
		c: c, ids: NewIDAllocator(),
		podsByNS:     map[string]map[string]*model.Pod{},
		polByNS:      map[string]map[string]*model.Policy{},
		nsLabels:     labelIndex{},
		rules:        newRuleIndex(),
		ruleStates:   map[ruleID]*ruleState{},
		groups:       map[string]*addrGroup{},
		peerGroups:   map[peerUse]*peerRef{},
		podAddrs:     map[string]podAddrs{},
		slicesBySvc:  map[string]map[string]*model.EndpointSlice{},
		groupIDs:     newIDAllocatorIn(openflow.GroupIDOurs, ^openflow.GroupIDOursMask),
		svcGroupKeys: map[string][]string{},
		svcServing:   map[string]map[serviceFamilyPort]map[model.Backend]bool{},
		set:          NewFlowSet(),
		ofGroups:     NewGroupSet(),
		dirty:        map[fragKey]bool{},
		nodesChanged: map[string]bool{},
		usable:       map[string]bool{},
		rejected:     map[string]RejectedNode{},
	}
	for _, sl := range c.EndpointSlices {
		inc.indexSlice(sl)
	}
	for _, p := range c.Pods {
		inc.indexPod(p)
	}
	for _, ns := range c.Namespaces {
		inc.nsLabels.add(ns.Name, ns.Labels)
	}
	for _, p := range c.Policies {
		inc.indexPolicy(p)
		inc.refGroups(p)
	}
	inc.SetConfig(cfg)
	return inc
}

// Cluster returns the state (read only).
func (inc *Incremental) Cluster() *model.Cluster { return inc.c }

// Config returns the effective configuration.
func (inc *Incremental) Config() Config { return inc.cfg }

// SetConfig replaces the configuration (bindings included) and marks
// everything dirty.
func (inc *Incremental) SetConfig(cfg Config) {
	inc.cfg = cfg.withDefaults()
	inc.set.SetConjunctionLimit(inc.cfg.MaxConjunctionsPerFlow)
	inc.markAll()
}

// SetBindings replaces the local pods' port bindings, marking only the pods
// whose binding changed.
func (inc *Incremental) SetBindings(b map[string]Binding) {
	old := inc.cfg.Bindings
	inc.cfg.Bindings = b
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
		for _, p := range inc.podsByNS[ns] {
			if p.Name == name {
				inc.markPodAsTarget(p)
			}
		}
	}
}

func (inc *Incremental) markAll() {
	if len(inc.dirty) == 0 {
		// Sized once rather than grown entry by entry (a full compile).
		inc.dirty = make(map[fragKey]bool, 2+len(inc.c.Pods)+len(inc.c.Services)+len(inc.c.Nodes))
	}
	inc.dirty[pipelineFrag] = true
	inc.dirty[localNodeFrag] = true
	for _, p := range inc.c.Pods {
		inc.dirty[podFrag(p)] = true
	}
	// Every policy's rules: listed by Flush (listAllRules), whatever
	// policies there are then.
	inc.allRules = true
	for key := range inc.c.Services {
		inc.dirty[serviceFrag(key)] = true
	}
	for name := range inc.c.Nodes {
		inc.dirty[remoteNodeFrag(name)] = true
	}
	inc.nodesAll = true
	// Every rule that holds state: those of policies gone since the last
	// Flush included. Their peer fragments are rendered again, but known
	// to exist: a rule that now has no peer flows must still remove its.
	// With the objects above, that is every fragment that has flows.
	for id, st := range inc.ruleStates {
		if st.peers != nil {
			st.peers.sig = staleMemo
		}
		inc.markState(id, st)
	}
}

// listAllRules lists, after markAll, every rule of every policy as dirty:
// those with a state are (markAll marked them, and no state is made while
// allRules holds); the others are listed without one (computeRule makes
// it if the rule leaves anything for the next Flush). Most rules of a
// large cluster never get a state.
func (inc *Incremental) listAllRules() {
	if !inc.allRules {
		return
	}
	inc.allRules = false
	n := 0
	for _, p := range inc.c.Policies {
		n += len(p.Ingress) + len(p.Egress)
	}
	inc.dirtyRules = slices.Grow(inc.dirtyRules, n)
	for _, p := range inc.c.Policies {
		key := p.Key()
		for _, d := range directions {
			for i := range p.Rules(d) {
				if id := newRuleID(key, d, i); inc.ruleStates[id] == nil {
					inc.dirtyRules = append(inc.dirtyRules, dirtyRule{id: id})
				}
			}
		}
	}
}

// fragKind is what a fragment holds the flows of.
type fragKind uint8

const (
	pipelineFragment   fragKind = iota // the pipeline skeleton
	localNodeFragment                  // this node (its ports, addresses, gateway)
	remoteNodeFragment                 // a remote node's tunnel flows
	podFragment                        // a local or remote pod
	ruleFragment                       // a policy rule, but its peer dimensions
	rulePeersFragment                  // a rule's peer dimensions (see setRulePeers)
	serviceFragment                    // a Service's load balancing (with its groups)
)

// fragKey names one fragment of the flow set. The flow and group sets
// take it as text (String), which also orders Flush's work.
type fragKey struct {
	kind fragKind
	// name is the remote node's name, the pod's UID or the Service's
	// namespace/name.
	name string
	rule ruleID // of ruleFragment and rulePeersFragment
}

var (
	pipelineFrag  = fragKey{kind: pipelineFragment}
	localNodeFrag = fragKey{kind: localNodeFragment}
)

func remoteNodeFrag(name string) fragKey { return fragKey{kind: remoteNodeFragment, name: name} }
func podFrag(p *model.Pod) fragKey       { return fragKey{kind: podFragment, name: p.UID} }
func ruleFrag(id ruleID) fragKey         { return fragKey{kind: ruleFragment, rule: id} }
func rulePeersFrag(id ruleID) fragKey    { return fragKey{kind: rulePeersFragment, rule: id} }
func serviceFrag(key string) fragKey     { return fragKey{kind: serviceFragment, name: key} }

// String is the fragment's ID in the flow and group sets.
func (k fragKey) String() string {
	switch k.kind {
	case pipelineFragment:
		return "pipeline"
	case localNodeFragment:
		return "node"
	case remoteNodeFragment:
		return "node/" + k.name
	case podFragment:
		return "pod/" + k.name
	case ruleFragment: // "rule/" + k.rule.String(), in one allocation
		return "rule/" + k.rule.policy + "/" + string(k.rule.dir()) + "/" + strconv.Itoa(int(k.rule.index))
	case rulePeersFragment:
		return "rulepeers/" + k.rule.policy + "/" + string(k.rule.dir()) + "/" + strconv.Itoa(int(k.rule.index))
	case serviceFragment:
		return "svc/" + k.name
	}
	return fmt.Sprintf("fragment kind %d", k.kind)
}

// ruleState is what one rule leaves for the next Flush: kept while any
// field is set (see computeRule).
type ruleState struct {
	dirty bool // compute it at the next Flush (listed in dirtyRules)
	// conjKeys are the conjunction keys its flows hold IDs of.
	conjKeys []string
	// peers is what its peer fragment was rendered from; nil: it has none.
	peers *peerMemo
	// split is its egress named-port split (egress rules with named ports
	// and flows only).
	split *egressSplit
}

func (st *ruleState) empty() bool {
	return !st.dirty && len(st.conjKeys) == 0 && st.peers == nil && st.split == nil
}

// dirtyRule is a marked rule with its state (Flush needs no lookup; nil:
// it has none, see listAllRules).
type dirtyRule struct {
	id ruleID
	st *ruleState
}

// markRule marks a rule (of a policy that may since be gone) to compute.
func (inc *Incremental) markRule(id ruleID) {
	if inc.allRules {
		return // every rule is (listAllRules)
	}
	st := inc.ruleStates[id]
	if st == nil {
		st = &ruleState{}
		inc.ruleStates[id] = st
	}
	inc.markState(id, st)
}

// markState marks rule id, whose state is st.
func (inc *Incremental) markState(id ruleID, st *ruleState) {
	if !st.dirty {
		st.dirty = true
		inc.dirtyRules = append(inc.dirtyRules, dirtyRule{id, st})
	}
}

func (inc *Incremental) indexPod(p *model.Pod) {
	m := inc.podsByNS[p.Namespace]
	if m == nil {
		m = map[string]*model.Pod{}
		inc.podsByNS[p.Namespace] = m
	}
	m[p.UID] = p
}

func (inc *Incremental) unindexPod(p *model.Pod) {
	if m := inc.podsByNS[p.Namespace]; m != nil {
		delete(m, p.UID)
		if len(m) == 0 {
			delete(inc.podsByNS, p.Namespace)
		}
	}
}

func (inc *Incremental) indexPolicy(p *model.Policy) {
	m := inc.polByNS[p.Namespace]
	if m == nil {
		m = map[string]*model.Policy{}
		inc.polByNS[p.Namespace] = m
	}
	m[p.Key()] = p
	inc.rules.add(p, inc.nsLabels)
}

func (inc *Incremental) unindexPolicy(p *model.Policy) {
	if m := inc.polByNS[p.Namespace]; m != nil {
		delete(m, p.Key())
		if len(m) == 0 {
			delete(inc.polByNS, p.Namespace)
		}
	}
	inc.rules.remove(p.Key())
}

// SetPod adds or replaces a pod (by UID).
func (inc *Incremental) SetPod(p *model.Pod) {
	old, ok := inc.c.Pods[p.UID]
	relabel := ok && onlyLabelsDiffer(old, p)
	switch {
	case relabel:
		inc.markRelabel(old, p)
	case ok:
		inc.markPodEverywhere(old)
	}
	if ok {
		inc.unindexPod(old)
	}
	inc.c.AddPod(p)
	inc.indexPod(p)
	inc.podChanged(old, p)
	if !relabel {
		inc.markPodEverywhere(p)
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
func (inc *Incremental) DeletePod(uid string) {
	old, ok := inc.c.Pods[uid]
	if !ok {
		return
	}
	inc.markPodEverywhere(old)
	inc.unindexPod(old)
	delete(inc.c.Pods, uid)
	inc.podChanged(old, nil)
	delete(inc.podAddrs, uid)
}

// markPodEverywhere marks what one version of a pod takes part in: its own
// fragment, the rules targeting it, the rules it is a peer of. Candidate
// rules come from the policies of the pod's namespace and the rule index;
// peerMayInvolve decides.
func (inc *Incremental) markPodEverywhere(p *model.Pod) {
	inc.markPodAsTarget(p)
	check := func(r ruleRef) {
		if inc.peerMayInvolve(r.pol, r.dir, r.rule(), p) {
			inc.markRule(r.id())
		}
	}
	for _, pol := range inc.polByNS[p.Namespace] {
		for _, d := range directions {
			for i := range pol.Rules(d) {
				check(ruleRef{pol, d, i})
			}
		}
	}
	inc.rules.forPod(p, inc.nsLabelSet(p.Namespace), check)
}

// markRelabel marks what a change of a pod's labels alone affects: its own
// fragment (isolation), the rules of policies whose selection of it flips,
// and the rules one of whose selector peers selects one version and not the
// other (selectionFlips). Other rules see the same peers, addresses and
// ports, so their flows stay.
func (inc *Incremental) markRelabel(old, p *model.Pod) {
	inc.dirty[podFrag(p)] = true
	if p.Node == inc.cfg.Node {
		for _, pol := range inc.polByNS[p.Namespace] {
			if pol.PodSelector.Matches(old.Labels) != pol.PodSelector.Matches(p.Labels) {
				inc.markPolicy(pol)
			}
		}
	}
	check := func(r ruleRef) {
		if inc.selectionFlips(r, old, p) {
			inc.markRule(r.id())
		}
	}
	for _, pol := range inc.polByNS[p.Namespace] {
		for _, d := range directions {
			for i := range pol.Rules(d) {
				check(ruleRef{pol, d, i})
			}
		}
	}
	nsLabels := inc.nsLabelSet(p.Namespace)
	inc.rules.forPod(old, nsLabels, check)
	inc.rules.forPod(p, nsLabels, check)
}

// selectionFlips reports whether one of the rule's selector peers selects
// one version of a relabelled pod and not the other. Labels matter to a
// rule's peers only through its selectors: whether the pod's addresses are
// peers, and which peer lists a shared address first (its owner, whose
// named ports count). ipBlocks and named-port resolution see addresses and
// ports, which a relabel keeps.
func (inc *Incremental) selectionFlips(r ruleRef, old, p *model.Pod) bool {
	rule := r.rule()
	for i := range rule.Peers {
		peer := &rule.Peers[i]
		if peer.IPBlock == nil && inc.c.PeerSelects(peer, r.pol.Namespace, old) != inc.c.PeerSelects(peer, r.pol.Namespace, p) {
			return true
		}
	}
	return false
}

// markPodAsTarget marks the pod's own fragment and the rules of policies
// that select it.
func (inc *Incremental) markPodAsTarget(p *model.Pod) {
	inc.dirty[podFrag(p)] = true
	if p.Node != inc.cfg.Node {
		return
	}
	for _, pol := range inc.polByNS[p.Namespace] {
		if pol.PodSelector.Matches(p.Labels) {
			inc.markPolicy(pol)
		}
	}
}

var directions = []model.Direction{model.Ingress, model.Egress}

// peerMayInvolve reports whether pod p can be one of the rule's peers or
// (egress named ports) a destination its names resolve against.
func (inc *Incremental) peerMayInvolve(pol *model.Policy, d model.Direction, r *model.Rule, p *model.Pod) bool {
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
		if inc.c.PeerSelects(peer, pol.Namespace, p) {
			return true
		}
	}
	return false
}

// SetNamespace adds or replaces a namespace.
func (inc *Incremental) SetNamespace(ns *model.Namespace) {
	old := inc.c.Namespaces[ns.Name]
	inc.markNamespaceChange(old, ns)
	if old != nil {
		inc.nsLabels.remove(old.Name, old.Labels)
	}
	inc.c.AddNamespace(ns)
	inc.nsLabels.add(ns.Name, ns.Labels)
}

// DeleteNamespace removes a namespace (its pods and policies go separately).
func (inc *Incremental) DeleteNamespace(name string) {
	if old, ok := inc.c.Namespaces[name]; ok {
		inc.markNamespaceChange(old, nil)
		inc.nsLabels.remove(old.Name, old.Labels)
		delete(inc.c.Namespaces, name)
	}
}

// markNamespaceChange marks what a namespace going from old to new affects
// (nil is a namespace not known, which the model treats as one without
// labels or annotation). Its annotation decides the ingress isolation of
// its local pods and, in v1.6 mode, whether its policies apply; its labels
// decide which namespace selectors match it, so a rule is marked when one
// of its peers' namespace selectors matches one version and not the other.
func (inc *Incremental) markNamespaceChange(old, ns *model.Namespace) {
	var name string
	if ns != nil {
		name = ns.Name
	} else {
		name = old.Name
	}
	if legacyIsolates(old) != legacyIsolates(ns) {
		for _, p := range inc.podsByNS[name] {
			if p.Node == inc.cfg.Node { // other nodes' pods' flows ignore namespaces
				inc.dirty[podFrag(p)] = true
			}
		}
		if inc.c.Mode == model.ModeV16 {
			for _, pol := range inc.polByNS[name] {
				inc.markPolicy(pol)
			}
		}
	}
	inc.markAuditChange(name, old, ns)
	oldLabels, newLabels := namespaceLabels(old), namespaceLabels(ns)
	check := func(r ruleRef) {
		rule := r.rule()
		for j := range rule.Peers {
			peer := &rule.Peers[j]
			if peer.NamespaceSelector != nil && peer.NamespaceSelector.Matches(oldLabels) != peer.NamespaceSelector.Matches(newLabels) {
				inc.markRule(r.id())
				if g := inc.group(peer, r.pol.Namespace); g != nil {
					g.invalidate()
				}
			}
		}
	}
	inc.rules.forNamespace(oldLabels, check)
	inc.rules.forNamespace(newLabels, check)
}

func legacyIsolates(ns *model.Namespace) bool { return ns != nil && ns.LegacyIsolation.Isolates() }

func namespaceLabels(ns *model.Namespace) labels.Set {
	if ns == nil || ns.Labels == nil {
		return labels.Set{}
	}
	return ns.Labels
}

// SetPolicy adds or replaces a policy.
func (inc *Incremental) SetPolicy(p *model.Policy) {
	inc.refGroups(p) // before the old version lets go of groups both share
	if old, ok := inc.c.Policies[p.Key()]; ok {
		inc.markPolicyAndTargets(old)
		inc.unindexPolicy(old)
		inc.unrefGroups(old)
	}
	inc.c.AddPolicy(p)
	inc.indexPolicy(p)
	inc.markPolicyAndTargets(p)
}

// DeletePolicy removes a policy by namespace/name.
func (inc *Incremental) DeletePolicy(key string) {
	if old, ok := inc.c.Policies[key]; ok {
		inc.markPolicyAndTargets(old)
		inc.unindexPolicy(old)
		inc.unrefGroups(old)
		delete(inc.c.Policies, key)
	}
}

func (inc *Incremental) markPolicy(p *model.Policy) {
	key := p.Key()
	for _, d := range directions {
		for i := range p.Rules(d) {
			inc.markRule(newRuleID(key, d, i))
		}
	}
}

// markPolicyAndTargets also marks the pods whose isolation the policy decides.
func (inc *Incremental) markPolicyAndTargets(p *model.Policy) {
	inc.markPolicy(p)
	for _, pod := range inc.podsByNS[p.Namespace] {
		if pod.Node == inc.cfg.Node && p.PodSelector.Matches(pod.Labels) {
			inc.dirty[podFrag(pod)] = true
		}
	}
}

// Flush recomputes the dirty fragments and returns the keys of flows that
// were added, changed or removed since the last Flush, sorted: exactly
// those (a flow that changed and changed back within one Flush is not
// reported), so a caller that installed the previous Flush's flows installs
// Flow(k) for each key and deletes Removed(k) for those without one.
func (inc *Incremental) Flush() ([]openflow.Key, error) {
	if err := inc.cfg.checkOverlay(); err != nil {
		return nil, err
	}
	inc.resolveNodes()
	inc.listAllRules()
	// The fragments in ID order: conjunction and group IDs are allocated
	// deterministically.
	type todo struct {
		id  string // key.String()
		key fragKey
	}
	work := make([]todo, 0, len(inc.dirty)+len(inc.dirtyRules))
	for k := range inc.dirty {
		work = append(work, todo{k.String(), k})
	}
	for _, d := range inc.dirtyRules {
		if d.st != nil {
			d.st.dirty = false
		}
		k := ruleFrag(d.id)
		work = append(work, todo{k.String(), k})
	}
	slices.SortFunc(work, func(a, b todo) int { return strings.Compare(a.id, b.id) })
	inc.dirty = map[fragKey]bool{}
	inc.dirtyRules = nil
	inc.ctFlushes = nil
	statesBefore := len(inc.ruleStates)
	for _, w := range work {
		flows, err := inc.compute(w.key)
		if err != nil {
			return nil, err
		}
		if err := inc.set.SetFragment(w.id, flows); err != nil {
			return nil, err
		}
	}
	if n := len(inc.ruleStates); n < statesBefore/2 {
		// Many rules left their state (policies deleted), and a Go map
		// never shrinks: keep the survivors in a map of their size.
		inc.ruleStates = maps.Collect(maps.All(inc.ruleStates))
	}
	out, err := inc.set.Commit()
	if err != nil {
		return nil, err
	}
	inc.changedGroups = inc.ofGroups.Commit()
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
func (inc *Incremental) Flows() []openflow.Flow { return inc.set.Flows() }

// Flow returns the desired flow with key k, if any.
func (inc *Incremental) Flow(k openflow.Key) (openflow.Flow, bool) { return inc.set.Flow(k) }

// Removed returns the flow key k had before the last Flush removed it
// (Flush reported k and Flow(k) has none).
func (inc *Incremental) Removed(k openflow.Key) (openflow.Flow, bool) { return inc.set.Removed(k) }

// Len is the number of desired flows.
func (inc *Incremental) Len() int { return inc.set.Len() }

// compute builds one fragment from the current state.
func (inc *Incremental) compute(k fragKey) ([]openflow.Flow, error) {
	switch k.kind {
	case pipelineFragment:
		return pipelineFlows(inc.cfg), nil
	case localNodeFragment:
		cfg := inc.cfg
		if gws := localGatewayIPs(inc.cfg, inc.c); len(gws) > 0 {
			cfg.NodeIPs = append(append([]netip.Addr{}, cfg.NodeIPs...), gws...)
		}
		return nodeFlows(cfg), nil
	case remoteNodeFragment:
		if !inc.usable[k.name] {
			return nil, nil // not a remote node, or rejected for a conflict
		}
		return overlayFlows(inc.cfg, inc.c.Nodes[k.name], inc.c.Nodes[inc.cfg.Node]), nil
	case podFragment:
		pod, ok := inc.c.Pods[k.name]
		if !ok || !pod.Active() {
			return nil, nil
		}
		if pod.Node != inc.cfg.Node {
			return remoteFlows(inc.cfg, []*model.Pod{pod}), nil
		}
		b, ok := inc.cfg.Bindings[pod.Key()]
		if !ok {
			return nil, nil
		}
		ing, _ := inc.c.IsolatedAmong(pod, model.Ingress, inc.polByNS[pod.Namespace])
		eg, _ := inc.c.IsolatedAmong(pod, model.Egress, inc.polByNS[pod.Namespace])
		return inc.auditPodFlows(pod, b, ing, eg, podFlows(inc.cfg, pod, b, ing, eg)), nil
	case ruleFragment:
		return inc.computeRule(k.rule)
	case serviceFragment:
		return inc.computeService(k.name), nil
	}
	return nil, fmt.Errorf("cannot compute fragment %s", k)
}

// computeRule compiles one rule (its peer fragment too); a rule that no
// longer exists yields nothing and gives back its conjunction IDs.
func (inc *Incremental) computeRule(id ruleID) ([]openflow.Flow, error) {
	st := inc.ruleStates[id]
	if st == nil { // kept below if the rule leaves anything
		st = &ruleState{}
	}
	pol := inc.c.Policies[id.policy]
	var flows []openflow.Flow
	var dims []peerDim
	var used []string
	var disjoint bool
	var split *egressSplit
	if pol != nil && inc.c.PolicyAffects(pol, id.dir()) && int(id.index) < len(pol.Rules(id.dir())) {
		var targets []*model.Pod
		for _, pod := range inc.podsByNS[pol.Namespace] {
			if pod.Node != inc.cfg.Node || len(pod.IPs) == 0 || !inc.c.Selects(pol, pod) {
				continue
			}
			if _, ok := inc.cfg.Bindings[pod.Key()]; ok {
				targets = append(targets, pod)
			}
		}
		sort.Slice(targets, func(i, j int) bool { return targets[i].Key() < targets[j].Key() })
		rec := &recordingIDs{IDAllocator: inc.ids}
		rule := &pol.Rules(id.dir())[id.index]
		if id.dir() == model.Egress && hasNamedPort(rule) {
			if split = st.split; split == nil {
				split = &egressSplit{}
			}
		}
		flows, dims, disjoint = ruleFlows(ruleInput{
			cluster: inc.c, cfg: inc.cfg, policy: pol, dir: id.dir(), index: int(id.index),
			rule: rule, targets: targets, peerAddrs: inc.groupAddrs, allPods: inc.allPods,
			egressSplit: split,
		}, rec)
		used = rec.keys
		flows = inc.auditRuleFlows(pol, id.dir(), int(id.index), flows)
	}
	if len(flows) == 0 {
		split = nil
	}
	st.split = split
	if err := inc.setRulePeers(id, st, dims, disjoint); err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	for _, k := range used {
		keep[k] = true
	}
	for _, k := range st.conjKeys {
		if !keep[k] {
			inc.ids.Release(k)
		}
	}
	st.conjKeys = used
	if st.empty() {
		delete(inc.ruleStates, id)
	} else {
		inc.ruleStates[id] = st
	}
	return flows, nil
}

// A rule's peer dimensions live in a fragment of their own
// (rulePeersFrag), computed with the rule's. A rule remembers the peer
// lists it rendered (lists are never changed in place: see withAddrs), so
// when it is recomputed its peer flows are
//   - left alone when its dimensions and their lists are the same (a local
//     target came or went: one flow changes, not its hundreds of peers);
//   - patched, one flow per address that came or went, when only the lists
//     changed (a pod joined or left a group) and no two dimensions can
//     share an address;
//   - rendered again otherwise.

// staleMemo is a signature no dimension has: the fragment is rendered again.
const staleMemo = "\x00stale"

// peerMemo is what a rule's peer fragment was rendered from.
type peerMemo struct {
	sig   string       // the dimensions' signatures
	peers [][]peerAddr // each dimension's list
}

// setRulePeers updates the rule's peer fragment from its dimensions and
// remembers them in st.
// disjoint says no address can be in two of them (so that each flow of the
// fragment comes from one dimension).
func (inc *Incremental) setRulePeers(rule ruleID, st *ruleState, dims []peerDim, disjoint bool) error {
	old := st.peers
	id := rulePeersFrag(rule).String()
	if len(dims) == 0 {
		if old != nil {
			st.peers = nil
			return inc.set.SetFragment(id, nil)
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
	st.peers = next
	if old != nil && old.sig == next.sig && (disjoint || len(dims) == 1) {
		var removes, adds []FlowChange
		for i, d := range dims {
			d.diff(old.peers[i], &removes, &adds)
		}
		// Removes first: an address moving between dimensions is removed
		// from one before it is added to the other.
		inc.set.PatchFragment(id, append(removes, adds...))
		return nil
	}
	var flows []openflow.Flow
	for _, d := range dims {
		flows = append(flows, d.flows()...)
	}
	return inc.set.SetFragment(id, flows)
}

// peerPods returns the pods a selector peer selects: what
// model.Cluster.PeerSelects accepts, with the namespace part decided once
// per namespace, and namespace selectors looked up in the label index.
func (inc *Incremental) peerPods(peer *model.Peer, policyNS string) []*model.Pod {
	var out []*model.Pod
	add := func(ns string) {
		for _, p := range inc.podsByNS[ns] {
			if p.Active() && (peer.PodSelector == nil || peer.PodSelector.Matches(p.Labels)) {
				out = append(out, p)
			}
		}
	}
	if peer.NamespaceSelector == nil {
		add(policyNS)
		return out
	}
	names, ok := inc.nsLabels.candidates(peer.NamespaceSelector)
	if !ok {
		// No anchor: any namespace, also one not known (empty labels).
		for ns := range inc.podsByNS {
			names = append(names, ns)
		}
	}
	for _, ns := range names {
		if peer.NamespaceSelector.Matches(inc.nsLabelSet(ns)) {
			add(ns)
		}
	}
	return out
}

func (inc *Incremental) nsLabelSet(name string) labels.Set {
	if ns, ok := inc.c.Namespaces[name]; ok && ns.Labels != nil {
		return ns.Labels
	}
	return labels.Set{}
}

func (inc *Incremental) allPods() []*model.Pod {
	out := make([]*model.Pod, 0, len(inc.c.Pods))
	for _, p := range inc.c.Pods {
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
func (inc *Incremental) Conjunctions() map[uint32]string {
	out := make(map[uint32]string, len(inc.ids.used))
	for id, k := range inc.ids.used {
		out[id] = k
	}
	return out
}

// Origins describes every cookie the desired flows carry.
func (inc *Incremental) Origins() map[openflow.Cookie]string {
	out := map[openflow.Cookie]string{
		pipelineCookie: "pipeline skeleton",
		nodeCookie:     fmt.Sprintf("node %s (gateway port %s)", inc.cfg.Node, PortName(inc.cfg.GatewayPort)),
	}
	for _, p := range inc.c.Pods {
		if p.Node == inc.cfg.Node {
			out[PodCookie(p)] = "pod " + p.Key()
		} else {
			out[remoteCookie(p)] = "remote pod " + p.Key()
		}
	}
	for _, pol := range inc.c.Policies {
		for _, d := range directions {
			for i := range pol.Rules(d) {
				out[RuleCookie(RuleKey(pol, d, i))] = fmt.Sprintf("policy %s %s rule %d", pol.Key(), d, i)
			}
		}
	}
	for _, svc := range inc.c.Services {
		out[ServiceCookie(svc)] = "service " + svc.Key()
	}
	for name := range inc.c.Nodes {
		if name != inc.cfg.Node {
			out[NodeCookie(name)] = "remote node " + name
		}
	}
	return out
}

// SetNode adds or replaces a node (by name). Its own fragment is recomputed
// (for this node: the node fragment, whose node-local sources include its
// gateway addresses), and those of the nodes whose usability it changes
// (see resolveNodes): none when it conflicts with no node before and after.
func (inc *Incremental) SetNode(n *model.Node) {
	inc.c.AddNode(n)
	inc.markNode(n.Name)
}

// DeleteNode removes a node by name.
func (inc *Incremental) DeleteNode(name string) {
	if _, ok := inc.c.Nodes[name]; ok {
		delete(inc.c.Nodes, name)
		inc.markNode(name)
	}
}

func (inc *Incremental) markNode(name string) {
	if name == inc.cfg.Node {
		inc.nodesAll = true // its claims are everyone's business
		inc.dirty[localNodeFrag] = true
		// Its InternalIPs are the tunnel source of every remote node's
		// flows.
		for other := range inc.c.Nodes {
			if other != name {
				inc.dirty[remoteNodeFrag(other)] = true
			}
		}
		return
	}
	inc.nodesChanged[name] = true
	inc.dirty[remoteNodeFrag(name)] = true
}

// resolveNodes recomputes which remote nodes are usable after node events
// and marks the fragments of the nodes whose usability changed. The whole
// list is resolved again (ResolveRemoteNodes) rather than only the event's
// overlapping nodes, because a rejected node does not block others: one
// change can ripple along a chain of conflicts to nodes it does not
// overlap. Once per Flush, so a batch of node events costs one resolution;
// and none in the common case (resolveFew). Without an overlay no node is
// usable.
func (inc *Incremental) resolveNodes() {
	if !inc.nodesAll && len(inc.nodesChanged) == 0 {
		return
	}
	changed, all := inc.nodesChanged, inc.nodesAll
	inc.nodesChanged, inc.nodesAll = map[string]bool{}, false
	if !all && inc.resolveFew(changed) {
		return
	}
	var r RemoteNodes
	if inc.cfg.Overlay.TunnelPort != 0 {
		nodes := make([]*model.Node, 0, len(inc.c.Nodes))
		for _, n := range inc.c.Nodes {
			nodes = append(nodes, n)
		}
		r = ResolveRemoteNodes(nodes, inc.cfg.Node, inc.cfg.NodeIPs...)
	}
	usable := r.usableNames()
	for name := range inc.usable {
		if !usable[name] {
			inc.dirty[remoteNodeFrag(name)] = true
		}
	}
	for name := range usable {
		if !inc.usable[name] {
			inc.dirty[remoteNodeFrag(name)] = true
		}
	}
	inc.usable, inc.rejected = usable, map[string]RejectedNode{}
	for _, rej := range r.Rejected {
		inc.rejected[rej.Name] = rej
	}
}

// resolveFew updates the verdict for the changed nodes only, and reports
// whether it could: when no node was rejected before and each changed node
// overlaps no other node and none of this node's addresses, no other
// node's standing can change, and a changed node's own (usable, or
// rejected for its own claims) is what it gets resolved alone. Its cost is
// the pairwise checks of the changed nodes, not a map operation per
// address bit of every node.
func (inc *Incremental) resolveFew(changed map[string]bool) bool {
	const few = 8 // beyond, the pairwise checks cost more than the resolution
	if len(changed) > few || len(inc.rejected) > 0 || inc.cfg.Overlay.TunnelPort == 0 {
		return false
	}
	for name := range changed {
		n := inc.c.Nodes[name]
		if n == nil {
			continue
		}
		for _, ip := range inc.cfg.NodeIPs {
			if overlapsNode(n, netip.PrefixFrom(ip, ip.BitLen())) {
				return false
			}
		}
		for _, m := range inc.c.Nodes {
			if m != n && nodesOverlap(n, m) {
				return false
			}
		}
	}
	for name := range changed {
		delete(inc.usable, name)
		inc.dirty[remoteNodeFrag(name)] = true
		n := inc.c.Nodes[name]
		if n == nil {
			continue
		}
		// It overlaps nobody: only its own claims can get it rejected.
		one := ResolveRemoteNodes([]*model.Node{n}, inc.cfg.Node)
		if len(one.Usable) > 0 {
			inc.usable[name] = true
		}
		for _, rej := range one.Rejected {
			inc.rejected[name] = rej
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
func (inc *Incremental) RemoteNodes() RemoteNodes {
	var r RemoteNodes
	for _, name := range slices.Sorted(maps.Keys(inc.usable)) {
		r.Usable = append(r.Usable, inc.c.Nodes[name])
	}
	for _, name := range slices.Sorted(maps.Keys(inc.rejected)) {
		r.Rejected = append(r.Rejected, inc.rejected[name])
	}
	return r
}

// SetService adds or replaces a Service (nil-safe callers leave headless
// and ExternalName Services out: they are deleted).
func (inc *Incremental) SetService(svc *model.Service) {
	inc.c.AddService(svc)
	inc.dirty[serviceFrag(svc.Key())] = true
}

// DeleteService removes a Service by namespace/name.
func (inc *Incremental) DeleteService(key string) {
	if _, ok := inc.c.Services[key]; ok {
		delete(inc.c.Services, key)
		inc.dirty[serviceFrag(key)] = true
	}
}

// SetEndpointSlice adds or replaces an EndpointSlice.
func (inc *Incremental) SetEndpointSlice(sl *model.EndpointSlice) {
	if old, ok := inc.c.EndpointSlices[sl.Key()]; ok {
		inc.unindexSlice(old)
		inc.dirty[serviceFrag(old.ServiceKey())] = true
	}
	inc.c.AddEndpointSlice(sl)
	inc.indexSlice(sl)
	inc.dirty[serviceFrag(sl.ServiceKey())] = true
}

// DeleteEndpointSlice removes an EndpointSlice by namespace/name.
func (inc *Incremental) DeleteEndpointSlice(key string) {
	if old, ok := inc.c.EndpointSlices[key]; ok {
		inc.unindexSlice(old)
		delete(inc.c.EndpointSlices, key)
		inc.dirty[serviceFrag(old.ServiceKey())] = true
	}
}

func (inc *Incremental) indexSlice(sl *model.EndpointSlice) {
	m := inc.slicesBySvc[sl.ServiceKey()]
	if m == nil {
		m = map[string]*model.EndpointSlice{}
		inc.slicesBySvc[sl.ServiceKey()] = m
	}
	m[sl.Key()] = sl
}

func (inc *Incremental) unindexSlice(sl *model.EndpointSlice) {
	if m := inc.slicesBySvc[sl.ServiceKey()]; m != nil {
		delete(m, sl.Key())
		if len(m) == 0 {
			delete(inc.slicesBySvc, sl.ServiceKey())
		}
	}
}

// computeService compiles Service key's load balancing: its flows (the
// fragment's), its groups, and the UDP conntrack entries its changed
// backends leave stale. A Service that is gone yields nothing and gives
// back its group IDs.
func (inc *Incremental) computeService(key string) []openflow.Flow {
	svc := inc.c.Services[key]
	var res serviceResult
	if svc != nil {
		slices := make([]*model.EndpointSlice, 0, len(inc.slicesBySvc[key]))
		for _, sl := range inc.slicesBySvc[key] {
			slices = append(slices, sl)
		}
		// In key order: a backend in two slices is taken from the later one.
		sort.Slice(slices, func(i, j int) bool { return slices[i].Key() < slices[j].Key() })
		res = serviceFlows(inc.cfg, svc, slices, inc.groupIDs.ID)
		if old, ok := inc.svcServing[key]; ok {
			inc.ctFlushes = append(inc.ctFlushes, staleUDP(inc.cfg.CTZone, old, res.serving)...)
		}
		inc.svcServing[key] = res.serving
	} else {
		delete(inc.svcServing, key)
	}
	keep := map[string]bool{}
	for _, k := range res.groupKeys {
		keep[k] = true
	}
	for _, k := range inc.svcGroupKeys[key] {
		if !keep[k] {
			inc.groupIDs.Release(k)
		}
	}
	if len(res.groupKeys) > 0 {
		inc.svcGroupKeys[key] = res.groupKeys
	} else {
		delete(inc.svcGroupKeys, key)
	}
	inc.ofGroups.SetFragment(serviceFrag(key).String(), res.groups)
	return res.flows
}

// GroupChanges returns the IDs of the groups the last Flush added, changed
// or removed, sorted: install Group(id) for each, or delete the ID when it
// has none.
func (inc *Incremental) GroupChanges() []uint32 { return inc.changedGroups }

// Group returns the desired group with ID id, if any.
func (inc *Incremental) Group(id uint32) (openflow.Group, bool) { return inc.ofGroups.Group(id) }

// Groups returns every desired group, by ID.
func (inc *Incremental) Groups() []openflow.Group { return inc.ofGroups.Groups() }

// GroupCount is the number of desired groups.
func (inc *Incremental) GroupCount() int { return inc.ofGroups.Len() }

// ConntrackFlushes returns the conntrack entries the last Flush made stale
// (UDP to backends that stopped serving a Service port): delete them after
// the flows and groups are installed.
func (inc *Incremental) ConntrackFlushes() []openflow.ConntrackFlush { return inc.ctFlushes }
