package openflow

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
)

func TestRender(t *testing.T) {
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	mac := MAC{0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0c}
	for _, tc := range []struct {
		flow Flow
		want string
	}{
		{Flow{Table: 0, Priority: 0, Cookie: 0x4e01000000000001}, "table=0,priority=0,cookie=0x4e01000000000001 actions=drop"},
		{Flow{Table: 0, Priority: 100, Match: NewMatch(IP, InPort(12), EthSrc(mac), HostSrc(a("10.244.1.12")), HostDst(a("169.254.123.253"))),
			Actions: Do(SetIPDst(a("10.244.1.12")), Goto(10))},
			"table=0,priority=100,cookie=0x0000000000000000,ip,in_port=12,dl_src=0a:58:0a:f4:01:0c,nw_src=10.244.1.12,nw_dst=169.254.123.253 actions=set_field:10.244.1.12->ip_dst,goto_table:10"},
		{Flow{Table: 0, Priority: 100, Match: NewMatch(ARP, InPort(PortLocal), ARPSenderIP(a("10.0.0.1")), ARPSenderMAC(mac))}, "table=0,priority=100,cookie=0x0000000000000000,arp,in_port=LOCAL,arp_spa=10.0.0.1,arp_sha=0a:58:0a:f4:01:0c actions=drop"},
		{Flow{Table: 30, Priority: 30000, Match: NewMatch(IP, IPSrc(p("10.1.2.3/16"))), Actions: Conjoin([]Conjunction{{7, 1, 3}, {9, 2, 2}}...)}, "table=30,priority=30000,cookie=0x0000000000000000,ip,nw_src=10.1.0.0/16 actions=conjunction(7,1/3),conjunction(9,2/2)"},
		{Flow{Table: 30, Priority: 30000, Match: NewMatch(IP, IPSrc(p("0.0.0.0/0")))}, "table=30,priority=30000,cookie=0x0000000000000000,ip actions=drop"},
		{Flow{Table: 30, Priority: 30000, Match: NewMatch(TCP6, TransportDst{0x1000, 0xf000})}, "table=30,priority=30000,cookie=0x0000000000000000,tcp6,tp_dst=0x1000/0xf000 actions=drop"},
		{Flow{Table: 20, Priority: 190, Match: NewMatch(CTState{Set: CTTracked | CTEstablished}, CTMark{0, 2})}, "table=20,priority=190,cookie=0x0000000000000000,ct_state=+est+trk,ct_mark=0/0x2 actions=drop"},
		{Flow{Table: 60, Match: NewMatch(IPv6, HostDst(a("fd00::1"))), Actions: Do(SetTunnelSrc(a("172.29.1.2")), SetTunnelDst(a("172.29.3.2")), Output(4096))}, "table=60,priority=0,cookie=0x0000000000000000,ipv6,ipv6_dst=fd00::1 actions=set_field:172.29.1.2->tun_src,set_field:172.29.3.2->tun_dst,output:4096"},
		{Flow{Table: 10, Priority: 100, Match: NewMatch(IP), Actions: Do(CT{HasTable: true, Table: 20, Zone: 64000, NAT: true})}, "table=10,priority=100,cookie=0x0000000000000000,ip actions=ct(table=20,zone=64000,nat)"},
		{Flow{Table: 50, Priority: 100, Match: NewMatch(IPv6), Actions: Do(CT{Commit: true, Zone: 64000, SetMark: SetCTMark{0, 2}}, Goto(60))}, "table=50,priority=100,cookie=0x0000000000000000,ipv6 actions=ct(commit,zone=64000,exec(set_field:0/0x2->ct_mark)),goto_table:60"},
		{Flow{Table: 27, Priority: 100, Match: NewMatch(Reg{3, 1, 0xffffffff}, TCP6, HostDst(a("fd00::10")), PortDst(80)),
			Actions: Do(CT{Commit: true, HasTable: true, Table: 30, Zone: 64000, NATDst: netip.AddrPortFrom(a("fd00::5"), 8080), SetMark: SetCTMark{2, 2}})},
			"table=27,priority=100,cookie=0x0000000000000000,reg3=0x1,tcp6,ipv6_dst=fd00::10,tp_dst=80 actions=ct(commit,table=30,zone=64000,nat(dst=[fd00::5]:8080),exec(set_field:0x2/0x2->ct_mark))"},
		{Flow{Match: NewMatch(Reg{0, 1, 1}), Actions: Do(SetReg{0, 1, 1}, Resubmit(26), Multipath{Links: 3, DstReg: 3}, ToGroup(7), OutputInPort{}, Output(PortLocal), SetEthDst(mac))},
			"table=0,priority=0,cookie=0x0000000000000000,reg0=0x1/0x1 actions=set_field:0x1/0x1->reg0,resubmit(,26),multipath(symmetric_l3l4+udp,0,hrw,3,0,NXM_NX_REG3[]),group:7,IN_PORT,LOCAL,set_field:0a:58:0a:f4:01:0c->eth_dst"},
		{Flow{Actions: Do(LearnClient{Table: 26, IdleTimeout: 3600, Priority: 100, Cookie: 0x4c050082f01a372a, Transport: TCP, ServiceIP: a("10.96.204.127"), ServicePort: 80, LoadReg: 2, LoadValue: 0xe3f13f})},
			"table=0,priority=0,cookie=0x0000000000000000 actions=learn(table=26,idle_timeout=3600,priority=100,cookie=0x4c050082f01a372a,eth_type=0x800,nw_proto=6,NXM_OF_IP_SRC[],ip_dst=10.96.204.127,tcp_dst=80,load:0xe3f13f->NXM_NX_REG2[])"},
		{Flow{Match: NewMatch(ICMP6, InPort(3), NDTarget(p("fe80::/10")), ICMPType(136), ICMPCode(0), ConjID(5), TunnelSrc(a("fd00::2"))), Actions: Do(Controller{Userdata: "ab", MeterID: 2})},
			"table=0,priority=0,cookie=0x0000000000000000,icmp6,in_port=3,nd_target=fe80::/10,icmp_type=136,icmp_code=0,conj_id=5,tun_ipv6_src=fd00::2 actions=controller(userdata=61.62,meter_id=2)"},
	} {
		if got := tc.flow.String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

func TestMatchSorted(t *testing.T) {
	a := netip.MustParseAddr
	m1 := NewMatch(IP, HostSrc(a("10.0.0.1")), HostDst(a("10.0.0.1")), InPort(10))
	m2 := NewMatch(IP, InPort(10), HostDst(a("10.0.0.1")), HostSrc(a("10.0.0.1")))
	if m1.String() == m2.String() || m1.Sorted() != m2.Sorted() {
		t.Fatalf("sorted %q vs %q", m1.Sorted(), m2.Sorted())
	}
	if got := SortedFields("ip,in_port=10,nw_src=10.0.0.1,nw_dst=10.0.0.1"); got != m1.Sorted() {
		t.Fatalf("SortedFields %q, want %q", got, m1.Sorted())
	}
	if id, ok := NewMatch(ConjID(42)).ConjID(); !ok || id != 42 {
		t.Fatalf("ConjID %d %v", id, ok)
	}
}

// The appenders written for speed render what the standard library does.
func TestAppendersMatchStandardText(t *testing.T) {
	for _, c := range []Cookie{0, 1, 0x4e01000000000001, 0xffffffffffffffff, 0x00ab00cd00ef0012} {
		if got, want := c.String(), fmt.Sprintf("0x%016x", uint64(c)); got != want {
			t.Errorf("Cookie(%d).String() = %q, want %q", uint64(c), got, want)
		}
	}
	for _, m := range []MAC{{}, {0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0c}, {0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa}} {
		if got, want := m.String(), net.HardwareAddr(m[:]).String(); got != want {
			t.Errorf("MAC %v: String() = %q, want %q", m[:], got, want)
		}
	}
	g := Group{ID: GroupIDOurs | 7, Fields: "ip_src,ip_dst,tcp_src,tcp_dst", Buckets: []Bucket{
		{ID: 1, Actions: []Action{CT{Commit: true, HasTable: true, Table: 30, Zone: 64000, NATDst: netip.MustParseAddrPort("10.1.0.38:6379"), SetMark: SetCTMark{2, 2}}}},
		{ID: 2, Actions: []Action{SetEthDst{0x0a, 0x58, 0, 0, 0, 1}, Output(3)}},
	}}
	want := "group_id=1308622855,type=select,selection_method=hash,fields(ip_src,ip_dst,tcp_src,tcp_dst)," +
		"bucket=bucket_id:1,actions=ct(commit,table=30,zone=64000,nat(dst=10.1.0.38:6379),exec(set_field:0x2/0x2->ct_mark))," +
		"bucket=bucket_id:2,actions=set_field:0a:58:00:00:00:01->eth_dst,output:3"
	if got := string(g.Append([]byte("x"))); got != "x"+want {
		t.Errorf("Group.Append =\n%s\nwant\n%s", got, "x"+want)
	}
}
