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
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/ovsdb"
)

// dualStackNode: two dual-stack pods on node-1 (IPv4 listed first, as
// kubelet lists them); b admits a on TCP 80 only.
const dualStackNode = `
apiVersion: v1
kind: Namespace
metadata: {name: ds}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: ds, uid: uid-a, labels: {app: a}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.20, podIPs: [{ip: 10.244.1.20}, {ip: "fd00:10:244:1::20"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: ds, uid: uid-b, labels: {app: b}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.21, podIPs: [{ip: 10.244.1.21}, {ip: "fd00:10:244:1::21"}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: ds}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: 80}]
`

// fileNode is node-1 on a real ovs-vswitchd with the objects of text:
// ports (namespace ds) attached as our CNI attaches them, the agent's
// configuration published, the agent's flows installed.
func fileNode(t *testing.T, text string, ports []filePort) (*Explainer, *NodeView, *ovstest.Switch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sw := ovstest.Start(t)
	if err := sw.AddBridge("br-int"); err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if _, err := sw.Vsctl("--", "add-port", "br-int", p.name, "--", "set", "Interface", p.name, "type=internal",
			fmt.Sprintf("ofport_request=%d", p.port),
			fmt.Sprintf("external_ids:%q=ds", ovsdb.KeyPodNamespace),
			fmt.Sprintf("external_ids:%q=%s", ovsdb.KeyPodName, p.name),
			fmt.Sprintf("external_ids:%q=%q", ovsdb.KeyAttachedMAC, p.mac)); err != nil {
			t.Fatal(err)
		}
	}
	db, err := ovsdb.Connect(ctx, sw.DBSock(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ac := AgentConfig{Node: "node-1", Mode: model.ModeV1, GatewayPort: compiler.PortLocal,
		NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.1"), netip.MustParseAddr("fd00:172:18::1")}, CTZone: compiler.DefaultCTZone}
	if err := PublishAgentConfig(ctx, db, "br-int", ac); err != nil {
		t.Fatal(err)
	}
	db.Close()
	objs := manifestObjects(t, text)
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
	e, _, err := NewExplainer(objs, model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	return e, v, sw
}

type filePort struct {
	name, mac string
	port      int
}

// Verify checks dual-stack pods in both families: a bridge whose IPv6
// flows for a pod are wrong while its IPv4 ones are right disagrees.
func TestVerifyDualStackOnOVS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, v, sw := fileNode(t, dualStackNode, []filePort{{"a", "0a:58:0a:f4:01:14", 20}, {"b", "0a:58:0a:f4:01:15", 21}})
	res, err := e.Verify(ctx, v, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s%s", res.Matrix(), res.Summary())
	if len(res.Mismatches) != 0 {
		t.Fatalf("%d mismatches on the agent's own flows", len(res.Mismatches))
	}
	var v6 int
	for _, c := range res.Cells {
		if c.Family == "IPv6" {
			v6++
		}
	}
	if v6 == 0 || v6 == res.Traces {
		t.Fatalf("%d of %d connections traced in IPv6, want both families", v6, res.Traces)
	}

	// b's IPv6 isolation drop gone: a reaches b on any port in IPv6 only.
	if _, err := sw.Ofctl("-O", "OpenFlow15", "del-flows", "--strict", "br-int", "table=40,priority=20000,ipv6,ipv6_dst=fd00:10:244:1::21"); err != nil {
		t.Fatal(err)
	}
	res, err = e.Verify(ctx, v, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after deleting b's IPv6 isolation drop:\n%s", res.Summary())
	if len(res.Mismatches) == 0 {
		t.Fatal("verify agrees with a bridge that lets anything reach b over IPv6")
	}
	for _, c := range res.Mismatches {
		if c.Family != "IPv6" || c.To != "ds/b" {
			t.Fatalf("mismatch %+v, want only IPv6 connections to ds/b", c)
		}
	}
	if !strings.Contains(res.Summary(), "IPv6") {
		t.Fatalf("the summary does not say which family disagrees:\n%s", res.Summary())
	}
}

// rangeNode: b admits a on TCP 8080-8090.
const rangeNode = `
apiVersion: v1
kind: Namespace
metadata: {name: ds}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: ds, uid: uid-a, labels: {app: a}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.20}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: ds, uid: uid-b, labels: {app: b}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.21}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: ds}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: 8080, endPort: 8090}]
`

// A port range the bridge matches one port too wide (a flow admitting
// 8091 as the range's does) is caught: verify probes just outside ranges.
func TestVerifyRangeTooWideOnOVS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, v, sw := fileNode(t, rangeNode, []filePort{{"a", "0a:58:0a:f4:01:14", 20}, {"b", "0a:58:0a:f4:01:15", 21}})
	res, err := e.Verify(ctx, v, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Mismatches) != 0 {
		t.Fatalf("%d mismatches on the agent's own flows:\n%s", len(res.Mismatches), res.Summary())
	}
	wide := fmt.Sprintf("table=%d,priority=%d,tcp,nw_src=10.244.1.20,nw_dst=10.244.1.21,tp_dst=8091,actions=goto_table:%d",
		compiler.TableIngress, compiler.PrioRuleAllow, compiler.TableCommit)
	if _, err := sw.Ofctl("-O", "OpenFlow15", "add-flow", "br-int", wide); err != nil {
		t.Fatal(err)
	}
	res, err = e.Verify(ctx, v, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after adding %s:\n%s", wide, res.Summary())
	if len(res.Mismatches) != 1 || res.Mismatches[0].Probe != (Probe{model.TCP, 8091}) || res.Mismatches[0].From != "ds/a" {
		t.Fatalf("mismatches %+v, want ds/a -> ds/b on TCP/8091 alone", res.Mismatches)
	}
}

// A pod of this node without an address yet is said not to be checked,
// not silently left out.
func TestVerifyCountsLocalPodsWithoutIP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pending := rangeNode + `---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: ds, uid: uid-c, labels: {app: c}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Pending}
---
apiVersion: v1
kind: Pod
metadata: {name: far, namespace: ds, uid: uid-far}
spec: {nodeName: node-2, containers: [{name: c, image: i}]}
status: {phase: Pending}
`
	e, v, _ := fileNode(t, pending, []filePort{{"a", "0a:58:0a:f4:01:14", 20}, {"b", "0a:58:0a:f4:01:15", 21}, {"c", "0a:58:0a:f4:01:16", 22}})
	res, err := e.Verify(ctx, v, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", res.Summary())
	if n := res.Skipped["pods of this node without an IP address"]; n != 1 || len(res.Mismatches) != 0 {
		t.Fatalf("skipped %v with %d mismatches, want ds/c alone counted as a pod without an address", res.Skipped, len(res.Mismatches))
	}
}
