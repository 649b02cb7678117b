// Package compiler turns the policy model into the complete, deterministic
// OpenFlow flow set of one node's br-int. It is pure: no I/O, no OVS calls.
// The pipeline is documented table by table in flows/README.md.
package compiler

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Tables of the pipeline, in packet order.
const (
	TableClassify  uint8 = 0  // port security: who sent this, with which addresses
	TableConntrack uint8 = 10 // send IP through conntrack
	TableCTState   uint8 = 20 // established/related pass, invalid drop, new → policy
	// Service load balancing of new connections (services.go).
	TableService       uint8 = 25 // a Service port's address: choose a backend (select group)
	TableAffinity      uint8 = 26 // learned: a client's last backend (sessionAffinity ClientIP)
	TableAffinityDNAT  uint8 = 27 // to the remembered backend, or pick one (multipath)
	TableAffinityLearn uint8 = 28 // remember the pick and go to it
	TableEgress        uint8 = 30 // source pod's egress policy
	TableIngress       uint8 = 40 // destination pod's ingress policy
	TableCommit        uint8 = 50 // commit the allowed new connection
	TableForward       uint8 = 60 // deliver by destination address
)

// TableNames maps tables to the names documented in flows/ (and set in
// OVSDB Flow_Table rows by the agent).
var TableNames = map[uint8]string{
	TableClassify:  "classify",
	TableConntrack: "conntrack",
	TableCTState:   "ct_state",

	TableService:       "service",
	TableAffinity:      "affinity",
	TableAffinityDNAT:  "affinity_dnat",
	TableAffinityLearn: "affinity_learn",

	TableEgress:  "egress",
	TableIngress: "ingress",
	TableCommit:  "commit",
	TableForward: "forward",
}

// Priorities in the egress and ingress tables. The gaps are reserved for
// cluster-wide admin policy tiers: Admin above NetworkPolicy, Baseline below
// the NetworkPolicy isolation drop.
const (
	PrioInfra uint16 = 65000 // node-local traffic
	// 50000..59999: reserved for the Admin tier.
	PrioRuleAllow uint16 = 30001 // a rule that constrains only its targets
	PrioRuleConj  uint16 = 30000 // conjunctive rule flows and their conj_id flows
	PrioIsolation uint16 = 20000 // isolated pod: nothing above allowed it
	// 10000..19999: reserved for the Baseline tier.
	PrioDefault uint16 = 0
)

// Priorities in the other tables.
const (
	prioHigh   uint16 = 200
	prioPort   uint16 = 100
	prioPortND uint16 = 110
)

// PortLocal is OpenFlow's LOCAL port: the bridge's own internal interface.
const PortLocal uint32 = 0xfffe

// regNodeLocal marks, in reg0, a packet sent by this node's host.
const regNodeLocal = "0x1/0x1"

// ctMarkBalanced marks, in ct_mark, a connection that the load balancer
// committed (with its DNAT) but that policy has not allowed yet: its
// packets are checked again, its replies dropped, until the commit of
// table 50 clears the mark. Connections committed only by table 50 (all
// connections not to a Service) never carry it.
const ctMarkBalanced = "0x2/0x2"

// Config is what the compiler needs besides the cluster state.
type Config struct {
	// Node is the name of the node whose br-int is compiled.
	Node string
	// GatewayPort is the port to the node's host network (LOCAL by default).
	GatewayPort uint32
	// UplinkPort, when non-zero, reaches other nodes: pods of other nodes are
	// forwarded there, and traffic from it is treated like any remote source.
	UplinkPort uint32
	// NodeIPs are the node's own addresses. Traffic from the gateway port
	// with one of them as source is node-local (always allowed to pods). When
	// empty, everything from the gateway port is node-local.
	NodeIPs []netip.Addr
	// CTZone is the conntrack zone of the bridge.
	CTZone uint16
	// Bindings maps local pods (namespace/name) to their port.
	Bindings map[string]Binding
	// HairpinIPv4 and HairpinIPv6 are the source addresses of a pod's
	// connections to itself through a Service, as the pod sees them
	// (zero: DefaultHairpinIPv4/IPv6).
	HairpinIPv4, HairpinIPv6 netip.Addr
	// MaxConjunctionsPerFlow bounds the conjunction actions of one flow
	// (0: DefaultMaxConjunctionsPerFlow; see tiers.go). Tests lower it to
	// exercise the tiers.
	MaxConjunctionsPerFlow int
	// Audit sends denied (allowed) new connections of audited namespaces'
	// pods to the agent's audit log (see audit.go); zero: no audit flows.
	Audit AuditConfig
	// Overlay, when its TunnelPort is set, reaches the other nodes of the
	// cluster (c.Nodes) through a Geneve tunnel (see overlay.go). It
	// excludes UplinkPort.
	Overlay Overlay
}

// Binding is a local pod's attachment to the bridge.
type Binding struct {
	OFPort uint32
	MAC    net.HardwareAddr
}

// DefaultCTZone is the conntrack zone used when Config.CTZone is 0.
const DefaultCTZone = 64000

func (c *Config) withDefaults() Config {
	out := *c
	if out.GatewayPort == 0 {
		out.GatewayPort = PortLocal
	}
	if out.CTZone == 0 {
		out.CTZone = DefaultCTZone
	}
	if out.MaxConjunctionsPerFlow <= 0 {
		out.MaxConjunctionsPerFlow = DefaultMaxConjunctionsPerFlow
	}
	if !out.HairpinIPv4.IsValid() {
		out.HairpinIPv4 = DefaultHairpinIPv4
	}
	if !out.HairpinIPv6.IsValid() {
		out.HairpinIPv6 = DefaultHairpinIPv6
	}
	return out
}

// PortName renders a port number as ovs-ofctl does.
func PortName(p uint32) string {
	if p == PortLocal {
		return "LOCAL"
	}
	return strconv.FormatUint(uint64(p), 10)
}

// ParsePort accepts a port number or LOCAL.
func ParsePort(s string) (uint32, error) {
	if s == "LOCAL" || s == "local" {
		return PortLocal, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 || n >= 0xff00 && n != uint64(PortLocal) {
		return 0, fmt.Errorf("invalid OpenFlow port %q (want 1..65279 or LOCAL)", s)
	}
	return uint32(n), nil
}

// NodeFlags are a node's settings as the commands take them on their
// command lines.
type NodeFlags struct {
	Node        string
	CTZone      uint16
	GatewayPort string   // a port number or LOCAL
	UplinkPort  string   // a port number, LOCAL, or "" for none
	NodeIPs     []string // addresses
	HairpinIPs  []string // at most one address per family
	TunnelPort  string   // the Geneve port's number, or "" for no overlay
	GatewayMAC  string   // this node's gateway MAC (with TunnelPort)
}

// Config turns the flags into a Config (without bindings); errors name the
// flag.
func (f NodeFlags) Config() (Config, error) {
	cfg := Config{Node: f.Node, CTZone: f.CTZone}
	var err error
	if cfg.GatewayPort, err = ParsePort(f.GatewayPort); err != nil {
		return Config{}, fmt.Errorf("--gateway-port: %w", err)
	}
	if f.UplinkPort != "" {
		if cfg.UplinkPort, err = ParsePort(f.UplinkPort); err != nil {
			return Config{}, fmt.Errorf("--uplink-port: %w", err)
		}
	}
	for _, s := range f.NodeIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return Config{}, fmt.Errorf("--node-ip %q: not an IP address", s)
		}
		cfg.NodeIPs = append(cfg.NodeIPs, ip)
	}
	for _, s := range f.HairpinIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" || ip.IsUnspecified() || ip.IsMulticast() || ip.Is4In6() {
			return Config{}, fmt.Errorf("--hairpin-ip %q: not a unicast IP address", s)
		}
		dst := &cfg.HairpinIPv4
		if ip.Is6() {
			dst = &cfg.HairpinIPv6
		}
		if dst.IsValid() {
			return Config{}, fmt.Errorf("--hairpin-ip %q: one address per family", s)
		}
		*dst = ip
	}
	if f.TunnelPort != "" {
		if cfg.Overlay.TunnelPort, err = ParsePort(f.TunnelPort); err != nil || cfg.Overlay.TunnelPort == PortLocal {
			return Config{}, fmt.Errorf("--tunnel-port: invalid OpenFlow port %q (want 1..65279)", f.TunnelPort)
		}
		if f.GatewayMAC == "" {
			return Config{}, fmt.Errorf("--tunnel-port needs --gateway-mac (this node's gateway MAC)")
		}
	}
	if f.GatewayMAC != "" {
		if f.TunnelPort == "" {
			return Config{}, fmt.Errorf("--gateway-mac is for the overlay: it needs --tunnel-port")
		}
		if cfg.Overlay.GatewayMAC, err = net.ParseMAC(f.GatewayMAC); err != nil {
			return Config{}, fmt.Errorf("--gateway-mac %q: not a MAC address", f.GatewayMAC)
		}
	}
	if err := cfg.checkOverlay(); err != nil {
		return Config{}, fmt.Errorf("--tunnel-port/--gateway-mac: %w", err)
	}
	return cfg, nil
}

// outputAction is an output as OVS prints it (LOCAL has its own action).
func outputAction(p uint32) string {
	if p == PortLocal {
		return "LOCAL"
	}
	return "output:" + PortName(p)
}

func gotoTable(t uint8) string { return "goto_table:" + strconv.Itoa(int(t)) }

var pipelineCookie = openflow.NewCookie(openflow.KindPipeline, "pipeline")

// pipelineFlows is the fixed skeleton: table defaults and conntrack.
func pipelineFlows(cfg Config) []openflow.Flow {
	z := cfg.CTZone
	f := func(table uint8, prio uint16, match, actions string) openflow.Flow {
		return openflow.Flow{Table: table, Priority: prio, Cookie: pipelineCookie, Match: match, Actions: actions}
	}
	// Table 50's commit allows the connection: it clears the balancer's mark.
	commit := fmt.Sprintf("ct(commit,zone=%d,exec(set_field:0/%s->ct_mark)),%s", z, ctMarkBit(ctMarkBalanced), gotoTable(TableForward))
	allowed := "ct_mark=0/" + ctMarkBit(ctMarkBalanced)
	return []openflow.Flow{
		// Anything no port-security flow vouched for is spoofed or unknown.
		f(TableClassify, PrioDefault, "", "drop"),

		// nat: packets of connections the balancer DNATed are translated
		// (replies back to the Service address) before anything else looks.
		f(TableConntrack, prioPort, "ip", fmt.Sprintf("ct(table=%d,zone=%d,nat)", TableCTState, z)),
		f(TableConntrack, prioPort, "ipv6", fmt.Sprintf("ct(table=%d,zone=%d,nat)", TableCTState, z)),
		f(TableConntrack, PrioDefault, "", "drop"),

		f(TableCTState, prioHigh, "ct_state=+inv+trk", "drop"),
		f(TableCTState, prioHigh-10, "ct_state=+est+trk,"+allowed, gotoTable(TableForward)),
		f(TableCTState, prioHigh-20, "ct_state=+rel+trk,"+allowed, gotoTable(TableForward)),
		// A reply in a connection policy has not allowed (only balanced).
		f(TableCTState, prioHigh-30, "ct_state=+rpl+trk", "drop"),
		// New connections, and balanced ones policy has not allowed yet.
		f(TableCTState, 10, "ct_state=+trk", gotoTable(TableService)),
		f(TableCTState, PrioDefault, "", "drop"),

		// Not to a Service port (or already DNATed): policy.
		f(TableService, PrioDefault, "", gotoTable(TableEgress)),
		f(TableAffinityLearn, PrioDefault, "", gotoTable(TableEgress)),

		f(TableEgress, PrioDefault, "", gotoTable(TableIngress)),
		f(TableIngress, PrioDefault, "", gotoTable(TableCommit)),

		f(TableCommit, prioPort, "ip", commit),
		f(TableCommit, prioPort, "ipv6", commit),
		f(TableCommit, PrioDefault, "", "drop"),

		// Destinations that are not pods of this node leave through the host.
		f(TableForward, PrioDefault, "", outputAction(cfg.GatewayPort)),
	}
}

// ctMarkBit is the bit of a "bit/bit" ct_mark constant.
func ctMarkBit(m string) string {
	_, bit, _ := strings.Cut(m, "/")
	return bit
}

var nodeCookie = openflow.NewCookie(openflow.KindNode, "node")

// nodeFlows admit traffic from the gateway and uplink ports and mark the
// node's own traffic.
func nodeFlows(cfg Config) []openflow.Flow {
	f := func(table uint8, prio uint16, match, actions string) openflow.Flow {
		return openflow.Flow{Table: table, Priority: prio, Cookie: nodeCookie, Match: match, Actions: actions}
	}
	gw := "in_port=" + PortName(cfg.GatewayPort)
	mark := "set_field:" + regNodeLocal + "->reg0," + gotoTable(TableConntrack)
	var out []openflow.Flow
	if len(cfg.NodeIPs) == 0 {
		out = append(out, f(TableClassify, prioPort+5, "ip,"+gw, mark), f(TableClassify, prioPort+5, "ipv6,"+gw, mark))
	}
	for _, ip := range cfg.NodeIPs {
		out = append(out, f(TableClassify, prioPort+5, ipMatch(ip, "src", gw), mark))
	}
	ports := []string{gw}
	if cfg.UplinkPort != 0 {
		ports = append(ports, "in_port="+PortName(cfg.UplinkPort))
	}
	for _, in := range ports {
		out = append(out,
			f(TableClassify, prioPort, "ip,"+in, gotoTable(TableConntrack)),
			f(TableClassify, prioPort, "ipv6,"+in, gotoTable(TableConntrack)),
			f(TableClassify, prioPort, "arp,"+in, gotoTable(TableForward)),
			f(TableClassify, prioPortND, "icmp6,"+in+",icmp_type=135,icmp_code=0", gotoTable(TableForward)),
			f(TableClassify, prioPortND, "icmp6,"+in+",icmp_type=136,icmp_code=0", gotoTable(TableForward)),
		)
	}
	out = append(out, f(TableIngress, PrioInfra, "reg0="+regNodeLocal, gotoTable(TableCommit)))
	return out
}

// ipMatch renders "ip,<extra>,nw_<dir>=A" or its IPv6 form for one address.
func ipMatch(ip netip.Addr, dir, extra string) string {
	return prefixMatch(netip.PrefixFrom(ip, ip.BitLen()), dir, extra)
}

// prefixMatch renders a match on a source or destination prefix, in the
// canonical text OVS prints: host prefixes without a mask, /0 as no field.
func prefixMatch(p netip.Prefix, dir, extra string) string {
	proto, field := "ip", "nw_"+dir
	if p.Addr().Is6() {
		proto, field = "ipv6", "ipv6_"+dir
	}
	m := proto
	if extra != "" {
		m += "," + extra
	}
	switch {
	case p.Bits() == 0:
	case p.IsSingleIP():
		m += "," + field + "=" + p.Addr().String()
	default:
		m += "," + field + "=" + p.Masked().String()
	}
	return m
}
