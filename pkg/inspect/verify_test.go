package inspect

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/ovsdb"
)

const seedUplink = 100

// seedNode is node-1 of the seed (plus extraPolicies) on a real
// ovs-vswitchd: its pods attached as our CNI attaches them (OVSDB
// external_ids), the agent's configuration published on the bridge, and
// the flows the agent would install.
func seedNode(t *testing.T) (*Explainer, *NodeView, *ovstest.Switch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sw := ovstest.Start(t)
	if err := sw.AddBridge("br-int"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		name, mac string
		port      int
	}{{"db", "0a:58:0a:f4:01:0a", 10}, {"frontend", "0a:58:0a:f4:01:0b", 11}, {"backend", "0a:58:0a:f4:01:0c", 12}} {
		if _, err := sw.Vsctl("--", "add-port", "br-int", p.name, "--", "set", "Interface", p.name, "type=internal",
			fmt.Sprintf("ofport_request=%d", p.port),
			fmt.Sprintf("external_ids:%q=default", ovsdb.KeyPodNamespace),
			fmt.Sprintf("external_ids:%q=%s", ovsdb.KeyPodName, p.name),
			fmt.Sprintf("external_ids:%q=%q", ovsdb.KeyAttachedMAC, p.mac)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.AddInternalPort("br-int", "uplink", seedUplink); err != nil {
		t.Fatal(err)
	}
	db, err := ovsdb.Connect(ctx, sw.DBSock(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ac := AgentConfig{Node: "node-1", Mode: model.ModeV1, GatewayPort: compiler.PortLocal, UplinkPort: seedUplink,
		NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.1")}, CTZone: compiler.DefaultCTZone}
	if err := PublishAgentConfig(ctx, db, "br-int", ac); err != nil {
		t.Fatal(err)
	}
	db.Close()
	objs := seedObjects(t)
	// Ports get their ofport asynchronously.
	var v *NodeView
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if v, err = OpenNodeView(ctx, Bridge{RunDir: sw.Dir}, objs); err != nil {
			t.Fatal(err)
		}
		if len(v.Bindings) == 3 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("bindings %v", v.Bindings)
		}
	}
	if err := sw.InstallBundle("br-int", v.Node.Result.Text(false)); err != nil {
		t.Fatal(err)
	}
	e, _, err := NewExplainer(objs, model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	e.AddNodeIPs(ac.Node, ac.NodeIPs)
	return e, v, sw
}

func TestExplainTraceOnOVS(t *testing.T) {
	e, v, sw := seedNode(t)
	ctx := context.Background()
	cases := []struct {
		name, from, to string
		proto          model.Protocol
		port           int32
		delivered      bool
		enforces       string
		// origins that must annotate some traversed flow
		origins []string
		backend string
	}{
		{"allowed: frontend to db", "default/frontend", "default/db", model.TCP, 6379, true, "egress and ingress",
			[]string{"policy default/frontend-egress egress rule 0", "policy default/test-network-policy ingress rule 0", "pod default/db"}, ""},
		{"denied: backend to db", "default/backend", "default/db", model.TCP, 6379, false, "egress and ingress",
			[]string{"pod default/db — isolation of pod default/db for ingress (isolated by namespace default is annotated DefaultDeny, policy default/test-network-policy)"}, ""},
		{"denied: frontend egress to the outside on TCP", "default/frontend", "203.0.113.5", model.TCP, 53, false, "egress",
			[]string{"isolation of pod default/frontend for egress (isolated by policy default/frontend-egress)"}, ""},
		{"allowed: frontend to the outside on UDP 53", "default/frontend", "203.0.113.5", model.UDP, 53, true, "egress",
			[]string{"policy default/frontend-egress egress rule 1"}, ""},
		{"allowed: remote client to db, ingress here", "myproject/client", "default/db", model.TCP, 6379, true, "ingress",
			[]string{"policy default/test-network-policy ingress rule 0"}, ""},
		{"denied: remote stranger to db", "other/stranger", "default/db", model.TCP, 6379, false, "ingress", nil, ""},
		{"allowed: node to db", "172.18.0.1", "default/db", model.TCP, 80, true, "ingress", []string{"node node-1"}, ""},
		{"allowed: frontend through the db Service", "default/frontend", "10.96.0.10", model.TCP, 6379, true, "egress and ingress",
			[]string{"service default/db"}, "pod default/db (10.244.1.10) on node node-1 port 6379"},
		// No endpoints: not balanced, the source's egress decides and the
		// host (kube-proxy) would reject it.
		{"denied: frontend to a Service without endpoints (egress)", "default/frontend", "10.96.0.20", model.TCP, 80, false, "egress",
			[]string{"isolation of pod default/frontend for egress"}, ""},
		{"on to the host: backend to a Service without endpoints", "default/backend", "10.96.0.20", model.TCP, 80, true, "egress", nil, ""},
		// internalTrafficPolicy Local, no endpoint here: dropped by the
		// Service's flow.
		{"dropped: no local endpoint", "default/frontend", "10.96.0.21", model.TCP, 8080, false, "the Service's load balancing",
			[]string{"service default/far"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x, err := e.Explain(c.from, c.to, c.proto, c.port)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.TraceOn(ctx, v, x); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := WriteExplanation(&b, x); err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%s", b.String())
			if x.Mismatch != "" || x.Trace == nil || !x.Trace.Agrees {
				t.Fatalf("model and trace disagree: %s", x.Mismatch)
			}
			if x.Trace.Delivered != c.delivered || x.Trace.Enforces != c.enforces || x.Trace.Backend != c.backend {
				t.Fatalf("trace delivered %v enforces %q backend %q, want %v %q %q", x.Trace.Delivered, x.Trace.Enforces, x.Trace.Backend, c.delivered, c.enforces, c.backend)
			}
			for _, o := range c.origins {
				found := false
				for _, s := range x.Trace.Steps {
					found = found || strings.Contains(s.Origin, o)
				}
				if !found {
					t.Errorf("no traversed flow annotated %q", o)
				}
			}
		})
	}
	// Neither end on this node: nothing to trace, and it says so.
	x, err := e.Explain("other/stranger", "myproject/client", model.TCP, 80)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.TraceOn(ctx, v, x); err != nil {
		t.Fatal(err)
	}
	if x.Trace != nil || len(x.Notes) != 1 || !strings.Contains(x.Notes[0], "nothing to trace here") {
		t.Fatalf("two remote pods: trace %+v, notes %q", x.Trace, x.Notes)
	}

	// A pod of this node without a port has no flows: not traced.
	x, err = e.Explain("default/frontend", "default/late", model.TCP, 80)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.TraceOn(ctx, v, x); err != nil {
		t.Fatal(err)
	}
	if x.Trace != nil || len(x.Notes) != 1 || !strings.Contains(x.Notes[0], "pod default/late runs on node node-1 but has no port on its bridge") {
		t.Fatalf("an unattached pod: trace %+v, notes %q", x.Trace, x.Notes)
	}

	// A flow deleted by hand: explain reports both verdicts.
	if _, err := sw.Ofctl("-O", "OpenFlow15", "del-flows", "--strict", "br-int", "table=40,priority=30000,ip,nw_src=10.244.1.11"); err != nil {
		t.Fatal(err)
	}
	x, err = e.Explain("default/frontend", "default/db", model.TCP, 6379)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.TraceOn(ctx, v, x); err != nil {
		t.Fatal(err)
	}
	if !x.Allowed || x.Mismatch == "" || !strings.Contains(x.Mismatch, "model allows") || !strings.Contains(x.Mismatch, "dropped") {
		t.Fatalf("deleted allow flow: allowed %v, mismatch %q", x.Allowed, x.Mismatch)
	}
	t.Logf("after deleting frontend's peer flow of db's ingress rule: %s", x.Mismatch)
}

func TestVerifyOnOVS(t *testing.T) {
	e, v, sw := seedNode(t)
	ctx := context.Background()
	res, err := e.Verify(ctx, v, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s%s", res.Matrix(), res.Summary())
	if len(res.Mismatches) != 0 {
		t.Fatalf("%d mismatches on the agent's own flows", len(res.Mismatches))
	}
	if n := res.Skipped["pods of this node without a port on its bridge"]; n != 1 {
		t.Fatalf("skipped %v, want default/late as the one pod without a port", res.Skipped)
	}
	// 3 local pods; peers: 5 pods, node, external: local↔local 3·2 pairs,
	// local→others 3·4 and others→local 4·3, 6 probes each.
	if want := (6 + 12 + 12) * 6; res.Traces != want {
		t.Fatalf("%d traces, want %d", res.Traces, want)
	}
	allowed := 0
	for _, c := range res.Cells {
		if c.ModelAllowed {
			allowed++
		}
	}
	t.Logf("%d of %d connections allowed; %v (%.0f µs per trace)", allowed, res.Traces, res.Duration.Round(time.Millisecond), float64(res.Duration.Microseconds())/float64(res.Traces))
	if allowed == 0 || allowed == res.Traces {
		t.Fatalf("a matrix of one verdict (%d allowed) tests nothing", allowed)
	}

	// One pod's connections only; a limit; a pod that is not here.
	one, err := e.Verify(ctx, v, VerifyOptions{Pods: []string{"default/db"}})
	if err != nil {
		t.Fatal(err)
	}
	if one.Traces != 12*6 || len(one.Mismatches) != 0 {
		t.Fatalf("verify of default/db: %d traces, %d mismatches; want 72, 0", one.Traces, len(one.Mismatches))
	}
	for _, c := range one.Cells {
		if c.From != "default/db" && c.To != "default/db" {
			t.Fatalf("verify of default/db traced %s -> %s", c.From, c.To)
		}
	}
	if _, err := e.Verify(ctx, v, VerifyOptions{MaxTraces: 100}); err == nil || !strings.Contains(err.Error(), "would trace 189 connections, more than the limit of 100") {
		t.Fatalf("limit: error %v", err)
	}
	if _, err := e.Verify(ctx, v, VerifyOptions{Pods: []string{"myproject/client"}}); err == nil || !strings.Contains(err.Error(), "not attached to node node-1") {
		t.Fatalf("a remote pod: error %v", err)
	}

	cases := []struct {
		name string
		del  string
		// cells that must be reported (from, to, probe)
		want []string
	}{
		{"an allow flow (frontend as a peer of db's ingress rule)", "table=40,priority=30000,ip,nw_src=10.244.1.11",
			[]string{"default/frontend -> default/db TCP/6379"}},
		{"an allow flow (the ingress rule's port)", "table=40,priority=30000,tcp,tp_dst=6379",
			[]string{"default/frontend -> default/db TCP/6379", "myproject/client -> default/db TCP/6379"}},
		// Found here: on OVS 3.1 a packet that completes a conjunction whose
		// conj_id flow is gone skips the isolation drop (its match equals
		// the conjunction's target flow) and takes the priority-0 flow: it
		// is still delivered, as the model says, so there is nothing to
		// report.
		{"a conj_id flow (frontend's egress rule 0)", "table=30,priority=30000,conj_id=4177930034", nil},
		{"an isolation drop (db's ingress)", "table=40,priority=20000,ip,nw_dst=10.244.1.10",
			[]string{"default/backend -> default/db TCP/6379", "external -> default/db UDP/54321", "other/stranger -> default/db TCP/54321"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := sw.InstallBundle("br-int", v.Node.Result.Text(false)); err != nil {
				t.Fatal(err)
			}
			if _, err := sw.Ofctl("-O", "OpenFlow15", "del-flows", "--strict", "br-int", c.del); err != nil {
				t.Fatal(err)
			}
			res, err := e.Verify(ctx, v, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("after del-flows --strict %s:\n%s", c.del, res.Summary())
			got := map[string]bool{}
			for _, m := range res.Mismatches {
				got[fmt.Sprintf("%s -> %s %s", m.From, m.To, m.Probe)] = true
				if m.Model == "" || m.Bridge == "" || m.Decisive == "" || m.Packet == "" {
					t.Errorf("mismatch without both verdicts, packet and last flow: %+v", m)
				}
			}
			for _, w := range c.want {
				if !got[w] {
					t.Errorf("mismatch %s not reported", w)
				}
			}
			if c.want == nil && len(res.Mismatches) != 0 {
				t.Errorf("%d mismatches, want none", len(res.Mismatches))
			}
			if c.want != nil && !strings.Contains(res.Matrix(), "!") {
				t.Error("matrix shows no !")
			}
		})
	}
}

// TestVerifyCostOnOVS verifies a bigger node — 16 local pods, 48 on another
// node, policies with both directions, selectors across namespaces, an
// ipBlock with an exception, a port range, a named port, UDP and a
// deny-all — on a real ovs-vswitchd: the agent's flows must agree with the
// model everywhere, and the cost per trace is logged.
func TestVerifyCostOnOVS(t *testing.T) {
	const local, remote = 16, 48
	var y strings.Builder
	y.WriteString(`apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 172.19.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
status: {addresses: [{type: InternalIP, address: 172.19.0.2}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b, labels: {team: b}}
`)
	type podDef struct {
		ns, name, ip, mac string
		node              int
	}
	var pods []podDef
	for i := range local + remote {
		node, host := 1, 10+i
		if i >= local {
			node, host = 2, 10+i-local
		}
		p := podDef{ns: []string{"team-a", "team-b"}[i%2], name: fmt.Sprintf("p%02d", i), node: node,
			ip: fmt.Sprintf("10.9.%d.%d", node, host), mac: fmt.Sprintf("0a:58:0a:09:%02x:%02x", node, host)}
		if i%8 == 7 {
			// Some pods are IPv6-only: they meet each other and the
			// outside's IPv6 address.
			p.ip = fmt.Sprintf("fd00:9:%d::%x", node, host)
		}
		pods = append(pods, p)
		tier := []string{"front", "back"}[i/2%2]
		fmt.Fprintf(&y, `---
apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, uid: uid-%s, labels: {app: app%d, tier: %s}}
spec:
  nodeName: node-%d
  containers: [{name: c, image: i, ports: [{name: http, containerPort: %d}]}]
status: {phase: Running, podIP: %s, podIPs: [{ip: %s}]}
`, p.name, p.ns, p.name, i%4, tier, node, 8081+i%3, p.ip, p.ip)
	}
	y.WriteString(`---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p-app0, namespace: team-a}
spec:
  podSelector: {matchLabels: {app: app0}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: app1}}}]
    ports: [{port: 80}, {port: 443}]
  egress:
  - to: [{ipBlock: {cidr: 10.9.2.0/24, except: [10.9.2.32/27]}}]
    ports: [{port: 8080, endPort: 8090}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p-app2, namespace: team-b}
spec:
  podSelector: {matchLabels: {app: app3}}
  ingress:
  - from: [{podSelector: {}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: back-no-egress, namespace: team-a}
spec:
  podSelector: {matchLabels: {tier: back}}
  policyTypes: [Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: front-dns-http, namespace: team-b}
spec:
  podSelector: {matchLabels: {tier: front}}
  ingress:
  - from: [{ipBlock: {cidr: 0.0.0.0/0}}]
    ports: [{protocol: UDP, port: 53}, {port: http}]
`)
	objs, err := manifest.Parse("cost.yaml", []byte(y.String()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sw := ovstest.Start(t)
	if err := sw.AddBridge("br-int"); err != nil {
		t.Fatal(err)
	}
	for i, p := range pods[:local] {
		if _, err := sw.Vsctl("--", "add-port", "br-int", p.name, "--", "set", "Interface", p.name, "type=internal",
			fmt.Sprintf("ofport_request=%d", 10+i),
			fmt.Sprintf("external_ids:%q=%s", ovsdb.KeyPodNamespace, p.ns),
			fmt.Sprintf("external_ids:%q=%s", ovsdb.KeyPodName, p.name),
			fmt.Sprintf("external_ids:%q=%q", ovsdb.KeyAttachedMAC, p.mac)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.AddInternalPort("br-int", "uplink", seedUplink); err != nil {
		t.Fatal(err)
	}
	db, err := ovsdb.Connect(ctx, sw.DBSock(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ac := AgentConfig{Node: "node-1", Mode: model.ModeV1, GatewayPort: compiler.PortLocal, UplinkPort: seedUplink,
		NodeIPs: []netip.Addr{netip.MustParseAddr("172.19.0.1")}, CTZone: compiler.DefaultCTZone}
	if err := PublishAgentConfig(ctx, db, "br-int", ac); err != nil {
		t.Fatal(err)
	}
	db.Close()
	var v *NodeView
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if v, err = OpenNodeView(ctx, Bridge{RunDir: sw.Dir}, objs); err != nil {
			t.Fatal(err)
		}
		if len(v.Bindings) == local {
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("%d bindings", len(v.Bindings))
		}
	}
	if err := sw.InstallBundle("br-int", v.Node.Result.Text(false)); err != nil {
		t.Fatal(err)
	}
	e, _, err := NewExplainer(objs, model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Verify(ctx, v, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	allowed := 0
	for _, c := range res.Cells {
		if c.ModelAllowed {
			allowed++
		}
	}
	t.Logf("%d flows; %d endpoints, probes %v: %d connections traced (%d allowed) in %v: %.0f µs per trace (4 in parallel), %d mismatches",
		len(v.Node.Result.Flows), len(res.Endpoints), res.Probes, res.Traces, allowed, res.Duration.Round(time.Millisecond),
		float64(res.Duration.Microseconds())/float64(res.Traces), len(res.Mismatches))
	if len(res.Mismatches) > 0 {
		t.Fatalf("the compiled flows disagree with the model:\n%s", res.Summary())
	}
	if allowed == 0 || allowed == res.Traces {
		t.Fatalf("a matrix of one verdict (%d of %d allowed) tests nothing", allowed, res.Traces)
	}
	v6 := 0
	for _, c := range res.Cells {
		if strings.Contains(c.Packet, "ipv6_src") || c.From == "team-b/p07" || c.To == "team-b/p07" {
			v6++
		}
	}
	t.Logf("skipped: %v; %d cells with the IPv6-only local pod team-b/p07", res.Skipped, v6)
	if v6 == 0 || res.Skipped["pairs without a common address family"] == 0 {
		t.Fatal("no IPv6 connection traced")
	}
}
