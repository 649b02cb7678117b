package flowsync

import (
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Canonical rewrites a flow's Match and Actions into one canonical text, so
// that a flow as the compiler writes it and the same flow as
// "ovs-ofctl -O OpenFlow15 --no-names dump-flows" prints it compare equal.
// Table, Priority and Cookie are left alone. The result is still valid
// ovs-ofctl input. Canonical is idempotent.
//
// Match: split at commas; the protocol (shorthand, dl_type, nw_proto) is
// printed first as OVS's shorthand ("tcp6", "ip,nw_proto=47",
// "dl_type=0x88cc"), then every other field sorted by text. A field given
// twice keeps its last value (as ovs-ofctl does). Per field, what OVS
// normalizes (each rule verified against a real ovs-vswitchd 3.1, see
// TestCanonicalMatchesOVS):
//
//   - aliases: ip_src → nw_src, ip_dst → nw_dst, eth_src → dl_src,
//     eth_dst → dl_dst, eth_type → dl_type, ip_proto → nw_proto,
//     tcp_dst/udp_dst/sctp_dst → tp_dst (same for _src), tunnel_id → tun_id,
//     ip_dscp=D → nw_tos=4·D, ipv4 → ip;
//   - IPv4 and IPv6 addresses (nw_*, arp_spa/tpa, ipv6_*, nd_target): the
//     address is masked, a full mask is dropped (10.0.0.1/32 → 10.0.0.1), an
//     empty mask drops the field (0.0.0.0/0), a contiguous mask is printed as
//     a prefix length (/255.255.0.0 → /16), other masks in address form;
//     IPv6 in RFC 5952 form (fd00:0:0:0::1 → fd00::1);
//   - MAC addresses: lower case, full mask dropped, empty mask drops the field;
//   - registers and other hexadecimal fields (regN, metadata, pkt_mark,
//     ct_mark, tun_id): value masked and printed as 0x%x (zero as 0), a full
//     mask dropped, an empty mask drops the field (xregN is not handled: OVS
//     prints it as two 32-bit registers);
//   - tp_src/tp_dst: decimal, or 0x%x/0x%x when masked;
//   - decimal fields (conj_id, icmp_type, icmp_code, nw_tos, nw_ttl, nw_ecn,
//     arp_op, idle_timeout, hard_timeout, importance): decimal;
//   - in_port: reserved ports by name (65534, 0xfffffffe, local → LOCAL);
//   - ct_state: flags in OVS's bit order (+trk+new → +new+trk), hexadecimal
//     value/mask turned into flags.
//
// Actions: split at top-level commas; empty actions or "drop" are "drop".
//
//   - output: "N" and "output:N" → output:N; reserved ports by name
//     (output:LOCAL, output:65534 → LOCAL; in_port → IN_PORT; controller →
//     CONTROLLER:65535);
//   - goto_table:N without leading zeros; conjunction(ID, K/N) without spaces;
//   - ct(...): arguments in OVS's order commit, force, table, zone, nat,
//     exec(...) (its actions canonical too), alg; zone=0 dropped;
//   - set_field: field aliases (nw_src → ip_src, dl_dst → eth_dst, ...) and
//     the value normalized like a match value (0x1/0xffffffff->reg0 →
//     0x1->reg0);
//   - load:V->F[range] on registers, ct_mark, pkt_mark, metadata and tun_id →
//     set_field:(V<<start)/(mask<<start)->F (as OVS prints it);
//   - mod_dl_src/mod_dl_dst/mod_nw_src/mod_nw_dst → set_field.
//
// Anything else is kept verbatim (with surrounding spaces trimmed). Port
// and table names are not resolved: write numbers (dumps use --no-names).
func Canonical(f openflow.Flow) openflow.Flow {
	f.Match = canonicalMatch(f.Match)
	f.Actions = canonicalActions(f.Actions)
	return f
}

// Ethernet types and IP protocols of the shorthands.
const (
	ethIPv4 = 0x0800
	ethIPv6 = 0x86dd
	ethARP  = 0x0806
	ethRARP = 0x8035

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoSCTP   = 132
	protoICMPv6 = 58
)

type shorthand struct{ dlType, nwProto int }

var shorthands = map[string]shorthand{
	"ip": {ethIPv4, -1}, "ipv4": {ethIPv4, -1}, "icmp": {ethIPv4, protoICMP},
	"tcp": {ethIPv4, protoTCP}, "udp": {ethIPv4, protoUDP}, "sctp": {ethIPv4, protoSCTP},
	"ipv6": {ethIPv6, -1}, "icmp6": {ethIPv6, protoICMPv6},
	"tcp6": {ethIPv6, protoTCP}, "udp6": {ethIPv6, protoUDP}, "sctp6": {ethIPv6, protoSCTP},
	"arp": {ethARP, -1}, "rarp": {ethRARP, -1},
}

// shorthandName returns OVS's printed protocol prefix.
func shorthandName(dlType, nwProto int) string {
	var base string
	switch dlType {
	case -1:
		if nwProto >= 0 {
			return "nw_proto=" + strconv.Itoa(nwProto)
		}
		return ""
	case ethIPv4:
		switch nwProto {
		case -1:
			return "ip"
		case protoICMP:
			return "icmp"
		case protoTCP:
			return "tcp"
		case protoUDP:
			return "udp"
		case protoSCTP:
			return "sctp"
		}
		base = "ip"
	case ethIPv6:
		switch nwProto {
		case -1:
			return "ipv6"
		case protoICMPv6:
			return "icmp6"
		case protoTCP:
			return "tcp6"
		case protoUDP:
			return "udp6"
		case protoSCTP:
			return "sctp6"
		}
		base = "ipv6"
	case ethARP:
		base = "arp"
	case ethRARP:
		base = "rarp"
	default:
		base = fmt.Sprintf("dl_type=0x%04x", dlType)
	}
	if nwProto >= 0 {
		return base + ",nw_proto=" + strconv.Itoa(nwProto)
	}
	return base
}

var matchAliases = map[string]string{
	"ip_src": "nw_src", "ip_dst": "nw_dst", "tunnel_id": "tun_id",
	"eth_src": "dl_src", "eth_dst": "dl_dst", "eth_type": "dl_type", "ip_proto": "nw_proto",
	"tcp_src": "tp_src", "tcp_dst": "tp_dst", "udp_src": "tp_src", "udp_dst": "tp_dst",
	"sctp_src": "tp_src", "sctp_dst": "tp_dst",
}

// kind says how a field's value is printed.
type kind int

const (
	kindOther kind = iota
	kindIPv4
	kindIPv6
	kindMAC
	kindHex  // 0x%x[/0x%x], width in fieldWidth
	kindPort // tp_src/tp_dst: decimal, masked as hex
	kindDec  // plain decimal, no mask
	kindInPort
	kindCTState
)

func fieldKind(name string) (kind, int) {
	switch name {
	case "nw_src", "nw_dst", "arp_spa", "arp_tpa", "ip_src", "ip_dst":
		return kindIPv4, 32
	case "ipv6_src", "ipv6_dst", "nd_target":
		return kindIPv6, 128
	case "dl_src", "dl_dst", "arp_sha", "arp_tha", "nd_sll", "nd_tll", "eth_src", "eth_dst":
		return kindMAC, 48
	case "metadata", "tun_id", "tunnel_id":
		return kindHex, 64
	case "pkt_mark", "ct_mark":
		return kindHex, 32
	case "tp_src", "tp_dst", "tcp_src", "tcp_dst", "udp_src", "udp_dst", "sctp_src", "sctp_dst":
		return kindPort, 16
	case "conj_id", "icmp_type", "icmp_code", "nw_tos", "nw_ttl", "nw_ecn", "arp_op",
		"idle_timeout", "hard_timeout", "importance":
		return kindDec, 0
	case "in_port":
		return kindInPort, 0
	case "ct_state":
		return kindCTState, 0
	}
	if n, ok := strings.CutPrefix(name, "reg"); ok && isSmallInt(n) {
		return kindHex, 32
	}
	return kindOther, 0
}

func isSmallInt(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n < 16 && strconv.Itoa(n) == s
}

// canonicalMatch is the match half of Canonical.
func canonicalMatch(m string) string {
	if m == "" {
		return ""
	}
	dlType, nwProto := -1, -1
	// Fields in order of appearance; a repeated field keeps its first place
	// and its last value. Matches have a handful of fields: linear search.
	var names, fields []string
	put := func(name, tok string) {
		for i, n := range names {
			if n == name {
				fields[i] = tok
				return
			}
		}
		names = append(names, name)
		fields = append(fields, tok)
	}
	drop := func(name string) { put(name, "") }
	for _, tok := range strings.Split(m, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		name, val, hasVal := strings.Cut(tok, "=")
		name, val = strings.TrimSpace(name), strings.TrimSpace(val)
		if !hasVal {
			if s, ok := shorthands[name]; ok {
				dlType = s.dlType
				if s.nwProto >= 0 {
					nwProto = s.nwProto
				}
				continue
			}
			put(name, name) // a flag such as send_flow_rem
			continue
		}
		if a, ok := matchAliases[name]; ok {
			name = a
		}
		switch name {
		case "dl_type":
			if n, err := strconv.ParseUint(val, 0, 16); err == nil {
				dlType = int(n)
				continue
			}
		case "nw_proto":
			if n, err := strconv.ParseUint(val, 0, 8); err == nil {
				nwProto = int(n)
				continue
			}
		case "ip_dscp":
			if n, err := strconv.ParseUint(val, 0, 8); err == nil && n < 64 {
				name, val = "nw_tos", strconv.FormatUint(n<<2, 10)
			}
		}
		v, keep := canonicalValue(name, val)
		if !keep {
			drop(name)
			continue
		}
		put(name, name+"="+v)
	}
	out := fields[:0]
	for _, f := range fields {
		if f != "" {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	if p := shorthandName(dlType, nwProto); p != "" {
		out = append([]string{p}, out...)
	}
	return strings.Join(out, ",")
}

// canonicalValue normalizes one field value; keep is false when the value
// matches everything (an all-zero mask), so OVS does not print the field.
// Values it cannot parse are returned unchanged.
func canonicalValue(name, val string) (string, bool) {
	k, width := fieldKind(name)
	switch k {
	case kindIPv4, kindIPv6:
		return canonicalIP(val, width)
	case kindMAC:
		return canonicalMAC(val)
	case kindHex:
		return canonicalHex(val, width)
	case kindPort:
		v, m, ok := parseMasked(val, 16)
		if !ok {
			return val, true
		}
		switch m {
		case 0:
			return "", false
		case 0xffff:
			return strconv.FormatUint(v, 10), true
		}
		return fmt.Sprintf("0x%x/0x%x", v&m, m), true
	case kindDec:
		if n, err := strconv.ParseUint(val, 0, 64); err == nil {
			return strconv.FormatUint(n, 10), true
		}
	case kindInPort:
		return canonicalPort(val), true
	case kindCTState:
		return canonicalCTState(val)
	}
	return val, true
}

// parseMasked parses "V" or "V/M" as unsigned integers of width bits.
func parseMasked(s string, width int) (v, m uint64, ok bool) {
	full := uint64(1)<<width - 1
	if width == 64 {
		full = ^uint64(0)
	}
	vs, ms, hasMask := strings.Cut(s, "/")
	v, err := strconv.ParseUint(vs, 0, width)
	if err != nil {
		return 0, 0, false
	}
	m = full
	if hasMask {
		if m, err = strconv.ParseUint(ms, 0, width); err != nil {
			return 0, 0, false
		}
	}
	return v & m, m, true
}

// hex prints like OVS's ds_put_hex: zero is "0".
func hex(v uint64) string {
	if v == 0 {
		return "0"
	}
	return "0x" + strconv.FormatUint(v, 16)
}

func canonicalHex(val string, width int) (string, bool) {
	v, m, ok := parseMasked(val, width)
	if !ok {
		return val, true
	}
	full := uint64(1)<<width - 1
	if width == 64 {
		full = ^uint64(0)
	}
	switch m {
	case 0:
		return "", false
	case full:
		return hex(v), true
	}
	return hex(v) + "/" + hex(m), true
}

// canonicalIP normalizes an IPv4 (width 32) or IPv6 (128) address with an
// optional prefix length or mask.
func canonicalIP(val string, width int) (string, bool) {
	as, ms, hasMask := strings.Cut(val, "/")
	a, err := netip.ParseAddr(as)
	if err != nil || a.BitLen() != width || a.Zone() != "" {
		return val, true
	}
	mask := make([]byte, width/8)
	switch {
	case !hasMask:
		for i := range mask {
			mask[i] = 0xff
		}
	case strings.ContainsAny(ms, ".:"):
		ma, err := netip.ParseAddr(ms)
		if err != nil || ma.BitLen() != width {
			return val, true
		}
		copy(mask, ma.AsSlice())
	default:
		n, err := strconv.Atoi(ms)
		if err != nil || n < 0 || n > width {
			return val, true
		}
		copy(mask, net.CIDRMask(n, width))
	}
	addr := a.AsSlice()
	for i := range addr {
		addr[i] &= mask[i]
	}
	// ones is the prefix length, or -1 when the mask is not a prefix.
	ones, i := 0, 0
	for ; i < len(mask) && mask[i] == 0xff; i++ {
		ones += 8
	}
	if i < len(mask) {
		o := bits.LeadingZeros8(^mask[i])
		ones += o
		if mask[i] != byte(0xff<<(8-o)) || anyNonZero(mask[i+1:]) {
			ones = -1
		}
	}
	masked, _ := netip.AddrFromSlice(addr)
	switch {
	case ones == 0:
		return "", false
	case ones == width:
		return masked.String(), true
	case ones > 0:
		return masked.String() + "/" + strconv.Itoa(ones), true
	}
	m, _ := netip.AddrFromSlice(mask)
	return masked.String() + "/" + m.String(), true
}

func anyNonZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return true
		}
	}
	return false
}

func canonicalMAC(val string) (string, bool) {
	as, ms, hasMask := strings.Cut(val, "/")
	a, err := net.ParseMAC(as)
	if err != nil || len(a) != 6 {
		return val, true
	}
	if !hasMask {
		return a.String(), true
	}
	m, err := net.ParseMAC(ms)
	if err != nil || len(m) != 6 {
		return val, true
	}
	full, zero := true, true
	for i := range a {
		a[i] &= m[i]
		full = full && m[i] == 0xff
		zero = zero && m[i] == 0
	}
	switch {
	case zero:
		return "", false
	case full:
		return a.String(), true
	}
	return a.String() + "/" + m.String(), true
}

// Reserved OpenFlow ports by their OpenFlow 1.0 number (OpenFlow 1.1+
// numbers are these plus 0xffff0000).
var reservedPorts = map[uint64]string{
	0xfff8: "IN_PORT", 0xfff9: "TABLE", 0xfffa: "NORMAL", 0xfffb: "FLOOD",
	0xfffc: "ALL", 0xfffd: "CONTROLLER", 0xfffe: "LOCAL", 0xffff: "ANY",
}

var reservedPortNames = map[string]bool{
	"IN_PORT": true, "TABLE": true, "NORMAL": true, "FLOOD": true, "ALL": true,
	"CONTROLLER": true, "LOCAL": true, "ANY": true, "NONE": true,
}

// canonicalPort prints a port number in decimal and reserved ports by name.
func canonicalPort(p string) string {
	if n, err := strconv.ParseUint(p, 0, 32); err == nil {
		if n >= 0xffff0000 {
			n -= 0xffff0000
		}
		if name, ok := reservedPorts[n]; ok {
			return name
		}
		return strconv.FormatUint(n, 10)
	}
	if u := strings.ToUpper(p); reservedPortNames[u] {
		if u == "NONE" {
			return "ANY"
		}
		return u
	}
	return p
}

// Conntrack state bits in OVS's printing order.
var ctStateBits = []struct {
	name string
	bit  uint64
}{
	{"new", 0x01}, {"est", 0x02}, {"rel", 0x04}, {"rpl", 0x08},
	{"inv", 0x10}, {"trk", 0x20}, {"snat", 0x40}, {"dnat", 0x80},
}

func canonicalCTState(val string) (string, bool) {
	var v, m uint64
	if strings.HasPrefix(val, "+") || strings.HasPrefix(val, "-") {
		rest := val
		for rest != "" {
			set := rest[0] == '+'
			if rest[0] != '+' && rest[0] != '-' {
				return val, true
			}
			rest = rest[1:]
			end := strings.IndexAny(rest, "+-")
			if end < 0 {
				end = len(rest)
			}
			name := rest[:end]
			rest = rest[end:]
			found := false
			for _, b := range ctStateBits {
				if b.name == name {
					found = true
					m |= b.bit
					if set {
						v |= b.bit
					} else {
						v &^= b.bit
					}
				}
			}
			if !found {
				return val, true
			}
		}
	} else {
		var ok bool
		if v, m, ok = parseMasked(val, 32); !ok || m&^0xff != 0 {
			return val, true
		}
	}
	if m == 0 {
		return "", false
	}
	var b strings.Builder
	for _, s := range ctStateBits {
		if m&s.bit == 0 {
			continue
		}
		if v&s.bit != 0 {
			b.WriteByte('+')
		} else {
			b.WriteByte('-')
		}
		b.WriteString(s.name)
	}
	return b.String(), true
}

// canonicalActions is the action half of Canonical.
func canonicalActions(a string) string {
	var out []string
	for _, p := range openflow.SplitTopLevel(a) {
		if p == "" || p == "drop" {
			continue
		}
		out = append(out, canonicalAction(p))
	}
	if len(out) == 0 {
		return "drop"
	}
	return strings.Join(out, ",")
}

var setFieldAliases = map[string]string{
	"dl_src": "eth_src", "dl_dst": "eth_dst", "nw_src": "ip_src", "nw_dst": "ip_dst",
	"tunnel_id": "tun_id",
}

// loadTargets maps NXM/OXM names a load: may write to the field set_field
// names, with its width.
func loadTarget(f string) (string, int, bool) {
	switch f {
	case "NXM_NX_CT_MARK", "ct_mark":
		return "ct_mark", 32, true
	case "NXM_NX_PKT_MARK", "pkt_mark":
		return "pkt_mark", 32, true
	case "OXM_OF_METADATA", "metadata":
		return "metadata", 64, true
	case "NXM_NX_TUN_ID", "tun_id", "tunnel_id":
		return "tun_id", 64, true
	}
	if n, ok := strings.CutPrefix(f, "NXM_NX_REG"); ok && isSmallInt(n) {
		return "reg" + n, 32, true
	}
	if n, ok := strings.CutPrefix(f, "reg"); ok && isSmallInt(n) {
		return "reg" + n, 32, true
	}
	return "", 0, false
}

func canonicalAction(a string) string {
	if name, arg, ok := strings.Cut(a, ":"); ok && !strings.Contains(name, "(") {
		name = strings.TrimSpace(name)
		arg = strings.TrimSpace(arg)
		switch strings.ToLower(name) {
		case "output":
			return outputAction(arg)
		case "goto_table":
			if n, err := strconv.ParseUint(arg, 10, 8); err == nil {
				return "goto_table:" + strconv.FormatUint(n, 10)
			}
		case "set_field":
			return setFieldAction(arg)
		case "load":
			return loadAction(a, arg)
		case "mod_dl_src":
			return setFieldAction(arg + "->eth_src")
		case "mod_dl_dst":
			return setFieldAction(arg + "->eth_dst")
		case "mod_nw_src":
			return setFieldAction(arg + "->ip_src")
		case "mod_nw_dst":
			return setFieldAction(arg + "->ip_dst")
		}
		return name + ":" + arg
	}
	if name, args, ok := strings.Cut(a, "("); ok && strings.HasSuffix(args, ")") {
		name = strings.TrimSpace(name)
		args = strings.TrimSuffix(args, ")")
		switch name {
		case "conjunction":
			if c, ok := conjunctionAction(args); ok {
				return c
			}
		case "ct":
			return ctAction(args)
		}
		return a
	}
	if _, err := strconv.ParseUint(a, 0, 32); err == nil {
		return outputAction(a)
	}
	if reservedPortNames[strings.ToUpper(a)] {
		return outputAction(a)
	}
	return a
}

// conjunctionAction normalizes the arguments "ID, K/N" of conjunction().
func conjunctionAction(args string) (string, bool) {
	ids, kn, ok1 := strings.Cut(args, ",")
	ks, ns, ok2 := strings.Cut(kn, "/")
	if !ok1 || !ok2 {
		return "", false
	}
	id, err1 := strconv.ParseUint(strings.TrimSpace(ids), 10, 32)
	k, err2 := strconv.ParseUint(strings.TrimSpace(ks), 10, 8)
	n, err3 := strconv.ParseUint(strings.TrimSpace(ns), 10, 8)
	if err1 != nil || err2 != nil || err3 != nil {
		return "", false
	}
	b := make([]byte, 0, 32)
	b = append(b, "conjunction("...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, k, 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, n, 10)
	b = append(b, ')')
	return string(b), true
}

func outputAction(port string) string {
	p := canonicalPort(port)
	switch {
	case p == "CONTROLLER":
		return "CONTROLLER:65535"
	case reservedPortNames[p]:
		return p
	}
	if _, err := strconv.ParseUint(p, 10, 32); err == nil {
		return "output:" + p
	}
	return "output:" + port
}

func setFieldAction(arg string) string {
	i := strings.LastIndex(arg, "->")
	if i < 0 {
		return "set_field:" + arg
	}
	val, field := strings.TrimSpace(arg[:i]), strings.TrimSpace(arg[i+2:])
	if a, ok := setFieldAliases[field]; ok {
		field = a
	}
	v, keep := canonicalValue(field, val)
	if !keep { // an all-zero mask: OVS prints the value 0 with the mask
		return "set_field:" + val + "->" + field
	}
	return "set_field:" + v + "->" + field
}

// loadAction turns load:V->F[a..b] into the set_field OVS prints for it.
func loadAction(orig, arg string) string {
	i := strings.LastIndex(arg, "->")
	if i < 0 {
		return orig
	}
	val, dst := strings.TrimSpace(arg[:i]), strings.TrimSpace(arg[i+2:])
	fname, rng, ok := strings.Cut(dst, "[")
	if !ok || !strings.HasSuffix(rng, "]") {
		return orig
	}
	field, width, ok := loadTarget(fname)
	if !ok {
		return orig
	}
	rng = strings.TrimSuffix(rng, "]")
	lo, hi := 0, width-1
	if rng != "" {
		los, his, isRange := strings.Cut(rng, "..")
		var err1, err2 error
		lo, err1 = strconv.Atoi(los)
		hi = lo
		if isRange {
			hi, err2 = strconv.Atoi(his)
		}
		if err1 != nil || err2 != nil || lo < 0 || hi < lo || hi >= width {
			return orig
		}
	}
	v, err := strconv.ParseUint(val, 0, 64)
	n := hi - lo + 1
	if err != nil || n < 64 && v>>n != 0 {
		return orig
	}
	mask := ^uint64(0)
	if n < 64 {
		mask = (uint64(1)<<n - 1) << lo
	}
	v <<= lo
	if n == width {
		return "set_field:" + hex(v) + "->" + field
	}
	return "set_field:" + hex(v) + "/" + hex(mask) + "->" + field
}

// ctAction orders ct() arguments as OVS prints them.
func ctAction(args string) string {
	var commit, force bool
	var table, zone, nat, exec, alg string
	var other []string
	for _, a := range openflow.SplitTopLevel(args) {
		switch {
		case a == "":
		case a == "commit":
			commit = true
		case a == "force":
			force = true
		case strings.HasPrefix(a, "table="):
			v := strings.TrimPrefix(a, "table=")
			if n, err := strconv.ParseUint(v, 0, 8); err == nil {
				v = strconv.FormatUint(n, 10)
			}
			table = "table=" + v
		case strings.HasPrefix(a, "zone="):
			v := strings.TrimPrefix(a, "zone=")
			if n, err := strconv.ParseUint(v, 0, 16); err == nil {
				if n == 0 {
					zone = ""
					continue
				}
				v = strconv.FormatUint(n, 10)
			}
			zone = "zone=" + v
		case a == "nat" || strings.HasPrefix(a, "nat("):
			nat = a
		case strings.HasPrefix(a, "exec(") && strings.HasSuffix(a, ")"):
			inner := strings.TrimSuffix(strings.TrimPrefix(a, "exec("), ")")
			if strings.TrimSpace(inner) == "" {
				exec = ""
				continue
			}
			exec = "exec(" + canonicalActions(inner) + ")"
		case strings.HasPrefix(a, "alg="):
			alg = a
		default:
			other = append(other, a)
		}
	}
	var out []string
	if commit {
		out = append(out, "commit")
	}
	if force {
		out = append(out, "force")
	}
	for _, s := range []string{table, zone, nat, exec, alg} {
		if s != "" {
			out = append(out, s)
		}
	}
	out = append(out, other...)
	return "ct(" + strings.Join(out, ",") + ")"
}
