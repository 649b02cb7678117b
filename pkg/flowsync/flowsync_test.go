package flowsync

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// newBridge adds a bridge to s and returns an Installer for it.
func newBridge(t testing.TB, s *ovstest.Switch, name string) *Installer {
	t.Helper()
	if err := s.AddBridge(name); err != nil {
		t.Fatal(err)
	}
	return &Installer{Bridge: name, RunDir: s.Dir}
}

func TestParseFlow(t *testing.T) {
	for _, c := range []struct {
		name string
		line string
		want InstalledFlow
	}{
		{"drop", " cookie=0x4e00000000000007, priority=0 actions=drop",
			InstalledFlow{Cookie: 0x4e00000000000007, Actions: "drop"}},
		{"default priority", " cookie=0x4e00000000000007, table=3, actions=drop",
			InstalledFlow{Table: 3, Priority: 32768, Cookie: 0x4e00000000000007, Actions: "drop"}},
		{"match as printed", " cookie=0x4e00000000000002, table=20, priority=150,ct_state=+new+trk,ip,nw_src=10.1.1.1,nw_dst=10.1.1.1 actions=goto_table:50",
			InstalledFlow{Table: 20, Priority: 150, Cookie: 0x4e00000000000002, Match: "ct_state=+new+trk,ip,nw_src=10.1.1.1,nw_dst=10.1.1.1", Actions: "goto_table:50"}},
		{"statistics dropped, attributes make it stale", " cookie=0x4e00000000000007, duration=0.017s, table=3, n_packets=4, n_bytes=400, idle_timeout=60, hard_timeout=70, send_flow_rem reset_counts importance=5, idle_age=0, priority=6,ip actions=output:3",
			InstalledFlow{Table: 3, Priority: 6, Cookie: 0x4e00000000000007, Match: "ip", Actions: "output:3", Stale: true}},
		{"a field we never emit", " cookie=0x4e00000000000007, table=3, priority=6,ip,nw_tos=40,nw_dst=10.0.0.1 actions=output:3",
			InstalledFlow{Table: 3, Priority: 6, Cookie: 0x4e00000000000007, Match: "ip,nw_tos=40,nw_dst=10.0.0.1", Actions: "output:3", Stale: true}},
		{"a part we cannot read", " cookie=0x4e00000000000007, table=3, priority=6,tcp,???,tp_dst=80 actions=output:3",
			InstalledFlow{Table: 3, Priority: 6, Cookie: 0x4e00000000000007, Match: "tcp,???,tp_dst=80", Actions: "output:3", Stale: true}},
		{"a protocol we never emit", " cookie=0x4e00000000000007, table=3, priority=6,rarp actions=NORMAL",
			InstalledFlow{Table: 3, Priority: 6, Cookie: 0x4e00000000000007, Match: "rarp", Actions: "NORMAL", Stale: true}},
		{"unknown actions are compared, not stale", " cookie=0x4e00000000000007, table=3, priority=6,ip actions=note:01.02,NORMAL",
			InstalledFlow{Table: 3, Priority: 6, Cookie: 0x4e00000000000007, Match: "ip", Actions: "note:01.02,NORMAL"}},
	} {
		got, err := ParseFlow(c.line)
		if err != nil || got != c.want {
			t.Errorf("%s: ParseFlow(%q)\n got %+v, %v\nwant %+v", c.name, c.line, got, err, c.want)
		}
	}
	for _, line := range []string{" cookie=0x1, table=3, priority=5", " cookie=0x1, table=300, priority=5 actions=drop", " cookie=zz, actions=drop"} {
		if _, err := ParseFlow(line); err == nil {
			t.Errorf("ParseFlow accepted %q, which is not a flow", line)
		}
	}
}

func TestModString(t *testing.T) {
	f := conjFlow(40, 30000, 0x4e03000000000001, match(openflow.IP, openflow.HostDst(addr("10.1.1.1"))), openflow.Conjunction{ID: 7, K: 1, N: 2})
	for _, c := range []struct {
		name string
		mod  Mod
		want string
	}{
		{"add", Mod{Op: Add, Flow: f}, "flow add table=40,priority=30000,cookie=0x4e03000000000001,ip,nw_dst=10.1.1.1 actions=conjunction(7,1/2)"},
		{"delete of a desired flow", Mod{Op: Delete, Flow: f}, "flow delete_strict table=40,priority=30000,cookie=0x4e00000000000000/0xff00000000000000,ip,nw_dst=10.1.1.1"},
		{"delete of an installed flow", Mod{Op: Delete, Flow: f, Installed: &InstalledFlow{Table: 41, Priority: 5, Match: "nw_dst=10.1.1.1,ip"}},
			"flow delete_strict table=41,priority=5,cookie=0x4e00000000000000/0xff00000000000000,nw_dst=10.1.1.1,ip"},
		{"delete of everything", Mod{Op: Delete, Flow: fl(40, 30000, 1, match())}, "flow delete_strict table=40,priority=30000,cookie=0x4e00000000000000/0xff00000000000000"},
	} {
		if got := c.mod.String(); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestDiff(t *testing.T) {
	c1, c2 := openflow.Ours|1, openflow.Ours|2
	inst := func(table uint8, prio uint16, c openflow.Cookie, m, actions string) InstalledFlow {
		return InstalledFlow{Table: table, Priority: prio, Cookie: c, Match: m, Actions: actions}
	}
	installed := []InstalledFlow{
		inst(0, 0, c1, "", "drop"),                                                      // unchanged
		inst(10, 100, c1, "ip", "ct(table=20,zone=64000)"),                              // unchanged
		inst(20, 150, c1, "ct_state=+new+trk,ip,nw_src=10.0.0.1", "drop"),               // actions change
		inst(30, 5, c1, "tcp,tp_dst=80", "drop"),                                        // cookie changes
		inst(40, 5, c1, "udp", "drop"),                                                  // deleted
		inst(40, 6, c2, "udp", "drop"),                                                  // deleted
		{Table: 50, Priority: 5, Cookie: c1, Match: "ip", Actions: "drop", Stale: true}, // stale: deleted, added
	}
	ctNew := openflow.CTState{Set: openflow.CTTracked | openflow.CTNew}
	desired := []openflow.Flow{
		fl(60, 0, c1, match(), openflow.Output(openflow.PortLocal)), // new
		fl(0, 0, c1, match()), // = drop
		fl(10, 100, c1, match(openflow.IP), openflow.CT{HasTable: true, Table: 20, Zone: 64000}),          // same
		fl(20, 150, c1, match(openflow.IP, ctNew, openflow.HostSrc(addr("10.0.0.1"))), openflow.Goto(50)), // replace
		fl(30, 5, c2, match(openflow.TCP, openflow.PortDst(80))),                                          // replace (cookie)
		fl(40, 7, c1, match(openflow.UDP)),                                                                // new
		fl(50, 5, c1, match(openflow.IP)),                                                                 // re-added
	}
	got := Diff(desired, installed)
	var lines []string
	for _, m := range got {
		lines = append(lines, m.String())
	}
	want := []string{
		"flow delete_strict table=40,priority=6,cookie=0x4e00000000000000/0xff00000000000000,udp",
		"flow delete_strict table=40,priority=5,cookie=0x4e00000000000000/0xff00000000000000,udp",
		"flow delete_strict table=50,priority=5,cookie=0x4e00000000000000/0xff00000000000000,ip",
		"flow add table=20,priority=150,cookie=0x4e00000000000001,ip,ct_state=+new+trk,nw_src=10.0.0.1 actions=goto_table:50",
		"flow add table=30,priority=5,cookie=0x4e00000000000002,tcp,tp_dst=80 actions=drop",
		"flow add table=40,priority=7,cookie=0x4e00000000000001,udp actions=drop",
		"flow add table=50,priority=5,cookie=0x4e00000000000001,ip actions=drop",
		"flow add table=60,priority=0,cookie=0x4e00000000000001 actions=LOCAL",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("Diff:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	_, st := prepare(desired).diff(installed)
	if st != (SyncStats{Added: 3, Replaced: 2, Deleted: 3, Unchanged: 2}) {
		t.Errorf("stats %+v", st)
	}
	var same []InstalledFlow
	for _, f := range desired {
		same = append(same, Installed(f))
	}
	if d := Diff(desired, same); len(d) != 0 {
		t.Errorf("Diff(x, installed x) = %v", d)
	}
	// A later duplicate of one identity wins, whatever its fields' order.
	d := Diff([]openflow.Flow{fl(1, 1, c1, match(openflow.IP, openflow.InPort(3))), fl(1, 1, c1, match(openflow.InPort(3), openflow.IP), openflow.Output(3))}, nil)
	if len(d) != 1 || d[0].Flow.ActionsText() != "output:3" {
		t.Errorf("duplicate identity: %v", d)
	}
	// The installed match's fields in another order are the same flow.
	if d := Diff(desired[3:4], []InstalledFlow{inst(20, 150, c1, "nw_src=10.0.0.1,ct_state=+new+trk,ip", "goto_table:50")}); len(d) != 0 {
		t.Errorf("fields in OVS's order: %v", d)
	}
}

// foreignFlows are installed behind our back; Sync must never touch them.
const foreignFlows = `table=0,priority=500,cookie=0x1,ip,nw_src=192.0.2.1 actions=drop
table=40,priority=30000,cookie=0x4f00000000000001,ip,nw_src=10.9.9.7 actions=drop
table=40,priority=30000,ip,nw_src=10.9.9.8 actions=drop
table=77,priority=1,cookie=0xff4e000000000000 actions=drop
`

func dumpAll(t testing.TB, s *ovstest.Switch, br string) []string {
	t.Helper()
	lines, err := s.DumpFlows(br, true)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return lines
}

func foreignLines(t testing.TB, s *ovstest.Switch, br string) []string {
	var out []string
	for _, l := range dumpAll(t, s, br) {
		if !strings.HasPrefix(l, "cookie=0x4e") {
			out = append(out, l)
		}
	}
	return out
}

func TestSyncFromOtherState(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	if err := s.AddFlows("br-int", foreignFlows); err != nil {
		t.Fatal(err)
	}
	foreign := foreignLines(t, s, "br-int")
	if len(foreign) != 4 {
		t.Fatalf("foreign flows: %q", foreign)
	}

	c1, c2 := openflow.Ours|openflow.Cookie(openflow.KindRule)<<48|1, openflow.Ours|openflow.Cookie(openflow.KindPod)<<48|2
	ctNew := openflow.CTState{Set: openflow.CTTracked | openflow.CTNew}
	a := []openflow.Flow{
		fl(0, 0, c1, match()),
		fl(10, 100, c1, match(openflow.IP), openflow.CT{HasTable: true, Table: 20, Zone: 64000}),
		fl(20, 150, c1, match(openflow.IP, ctNew, openflow.HostSrc(addr("10.1.1.1")), openflow.HostDst(addr("10.1.1.1"))), openflow.Goto(50)),
		conjFlow(40, 30000, c1, match(openflow.IP, openflow.HostSrc(addr("10.9.9.9"))), openflow.Conjunction{ID: 5, K: 1, N: 2}),
		conjFlow(40, 30000, c2, match(openflow.TCP, openflow.TransportDst{Value: 0x50, Mask: 0xfff0}), openflow.Conjunction{ID: 5, K: 2, N: 2}),
		fl(40, 30000, c2, match(openflow.ConjID(5)), openflow.Goto(50)),
		fl(60, 0, c1, match(), openflow.Output(openflow.PortLocal)),
	}
	b := []openflow.Flow{
		fl(0, 0, c1, match()), // unchanged
		fl(10, 100, c1, match(openflow.IP), openflow.CT{HasTable: true, Table: 20, Zone: 64000}),                                              // unchanged
		fl(20, 150, c2, match(openflow.IP, openflow.HostDst(addr("10.1.1.1")), ctNew, openflow.HostSrc(addr("10.1.1.1"))), openflow.Goto(50)), // replaced: cookie (fields in another order)
		conjFlow(40, 30000, c1, match(openflow.IP, openflow.HostSrc(addr("10.9.9.9"))), openflow.Conjunction{ID: 6, K: 1, N: 2}),              // replaced: actions
		conjFlow(40, 30000, c1, match(openflow.IPv6, openflow.HostSrc(addr("fd00::1"))), openflow.Conjunction{ID: 6, K: 1, N: 2}),             // added
		conjFlow(40, 30000, c1, match(openflow.TCP6, openflow.PortDst(443)), openflow.Conjunction{ID: 6, K: 2, N: 2}),                         // added
		fl(40, 30000, c1, match(openflow.ConjID(6)), openflow.Goto(50)),                                                                       // added
		fl(60, 0, c1, match(), openflow.Output(openflow.PortLocal)),                                                                           // unchanged
		// deleted: the tcp port flow, conj_id=5
	}
	if err := in.Apply(ctx, addMods(a)); err != nil {
		t.Fatal(err)
	}
	if n, err := in.FlowCount(ctx); err != nil || n != len(a) {
		t.Fatalf("FlowCount after A = %d, %v; want %d", n, err, len(a))
	}
	st, err := in.Sync(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if want := (SyncStats{Added: 3, Replaced: 2, Deleted: 2, Unchanged: 3}); st != want {
		t.Errorf("Sync stats %v, want %v", st, want)
	}
	dumped, err := in.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(b, dumped); len(d) != 0 || len(dumped) != len(b) {
		t.Errorf("after Sync(B): %d flows, diff %v", len(dumped), d)
	}
	if got := foreignLines(t, s, "br-int"); strings.Join(got, "\n") != strings.Join(foreign, "\n") {
		t.Errorf("foreign flows changed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(foreign, "\n"))
	}
	if st, err := in.Sync(ctx, nil); err != nil || st != (SyncStats{Deleted: len(b)}) {
		t.Errorf("Sync(nil): %v, %v", st, err)
	}
	if got := foreignLines(t, s, "br-int"); len(got) != len(foreign) {
		t.Errorf("Sync(nil) touched foreign flows: %q", got)
	}
	if n, err := in.FlowCount(ctx); err != nil || n != 0 {
		t.Errorf("FlowCount after Sync(nil) = %d, %v", n, err)
	}
}

// TestAddReplaces: "add" of an existing table/priority/match replaces
// actions and cookie (keeping the counters), so no modify is needed.
func TestAddReplaces(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	f := fl(40, 30000, openflow.Ours|1, match(openflow.IP, openflow.HostSrc(addr("10.1.1.1"))))
	// The same match with its fields in another order: still the same flow.
	g := conjFlow(40, 30000, openflow.Ours|2, match(openflow.HostSrc(addr("10.1.1.1")), openflow.IP),
		openflow.Conjunction{ID: 1, K: 1, N: 2}, openflow.Conjunction{ID: 9, K: 2, N: 2})
	if err := in.Apply(ctx, []Mod{{Op: Add, Flow: f}}); err != nil {
		t.Fatal(err)
	}
	// One packet through the flow, so that we see what happens to counters.
	pkt := "ffffffffffff0a000000000108004500001400000000400000000a0101010a010102"
	if _, err := s.Ofctl("-O", "OpenFlow15", "packet-out", "br-int", "in_port=LOCAL packet="+pkt+" actions=resubmit(,40)"); err != nil {
		t.Fatal(err)
	}
	if err := in.Apply(ctx, []Mod{{Op: Add, Flow: g}}); err != nil {
		t.Fatal(err)
	}
	got, err := in.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := Installed(f); len(got) != 1 || got[0].Cookie != g.Cookie || got[0].Actions != g.ActionsText() || got[0].Match != want.Match {
		t.Errorf("after replacing add: %v, want [%v]", got, Installed(g))
	}
	if out, err := s.Ofctl("-O", "OpenFlow15", "dump-flows", "br-int", "table=40"); err != nil || !strings.Contains(out, "n_packets=1,") {
		t.Errorf("counters not kept by a replacing add: %v\n%s", err, out)
	}
	// A foreign flow at the same identity is replaced too: one identity
	// holds one flow, ours wins.
	if err := s.AddFlows("br-int", "table=40,priority=5,cookie=0x1,udp actions=drop\n"); err != nil {
		t.Fatal(err)
	}
	h := fl(40, 5, openflow.Ours|3, match(openflow.UDP), openflow.Goto(50))
	if err := in.Apply(ctx, []Mod{{Op: Add, Flow: h}}); err != nil {
		t.Fatal(err)
	}
	if fl := dumpAll(t, s, "br-int"); len(fl) != 2 || !strings.Contains(strings.Join(fl, "\n"), "cookie=0x4e00000000000003, table=40, priority=5,udp actions=goto_table:50") {
		t.Errorf("flows: %q", fl)
	}
}

// TestDeleteOnlyOurs: a Delete removes exactly our flow at its table,
// priority and match; a foreign flow at that identity, and our flows at
// other priorities or with wider matches, survive.
func TestDeleteOnlyOurs(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	if err := s.AddFlows("br-int", "table=40,priority=7,cookie=0x1,ip,nw_src=10.0.0.7 actions=drop\n"); err != nil {
		t.Fatal(err)
	}
	ours := []openflow.Flow{
		fl(40, 7, openflow.Ours|1, match(openflow.IP, openflow.HostSrc(addr("10.0.0.8")))),
		fl(40, 8, openflow.Ours|1, match(openflow.IP, openflow.HostSrc(addr("10.0.0.8")))),
		fl(40, 7, openflow.Ours|1, match(openflow.IP)),
	}
	if err := in.Apply(ctx, addMods(ours)); err != nil {
		t.Fatal(err)
	}
	del := []Mod{
		{Op: Delete, Flow: fl(40, 7, openflow.Ours, match(openflow.IP, openflow.HostSrc(addr("10.0.0.7"))))}, // foreign: stays
		{Op: Delete, Flow: fl(40, 7, openflow.Ours, match(openflow.HostSrc(addr("10.0.0.8")), openflow.IP))}, // ours: gone
	}
	if err := in.Apply(ctx, del); err != nil {
		t.Fatal(err)
	}
	got, err := in.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(ours[1:], got); len(d) != 0 || len(got) != 2 {
		t.Errorf("after delete: %v", got)
	}
	if f := foreignLines(t, s, "br-int"); len(f) != 1 {
		t.Errorf("foreign flow deleted: %q", f)
	}
	// Deleting what is not there is not an error.
	if err := in.Apply(ctx, del[1:]); err != nil {
		t.Errorf("delete of a missing flow: %v", err)
	}
}

// TestSyncReplacesStale: a flow of ours that carries something we never
// emit (an attribute such as an idle timeout, a match field we never use)
// is stale: Sync deletes it and adds the desired flow of its identity, if
// any, in one bundle.
func TestSyncReplacesStale(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	for n, c := range []struct {
		name, installed string
		want            SyncStats
	}{
		{"attributes", "table=60,priority=100,cookie=0x4e00000000000001,idle_timeout=600,importance=3,send_flow_rem,ip,nw_dst=10.1.1.1 actions=output:5", SyncStats{Added: 1, Deleted: 1}},
		{"hard timeout, other actions", "table=60,priority=100,cookie=0x4e00000000000001,hard_timeout=5,ip,nw_dst=10.1.1.1 actions=output:6", SyncStats{Added: 1, Deleted: 1}},
		{"a field we never emit", "table=60,priority=100,cookie=0x4e00000000000001,ip,nw_dst=10.1.1.1,nw_tos=4 actions=output:5", SyncStats{Added: 1, Deleted: 1}},
		{"a protocol we never emit", "table=60,priority=100,cookie=0x4e00000000000001,dl_type=0x88cc actions=drop", SyncStats{Added: 1, Deleted: 1}},
		{"as desired", "table=60,priority=100,cookie=0x4e00000000000001,ip,nw_dst=10.1.1.1 actions=output:5", SyncStats{Unchanged: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			br := fmt.Sprintf("br-stale%d", n)
			in := newBridge(t, s, br)
			if err := s.AddFlows(br, c.installed+"\n"); err != nil {
				t.Fatal(err)
			}
			want := []openflow.Flow{fl(60, 100, openflow.Ours|1, match(openflow.IP, openflow.HostDst(addr("10.1.1.1"))), openflow.Output(5))}
			st, err := in.Sync(ctx, want)
			if err != nil {
				t.Fatal(err)
			}
			if st != c.want {
				t.Errorf("stats %v, want %v", st, c.want)
			}
			if fl := dumpAll(t, s, br); len(fl) != 1 || fl[0] != "cookie=0x4e00000000000001, table=60, priority=100,ip,nw_dst=10.1.1.1 actions=output:5" {
				t.Errorf("flows %q", fl)
			}
		})
	}
}

// TestSyncOntoEmptySwitch: with none of our flows installed, Sync adds the
// desired flows as given, without a diff; a later flow of one identity
// still replaces an earlier one, and foreign flows stay.
func TestSyncOntoEmptySwitch(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	if err := s.AddFlows("br-int", "table=0,priority=5,cookie=0x1234,actions=drop\n"); err != nil {
		t.Fatal(err)
	}
	dst := func(a string) openflow.Match { return match(openflow.IP, openflow.HostDst(addr(a))) }
	want := []openflow.Flow{
		fl(60, 100, openflow.Ours|1, dst("10.1.1.1"), openflow.Output(5)),
		fl(60, 100, openflow.Ours|2, dst("10.1.1.2"), openflow.Output(6)),
		fl(60, 100, openflow.Ours|1, dst("10.1.1.1"), openflow.Output(7)),
	}
	st, err := in.Sync(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if st != (SyncStats{Added: 2}) {
		t.Errorf("stats %v, want 2 added", st)
	}
	got := dumpAll(t, s, "br-int")
	wantDump := []string{
		"cookie=0x1234, priority=5 actions=drop",
		"cookie=0x4e00000000000001, table=60, priority=100,ip,nw_dst=10.1.1.1 actions=output:7",
		"cookie=0x4e00000000000002, table=60, priority=100,ip,nw_dst=10.1.1.2 actions=output:6",
	}
	if !slices.Equal(got, wantDump) {
		t.Errorf("flows %q, want %q", got, wantDump)
	}
	if st, err := in.Sync(ctx, want[1:]); err != nil || st != (SyncStats{Unchanged: 2}) {
		t.Errorf("second Sync: %v, %v", st, err)
	}
}

func TestErrors(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	f := fl(1, 1, 0x1, match(openflow.IP))
	if err := in.Apply(ctx, []Mod{{Op: Add, Flow: f}}); err == nil || !strings.Contains(err.Error(), "cookie") {
		t.Errorf("Apply of a foreign cookie: %v", err)
	}
	if err := in.Apply(ctx, []Mod{{Op: Delete, Flow: fl(1, 1, openflow.Ours, match()), Installed: &InstalledFlow{Table: 1, Cookie: 0x1}}}); err == nil || !strings.Contains(err.Error(), "cookie") {
		t.Errorf("Apply of a delete of a foreign installed flow: %v", err)
	}
	if _, err := in.Sync(ctx, []openflow.Flow{f}); err == nil {
		t.Error("Sync of a foreign cookie succeeded")
	}
	if n, _ := in.FlowCount(ctx); n != 0 {
		t.Errorf("refused mods installed %d flows", n)
	}
	missing := &Installer{Bridge: "br-nope", RunDir: s.Dir}
	if _, err := missing.Dump(ctx); err == nil || !strings.Contains(err.Error(), "br-nope") {
		t.Errorf("Dump of a missing bridge: %v", err)
	}
	if _, err := missing.FlowCount(ctx); err == nil {
		t.Error("FlowCount of a missing bridge succeeded")
	}
	noOfctl := &Installer{Bridge: "br-int", RunDir: s.Dir, Ofctl: filepath.Join(t.TempDir(), "ovs-ofctl")}
	if _, err := noOfctl.Dump(ctx); err == nil {
		t.Error("Dump with a missing ovs-ofctl succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := in.Dump(cctx); err == nil {
		t.Error("Dump with a cancelled context succeeded")
	}
	if err := in.Apply(ctx, nil); err != nil {
		t.Errorf("empty Apply: %v", err)
	}
}

// syntheticFlows returns n distinct flows of ours shaped like the
// compiler's policy flows (peer addresses, port masks, conj_id flows).
func syntheticFlows(n int) []openflow.Flow {
	flows := make([]openflow.Flow, 0, n)
	for i := 0; len(flows) < n; i++ {
		c := openflow.Ours | openflow.Cookie(openflow.KindRule)<<48 | openflow.Cookie(i/100)
		id, j := uint32(1000+i/100), i/4
		var f openflow.Flow
		switch i % 4 {
		case 0:
			a := netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)})
			f = conjFlow(40, 30000, c, match(openflow.IP, openflow.HostSrc(a)), openflow.Conjunction{ID: id, K: 2, N: 3})
		case 1:
			a := netip.AddrFrom16([16]byte{0: 0xfd, 12: byte(j >> 24), 13: byte(j >> 16), 14: byte(j >> 8), 15: byte(j)})
			f = conjFlow(40, 30000, c, match(openflow.IPv6, openflow.HostSrc(a)), openflow.Conjunction{ID: id, K: 2, N: 3})
		case 2:
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(100 + j>>16), byte(j >> 8), byte(j), 0}), 24)
			f = conjFlow(30, 30000, c, match(openflow.TCP, openflow.IPDst(p), openflow.TransportDst{Value: uint16(j & 0xfff0), Mask: 0xfff0}),
				openflow.Conjunction{ID: id, K: 1, N: 2})
		default:
			a := netip.AddrFrom4([4]byte{172, byte(16 + j>>16), byte(j >> 8), byte(j)})
			f = fl(60, 100, c, match(openflow.IP, openflow.HostDst(a)), openflow.Output(uint32(10+i%1000)))
		}
		flows = append(flows, f)
	}
	return flows
}

func addMods(flows []openflow.Flow) []Mod {
	mods := make([]Mod, len(flows))
	for i, f := range flows {
		mods[i] = Mod{Op: Add, Flow: f}
	}
	return mods
}

// flowFile is the ovs-ofctl flow file of flows (plain lines, which both
// add-flows and replace-flows accept).
func flowFile(flows []openflow.Flow) string {
	var b []byte
	for _, f := range flows {
		b = append(f.Append(b), '\n')
	}
	return string(b)
}

// TestLargeSync installs, re-syncs and changes a large flow set, and logs
// the times next to raw ovs-ofctl on the same text. FLOWSYNC_LARGE sets the
// size (default 10000; the report's numbers use 100000).
func TestLargeSync(t *testing.T) {
	n := 10000
	if v := os.Getenv("FLOWSYNC_LARGE"); v != "" {
		fmt.Sscan(v, &n)
	}
	s := ovstest.Start(t)
	ctx := context.Background()
	in := newBridge(t, s, "br-int")
	newBridge(t, s, "br-raw")
	flows := syntheticFlows(n)

	file := filepath.Join(s.Dir, "large.flows")
	text := flowFile(flows)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := s.Ofctl("-O", "OpenFlow15", "--bundle", "add-flows", "br-raw", file); err != nil {
		t.Fatal(err)
	}
	tRaw := time.Since(t0)
	t0 = time.Now()
	if _, err := s.Ofctl("-O", "OpenFlow15", "--bundle", "replace-flows", "br-raw", file); err != nil {
		t.Fatal(err)
	}
	tRawReplace := time.Since(t0)

	t0 = time.Now()
	st, err := in.Sync(ctx, flows)
	if err != nil {
		t.Fatal(err)
	}
	tInstall := time.Since(t0)
	if st.Added != n {
		t.Errorf("first Sync: %v", st)
	}
	t0 = time.Now()
	dumped, err := in.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tDump := time.Since(t0)
	if len(dumped) != n {
		t.Errorf("dumped %d flows, want %d", len(dumped), n)
	}
	t0 = time.Now()
	st, err = in.Sync(ctx, flows)
	if err != nil {
		t.Fatal(err)
	}
	tResync := time.Since(t0)
	if st != (SyncStats{Unchanged: n}) {
		t.Errorf("identical re-Sync: %v", st)
	}
	// Change 1%: drop 0.5%, replace 0.5%, add 0.5%.
	changed := append([]openflow.Flow(nil), flows[n/200:]...)
	for i := 0; i < n/200; i++ {
		changed[i].Actions = openflow.Actions{} // drop
	}
	changed = append(changed, syntheticFlows(n + n/200)[n:]...)
	t0 = time.Now()
	st, err = in.Sync(ctx, changed)
	if err != nil {
		t.Fatal(err)
	}
	tChange := time.Since(t0)
	if st.Added != n/200 || st.Replaced != n/200 || st.Deleted != n/200 {
		t.Errorf("1%% change: %v", st)
	}
	if c, err := in.FlowCount(ctx); err != nil || c != len(changed) {
		t.Errorf("FlowCount %d, %v; want %d", c, err, len(changed))
	}
	t.Logf("%d flows: raw add-flows %v, raw replace-flows (identical) %v; Sync install %v, Dump %v, identical re-Sync %v, 1%% change Sync %v",
		n, tRaw, tRawReplace, tInstall, tDump, tResync, tChange)
}

// benchInstall compares, in each iteration and interleaved (so that load
// from other processes hits both alike): Apply of n adds vs raw
// "ovs-ofctl --bundle add-flows" of the same text, each on an emptied bridge;
// and an identical Sync (Dump + Diff, nothing to apply) vs a raw dump-flows
// and a raw "--bundle replace-flows" of the same (identical) file, which
// diffs too. Reported as apply-ns, raw-add-ns, resync-ns, raw-dump-ns,
// raw-replace-ns.
func benchInstall(b *testing.B, n int) {
	s := ovstest.Start(b)
	ctx := context.Background()
	in := newBridge(b, s, "br-int")
	flows := syntheticFlows(n)
	mods := addMods(flows)
	file := filepath.Join(s.Dir, "bench.flows")
	if err := os.WriteFile(file, []byte(flowFile(flows)), 0o644); err != nil {
		b.Fatal(err)
	}
	emptyBridge := func() {
		if _, err := s.Ofctl("-O", "OpenFlow15", "del-flows", "br-int"); err != nil {
			b.Fatal(err)
		}
	}
	timed := func(sum *time.Duration, f func() error) {
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		*sum += time.Since(t0)
	}
	var apply, raw, resync, dump, replace time.Duration
	for b.Loop() {
		emptyBridge()
		timed(&raw, func() error {
			_, err := s.Ofctl("-O", "OpenFlow15", "--bundle", "add-flows", "br-int", file)
			return err
		})
		emptyBridge()
		timed(&apply, func() error { return in.Apply(ctx, mods) })
		timed(&resync, func() error {
			st, err := in.Sync(ctx, flows)
			if err == nil && st.Unchanged != n {
				err = fmt.Errorf("identical Sync: %v", st)
			}
			return err
		})
		timed(&dump, func() error {
			_, err := s.Ofctl("-O", "OpenFlow15", "--no-stats", "dump-flows", "br-int", ourCookie)
			return err
		})
		timed(&replace, func() error {
			_, err := s.Ofctl("-O", "OpenFlow15", "--bundle", "replace-flows", "br-int", file)
			return err
		})
	}
	for name, d := range map[string]time.Duration{"apply-ns": apply, "raw-add-ns": raw, "resync-ns": resync,
		"raw-dump-ns": dump, "raw-replace-ns": replace} {
		b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), name)
	}
}

func BenchmarkInstall10k(b *testing.B)  { benchInstall(b, 10000) }
func BenchmarkInstall100k(b *testing.B) { benchInstall(b, 100000) }

// BenchmarkDiff100k is the Go side of an identical re-Sync of 100k flows:
// parsing the dump text and diffing against the desired set.
func BenchmarkDiff100k(b *testing.B) {
	flows := syntheticFlows(100000)
	var dump []byte
	dump = append(dump, "OFPST_FLOW reply (OF1.5) (xid=0x2):\n"...)
	for _, f := range flows {
		dump = fmt.Appendf(dump, " cookie=%s, table=%d, priority=%d,%s actions=%s\n", f.Cookie, f.Table, f.Priority, f.Match, f.ActionsText())
	}
	for b.Loop() {
		installed, err := parseDump(dump)
		if err != nil {
			b.Fatal(err)
		}
		if mods, _ := prepare(flows).diff(installed); len(mods) != 0 {
			b.Fatalf("%d mods", len(mods))
		}
	}
}
