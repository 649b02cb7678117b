package inspect

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
	"github.com/ovs-netpol/ovs-netpol/pkg/ovsdb"
)

// overlayCluster: node-1 (this node) and two remote nodes of the Geneve
// overlay, node-4 without a podCIDR (no tunnel to it), node-5 whose
// podCIDR kube-apiserver accepts and normalize.Node does not (host bits
// set: the agent treats it as absent). x/server admits role=client pods of
// x on TCP 80; role=client pods may only reach app=server pods on TCP 80.
const overlayCluster = `
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDR: 10.91.1.0/24, podCIDRs: [10.91.1.0/24]}
status: {addresses: [{type: InternalIP, address: 172.29.1.2}, {type: Hostname, address: node-1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
spec: {podCIDR: 10.91.2.0/24, podCIDRs: [10.91.2.0/24]}
status: {addresses: [{type: InternalIP, address: 172.29.2.2}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-3}
spec: {podCIDR: 10.91.3.0/24, podCIDRs: [10.91.3.0/24]}
status: {addresses: [{type: InternalIP, address: 172.29.3.2}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-4}
status: {addresses: [{type: InternalIP, address: 172.29.4.2}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-5}
spec: {podCIDR: 10.91.5.7/24, podCIDRs: [10.91.5.7/24]}
status: {addresses: [{type: InternalIP, address: 172.29.5.2}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Namespace
metadata: {name: w}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: x, uid: uid-server, labels: {app: server}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.91.1.10, podIPs: [{ip: 10.91.1.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: x, uid: uid-client, labels: {role: client}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.91.1.11, podIPs: [{ip: 10.91.1.11}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: w, uid: uid-other}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.91.1.12, podIPs: [{ip: 10.91.1.12}]}
---
apiVersion: v1
kind: Pod
metadata: {name: remote-client, namespace: x, uid: uid-remote-client, labels: {role: client}}
spec: {nodeName: node-2, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.91.2.10, podIPs: [{ip: 10.91.2.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: remote-stranger, namespace: w, uid: uid-remote-stranger, labels: {role: client}}
spec: {nodeName: node-2, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.91.2.11, podIPs: [{ip: 10.91.2.11}]}
---
apiVersion: v1
kind: Pod
metadata: {name: far, namespace: x, uid: uid-far, labels: {app: server}}
spec: {nodeName: node-3, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.91.3.10, podIPs: [{ip: 10.91.3.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: nowhere, namespace: x, uid: uid-nowhere, labels: {app: server}}
spec: {nodeName: node-4, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.91.4.10, podIPs: [{ip: 10.91.4.10}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-ingress, namespace: x}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{protocol: TCP, port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress, namespace: x}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {}, podSelector: {matchLabels: {app: server}}}]
    ports: [{protocol: TCP, port: 80}]
`

const (
	overlayTunnelPort = 4096
	overlayGatewayMAC = "0a:58:0a:5b:01:01"
)

// overlayNode is node-1 of overlayCluster on a real ovs-vswitchd, set up as
// the agent sets up an overlay node: its pods attached as our CNI attaches
// them, a flow-based Geneve port, the agent's configuration (with the
// overlay) published, the agent's flows installed; and an underlay the
// userspace datapath encapsulates into: br-phy holding 172.29.1.2/24 with
// a default route via 172.29.1.1 (whose MAC is set in OVS's neighbour
// table), so that a packet sent into the tunnel is really sent.
func overlayNode(t *testing.T) (*Explainer, *NodeView, *ovstest.Switch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sw := ovstest.Start(t)
	for _, br := range []string{"br-int", "br-phy"} {
		if err := sw.AddBridge(br); err != nil {
			t.Fatal(err)
		}
	}
	ports := []struct {
		ns, name, mac string
		port          int
	}{{"x", "server", "0a:58:0a:5b:01:0a", 10}, {"x", "client", "0a:58:0a:5b:01:0b", 11}, {"w", "other", "0a:58:0a:5b:01:0c", 12}}
	for _, p := range ports {
		if _, err := sw.Vsctl("--", "add-port", "br-int", p.name, "--", "set", "Interface", p.name, "type=internal",
			fmt.Sprintf("ofport_request=%d", p.port),
			fmt.Sprintf("external_ids:%q=%s", ovsdb.KeyPodNamespace, p.ns),
			fmt.Sprintf("external_ids:%q=%s", ovsdb.KeyPodName, p.name),
			fmt.Sprintf("external_ids:%q=%q", ovsdb.KeyAttachedMAC, p.mac)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sw.Vsctl("--", "add-port", "br-int", "ovs-netpol-gnv0", "--", "set", "Interface", "ovs-netpol-gnv0",
		"type=geneve", "options:remote_ip=flow", "options:local_ip=flow", fmt.Sprintf("ofport_request=%d", overlayTunnelPort)); err != nil {
		t.Fatal(err)
	}
	// The underlay: br-phy's LOCAL port holds the node's InternalIP; phy0
	// stands for the NIC (NORMAL floods the encapsulated packet there).
	if err := sw.AddInternalPort("br-phy", "phy0", 1); err != nil {
		t.Fatal(err)
	}
	if err := sw.AddFlows("br-phy", "table=0,priority=0 actions=NORMAL\n"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"addr", "add", "172.29.1.2/24", "dev", "br-phy"},
		{"link", "set", "br-phy", "up"},
		{"route", "add", "default", "via", "172.29.1.1"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", sw.NetNS}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	db, err := ovsdb.Connect(ctx, sw.DBSock(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ac := AgentConfig{Node: "node-1", Mode: model.ModeV1, GatewayPort: compiler.PortLocal,
		NodeIPs: []netip.Addr{netip.MustParseAddr("172.29.1.2")}, CTZone: compiler.DefaultCTZone,
		TunnelPort: overlayTunnelPort, GatewayMAC: overlayGatewayMAC}
	if err := PublishAgentConfig(ctx, db, "br-int", ac); err != nil {
		t.Fatal(err)
	}
	db.Close()
	objs := manifestObjects(t, overlayCluster)
	var v *NodeView
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if v, err = OpenNodeView(ctx, Bridge{RunDir: sw.Dir}, objs); err != nil {
			t.Fatal(err)
		}
		if len(v.Bindings) == len(ports) {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("bindings %v", v.Bindings)
		}
	}
	if err := sw.InstallBundle("br-int", v.Node.Result.Text(false)); err != nil {
		t.Fatal(err)
	}
	// The next hop's MAC: OVS resolves the tunnel's underlay itself.
	if err := pollSwitch(func() error {
		if _, err := sw.Appctl("ovs/route/lookup", "172.29.3.2"); err != nil {
			return err
		}
		_, err := sw.Appctl("tnl/arp/set", "br-phy", "172.29.1.1", "0a:58:ac:1d:01:01")
		return err
	}); err != nil {
		t.Fatalf("underlay route: %v", err)
	}
	e, _, err := NewExplainer(objs, model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	return e, v, sw
}

// pollSwitch retries f for a few seconds (OVS learns the kernel's routes
// asynchronously).
func pollSwitch(f func() error) error {
	var err error
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(20 * time.Millisecond) {
		if err = f(); err == nil {
			return nil
		}
	}
	return err
}

// nodeFlows returns the compiled tunnel flows of a remote node.
func nodeFlows(v *NodeView, node string) []openflow.Flow {
	var out []openflow.Flow
	for _, f := range v.Node.Result.Flows {
		if f.Cookie == compiler.NodeCookie(node) {
			out = append(out, f)
		}
	}
	return out
}

// The compiled view of an overlay node is the agent's: the remote nodes'
// tunnel flows are there and named as the compiler names them, on the live
// bridge too; a node without a podCIDR and one the agent treats as absent
// have none; a remote pod's listing shows its node's tunnel flows.
func TestOverlayFlowsOnOVS(t *testing.T) {
	_, v, _ := overlayNode(t)
	ctx := context.Background()
	if got := strings.Join(v.Node.Warnings, "\n"); !strings.Contains(got, "node node-5") || !strings.Contains(got, "treats the node as absent") {
		t.Errorf("no warning about node-5's podCIDR: %q", got)
	}
	if _, ok := v.Node.Cluster.Nodes["node-5"]; ok {
		t.Error("node-5 (podCIDR with host bits set) is in the compiled view")
	}
	live, err := v.Bridge.Flows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byOrigin := map[string]int{}
	for _, f := range live {
		if strings.Contains(v.Node.Origin(f), "remote node") {
			byOrigin[v.Node.Origin(f)]++
		}
	}
	t.Logf("live tunnel flows by origin: %v (%d flows on the bridge)", byOrigin, len(live))
	// Per remote node: its podCIDR and its InternalIP, each admitted from
	// its endpoint (table 0) and sent to it (table 60).
	want := map[string]int{"remote node node-2": 4, "remote node node-3": 4}
	if fmt.Sprint(byOrigin) != fmt.Sprint(want) {
		t.Errorf("live flows by origin %v, want %v", byOrigin, want)
	}
	for _, node := range []string{"node-1", "node-4", "node-5"} {
		if fl := nodeFlows(v, node); len(fl) != 0 {
			t.Errorf("%s has tunnel flows: %v", node, fl)
		}
	}
	var farFlows []string
	for _, f := range live {
		if v.Node.OfPod(f, "x/far") {
			farFlows = append(farFlows, f.String()+" ["+v.Node.Origin(f)+"]")
		}
	}
	t.Logf("flows of x/far (node-3):\n%s", strings.Join(farFlows, "\n"))
	tunnelFlows := 0
	for _, f := range farFlows {
		if strings.Contains(f, "10.91.3.0/24") && strings.HasSuffix(f, "[remote node node-3]") {
			tunnelFlows++
		}
	}
	if tunnelFlows != 2 {
		t.Errorf("%d of node-3's pod CIDR flows listed for x/far, want 2 (in and out)", tunnelFlows)
	}
}

// explain on an overlay node: a local pod to a remote pod leaves through
// the tunnel to that node (egress decided here, ingress there); a remote
// pod's connection arrives from its node's tunnel endpoint (ingress here).
func TestOverlayExplainOnOVS(t *testing.T) {
	e, v, _ := overlayNode(t)
	ctx := context.Background()
	tun := strconv.Itoa(overlayTunnelPort)
	cases := []struct {
		name, from, to string
		port           int32
		// outputs and delivered are the trace's; enforces what this node
		// decides; from and to the tunnel's other ends ("" none); text
		// must be in the rendered explanation.
		outputs   []string
		delivered bool
		enforces  string
		tunFrom   string
		tunTo     string
		text      []string
	}{
		{"local client to the remote server", "x/client", "x/far", 80, []string{tun}, true, "egress", "", "node-3",
			[]string{"the packet leaves through the tunnel to node node-3 (tun_dst 172.29.3.2): its ingress is decided on node node-3",
				"bridge: sent into the tunnel (port " + tun + ", tun_dst 172.29.3.2); model: delivered to port " + tun + ", the tunnel to node node-3",
				"agrees with the model", "origin: remote node node-3"}},
		{"local client to a remote non-server: egress denied here", "x/client", "x/remote-client", 80, nil, false, "egress", "", "",
			[]string{"isolation of pod x/client for egress"}},
		{"unisolated local pod to a remote pod", "w/other", "x/remote-client", 54321, []string{tun}, true, "egress", "", "node-2",
			[]string{"tunnel to node node-2 (tun_dst 172.29.2.2)"}},
		{"local pod to a remote node's host", "w/other", "172.29.3.2", 22, []string{tun}, true, "egress", "", "node-3",
			[]string{"origin: remote node node-3"}},
		{"remote client to the local server", "x/remote-client", "x/server", 80, []string{"10"}, true, "ingress", "node-2", "",
			[]string{"the packet arrives through the tunnel from node node-2 (tun_src 172.29.2.2): its egress was decided on node node-2",
				"origin: remote node node-2", "policy x/server-ingress ingress rule 0"}},
		{"remote client of another namespace: ingress denied here", "w/remote-stranger", "x/server", 80, nil, false, "ingress", "node-2", "",
			[]string{"isolation of pod x/server for ingress"}},
		{"remote node's gateway address (its host) to an open local pod", "10.91.2.1", "w/other", 80, []string{"12"}, true, "ingress", "node-2", "",
			[]string{"from node node-2 (10.91.2.1)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x, err := e.Explain(c.from, c.to, model.TCP, c.port)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.TraceOn(ctx, v, x); err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := WriteExplanation(&b, x); err != nil {
				t.Fatal(err)
			}
			text := b.String()
			t.Logf("\n%s", text)
			tr := x.Trace
			if tr == nil {
				t.Fatalf("not traced: %v", x.Notes)
			}
			if x.Mismatch != "" || !tr.Agrees {
				t.Errorf("mismatch: %s", x.Mismatch)
			}
			if !slices.Equal(tr.Outputs, c.outputs) || tr.Delivered != c.delivered || tr.Enforces != c.enforces {
				t.Errorf("outputs %v delivered %v enforces %q, want %v %v %q", tr.Outputs, tr.Delivered, tr.Enforces, c.outputs, c.delivered, c.enforces)
			}
			endName := func(e *TunnelEnd) string {
				if e == nil {
					return ""
				}
				return e.Node
			}
			if endName(tr.TunnelFrom) != c.tunFrom || endName(tr.TunnelTo) != c.tunTo {
				t.Errorf("tunnel from %q to %q, want %q, %q", endName(tr.TunnelFrom), endName(tr.TunnelTo), c.tunFrom, c.tunTo)
			}
			for _, s := range c.text {
				if !strings.Contains(text, s) {
					t.Errorf("explanation lacks %q", s)
				}
			}
		})
	}
	// A pod of a node without a tunnel is not traced, and the note says why.
	x, err := e.Explain("x/client", "x/nowhere", model.TCP, 80)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.TraceOn(ctx, v, x); err != nil {
		t.Fatal(err)
	}
	if x.Trace != nil || !strings.Contains(strings.Join(x.Notes, "\n"), "node node-4, to which node node-1 has no tunnel") {
		t.Errorf("x/nowhere traced (%+v) or no note: %v", x.Trace, x.Notes)
	}
}

// verify on an overlay node agrees with the agent's flows, judging cells
// to remote pods by this node's egress; a hand-deleted or altered tunnel
// flow of node-3 is caught for exactly the allowed cells to node-3's pod,
// and a deleted admission of node-2's traffic for those from its pods.
func TestOverlayVerifyOnOVS(t *testing.T) {
	e, v, sw := overlayNode(t)
	ctx := context.Background()
	res, err := e.Verify(ctx, v, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s%s", res.Matrix(), res.Summary())
	if len(res.Mismatches) != 0 {
		t.Fatalf("%d mismatches on the agent's own flows", len(res.Mismatches))
	}
	if n := res.Skipped[skipNoTunnel]; n != 1 {
		t.Errorf("skipped %v, want x/nowhere (node-4 has no podCIDR) as the one pod without a tunnel", res.Skipped)
	}
	// Peers: 3 local pods, 3 remote ones, the node, external: local↔local
	// 3·2, local→others 3·5, others→local 5·3; 4 probes (TCP and UDP 80
	// and 54321).
	if want := (6 + 15 + 15) * 4; res.Traces != want {
		t.Errorf("%d traces, want %d", res.Traces, want)
	}
	tunneled, allowedToFar := 0, 0
	for _, c := range res.Cells {
		if strings.HasPrefix(c.Bridge, "sent into the tunnel") {
			tunneled++
		}
		if c.To == "x/far" && c.ModelAllowed {
			allowedToFar++
		}
	}
	t.Logf("%d of %d cells sent into the tunnel; %d allowed cells to x/far", tunneled, res.Traces, allowedToFar)
	if tunneled == 0 || allowedToFar == 0 {
		t.Fatal("nothing was sent into the tunnel: the overlay is not exercised")
	}

	// matchesPrefix: the flow matches the CIDR as its source or destination.
	matchesPrefix := func(f openflow.Flow, cidr string) bool {
		p := netip.MustParsePrefix(cidr)
		for _, fd := range f.Match.Fields() {
			switch fd := fd.(type) {
			case openflow.IPSrc:
				if netip.Prefix(fd) == p {
					return true
				}
			case openflow.IPDst:
				if netip.Prefix(fd) == p {
					return true
				}
			}
		}
		return false
	}
	forward := func(node, cidr string) openflow.Flow {
		for _, f := range nodeFlows(v, node) {
			if f.Table == compiler.TableForward && matchesPrefix(f, cidr) {
				return f
			}
		}
		t.Fatalf("no forward flow of %s for %s", node, cidr)
		return openflow.Flow{}
	}
	admit := func(node, cidr string) openflow.Flow {
		for _, f := range nodeFlows(v, node) {
			if f.Table == compiler.TableClassify && matchesPrefix(f, cidr) {
				return f
			}
		}
		t.Fatalf("no classify flow of %s for %s", node, cidr)
		return openflow.Flow{}
	}
	strict := func(f openflow.Flow) string {
		return fmt.Sprintf("table=%d,priority=%d,%s", f.Table, f.Priority, f.Match)
	}
	toFar := func(c VerifyCell) bool { return c.To == "x/far" && c.ModelAllowed }
	fromNode2 := func(c VerifyCell) bool {
		return (c.From == "x/remote-client" || c.From == "w/remote-stranger") && c.ModelAllowed
	}
	cases := []struct {
		name   string
		change string // an ovs-ofctl add-flows line
		want   func(VerifyCell) bool
		// reason must be in every reported mismatch
		reason string
	}{
		{"node-3's pod CIDR forward flow deleted", "delete_strict " + strict(forward("node-3", "10.91.3.0/24")), toFar,
			"should leave by port " + strconv.Itoa(overlayTunnelPort) + " only"},
		{"node-3's pod CIDR sent to a wrong endpoint", fmt.Sprintf("modify_strict %s actions=set_field:172.29.9.9->tun_dst,output:%d",
			strict(forward("node-3", "10.91.3.0/24")), overlayTunnelPort), toFar, "node node-3's tunnel endpoint is 172.29.3.2"},
		{"node-2's pod CIDR no longer admitted from the tunnel", "delete_strict " + strict(admit("node-2", "10.91.2.0/24")), fromNode2,
			"the model allows it (ingress here) but the bridge dropped"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := sw.InstallBundle("br-int", v.Node.Result.Text(false)); err != nil {
				t.Fatal(err)
			}
			if err := sw.AddFlows("br-int", c.change+"\n"); err != nil {
				t.Fatal(err)
			}
			res, err := e.Verify(ctx, v, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("after %s:\n%s", c.change, res.Summary())
			got := map[string]bool{}
			for _, m := range res.Mismatches {
				key := fmt.Sprintf("%s -> %s %s", m.From, m.To, m.Probe)
				got[key] = true
				if !c.want(m) {
					t.Errorf("mismatch %s reported: %s", key, m.Mismatch)
				}
				if !strings.Contains(m.Mismatch, c.reason) {
					t.Errorf("mismatch %s: %q does not say %q", key, m.Mismatch, c.reason)
				}
			}
			wanted := 0
			for _, cell := range res.Cells {
				if !c.want(cell) {
					continue
				}
				wanted++
				if key := fmt.Sprintf("%s -> %s %s", cell.From, cell.To, cell.Probe); !got[key] {
					t.Errorf("mismatch %s not reported", key)
				}
			}
			t.Logf("%d mismatches reported, %d expected", len(res.Mismatches), wanted)
			if wanted == 0 {
				t.Fatal("no cell is affected: the case tests nothing")
			}
		})
	}
}
