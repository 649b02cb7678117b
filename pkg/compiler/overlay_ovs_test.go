package compiler_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/flowsync"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// TestOverlayTraces installs an overlay node's flows on a userspace switch
// with a flow-based Geneve port (through the agent's installer: OVS takes
// them and dumps them back as compiled) and traces packets to and from
// the tunnel.
func TestOverlayTraces(t *testing.T) {
	const tun = 4096
	c := model.NewCluster(model.ModeV1)
	c.AddNode(mustNode("node-1", []string{"172.29.1.2"}, "10.91.1.0/24"))
	c.AddNode(mustNode("node-2", []string{"172.29.2.2"}, "10.91.2.0/24"))
	c.AddNode(mustNode("node-3", []string{"172.29.3.2"}, "10.91.3.0/24"))
	// An IPv6 underlay endpoint carrying both families.
	c.AddNode(mustNode("node-4", []string{"fd00:29:4::2"}, "10.91.4.0/24", "fd00:91:4::/64"))
	pod := func(name, node, ip string, lbl labels.Set) {
		c.AddPod(&model.Pod{UID: "uid-" + name, Namespace: "x", Name: name, Node: node, Labels: lbl,
			IPs: []netip.Addr{netip.MustParseAddr(ip)}, Phase: "Running"})
	}
	pod("server", "node-1", "10.91.1.10", labels.Set{"app": "server"}) // isolated: ingress from app=client only
	pod("open", "node-1", "10.91.1.11", labels.Set{"app": "open"})     // not isolated
	pod("client", "node-2", "10.91.2.10", labels.Set{"app": "client"})
	pod("other", "node-2", "10.91.2.11", labels.Set{"app": "other"})
	pod("client3", "node-3", "10.91.3.10", labels.Set{"app": "client"})
	pod("client4", "node-4", "10.91.4.10", labels.Set{"app": "client"})
	c.AddPolicy(&model.Policy{Namespace: "x", Name: "server", APIVersion: "networking.k8s.io/v1",
		PodSelector: labels.SelectorFromSet(labels.Set{"app": "server"}), AffectsIngress: true,
		Ingress: []model.Rule{{Peers: []model.Peer{{PodSelector: labels.SelectorFromSet(labels.Set{"app": "client"})}}}}})
	cfg := overlayConfig()
	cfg.Overlay.TunnelPort = tun
	cfg.Bindings = compiler.DefaultBindings(c, "node-1", nil, tun)
	res, err := compiler.Compile(c, cfg)
	if err != nil {
		t.Fatal(err)
	}

	sw := ovstest.Start(t)
	if err := sw.AddBridge("br-int"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"x/server", "x/open"} {
		if err := sw.AddInternalPort("br-int", strings.TrimPrefix(key, "x/"), int(cfg.Bindings[key].OFPort)); err != nil {
			t.Fatal(err)
		}
	}
	// A flow-based Geneve port: real on the netdev datapath, no underlay
	// needed for tracing.
	if _, err := sw.Vsctl("add-port", "br-int", "gnv0", "--", "set", "interface", "gnv0", "type=geneve",
		"options:remote_ip=flow", fmt.Sprintf("ofport_request=%d", tun)); err != nil {
		t.Fatal(err)
	}
	if got, err := sw.Vsctl("get", "interface", "gnv0", "ofport"); err != nil || strings.TrimSpace(got) != fmt.Sprint(tun) {
		t.Fatalf("gnv0 ofport %q, %v", got, err)
	}
	inst := &flowsync.Installer{Bridge: "br-int", RunDir: sw.Dir}
	if _, err := inst.Sync(t.Context(), res.Flows); err != nil {
		t.Fatalf("OVS refused the overlay flows: %v", err)
	}
	dumped, err := inst.Dump(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d := flowsync.Diff(res.Flows, dumped); len(d) != 0 || len(dumped) != len(res.Flows) {
		t.Fatalf("OVS holds %d flows, %d compiled; %d differ: %v", len(dumped), len(res.Flows), len(d), d)
	}
	if st, err := inst.Sync(t.Context(), res.Flows); err != nil || st != (flowsync.SyncStats{Unchanged: len(res.Flows)}) {
		t.Errorf("second Sync: %v, %v (OVS prints a flow differently from how we compile it)", st, err)
	}

	server, open := cfg.Bindings["x/server"], cfg.Bindings["x/open"]
	fromPod := func(b compiler.Binding, src, dst string) string {
		return fmt.Sprintf("in_port=%d,tcp,dl_src=%s,dl_dst=0a:58:0a:5b:01:01,nw_src=%s,nw_dst=%s,tcp_src=40000,tcp_dst=80", b.OFPort, b.MAC, src, dst)
	}
	fromTunnel := func(tunSrc, src, dst string) string {
		return fmt.Sprintf("in_port=%d,tun_src=%s,tun_dst=172.29.1.2,tcp,dl_src=0a:58:0a:5b:02:0a,dl_dst=0a:58:0a:5b:02:01,nw_src=%s,nw_dst=%s,tcp_src=40000,tcp_dst=80", tun, tunSrc, src, dst)
	}
	fromTunnel6 := func(tunSrc, src, dst string) string {
		return fmt.Sprintf("in_port=%d,tun_ipv6_src=%s,tun_ipv6_dst=fd00:29:1::2,tcp,dl_src=0a:58:0a:5b:04:0a,dl_dst=0a:58:0a:5b:04:01,nw_src=%s,nw_dst=%s,tcp_src=40000,tcp_dst=80", tun, tunSrc, src, dst)
	}
	tests := []struct {
		name string
		flow string
		// want: "tunnel T" (set tun_dst=T, output to the tunnel), a port
		// name (delivered there), or "drop".
		want string
	}{
		{"(a) local pod to remote pod", fromPod(open, "10.91.1.11", "10.91.2.10"), "tunnel 172.29.2.2"},
		{"(a) local pod to node-3's pod", fromPod(server, "10.91.1.10", "10.91.3.10"), "tunnel 172.29.3.2"},
		{"(d) local pod to a remote node's InternalIP", fromPod(open, "10.91.1.11", "172.29.3.2"), "tunnel 172.29.3.2"},
		{"local pod to a local pod stays local", fromPod(open, "10.91.1.11", "10.91.1.10"), "drop"}, // server isolated, open not a client
		{"(b) allowed remote client to isolated pod", fromTunnel("172.29.2.2", "10.91.2.10", "10.91.1.10"), "server"},
		{"(b) node-3's client to isolated pod", fromTunnel("172.29.3.2", "10.91.3.10", "10.91.1.10"), "server"},
		{"(b) remote pod the rule does not allow", fromTunnel("172.29.2.2", "10.91.2.11", "10.91.1.10"), "drop"},
		{"(b) remote node's host to isolated pod", fromTunnel("172.29.2.2", "172.29.2.2", "10.91.1.10"), "drop"},
		{"(b) remote gateway to isolated pod", fromTunnel("172.29.2.2", "10.91.2.1", "10.91.1.10"), "drop"},
		{"(b) remote pod to open pod", fromTunnel("172.29.2.2", "10.91.2.11", "10.91.1.11"), "open"},
		{"(b) remote node's host to open pod", fromTunnel("172.29.2.2", "172.29.2.2", "10.91.1.11"), "open"},
		{"remote pod to this node's host", fromTunnel("172.29.2.2", "10.91.2.11", "172.29.1.2"), "br-int"},
		{"(a) local pod to a pod behind an IPv6 endpoint", fromPod(server, "10.91.1.10", "10.91.4.10"), "tunnel fd00:29:4::2"},
		{"(b) IPv6 endpoint's client to isolated pod", fromTunnel6("fd00:29:4::2", "10.91.4.10", "10.91.1.10"), "server"},
		{"(c) IPv6 endpoint sending node-2's pod address", fromTunnel6("fd00:29:4::2", "10.91.2.10", "10.91.1.11"), "drop"},
		{"(c) node-4's pod address from an IPv4 endpoint", fromTunnel("172.29.2.2", "10.91.4.10", "10.91.1.11"), "drop"},
		{"(c) unknown tunnel source", fromTunnel("172.29.9.2", "10.91.2.10", "10.91.1.10"), "drop"},
		{"(c) unknown tunnel source to open pod", fromTunnel("172.29.9.2", "10.91.2.10", "10.91.1.11"), "drop"},
		{"(c) node-3 sending node-2's pod address", fromTunnel("172.29.3.2", "10.91.2.10", "10.91.1.11"), "drop"},
		{"(c) node-2 sending an address outside its CIDR", fromTunnel("172.29.2.2", "10.91.3.10", "10.91.1.11"), "drop"},
		{"(c) node-2 sending node-3's InternalIP", fromTunnel("172.29.2.2", "172.29.3.2", "10.91.1.11"), "drop"},
		{"(c) node-2 sending a local pod's address", fromTunnel("172.29.2.2", "10.91.1.10", "10.91.1.11"), "drop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := sw.Trace("br-int", tt.flow)
			if err != nil {
				t.Fatal(err)
			}
			got := "drop"
			switch {
			case strings.Contains(tr.Raw, fmt.Sprintf("output:%d", tun)) && strings.Contains(tr.Raw, "->tun_"):
				// The datapath part of a tunnel output depends on the
				// underlay (none here); the OpenFlow actions say where.
				i := strings.LastIndex(tr.Raw, "set_field:")
				dst, _, _ := strings.Cut(tr.Raw[i+len("set_field:"):], "->tun_")
				got = "tunnel " + dst
			case !tr.Dropped:
				got = strings.Join(tr.OutputNames, ",")
			}
			t.Logf("%s → %s (datapath: %s)", tt.flow, got, strings.Join(tr.Passes, " | "))
			if got != tt.want {
				t.Errorf("%s: got %s, want %s\n%s", tt.flow, got, tt.want, tr.Raw)
			}
			if tt.want != "drop" && strings.Contains(tt.flow, "tun_src") && !strings.Contains(tr.Raw, "set_field:0a:58:0a:5b:01:01->eth_dst") {
				t.Errorf("tunnel packet not readdressed to the gateway MAC:\n%s", tr.Raw)
			}
		})
	}
}
