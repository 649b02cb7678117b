package openflow

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// Field is one typed match field. Each renders itself as
// "ovs-ofctl -O OpenFlow15 --no-names dump-flows" prints it (verified
// against ovs-vswitchd 3.1: see pkg/flowsync's tests), so a match needs no
// canonicalization before it is compared with an installed flow. Only the
// fields the compiler uses exist; the set is closed (fieldName is
// unexported).
type Field interface {
	// appendField appends "name=value" (or a protocol shorthand).
	appendField(b []byte) []byte
	// matchesAll is true for a field that constrains nothing (a /0
	// prefix): OVS does not print it, so the match leaves it out.
	matchesAll() bool
}

// Protocol is a match's protocol shorthand: the Ethernet type and, for
// some, the IP protocol.
type Protocol uint8

// The protocol shorthands we match on.
const (
	IP Protocol = iota + 1
	IPv6
	ARP
	ICMP
	ICMP6
	TCP
	TCP6
	UDP
	UDP6
	SCTP
	SCTP6
)

var protocolNames = [...]string{
	IP: "ip", IPv6: "ipv6", ARP: "arp", ICMP: "icmp", ICMP6: "icmp6",
	TCP: "tcp", TCP6: "tcp6", UDP: "udp", UDP6: "udp6", SCTP: "sctp", SCTP6: "sctp6",
}

func (p Protocol) String() string {
	if int(p) < len(protocolNames) && protocolNames[p] != "" {
		return protocolNames[p]
	}
	return "protocol(" + strconv.Itoa(int(p)) + ")"
}

func (p Protocol) appendField(b []byte) []byte { return append(b, p.String()...) }
func (p Protocol) matchesAll() bool            { return false }

// IPProtocol returns the shorthand for an IP family (ip or ipv6).
func IPProtocol(ipv6 bool) Protocol {
	if ipv6 {
		return IPv6
	}
	return IP
}

// InPort matches the OpenFlow port a packet came in on.
type InPort uint32

func (p InPort) appendField(b []byte) []byte {
	return AppendPort(append(b, "in_port="...), uint32(p))
}
func (InPort) matchesAll() bool { return false }

// PortLocal is OpenFlow's LOCAL port: the bridge's own internal interface.
const PortLocal uint32 = 0xfffe

// AppendPort renders a port number as OVS prints it (LOCAL by name).
func AppendPort(b []byte, p uint32) []byte {
	if p == PortLocal {
		return append(b, "LOCAL"...)
	}
	return strconv.AppendUint(b, uint64(p), 10)
}

// MAC is an Ethernet address (comparable, unlike net.HardwareAddr).
type MAC [6]byte

// MACFrom converts a 6-byte hardware address (others give the zero MAC).
func MACFrom(hw net.HardwareAddr) MAC {
	var m MAC
	if len(hw) == 6 {
		copy(m[:], hw)
	}
	return m
}

// String renders the MAC in lower case, as OVS prints it.
func (m MAC) String() string { return string(m.Append(nil)) }

// Append appends String's text.
func (m MAC) Append(b []byte) []byte {
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexDigits[x>>4], hexDigits[x&0xf])
	}
	return b
}

// EthSrc matches the Ethernet source (dl_src).
type EthSrc MAC

func (m EthSrc) appendField(b []byte) []byte { return MAC(m).Append(append(b, "dl_src="...)) }
func (EthSrc) matchesAll() bool              { return false }

// IPSrc and IPDst match an IPv4 (nw_src/nw_dst) or IPv6 (ipv6_src/ipv6_dst)
// prefix: a host prefix is printed without a length, others masked; /0
// matches everything and is left out.
type (
	IPSrc netip.Prefix
	IPDst netip.Prefix
)

// HostSrc and HostDst match one address.
func HostSrc(a netip.Addr) IPSrc { return IPSrc(netip.PrefixFrom(a, a.BitLen())) }
func HostDst(a netip.Addr) IPDst { return IPDst(netip.PrefixFrom(a, a.BitLen())) }

func (p IPSrc) appendField(b []byte) []byte {
	return appendPrefix(b, netip.Prefix(p), "nw_src=", "ipv6_src=")
}
func (p IPSrc) matchesAll() bool { return netip.Prefix(p).Bits() == 0 }
func (p IPDst) appendField(b []byte) []byte {
	return appendPrefix(b, netip.Prefix(p), "nw_dst=", "ipv6_dst=")
}
func (p IPDst) matchesAll() bool { return netip.Prefix(p).Bits() == 0 }

func appendPrefix(b []byte, p netip.Prefix, v4, v6 string) []byte {
	if p.Addr().Is6() {
		b = append(b, v6...)
	} else {
		b = append(b, v4...)
	}
	return appendPrefixValue(b, p)
}

// appendPrefixValue renders a prefix as OVS prints it: a host prefix as the
// address, others as the masked network and its length.
func appendPrefixValue(b []byte, p netip.Prefix) []byte {
	if p.IsSingleIP() {
		return p.Addr().AppendTo(b)
	}
	p = p.Masked()
	b = p.Addr().AppendTo(b)
	b = append(b, '/')
	return strconv.AppendInt(b, int64(p.Bits()), 10)
}

// ARP fields: sender and target protocol address, sender hardware address.
type (
	ARPSenderIP  netip.Addr
	ARPTargetIP  netip.Addr
	ARPSenderMAC MAC
)

func (a ARPSenderIP) appendField(b []byte) []byte {
	return netip.Addr(a).AppendTo(append(b, "arp_spa="...))
}
func (ARPSenderIP) matchesAll() bool { return false }
func (a ARPTargetIP) appendField(b []byte) []byte {
	return netip.Addr(a).AppendTo(append(b, "arp_tpa="...))
}
func (ARPTargetIP) matchesAll() bool { return false }
func (m ARPSenderMAC) appendField(b []byte) []byte {
	return MAC(m).Append(append(b, "arp_sha="...))
}
func (ARPSenderMAC) matchesAll() bool { return false }

// NDTarget matches an IPv6 neighbour discovery target (a prefix, printed
// like IPSrc's).
type NDTarget netip.Prefix

func (p NDTarget) appendField(b []byte) []byte {
	return appendPrefixValue(append(b, "nd_target="...), netip.Prefix(p))
}
func (p NDTarget) matchesAll() bool { return netip.Prefix(p).Bits() == 0 }

// ICMPType and ICMPCode match ICMP (and ICMPv6) type and code.
type (
	ICMPType uint8
	ICMPCode uint8
)

func (t ICMPType) appendField(b []byte) []byte {
	return strconv.AppendUint(append(b, "icmp_type="...), uint64(t), 10)
}
func (ICMPType) matchesAll() bool { return false }
func (c ICMPCode) appendField(b []byte) []byte {
	return strconv.AppendUint(append(b, "icmp_code="...), uint64(c), 10)
}
func (ICMPCode) matchesAll() bool { return false }

// TransportDst matches the transport destination port under a mask:
// decimal with the full mask, else "0xV/0xM" as OVS prints it (a zero
// value too: "0x0/0xfc00", unlike registers' "0/0x2").
type TransportDst struct{ Value, Mask uint16 }

// PortDst matches one destination port.
func PortDst(p uint16) TransportDst { return TransportDst{p, 0xffff} }

func (t TransportDst) appendField(b []byte) []byte {
	b = append(b, "tp_dst="...)
	if t.Mask == 0xffff {
		return strconv.AppendUint(b, uint64(t.Value), 10)
	}
	b = strconv.AppendUint(append(b, "0x"...), uint64(t.Value&t.Mask), 16)
	return strconv.AppendUint(append(b, "/0x"...), uint64(t.Mask), 16)
}
func (t TransportDst) matchesAll() bool { return t.Mask == 0 }

// ConjID matches the conj_id a completed conjunction sets.
type ConjID uint32

func (c ConjID) appendField(b []byte) []byte {
	return strconv.AppendUint(append(b, "conj_id="...), uint64(c), 10)
}
func (ConjID) matchesAll() bool { return false }

// CTStates are conntrack state bits, in the order OVS prints them.
type CTStates uint16

// The conntrack states we match on.
const (
	CTNew CTStates = 1 << iota
	CTEstablished
	CTRelated
	CTReply
	CTInvalid
	CTTracked
)

var ctStateNames = [...]string{"new", "est", "rel", "rpl", "inv", "trk"}

// CTState matches states Set (+) and Clear (-), printed in OVS's bit order.
type CTState struct{ Set, Clear CTStates }

func (s CTState) appendField(b []byte) []byte {
	b = append(b, "ct_state="...)
	for i, name := range ctStateNames {
		bit := CTStates(1) << i
		switch {
		case s.Set&bit != 0:
			b = append(b, '+')
		case s.Clear&bit != 0:
			b = append(b, '-')
		default:
			continue
		}
		b = append(b, name...)
	}
	return b
}
func (s CTState) matchesAll() bool { return s.Set|s.Clear == 0 }

// CTMark matches conntrack mark bits under a mask.
type CTMark struct{ Value, Mask uint32 }

func (m CTMark) appendField(b []byte) []byte {
	return appendHexMasked(append(b, "ct_mark="...), uint64(m.Value&m.Mask), uint64(m.Mask), 0xffffffff)
}
func (m CTMark) matchesAll() bool { return m.Mask == 0 }

// Reg matches register N's bits under a mask.
type Reg struct {
	N           uint8
	Value, Mask uint32
}

func (r Reg) appendField(b []byte) []byte {
	b = strconv.AppendUint(append(b, "reg"...), uint64(r.N), 10)
	return appendHexMasked(append(b, '='), uint64(r.Value&r.Mask), uint64(r.Mask), 0xffffffff)
}
func (r Reg) matchesAll() bool { return r.Mask == 0 }

// TunnelSrc matches the outer source address of a tunnelled packet.
type TunnelSrc netip.Addr

func (a TunnelSrc) appendField(b []byte) []byte {
	if netip.Addr(a).Is6() {
		b = append(b, "tun_ipv6_src="...)
	} else {
		b = append(b, "tun_src="...)
	}
	return netip.Addr(a).AppendTo(b)
}
func (TunnelSrc) matchesAll() bool { return false }

// appendHexMasked renders V or V/M as OVS prints hexadecimal fields: 0x%x
// (zero as 0), the mask left out when it is full.
func appendHexMasked(b []byte, v, m, full uint64) []byte {
	b = appendHex(b, v)
	if m != full {
		b = appendHex(append(b, '/'), m)
	}
	return b
}

func appendHex(b []byte, v uint64) []byte {
	if v == 0 {
		return append(b, '0')
	}
	return strconv.AppendUint(append(b, "0x"...), v, 16)
}

// Match is a flow's match: typed fields, rendered once, in the order given.
// Fields that match everything are left out (as OVS leaves them out). It is
// one pointer to immutable data, so that flows stay small to copy and keep
// (the zero Match matches everything).
type Match struct{ d *matchData }

type matchData struct {
	fields []Field
	text   string
	// sorted is the fields' texts sorted and joined: the same for any
	// order of the same fields, as the installed flow's dump gives it after
	// SortedFields (OVS prints fields in an order of its own).
	sorted string
	// own holds the fields of a short match (one allocation for both:
	// most matches have one or two fields).
	own [2]Field
}

// NewMatch builds a match of fields, in that order.
func NewMatch(fields ...Field) Match {
	d := &matchData{}
	d.fields = d.own[:0]
	if len(fields) > len(d.own) {
		d.fields = make([]Field, 0, len(fields))
	}
	// Room for most texts at once: a short match is about 30 bytes.
	b := make([]byte, 0, 16+16*len(fields))
	var ends [8]int
	cuts := ends[:0]
	inOrder := true
	prev := 0
	for _, f := range fields {
		if f == nil || f.matchesAll() {
			continue
		}
		start := len(b)
		if start > 0 {
			b = append(b, ',')
			start++
		}
		b = f.appendField(b)
		if len(cuts) > 0 && string(b[prev:start-1]) > string(b[start:]) {
			inOrder = false
		}
		prev = start
		cuts = append(cuts, len(b))
		d.fields = append(d.fields, f)
	}
	if len(d.fields) == 0 {
		return Match{}
	}
	// b is never written again: the text is its bytes, not a copy.
	d.text = unsafe.String(unsafe.SliceData(b), len(b))
	d.sorted = d.text
	if !inOrder {
		parts := make([]string, 0, len(cuts))
		start := 0
		for _, end := range cuts {
			parts = append(parts, d.text[start:end])
			start = end + 1
		}
		slices.Sort(parts)
		d.sorted = strings.Join(parts, ",")
	}
	return Match{d}
}

// With returns a new match of m's fields followed by more.
func (m Match) With(more ...Field) Match {
	return NewMatch(append(slices.Clip(m.Fields()), more...)...)
}

// String is the match as ovs-ofctl text ("" matches everything).
func (m Match) String() string {
	if m.d == nil {
		return ""
	}
	return m.d.text
}

// Fields returns the match's fields (shared: do not modify).
func (m Match) Fields() []Field {
	if m.d == nil {
		return nil
	}
	return m.d.fields
}

// Sorted is the match text with its fields sorted: equal for two matches
// OVS holds as one flow, whatever order they were written in.
func (m Match) Sorted() string {
	if m.d == nil {
		return ""
	}
	return m.d.sorted
}

// IsZero reports whether the match matches everything.
func (m Match) IsZero() bool { return m.String() == "" }

// ConjID returns the conj_id the match requires, if any.
func (m Match) ConjID() (uint32, bool) {
	for _, f := range m.Fields() {
		if c, ok := f.(ConjID); ok {
			return uint32(c), true
		}
	}
	return 0, false
}

// SortedFields sorts the comma-separated fields of an installed flow's
// match text (as OVS printed it) the way Match.Sorted does, for comparing
// the two.
func SortedFields(text string) string {
	if text == "" || !strings.Contains(text, ",") {
		return text
	}
	parts := strings.Split(text, ",")
	if slices.IsSorted(parts) {
		return text
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}
