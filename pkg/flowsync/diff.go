package flowsync

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Op is what a Mod does.
type Op uint8

const (
	// Add installs the flow; a flow with the same table, priority and match
	// is replaced: actions and cookie change, packet and byte counters are
	// kept (OVS copies them to the new flow).
	Add Op = iota + 1
	// Delete removes the flow with exactly the same table, priority and match
	// (delete_strict), and only if its cookie carries our magic byte.
	Delete
)

func (o Op) String() string {
	switch o {
	case Add:
		return "add"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Mod is one change to the flow table.
type Mod struct {
	Op   Op
	Flow openflow.Flow
}

// attributes are flow properties that ovs-ofctl accepts (and dump-flows
// prints) among the match fields but that are not part of the match. Dump
// keeps them in Match so that a flow carrying one never equals a desired
// flow without it (Diff then replaces it) and an Add of a dumped flow
// reproduces it; delete lines must leave them out.
var attributes = map[string]bool{
	"idle_timeout": true, "hard_timeout": true, "importance": true,
	"send_flow_rem": true, "check_overlap": true, "reset_counts": true,
	"no_packet_counts": true, "no_byte_counts": true,
}

// String renders the mod as one line of "ovs-ofctl bundle":
//
//	flow add table=T,priority=P,cookie=C,MATCH actions=A
//	flow delete_strict table=T,priority=P,cookie=0x4e00000000000000/0xff00000000000000,MATCH
//
// The cookie mask makes a delete touch only our flows (verified: OpenFlow
// 1.5 delete_strict honours it; a foreign flow with the same table, priority
// and match survives).
func (m Mod) String() string { return string(m.appendTo(nil, true)) }

// appendTo appends the mod's line (without newline) to dst, without fmt:
// a large bundle's text is rendered on the install's critical path.
func (m Mod) appendTo(dst []byte, bundleCmd bool) []byte {
	f := m.Flow
	if bundleCmd {
		dst = append(dst, "flow "...)
	}
	switch m.Op {
	case Add:
		dst = append(dst, "add "...)
		dst = appendFlow(dst, f)
	case Delete:
		dst = append(dst, "delete_strict table="...)
		dst = strconv.AppendUint(dst, uint64(f.Table), 10)
		dst = append(dst, ",priority="...)
		dst = strconv.AppendUint(dst, uint64(f.Priority), 10)
		dst = append(dst, ",cookie="+oursCookieMask...)
		for _, tok := range strings.Split(f.Match, ",") {
			name, _, _ := strings.Cut(tok, "=")
			if tok == "" || attributes[strings.TrimSpace(name)] {
				continue
			}
			dst = append(dst, ',')
			dst = append(dst, tok...)
		}
	default:
		dst = fmt.Appendf(dst, "# invalid op %d", m.Op)
	}
	return dst
}

// oursCookieMask is "cookie/mask" selecting our flows.
var oursCookieMask = openflow.Ours.String() + "/" + openflow.OursMask.String()

// appendFlow appends f.String() without fmt.
func appendFlow(dst []byte, f openflow.Flow) []byte {
	dst = append(dst, "table="...)
	dst = strconv.AppendUint(dst, uint64(f.Table), 10)
	dst = append(dst, ",priority="...)
	dst = strconv.AppendUint(dst, uint64(f.Priority), 10)
	dst = append(dst, ",cookie=0x"...) // Cookie.String: 0x%016x
	for i := 60; i >= 0; i -= 4 {
		dst = append(dst, "0123456789abcdef"[uint64(f.Cookie)>>i&0xf])
	}
	if f.Match != "" {
		dst = append(dst, ',')
		dst = append(dst, f.Match...)
	}
	dst = append(dst, " actions="...)
	return append(dst, f.Actions...)
}

// Mods turns flow and group changes into the mods of one bundle: flow
// deletes before adds (an identity deleted and re-added must end up added).
func Mods(addFlows, delFlows []openflow.Flow, setGroups []openflow.Group, delGroups []uint32) ([]Mod, []GroupMod) {
	mods := make([]Mod, 0, len(addFlows)+len(delFlows))
	for _, f := range delFlows {
		mods = append(mods, Mod{Op: Delete, Flow: f})
	}
	for _, f := range addFlows {
		mods = append(mods, Mod{Op: Add, Flow: f})
	}
	groups := make([]GroupMod, 0, len(setGroups)+len(delGroups))
	for _, g := range setGroups {
		groups = append(groups, GroupMod{Group: g})
	}
	for _, id := range delGroups {
		groups = append(groups, GroupMod{Delete: true, Group: openflow.Group{ID: id}})
	}
	return mods, groups
}

// GroupMod is one change to the group table.
type GroupMod struct {
	// Delete removes the group with Group.ID; otherwise Group is added or,
	// if its ID exists, replaces it ("add_or_mod").
	Delete bool
	Group  openflow.Group
}

// appendTo appends the mod's line of "ovs-ofctl bundle" (without newline).
func (m GroupMod) appendTo(dst []byte) []byte {
	if m.Delete {
		dst = append(dst, "group delete group_id="...)
		return strconv.AppendUint(dst, uint64(m.Group.ID), 10)
	}
	dst = append(dst, "group add_or_mod "...)
	return append(dst, m.Group.String()...)
}

// bundleText renders flow and group mods as the lines of one bundle, in one
// buffer sized up front, in an order OVS accepts: groups are added or
// changed before the flows that refer to them, and deleted after (deleting
// a group deletes every flow that refers to it). Without group mods, the
// lines are those of "ovs-ofctl --bundle add-flows" (see Installer.ApplyBundle).
func bundleText(mods []Mod, groups []GroupMod) []byte {
	bundleCmd := len(groups) > 0
	n := 0
	for _, m := range mods {
		n += len(m.Flow.Match) + len(m.Flow.Actions) + 96 // the rest of a line, delete_strict's included
	}
	for _, g := range groups {
		n += 64 + 100*len(g.Group.Buckets)
	}
	dst := make([]byte, 0, n)
	for _, g := range groups {
		if !g.Delete {
			dst = append(g.appendTo(dst), '\n')
		}
	}
	for _, m := range mods {
		dst = m.appendTo(dst, bundleCmd)
		dst = append(dst, '\n')
	}
	for _, g := range groups {
		if g.Delete {
			dst = append(g.appendTo(dst), '\n')
		}
	}
	return dst
}

// DiffGroups returns the group mods that turn installed (our groups on the
// bridge, as DumpGroups returns them) into desired: groups compare by their
// rendered text (Group.String is OVS's own form), sorted by ID.
func DiffGroups(desired []openflow.Group, installed map[uint32]string) []GroupMod {
	var out []GroupMod
	want := make(map[uint32]bool, len(desired))
	for _, g := range desired {
		want[g.ID] = true
		if installed[g.ID] != g.String() {
			out = append(out, GroupMod{Group: g})
		}
	}
	for id := range installed {
		if !want[id] {
			out = append(out, GroupMod{Delete: true, Group: openflow.Group{ID: id}})
		}
	}
	slices.SortFunc(out, func(a, b GroupMod) int { return int(int64(a.Group.ID) - int64(b.Group.ID)) })
	return out
}

// Diff returns the mods that turn installed into desired. Flows are
// identified by table, priority and canonical match (see Canonical):
//
//   - an identity only in installed → Delete (of the installed flow);
//   - an identity only in desired → Add (of the desired flow, as given);
//   - an identity in both whose canonical actions or cookie differ → Add
//     (of the desired flow: "add" replaces the installed one);
//   - otherwise nothing.
//
// The order is deterministic: all Deletes, then all Adds, each sorted by
// openflow.Less. Deletes come first because a delete_strict after an add of
// the same OpenFlow identity would remove the new flow (this matters when
// two texts Canonical tells apart name the same OVS flow, e.g. a dumped
// flow carrying an idle_timeout: it is deleted and re-added). If desired
// holds two flows with one identity, the later one wins (as in ovs-ofctl).
func Diff(desired, installed []openflow.Flow) []Mod {
	mods, _ := diff(desired, installed, false)
	return mods
}

// diff is Diff with the counts Sync reports; canonical says installed is
// already in canonical form (as Dump returns it), saving a second pass.
func diff(desired, installed []openflow.Flow, canonical bool) ([]Mod, SyncStats) {
	return prepare(desired).diff(installed, canonical)
}

// entry is a flow as given and in canonical form.
type entry struct {
	orig, canon openflow.Flow
}

// desiredSet is the desired half of a diff, canonicalized once.
type desiredSet struct {
	want  map[openflow.Key]entry
	order []openflow.Key // first appearance
}

func prepare(desired []openflow.Flow) desiredSet {
	canon := canonicalAll(desired)
	d := desiredSet{want: make(map[openflow.Key]entry, len(desired)), order: make([]openflow.Key, 0, len(desired))}
	for i, f := range desired {
		c := canon[i]
		k := c.Key()
		if _, dup := d.want[k]; !dup {
			d.order = append(d.order, k)
		}
		d.want[k] = entry{f, c}
	}
	return d
}

// canonicalAll returns Canonical of each flow, computed on all CPUs (it is
// most of a full Sync's own work). Actions repeat across flows (every flow
// of one conjunction dimension has the same), so each worker remembers the
// action lists it canonicalized.
func canonicalAll(flows []openflow.Flow) []openflow.Flow {
	out := make([]openflow.Flow, len(flows))
	const chunk = 1024
	workers := min(runtime.GOMAXPROCS(0), (len(flows)+chunk-1)/chunk)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			actions := map[string]string{}
			for {
				start := int(next.Add(chunk)) - chunk
				if start >= len(flows) {
					return
				}
				for i := start; i < min(start+chunk, len(flows)); i++ {
					f := flows[i]
					a, ok := actions[f.Actions]
					if !ok {
						a = canonicalActions(f.Actions)
						actions[f.Actions] = a
					}
					f.Match, f.Actions = canonicalMatch(f.Match), a
					out[i] = f
				}
			}
		}()
	}
	wg.Wait()
	return out
}

func (d desiredSet) diff(installed []openflow.Flow, canonical bool) ([]Mod, SyncStats) {
	have := make(map[openflow.Key]entry, len(installed))
	for _, f := range installed {
		c := f
		if !canonical {
			c = Canonical(f)
		}
		have[c.Key()] = entry{f, c}
	}
	var st SyncStats
	var dels, adds []Mod
	for k, h := range have {
		if _, ok := d.want[k]; !ok {
			dels = append(dels, Mod{Delete, h.orig})
			st.Deleted++
		}
	}
	for _, k := range d.order {
		w := d.want[k]
		h, ok := have[k]
		switch {
		case !ok:
			adds = append(adds, Mod{Add, w.orig})
			st.Added++
		case h.canon.Actions != w.canon.Actions || h.canon.Cookie != w.canon.Cookie:
			adds = append(adds, Mod{Add, w.orig})
			st.Replaced++
		default:
			st.Unchanged++
		}
	}
	sortMods(dels)
	sortMods(adds)
	return append(dels, adds...), st
}

// addAll is the diff against a switch holding none of our flows: an add of
// every desired flow in the given order. Added counts distinct texts (table,
// priority, match) without canonicalizing: two texts naming one OVS flow,
// which the compiler never emits, would count twice.
func addAll(desired []openflow.Flow) ([]Mod, SyncStats) {
	mods := make([]Mod, len(desired))
	seen := make(map[openflow.Key]struct{}, len(desired))
	for i, f := range desired {
		mods[i] = Mod{Add, f}
		seen[f.Key()] = struct{}{}
	}
	return mods, SyncStats{Added: len(seen)}
}

func sortMods(m []Mod) {
	slices.SortFunc(m, func(a, b Mod) int {
		switch {
		case openflow.Less(a.Flow, b.Flow):
			return -1
		case openflow.Less(b.Flow, a.Flow):
			return 1
		}
		return 0
	})
}
