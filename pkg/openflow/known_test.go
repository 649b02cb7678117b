package openflow

import (
	"net/netip"
	"strings"
	"testing"
)

// TestKnownFieldCoversEveryField: every name a Field renders is known, and
// names we never render (attributes, other fields) are not.
func TestKnownFieldCoversEveryField(t *testing.T) {
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	m := NewMatch(IP, InPort(1), EthSrc{1}, HostSrc(a("10.0.0.1")), HostDst(a("10.0.0.2")),
		ARPSenderIP(a("10.0.0.3")), ARPTargetIP(a("10.0.0.4")), ARPSenderMAC{2}, NDTarget(p("fe80::/10")),
		ICMPType(1), ICMPCode(2), PortDst(80), ConjID(5), CTState{Set: CTTracked}, CTMark{1, 1},
		Reg{0, 1, 1}, Reg{15, 1, 1}, TunnelSrc(a("10.0.0.5")), TunnelSrc(a("fd00::5")),
		HostSrc(a("fd00::1")), HostDst(a("fd00::2")))
	fields := strings.Split(m.String(), ",")
	for p := IP; p <= SCTP6; p++ {
		fields = append(fields, NewMatch(p).String())
	}
	for _, f := range fields {
		name, _, _ := strings.Cut(f, "=")
		if !KnownField(name) {
			t.Errorf("%q renders %q, which KnownField does not know", f, name)
		}
	}
	for _, name := range []string{"idle_timeout", "hard_timeout", "importance", "send_flow_rem", "reset_counts",
		"dl_dst", "tp_src", "reg16", "metadata", "pkt_mark", "tun_id", "rarp", "dl_type", "nw_proto", "", "ipv4"} {
		if KnownField(name) {
			t.Errorf("KnownField(%q) is true: we never render it", name)
		}
	}
}

// TestTransportDstZeroMasked: OVS prints a masked zero port as 0x0 (the
// flowsync key test found it: "sctp,tp_dst=0x0/0xfc00").
func TestTransportDstZeroMasked(t *testing.T) {
	for _, c := range []struct {
		t    TransportDst
		want string
	}{
		{TransportDst{0, 0xfc00}, "tp_dst=0x0/0xfc00"},
		{TransportDst{0x1000, 0xf000}, "tp_dst=0x1000/0xf000"},
		{TransportDst{0, 0xffff}, "tp_dst=0"},
		{PortDst(80), "tp_dst=80"},
	} {
		if got := NewMatch(c.t).String(); got != c.want {
			t.Errorf("%+v renders %q, want %q", c.t, got, c.want)
		}
	}
}
