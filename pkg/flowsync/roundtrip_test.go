package flowsync

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Shorthands of the tests' typed flows.
var (
	addr   = netip.MustParseAddr
	prefix = netip.MustParsePrefix
	mac    = openflow.MAC{0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0c}
	match  = openflow.NewMatch
)

// fl is a flow of ours with actions (none: drop).
func fl(table uint8, prio uint16, c openflow.Cookie, m openflow.Match, actions ...openflow.Action) openflow.Flow {
	return openflow.Flow{Table: table, Priority: prio, Cookie: c, Match: m, Actions: openflow.Do(actions...)}
}

// conjFlow is a flow of ours whose actions are conjunctions.
func conjFlow(table uint8, prio uint16, c openflow.Cookie, m openflow.Match, cs ...openflow.Conjunction) openflow.Flow {
	return openflow.Flow{Table: table, Priority: prio, Cookie: c, Match: m, Actions: openflow.Conjoin(cs...)}
}

// rendered is what the typed flows of one case must read back as.
type rendered struct {
	flows  []openflow.Flow
	groups []openflow.Group
	meters []Meter
}

// everyKind is one flow (or more) of every openflow Field and Action type,
// in each of its rendering forms (IPv4 and IPv6, host and prefix, masked
// and exact, LOCAL and numbered ports, each ct() argument), and a group
// whose buckets use the Service actions.
func everyKind() rendered {
	c := openflow.NewCookie(openflow.KindRule, "every-kind")
	svc := openflow.NewCookie(openflow.KindService, "every-kind")
	gid := openflow.GroupIDOurs | 42
	var flows []openflow.Flow
	prio := uint16(100)
	add := func(table uint8, m openflow.Match, actions ...openflow.Action) {
		prio++
		flows = append(flows, fl(table, prio, c, m, actions...))
	}
	// Every protocol shorthand.
	for p := openflow.IP; p <= openflow.SCTP6; p++ {
		add(0, match(p))
	}
	// Match fields.
	add(0, match(openflow.IP, openflow.InPort(7), openflow.EthSrc(mac), openflow.HostSrc(addr("10.244.1.12")), openflow.HostDst(addr("169.254.123.253"))), openflow.Goto(10))
	add(0, match(openflow.IPv6, openflow.InPort(openflow.PortLocal), openflow.HostSrc(addr("fd00:10:1::1:1")), openflow.IPDst(prefix("fd00:10:1::/64"))), openflow.Goto(10))
	add(0, match(openflow.IP, openflow.IPSrc(prefix("10.1.2.3/16")), openflow.IPDst(prefix("0.0.0.0/0"))), openflow.Goto(10))
	add(0, match(openflow.IPv6, openflow.IPSrc(prefix("::/0")), openflow.IPDst(prefix("fe80::1/10"))), openflow.Goto(10))
	add(0, match(openflow.ARP, openflow.InPort(3), openflow.ARPSenderIP(addr("10.0.0.1")), openflow.ARPTargetIP(addr("10.0.0.2")), openflow.ARPSenderMAC(mac)), openflow.Goto(10))
	add(0, match(openflow.ICMP6, openflow.ICMPType(135), openflow.ICMPCode(0), openflow.NDTarget(prefix("fd00::1/128"))), openflow.Goto(10))
	add(0, match(openflow.ICMP6, openflow.ICMPType(136), openflow.NDTarget(prefix("fe80::/10"))), openflow.Goto(10))
	add(0, match(openflow.ICMP, openflow.ICMPType(8), openflow.ICMPCode(0)), openflow.Goto(10))
	add(30, match(openflow.TCP, openflow.PortDst(80)), openflow.Goto(40))
	add(30, match(openflow.UDP6, openflow.TransportDst{Value: 0x1000, Mask: 0xf000}), openflow.Goto(40))
	add(30, match(openflow.SCTP, openflow.TransportDst{Value: 0, Mask: 0xfc00}), openflow.Goto(40))
	add(30, match(openflow.TCP6, openflow.TransportDst{Value: 0x50, Mask: 0xffff}), openflow.Goto(40))
	add(40, match(openflow.ConjID(77), openflow.IP), openflow.Goto(50))
	add(20, match(openflow.CTState{Set: openflow.CTTracked | openflow.CTNew}, openflow.IP), openflow.Goto(25))
	add(20, match(openflow.CTState{Set: openflow.CTTracked | openflow.CTEstablished | openflow.CTReply, Clear: openflow.CTNew}), openflow.Goto(25))
	add(20, match(openflow.CTState{Set: openflow.CTTracked | openflow.CTInvalid | openflow.CTRelated}), openflow.Drop{})
	add(20, match(openflow.CTState{Set: openflow.CTTracked}, openflow.CTMark{Value: 0, Mask: 2}), openflow.Goto(25))
	add(20, match(openflow.CTState{Set: openflow.CTTracked}, openflow.CTMark{Value: 2, Mask: 2}), openflow.Goto(25))
	add(20, match(openflow.CTMark{Value: 0x12345678, Mask: 0xffffffff}), openflow.Goto(25))
	add(40, match(openflow.Reg{N: 0, Value: 1, Mask: 1}), openflow.Goto(50))
	add(27, match(openflow.Reg{N: 3, Value: 0xe3f13f, Mask: 0xffffffff}, openflow.TCP, openflow.HostDst(addr("10.96.0.10")), openflow.PortDst(80)), openflow.Goto(30))
	add(27, match(openflow.Reg{N: 2, Value: 0, Mask: 0xffffffff}), openflow.Goto(30))
	add(27, match(openflow.Reg{N: 15, Value: 0xf0, Mask: 0xf0}), openflow.Goto(30))
	add(0, match(openflow.IP, openflow.TunnelSrc(addr("172.29.3.2")), openflow.HostDst(addr("10.244.1.12"))), openflow.Goto(10))
	add(0, match(openflow.IPv6, openflow.TunnelSrc(addr("fd00:172:29::3")), openflow.HostDst(addr("fd00::12"))), openflow.Goto(10))
	// Conjunctions: one clause, several.
	flows = append(flows,
		conjFlow(40, 30000, c, match(openflow.IP, openflow.IPSrc(prefix("10.2.0.0/16"))), openflow.Conjunction{ID: 77, K: 1, N: 2}),
		conjFlow(40, 30000, c, match(openflow.IP, openflow.HostDst(addr("10.1.1.10"))), openflow.Conjunction{ID: 77, K: 2, N: 2}, openflow.Conjunction{ID: 4294967295, K: 3, N: 3}))
	// Actions.
	add(60, match(openflow.IP, openflow.HostDst(addr("10.1.1.1"))), openflow.Output(12))
	add(60, match(openflow.IP, openflow.HostDst(addr("10.1.1.2"))), openflow.Output(openflow.PortLocal))
	add(60, match(openflow.IP, openflow.HostDst(addr("10.1.1.3"))), openflow.OutputInPort{})
	add(60, match(openflow.IP, openflow.HostDst(addr("10.1.1.4"))), openflow.SetEthDst(mac), openflow.Output(4))
	add(0, match(openflow.IP, openflow.InPort(9)), openflow.SetIPSrc(addr("169.254.123.253")), openflow.SetIPDst(addr("10.244.1.12")), openflow.Goto(10))
	add(0, match(openflow.IPv6, openflow.InPort(9)), openflow.SetIPSrc(addr("fd69::fffd")), openflow.SetIPDst(addr("fd00::12")), openflow.Goto(10))
	add(60, match(openflow.IP, openflow.HostDst(addr("10.1.2.0"))), openflow.SetTunnelSrc(addr("172.29.1.2")), openflow.SetTunnelDst(addr("172.29.3.2")), openflow.Output(4096))
	add(60, match(openflow.IPv6, openflow.HostDst(addr("fd00::2:0"))), openflow.SetTunnelSrc(addr("fd00:172:29::1")), openflow.SetTunnelDst(addr("fd00:172:29::3")), openflow.Output(4096))
	add(25, match(openflow.IP), openflow.SetReg{N: 0, Value: 1, Mask: 1}, openflow.SetReg{N: 3, Value: 0, Mask: 0xffffffff}, openflow.SetReg{N: 2, Value: 0xe3f13f, Mask: 0xffffffff}, openflow.Resubmit(26), openflow.Goto(27))
	add(10, match(openflow.IP), openflow.CT{HasTable: true, Table: 20, Zone: 64000, NAT: true})
	add(10, match(openflow.IPv6), openflow.CT{HasTable: true, Table: 20, Zone: 7})
	add(50, match(openflow.IP), openflow.CT{Commit: true, Zone: 64000}, openflow.Goto(60))
	add(50, match(openflow.IPv6), openflow.CT{Commit: true, Zone: 64000, SetMark: openflow.SetCTMark{Value: 0, Mask: 2}}, openflow.Goto(60))
	add(50, match(openflow.IP, openflow.HostDst(addr("10.1.1.20"))), openflow.CT{Commit: true, SetMark: openflow.SetCTMark{Value: 2, Mask: 2}}, openflow.Goto(60))
	add(27, match(openflow.TCP, openflow.HostDst(addr("10.96.0.11")), openflow.PortDst(80)),
		openflow.CT{Commit: true, HasTable: true, Table: 30, Zone: 64000, NATDst: netip.AddrPortFrom(addr("10.1.1.5"), 8080), SetMark: openflow.SetCTMark{Value: 2, Mask: 2}})
	add(27, match(openflow.TCP6, openflow.HostDst(addr("fd00::10")), openflow.PortDst(80)),
		openflow.CT{Commit: true, HasTable: true, Table: 30, Zone: 64000, NATDst: netip.AddrPortFrom(addr("fd00::5"), 8080)})
	add(25, match(openflow.TCP, openflow.HostDst(addr("10.96.0.12")), openflow.PortDst(443)), openflow.Multipath{Links: 3, DstReg: 3}, openflow.Resubmit(26), openflow.ToGroup(gid))
	for i, l := range []openflow.LearnClient{
		{Table: 26, IdleTimeout: 10800, Priority: 100, Cookie: svc.Learned(), Transport: openflow.TCP, ServiceIP: addr("10.96.204.127"), ServicePort: 80, LoadReg: 2, LoadValue: 0xe3f13f},
		{Table: 26, IdleTimeout: 65535, Priority: 100, Cookie: svc.Learned(), Transport: openflow.UDP6, ServiceIP: addr("fd00::204:127"), ServicePort: 53, LoadReg: 2, LoadValue: 1},
		{Table: 26, IdleTimeout: 30, Priority: 100, Cookie: svc.Learned(), Transport: openflow.SCTP, ServiceIP: addr("10.96.204.128"), ServicePort: 9, LoadReg: 3, LoadValue: 0x10},
	} {
		add(27, match(openflow.IPProtocol(l.ServiceIP.Is6()), openflow.Reg{N: 2, Value: uint32(i + 1), Mask: 0xffffffff}), l, openflow.Goto(30))
	}
	add(40, match(openflow.IP, openflow.HostDst(addr("10.1.1.9"))), openflow.Controller{Userdata: "deny x/a", MeterID: 0x4e0001})
	add(40, match(openflow.IPv6, openflow.HostDst(addr("fd00::9"))), openflow.Controller{Userdata: "\x00\xff{\"ns\":\"x\"}", MeterID: 0x4e0002}, openflow.Goto(50))
	add(70, match(), openflow.Drop{})
	flows = append(flows, fl(70, 0, c, match()))
	group := openflow.Group{ID: gid, Cookie: svc, Fields: "ip_src,ip_dst,tcp_src,tcp_dst", Buckets: []openflow.Bucket{
		{ID: 0, Actions: []openflow.Action{openflow.CT{Commit: true, HasTable: true, Table: 30, Zone: 64000, NATDst: netip.AddrPortFrom(addr("10.1.1.5"), 8080), SetMark: openflow.SetCTMark{Value: 2, Mask: 2}}}},
		{ID: 1, Actions: []openflow.Action{openflow.SetReg{N: 3, Value: 1, Mask: 0xffffffff}, openflow.Resubmit(27)}},
	}}
	return rendered{flows: flows, groups: []openflow.Group{group},
		meters: []Meter{{ID: 0x4e0001, Rate: 100, Burst: 20}, {ID: 0x4e0002, Rate: 50}}}
}

// TestInstalledEqualsRenderedEveryKind is the key test's hand-built half
// (the compiled half is TestInstalledEqualsRenderedCompiled): a flow of
// every Field and Action type, installed on a real ovs-vswitchd, dumps as
// exactly the text the typed values render.
func TestInstalledEqualsRenderedEveryKind(t *testing.T) {
	s := ovstest.Start(t)
	want := everyKind()
	n := checkInstalledEqualsRendered(t, s, "br-every", want)
	t.Logf("%d flows, %d groups installed and compared; kinds: %s", n, len(want.groups), kindsText(kindsOf(want.flows, want.groups)))
}

// checkInstalledEqualsRendered installs want (meters first) on a new
// bridge and asserts that every installed flow's table, priority, cookie,
// sorted match fields and actions, as ovs-ofctl dump-flows prints them,
// are the desired typed flow's (Match.Sorted, ActionsText), that every
// group dumps as Group.String, that nothing is stale or missing, and that
// a second Sync is a no-op. It returns the number of flows compared.
func checkInstalledEqualsRendered(t *testing.T, s *ovstest.Switch, bridge string, want rendered) int {
	t.Helper()
	ctx := context.Background()
	in := newBridge(t, s, bridge)
	if _, _, err := in.EnsureMeters(ctx, want.meters); err != nil {
		t.Fatal(err)
	}
	st, err := in.SyncAll(ctx, want.flows, want.groups)
	if err != nil {
		t.Fatalf("%s: install: %v", bridge, err)
	}
	desired := map[flowID]openflow.Flow{}
	for _, f := range want.flows {
		desired[flowID{f.Table, f.Priority, f.Match.Sorted()}] = f
	}
	if st.Added != len(desired) {
		t.Errorf("%s: installed %v, want %d added", bridge, st, len(desired))
	}
	installed, err := in.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[flowID]bool{}
	bad := 0
	report := func(format string, args ...any) {
		if bad++; bad <= 20 {
			t.Errorf(bridge+": "+format, args...)
		}
	}
	for _, h := range installed {
		k := flowID{h.Table, h.Priority, openflow.SortedFields(h.Match)}
		w, ok := desired[k]
		switch {
		case h.Stale:
			report("dumped flow read as stale: %s", h)
		case !ok:
			report("dumped flow %s\n  has no desired flow of its identity (its match text differs from every rendered one)", h)
		case h.Cookie != w.Cookie || h.Actions != w.ActionsText():
			report("OVS prints %s\n   we render %s", h, w)
		}
		seen[k] = true
	}
	for k, w := range desired {
		if !seen[k] {
			report("rendered flow %s\n  not dumped under its identity", w)
		}
	}
	if len(installed) != len(desired) {
		t.Errorf("%s: %d flows dumped, %d desired", bridge, len(installed), len(desired))
	}
	dumpedGroups, err := in.DumpGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range want.groups {
		if dumpedGroups[g.ID] != g.String() {
			report("group %d: OVS prints\n  %s\nwe render\n  %s", g.ID, dumpedGroups[g.ID], g)
		}
	}
	if len(dumpedGroups) != len(want.groups) {
		t.Errorf("%s: %d groups dumped, %d desired", bridge, len(dumpedGroups), len(want.groups))
	}
	st, err = in.SyncAll(ctx, want.flows, want.groups)
	if err != nil || st != (SyncStats{Unchanged: len(desired)}) {
		t.Errorf("%s: second Sync: %v, %v; want every flow unchanged, no mod", bridge, st, err)
	}
	return len(desired)
}

// kindsOf counts the Field and Action types (and protocol shorthands) a
// flow set uses, for the tests' logs.
func kindsOf(flows []openflow.Flow, groups []openflow.Group) map[string]int {
	kinds := map[string]int{}
	for _, f := range flows {
		for _, fd := range f.Match.Fields() {
			if p, ok := fd.(openflow.Protocol); ok {
				kinds["match "+p.String()]++
			} else {
				kinds[fmt.Sprintf("match %T", fd)]++
			}
		}
		if f.IsConjunction() {
			kinds["action openflow.Conjunction"]++
		}
		if f.Actions.IsDrop() {
			kinds["action (none: drop)"]++
		}
		for _, a := range f.Actions.List() {
			kinds[fmt.Sprintf("action %T", a)]++
		}
	}
	for _, g := range groups {
		for _, b := range g.Buckets {
			for _, a := range b.Actions {
				kinds[fmt.Sprintf("bucket %T", a)]++
			}
		}
	}
	return kinds
}

func kindsText(kinds map[string]int) string {
	names := make([]string, 0, len(kinds))
	for k, n := range kinds {
		names = append(names, fmt.Sprintf("%s:%d", strings.ReplaceAll(k, "openflow.", ""), n))
	}
	slices.Sort(names)
	return strings.Join(names, " ")
}
