package compiler

import (
	"strconv"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// The indexes below only make lookups cheaper: every candidate they return
// is checked again with the exact predicate (a selector's Matches,
// PeerSelects, peerMayInvolve), so they may return too much but never too
// little. What they rest on: a label set matches a selector only if it
// satisfies each of its requirements, and a requirement "k = v", "k == v"
// or "k in (v1, ...)" is satisfied only by a set with k set to one of its
// values. Such a requirement is an anchor: an object can only match the
// selector if it sits in the index bucket of one of the anchor's values.

// labelKV is one label, an index bucket.
type labelKV struct{ key, value string }

// anchor is a requirement that pins a label to a set of values.
type anchor struct {
	key    string
	values []string
}

// anchors returns the requirements of sel that pin a label to values.
// A selector without any (labels.Everything(), only "exists" or "notin"
// requirements, labels.Nothing()) has none.
func anchors(sel labels.Selector) []anchor {
	if sel == nil {
		return nil
	}
	reqs, ok := sel.Requirements()
	if !ok {
		return nil
	}
	var out []anchor
	for _, r := range reqs {
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			out = append(out, anchor{key: r.Key(), values: r.Values().List()})
		}
	}
	return out
}

// labelIndex maps labels to the names of the objects carrying them.
type labelIndex map[labelKV]map[string]struct{}

func (ix labelIndex) add(name string, l labels.Set) {
	for k, v := range l {
		kv := labelKV{k, v}
		m := ix[kv]
		if m == nil {
			m = map[string]struct{}{}
			ix[kv] = m
		}
		m[name] = struct{}{}
	}
}

func (ix labelIndex) remove(name string, l labels.Set) {
	for k, v := range l {
		kv := labelKV{k, v}
		if m := ix[kv]; m != nil {
			delete(m, name)
			if len(m) == 0 {
				delete(ix, kv)
			}
		}
	}
}

// count is how many objects carry label key with one of values.
func (ix labelIndex) count(a anchor) int {
	n := 0
	for _, v := range a.values {
		n += len(ix[labelKV{a.key, v}])
	}
	return n
}

// candidates returns the names of objects that can match sel, using the
// anchor with the fewest objects; ok is false when sel has no anchor (then
// any object can match).
func (ix labelIndex) candidates(sel labels.Selector) (names []string, ok bool) {
	as := anchors(sel)
	if len(as) == 0 {
		return nil, false
	}
	best := as[0]
	for _, a := range as[1:] {
		if ix.count(a) < ix.count(best) {
			best = a
		}
	}
	for _, v := range best.values {
		for name := range ix[labelKV{best.key, v}] {
			names = append(names, name)
		}
	}
	return names, true
}

// ruleRef is one rule of a policy.
type ruleRef struct {
	pol   *model.Policy
	dir   model.Direction
	index int
}

func (r ruleRef) rule() *model.Rule { return &r.pol.Rules(r.dir)[r.index] }

// ruleID names a ruleRef independently of the policy version. It keys the
// rule index's sets and the rule states: small, hashing one string.
type ruleID struct {
	policy string
	index  int32
	egress bool
}

func newRuleID(policy string, d model.Direction, index int) ruleID {
	return ruleID{policy, int32(index), d == model.Egress}
}

// dir is the rule's direction.
func (id ruleID) dir() model.Direction {
	if id.egress {
		return model.Egress
	}
	return model.Ingress
}

func (r ruleRef) id() ruleID { return newRuleID(r.pol.Key(), r.dir, r.index) }

// ruleSet is a set of rules.
type ruleSet map[ruleID]ruleRef

// ruleIndex finds the rules whose selector peers with a namespace selector
// may select a pod or match a namespace, and the rules that may involve any
// pod. Peers without a namespace selector (the policy's own namespace) are
// found through the policies of the pod's namespace, which Incremental
// indexes separately.
type ruleIndex struct {
	// byNSLabel: peers whose namespace selector has an anchor, in the
	// buckets of one anchor's values.
	byNSLabel map[labelKV]ruleSet
	// byPodLabel: peers whose namespace selector has no anchor but whose
	// pod selector has one.
	byPodLabel map[labelKV]ruleSet
	// nsUnanchored: every peer whose namespace selector has no anchor
	// (checked on each namespace change).
	nsUnanchored ruleSet
	// anyPod: rules that may involve any pod: selector peers without any
	// anchor, and egress rules with named ports whose peers are everyone or
	// ipBlocks (their names resolve against the pods inside).
	anyPod ruleSet
	// where remembers the buckets each policy's rules went into.
	where map[string][]ruleLocation
}

type ruleLocation struct {
	set ruleSet
	id  ruleID
	// bucket and from allow dropping an emptied bucket.
	bucket labelKV
	from   map[labelKV]ruleSet
}

func newRuleIndex() *ruleIndex {
	return &ruleIndex{
		byNSLabel:    map[labelKV]ruleSet{},
		byPodLabel:   map[labelKV]ruleSet{},
		nsUnanchored: ruleSet{},
		anyPod:       ruleSet{},
		where:        map[string][]ruleLocation{},
	}
}

// add indexes the rules of p. nsLabels counts namespaces per label; the
// namespace anchor with the fewest namespaces is chosen (the choice only
// affects speed).
func (ix *ruleIndex) add(p *model.Policy, nsLabels labelIndex) {
	key := p.Key()
	// Every ID shares the one key string (r.id() would build it anew).
	put := func(set ruleSet, r ruleRef, from map[labelKV]ruleSet, bucket labelKV) {
		id := newRuleID(key, r.dir, r.index)
		set[id] = r
		ix.where[key] = append(ix.where[key], ruleLocation{set: set, id: id, bucket: bucket, from: from})
	}
	putBucket := func(m map[labelKV]ruleSet, a anchor, r ruleRef) {
		for _, v := range a.values {
			kv := labelKV{a.key, v}
			set := m[kv]
			if set == nil {
				set = ruleSet{}
				m[kv] = set
			}
			put(set, r, m, kv)
		}
	}
	for _, d := range directions {
		for i := range p.Rules(d) {
			r := ruleRef{p, d, i}
			rule := r.rule()
			if d == model.Egress && hasNamedPort(rule) {
				if rule.AllPeers() || hasIPBlock(rule) {
					put(ix.anyPod, r, nil, labelKV{})
				}
			}
			for j := range rule.Peers {
				peer := &rule.Peers[j]
				if peer.IPBlock != nil || peer.NamespaceSelector == nil {
					continue
				}
				if as := anchors(peer.NamespaceSelector); len(as) > 0 {
					best := as[0]
					for _, a := range as[1:] {
						if nsLabels.count(a) < nsLabels.count(best) {
							best = a
						}
					}
					putBucket(ix.byNSLabel, best, r)
					continue
				}
				put(ix.nsUnanchored, r, nil, labelKV{})
				if as := anchors(peer.PodSelector); len(as) > 0 {
					putBucket(ix.byPodLabel, as[0], r)
				} else {
					put(ix.anyPod, r, nil, labelKV{})
				}
			}
		}
	}
}

// remove drops the rules of the policy with key.
func (ix *ruleIndex) remove(key string) {
	for _, loc := range ix.where[key] {
		delete(loc.set, loc.id)
		if loc.from != nil && len(loc.set) == 0 {
			delete(loc.from, loc.bucket)
		}
	}
	delete(ix.where, key)
}

// forPod calls f for every indexed rule that may select pod p, a pod of a
// namespace with labels nsLabels, or involve it otherwise.
func (ix *ruleIndex) forPod(p *model.Pod, nsLabels labels.Set, f func(ruleRef)) {
	for k, v := range nsLabels {
		for _, r := range ix.byNSLabel[labelKV{k, v}] {
			f(r)
		}
	}
	for k, v := range p.Labels {
		for _, r := range ix.byPodLabel[labelKV{k, v}] {
			f(r)
		}
	}
	for _, r := range ix.anyPod {
		f(r)
	}
}

// forNamespace calls f for every indexed rule with a namespace selector
// that may match a namespace with labels l.
func (ix *ruleIndex) forNamespace(l labels.Set, f func(ruleRef)) {
	for k, v := range l {
		for _, r := range ix.byNSLabel[labelKV{k, v}] {
			f(r)
		}
	}
	for _, r := range ix.nsUnanchored {
		f(r)
	}
}

func hasNamedPort(r *model.Rule) bool {
	for _, ps := range r.Ports {
		if ps.Name != "" {
			return true
		}
	}
	return false
}

func hasIPBlock(r *model.Rule) bool {
	for _, p := range r.Peers {
		if p.IPBlock != nil {
			return true
		}
	}
	return false
}

// String is the rule's key, as RuleKey gives it.
func (id ruleID) String() string {
	return id.policy + "/" + string(id.dir()) + "/" + strconv.Itoa(int(id.index))
}
