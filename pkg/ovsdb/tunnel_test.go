package ovsdb

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

var flowBased = map[string]string{"remote_ip": "flow", "key": "flow"}

func TestEnsureTunnelPort(t *testing.T) {
	s, c := newBridge(t)
	ctx := ctxT(t, 60*time.Second)

	of, err := c.EnsureTunnelPort(ctx, br, "gnv0", "geneve", flowBased, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if of != 4096 {
		t.Errorf("ofport %d, want the requested 4096", of)
	}
	if got := vsctl(t, s, "get", "Interface", "gnv0", "type", "options", "ofport_request", "ofport"); got !=
		"geneve\n{key=flow, remote_ip=flow}\n4096\n4096" {
		t.Errorf("interface row:\n%s", got)
	}
	if out, err := s.Ofctl("-O", "OpenFlow15", "show", br); err != nil || !strings.Contains(out, " 4096(gnv0):") {
		t.Errorf("ofctl show lacks gnv0 as 4096: %v\n%s", err, out)
	}

	// Idempotent: no transaction at all.
	before := vsctl(t, s, "get", "Open_vSwitch", ".", "next_cfg")
	if of2, err := c.EnsureTunnelPort(ctx, br, "gnv0", "geneve", flowBased, 4096); err != nil || of2 != of {
		t.Fatalf("second EnsureTunnelPort: ofport %d, %v", of2, err)
	}
	if after := vsctl(t, s, "get", "Open_vSwitch", ".", "next_cfg"); after != before {
		t.Errorf("idempotent EnsureTunnelPort wrote: next_cfg %s -> %s", before, after)
	}

	// Changed behind our back, then wanted differently: fixed in place.
	tests := []struct {
		name    string
		drift   []string // ovs-vsctl set Interface gnv0 ...
		kind    string
		options map[string]string
		request int
		want    string // type, options, ofport_request
	}{
		{"options drifted", []string{"options:key=5", "options:csum=true"}, "geneve", flowBased, 4096,
			"geneve\n{key=flow, remote_ip=flow}\n4096"},
		{"type drifted", []string{"type=vxlan"}, "geneve", flowBased, 4096,
			"geneve\n{key=flow, remote_ip=flow}\n4096"},
		{"other type wanted", nil, "vxlan", map[string]string{"remote_ip": "flow"}, 4096,
			"vxlan\n{remote_ip=flow}\n4096"},
		{"no ofport_request", nil, "geneve", flowBased, 0,
			"geneve\n{key=flow, remote_ip=flow}\n[]"},
		{"new ofport_request", nil, "geneve", flowBased, 4000,
			"geneve\n{key=flow, remote_ip=flow}\n4000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.drift != nil {
				sub := c.Subscribe()
				drain(sub)
				vsctl(t, s, append([]string{"set", "Interface", "gnv0"}, tc.drift...)...)
				waitSignal(t, sub, "drift")
			}
			of, err := c.EnsureTunnelPort(ctx, br, "gnv0", tc.kind, tc.options, tc.request)
			if err != nil {
				t.Fatal(err)
			}
			if got := vsctl(t, s, "get", "Interface", "gnv0", "type", "options", "ofport_request"); got != tc.want {
				t.Errorf("interface row:\n%s\nwant\n%s", got, tc.want)
			}
			if got := vsctl(t, s, "get", "Interface", "gnv0", "ofport"); got != strconv.Itoa(of) || of <= 0 {
				t.Errorf("returned ofport %d, OVSDB has %s", of, got)
			}
			if tc.request != 0 && of != tc.request {
				t.Errorf("ofport %d, want the requested %d", of, tc.request)
			}
			if got := vsctl(t, s, "list-ports", br); got != "gnv0" {
				t.Errorf("ports %q: the port was duplicated", got)
			}
		})
	}

	// The requested number is taken: OVS picks another, and that is what
	// EnsureTunnelPort reports. (Another UDP port: OVS refuses a second
	// tunnel port with the same configuration, tested below.)
	if err := s.AddInternalPort(br, "taken", 4096); err != nil {
		t.Fatal(err)
	}
	of3, err := c.EnsureTunnelPort(ctx, br, "gnv1", "geneve", map[string]string{"remote_ip": "flow", "dst_port": "6082"}, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if got := vsctl(t, s, "get", "Interface", "gnv1", "ofport"); of3 == 4096 || of3 <= 0 || got != strconv.Itoa(of3) {
		t.Errorf("gnv1 with 4096 taken: returned %d, OVSDB has %s", of3, got)
	}
	t.Logf("requested 4096 while taken: ovs-vswitchd assigned %d", of3)

	// Errors.
	if err := c.EnsureBridge(ctx, "br-other", "netdev", nil); err != nil {
		t.Fatal(err)
	}
	errTests := []struct {
		name, bridge, port, kind string
		request                  int
		want                     string
	}{
		{"empty name", br, "", "geneve", 0, "empty port name"},
		{"empty type", br, "gnv2", "", 0, "empty interface type"},
		{"request too big", br, "gnv2", "geneve", 65280, "outside 1..65279"},
		{"request negative", br, "gnv2", "geneve", -1, "outside 1..65279"},
		{"missing bridge", "br-none", "gnv2", "geneve", 0, `bridge "br-none" does not exist`},
		{"port of another bridge", "br-other", "gnv0", "geneve", 0, `exists on bridge "br-int"`},
		{"unknown type", br, "gnv2", "nosuchtype", 0, "cannot create nosuchtype port gnv2"},
		{"same tunnel configuration as gnv0", br, "gnv3", "geneve", 0, "cannot create geneve port gnv3 on br-int: could not add network device gnv3 to ofproto (File exists)"},
	}
	for _, tc := range errTests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.EnsureTunnelPort(ctxT(t, 20*time.Second), tc.bridge, tc.port, tc.kind, flowBased, tc.request)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}

	// DeletePort: gone, twice is fine, another bridge's or a missing port too.
	for _, p := range []string{"gnv0", "gnv0", "gnv2", "gnv3", "nosuch"} {
		if err := c.DeletePort(ctx, br, p); err != nil {
			t.Fatalf("DeletePort(%s): %v", p, err)
		}
	}
	if err := c.DeletePort(ctx, "br-other", "gnv1"); err != nil {
		t.Fatalf("DeletePort from the wrong bridge: %v", err)
	}
	if got := vsctl(t, s, "list-ports", br); got != "gnv1\ntaken" {
		t.Errorf("ports after delete: %q", got)
	}
	if out, _ := s.Vsctl("--if-exists", "get", "Interface", "gnv0", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("interface gnv0 still exists: %q", out)
	}
	// And it can come back.
	if of, err := c.EnsureTunnelPort(ctx, br, "gnv0", "geneve", flowBased, 4097); err != nil || of != 4097 {
		t.Errorf("re-created gnv0: ofport %d, %v", of, err)
	}
}

// localMAC reads the MAC of the bridge's LOCAL device in the switch's netns.
func localMAC(t *testing.T, netns string) string {
	t.Helper()
	out := run(t, "ip", "-n", netns, "-o", "link", "show", br)
	i := strings.Index(out, "link/ether ")
	if i < 0 {
		t.Fatalf("no MAC in %q", out)
	}
	return strings.Fields(out[i:])[1]
}

func TestSetBridgeHWAddr(t *testing.T) {
	s, c := newBridge(t)
	ctx := ctxT(t, 60*time.Second)
	vsctl(t, s, "set", "Bridge", br, "other_config:keep=me")

	for _, mac := range []string{"0a:58:0a:5b:01:01", "0a:58:0a:5b:02:01"} {
		hw, _ := net.ParseMAC(mac)
		if err := c.SetBridgeHWAddr(ctx, br, hw); err != nil {
			t.Fatal(err)
		}
		if got := vsctl(t, s, "get", "Bridge", br, "other_config"); got != fmt.Sprintf(`{hwaddr=%q, keep=me}`, mac) {
			t.Errorf("other_config %s", got)
		}
		// SetBridgeHWAddr waited for ovs-vswitchd: the device has it now.
		if got := localMAC(t, s.NetNS); got != mac {
			t.Errorf("LOCAL device MAC %s, want %s", got, mac)
		}
	}

	before := vsctl(t, s, "get", "Open_vSwitch", ".", "next_cfg")
	hw, _ := net.ParseMAC("0a:58:0a:5b:02:01")
	if err := c.SetBridgeHWAddr(ctx, br, hw); err != nil {
		t.Fatal(err)
	}
	if after := vsctl(t, s, "get", "Open_vSwitch", ".", "next_cfg"); after != before {
		t.Errorf("idempotent SetBridgeHWAddr wrote: next_cfg %s -> %s", before, after)
	}

	for _, bad := range []net.HardwareAddr{nil, {1, 2, 3, 4, 5, 6}, {0, 0, 0, 0, 0, 0}, {0x0a, 0x58, 1, 2, 3, 4, 5, 6}} {
		if err := c.SetBridgeHWAddr(ctx, br, bad); err == nil || !strings.Contains(err.Error(), "not a unicast Ethernet address") {
			t.Errorf("SetBridgeHWAddr(%v): %v", bad, err)
		}
	}
	if err := c.SetBridgeHWAddr(ctx, "br-none", hw); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing bridge: %v", err)
	}
}

func TestSetMTURequest(t *testing.T) {
	s, c := newBridge(t)
	ctx := ctxT(t, 60*time.Second)
	if err := c.SetMTURequest(ctx, br, 1450); err != nil {
		t.Fatal(err)
	}
	mtu := func() string {
		out := run(t, "ip", "-n", s.NetNS, "-o", "link", "show", br)
		f := strings.Fields(out[strings.Index(out, " mtu "):])
		return f[1]
	}
	if got := mtu(); got != "1450" {
		t.Errorf("LOCAL MTU %s after SetMTURequest(1450)", got)
	}
	// A port with a larger MTU does not drag LOCAL up (it would without
	// mtu_request: ovs-vswitchd uses the smallest MTU of the other ports).
	addVeth(t, s, "big")
	vsctl(t, s, "add-port", br, "big")
	eventually(t, "port big added", func() error {
		if p, ok := c.Port(br, "big"); !ok || p.OFPort <= 0 {
			return fmt.Errorf("port %+v", p)
		}
		return nil
	})
	if got := mtu(); got != "1450" {
		t.Errorf("LOCAL MTU %s after adding a 1500-byte port", got)
	}
	before := vsctl(t, s, "get", "Open_vSwitch", ".", "next_cfg")
	if err := c.SetMTURequest(ctx, br, 1450); err != nil {
		t.Fatal(err)
	}
	if after := vsctl(t, s, "get", "Open_vSwitch", ".", "next_cfg"); after != before {
		t.Errorf("idempotent SetMTURequest wrote: next_cfg %s -> %s", before, after)
	}
	for _, tc := range []struct {
		iface string
		mtu   int
		want  string
	}{{br, 0, "not a valid MTU"}, {br, 70000, "not a valid MTU"}, {"nosuch", 1400, "does not exist"}} {
		if err := c.SetMTURequest(ctx, tc.iface, tc.mtu); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetMTURequest(%s, %d): %v", tc.iface, tc.mtu, err)
		}
	}
}
