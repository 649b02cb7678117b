package auditlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// Flow is what the audit log says about a packet: addresses, protocol and
// transport ports (0 for protocols without ports, and for fragments after
// the first).
type Flow struct {
	Src, Dst         netip.Addr
	Protocol         uint8
	SrcPort, DstPort uint16
}

// IP protocol numbers the log names.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// ProtocolName is the protocol as NetworkPolicy (and people) name it.
func ProtocolName(p uint8) string {
	switch p {
	case protoTCP:
		return "TCP"
	case protoUDP:
		return "UDP"
	case protoSCTP:
		return "SCTP"
	case protoICMP:
		return "ICMP"
	case protoICMPv6:
		return "ICMPv6"
	}
	return "proto-" + strconv.Itoa(int(p))
}

func hasPorts(p uint8) bool { return p == protoTCP || p == protoUDP || p == protoSCTP }

// Ethernet types.
const (
	ethIPv4 = 0x0800
	ethIPv6 = 0x86dd
	ethVLAN = 0x8100
	ethQinQ = 0x88a8
)

// DecodePacket reads an Ethernet frame (802.1Q tags skipped) carrying IPv4
// or IPv6. IPv6 extension headers (hop-by-hop, routing, fragment,
// destination options) are skipped to the transport header.
func DecodePacket(b []byte) (Flow, error) {
	if len(b) < 14 {
		return Flow{}, fmt.Errorf("frame of %d bytes", len(b))
	}
	typ := binary.BigEndian.Uint16(b[12:14])
	b = b[14:]
	for typ == ethVLAN || typ == ethQinQ {
		if len(b) < 4 {
			return Flow{}, errors.New("truncated VLAN tag")
		}
		typ = binary.BigEndian.Uint16(b[2:4])
		b = b[4:]
	}
	switch typ {
	case ethIPv4:
		return decodeIPv4(b)
	case ethIPv6:
		return decodeIPv6(b)
	}
	return Flow{}, fmt.Errorf("ethertype 0x%04x is not IP", typ)
}

func decodeIPv4(b []byte) (Flow, error) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return Flow{}, errors.New("truncated or bad IPv4 header")
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl {
		return Flow{}, fmt.Errorf("IPv4 header length %d", ihl)
	}
	f := Flow{Protocol: b[9], Src: netip.AddrFrom4([4]byte(b[12:16])), Dst: netip.AddrFrom4([4]byte(b[16:20]))}
	if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
		return f, nil // a later fragment: no transport header
	}
	return withPorts(f, b[ihl:])
}

func decodeIPv6(b []byte) (Flow, error) {
	if len(b) < 40 || b[0]>>4 != 6 {
		return Flow{}, errors.New("truncated or bad IPv6 header")
	}
	f := Flow{Src: netip.AddrFrom16([16]byte(b[8:24])), Dst: netip.AddrFrom16([16]byte(b[24:40]))}
	next, rest := b[6], b[40:]
	for range 8 { // a bounded walk of extension headers
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(rest) < 8 {
				return Flow{}, errors.New("truncated IPv6 extension header")
			}
			n := (int(rest[1]) + 1) * 8
			if len(rest) < n {
				return Flow{}, errors.New("truncated IPv6 extension header")
			}
			next, rest = rest[0], rest[n:]
			continue
		case 44: // fragment
			if len(rest) < 8 {
				return Flow{}, errors.New("truncated IPv6 fragment header")
			}
			later := binary.BigEndian.Uint16(rest[2:4])&0xfff8 != 0
			next, rest = rest[0], rest[8:]
			if later {
				f.Protocol = next
				return f, nil
			}
			continue
		}
		f.Protocol = next
		return withPorts(f, rest)
	}
	return Flow{}, errors.New("too many IPv6 extension headers")
}

// withPorts reads the ports of TCP, UDP and SCTP: the first four bytes of
// each one's header.
func withPorts(f Flow, l4 []byte) (Flow, error) {
	if !hasPorts(f.Protocol) {
		return f, nil
	}
	if len(l4) < 4 {
		return Flow{}, fmt.Errorf("truncated %s header", ProtocolName(f.Protocol))
	}
	f.SrcPort, f.DstPort = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
	return f, nil
}
