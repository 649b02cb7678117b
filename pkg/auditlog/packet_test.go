package auditlog

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// frame builds an Ethernet frame: optional VLAN tag, IPv4 or IPv6 (with
// extension headers ext, each given as its next-header value and 8 bytes),
// and the first bytes of a transport header with the ports.
func frame(src, dst netip.Addr, proto uint8, sport, dport uint16, vlan bool, fragOffset uint16, ext ...[]byte) []byte {
	b := make([]byte, 12)
	b[0], b[6] = 0x0a, 0x0a
	if vlan {
		b = binary.BigEndian.AppendUint16(b, ethVLAN)
		b = binary.BigEndian.AppendUint16(b, 7)
	}
	l4 := binary.BigEndian.AppendUint16(nil, sport)
	l4 = binary.BigEndian.AppendUint16(l4, dport)
	l4 = append(l4, make([]byte, 16)...)
	if src.Is4() {
		b = binary.BigEndian.AppendUint16(b, ethIPv4)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:4], uint16(20+len(l4)))
		binary.BigEndian.PutUint16(ip[6:8], fragOffset)
		ip[8], ip[9] = 64, proto
		s, d := src.As4(), dst.As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		return append(append(b, ip...), l4...)
	}
	b = binary.BigEndian.AppendUint16(b, ethIPv6)
	ip := make([]byte, 40)
	ip[0] = 0x60
	next := proto
	var exts []byte
	// ext[i][0] is the header's own type; chain them.
	for i := len(ext) - 1; i >= 0; i-- {
		h := append([]byte(nil), ext[i][1:]...)
		h[0] = next
		next = ext[i][0]
		exts = append(h, exts...)
	}
	ip[6], ip[7] = next, 64
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(exts)+len(l4)))
	return append(append(append(b, ip...), exts...), l4...)
}

func TestDecodePacket(t *testing.T) {
	a4, b4 := netip.MustParseAddr("10.89.0.2"), netip.MustParseAddr("10.89.0.3")
	a6, b6 := netip.MustParseAddr("fd00:89::2"), netip.MustParseAddr("fd00:89::3")
	hopByHop := append([]byte{0}, make([]byte, 8)...)
	fragFirst := append([]byte{44}, make([]byte, 8)...)
	fragLater := append([]byte{44}, 0, 0, 0, 8, 0, 0, 0, 1)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  Flow
	}{
		{"tcp", frame(a4, b4, protoTCP, 40000, 80, false, 0), Flow{a4, b4, protoTCP, 40000, 80}},
		{"udp vlan", frame(a4, b4, protoUDP, 5353, 53, true, 0), Flow{a4, b4, protoUDP, 5353, 53}},
		{"sctp", frame(a4, b4, protoSCTP, 1, 2, false, 0), Flow{a4, b4, protoSCTP, 1, 2}},
		{"icmp", frame(a4, b4, protoICMP, 0x0800, 0, false, 0), Flow{a4, b4, protoICMP, 0, 0}},
		{"ipv4 later fragment", frame(a4, b4, protoUDP, 1, 2, false, 100), Flow{a4, b4, protoUDP, 0, 0}},
		{"tcp6", frame(a6, b6, protoTCP, 40000, 443, false, 0), Flow{a6, b6, protoTCP, 40000, 443}},
		{"udp6 hop-by-hop", frame(a6, b6, protoUDP, 7, 9, false, 0, hopByHop), Flow{a6, b6, protoUDP, 7, 9}},
		{"udp6 first fragment", frame(a6, b6, protoUDP, 7, 9, false, 0, fragFirst), Flow{a6, b6, protoUDP, 7, 9}},
		{"udp6 later fragment", frame(a6, b6, protoUDP, 7, 9, false, 0, fragLater), Flow{a6, b6, protoUDP, 0, 0}},
	} {
		got, err := DecodePacket(tc.frame)
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	good := frame(a4, b4, protoTCP, 1, 2, false, 0)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"empty", nil},
		{"short ethernet", good[:10]},
		{"arp", append(append([]byte(nil), good[:12]...), 0x08, 0x06, 0, 0)},
		{"short ipv4", good[:14+12]},
		{"short tcp", good[:14+20+2]},
		{"bad ihl", func() []byte { b := append([]byte(nil), good...); b[14] = 0x41; return b }()},
		{"short ipv6", frame(a6, b6, protoTCP, 1, 2, false, 0)[:14+30]},
		{"short extension", frame(a6, b6, protoUDP, 1, 2, false, 0, hopByHop)[:14+40+4]},
	} {
		if f, err := DecodePacket(tc.frame); err == nil {
			t.Errorf("%s: decoded %+v", tc.name, f)
		}
	}
}

// FuzzDecodePacket: any input decodes or fails, never panics.
func FuzzDecodePacket(f *testing.F) {
	f.Add(frame(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), protoTCP, 1, 2, true, 0))
	f.Add(frame(netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), protoUDP, 1, 2, false, 0, append([]byte{60}, make([]byte, 8)...)))
	f.Fuzz(func(t *testing.T, b []byte) {
		DecodePacket(b)
		parsePacketIn2(b)
	})
}
