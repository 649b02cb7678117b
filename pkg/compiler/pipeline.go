// Package compiler turns the policy model into the complete, deterministic
// OpenFlow flow set of one node's br-int. It is pure: no I/O, no OVS calls.
// The pipeline is documented table by table in flows/README.md.
package compiler

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

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

// PortLocal is OpenFlow's LOCAL port: the bridge's own internal interface.
const PortLocal = openflow.PortLocal

// Bit regNodeLocalBit of register regNodeLocalReg marks a packet sent by
// this node's host (matchNodeLocal, set by setNodeLocal).
const (
	regNodeLocalBit uint32 = 0x1
	regNodeLocalReg uint8  = 0
)

var (
	matchNodeLocal = openflow.Reg{N: regNodeLocalReg, Value: regNodeLocalBit, Mask: regNodeLocalBit}
	setNodeLocal   = openflow.SetReg{N: regNodeLocalReg, Value: regNodeLocalBit, Mask: regNodeLocalBit}
)

// ctMarkBalanced marks, in ct_mark, a connection that the load balancer
// committed (with its DNAT) but that policy has not allowed yet: its
// packets are checked again, its replies dropped, until the commit of
// table 50 clears the mark. Connections committed only by table 50 (all
// connections not to a Service) never carry it.
const ctMarkBalanced uint32 = 0x2

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
func PortName(p uint32) string { return string(openflow.AppendPort(nil, p)) }

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

var pipelineCookie = openflow.NewCookie(openflow.KindPipeline, "pipeline")

// do is an action list.
func do(actions ...openflow.Action) openflow.Actions { return openflow.Do(actions...) }

// gotoTables[t] is the action list "goto_table:t", built once: many flows
// (every pod's, every rule's allow) share it.
var gotoTables = func() (g [256]openflow.Actions) {
	for t := range g {
		g[t] = openflow.Do(openflow.Goto(t))
	}
	return g
}()

// gotoTable is the shared action list "goto_table:t".
func gotoTable(t uint8) openflow.Actions { return gotoTables[t] }

// pipelineFlows is the fixed skeleton: table defaults and conntrack.
func pipelineFlows(cfg Config) []openflow.Flow {
	f := func(table uint8, prio uint16, match openflow.Match, actions ...openflow.Action) openflow.Flow {
		return openflow.Flow{Table: table, Priority: prio, Cookie: pipelineCookie, Match: match, Actions: openflow.Do(actions...)}
	}
	var all openflow.Match
	ctNAT := openflow.CT{HasTable: true, Table: TableCTState, Zone: cfg.CTZone, NAT: true}
	// Table 50's commit allows the connection: it clears the balancer's mark.
	commit := do(openflow.CT{Commit: true, Zone: cfg.CTZone, SetMark: openflow.SetCTMark{Value: 0, Mask: ctMarkBalanced}}, openflow.Goto(TableForward))
	allowed := openflow.CTMark{Value: 0, Mask: ctMarkBalanced}
	state := func(s openflow.CTStates) openflow.CTState { return openflow.CTState{Set: s | openflow.CTTracked} }
	ip, ipv6 := openflow.NewMatch(openflow.IP), openflow.NewMatch(openflow.IPv6)
	return []openflow.Flow{
		// Anything no port-security flow vouched for is spoofed or unknown.
		f(TableClassify, PrioDefault, all),

		// nat: packets of connections the balancer DNATed are translated
		// (replies back to the Service address) before anything else looks.
		f(TableConntrack, prioConntrack, ip, ctNAT),
		f(TableConntrack, prioConntrack, ipv6, ctNAT),
		f(TableConntrack, PrioDefault, all),

		f(TableCTState, prioCTInvalid, openflow.NewMatch(state(openflow.CTInvalid))),
		f(TableCTState, prioCTEstablished, openflow.NewMatch(state(openflow.CTEstablished), allowed), openflow.Goto(TableForward)),
		f(TableCTState, prioCTRelated, openflow.NewMatch(state(openflow.CTRelated), allowed), openflow.Goto(TableForward)),
		// A reply in a connection policy has not allowed (only balanced).
		f(TableCTState, prioCTReply, openflow.NewMatch(state(openflow.CTReply))),
		// New connections, and balanced ones policy has not allowed yet.
		f(TableCTState, prioCTNew, openflow.NewMatch(state(0)), openflow.Goto(TableService)),
		f(TableCTState, PrioDefault, all),

		// Not to a Service port (or already DNATed): policy.
		f(TableService, PrioDefault, all, openflow.Goto(TableEgress)),
		f(TableAffinityLearn, PrioDefault, all, openflow.Goto(TableEgress)),

		f(TableEgress, PrioDefault, all, openflow.Goto(TableIngress)),
		f(TableIngress, PrioDefault, all, openflow.Goto(TableCommit)),

		{Table: TableCommit, Priority: prioCommit, Cookie: pipelineCookie, Match: ip, Actions: commit},
		{Table: TableCommit, Priority: prioCommit, Cookie: pipelineCookie, Match: ipv6, Actions: commit},
		f(TableCommit, PrioDefault, all),

		// Destinations that are not pods of this node leave through the host.
		f(TableForward, PrioDefault, all, openflow.Output(cfg.GatewayPort)),
	}
}

var nodeCookie = openflow.NewCookie(openflow.KindNode, "node")

// nodeFlows admit traffic from the gateway and uplink ports and mark the
// node's own traffic.
func nodeFlows(cfg Config) []openflow.Flow {
	f := func(table uint8, prio uint16, match openflow.Match, actions openflow.Actions) openflow.Flow {
		return openflow.Flow{Table: table, Priority: prio, Cookie: nodeCookie, Match: match, Actions: actions}
	}
	gw := openflow.InPort(cfg.GatewayPort)
	mark := do(setNodeLocal, openflow.Goto(TableConntrack))
	var out []openflow.Flow
	if len(cfg.NodeIPs) == 0 {
		out = append(out,
			f(TableClassify, prioClassifyNodeIP, openflow.NewMatch(openflow.IP, gw), mark),
			f(TableClassify, prioClassifyNodeIP, openflow.NewMatch(openflow.IPv6, gw), mark))
	}
	for _, ip := range cfg.NodeIPs {
		out = append(out, f(TableClassify, prioClassifyNodeIP, openflow.NewMatch(ipProto(ip), gw, openflow.HostSrc(ip)), mark))
	}
	ports := []openflow.InPort{gw}
	if cfg.UplinkPort != 0 {
		ports = append(ports, openflow.InPort(cfg.UplinkPort))
	}
	toConntrack, toForward := gotoTable(TableConntrack), gotoTable(TableForward)
	for _, port := range ports {
		out = append(out,
			f(TableClassify, prioClassifyGateway, openflow.NewMatch(openflow.IP, port), toConntrack),
			f(TableClassify, prioClassifyGateway, openflow.NewMatch(openflow.IPv6, port), toConntrack),
			f(TableClassify, prioClassifyGateway, openflow.NewMatch(openflow.ARP, port), toForward),
			f(TableClassify, prioClassifyND, openflow.NewMatch(openflow.ICMP6, port, ndSolicit, icmpCode0), toForward),
			f(TableClassify, prioClassifyND, openflow.NewMatch(openflow.ICMP6, port, ndAdvert, icmpCode0), toForward),
		)
	}
	out = append(out, f(TableIngress, PrioInfra, openflow.NewMatch(matchNodeLocal), gotoTable(TableCommit)))
	return out
}

// ICMPv6 neighbour discovery messages (code 0).
const (
	ndRouterSolicit = openflow.ICMPType(133)
	ndSolicit       = openflow.ICMPType(135)
	ndAdvert        = openflow.ICMPType(136)
	icmpCode0       = openflow.ICMPCode(0)
)

// ipProto is the protocol shorthand of an address's family (ip or ipv6).
func ipProto(a netip.Addr) openflow.Protocol { return openflow.IPProtocol(a.Is6()) }

// srcMatch and dstMatch match a source or destination prefix of its
// family, after the fields in between ("ip,IN_BETWEEN,nw_src=P"): host
// prefixes print without a mask, /0 as no field.
func srcMatch(p netip.Prefix, between ...openflow.Field) openflow.Match {
	return prefixMatch(p, openflow.IPSrc(p), between)
}

func dstMatch(p netip.Prefix, between ...openflow.Field) openflow.Match {
	return prefixMatch(p, openflow.IPDst(p), between)
}

func prefixMatch(p netip.Prefix, field openflow.Field, between []openflow.Field) openflow.Match {
	var buf [6]openflow.Field
	fields := append(append(append(buf[:0], ipProto(p.Addr())), between...), field)
	return openflow.NewMatch(fields...)
}

// host is an address's host prefix.
func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
