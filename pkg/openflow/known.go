package openflow

import "strconv"

// knownFields are the names our Field types render (before "=", or the
// whole token for a protocol shorthand): every field OVS prints for a flow
// we installed is one of them.
var knownFields = func() map[string]bool {
	m := map[string]bool{
		"in_port": true, "dl_src": true, "nw_src": true, "nw_dst": true,
		"ipv6_src": true, "ipv6_dst": true, "arp_spa": true, "arp_tpa": true,
		"arp_sha": true, "nd_target": true, "icmp_type": true, "icmp_code": true,
		"tp_dst": true, "conj_id": true, "ct_state": true, "ct_mark": true,
		"tun_src": true, "tun_ipv6_src": true,
	}
	for p := IP; p <= SCTP6; p++ {
		m[p.String()] = true
	}
	// OVS has 16 32-bit registers (reg0..reg15).
	for n := range 16 {
		m["reg"+strconv.Itoa(n)] = true
	}
	return m
}()

// KnownField reports whether name (a match token's name, before "=", or a
// protocol shorthand) is one our Field types render. A dumped flow with
// another field is not one we installed as it is (see pkg/flowsync).
func KnownField(name string) bool { return knownFields[name] }
