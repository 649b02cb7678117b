// Package openflow holds flows as typed values: table, priority, cookie, a
// match of typed fields and typed actions, each rendering the text
// "ovs-ofctl dump-flows" prints for it. It is the form the compiler
// produces, people read (String) and the installer sends. It knows nothing
// of policy.
package openflow

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Flow is one OpenFlow flow.
type Flow struct {
	Table    uint8
	Priority uint16
	Cookie   Cookie
	Match    Match
	// Actions are the flow's actions: conjunctions (one dimension of
	// conjunctive matches) or plain actions; none drops.
	Actions Actions
}

// Key identifies a flow in its table the way OpenFlow does: two flows with
// the same key cannot coexist. Match is the match's text.
type Key struct {
	Table    uint8
	Priority uint16
	Match    string
}

// Key returns the flow's identity.
func (f Flow) Key() Key { return Key{f.Table, f.Priority, f.Match.String()} }

// IsConjunction reports whether the flow's actions are conjunctions.
func (f Flow) IsConjunction() bool { return f.Actions.IsConjunction() }

// AppendActions appends the flow's action text.
func (f Flow) AppendActions(b []byte) []byte {
	return f.Actions.Append(b)
}

// ActionsText is the flow's action list as ovs-ofctl prints it.
func (f Flow) ActionsText() string { return f.Actions.String() }

// Append appends the flow as one line ovs-ofctl add-flows accepts.
func (f Flow) Append(b []byte) []byte {
	b = strconv.AppendUint(append(b, "table="...), uint64(f.Table), 10)
	b = strconv.AppendUint(append(b, ",priority="...), uint64(f.Priority), 10)
	b = f.Cookie.Append(append(b, ",cookie="...))
	if m := f.Match.String(); m != "" {
		b = append(b, ',')
		b = append(b, m...)
	}
	b = append(b, " actions="...)
	return f.AppendActions(b)
}

// String renders the flow as one line ovs-ofctl add-flows accepts.
func (f Flow) String() string { return string(f.Append(nil)) }

// Equal reports whether two flows are the same flow with the same cookie
// and actions.
func (f Flow) Equal(g Flow) bool {
	return f.Table == g.Table && f.Priority == g.Priority && f.Cookie == g.Cookie &&
		(f.Match.d == g.Match.d || f.Match.String() == g.Match.String()) && f.Actions.Equal(g.Actions)
}

// SameActions reports whether two flows have the same actions.
func (f Flow) SameActions(g Flow) bool {
	return f.Actions.Equal(g.Actions)
}

// Less orders flows for output: by table, highest priority first, then by
// cookie (so one origin's flows stand together), match and action text.
func Less(a, b Flow) bool { return Compare(a, b) < 0 }

// Compare is Less as a three-way comparison.
func Compare(a, b Flow) int {
	if c := cmp.Compare(a.Table, b.Table); c != 0 {
		return c
	}
	if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Cookie, b.Cookie); c != 0 {
		return c
	}
	if c := strings.Compare(a.Match.String(), b.Match.String()); c != 0 {
		return c
	}
	return strings.Compare(a.ActionsText(), b.ActionsText())
}

// Sort orders flows deterministically (see Less).
func Sort(flows []Flow) { slices.SortFunc(flows, Compare) }

// Text renders flows, sorted, one per line.
func Text(flows []Flow) string {
	sorted := append([]Flow(nil), flows...)
	Sort(sorted)
	var b []byte
	for _, f := range sorted {
		b = f.Append(b)
		b = append(b, '\n')
	}
	return string(b)
}
