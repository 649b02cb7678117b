package compiler

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// IDAllocator hands out conjunction IDs derived from a hash of the rule key,
// so one policy's IDs never depend on which other policies exist. A hash
// collision takes the next free ID; an allocator that lives as long as the
// agent keeps every ID it gave out until Release. IDs are never 0 and, for
// an allocator made with newIDAllocatorIn, stay in its range.
type IDAllocator struct {
	byKey map[string]uint32
	used  map[uint32]string
	// base | (hash & mask): the range IDs come from (mask 0: all 32 bits).
	base, mask uint32
}

// NewIDAllocator returns an empty allocator.
func NewIDAllocator() *IDAllocator {
	return &IDAllocator{byKey: map[string]uint32{}, used: map[uint32]string{}}
}

// newIDAllocatorIn returns an empty allocator of IDs base | (h & mask).
func newIDAllocatorIn(base, mask uint32) *IDAllocator {
	a := NewIDAllocator()
	a.base, a.mask = base, mask
	return a
}

// ID returns the ID of key, allocating it on first use.
func (a *IDAllocator) ID(key string) uint32 {
	if id, ok := a.byKey[key]; ok {
		return id
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	mask := a.mask
	if mask == 0 {
		mask = ^uint32(0)
	}
	id := a.base | h.Sum32()&mask
	for id == 0 || a.used[id] != "" {
		id = a.base | (id+1)&mask
	}
	a.byKey[key] = id
	a.used[id] = key
	return id
}

// Key returns the key an ID was allocated for.
func (a *IDAllocator) Key(id uint32) (string, bool) {
	k, ok := a.used[id]
	return k, ok
}

// Release frees key's ID.
func (a *IDAllocator) Release(key string) {
	if id, ok := a.byKey[key]; ok {
		delete(a.byKey, key)
		delete(a.used, id)
	}
}

// Result is a compiled flow set with what explains it.
type Result struct {
	// Flows are merged and sorted: ready for ovs-ofctl.
	Flows []openflow.Flow
	// Groups are the Services' select groups, by ID.
	Groups []openflow.Group
	// Origins maps each cookie in Flows and Groups to a human description.
	Origins map[openflow.Cookie]string
	// Conjunctions maps conjunction IDs to the rule (and named-port group).
	Conjunctions map[uint32]string
}

// Text renders the result as an "ovs-ofctl -O OpenFlow15 bundle" file:
// "group add" lines (groups first: flows refer to them), then "flow add"
// lines, with a comment header per origin when comments is set
// (ovs-ofctl ignores '#' lines).
func (r *Result) Text(comments bool) string {
	// ovs-ofctl reads the file line by line: a name holding a line break
	// (or any other control character) would end its comment and start a
	// flow or group of the input's choosing. Such text is written quoted
	// and escaped, whatever validation the input went through before.
	safe := printable.String
	var b strings.Builder
	if comments && len(r.Conjunctions) > 0 {
		ids := make([]uint32, 0, len(r.Conjunctions))
		for id := range r.Conjunctions {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		b.WriteString("# conjunctions (conj_id: namespace/policy/direction/rule[/named-port group]):\n")
		for _, id := range ids {
			fmt.Fprintf(&b, "#   %d: %s\n", id, safe(r.Conjunctions[id]))
		}
	}
	if comments && len(r.Groups) > 0 {
		b.WriteString("# groups: Service load balancers (one per port and address family)\n")
	}
	for _, g := range r.Groups {
		if comments {
			fmt.Fprintf(&b, "# group %d (cookie %s): %s\n", g.ID, g.Cookie, safe(r.Origins[g.Cookie]))
		}
		b.WriteString("group add ")
		b.WriteString(g.String())
		b.WriteByte('\n')
	}
	var last openflow.Cookie
	var lastTable = -1
	for _, f := range r.Flows {
		if comments && int(f.Table) != lastTable {
			fmt.Fprintf(&b, "# table %d: %s\n", f.Table, safe(TableNames[f.Table]))
			lastTable = int(f.Table)
			last = 0
		}
		if comments && f.Cookie != last {
			fmt.Fprintf(&b, "# cookie %s: %s\n", f.Cookie, safe(r.Origins[f.Cookie]))
			last = f.Cookie
		}
		b.WriteString("flow add ")
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Compile produces node cfg.Node's complete flow set for cluster c.
// Bindings must cover the local pods that should get flows (see
// DefaultBindings); local pods without one are left out. It is the
// incremental compiler run once over everything, so both always agree.
func Compile(c *model.Cluster, cfg Config) (*Result, error) {
	// Incremental takes ownership of the cluster it is given; give it a
	// shallow copy so the caller keeps theirs.
	cp := model.NewCluster(c.Mode)
	maps.Copy(cp.Namespaces, c.Namespaces)
	maps.Copy(cp.Pods, c.Pods)
	maps.Copy(cp.Policies, c.Policies)
	maps.Copy(cp.Services, c.Services)
	maps.Copy(cp.EndpointSlices, c.EndpointSlices)
	maps.Copy(cp.Nodes, c.Nodes)
	inc := NewIncremental(cp, cfg)
	if _, err := inc.Flush(); err != nil {
		return nil, err
	}
	res := &Result{Flows: inc.Flows(), Groups: inc.Groups(), Origins: map[openflow.Cookie]string{}, Conjunctions: inc.Conjunctions()}
	origins := inc.Origins()
	for _, f := range res.Flows {
		res.Origins[f.Cookie] = origins[f.Cookie]
	}
	for _, g := range res.Groups {
		res.Origins[g.Cookie] = origins[g.Cookie]
	}
	return res, nil
}

// Merge combines flows with the same table, priority and match, which
// OpenFlow cannot hold twice (see mergeKey). The result is sorted.
func Merge(flows []openflow.Flow) ([]openflow.Flow, error) {
	byKey := make(map[openflow.Key][]openflow.Flow, len(flows))
	for _, f := range flows {
		byKey[f.Key()] = append(byKey[f.Key()], f)
	}
	out := make([]openflow.Flow, 0, len(byKey))
	for _, fs := range byKey {
		f, err := mergeKey(fs)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	openflow.Sort(out)
	return out, nil
}

// mergeKey merges flows sharing one key: conjunction-only flows join their
// conjunctions (ordered by conjunction ID, K, N; the cookie of the lowest),
// identical flows collapse (lowest cookie). Two different plain flows for
// one key happen when two live pods claim one IP (an informer event still
// in flight, or bad data): the flow with the lowest cookie wins,
// deterministically. A conjunction colliding with a plain flow is a
// compiler bug: an error. The result does not depend on the order of fs.
func mergeKey(fs []openflow.Flow) (openflow.Flow, error) {
	if len(fs) == 1 {
		return fs[0], nil
	}
	if fs[0].IsConjunction() {
		n := 0
		for _, f := range fs {
			if !f.IsConjunction() {
				return openflow.Flow{}, collision(f.Key())
			}
			n += len(f.Actions.Conjunctions())
		}
		type part struct {
			conj   openflow.Conjunction
			cookie openflow.Cookie
		}
		parts := make([]part, 0, n)
		for _, f := range fs {
			for _, c := range f.Actions.Conjunctions() {
				parts = append(parts, part{c, f.Cookie})
			}
		}
		slices.SortFunc(parts, func(a, b part) int {
			if c := compareConjunctions(a.conj, b.conj); c != 0 {
				return c
			}
			return cmp.Compare(a.cookie, b.cookie)
		})
		conjs := make([]openflow.Conjunction, 0, len(parts))
		for i, p := range parts {
			if i == 0 || p.conj != parts[i-1].conj {
				conjs = append(conjs, p.conj)
			}
		}
		f := fs[0]
		f.Cookie = parts[0].cookie
		f.Actions = openflow.Conjoin(conjs...)
		return f, nil
	}
	f := fs[0]
	for _, g := range fs[1:] {
		if g.IsConjunction() {
			return openflow.Flow{}, collision(g.Key())
		}
		if g.Cookie < f.Cookie || g.Cookie == f.Cookie && !g.SameActions(f) && g.ActionsText() < f.ActionsText() {
			f = g
		}
	}
	return f, nil
}

// compareConjunctions orders conjunctions by ID, K, N.
func compareConjunctions(a, b openflow.Conjunction) int {
	if c := cmp.Compare(a.ID, b.ID); c != 0 {
		return c
	}
	if c := cmp.Compare(a.K, b.K); c != 0 {
		return c
	}
	return cmp.Compare(a.N, b.N)
}

func collision(k openflow.Key) error {
	return fmt.Errorf("flow table=%d,priority=%d,%s: conjunction and non-conjunction actions collide", k.Table, k.Priority, k.Match)
}
