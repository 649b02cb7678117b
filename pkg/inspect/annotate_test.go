package inspect

import (
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// annotateCluster: two pods on node n1 and one on n2; allow-client admits
// the client to the server's UDP 5353 (a conjunction of targets, peers and
// ports), other admits 10.99.0.0/16 to TCP 443 (another conjunction), and
// a Service with session affinity and the server as its endpoint.
const annotateCluster = `
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: a, uid: u-client, labels: {app: client}}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.85.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: a, uid: u-server, labels: {app: server}}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.85.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: far, namespace: a, uid: u-far, labels: {app: client}}
spec: {nodeName: n2, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.85.1.4}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client, namespace: a}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{protocol: UDP, port: 5353}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: other, namespace: a}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{ipBlock: {cidr: 10.99.0.0/16}}]
    ports: [{protocol: TCP, port: 443}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: a}
spec:
  clusterIP: 10.96.0.10
  selector: {app: server}
  sessionAffinity: ClientIP
  ports: [{port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: a, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.85.0.3], conditions: {ready: true}}]
ports: [{port: 80, protocol: TCP}]
`

func compileAnnotateCluster(t *testing.T) *Node {
	t.Helper()
	objs, err := manifest.Parse("cluster.yaml", []byte(annotateCluster))
	if err != nil {
		t.Fatal(err)
	}
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	bindings := map[string]compiler.Binding{
		"a/client": {OFPort: 3, MAC: mac("02:00:00:00:00:02")},
		"a/server": {OFPort: 4, MAC: mac("02:00:00:00:00:03")},
	}
	ac := AgentConfig{Node: "n1", Mode: model.ModeV1, GatewayPort: compiler.PortLocal, UplinkPort: 2, CTZone: 64000,
		NodeIPs: []netip.Addr{netip.MustParseAddr("192.168.1.1")}}
	n, err := CompileNode(objs, ac, bindings)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// live turns a compiled flow into what Flows would read back.
func live(t *testing.T, f openflow.Flow) LiveFlow {
	t.Helper()
	lf, err := ParseLiveFlow(" " + f.String())
	if err != nil {
		t.Fatal(err)
	}
	return lf
}

// conjIDOf finds the conjunction ID of a policy's rule.
func conjIDOf(t *testing.T, n *Node, policy string) uint32 {
	t.Helper()
	for id, key := range n.Result.Conjunctions {
		if strings.HasPrefix(key, policy+"/") {
			return id
		}
	}
	t.Fatalf("no conjunction of %s in %v", policy, n.Result.Conjunctions)
	return 0
}

func TestOrigin(t *testing.T) {
	n := compileAnnotateCluster(t)
	allowID, otherID := conjIDOf(t, n, "a/allow-client"), conjIDOf(t, n, "a/other")
	var svc *model.Service
	for _, s := range n.Cluster.Services {
		svc = s
	}
	allowCookie := compiler.RuleCookie("a/allow-client/ingress/0")
	tests := []struct {
		name string
		flow LiveFlow
		want string
	}{
		{"conj_id flow", LiveFlow{Table: compiler.TableIngress, Cookie: allowCookie, ConjID: allowID},
			"policy a/allow-client ingress rule 0; conj_id " + itoa(allowID) + " (this rule)"},
		{"flow shared by two rules", LiveFlow{Cookie: allowCookie, Conjunctions: []uint32{allowID, otherID}},
			"policy a/allow-client ingress rule 0; conjunctions " + itoa(allowID) + " (this rule), " +
				itoa(otherID) + ": policy a/other ingress rule 0"},
		{"local pod", LiveFlow{Cookie: compiler.PodCookie(n.Cluster.Pods["u-server"])}, "pod a/server"},
		{"remote pod", LiveFlow{Cookie: openflow.NewCookie(openflow.KindPod, "remote/a/far")}, "remote pod a/far"},
		{"pipeline", LiveFlow{Cookie: openflow.NewCookie(openflow.KindPipeline, "pipeline")}, "pipeline skeleton"},
		{"node", LiveFlow{Cookie: openflow.NewCookie(openflow.KindNode, "node")}, "node n1 (gateway port LOCAL)"},
		{"service", LiveFlow{Cookie: compiler.ServiceCookie(svc)}, "service a/web"},
		{"learned affinity entry", LiveFlow{Cookie: compiler.ServiceCookie(svc).Learned()}, "learned by service a/web"},
		{"foreign cookie", LiveFlow{Cookie: 0x1}, OriginUnknown},
		{"our magic, unknown origin", LiveFlow{Cookie: compiler.RuleCookie("a/gone/ingress/0")}, OriginUnknown},
		{"unknown conjunction", LiveFlow{Cookie: 0x2, ConjID: 7}, OriginUnknown + "; conj_id 7: unknown conjunction 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := n.Origin(tt.flow); got != tt.want {
				t.Errorf("Origin:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func itoa(id uint32) string { return strconv.FormatUint(uint64(id), 10) }

// TestOriginOfEveryCompiledFlow: every flow the compiler makes for the node
// is named by its origin (none is unknown), and the conj_id flows name
// their rule.
func TestOriginOfEveryCompiledFlow(t *testing.T) {
	n := compileAnnotateCluster(t)
	conjFlows := 0
	for _, f := range n.Result.Flows {
		lf := live(t, f)
		o := n.Origin(lf)
		if strings.Contains(o, "unknown") {
			t.Errorf("%s: origin %q", f, o)
		}
		if lf.ConjID != 0 {
			conjFlows++
			if !strings.HasPrefix(o, "policy a/") || !strings.Contains(o, "ingress rule 0") {
				t.Errorf("conj_id flow %s: origin %q", f, o)
			}
		}
	}
	if conjFlows != 2 {
		t.Errorf("%d conj_id flows, want 2 (one per policy)", conjFlows)
	}
}

func TestOfPolicyAndOfPod(t *testing.T) {
	n := compileAnnotateCluster(t)
	count := func(keep func(LiveFlow) bool) (int, []LiveFlow) {
		var out []LiveFlow
		for _, f := range n.Result.Flows {
			if lf := live(t, f); keep(lf) {
				out = append(out, lf)
			}
		}
		return len(out), out
	}
	allowID := conjIDOf(t, n, "a/allow-client")
	nAllow, allow := count(func(f LiveFlow) bool { return n.OfPolicy(f, "a/allow-client") })
	nOther, _ := count(func(f LiveFlow) bool { return n.OfPolicy(f, "a/other") })
	nNone, _ := count(func(f LiveFlow) bool { return n.OfPolicy(f, "a/missing") })
	if nAllow == 0 || nOther == 0 || nNone != 0 {
		t.Fatalf("flows of allow-client %d, of other %d, of a missing policy %d", nAllow, nOther, nNone)
	}
	sawConj := false
	for _, f := range allow {
		if f.ConjID == allowID {
			sawConj = true
		}
		if f.Table != compiler.TableIngress {
			t.Errorf("allow-client flow outside the ingress table: %s", f)
		}
	}
	if !sawConj {
		t.Error("the conj_id flow of allow-client is not among its flows")
	}

	_, server := count(func(f LiveFlow) bool { return n.OfPod(f, "a/server") })
	var own, byAddress, byPort int
	serverCookie := compiler.PodCookie(n.Cluster.Pods["u-server"])
	for _, f := range server {
		switch {
		case f.Cookie == serverCookie:
			own++
		case strings.Contains(f.Match, "nw_dst=10.85.0.3") || strings.Contains(f.Match, "nw_src=10.85.0.3"):
			byAddress++
		case strings.Contains(f.Match, "in_port=4") || strings.Contains(f.Actions, "output:4"):
			byPort++
		default:
			t.Errorf("flow listed for a/server without a reason: %s", f)
		}
	}
	if own == 0 || byAddress == 0 {
		t.Errorf("a/server: %d own flows, %d by address, %d by port; want own and by-address flows", own, byAddress, byPort)
	}
	if k, _ := count(func(f LiveFlow) bool { return n.OfPod(f, "a/nobody") }); k != 0 {
		t.Errorf("%d flows for a pod that does not exist", k)
	}
}

func TestParseConjKey(t *testing.T) {
	tests := []struct {
		key  string
		want RuleRef
		ok   bool
	}{
		{"ns/pol/ingress/0", RuleRef{Namespace: "ns", Policy: "pol", Direction: model.Ingress}, true},
		{"ns/pol/egress/12/named:http", RuleRef{Namespace: "ns", Policy: "pol", Direction: model.Egress, Index: 12, NamedPort: "http"}, true},
		{"ns/pol/sideways/0", RuleRef{}, false},
		{"ns/pol/ingress/x", RuleRef{}, false},
		{"ns/pol/ingress/-1", RuleRef{}, false},
		{"ns/pol/ingress", RuleRef{}, false},
		{"ns/pol/ingress/0/other:x", RuleRef{}, false},
	}
	for _, tt := range tests {
		got, ok := parseConjKey(tt.key)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseConjKey(%q) = %+v, %v; want %+v, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
	// Text from the cluster reaches output only printable.
	r := RuleRef{Namespace: "ns", Policy: "pol", Direction: model.Ingress, NamedPort: "a\nb"}
	if s := r.String(); strings.Contains(s, "\n") {
		t.Errorf("RuleRef.String carries a raw line break: %q", s)
	}
}

// TestDuplicatePodIPs: a live cluster can hold two active pods with one
// address (files cannot: Objects.Cluster refuses them); CompileNode keeps it
// for the pod the agent keeps it for, and compiles the other without it.
func TestDuplicatePodIPs(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Minute))
	pod := func(name, uid, node string, created metav1.Time, phase corev1.PodPhase, ips ...string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: name, UID: types.UID(uid), CreationTimestamp: created},
			Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: phase}}
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
		if len(ips) > 0 {
			p.Status.PodIP = ips[0]
		}
		return p
	}
	mac, _ := net.ParseMAC("02:00:00:00:00:09")
	tests := []struct {
		name     string
		pods     []*corev1.Pod
		bindings map[string]compiler.Binding
		// want: pod name -> its IPs in the compiled cluster
		want map[string]string
	}{
		{"the older pod keeps it",
			[]*corev1.Pod{pod("new", "u1", "n2", t1, corev1.PodRunning, "10.85.0.9"), pod("old", "u2", "n2", t0, corev1.PodRunning, "10.85.0.9")},
			nil, map[string]string{"new": "", "old": "10.85.0.9"}},
		{"a pod bound on this node keeps it, however new",
			[]*corev1.Pod{pod("new", "u1", "n1", t1, corev1.PodRunning, "10.85.0.9", "fd00::9"), pod("old", "u2", "n2", t0, corev1.PodRunning, "10.85.0.9")},
			map[string]compiler.Binding{"a/new": {OFPort: 5, MAC: mac}}, map[string]string{"new": "10.85.0.9,fd00::9", "old": ""}},
		{"a binding of a pod of another node does not count",
			[]*corev1.Pod{pod("new", "u1", "n2", t1, corev1.PodRunning, "10.85.0.9"), pod("old", "u2", "n2", t0, corev1.PodRunning, "10.85.0.9")},
			map[string]compiler.Binding{"a/new": {OFPort: 5, MAC: mac}}, map[string]string{"new": "", "old": "10.85.0.9"}},
		{"same age: the lower UID keeps it, the other keeps its other address",
			[]*corev1.Pod{pod("p", "u2", "n2", t0, corev1.PodRunning, "10.85.0.9", "fd00::1"), pod("q", "u1", "n2", t0, corev1.PodRunning, "10.85.0.9")},
			nil, map[string]string{"p": "fd00::1", "q": "10.85.0.9"}},
		{"a finished pod claims nothing",
			[]*corev1.Pod{pod("done", "u1", "n2", t0, corev1.PodSucceeded, "10.85.0.9"), pod("live", "u2", "n2", t1, corev1.PodRunning, "10.85.0.9")},
			nil, map[string]string{"done": "10.85.0.9", "live": "10.85.0.9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := &manifest.Objects{Pods: tt.pods}
			before := make([]*corev1.Pod, len(tt.pods))
			for i, p := range tt.pods {
				before[i] = p.DeepCopy()
			}
			n, err := CompileNode(objs, AgentConfig{Node: "n1", Mode: model.ModeV1, GatewayPort: compiler.PortLocal}, tt.bindings)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, p := range n.Cluster.Pods {
				var ips []string
				for _, ip := range p.IPs {
					ips = append(ips, ip.String())
				}
				got[p.Name] = strings.Join(ips, ",")
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("compiled pod IPs %v, want %v (warnings %q)", got, tt.want, n.Warnings)
			}
			for i, p := range tt.pods {
				if !reflect.DeepEqual(p, before[i]) {
					t.Errorf("input pod %s was modified", p.Name)
				}
			}
		})
	}
}
