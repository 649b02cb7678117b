// Evaluates github.com/digitalocean/go-openvswitch's ovs.Flow/Match/Action
// as the typed flow model of ovs-netpol (issue 11): each case prints what
// the library makes of one of our flows and what we need.
package main

import (
	"fmt"
	"net"

	"github.com/digitalocean/go-openvswitch/ovs"
)

func show(name string, f *ovs.Flow, want string) {
	b, err := f.MarshalText()
	fmt.Printf("== %s\n  library: %s (err: %v)\n  needed:  %s\n", name, b, err, want)
}

func main() {
	mac, _ := net.ParseMAC("0a:58:0a:f4:01:0c")
	// 1. A port-security flow: renders, but in another layout (priority
	// first, table and an idle_timeout=0 after the match), so no golden
	// line can come out byte-identical; goto_table has no action type.
	show("port security (table 0)", &ovs.Flow{
		Table: 0, Priority: 100, Cookie: 0x4e02000000000001, Protocol: ovs.ProtocolIPv4, InPort: 12,
		Matches: []ovs.Match{ovs.DataLinkSource(mac.String()), ovs.NetworkSource("10.244.1.12")},
		Actions: []ovs.Action{ovs.Resubmit(0, 10)},
	}, "table=0,priority=100,cookie=0x4e02000000000001,ip,in_port=12,dl_src=0a:58:0a:f4:01:0c,nw_src=10.244.1.12 actions=goto_table:10")

	// 2. ct_state flags are kept in the order given: OVS prints +est+trk,
	// so the desired text would need canonicalizing again.
	show("ct_state order (table 20)", &ovs.Flow{
		Table: 20, Priority: 190,
		Matches: []ovs.Match{ovs.ConnectionTrackingState(ovs.SetState(ovs.CTStateTracked), ovs.SetState(ovs.CTStateEstablished))},
		Actions: []ovs.Action{ovs.Drop()},
	}, "table=20,priority=190,...,ct_state=+est+trk actions=...")

	// 3. ct() is one untyped string: commit/table/zone/nat/exec cannot be
	// built or compared as values.
	show("ct is raw text (table 10)", &ovs.Flow{
		Table: 10, Priority: 100, Protocol: ovs.ProtocolIPv4,
		Actions: []ovs.Action{ovs.ConnectionTracking("zone=64000,nat,table=20")},
	}, "ct(table=20,zone=64000,nat) — OVS's order, from typed fields")

	// 4. Conjunction merging on values: the conjunction action's ID,
	// clause and size are unexported; the only way back is its text.
	c := ovs.Conjunction(7, 1, 3)
	t, _ := c.MarshalText()
	fmt.Printf("== conjunction merge\n  library: %T with unexported fields; text %s; GoString %s\n  needed:  Conjunction{ID,K,N} readable and comparable (merge sorts by ID)\n", c, t, c.GoString())

	// 5. Equality: matches and actions are pointers behind interfaces, so
	// two identical flows' slices compare unequal with ==.
	a1, a2 := ovs.NetworkSource("10.0.0.1"), ovs.NetworkSource("10.0.0.1")
	fmt.Printf("== equality\n  library: NetworkSource(\"10.0.0.1\") == NetworkSource(\"10.0.0.1\"): %v\n  needed:  value equality (FlowSet's 'touched' check)\n", a1 == a2)

	// 6. Our actions without a type: goto_table, group:N, controller(userdata,meter_id), set_field to tun_src/ct_mark typed.
	var f ovs.Flow
	err := f.UnmarshalText([]byte("cookie=0x4e02000000000001, table=0, priority=100,ip,in_port=12,nw_src=10.244.1.12 actions=goto_table:10"))
	fmt.Printf("== parsing a dump line with goto_table\n  library: %v\n", err)
	err = f.UnmarshalText([]byte("cookie=0x4e05000000000001, table=30, priority=20000,in_port=12 actions=controller(userdata=6f.76,meter_id=1)"))
	fmt.Printf("== parsing a dump line with controller(userdata,meter_id)\n  library: %v\n", err)
	err = f.UnmarshalText([]byte("cookie=0x4e05000000000001, table=25, priority=100,tcp,nw_dst=10.96.0.10,tp_dst=80 actions=group:1308625190"))
	fmt.Printf("== parsing a dump line with group:N\n  library: %v\n", err)
}
