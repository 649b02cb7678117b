package compiler_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	manifests "github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// sharedRuleManifests is the legal input that OVS could not take:
// n policies in namespace "many", each allowing one peer pod (on node-2)
// to one target pod (on node-1) on its own TCP port 1000+i; with egress,
// each also allows the target to the peer on that port. Every rule shares
// the peer and the target match, so without tiers one flow would carry n
// conjunction actions.
func sharedRuleManifests(n int, egress bool) string {
	var b strings.Builder
	b.WriteString(`apiVersion: v1
kind: Namespace
metadata: {name: many}
---
apiVersion: v1
kind: Pod
metadata: {name: target, namespace: many, labels: {app: target}}
spec: {nodeName: node-1, containers: [{name: c, image: pause}]}
status: {podIP: 10.244.1.10, podIPs: [{ip: 10.244.1.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: peer, namespace: many, labels: {app: peer}}
spec: {nodeName: node-2, containers: [{name: c, image: pause}]}
status: {podIP: 10.244.2.10, podIPs: [{ip: 10.244.2.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: many, labels: {app: other}}
spec: {nodeName: node-2, containers: [{name: c, image: pause}]}
status: {podIP: 10.244.2.11, podIPs: [{ip: 10.244.2.11}]}
`)
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-%d, namespace: many}
spec:
  podSelector: {matchLabels: {app: target}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: peer}}}]
    ports: [{protocol: TCP, port: %d}]
`, i, 1000+i)
		if egress {
			fmt.Fprintf(&b, `  egress:
  - to: [{podSelector: {matchLabels: {app: peer}}}]
    ports: [{protocol: TCP, port: %d}]
  policyTypes: [Ingress, Egress]
`, 1000+i)
		}
	}
	return b.String()
}

// TestManySharedRulesInstall: 4,200 and 20,000 legal policies sharing one
// peer and one target compile to flows that all hold at most
// DefaultMaxConjunctionsPerFlow conjunctions, a real ovs-vswitchd installs
// them in one bundle, and traces give each rule's verdict: the peer reaches
// the target on every policy's port (sampled) and on no other; another pod
// reaches nothing; with egress, the target reaches the peer the same way.
func TestManySharedRulesInstall(t *testing.T) {
	for _, tc := range []struct {
		policies int
		egress   bool
	}{
		{4200, false},
		{20000, true},
	} {
		t.Run(fmt.Sprintf("%d-policies", tc.policies), func(t *testing.T) {
			objs, err := manifests.Parse("many.yaml", []byte(sharedRuleManifests(tc.policies, tc.egress)))
			if err != nil {
				t.Fatal(err)
			}
			c, _, err := objs.Cluster(model.ModeV1)
			if err != nil {
				t.Fatal(err)
			}
			cfg := compiler.Config{Node: "node-1", UplinkPort: 9, NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.1")}}
			cfg.Bindings = compiler.DefaultBindings(c, "node-1", nil, 9)
			start := time.Now()
			res, err := compiler.Compile(c, cfg)
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if err := checkConjunctionLimit(res.Flows, compiler.DefaultMaxConjunctionsPerFlow); err != nil {
				t.Fatal(err)
			}
			most, tiers := 0, map[uint16]bool{}
			for _, f := range res.Flows {
				if n := len(f.Actions.Conjunctions()); n > 0 {
					most = max(most, n)
					tiers[f.Priority] = true
				}
			}
			if len(tiers) < 2 {
				t.Errorf("%d shared rules compiled to %d conjunction priorities: want tiers", tc.policies, len(tiers))
			}

			sw := ovstest.Start(t)
			if err := sw.AddBridge("br-int"); err != nil {
				t.Fatal(err)
			}
			if err := sw.AddInternalPort("br-int", "up", 9); err != nil {
				t.Fatal(err)
			}
			target := cfg.Bindings["many/target"]
			if err := sw.AddInternalPort("br-int", "target", int(target.OFPort)); err != nil {
				t.Fatal(err)
			}
			start = time.Now()
			if err := sw.InstallBundle("br-int", res.Text(false)); err != nil {
				t.Fatalf("OVS refused the flows of %d legal policies: %v", tc.policies, err)
			}
			install := time.Since(start)
			dumped, err := sw.DumpFlows("br-int", true)
			if err != nil {
				t.Fatal(err)
			}
			if len(dumped) != len(res.Flows) {
				t.Errorf("bridge holds %d flows, compiled %d", len(dumped), len(res.Flows))
			}

			rng := rand.New(rand.NewPCG(uint64(tc.policies), 1))
			traced := 0
			trace := func(in, fields string, want int) {
				t.Helper()
				r, err := sw.Trace("br-int", "in_port="+in+","+fields, "trk,new")
				if err != nil {
					t.Fatal(err)
				}
				traced++
				got := -1
				if len(r.OutputPorts) == 1 {
					got = r.OutputPorts[0]
				}
				if got != want {
					t.Errorf("in_port=%s %s: output %v, want port %d (-1: dropped)\n%s", in, fields, r.OutputPorts, want, strings.Join(r.Passes, " | "))
				}
			}
			ports := []int{1000, 1000 + tc.policies - 1}
			for range 40 {
				ports = append(ports, 1000+rng.IntN(tc.policies))
			}
			for _, p := range ports {
				trace("9", fmt.Sprintf("tcp,nw_src=10.244.2.10,nw_dst=10.244.1.10,tcp_dst=%d", p), int(target.OFPort))
				trace("9", fmt.Sprintf("tcp,nw_src=10.244.2.11,nw_dst=10.244.1.10,tcp_dst=%d", p), -1)
				if tc.egress {
					trace(fmt.Sprint(target.OFPort), fmt.Sprintf("dl_src=%s,tcp,nw_src=10.244.1.10,nw_dst=10.244.2.10,tcp_dst=%d", target.MAC, p), 9)
					trace(fmt.Sprint(target.OFPort), fmt.Sprintf("dl_src=%s,tcp,nw_src=10.244.1.10,nw_dst=10.244.2.11,tcp_dst=%d", target.MAC, p), -1)
				}
			}
			for _, p := range []int{999, 1000 + tc.policies, 80} {
				trace("9", fmt.Sprintf("tcp,nw_src=10.244.2.10,nw_dst=10.244.1.10,tcp_dst=%d", p), -1)
				trace("9", fmt.Sprintf("udp,nw_src=10.244.2.10,nw_dst=10.244.1.10,udp_dst=%d", p+1), -1)
			}
			t.Logf("%d policies: %d flows, at most %d conjunctions in one flow, %d conjunction priorities; compile %v, install %v; %d traces as the policies say",
				tc.policies, len(res.Flows), most, len(tiers), took.Round(time.Millisecond), install.Round(time.Millisecond), traced)
		})
	}
}
