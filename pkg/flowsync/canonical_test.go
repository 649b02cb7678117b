package flowsync

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// canonCases are flow texts (match, actions) with the canonical form we
// expect; TestCanonicalMatchesOVS checks every one against a real switch.
var canonCases = []struct {
	match, actions         string
	wantMatch, wantActions string
}{
	// Host masks disappear, /0 drops the field, addresses are masked.
	{"ip,nw_src=10.0.0.1/32", "output:LOCAL", "ip,nw_src=10.0.0.1", "LOCAL"},
	{"ip,nw_src=10.0.0.0/0", "output:65534", "ip", "LOCAL"},
	{"ip,nw_src=10.1.2.3/8", "output:7", "ip,nw_src=10.0.0.0/8", "output:7"},
	{"ip,nw_src=10.1.0.0/255.0.255.0", "7", "ip,nw_src=10.0.0.0/255.0.255.0", "output:7"},
	{"ip,nw_dst=10.1.0.0/255.255.0.0", "output:4294967294", "ip,nw_dst=10.1.0.0/16", "LOCAL"},
	{"ip,nw_dst=0.0.0.0/32", "drop", "ip,nw_dst=0.0.0.0", "drop"},
	{"ipv6,ipv6_src=fd00:10:1:0:0:0:1:1/128", "IN_PORT", "ipv6,ipv6_src=fd00:10:1::1:1", "IN_PORT"},
	{"ipv6,ipv6_src=FE80::1/10", "output:in_port", "ipv6,ipv6_src=fe80::/10", "IN_PORT"},
	{"ipv6,ipv6_src=::/0", "", "ipv6", "drop"},
	{"ipv6,ipv6_src=fd00::/ffff:ffff::", "drop", "ipv6,ipv6_src=fd00::/32", "drop"},
	{"ipv6,ipv6_dst=fd00:ff::/ffff:0:ffff::", "drop", "ipv6,ipv6_dst=fd00::/ffff:0:ffff::", "drop"},
	{"ipv6,ipv6_src=::ffff:1.2.3.4,ipv6_dst=1:0:2:3:4:5:6:7", "drop", "ipv6,ipv6_dst=1:0:2:3:4:5:6:7,ipv6_src=::ffff:1.2.3.4", "drop"},
	{"icmp6,icmp_type=135,icmp_code=0,nd_target=fd00::0001", "goto_table:60", "icmp6,icmp_code=0,icmp_type=135,nd_target=fd00::1", "goto_table:60"},
	{"arp,arp_tpa=10.0.0.1/32,arp_op=1", "drop", "arp,arp_op=1,arp_tpa=10.0.0.1", "drop"},
	{"ip_src=1.2.3.4,ip_dst=1.2.3.0/24,dl_type=0x0800", "drop", "ip,nw_dst=1.2.3.0/24,nw_src=1.2.3.4", "drop"},
	// Protocols: shorthands, dl_type/nw_proto, aliases of transport ports.
	{"tcp6,tp_dst=0x50/0xfff0", "conjunction(5, 1/2),conjunction(7,2/2)", "tcp6,tp_dst=0x50/0xfff0", "conjunction(5,1/2),conjunction(7,2/2)"},
	{"tcp,tp_dst=0x50/0xffff", "drop", "tcp,tp_dst=80", "drop"},
	{"tcp,tp_dst=0x0050", "drop", "tcp,tp_dst=80", "drop"},
	{"tcp,nw_src=10.0.0.0/24,tp_dst=0/0", "drop", "tcp,nw_src=10.0.0.0/24", "drop"},
	{"sctp,sctp_dst=80", "drop", "sctp,tp_dst=80", "drop"},
	{"udp6,udp_dst=0x0/0xfc00,ipv6_dst=fd00::/64", "drop", "udp6,ipv6_dst=fd00::/64,tp_dst=0x0/0xfc00", "drop"},
	{"tp_dst=22,tcp", "drop", "tcp,tp_dst=22", "drop"},
	{"ip,nw_proto=6", "drop", "tcp", "drop"},
	{"ip,nw_proto=17", "drop", "udp", "drop"},
	{"ipv6,nw_proto=132", "drop", "sctp6", "drop"},
	{"dl_type=0x86dd,nw_proto=58", "drop", "icmp6", "drop"},
	{"dl_type=0x0800", "drop", "ip", "drop"},
	{"ip,nw_proto=47", "drop", "ip,nw_proto=47", "drop"},
	{"icmp,icmp_type=8", "drop", "icmp,icmp_type=8", "drop"},
	{"ip,ip_dscp=10,nw_ttl=5", "drop", "ip,nw_tos=40,nw_ttl=5", "drop"},
	// Metadata fields.
	{"ct_state=+trk+new,ip", "goto_table:30", "ip,ct_state=+new+trk", "goto_table:30"},
	{"ct_state=-est+trk", "drop", "ct_state=-est+trk", "drop"},
	{"ct_state=0x21/0x21", "drop", "ct_state=+new+trk", "drop"},
	{"ct_state=0/0x21", "drop", "ct_state=-new-trk", "drop"},
	{"ct_state=+trk,ct_state=+new", "drop", "ct_state=+new", "drop"},
	{"conj_id=0x10", "goto_table:2", "conj_id=16", "goto_table:2"},
	{"reg0=0x1/0x1", "set_field:0x1/0x1->reg0", "reg0=0x1/0x1", "set_field:0x1/0x1->reg0"},
	{"reg0=0x1/0xffffffff", "set_field:1/1->reg0", "reg0=0x1", "set_field:0x1/0x1->reg0"},
	{"reg0=1", "set_field:1->reg0", "reg0=0x1", "set_field:0x1->reg0"},
	{"reg0=0,reg1=0/0x1,metadata=0,reg2=0x5/0", "controller", "metadata=0,reg0=0,reg1=0/0x1", "CONTROLLER:65535"},
	{"ip,reg3=0x10/0xf0,metadata=0x5,ct_mark=0x1/0x1,pkt_mark=3", "drop", "ip,ct_mark=0x1/0x1,metadata=0x5,pkt_mark=0x3,reg3=0x10/0xf0", "drop"},
	{"in_port=65534,dl_src=0A:58:0A:F4:01:0C", "output:10", "dl_src=0a:58:0a:f4:01:0c,in_port=LOCAL", "output:10"},
	{"in_port=local,dl_src=AA:BB:CC:00:00:01/00:00:00:00:00:00", "output:local", "in_port=LOCAL", "LOCAL"},
	{"dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,dl_src=aa:bb:cc:dd:ee:ff/ff:ff:ff:ff:ff:ff", "drop", "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,dl_src=aa:bb:cc:dd:ee:ff", "drop"},
	{"tcp,tcp_flags=+syn-ack", "drop", "tcp,tcp_flags=+syn-ack", "drop"},
	{"", "drop", "", "drop"},
	// Actions.
	{"ip", "ct(nat,zone=1,commit,table=3,exec(set_field:1->ct_mark))", "ip", "ct(commit,table=3,zone=1,nat,exec(set_field:0x1->ct_mark))"},
	{"ip", "ct(zone=64000,table=20)", "ip", "ct(table=20,zone=64000)"},
	{"ip", "ct(zone=64000,commit),goto_table:60", "ip", "ct(commit,zone=64000),goto_table:60"},
	{"ip", "ct(zone=0,table=5)", "ip", "ct(table=5)"},
	{"ip", "ct()", "ip", "ct()"},
	{"ip", "ct(commit,zone=NXM_NX_REG6[0..15],exec(load:1->NXM_NX_CT_MARK[]),table=7)", "ip", "ct(commit,table=7,zone=NXM_NX_REG6[0..15],exec(set_field:0x1->ct_mark))"},
	{"ip", "NORMAL", "ip", "NORMAL"},
	{"ip", "resubmit:3", "ip", "resubmit:3"},
	{"ip", "resubmit(,3),output:in_port,FLOOD,all", "ip", "resubmit(,3),IN_PORT,FLOOD,ALL"},
	{"ip", "load:0x1->NXM_NX_REG0[0],resubmit(,20)", "ip", "set_field:0x1/0x1->reg0,resubmit(,20)"},
	{"ip", "load:0xff->NXM_NX_REG2[8..15],load:0xffffffff->NXM_NX_REG3[],load:2->reg4[],load:1->reg5[31]", "ip",
		"set_field:0xff00/0xff00->reg2,set_field:0xffffffff->reg3,set_field:0x2->reg4,set_field:0x80000000/0x80000000->reg5"},
	{"ip", "set_field:0x0/0xff->reg6,move:NXM_NX_REG0[]->NXM_NX_REG1[]", "ip", "set_field:0/0xff->reg6,move:NXM_NX_REG0[]->NXM_NX_REG1[]"},
	{"ip", "set_field:1.2.3.4->nw_src,set_field:aa:BB:cc:dd:ee:ff->dl_dst", "ip", "set_field:1.2.3.4->ip_src,set_field:aa:bb:cc:dd:ee:ff->eth_dst"},
	{"tcp", "mod_nw_src:1.2.3.4,mod_dl_dst:aa:bb:cc:dd:ee:ff,mod_dl_src:0A:00:00:00:00:01", "tcp", "set_field:1.2.3.4->ip_src,set_field:aa:bb:cc:dd:ee:ff->eth_dst,set_field:0a:00:00:00:00:01->eth_src"},
	{"ip", "dec_ttl,goto_table:16", "ip", "dec_ttl,goto_table:16"},
	{"ipv4", "TABLE", "ip", "TABLE"},
	{"eth_type=0x0800,ip_proto=6", "output:LOCAL,output:IN_PORT", "tcp", "LOCAL,IN_PORT"},
	{"rarp", "drop", "rarp", "drop"},
	{"dl_type=0x88cc", "drop", "dl_type=0x88cc", "drop"},
	{"icmp6,icmp_type=135,nd_sll=AA:00:00:00:00:01", "drop", "icmp6,icmp_type=135,nd_sll=aa:00:00:00:00:01", "drop"},
	{"ip,nw_ecn=1", "mod_nw_dst:1.2.3.4", "ip,nw_ecn=1", "set_field:1.2.3.4->ip_dst"},
	{"tunnel_id=5", "set_field:5->tunnel_id", "tun_id=0x5", "set_field:0x5->tun_id"},
	{"metadata=0xffffffffffffffff", "load:1->NXM_NX_TUN_ID[0..3],load:1->OXM_OF_METADATA[],load:3->NXM_NX_PKT_MARK[4..5]", "metadata=0xffffffffffffffff",
		"set_field:0x1/0xf->tun_id,set_field:0x1->metadata,set_field:0x30/0x30->pkt_mark"},
	{"ip", "ct(commit,exec(load:0x3->NXM_NX_CT_MARK[0..1]))", "ip", "ct(commit,exec(set_field:0x3/0x3->ct_mark))"},
	{"ip", "ct(commit,nat(src=1.1.1.1))", "ip", "ct(commit,nat(src=1.1.1.1))"},
	{"ip", "ct(zone=0x10,table=5)", "ip", "ct(table=5,zone=16)"},
	{"tcp", "ct(alg=ftp,table=1,force,commit)", "tcp", "ct(commit,force,table=1,alg=ftp)"},
}

func TestCanonicalCases(t *testing.T) {
	for _, c := range canonCases {
		f := Canonical(openflow.Flow{Table: 1, Priority: 5, Match: c.match, Actions: c.actions})
		if f.Match != c.wantMatch || f.Actions != c.wantActions {
			t.Errorf("Canonical(%q actions=%q)\n got %q actions=%q\nwant %q actions=%q",
				c.match, c.actions, f.Match, f.Actions, c.wantMatch, c.wantActions)
		}
		// Idempotent.
		if g := Canonical(f); g != f {
			t.Errorf("Canonical not idempotent: %q actions=%q → %q actions=%q", f.Match, f.Actions, g.Match, g.Actions)
		}
	}
}

// TestCanonicalMatchesOVS installs every case on a real switch and checks
// that the dumped flow is exactly the expected canonical form: each
// normalization rule is OVS's behaviour, not our guess. It also installs
// the canonical texts themselves (they must be valid ovs-ofctl input and
// come back unchanged).
func TestCanonicalMatchesOVS(t *testing.T) {
	s := ovstest.Start(t)
	ctx := context.Background()
	for _, br := range []string{"br-given", "br-canon"} {
		if err := s.AddBridge(br); err != nil {
			t.Fatal(err)
		}
		in := &Installer{Bridge: br, RunDir: s.Dir}
		var mods []Mod
		want := map[uint16]openflow.Flow{}
		for i, c := range canonCases {
			f := openflow.Flow{Table: 1, Priority: uint16(100 + i), Cookie: openflow.Ours | openflow.Cookie(i),
				Match: c.match, Actions: c.actions}
			want[f.Priority] = openflow.Flow{Table: 1, Priority: f.Priority, Cookie: f.Cookie, Match: c.wantMatch, Actions: c.wantActions}
			if br == "br-canon" {
				f = Canonical(f)
			}
			mods = append(mods, Mod{Add, f})
		}
		if err := in.Apply(ctx, mods); err != nil {
			t.Fatalf("%s: %v", br, err)
		}
		got, err := in.Dump(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("%s: dumped %d flows, installed %d", br, len(got), len(want))
		}
		for _, g := range got {
			w, ok := want[g.Priority]
			if !ok {
				t.Errorf("%s: unexpected flow %s", br, g)
				continue
			}
			if g != w {
				c := canonCases[g.Priority-100]
				t.Errorf("%s: %q actions=%q\nOVS prints %q actions=%q\n   we say %q actions=%q",
					br, c.match, c.actions, g.Match, g.Actions, w.Match, w.Actions)
			}
		}
	}
}

func TestParseFlow(t *testing.T) {
	for _, c := range []struct {
		line string
		want openflow.Flow
	}{
		{" cookie=0x4e00000000000007, priority=0 actions=drop",
			openflow.Flow{Cookie: 0x4e00000000000007, Actions: "drop"}},
		{" cookie=0x4e00000000000007, table=3, actions=drop",
			openflow.Flow{Table: 3, Priority: 32768, Cookie: 0x4e00000000000007, Actions: "drop"}},
		{" cookie=0x4e00000000000002, table=20, priority=150,ct_state=+new+trk,ip,nw_src=10.1.1.1,nw_dst=10.1.1.1 actions=goto_table:50",
			openflow.Flow{Table: 20, Priority: 150, Cookie: 0x4e00000000000002, Match: "ip,ct_state=+new+trk,nw_dst=10.1.1.1,nw_src=10.1.1.1", Actions: "goto_table:50"}},
		{" cookie=0x4e00000000000007, duration=0.017s, table=3, n_packets=4, n_bytes=400, idle_timeout=60, hard_timeout=70, send_flow_rem reset_counts importance=5, idle_age=0, priority=6,ip actions=output:3",
			openflow.Flow{Table: 3, Priority: 6, Cookie: 0x4e00000000000007,
				Match: "ip,hard_timeout=70,idle_timeout=60,importance=5,reset_counts,send_flow_rem", Actions: "output:3"}},
	} {
		got, err := ParseFlow(c.line)
		if err != nil || got != c.want {
			t.Errorf("ParseFlow(%q)\n got %+v, %v\nwant %+v", c.line, got, err, c.want)
		}
	}
	if _, err := ParseFlow(" cookie=0x1, table=3, priority=5"); err == nil {
		t.Error("ParseFlow accepted a line without actions")
	}
}

func TestModString(t *testing.T) {
	f := openflow.Flow{Table: 40, Priority: 30000, Cookie: 0x4e03000000000001, Match: "ip,nw_dst=10.1.1.1,idle_timeout=5", Actions: "conjunction(7,1/2)"}
	if got, want := (Mod{Add, f}).String(), "flow add "+f.String(); got != want {
		t.Errorf("add line %q, want %q", got, want)
	}
	want := "flow delete_strict table=40,priority=30000,cookie=0x4e00000000000000/0xff00000000000000,ip,nw_dst=10.1.1.1"
	if got := (Mod{Delete, f}).String(); got != want {
		t.Errorf("delete line %q, want %q", got, want)
	}
	f.Match = ""
	want = "flow delete_strict table=40,priority=30000,cookie=0x4e00000000000000/0xff00000000000000"
	if got := (Mod{Delete, f}).String(); got != want {
		t.Errorf("delete line %q, want %q", got, want)
	}
}

func TestDiff(t *testing.T) {
	c1, c2 := openflow.Ours|1, openflow.Ours|2
	fl := func(table uint8, prio uint16, c openflow.Cookie, match, actions string) openflow.Flow {
		return openflow.Flow{Table: table, Priority: prio, Cookie: c, Match: match, Actions: actions}
	}
	installed := []openflow.Flow{
		fl(0, 0, c1, "", "drop"),                                        // unchanged
		fl(10, 100, c1, "ip", "ct(table=20,zone=64000)"),                // unchanged despite text
		fl(20, 150, c1, "ct_state=+new+trk,ip,nw_src=10.0.0.1", "drop"), // actions change
		fl(30, 5, c1, "tcp,tp_dst=80", "drop"),                          // cookie changes
		fl(40, 5, c1, "udp", "drop"),                                    // deleted
		fl(40, 6, c2, "udp", "drop"),                                    // deleted
	}
	desired := []openflow.Flow{
		fl(60, 0, c1, "", "output:LOCAL"),                                           // new
		fl(0, 0, c1, "", ""),                                                        // = drop
		fl(10, 100, c1, "ip", "ct(zone=64000,table=20)"),                            // same after Canonical
		fl(20, 150, c1, "ip,ct_state=+trk+new,nw_src=10.0.0.1/32", "goto_table:50"), // replace
		fl(30, 5, c2, "tcp,tcp_dst=80", "drop"),                                     // replace (cookie)
		fl(40, 7, c1, "udp", "drop"),                                                // new
	}
	got := Diff(desired, installed)
	var lines []string
	for _, m := range got {
		lines = append(lines, m.String())
	}
	want := []string{
		"flow delete_strict table=40,priority=6,cookie=0x4e00000000000000/0xff00000000000000,udp",
		"flow delete_strict table=40,priority=5,cookie=0x4e00000000000000/0xff00000000000000,udp",
		"flow add table=20,priority=150,cookie=0x4e00000000000001,ip,ct_state=+trk+new,nw_src=10.0.0.1/32 actions=goto_table:50",
		"flow add table=30,priority=5,cookie=0x4e00000000000002,tcp,tcp_dst=80 actions=drop",
		"flow add table=40,priority=7,cookie=0x4e00000000000001,udp actions=drop",
		"flow add table=60,priority=0,cookie=0x4e00000000000001 actions=output:LOCAL",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("Diff:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	_, st := diff(desired, installed, false)
	if st != (SyncStats{Added: 2, Replaced: 2, Deleted: 2, Unchanged: 2}) {
		t.Errorf("stats %+v", st)
	}
	if d := Diff(installed, installed); len(d) != 0 {
		t.Errorf("Diff(x, x) = %v", d)
	}
	// A later duplicate of one identity wins.
	d := Diff([]openflow.Flow{fl(1, 1, c1, "ip", "drop"), fl(1, 1, c1, "ip", "output:3")}, nil)
	if len(d) != 1 || d[0].Flow.Actions != "output:3" {
		t.Errorf("duplicate identity: %v", d)
	}
}

func ExampleCanonical() {
	f := Canonical(openflow.Flow{Table: 20, Priority: 150,
		Match: "ip,ct_state=+trk+new,nw_src=10.1.1.1/32", Actions: "ct(zone=64000,commit),output:65534"})
	fmt.Println(f.Match, "actions="+f.Actions)
	// Output: ip,ct_state=+new+trk,nw_src=10.1.1.1 actions=ct(commit,zone=64000),LOCAL
}
