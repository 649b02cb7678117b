// Package addr does the address and port arithmetic that OpenFlow matches
// need: CIDRs minus exceptions as disjoint prefixes, and port ranges as
// value/mask pairs.
package addr

import (
	"net/netip"
	"sort"
)

// Subtract returns disjoint prefixes covering exactly p minus every prefix in
// except. Exceptions outside p are ignored. The result is sorted.
func Subtract(p netip.Prefix, except []netip.Prefix) []netip.Prefix {
	p = p.Masked()
	out := subtract(p, except)
	sort.Slice(out, func(i, j int) bool { return PrefixLess(out[i], out[j]) })
	return out
}

func subtract(p netip.Prefix, except []netip.Prefix) []netip.Prefix {
	var inside []netip.Prefix
	for _, e := range except {
		e = e.Masked()
		if e.Addr().BitLen() != p.Addr().BitLen() || !p.Overlaps(e) {
			continue
		}
		if e.Bits() <= p.Bits() {
			return nil // the exception covers all of p
		}
		inside = append(inside, e)
	}
	if len(inside) == 0 {
		return []netip.Prefix{p}
	}
	lo, hi := halves(p)
	return append(subtract(lo, inside), subtract(hi, inside)...)
}

// halves splits p into its two sub-prefixes one bit longer.
func halves(p netip.Prefix) (netip.Prefix, netip.Prefix) {
	bits := p.Bits() + 1
	lo := netip.PrefixFrom(p.Addr(), bits)
	b := p.Addr().AsSlice()
	i := p.Bits() // the bit that differs
	b[i/8] |= 0x80 >> (i % 8)
	hiAddr, _ := netip.AddrFromSlice(b)
	return lo, netip.PrefixFrom(hiAddr, bits)
}

// PrefixLess orders prefixes by family, address, then length.
func PrefixLess(a, b netip.Prefix) bool {
	if a.Addr().BitLen() != b.Addr().BitLen() {
		return a.Addr().BitLen() < b.Addr().BitLen()
	}
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c < 0
	}
	return a.Bits() < b.Bits()
}

// HostPrefix is the single-address prefix of ip.
func HostPrefix(ip netip.Addr) netip.Prefix { return netip.PrefixFrom(ip, ip.BitLen()) }

// PortMask is a value/mask pair matching a block of transport ports.
type PortMask struct {
	Value, Mask uint16
}

// Exact reports whether the pair matches a single port.
func (m PortMask) Exact() bool { return m.Mask == 0xffff }

// RangeMasks covers lo..hi (inclusive) with the fewest value/mask pairs.
func RangeMasks(lo, hi uint16) []PortMask {
	var out []PortMask
	v := uint32(lo)
	for v <= uint32(hi) {
		// the largest aligned block starting at v that stays within hi
		size := uint32(1)
		for v%(size*2) == 0 && v+size*2-1 <= uint32(hi) && size*2 <= 1<<16 {
			size *= 2
		}
		out = append(out, PortMask{Value: uint16(v), Mask: uint16(^(size - 1))})
		v += size
	}
	return out
}
