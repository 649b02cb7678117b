package inspect

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/flowsync"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
	"github.com/ovs-netpol/ovs-netpol/pkg/ovsdb"
)

// udpDatagram is an Ethernet frame holding an IPv4 UDP datagram with a
// valid IP header checksum (conntrack checks it) and no UDP checksum
// (allowed for IPv4).
func udpDatagram(srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16) string {
	payload := []byte("inspect")
	frame := make([]byte, 14+20+8+len(payload))
	copy(frame[0:6], []byte{0x02, 0, 0, 0, 0, 0xff}) // delivery goes by IP, not by MAC
	copy(frame[6:12], srcMAC)
	binary.BigEndian.PutUint16(frame[12:], 0x0800)
	ip := frame[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	s, d := src.As4(), dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := frame[34:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	return hex.EncodeToString(frame)
}

// TestBridgeOnOVS runs the whole read path against a real ovs-vswitchd: the
// agent's published settings read back through Bridge.AgentConfig, the pod
// ports our CNI plugin would write (external_ids on Interface rows) read by
// Ports and Bindings, the compiled flows installed and read back by Flows
// exactly (every one named by its origin), and the packet counters of the
// conj_id flow growing by the number of new connections its rule allowed,
// while a denied connection and the other policy's rule count nothing.
func TestBridgeOnOVS(t *testing.T) {
	s := ovstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db, err := ovsdb.Connect(ctx, s.DBSock(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.EnsureBridge(ctx, "br-int", "netdev", compiler.TableNames); err != nil {
		t.Fatal(err)
	}
	br := Bridge{Name: "br-int", RunDir: s.Dir}

	if _, err := br.AgentConfig(ctx); err == nil || !strings.Contains(err.Error(), "is not set") {
		t.Fatalf("before the agent published: %v, want 'is not set'", err)
	}
	want := AgentConfig{Node: "n1", Mode: model.ModeV1, GatewayPort: compiler.PortLocal, UplinkPort: 2, CTZone: 64000,
		NodeIPs: []netip.Addr{netip.MustParseAddr("192.168.1.1")},
		// Meters without an audited namespace add no flow.
		AuditDenyMeter: compiler.DefaultAuditDenyMeter, AuditAllowMeter: compiler.DefaultAuditAllowMeter}
	if err := PublishAgentConfig(ctx, db, "br-int", want); err != nil {
		t.Fatal(err)
	}
	got, err := br.AgentConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("AgentConfig read back %+v, want %+v", got, want)
	}

	// The pods' ports as the CNI plugin leaves them (internal ports stand
	// in for veths: only the Interface rows matter here).
	mac := map[string]string{"client": "02:00:00:00:00:02", "server": "02:00:00:00:00:03"}
	for i, name := range []string{"client", "server"} {
		ifname := "veth-" + name
		if err := s.AddInternalPort("br-int", ifname, 3+i); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Vsctl("set", "Interface", ifname,
			"external_ids:"+ovsdb.KeyPodNamespace+"=a", "external_ids:"+ovsdb.KeyPodName+"="+name,
			"external_ids:"+ovsdb.KeyPodUID+"=u-"+name, "external_ids:"+ovsdb.KeyAttachedMAC+"="+mac[name]); err != nil {
			t.Fatal(err)
		}
	}
	ports, err := br.Ports(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var gotPorts []string
	for _, p := range ports {
		gotPorts = append(gotPorts, fmt.Sprintf("%s %s uid=%s port=%d mac=%s", p.Interface, p.Key(), p.UID, p.OFPort, p.MAC))
	}
	wantPorts := []string{
		"veth-client a/client uid=u-client port=3 mac=02:00:00:00:00:02",
		"veth-server a/server uid=u-server port=4 mac=02:00:00:00:00:03",
	}
	if !reflect.DeepEqual(gotPorts, wantPorts) {
		t.Fatalf("Ports:\n%s\nwant\n%s", strings.Join(gotPorts, "\n"), strings.Join(wantPorts, "\n"))
	}
	bindings, err := br.Bindings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bindings) != 2 || bindings["a/server"].OFPort != 4 || bindings["a/client"].MAC.String() != mac["client"] {
		t.Fatalf("Bindings: %v", bindings)
	}

	objs, err := manifest.Parse("cluster.yaml", []byte(annotateCluster))
	if err != nil {
		t.Fatal(err)
	}
	n, err := CompileNode(objs, got, bindings)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InstallBundle("br-int", n.Result.Text(false)); err != nil {
		t.Fatal(err)
	}
	foreign := "table=0,priority=1,cookie=0x1234,arp actions=drop"
	if err := s.AddFlows("br-int", foreign); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	flows, err := br.Flows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Flows read %d flows in %v", len(flows), time.Since(start))
	// Read back exactly: the compiled flows render OVS's text, up to the
	// order of the match fields (OVS prints its own).
	installedText := func(f LiveFlow) string {
		return flowsync.InstalledFlow{Table: f.Table, Priority: f.Priority, Cookie: f.Cookie,
			Match: openflow.SortedFields(f.Match), Actions: f.Actions}.String()
	}
	compiledText := func(f openflow.Flow) string {
		return flowsync.InstalledFlow{Table: f.Table, Priority: f.Priority, Cookie: f.Cookie,
			Match: f.Match.Sorted(), Actions: f.ActionsText()}.String()
	}
	var installed, compiled []string
	unknown := 0
	for _, f := range flows {
		if !f.Cookie.IsOurs() {
			unknown++
			if o := n.Origin(f); o != OriginUnknown {
				t.Errorf("foreign flow %s: origin %q", f, o)
			}
			continue
		}
		installed = append(installed, installedText(f))
		if o := n.Origin(f); strings.Contains(o, "unknown") {
			t.Errorf("flow %s: origin %q", f, o)
		}
	}
	for _, f := range n.Result.Flows {
		compiled = append(compiled, compiledText(f))
	}
	sort.Strings(installed)
	sort.Strings(compiled)
	if !reflect.DeepEqual(installed, compiled) {
		t.Fatalf("Flows read back %d of our flows, compiled %d; they differ", len(installed), len(compiled))
	}
	if unknown != 1 {
		t.Errorf("%d foreign flows, want 1", unknown)
	}

	allowID, otherID := conjIDOf(t, n, "a/allow-client"), conjIDOf(t, n, "a/other")
	conjPackets := func() (allow, other uint64) {
		t.Helper()
		fs, err := br.Flows(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, f := range fs {
			switch f.ConjID {
			case allowID:
				allow, seen = f.Packets, seen+1
				if o := n.Origin(f); !strings.HasPrefix(o, "policy a/allow-client ingress rule 0") {
					t.Errorf("conj_id flow of allow-client: origin %q", o)
				}
			case otherID:
				other, seen = f.Packets, seen+1
			}
		}
		if seen != 2 {
			t.Fatalf("%d conj_id flows of the two policies, want 2", seen)
		}
		return allow, other
	}
	client, server := netip.MustParseAddr("10.85.0.2"), netip.MustParseAddr("10.85.0.3")
	clientMAC, _ := net.ParseMAC(mac["client"])
	send := func(sport, dport uint16) {
		t.Helper()
		pkt := udpDatagram(clientMAC, client, server, sport, dport)
		if _, err := s.Ofctl("-O", "OpenFlow15", "packet-out", "br-int", "in_port=3 packet="+pkt+" actions=table"); err != nil {
			t.Fatal(err)
		}
	}
	a0, o0 := conjPackets()
	const allowed = 5
	for i := range allowed {
		send(uint16(40000+i), 5353) // a new connection each: a new source port
	}
	send(41000, 5354) // denied: no rule admits this port
	a1, o1 := conjPackets()
	t.Logf("conj_id %d (allow-client) packets %d -> %d after %d allowed and 1 denied datagrams; conj_id %d (other) %d -> %d",
		allowID, a0, a1, allowed, otherID, o0, o1)
	if a1-a0 != allowed || o1 != o0 {
		t.Errorf("allow-client's conj_id flow counted %d (want %d), other's %d (want 0)", a1-a0, allowed, o1-o0)
	}
}

func TestAgentConfigValidation(t *testing.T) {
	good := AgentConfig{Node: "n1", Mode: model.ModeV1, GatewayPort: compiler.PortLocal, CTZone: 64000}
	tests := []struct {
		name   string
		change func(*AgentConfig)
		ok     bool
	}{
		{"good", func(*AgentConfig) {}, true},
		{"uplink port", func(a *AgentConfig) { a.UplinkPort = 7 }, true},
		{"no node", func(a *AgentConfig) { a.Node = "" }, false},
		{"unknown mode", func(a *AgentConfig) { a.Mode = "v2" }, false},
		{"no mode", func(a *AgentConfig) { a.Mode = "" }, false},
		{"gateway port 0", func(a *AgentConfig) { a.GatewayPort = 0 }, false},
		{"gateway port reserved", func(a *AgentConfig) { a.GatewayPort = 0xff01 }, false},
		{"uplink port reserved", func(a *AgentConfig) { a.UplinkPort = 0xfff0 }, false},
		{"two IPv4 hairpins", func(a *AgentConfig) {
			a.HairpinIPs = []netip.Addr{netip.MustParseAddr("169.254.1.1"), netip.MustParseAddr("169.254.1.2")}
		}, false},
		{"audit mode", func(a *AgentConfig) { a.AuditAll = "deny,allow"; a.AuditDenyMeter = 1 }, true},
		{"bad audit mode", func(a *AgentConfig) { a.AuditAll = "everything" }, false},
		{"multicast hairpin", func(a *AgentConfig) { a.HairpinIPs = []netip.Addr{netip.MustParseAddr("224.0.0.1")} }, false},
		{"node addresses", func(a *AgentConfig) {
			a.NodeIPs = []netip.Addr{netip.MustParseAddr("172.18.0.1"), netip.MustParseAddr("fd00::1")}
		}, true},
		{"node address with a zone", func(a *AgentConfig) { a.NodeIPs = []netip.Addr{netip.MustParseAddr("fe80::1%eth0")} }, false},
		{"empty node address", func(a *AgentConfig) { a.NodeIPs = []netip.Addr{{}} }, false},
		{"empty hairpin address", func(a *AgentConfig) { a.HairpinIPs = []netip.Addr{{}} }, false},
		{"overlay", func(a *AgentConfig) { a.TunnelPort, a.GatewayMAC = 4096, "0a:58:0a:5b:01:01" }, true},
		{"tunnel port without gateway MAC", func(a *AgentConfig) { a.TunnelPort = 4096 }, false},
		{"gateway MAC without tunnel port", func(a *AgentConfig) { a.GatewayMAC = "0a:58:0a:5b:01:01" }, false},
		{"tunnel port LOCAL", func(a *AgentConfig) { a.TunnelPort, a.GatewayMAC = compiler.PortLocal, "0a:58:0a:5b:01:01" }, false},
		{"tunnel port reserved", func(a *AgentConfig) { a.TunnelPort, a.GatewayMAC = 0xff00, "0a:58:0a:5b:01:01" }, false},
		{"tunnel port is the gateway port", func(a *AgentConfig) {
			a.GatewayPort, a.TunnelPort, a.GatewayMAC = 7, 7, "0a:58:0a:5b:01:01"
		}, false},
		{"tunnel and uplink", func(a *AgentConfig) { a.UplinkPort, a.TunnelPort, a.GatewayMAC = 7, 4096, "0a:58:0a:5b:01:01" }, false},
		{"multicast gateway MAC", func(a *AgentConfig) { a.TunnelPort, a.GatewayMAC = 4096, "01:00:5e:00:00:01" }, false},
		{"zero gateway MAC", func(a *AgentConfig) { a.TunnelPort, a.GatewayMAC = 4096, "00:00:00:00:00:00" }, false},
		{"long gateway MAC", func(a *AgentConfig) { a.TunnelPort, a.GatewayMAC = 4096, "0a:58:0a:5b:01:01:00:00" }, false},
		{"gateway MAC with a flow's text", func(a *AgentConfig) { a.TunnelPort, a.GatewayMAC = 4096, "0a:58:0a:5b:01:01,output:1" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := good
			tt.change(&a)
			if err := a.validate(); (err == nil) != tt.ok {
				t.Errorf("validate: %v, want ok %v", err, tt.ok)
			}
		})
	}
	// NewAgentConfig and Compiler are inverse on what they carry.
	cfg := compiler.Config{Node: "n1", GatewayPort: 5, UplinkPort: 6, CTZone: 7,
		NodeIPs:     []netip.Addr{netip.MustParseAddr("192.168.1.1")},
		HairpinIPv4: netip.MustParseAddr("169.254.9.9"), HairpinIPv6: netip.MustParseAddr("fd00::9"),
		Audit: compiler.AuditConfig{All: model.AuditDeny | model.AuditAllow, DenyMeter: 11, AllowMeter: 12}}
	back := NewAgentConfig(cfg, model.ModeV16).Compiler(nil)
	if !reflect.DeepEqual(back, cfg) {
		t.Errorf("round trip: %+v, want %+v", back, cfg)
	}
	overlay := compiler.Config{Node: "n1", GatewayPort: compiler.PortLocal, CTZone: 7,
		Overlay: compiler.Overlay{TunnelPort: 4096, GatewayMAC: net.HardwareAddr{0x0a, 0x58, 10, 91, 1, 1}}}
	ac := NewAgentConfig(overlay, model.ModeV1)
	if ac.TunnelPort != 4096 || ac.GatewayMAC != "0a:58:0a:5b:01:01" {
		t.Errorf("overlay published as tunnel port %d, gateway MAC %q", ac.TunnelPort, ac.GatewayMAC)
	}
	if err := ac.validate(); err != nil {
		t.Errorf("the agent's own overlay configuration is refused: %v", err)
	}
	if back := ac.Compiler(nil); !reflect.DeepEqual(back, overlay) {
		t.Errorf("overlay round trip: %+v, want %+v", back, overlay)
	}
}

// A published configuration is bounded before it is compiled with: its
// size, and its node addresses (each one is a flow of the view).
func TestParseAgentConfigBounds(t *testing.T) {
	many := make([]string, 100000)
	for i := range many {
		many[i] = fmt.Sprintf(`"10.%d.%d.%d"`, i>>16, (i>>8)&255, i&255)
	}
	tests := []struct {
		name, text, want string
	}{
		{"good", `{"node":"n1","mode":"v1","gatewayPort":2,"ctZone":64000,"nodeIPs":["172.18.0.1"]}`, ""},
		{"huge", `{"node":"` + strings.Repeat("n", 1<<20) + `","mode":"v1","gatewayPort":2,"ctZone":1}`, "more than the 65536"},
		{"many node addresses", `{"node":"n1","mode":"v1","gatewayPort":2,"ctZone":1,"nodeIPs":[` + strings.Join(many[:1000], ",") + `]}`, "1000 node addresses"},
		{"unknown field", `{"node":"n1","mode":"v1","gatewayPort":2,"ctZone":1,"x\n":1}`, "unknown field"},
		{"overlay", `{"node":"n1","mode":"v1","gatewayPort":65534,"ctZone":1,"tunnelPort":4096,"gatewayMAC":"0a:58:0a:5b:01:01"}`, ""},
		{"huge gateway MAC", `{"node":"n1","mode":"v1","gatewayPort":65534,"ctZone":1,"tunnelPort":4096,"gatewayMAC":"` + strings.Repeat("0a:", 20000) + `\n"}`, "not a MAC address"},
		{"gateway MAC with a line break", `{"node":"n1","mode":"v1","gatewayPort":65534,"ctZone":1,"tunnelPort":4096,"gatewayMAC":"0a:58\n"}`, "not a unicast Ethernet address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseAgentConfig(tt.text)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if err != nil && strings.ContainsRune(err.Error(), '\n') {
				t.Fatalf("error holds a raw line break: %q", err)
			}
		})
	}
}
