package openflow

import (
	"encoding/hex"
	"net/netip"
	"strconv"
)

// Action is one typed OpenFlow action. Each renders itself as ovs-ofctl
// prints it in a dump (verified against ovs-vswitchd 3.1, see
// pkg/flowsync's tests), so desired and installed actions compare as text.
// Every action type is comparable: slices of actions compare with ==.
// The set is closed to the actions the compiler uses.
type Action interface {
	appendAction(b []byte) []byte
}

// Conjunction is one dimension of a conjunctive match: clause K of N of
// conjunction ID. A flow's conjunctions are its only actions (OVS refuses
// to mix them with others), so Conjoin builds them apart from plain
// actions (Do).
type Conjunction struct {
	ID   uint32
	K, N uint8
}

func (c Conjunction) appendAction(b []byte) []byte {
	b = strconv.AppendUint(append(b, "conjunction("...), uint64(c.ID), 10)
	b = strconv.AppendUint(append(b, ','), uint64(c.K), 10)
	b = strconv.AppendUint(append(b, '/'), uint64(c.N), 10)
	return append(b, ')')
}

// String renders "conjunction(ID,K/N)".
func (c Conjunction) String() string { return string(c.appendAction(nil)) }

// Drop drops the packet explicitly (an empty action list drops too).
type Drop struct{}

func (Drop) appendAction(b []byte) []byte { return append(b, "drop"...) }

// Goto continues in a later table.
type Goto uint8

func (t Goto) appendAction(b []byte) []byte {
	return strconv.AppendUint(append(b, "goto_table:"...), uint64(t), 10)
}

// Resubmit runs a table and comes back ("resubmit(,T)").
type Resubmit uint8

func (t Resubmit) appendAction(b []byte) []byte {
	b = strconv.AppendUint(append(b, "resubmit(,"...), uint64(t), 10)
	return append(b, ')')
}

// Output sends the packet out of a port (LOCAL by name).
type Output uint32

func (p Output) appendAction(b []byte) []byte {
	if uint32(p) == PortLocal {
		return append(b, "LOCAL"...)
	}
	return AppendPort(append(b, "output:"...), uint32(p))
}

// OutputInPort sends the packet back out of the port it came in on.
type OutputInPort struct{}

func (OutputInPort) appendAction(b []byte) []byte { return append(b, "IN_PORT"...) }

// ToGroup sends the packet to group id.
type ToGroup uint32

func (g ToGroup) appendAction(b []byte) []byte {
	return strconv.AppendUint(append(b, "group:"...), uint64(g), 10)
}

// SetEthDst rewrites the Ethernet destination.
type SetEthDst MAC

func (m SetEthDst) appendAction(b []byte) []byte {
	return append(MAC(m).Append(append(b, "set_field:"...)), "->eth_dst"...)
}

// SetIPSrc and SetIPDst rewrite the IPv4 or IPv6 source or destination.
type (
	SetIPSrc netip.Addr
	SetIPDst netip.Addr
)

func (a SetIPSrc) appendAction(b []byte) []byte {
	return appendSetAddr(b, netip.Addr(a), "ip_src", "ipv6_src")
}
func (a SetIPDst) appendAction(b []byte) []byte {
	return appendSetAddr(b, netip.Addr(a), "ip_dst", "ipv6_dst")
}

// SetTunnelSrc and SetTunnelDst set the outer addresses of a tunnelled
// packet.
type (
	SetTunnelSrc netip.Addr
	SetTunnelDst netip.Addr
)

func (a SetTunnelSrc) appendAction(b []byte) []byte {
	return appendSetAddr(b, netip.Addr(a), "tun_src", "tun_ipv6_src")
}
func (a SetTunnelDst) appendAction(b []byte) []byte {
	return appendSetAddr(b, netip.Addr(a), "tun_dst", "tun_ipv6_dst")
}

func appendSetAddr(b []byte, a netip.Addr, v4, v6 string) []byte {
	b = a.AppendTo(append(b, "set_field:"...))
	if a.Is6() {
		return append(b, "->"+v6...)
	}
	return append(b, "->"+v4...)
}

// SetReg sets register N's bits under a mask.
type SetReg struct {
	N           uint8
	Value, Mask uint32
}

func (r SetReg) appendAction(b []byte) []byte {
	b = appendHexMasked(append(b, "set_field:"...), uint64(r.Value&r.Mask), uint64(r.Mask), 0xffffffff)
	return strconv.AppendUint(append(b, "->reg"...), uint64(r.N), 10)
}

// SetCTMark sets conntrack mark bits under a mask (inside ct's exec).
type SetCTMark struct{ Value, Mask uint32 }

func (m SetCTMark) appendAction(b []byte) []byte {
	b = appendHexMasked(append(b, "set_field:"...), uint64(m.Value&m.Mask), uint64(m.Mask), 0xffffffff)
	return append(b, "->ct_mark"...)
}

// CT sends the packet through conntrack, printed as OVS orders ct()'s
// arguments: commit, table, zone, nat, exec.
type CT struct {
	Commit bool
	// Table, with HasTable, continues the pipeline there after conntrack.
	Table    uint8
	HasTable bool
	Zone     uint16
	// NAT translates: NATDst, when valid, is the destination of a new
	// connection; without it, NAT applies the connection's translation.
	NAT    bool
	NATDst netip.AddrPort
	// SetMark, when its Mask is not zero, sets ct_mark bits (exec).
	SetMark SetCTMark
}

func (c CT) appendAction(b []byte) []byte {
	b = append(b, "ct("...)
	n := len(b)
	sep := func() {
		if len(b) > n {
			b = append(b, ',')
		}
	}
	if c.Commit {
		b = append(b, "commit"...)
	}
	if c.HasTable {
		sep()
		b = strconv.AppendUint(append(b, "table="...), uint64(c.Table), 10)
	}
	if c.Zone != 0 {
		sep()
		b = strconv.AppendUint(append(b, "zone="...), uint64(c.Zone), 10)
	}
	if c.NAT || c.NATDst.IsValid() {
		sep()
		b = append(b, "nat"...)
		if c.NATDst.IsValid() {
			b = append(b, "(dst="...)
			if c.NATDst.Addr().Is6() {
				b = c.NATDst.Addr().AppendTo(append(b, '['))
				b = append(b, ']')
			} else {
				b = c.NATDst.Addr().AppendTo(b)
			}
			b = strconv.AppendUint(append(b, ':'), uint64(c.NATDst.Port()), 10)
			b = append(b, ')')
		}
	}
	if c.SetMark.Mask != 0 {
		sep()
		b = c.SetMark.appendAction(append(b, "exec("...))
		b = append(b, ')')
	}
	return append(b, ')')
}

// Multipath picks one of Links choices by a symmetric hash of the 5-tuple
// (hrw) into register DstReg ("multipath(symmetric_l3l4+udp,0,hrw,N,0,
// NXM_NX_REGr[])").
type Multipath struct {
	Links  uint16
	DstReg uint8
}

func (m Multipath) appendAction(b []byte) []byte {
	b = strconv.AppendUint(append(b, "multipath(symmetric_l3l4+udp,0,hrw,"...), uint64(m.Links), 10)
	b = strconv.AppendUint(append(b, ",0,NXM_NX_REG"...), uint64(m.DstReg), 10)
	return append(b, "[])"...)
}

// LearnClient learns, into Table, a flow for the packet's IP source and
// its destination Service address and port that loads LoadValue into
// register LoadReg: a client's remembered backend (session affinity).
type LearnClient struct {
	Table       uint8
	IdleTimeout uint32
	Priority    uint16
	Cookie      Cookie
	// Transport is TCP, UDP or SCTP (their IPv6 forms too: the family
	// follows ServiceIP).
	Transport   Protocol
	ServiceIP   netip.Addr
	ServicePort uint16
	LoadReg     uint8
	LoadValue   uint32
}

// transportOf names a transport shorthand's field prefix and IP protocol.
func transportOf(p Protocol) (field string, number int) {
	switch p {
	case UDP, UDP6:
		return "udp", 17
	case SCTP, SCTP6:
		return "sctp", 132
	}
	return "tcp", 6
}

func (l LearnClient) appendAction(b []byte) []byte {
	tp, num := transportOf(l.Transport)
	ethType, src, dst := "0x800", "NXM_OF_IP_SRC[]", "ip_dst="
	if l.ServiceIP.Is6() {
		ethType, src, dst = "0x86dd", "NXM_NX_IPV6_SRC[]", "ipv6_dst="
	}
	b = strconv.AppendUint(append(b, "learn(table="...), uint64(l.Table), 10)
	b = strconv.AppendUint(append(b, ",idle_timeout="...), uint64(l.IdleTimeout), 10)
	b = strconv.AppendUint(append(b, ",priority="...), uint64(l.Priority), 10)
	b = l.Cookie.Append(append(b, ",cookie="...))
	b = append(b, ",eth_type="+ethType+",nw_proto="...)
	b = strconv.AppendInt(b, int64(num), 10)
	b = append(b, ","+src+","+dst...)
	b = l.ServiceIP.AppendTo(b)
	b = append(b, ","+tp+"_dst="...)
	b = strconv.AppendUint(b, uint64(l.ServicePort), 10)
	b = strconv.AppendUint(append(b, ",load:0x"...), uint64(l.LoadValue), 16)
	b = strconv.AppendUint(append(b, "->NXM_NX_REG"...), uint64(l.LoadReg), 10)
	return append(b, "[])"...)
}

// Controller sends the packet to the controller with Userdata, rate
// limited by meter MeterID (userdata printed in dotted hex, as OVS does).
type Controller struct {
	Userdata string
	MeterID  uint32
}

func (c Controller) appendAction(b []byte) []byte {
	b = append(b, "controller(userdata="...)
	for i := 0; i < len(c.Userdata); i++ {
		if i > 0 {
			b = append(b, '.')
		}
		b = hex.AppendEncode(b, []byte{c.Userdata[i]})
	}
	b = strconv.AppendUint(append(b, ",meter_id="...), uint64(c.MeterID), 10)
	return append(b, ')')
}

// AppendActions renders an action list ("drop" when empty).
func AppendActions(b []byte, actions []Action) []byte {
	if len(actions) == 0 {
		return append(b, "drop"...)
	}
	for i, a := range actions {
		if i > 0 {
			b = append(b, ',')
		}
		b = a.appendAction(b)
	}
	return b
}

// AppendConjunctions renders a conjunction-only action list.
func AppendConjunctions(b []byte, cs []Conjunction) []byte {
	for i, c := range cs {
		if i > 0 {
			b = append(b, ',')
		}
		b = c.appendAction(b)
	}
	return b
}

// ActionsText renders an action list.
func ActionsText(actions []Action) string { return string(AppendActions(nil, actions)) }
