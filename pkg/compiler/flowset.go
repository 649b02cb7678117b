package compiler

import (
	"cmp"
	"slices"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// FlowSet is the merged union of fragments' flows.
//
// SetFragment replaces one fragment's flows and notes which keys it really
// changed (a recomputed rule mostly yields the flows it had); Commit
// re-merges only those keys, each once however many fragments touched it
// (a peer flow shared by hundreds of rules is merged once per Commit, not
// once per rule).
type FlowSet struct {
	// frags holds each fragment's flows, one per key (flows of one key
	// merged within the fragment), sorted by key.
	frags map[string][]openflow.Flow
	// sharers lists, per key, the fragments with a flow for it and what
	// their flow says, so that Commit merges without looking flows up.
	sharers map[openflow.Key][]share
	merged  map[openflow.Key]openflow.Flow
	// touched are the keys whose contributions changed since the last Commit.
	touched map[openflow.Key]struct{}
	// removed are the flows the last Commit removed.
	removed map[openflow.Key]openflow.Flow

	// Conjunction tiers (tiers.go). conjLimit bounds the conjunctions of
	// one installed flow; tierNeed holds the tiers of each tierable key
	// that needs more than one; tiers is the tier count of each policy
	// table that has more than one. In those tables the merged tierable
	// flows are not installed as they are: tiered holds what is.
	// tierableKeys counts the merged tierable keys of each table.
	conjLimit    int
	tierNeed     map[openflow.Key]int
	tiers        map[uint8]int
	tiered       map[openflow.Key]openflow.Flow
	tierableKeys map[uint8]int
	// retierAll makes the next Commit recount every tierable key's tiers
	// (the limit changed).
	retierAll bool
}

// NewFlowSet returns an empty set.
func NewFlowSet() *FlowSet {
	return &FlowSet{
		frags:   map[string][]openflow.Flow{},
		sharers: map[openflow.Key][]share{},
		merged:  map[openflow.Key]openflow.Flow{},
		touched: map[openflow.Key]struct{}{},
		removed: map[openflow.Key]openflow.Flow{},

		conjLimit:    DefaultMaxConjunctionsPerFlow,
		tierNeed:     map[openflow.Key]int{},
		tiers:        map[uint8]int{},
		tiered:       map[openflow.Key]openflow.Flow{},
		tierableKeys: map[uint8]int{},
	}
}

// SetConjunctionLimit sets the most conjunction actions one installed flow
// may hold (0: DefaultMaxConjunctionsPerFlow); the next Commit re-tiers.
func (s *FlowSet) SetConjunctionLimit(n int) {
	if n <= 0 {
		n = DefaultMaxConjunctionsPerFlow
	}
	if n != s.conjLimit {
		s.conjLimit = n
		s.retierAll = true
	}
}

// compareKeys orders keys for the fragment lists.
func compareKeys(a, b openflow.Key) int {
	switch {
	case a.Table != b.Table:
		return int(a.Table) - int(b.Table)
	case a.Priority != b.Priority:
		return int(a.Priority) - int(b.Priority)
	}
	return strings.Compare(a.Match, b.Match)
}

// ownFlows sorts a fragment's flows by key and merges those sharing one
// (shared matches within a rule's groups).
func ownFlows(flows []openflow.Flow) ([]openflow.Flow, error) {
	// Peer fragments come sorted with distinct keys: keep them as they are
	// (the caller hands the slice over).
	if strictlySorted(flows) {
		return flows, nil
	}
	sorted := make([]openflow.Flow, len(flows))
	copy(sorted, flows)
	slices.SortFunc(sorted, func(a, b openflow.Flow) int { return compareKeys(a.Key(), b.Key()) })
	out := sorted[:0]
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) && sorted[j].Key() == sorted[i].Key() {
			j++
		}
		f, err := mergeKey(sorted[i:j])
		if err != nil {
			return nil, err
		}
		out = append(out, f)
		i = j
	}
	return out, nil
}

func strictlySorted(flows []openflow.Flow) bool {
	for i := 1; i < len(flows); i++ {
		if compareKeys(flows[i-1].Key(), flows[i].Key()) >= 0 {
			return false
		}
	}
	return true
}

// SetFragment replaces fragment id's flows (none: removes the fragment).
// The merged set changes at the next Commit.
func (s *FlowSet) SetFragment(id string, flows []openflow.Flow) error {
	next, err := ownFlows(flows)
	if err != nil {
		return err
	}
	prev := s.frags[id]
	// Walk both sorted lists: keys only in prev lose this fragment, keys
	// only in next gain it, keys in both are touched if the flow differs.
	i, j := 0, 0
	for i < len(prev) || j < len(next) {
		var c int
		switch {
		case i == len(prev):
			c = 1
		case j == len(next):
			c = -1
		default:
			c = compareKeys(prev[i].Key(), next[j].Key())
		}
		switch {
		case c < 0:
			s.unshare(prev[i].Key(), id)
			i++
		case c > 0:
			s.share(next[j], id)
			j++
		default:
			if !prev[i].Equal(next[j]) {
				s.reshare(next[j], id)
			}
			i++
			j++
		}
	}
	if len(next) == 0 {
		delete(s.frags, id)
	} else {
		s.frags[id] = next
	}
	return nil
}

// PatchFragment changes fragment id's flows by single flows, in order: an
// add puts f in place of the fragment's flow of f's key (or inserts it), a
// remove drops the flow of f's key. It costs a binary search per change
// where SetFragment walks the whole fragment; the fragment's keys must stay
// distinct, which adds replacing flows of their key guarantee.
func (s *FlowSet) PatchFragment(id string, changes []FlowChange) {
	fs := s.frags[id]
	for _, c := range changes {
		k := c.Flow.Key()
		i, found := slices.BinarySearchFunc(fs, k, func(f openflow.Flow, k openflow.Key) int { return compareKeys(f.Key(), k) })
		switch {
		case c.Remove && found:
			fs = slices.Delete(fs, i, i+1)
			s.unshare(k, id)
		case c.Remove:
		case found:
			if !fs[i].Equal(c.Flow) {
				fs[i] = c.Flow
				s.reshare(c.Flow, id)
			}
		default:
			fs = slices.Insert(fs, i, c.Flow)
			s.share(c.Flow, id)
		}
	}
	if len(fs) == 0 {
		delete(s.frags, id)
	} else {
		s.frags[id] = fs
	}
}

// FlowChange is one change of PatchFragment.
type FlowChange struct {
	Flow   openflow.Flow
	Remove bool
}

// share is one fragment's flow for a key: the parts Commit merges.
type share struct {
	frag    string
	cookie  openflow.Cookie
	match   openflow.Match // the same in every share of a key
	actions openflow.Actions
}

func shareOf(f openflow.Flow, id string) share {
	return share{id, f.Cookie, f.Match, f.Actions}
}

// share, unshare and reshare record that fragment id gained, lost or
// changed its flow for a key.
func (s *FlowSet) share(f openflow.Flow, id string) {
	k := f.Key()
	s.sharers[k] = append(s.sharers[k], shareOf(f, id))
	s.touched[k] = struct{}{}
}

func (s *FlowSet) unshare(k openflow.Key, id string) {
	sh := s.sharers[k]
	for i := range sh {
		if sh[i].frag == id {
			last := len(sh) - 1
			sh[i] = sh[last]
			sh[last] = share{}
			s.sharers[k] = sh[:last]
			break
		}
	}
	s.touched[k] = struct{}{}
}

func (s *FlowSet) reshare(f openflow.Flow, id string) {
	k := f.Key()
	sh := s.sharers[k]
	for i := range sh {
		if sh[i].frag == id {
			sh[i] = shareOf(f, id)
		}
	}
	s.touched[k] = struct{}{}
}

// Commit merges the touched keys and returns those whose installed flow
// was added, changed or removed since the last Commit.
func (s *FlowSet) Commit() ([]openflow.Key, error) {
	var changed []openflow.Key
	clear(s.removed)
	// The tierable keys whose merged flow changed, with their flow before.
	var conj []priorFlow
	noteConj := func(k openflow.Key, old openflow.Flow, had bool) {
		conj = append(conj, priorFlow{k, old, had})
	}
	var fs []openflow.Flow // mergeShares' buffer
	for k := range s.touched {
		sh := s.sharers[k]
		old, had := s.merged[k]
		tierKey := tierable(k)
		if len(sh) == 0 {
			delete(s.sharers, k)
			if !had {
				continue
			}
			delete(s.merged, k)
			if tierKey {
				s.tierableKeys[k.Table]--
				delete(s.tierNeed, k)
				noteConj(k, old, had)
				continue
			}
			s.removed[k] = old
			changed = append(changed, k)
			continue
		}
		f, err := mergeShares(k, sh, &fs)
		if err != nil {
			return nil, err
		}
		if had && f.Equal(old) && !(tierKey && s.tierCount(k.Table) > 1) {
			continue
		}
		// In a tiered table a tier flow's cookie is that of the tier's
		// lowest conjunction, whichever fragment holds it: a change that
		// leaves the merged flow alone can still change a tier flow
		// (replaceInstalled reports only those that did).
		s.merged[k] = f
		if !tierKey {
			changed = append(changed, k)
			continue
		}
		if !had {
			s.tierableKeys[k.Table]++
		}
		if n := tiersNeeded(f, s.conjLimit); n > 1 {
			s.tierNeed[k] = n
		} else {
			delete(s.tierNeed, k)
		}
		noteConj(k, old, had)
	}
	clear(s.touched)
	if s.retierAll {
		s.retierAll = false
		clear(s.tierNeed)
		for k, f := range s.merged {
			if n := tiersNeeded(f, s.conjLimit); tierable(k) && n > 1 {
				s.tierNeed[k] = n
			}
		}
	}
	next := map[uint8]int{}
	for k, n := range s.tierNeed {
		next[k.Table] = max(next[k.Table], n)
	}
	for _, t := range []uint8{TableEgress, TableIngress} {
		if max(next[t], 1) == s.tierCount(t) {
			continue
		}
		// The table's tier count changed: all its tierable flows move.
		noted := make(map[openflow.Key]bool, len(conj))
		for _, p := range conj {
			noted[p.key] = true
		}
		for k, f := range s.merged {
			if k.Table == t && tierable(k) && !noted[k] {
				noteConj(k, f, true)
			}
		}
	}
	for _, p := range conj {
		k := p.key
		if max(next[k.Table], 1) == 1 && s.tierCount(k.Table) == 1 {
			// Untiered before and after: like any other key.
			if _, ok := s.merged[k]; !ok {
				s.removed[k] = p.flow
			}
			changed = append(changed, k)
			continue
		}
		before := s.installedOf(k, p)
		var after []openflow.Flow
		n := max(next[k.Table], 1)
		if f, ok := s.merged[k]; ok {
			if n == 1 {
				after = []openflow.Flow{f}
			} else {
				var err error
				if after, err = splitTiers(k, f.Match, s.sharers[k], n); err != nil {
					return nil, err
				}
			}
		}
		changed = s.replaceInstalled(changed, before, after, n > 1)
	}
	s.tiers = next
	return changed, nil
}

// mergeShares merges the fragments' flows sh of key k (not empty), with
// *buf as scratch space.
func mergeShares(k openflow.Key, sh []share, buf *[]openflow.Flow) (openflow.Flow, error) {
	m := sh[0].match
	if len(sh) == 1 {
		return openflow.Flow{Table: k.Table, Priority: k.Priority, Cookie: sh[0].cookie, Match: m, Actions: sh[0].actions}, nil
	}
	fs := (*buf)[:0]
	for _, c := range sh {
		fs = append(fs, openflow.Flow{Table: k.Table, Priority: k.Priority, Cookie: c.cookie, Match: m, Actions: c.actions})
	}
	*buf = fs
	return mergeKey(fs)
}

// priorFlow is a key's merged flow as it was before a Commit.
type priorFlow struct {
	key  openflow.Key
	flow openflow.Flow
	had  bool
}

// tierCount is table t's current number of conjunction tiers.
func (s *FlowSet) tierCount(t uint8) int { return max(s.tiers[t], 1) }

// installedOf returns the installed flows of tierable key k, whose merged
// flow was p, under the current tier counts.
func (s *FlowSet) installedOf(k openflow.Key, p priorFlow) []openflow.Flow {
	n := s.tierCount(k.Table)
	if n == 1 {
		if p.had {
			return []openflow.Flow{p.flow}
		}
		return nil
	}
	var out []openflow.Flow
	for tier := range n {
		if f, ok := s.tiered[openflow.Key{Table: k.Table, Priority: k.Priority - uint16(tier), Match: k.Match}]; ok {
			out = append(out, f)
		}
	}
	return out
}

// replaceInstalled replaces one tierable key's installed flows before by
// after (kept in tiered when tiered is true), appending the keys that
// changed and noting the removed flows.
func (s *FlowSet) replaceInstalled(changed []openflow.Key, before, after []openflow.Flow, tiered bool) []openflow.Key {
	next := make(map[openflow.Key]openflow.Flow, len(after))
	for _, f := range after {
		next[f.Key()] = f
	}
	for _, f := range before {
		k := f.Key()
		delete(s.tiered, k)
		g, kept := next[k]
		switch {
		case !kept:
			s.removed[k] = f
			changed = append(changed, k)
		case !g.Equal(f):
			changed = append(changed, k)
		}
	}
	prev := make(map[openflow.Key]bool, len(before))
	for _, f := range before {
		prev[f.Key()] = true
	}
	for k, f := range next {
		if !prev[k] {
			changed = append(changed, k)
		}
		if tiered {
			s.tiered[k] = f
		}
	}
	return changed
}

// installedHere reports whether key k's installed flow, if any, is in
// tiered rather than merged.
func (s *FlowSet) installedHere(k openflow.Key) bool {
	return (k.Table == TableEgress || k.Table == TableIngress) && s.tierCount(k.Table) > 1 &&
		k.Priority <= PrioRuleConj && k.Priority > PrioRuleConj-MaxConjunctionTiers
}

// fragments calls f with the ID of every fragment that has flows.
func (s *FlowSet) fragments(f func(id string)) {
	for id := range s.frags {
		f(id)
	}
}

// Flow returns the installed flow of key k.
func (s *FlowSet) Flow(k openflow.Key) (openflow.Flow, bool) {
	if s.installedHere(k) {
		f, ok := s.tiered[k]
		return f, ok
	}
	f, ok := s.merged[k]
	return f, ok
}

// Removed returns the flow that key k had before the last Commit removed it.
func (s *FlowSet) Removed(k openflow.Key) (openflow.Flow, bool) {
	f, ok := s.removed[k]
	return f, ok
}

// Len is the number of installed flows.
func (s *FlowSet) Len() int {
	n := len(s.merged) + len(s.tiered)
	for t := range s.tiers {
		n -= s.tierableKeys[t]
	}
	return n
}

// Flows returns every installed flow, sorted.
func (s *FlowSet) Flows() []openflow.Flow {
	out := make([]openflow.Flow, 0, s.Len())
	for k, f := range s.merged {
		if s.tierCount(k.Table) > 1 && tierable(k) {
			continue
		}
		out = append(out, f)
	}
	for _, f := range s.tiered {
		out = append(out, f)
	}
	openflow.Sort(out)
	return out
}

// GroupSet holds the fragments' groups. Every group ID belongs to one key
// of the group ID allocator and so to one fragment: unlike flows, groups
// are never shared or merged.
type GroupSet struct {
	frags     map[string][]openflow.Group
	groups    map[uint32]openflow.Group
	committed map[uint32]openflow.Group
	touched   map[uint32]struct{}
}

// NewGroupSet returns an empty set.
func NewGroupSet() *GroupSet {
	return &GroupSet{
		frags:     map[string][]openflow.Group{},
		groups:    map[uint32]openflow.Group{},
		committed: map[uint32]openflow.Group{},
		touched:   map[uint32]struct{}{},
	}
}

// SetFragment replaces fragment id's groups (none: removes them).
func (s *GroupSet) SetFragment(id string, groups []openflow.Group) {
	for _, g := range s.frags[id] {
		delete(s.groups, g.ID)
		s.touched[g.ID] = struct{}{}
	}
	for _, g := range groups {
		s.groups[g.ID] = g
		s.touched[g.ID] = struct{}{}
	}
	if len(groups) == 0 {
		delete(s.frags, id)
	} else {
		s.frags[id] = groups
	}
}

// Commit returns the IDs of groups added, changed or removed since the
// last Commit, sorted.
func (s *GroupSet) Commit() []uint32 {
	var changed []uint32
	for id := range s.touched {
		g, ok := s.groups[id]
		old, had := s.committed[id]
		switch {
		case ok && (!had || !g.Equal(old) || g.Cookie != old.Cookie):
			s.committed[id] = g
		case !ok && had:
			delete(s.committed, id)
		default:
			continue
		}
		changed = append(changed, id)
	}
	clear(s.touched)
	slices.Sort(changed)
	return changed
}

// Group returns the group with ID id, if any.
func (s *GroupSet) Group(id uint32) (openflow.Group, bool) {
	g, ok := s.committed[id]
	return g, ok
}

// Groups returns every group, by ID.
func (s *GroupSet) Groups() []openflow.Group {
	out := make([]openflow.Group, 0, len(s.committed))
	for _, g := range s.committed {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b openflow.Group) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Len is the number of groups.
func (s *GroupSet) Len() int { return len(s.committed) }
