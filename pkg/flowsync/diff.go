package flowsync

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

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
	Op Op
	// Flow is the flow an Add installs, or whose table, priority and match
	// a Delete removes (the incremental compiler's deletes).
	Flow openflow.Flow
	// Installed, when set, is what a Delete removes instead of Flow: one
	// of our flows as dump-flows printed it (Diff's deletes).
	Installed *InstalledFlow
}

// cookie is the cookie of the mod's flow.
func (m Mod) cookie() openflow.Cookie {
	if m.Installed != nil {
		return m.Installed.Cookie
	}
	return m.Flow.Cookie
}

// attributes are flow properties that ovs-ofctl accepts (and dump-flows
// prints) among the match fields but that are not part of the match. We
// never set them: a dumped flow carrying one is stale (see ParseFlow), and
// its delete line leaves them out (they are not part of the match).
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
	if bundleCmd {
		dst = append(dst, "flow "...)
	}
	switch m.Op {
	case Add:
		dst = append(dst, "add "...)
		dst = m.Flow.Append(dst)
	case Delete:
		table, priority, match := m.Flow.Table, m.Flow.Priority, m.Flow.Match.String()
		if m.Installed != nil {
			table, priority, match = m.Installed.Table, m.Installed.Priority, m.Installed.Match
		}
		dst = append(dst, "delete_strict table="...)
		dst = strconv.AppendUint(dst, uint64(table), 10)
		dst = append(dst, ",priority="...)
		dst = strconv.AppendUint(dst, uint64(priority), 10)
		dst = append(dst, ",cookie="+oursCookieMask...)
		if match != "" {
			dst = append(dst, ',')
			dst = append(dst, match...)
		}
	default:
		dst = fmt.Appendf(dst, "# invalid op %d", m.Op)
	}
	return dst
}

// oursCookieMask is "cookie/mask" selecting our flows.
var oursCookieMask = openflow.Ours.String() + "/" + openflow.OursMask.String()

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
	return m.Group.Append(append(dst, "group add_or_mod "...))
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
		// The match and the rest of a line, delete_strict's included, with
		// room for typical actions (reading each flow's actions here would
		// cost a second pass over them; a longer text grows the buffer).
		if m.Installed != nil {
			n += len(m.Installed.Match) + 96
		} else {
			n += len(m.Flow.Match.String()) + 128
		}
	}
	for _, g := range groups {
		// A Service group's head and its buckets: ct(commit,table,zone,
		// nat(dst=ADDR:PORT),exec(set_field)) each (IPv4).
		n += 100 + 130*len(g.Group.Buckets)
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
	var want map[uint32]bool
	if len(installed) > 0 {
		want = make(map[uint32]bool, len(desired))
	}
	var text []byte
	for _, g := range desired {
		if have, ok := installed[g.ID]; ok {
			want[g.ID] = true
			if text = g.Append(text[:0]); string(text) == have {
				continue
			}
		}
		out = append(out, GroupMod{Group: g})
	}
	for id := range installed {
		if !want[id] {
			out = append(out, GroupMod{Delete: true, Group: openflow.Group{ID: id}})
		}
	}
	slices.SortFunc(out, func(a, b GroupMod) int { return cmp.Compare(a.Group.ID, b.Group.ID) })
	return out
}

// Diff returns the mods that turn installed (as Dump returns it) into
// desired. A flow's identity is its table, priority and match fields in any
// order (openflow.Match.Sorted, openflow.SortedFields of the dumped text):
//
//   - an identity only in installed, or a stale installed flow (see
//     ParseFlow) → Delete (of the installed flow, as OVS printed it);
//   - an identity only in desired, or whose installed flow is stale → Add
//     (of the desired flow);
//   - an identity in both whose actions text (openflow.Flow.ActionsText,
//     which renders what OVS prints) or cookie differ → Add (of the desired
//     flow: "add" replaces the installed one);
//   - otherwise nothing.
//
// The order is deterministic: all Deletes, then all Adds, each sorted by
// table, priority (highest first), cookie, match and actions text. Deletes
// come first because a delete_strict after an add of the same OpenFlow
// identity would remove the new flow (a stale flow, e.g. one carrying an
// idle_timeout, is deleted and re-added). If desired holds two flows with
// one identity, the later one wins (as in ovs-ofctl).
func Diff(desired []openflow.Flow, installed []InstalledFlow) []Mod {
	mods, _ := prepare(desired).diff(installed)
	return mods
}

// flowID is a flow's OpenFlow identity: table, priority and its match
// fields sorted.
type flowID struct {
	table    uint8
	priority uint16
	match    string
}

// desiredSet is the desired half of a diff, by identity.
type desiredSet struct {
	flows []openflow.Flow
	want  map[flowID]int // index in flows of the identity's last flow
	order []flowID       // first appearance
}

func prepare(desired []openflow.Flow) desiredSet {
	d := desiredSet{flows: desired, want: make(map[flowID]int, len(desired)), order: make([]flowID, 0, len(desired))}
	for i, f := range desired {
		k := flowID{f.Table, f.Priority, f.Match.Sorted()}
		if _, dup := d.want[k]; !dup {
			d.order = append(d.order, k)
		}
		d.want[k] = i
	}
	return d
}

func (d desiredSet) diff(installed []InstalledFlow) ([]Mod, SyncStats) {
	var st SyncStats
	var dels, adds []Mod
	have := make(map[flowID]*InstalledFlow, len(installed))
	for i := range installed {
		f := &installed[i]
		k := flowID{f.Table, f.Priority, openflow.SortedFields(f.Match)}
		_, wanted := d.want[k]
		if f.Stale || !wanted {
			dels = append(dels, Mod{Op: Delete, Installed: f})
			st.Deleted++
			continue
		}
		have[k] = f
	}
	var actions []byte // rendered once per flow, compared without a copy
	for _, k := range d.order {
		w := d.flows[d.want[k]]
		h, ok := have[k]
		if !ok {
			adds = append(adds, Mod{Op: Add, Flow: w})
			st.Added++
			continue
		}
		actions = w.AppendActions(actions[:0])
		if h.Cookie != w.Cookie || string(actions) != h.Actions {
			adds = append(adds, Mod{Op: Add, Flow: w})
			st.Replaced++
			continue
		}
		st.Unchanged++
	}
	slices.SortFunc(dels, func(a, b Mod) int { return compareInstalled(a.Installed, b.Installed) })
	slices.SortFunc(adds, func(a, b Mod) int { return openflow.Compare(a.Flow, b.Flow) })
	return append(dels, adds...), st
}

// compareInstalled orders installed flows as openflow.Compare orders flows.
func compareInstalled(a, b *InstalledFlow) int {
	if c := cmp.Compare(a.Table, b.Table); c != 0 {
		return c
	}
	if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Cookie, b.Cookie); c != 0 {
		return c
	}
	if c := strings.Compare(a.Match, b.Match); c != 0 {
		return c
	}
	return strings.Compare(a.Actions, b.Actions)
}

// addAll is the diff against a switch holding none of our flows: an add of
// every desired flow in the given order (a later flow of one identity
// replaces an earlier one in the bundle, as in Diff). Added counts distinct
// identities.
func addAll(desired []openflow.Flow) ([]Mod, SyncStats) {
	mods := make([]Mod, len(desired))
	seen := make(map[flowID]struct{}, len(desired))
	for i, f := range desired {
		mods[i] = Mod{Op: Add, Flow: f}
		seen[flowID{f.Table, f.Priority, f.Match.Sorted()}] = struct{}{}
	}
	return mods, SyncStats{Added: len(seen)}
}
