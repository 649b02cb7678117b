package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/ovsdb"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// AgentConfig is what the agent published on its bridge at start (OVSDB
// Bridge external_ids "ovs-netpol-config", JSON): enough to compile exactly
// what it compiles.
type AgentConfig struct {
	Node        string       `json:"node"`
	Mode        model.Mode   `json:"mode"`
	GatewayPort uint32       `json:"gatewayPort"`
	UplinkPort  uint32       `json:"uplinkPort,omitempty"`
	NodeIPs     []netip.Addr `json:"nodeIPs,omitempty"`
	CTZone      uint16       `json:"ctZone"`
	HairpinIPs  []netip.Addr `json:"hairpinIPs,omitempty"`
	// The audit log's settings (compiler.AuditConfig): they add flows.
	// AuditAll is model.AuditMode's text ("deny", "allow", "deny,allow";
	// empty: off); a zero meter disables that verdict's audit flows.
	AuditAll        string `json:"auditAll,omitempty"`
	AuditDenyMeter  uint32 `json:"auditDenyMeter,omitempty"`
	AuditAllowMeter uint32 `json:"auditAllowMeter,omitempty"`
	// The Geneve overlay (compiler.Overlay): the flow-based tunnel port's
	// OpenFlow number (0: no overlay) and this node's gateway MAC, which
	// the tunnel flows write.
	TunnelPort uint32 `json:"tunnelPort,omitempty"`
	GatewayMAC string `json:"gatewayMAC,omitempty"`
}

// NewAgentConfig is the AgentConfig of an agent compiling with cfg (its
// Bindings are not part of it: they are read from OVSDB) in mode.
func NewAgentConfig(cfg compiler.Config, mode model.Mode) AgentConfig {
	a := AgentConfig{Node: cfg.Node, Mode: mode, GatewayPort: cfg.GatewayPort, UplinkPort: cfg.UplinkPort,
		NodeIPs: cfg.NodeIPs, CTZone: cfg.CTZone,
		AuditDenyMeter: cfg.Audit.DenyMeter, AuditAllowMeter: cfg.Audit.AllowMeter}
	if cfg.Audit.All != 0 {
		a.AuditAll = cfg.Audit.All.String()
	}
	a.TunnelPort = cfg.Overlay.TunnelPort
	if len(cfg.Overlay.GatewayMAC) > 0 {
		a.GatewayMAC = cfg.Overlay.GatewayMAC.String()
	}
	for _, ip := range []netip.Addr{cfg.HairpinIPv4, cfg.HairpinIPv6} {
		if ip.IsValid() {
			a.HairpinIPs = append(a.HairpinIPs, ip)
		}
	}
	return a
}

// Compiler is the compiler configuration the agent uses, with bindings.
func (a AgentConfig) Compiler(bindings map[string]compiler.Binding) compiler.Config {
	cfg := compiler.Config{Node: a.Node, GatewayPort: a.GatewayPort, UplinkPort: a.UplinkPort,
		NodeIPs: a.NodeIPs, CTZone: a.CTZone, Bindings: bindings,
		Audit: compiler.AuditConfig{DenyMeter: a.AuditDenyMeter, AllowMeter: a.AuditAllowMeter}}
	if a.AuditAll != "" {
		// validate checked it; an unparsable value audits nothing.
		cfg.Audit.All, _ = model.ParseAuditMode(a.AuditAll)
	}
	cfg.Overlay.TunnelPort = a.TunnelPort
	if a.GatewayMAC != "" {
		// validate checked it; an unparsable value leaves it unset, which
		// the compiler refuses with a tunnel port.
		cfg.Overlay.GatewayMAC, _ = net.ParseMAC(a.GatewayMAC)
	}
	for _, ip := range a.HairpinIPs {
		if ip.Is4() {
			cfg.HairpinIPv4 = ip
		} else {
			cfg.HairpinIPv6 = ip
		}
	}
	return cfg
}

// validate checks a published configuration before anything compiles with
// it: it was read from a database anyone on the node can write.
func (a AgentConfig) validate() error {
	if a.Node == "" {
		return errors.New("no node name")
	}
	if _, err := model.ParseMode(string(a.Mode)); err != nil || a.Mode == "" {
		return fmt.Errorf("isolation mode %s: want %s or %s", printable.String(string(a.Mode)), model.ModeV1, model.ModeV16)
	}
	if _, err := compiler.ParsePort(strconv.FormatUint(uint64(a.GatewayPort), 10)); err != nil {
		return fmt.Errorf("gateway port: %w", err)
	}
	if a.UplinkPort != 0 {
		if _, err := compiler.ParsePort(strconv.FormatUint(uint64(a.UplinkPort), 10)); err != nil {
			return fmt.Errorf("uplink port: %w", err)
		}
	}
	if a.AuditAll != "" {
		if _, err := model.ParseAuditMode(a.AuditAll); err != nil {
			return fmt.Errorf("audit mode: %w", err)
		}
	}
	if err := a.validateOverlay(); err != nil {
		return err
	}
	if len(a.NodeIPs) > maxNodeIPs {
		return fmt.Errorf("%d node addresses, more than %d", len(a.NodeIPs), maxNodeIPs)
	}
	for _, ip := range a.NodeIPs {
		// Flows match them: an address OVS cannot parse makes a view
		// that is not the agent's.
		if !ip.IsValid() || ip.Zone() != "" {
			return fmt.Errorf("node address %s is not an IP address without a zone", printable.String(ip.String()))
		}
	}
	var v4, v6 int
	for _, ip := range a.HairpinIPs {
		if !ip.IsValid() || ip.Zone() != "" || ip.IsUnspecified() || ip.IsMulticast() || ip.Is4In6() {
			return fmt.Errorf("hairpin address %s is not a unicast address", printable.String(ip.String()))
		}
		if ip.Is4() {
			v4++
		} else {
			v6++
		}
	}
	if v4 > 1 || v6 > 1 {
		return errors.New("more than one hairpin address of one family")
	}
	return nil
}

// validateOverlay checks the tunnel port and gateway MAC as the compiler
// will take them (compiler.Config.Overlay): a port a Geneve interface can
// have, not the gateway's, not with an uplink (the flat-L2 mode), and a
// unicast MAC with it.
func (a AgentConfig) validateOverlay() error {
	switch {
	case a.TunnelPort == 0 && a.GatewayMAC == "":
		return nil
	case a.TunnelPort == 0:
		return errors.New("a gateway MAC without a tunnel port")
	case a.GatewayMAC == "":
		return fmt.Errorf("tunnel port %d without a gateway MAC", a.TunnelPort)
	case a.UplinkPort != 0:
		return fmt.Errorf("tunnel port %d and uplink port %d: the overlay and the flat-L2 uplink exclude each other", a.TunnelPort, a.UplinkPort)
	case a.TunnelPort == a.GatewayPort:
		return fmt.Errorf("tunnel port %d is the gateway port", a.TunnelPort)
	}
	if p, err := compiler.ParsePort(strconv.FormatUint(uint64(a.TunnelPort), 10)); err != nil || p == compiler.PortLocal {
		return fmt.Errorf("tunnel port %d: not a port a Geneve interface can have (want 1..65279)", a.TunnelPort)
	}
	if len(a.GatewayMAC) > maxMACText {
		return fmt.Errorf("gateway MAC: %d bytes, not a MAC address", len(a.GatewayMAC))
	}
	mac, err := net.ParseMAC(a.GatewayMAC)
	if err != nil || len(mac) != 6 || mac[0]&1 != 0 || bytes.Equal(mac, make(net.HardwareAddr, 6)) {
		return fmt.Errorf("gateway MAC %s is not a unicast Ethernet address", printable.String(a.GatewayMAC))
	}
	return nil
}

// PublishAgentConfig writes a to the bridge's external_ids (the agent does
// it at start, after the bridge exists).
func PublishAgentConfig(ctx context.Context, db *ovsdb.Client, bridge string, a AgentConfig) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return db.SetBridgeExternalID(ctx, bridge, ovsdb.KeyAgentConfig, string(data))
}

// Bridge is one node's live bridge (RunDir holds BRIDGE.mgmt, db.sock,
// ovs-vswitchd.PID.ctl).
type Bridge struct {
	Name   string // default br-int
	RunDir string // default /var/run/openvswitch
	OVSDB  string // default unix:RUNDIR/db.sock
}

// Defaults of Bridge's fields.
const (
	DefaultBridge = "br-int"
	DefaultRunDir = "/var/run/openvswitch"
)

// ovsdbConnectTimeout bounds the wait for OVSDB when the caller's context
// has no deadline of its own: ovsdb.Connect retries until its context ends,
// and a command pointed at the wrong run directory should say so.
const ovsdbConnectTimeout = 5 * time.Second

func (b Bridge) name() string {
	if b.Name == "" {
		return DefaultBridge
	}
	return b.Name
}

func (b Bridge) runDir() string {
	if b.RunDir == "" {
		return DefaultRunDir
	}
	return b.RunDir
}

func (b Bridge) endpoint() string {
	if b.OVSDB != "" {
		return b.OVSDB
	}
	return "unix:" + filepath.Join(b.runDir(), "db.sock")
}

// connect opens OVSDB and checks that the bridge exists.
func (b Bridge) connect(ctx context.Context) (*ovsdb.Client, error) {
	cctx := ctx
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, ovsdbConnectTimeout)
		defer cancel()
	}
	if path, ok := strings.CutPrefix(b.endpoint(), "unix:"); ok {
		// Fail at once on a wrong run directory instead of retrying.
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("OVSDB %s: %w (is Open vSwitch running there? see --ovs-rundir, --ovsdb)", printable.String(b.endpoint()), err)
		}
	}
	db, err := ovsdb.Connect(cctx, b.endpoint(), nil)
	if err != nil {
		return nil, fmt.Errorf("OVSDB %s: %w", printable.String(b.endpoint()), err)
	}
	if !db.HasBridge(b.name()) {
		db.Close()
		return nil, fmt.Errorf("OVSDB %s: no bridge %s", printable.String(b.endpoint()), printable.String(b.name()))
	}
	return db, nil
}

// AgentConfig reads the configuration the agent published on the bridge. An
// agent older than the key, or one that never started on this bridge, has
// published none: that is an error naming the key.
func (b Bridge) AgentConfig(ctx context.Context) (AgentConfig, error) {
	db, err := b.connect(ctx)
	if err != nil {
		return AgentConfig{}, err
	}
	defer db.Close()
	text, ok, err := db.BridgeExternalID(ctx, b.name(), ovsdb.KeyAgentConfig)
	if err != nil {
		return AgentConfig{}, err
	}
	where := fmt.Sprintf("bridge %s external_ids:%s", printable.String(b.name()), ovsdb.KeyAgentConfig)
	if !ok {
		return AgentConfig{}, fmt.Errorf("%s is not set: has ovs-netpol-agent started on this bridge?", where)
	}
	a, err := parseAgentConfig(text)
	if err != nil {
		return AgentConfig{}, fmt.Errorf("%s: %w", where, err)
	}
	return a, nil
}

// Bounds of a published configuration: an agent publishes a few hundred
// bytes and a node has a few addresses; each address is a flow of the
// compiled view, so a configuration written by someone else must not
// decide how much the tools compile.
const (
	maxAgentConfigBytes = 64 << 10
	maxNodeIPs          = 64
	// maxMACText is the longest text net.ParseMAC reads for a 6-byte
	// address (aaaa.bbbb.cccc is shorter).
	maxMACText = len("00:00:00:00:00:00")
)

// parseAgentConfig decodes and validates a published configuration.
func parseAgentConfig(text string) (AgentConfig, error) {
	if len(text) > maxAgentConfigBytes {
		return AgentConfig{}, fmt.Errorf("%d bytes, more than the %d an agent publishes at most", len(text), maxAgentConfigBytes)
	}
	var a AgentConfig
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return AgentConfig{}, errors.New(printable.String(err.Error()))
	}
	if err := a.validate(); err != nil {
		return AgentConfig{}, err
	}
	return a, nil
}

// Port is a pod attached to the bridge (from OVSDB Interface external_ids
// written by our CNI plugin). Only ports with an OpenFlow port number are
// listed.
type Port struct {
	Namespace, Name, UID, Interface string
	OFPort                          uint32
	MAC                             net.HardwareAddr // nil when attached-mac is absent or invalid
}

// Key is the pod's namespace/name.
func (p Port) Key() string { return p.Namespace + "/" + p.Name }

// Ports lists the pods attached to the bridge, sorted by interface name.
func (b Bridge) Ports(ctx context.Context) ([]Port, error) {
	db, err := b.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return ports(db.PodPorts(b.name())), nil
}

func ports(pps []ovsdb.PodPort) []Port {
	out := make([]Port, 0, len(pps))
	for _, pp := range pps {
		out = append(out, Port{Namespace: pp.Namespace, Name: pp.Name, UID: pp.UID, Interface: pp.Interface,
			OFPort: uint32(pp.OFPort), MAC: pp.MAC})
	}
	return out
}

// Bindings are the bridge's pod ports as the agent binds them ("ns/name" →
// port): like the agent, ports without a valid attached-mac are left out
// (they cannot be port-secured, so they get no flows).
func (b Bridge) Bindings(ctx context.Context) (map[string]compiler.Binding, error) {
	ps, err := b.Ports(ctx)
	if err != nil {
		return nil, err
	}
	return BindingsOf(ps), nil
}

// BindingsOf turns ports into compiler bindings, as Bindings does.
func BindingsOf(ps []Port) map[string]compiler.Binding {
	out := map[string]compiler.Binding{}
	for _, p := range ps {
		if p.MAC == nil {
			continue
		}
		out[p.Key()] = compiler.Binding{OFPort: p.OFPort, MAC: p.MAC}
	}
	return out
}
