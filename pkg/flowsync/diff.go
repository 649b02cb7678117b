package flowsync

import (
	"fmt"
	"sort"
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

// String renders the mod as one line of "ovs-ofctl --bundle add-flows":
//
//	add table=T,priority=P,cookie=C,MATCH actions=A
//	delete_strict table=T,priority=P,cookie=0x4e00000000000000/0xff00000000000000,MATCH
//
// The cookie mask makes a delete touch only our flows (verified: OpenFlow
// 1.5 delete_strict honours it; a foreign flow with the same table, priority
// and match survives).
func (m Mod) String() string {
	var b strings.Builder
	m.appendTo(&b)
	return b.String()
}

func (m Mod) appendTo(b *strings.Builder) {
	f := m.Flow
	switch m.Op {
	case Add:
		b.WriteString("add ")
		b.WriteString(f.String())
	case Delete:
		fmt.Fprintf(b, "delete_strict table=%d,priority=%d,cookie=%s/%s", f.Table, f.Priority, openflow.Ours, openflow.OursMask)
		for _, tok := range strings.Split(f.Match, ",") {
			name, _, _ := strings.Cut(tok, "=")
			if tok == "" || attributes[strings.TrimSpace(name)] {
				continue
			}
			b.WriteByte(',')
			b.WriteString(tok)
		}
	default:
		fmt.Fprintf(b, "# invalid op %d", m.Op)
	}
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
	d := desiredSet{want: make(map[openflow.Key]entry, len(desired)), order: make([]openflow.Key, 0, len(desired))}
	for _, f := range desired {
		c := Canonical(f)
		k := c.Key()
		if _, dup := d.want[k]; !dup {
			d.order = append(d.order, k)
		}
		d.want[k] = entry{f, c}
	}
	return d
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

func sortMods(m []Mod) {
	sort.Slice(m, func(i, j int) bool { return openflow.Less(m[i].Flow, m[j].Flow) })
}
