// Package openflow holds flows as ovs-ofctl text: the form the compiler
// produces, people read, and the installer sends. It knows nothing of policy.
package openflow

import (
	"fmt"
	"sort"
	"strings"
)

// Flow is one OpenFlow flow in ovs-ofctl syntax.
type Flow struct {
	Table    uint8
	Priority uint16
	Cookie   Cookie
	// Match is the comma-separated match, e.g. "tcp,nw_dst=10.0.0.1,tp_dst=80";
	// empty matches everything.
	Match string
	// Actions is the comma-separated action list; "drop" drops.
	Actions string
}

// Key identifies a flow in its table the way OpenFlow does: two flows with
// the same key cannot coexist.
type Key struct {
	Table    uint8
	Priority uint16
	Match    string
}

// Key returns the flow's identity.
func (f Flow) Key() Key { return Key{f.Table, f.Priority, f.Match} }

// String renders the flow as one line ovs-ofctl add-flows accepts.
func (f Flow) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table=%d,priority=%d,cookie=%s", f.Table, f.Priority, f.Cookie)
	if f.Match != "" {
		b.WriteByte(',')
		b.WriteString(f.Match)
	}
	b.WriteString(" actions=")
	b.WriteString(f.Actions)
	return b.String()
}

// Less orders flows for output: by table, highest priority first, then by
// cookie (so one origin's flows stand together) and match text.
func Less(a, b Flow) bool {
	if a.Table != b.Table {
		return a.Table < b.Table
	}
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if a.Cookie != b.Cookie {
		return a.Cookie < b.Cookie
	}
	if a.Match != b.Match {
		return a.Match < b.Match
	}
	return a.Actions < b.Actions
}

// Sort orders flows deterministically (see Less).
func Sort(flows []Flow) {
	sort.Slice(flows, func(i, j int) bool { return Less(flows[i], flows[j]) })
}

// Text renders flows, sorted, one per line.
func Text(flows []Flow) string {
	sorted := append([]Flow(nil), flows...)
	Sort(sorted)
	var b strings.Builder
	for _, f := range sorted {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	return b.String()
}
