package integration

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovs-netpol/ovs-netpol/internal/k8stest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

var (
	external = endpoint{Name: "external", IP: externalIP}
	theNode  = endpoint{Name: "node", IP: nodeIP}
)

const (
	metricFlowMods = "ovs_netpol_flow_mods_total"
	metricBundles  = "ovs_netpol_bundles_total"
	metricEvents   = "ovs_netpol_events_total"
	metricFlows    = "ovs_netpol_flows"
	metricRejNS    = `ovs_netpol_rejected_objects_total{kind="namespace"}`
)

// podFlowCount is what one IPv4 pod of node-1 costs under its own cookie
// when it is not isolated: port security (ip, arp), self traffic, delivery
// (ip, arp), and its Service hairpins (reply restore, delivery back out its
// own port for replies and for the hairpin itself). The drop of its address
// from the gateway carries the node's cookie (it must outlive the pod's
// refused flows).
const podFlowCount = 8

func tcpPort(port int32) networkingv1.NetworkPolicyPort {
	p := corev1.ProtocolTCP
	v := intstr.FromInt32(port)
	return networkingv1.NetworkPolicyPort{Protocol: &p, Port: &v}
}

// ingressPolicy selects target pods and allows from peers on ports.
func ingressPolicy(ns, name string, target map[string]string, peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: target},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: peers, Ports: ports}},
		},
	}
}

func podPeer(labels map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: labels}}
}

func (e *env) createPolicy(t *testing.T, np *networkingv1.NetworkPolicy) {
	t.Helper()
	if _, err := e.c.Client.NetworkingV1().NetworkPolicies(np.Namespace).Create(e.ctx(), np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) deletePolicy(t *testing.T, ns, name string) {
	t.Helper()
	if err := e.c.Client.NetworkingV1().NetworkPolicies(ns).Delete(e.ctx(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestAgent drives one real agent process (node-1) through the scenarios
// of issue 3 on one API server and one switch; every scenario has its own
// namespaces, pods, addresses and port numbers. The scenarios run in order:
// later ones (restarts) re-check the state the earlier ones left.
func TestAgent(t *testing.T) {
	e := newEnv(t)
	testStart := time.Now()
	t.Cleanup(func() { t.Logf("TestAgent scenarios took %v", time.Since(testStart).Round(time.Millisecond)) })

	// Pipeline and node flows exist after the first sync.
	e.waitFlows(t, "node", openflow.NewCookie(openflow.KindNode, "node"), flowSpec{count: -1,
		has: []string{"in_port=LOCAL,nw_src=" + nodeIP}})

	steps := []struct {
		name string
		f    func(t *testing.T)
	}{
		{"PolicyCreateUpdateDelete", e.testPolicyLifecycle},
		{"EgressIPBlockAndAllowAll", e.testEgress},
		{"PodLabelChange", e.testPodLabels},
		{"NamespaceLabelChange", e.testNamespaceLabels},
		{"PodRecreatedWithNewIP", e.testPodRecreated},
		{"CompletedAndHostNetworkPods", e.testPhases},
		{"MalformedLegacyAnnotation", e.testLegacyAnnotation},
		{"Measurements", e.testMeasurements},
		{"Services", e.testServices},
		{"RejectedUpdateAcrossAgentRestart", e.testRejectedAcrossRestart},
		{"AgentRestartUnchanged", e.testAgentRestart},
		{"ChangesWhileAgentDown", e.testChangesWhileDown},
		{"VswitchdRestart", e.testVswitchdRestart},
		{"Footprint", e.testFootprint},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.f) {
			// Later scenarios build on the agent being up; keep going
			// only if it is.
			if !e.agent.running() {
				t.Fatalf("the agent is not running after %s", s.name)
			}
		}
	}
}

// measure holds what the Measurements scenario set up for later ones.
var measure struct {
	ma, mb, mc, mz, ml, mn endpoint
}

func needMeasure(t *testing.T) {
	t.Helper()
	if measure.mn.IP == "" {
		t.Fatal("this scenario needs the pods and policies of Measurements, which failed")
	}
}

// Policy created (client-go), updated to a named port (kubectl apply of
// YAML), deleted: exact flows by cookie and traced verdicts at each step.
func (e *env) testPolicyLifecycle(t *testing.T) {
	const ns = "lifecycle"
	e.namespace(t, ns, map[string]string{"scenario": ns})
	web := []corev1.ContainerPort{{Name: "web", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}}
	a := e.pod(t, podSpec{ns: ns, name: "a", node: localNode, labels: map[string]string{"app": "a"}, ports: web})
	b := e.pod(t, podSpec{ns: ns, name: "b", node: localNode, labels: map[string]string{"app": "b", "role": "client"}})
	c := e.pod(t, podSpec{ns: ns, name: "c", node: remoteNode, labels: map[string]string{"app": "c", "role": "client"}})

	e.waitFlows(t, "pod a", podCookie(ns, "a"), flowSpec{count: podFlowCount,
		has: []string{"table=0,in_port=" + fmt.Sprint(a.OFPort) + ",dl_src=" + a.MAC + ",nw_src=" + a.IP, "table=60,nw_dst=" + a.IP}})
	e.waitFlows(t, "pod b", podCookie(ns, "b"), flowSpec{count: podFlowCount})
	// No policy: everything open.
	e.expect(t,
		allow(b, a, "tcp", 8080), allow(c, a, "tcp", 8080), allow(external, a, "tcp", 8080), allow(a, b, "udp", 53),
		allow(a, c, "tcp", 80), allow(a, external, "tcp", 443))

	rule := ruleCookie(ns, "allow-clients", model.Ingress, 0)
	e.createPolicy(t, ingressPolicy(ns, "allow-clients", map[string]string{"app": "a"},
		[]networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"role": "client"})}, tcpPort(8080)))
	// targets 1 + peers 2 + ports 1 + conj_id 1
	created := e.waitFlows(t, "rule allow-clients", rule, flowSpec{count: 5, has: []string{
		"table=40,nw_dst=" + a.IP, "table=40,nw_src=" + b.IP, "table=40,nw_src=" + c.IP,
		"table=40,tcp,tp_dst=8080", "table=40,conj_id="}})
	e.waitFlows(t, "pod a isolated", podCookie(ns, "a"), flowSpec{count: podFlowCount + 1,
		has: []string{"table=40,priority=20000,nw_dst=" + a.IP + ",actions=drop"}})
	e.waitFlows(t, "pod b not isolated", podCookie(ns, "b"), flowSpec{count: podFlowCount, hasNot: []string{"priority=20000"}})
	e.expect(t,
		allow(b, a, "tcp", 8080), allow(c, a, "tcp", 8080),
		deny(b, a, "tcp", 9090), deny(b, a, "udp", 8080), deny(external, a, "tcp", 8080),
		allow(theNode, a, "tcp", 9090), // node-local
		allow(a, b, "tcp", 8080), allow(external, b, "tcp", 8080), allow(a, c, "tcp", 80))
	oldIDs := conjIDs(created)

	// Update with kubectl: the named port "web" (9090 on a).
	e.kubectlApply(t, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-clients
  namespace: lifecycle
spec:
  podSelector:
    matchLabels:
      app: a
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchLabels:
          role: client
    ports:
    - protocol: TCP
      port: web
`)
	updated := e.waitFlows(t, "rule allow-clients after the update", rule, flowSpec{count: 5,
		has:    []string{"table=40,tcp,tp_dst=9090", "table=40,nw_src=" + b.IP, "table=40,nw_src=" + c.IP, "table=40,conj_id="},
		hasNot: []string{"tp_dst=8080"}})
	newIDs := conjIDs(updated)
	if len(newIDs) != 1 || slices.Equal(newIDs, oldIDs) {
		t.Errorf("conjunction after the update %v, before %v: want one new conjunction replacing the old", newIDs, oldIDs)
	}
	all, err := e.ourFlows()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range oldIDs {
		for _, f := range all {
			if strings.Contains(f, "conj_id="+id+" ") || strings.Contains(f, "conjunction("+id+",") {
				t.Errorf("old conjunction %s still installed: %s", id, f)
			}
		}
	}
	e.expect(t,
		deny(b, a, "tcp", 8080), deny(c, a, "tcp", 8080),
		allow(b, a, "tcp", 9090), allow(c, a, "tcp", 9090),
		deny(external, a, "tcp", 9090), deny(b, a, "udp", 9090))

	e.deletePolicy(t, ns, "allow-clients")
	e.waitFlows(t, "rule allow-clients after delete", rule, flowSpec{count: 0})
	e.waitFlows(t, "pod a open again", podCookie(ns, "a"), flowSpec{count: podFlowCount, hasNot: []string{"priority=20000"}})
	e.expect(t, allow(b, a, "tcp", 8080), allow(external, a, "tcp", 8080), allow(c, a, "udp", 1))
}

// Egress rules (ipBlock with except, pods on both nodes, UDP to a Service
// address) and an ingress rule "- {}" that allows everything.
func (e *env) testEgress(t *testing.T) {
	const ns = "egress"
	e.namespace(t, ns, nil)
	e1 := e.pod(t, podSpec{ns: ns, name: "e1", node: localNode, labels: map[string]string{"app": "e1"}})
	db := e.pod(t, podSpec{ns: ns, name: "db", node: remoteNode, labels: map[string]string{"role": "db"}})
	db2 := e.pod(t, podSpec{ns: ns, name: "db2", node: localNode, labels: map[string]string{"role": "db"}})
	web := e.pod(t, podSpec{ns: ns, name: "web", node: localNode, labels: map[string]string{"role": "web"}})
	inside := endpoint{Name: "192.0.2.10", IP: "192.0.2.10"}
	excepted := endpoint{Name: "192.0.2.200 (except)", IP: "192.0.2.200"}
	dns := endpoint{Name: "dns 10.96.0.10", IP: "10.96.0.10"}
	e.waitFlows(t, "pod e1", podCookie(ns, "e1"), flowSpec{count: podFlowCount})
	e.expect(t, allow(e1, excepted, "tcp", 443), allow(e1, web, "tcp", 5432))

	udp := corev1.ProtocolUDP
	p53 := intstr.FromInt32(53)
	e.createPolicy(t, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "e1-out"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "e1"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.0/24", Except: []string{"192.0.2.128/25"}}}}, Ports: []networkingv1.NetworkPolicyPort{tcpPort(443)}},
				{To: []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"role": "db"})}, Ports: []networkingv1.NetworkPolicyPort{tcpPort(5432)}},
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.96.0.10/32"}}}, Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &p53}}},
			},
		},
	})
	rules := []openflow.Cookie{ruleCookie(ns, "e1-out", model.Egress, 0), ruleCookie(ns, "e1-out", model.Egress, 1), ruleCookie(ns, "e1-out", model.Egress, 2)}
	e.waitFlows(t, "egress rule 0", rules[0], flowSpec{count: -1, has: []string{"table=30,nw_dst=192.0.2.0/25", "table=30,tcp,tp_dst=443", "table=30,conj_id="}, hasNot: []string{"192.0.2.128"}})
	e.waitFlows(t, "egress rule 1", rules[1], flowSpec{count: -1, has: []string{"table=30,nw_dst=" + db.IP, "table=30,nw_dst=" + db2.IP, "table=30,tcp,tp_dst=5432", "table=30,conj_id="}})
	e.waitFlows(t, "egress rule 2", rules[2], flowSpec{count: -1, has: []string{"table=30,nw_dst=10.96.0.10", "table=30,udp,tp_dst=53", "table=30,conj_id="}})
	// One target flow shared by the three conjunctions (cookie of one of
	// them), then per rule: peers + ports + conj_id.
	var union []string
	for _, c := range rules {
		f, err := e.flowsOf(c)
		if err != nil {
			t.Fatal(err)
		}
		union = append(union, f...)
	}
	if err := (flowSpec{count: 1 + (1 + 1 + 1) + (2 + 1 + 1) + (1 + 1 + 1), has: []string{"table=30,in_port=" + fmt.Sprint(e1.OFPort)}}).check(union); err != nil {
		t.Errorf("egress rules' flows: %v", err)
	}
	e.waitFlows(t, "pod e1 egress-isolated", podCookie(ns, "e1"), flowSpec{count: podFlowCount + 1,
		has: []string{"table=30,priority=20000,in_port=" + fmt.Sprint(e1.OFPort) + ",actions=drop"}})
	e.expect(t,
		allow(e1, inside, "tcp", 443), deny(e1, excepted, "tcp", 443), deny(e1, inside, "tcp", 80),
		allow(e1, db, "tcp", 5432), allow(e1, db2, "tcp", 5432), deny(e1, db, "tcp", 5433), deny(e1, web, "tcp", 5432),
		allow(e1, dns, "udp", 53), deny(e1, dns, "tcp", 53),
		allow(web, e1, "tcp", 80), allow(external, e1, "tcp", 80), allow(web, db2, "tcp", 5432))

	// Ingress "- {}": isolated for ingress, and everything allowed in.
	e.kubectlApply(t, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: e1-in-all
  namespace: egress
spec:
  podSelector:
    matchLabels:
      app: e1
  policyTypes: [Ingress]
  ingress:
  - {}
`)
	e.waitFlows(t, "ingress allow-all", ruleCookie(ns, "e1-in-all", model.Ingress, 0), flowSpec{count: 1,
		has: []string{"table=40,priority=30001,nw_dst=" + e1.IP + ",actions=goto_table:50"}})
	e.waitFlows(t, "pod e1 isolated both ways", podCookie(ns, "e1"), flowSpec{count: podFlowCount + 2, has: []string{"table=40,priority=20000", "table=30,priority=20000"}})
	e.expect(t, allow(external, e1, "tcp", 80), allow(db, e1, "udp", 9), allow(web, e1, "sctp", 7), deny(e1, excepted, "tcp", 443))

	e.deletePolicy(t, ns, "e1-out")
	e.deletePolicy(t, ns, "e1-in-all")
	for _, c := range append(rules, ruleCookie(ns, "e1-in-all", model.Ingress, 0)) {
		e.waitFlows(t, "deleted rule", c, flowSpec{count: 0})
	}
	e.waitFlows(t, "pod e1 open", podCookie(ns, "e1"), flowSpec{count: podFlowCount})
	e.expect(t, allow(e1, excepted, "tcp", 443), allow(e1, web, "tcp", 5432), allow(e1, dns, "tcp", 53))
}

// Pod labels change on the peer side (local and remote pod) and on the
// target side.
func (e *env) testPodLabels(t *testing.T) {
	const ns = "podlabels"
	e.namespace(t, ns, nil)
	w := e.pod(t, podSpec{ns: ns, name: "w", node: localNode, labels: map[string]string{"app": "web"}})
	p := e.pod(t, podSpec{ns: ns, name: "p", node: localNode, labels: map[string]string{"app": "p"}})
	r := e.pod(t, podSpec{ns: ns, name: "r", node: remoteNode, labels: map[string]string{"app": "r"}})
	tp := e.pod(t, podSpec{ns: ns, name: "t", node: localNode, labels: map[string]string{"app": "other"}})
	e.kubectlApply(t, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-from-clients
  namespace: podlabels
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - from:
    - podSelector:
        matchLabels:
          role: client
    ports:
    - port: 81
`)
	rule := ruleCookie(ns, "web-from-clients", model.Ingress, 0)
	// No peer matches yet: nothing can complete the conjunction.
	e.waitFlows(t, "pod w isolated", podCookie(ns, "w"), flowSpec{count: podFlowCount + 1, has: []string{"priority=20000"}})
	e.expect(t, deny(p, w, "tcp", 81), deny(r, w, "tcp", 81), allow(external, tp, "tcp", 81), allow(p, tp, "tcp", 81))
	e.waitFlows(t, "pod t and p", podCookie(ns, "t"), flowSpec{count: podFlowCount})

	// Peer side, local pod.
	e.patchLabels(t, "pod", ns, "p", map[string]*string{"role": ptr("client")})
	e.waitFlows(t, "rule with peer p", rule, flowSpec{count: -1, has: []string{"table=40,nw_src=" + p.IP, "table=40,nw_dst=" + w.IP}, hasNot: []string{"nw_src=" + r.IP}})
	e.expect(t, allow(p, w, "tcp", 81), deny(p, w, "tcp", 82), deny(r, w, "tcp", 81))
	// Peer side, remote pod.
	e.patchLabels(t, "pod", ns, "r", map[string]*string{"role": ptr("client")})
	e.waitFlows(t, "rule with peer r", rule, flowSpec{count: 5, has: []string{"table=40,nw_src=" + r.IP, "table=40,nw_src=" + p.IP}})
	e.expect(t, allow(r, w, "tcp", 81), allow(p, w, "tcp", 81), deny(external, w, "tcp", 81))

	// Target side: t becomes a web pod.
	e.patchLabels(t, "pod", ns, "t", map[string]*string{"app": ptr("web")})
	e.waitFlows(t, "rule with target t", rule, flowSpec{count: 6, has: []string{"table=40,nw_dst=" + tp.IP, "table=40,nw_dst=" + w.IP}})
	e.waitFlows(t, "pod t isolated", podCookie(ns, "t"), flowSpec{count: podFlowCount + 1, has: []string{"table=40,priority=20000,nw_dst=" + tp.IP}})
	e.expect(t, deny(external, tp, "tcp", 81), allow(p, tp, "tcp", 81), allow(r, tp, "tcp", 81), deny(w, tp, "tcp", 81))
	// ... and stops being one.
	e.patchLabels(t, "pod", ns, "t", map[string]*string{"app": ptr("other")})
	e.waitFlows(t, "rule without target t", rule, flowSpec{count: 5, hasNot: []string{"nw_dst=" + tp.IP}})
	e.waitFlows(t, "pod t open", podCookie(ns, "t"), flowSpec{count: podFlowCount})
	e.expect(t, allow(external, tp, "tcp", 81), allow(w, tp, "tcp", 81))
	// Peer side, label removed.
	e.patchLabels(t, "pod", ns, "p", map[string]*string{"role": nil})
	e.waitFlows(t, "rule without peer p", rule, flowSpec{count: 4, hasNot: []string{"nw_src=" + p.IP}})
	e.expect(t, deny(p, w, "tcp", 81), allow(r, w, "tcp", 81))
}

// A namespaceSelector peer follows the peer namespace's labels.
func (e *env) testNamespaceLabels(t *testing.T) {
	const srvNS, cliNS = "nssel-srv", "nssel-cli"
	e.namespace(t, srvNS, nil)
	e.namespace(t, cliNS, map[string]string{"team": "strangers"})
	s := e.pod(t, podSpec{ns: srvNS, name: "s", node: localNode, labels: map[string]string{"app": "srv"}})
	q1 := e.pod(t, podSpec{ns: cliNS, name: "q1", node: remoteNode})
	q2 := e.pod(t, podSpec{ns: cliNS, name: "q2", node: localNode})
	e.createPolicy(t, ingressPolicy(srvNS, "from-friends", nil, []networkingv1.NetworkPolicyPeer{{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "friends"}},
	}}, tcpPort(82)))
	rule := ruleCookie(srvNS, "from-friends", model.Ingress, 0)
	e.waitFlows(t, "pod s isolated", podCookie(srvNS, "s"), flowSpec{count: podFlowCount + 1, has: []string{"priority=20000"}})
	e.expect(t, deny(q1, s, "tcp", 82), deny(q2, s, "tcp", 82))

	e.patchLabels(t, "namespace", "", cliNS, map[string]*string{"team": ptr("friends")})
	e.waitFlows(t, "rule with the friends", rule, flowSpec{count: 5, has: []string{"table=40,nw_src=" + q1.IP, "table=40,nw_src=" + q2.IP, "table=40,tcp,tp_dst=82"}})
	e.expect(t, allow(q1, s, "tcp", 82), allow(q2, s, "tcp", 82), deny(q1, s, "tcp", 83), deny(external, s, "tcp", 82))

	e.patchLabels(t, "namespace", "", cliNS, map[string]*string{"team": ptr("strangers")})
	e.waitFlows(t, "rule without the friends", rule, flowSpec{hasNot: []string{"nw_src=" + q1.IP, "nw_src=" + q2.IP}, count: -1})
	e.expect(t, deny(q1, s, "tcp", 82), deny(q2, s, "tcp", 82))
}

// A pod deleted and created again under its name, with a new UID and IP:
// peer flows follow the new IP; the old one is not allowed any more.
func (e *env) testPodRecreated(t *testing.T) {
	const ns = "recreate"
	e.namespace(t, ns, nil)
	tgt := e.pod(t, podSpec{ns: ns, name: "t", node: localNode, labels: map[string]string{"app": "t"}})
	cl := e.pod(t, podSpec{ns: ns, name: "cl", node: remoteNode, labels: map[string]string{"app": "client"}})
	lc := e.pod(t, podSpec{ns: ns, name: "lc", node: localNode, labels: map[string]string{"app": "client"}})
	e.createPolicy(t, ingressPolicy(ns, "from-clients", map[string]string{"app": "t"},
		[]networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"app": "client"})}, tcpPort(83)))
	rule := ruleCookie(ns, "from-clients", model.Ingress, 0)
	e.waitFlows(t, "rule", rule, flowSpec{count: 5, has: []string{"nw_src=" + cl.IP, "nw_src=" + lc.IP}})
	e.expect(t, allow(cl, tgt, "tcp", 83), allow(lc, tgt, "tcp", 83), deny(external, tgt, "tcp", 83))

	// Remote pod: delete and create with a new IP (new UID from the API).
	e.deletePod(t, ns, "cl")
	cl2 := e.pod(t, podSpec{ns: ns, name: "cl", node: remoteNode, labels: map[string]string{"app": "client"}})
	if cl2.UID == cl.UID || cl2.IP == cl.IP {
		t.Fatalf("recreated pod has UID %s IP %s, before %s %s", cl2.UID, cl2.IP, cl.UID, cl.IP)
	}
	e.waitFlows(t, "rule with the new remote IP", rule, flowSpec{count: 5, has: []string{"table=40,nw_src=" + cl2.IP}, hasNot: []string{"nw_src=" + cl.IP}})
	e.expect(t, allow(cl2, tgt, "tcp", 83), deny(cl, tgt, "tcp", 83))

	// Local pod: CNI DEL (port gone), pod deleted, created again with a new
	// IP, CNI ADD (a new port with a new MAC).
	e.detach(t, lc)
	e.deletePod(t, ns, "lc")
	e.waitFlows(t, "old local pod gone", podCookie(ns, "lc"), flowSpec{count: 0})
	lc2 := e.podCNIOrder(t, podSpec{ns: ns, name: "lc", node: localNode, labels: map[string]string{"app": "client"}})
	e.waitFlows(t, "new local pod", podCookie(ns, "lc"), flowSpec{count: podFlowCount,
		has: []string{"table=0,in_port=" + fmt.Sprint(lc2.OFPort) + ",dl_src=" + lc2.MAC + ",nw_src=" + lc2.IP}, hasNot: []string{lc.IP, lc.MAC}})
	e.waitFlows(t, "rule with the new local IP", rule, flowSpec{count: 5, has: []string{"table=40,nw_src=" + lc2.IP}, hasNot: []string{"nw_src=" + lc.IP}})
	spoof := lc2
	spoof.Name, spoof.IP = "new lc port with the old IP", lc.IP
	e.expect(t, allow(lc2, tgt, "tcp", 83), deny(spoof, tgt, "tcp", 83), allow(cl2, tgt, "tcp", 83),
		deny(endpoint{Name: "old lc IP via gateway", IP: lc.IP}, tgt, "tcp", 83))
}

// Pods in phase Succeeded and hostNetwork pods are neither targets nor
// peers; a completed pod's IP reused by a new pod follows the new pod.
func (e *env) testPhases(t *testing.T) {
	const ns = "phases"
	e.namespace(t, ns, nil)
	a := e.pod(t, podSpec{ns: ns, name: "a", node: localNode, labels: map[string]string{"app": "a"}})
	client := map[string]string{"role": "client"}
	old := e.pod(t, podSpec{ns: ns, name: "old", node: remoteNode, labels: client})
	e.createPolicy(t, ingressPolicy(ns, "from-clients", map[string]string{"app": "a"},
		[]networkingv1.NetworkPolicyPeer{podPeer(client)}, tcpPort(7100)))
	rule := ruleCookie(ns, "from-clients", model.Ingress, 0)
	e.waitFlows(t, "rule", rule, flowSpec{count: 4, has: []string{"table=40,nw_src=" + old.IP}})
	e.expect(t, allow(old, a, "tcp", 7100))

	complete := func(name string) {
		t.Helper()
		p, err := e.c.Client.CoreV1().Pods(ns).Get(e.ctx(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodSucceeded
		if _, err := e.c.Client.CoreV1().Pods(ns).UpdateStatus(e.ctx(), p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The client completes; its IP goes to a pod that is no client.
	complete("old")
	e.waitFlows(t, "rule without the completed pod", rule, flowSpec{count: -1, hasNot: []string{"nw_src=" + old.IP}})
	reuse := e.pod(t, podSpec{ns: ns, name: "reuse", node: remoteNode, ip: old.IP})
	// The other way round: a completed non-client keeps an IP that a
	// running client has too.
	done := e.pod(t, podSpec{ns: ns, name: "done", node: remoteNode})
	complete("done")
	fresh := e.pod(t, podSpec{ns: ns, name: "fresh", node: remoteNode, labels: client, ip: done.IP})
	// hostNetwork pods share the node's address: never a peer.
	hn := hostNetworkPod(ns, "hostnet", remoteNode, client)
	hostIP := "172.18.0.2"
	if _, err := e.c.CreatePod(e.ctx(), hn, []string{hostIP}); err != nil {
		t.Fatal(err)
	}
	e.waitFlows(t, "rule with the fresh client only", rule, flowSpec{count: 4,
		has: []string{"table=40,nw_src=" + fresh.IP}, hasNot: []string{"nw_src=" + hostIP}})
	e.expect(t, deny(reuse, a, "tcp", 7100), allow(fresh, a, "tcp", 7100),
		deny(endpoint{Name: "hostNetwork client on node-2", IP: hostIP}, a, "tcp", 7100))
	e.deletePolicy(t, ns, "from-clients")
	e.waitFlows(t, "rule deleted", rule, flowSpec{count: 0})
}

// A malformed Kubernetes 1.6 isolation annotation is counted and isolates
// (fail closed); a valid one isolates; removing it opens again.
func (e *env) testLegacyAnnotation(t *testing.T) {
	const ns = "legacy"
	e.namespace(t, ns, nil)
	m := e.pod(t, podSpec{ns: ns, name: "m", node: localNode})
	peer := e.pod(t, podSpec{ns: ns, name: "n", node: remoteNode})
	e.waitFlows(t, "pod m", podCookie(ns, "m"), flowSpec{count: podFlowCount})
	e.expect(t, allow(external, m, "tcp", 84), allow(peer, m, "tcp", 84))

	annotate := func(v *string) {
		t.Helper()
		b := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%s}}}`, model.LegacyAnnotation, jsonOrNull(v))
		if _, err := e.c.Client.CoreV1().Namespaces().Patch(e.ctx(), ns, "application/merge-patch+json", b, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rejected := func() float64 { return e.agent.metric(metricRejNS) }
	isolated := flowSpec{count: podFlowCount + 1, has: []string{"table=40,priority=20000,nw_dst=" + m.IP + ",actions=drop"}}

	before := rejected()
	annotate(ptr(`{"ingress": {"isolation": "DefaultDeny"`)) // not JSON
	eventually(t, 10*time.Second, "rejected namespace counted", func() error {
		if got := rejected(); got < before+1 {
			return fmt.Errorf("%s = %v, want ≥ %v", metricRejNS, got, before+1)
		}
		return nil
	})
	e.waitFlows(t, "pod m isolated (malformed annotation)", podCookie(ns, "m"), isolated)
	e.expect(t, deny(external, m, "tcp", 84), deny(peer, m, "tcp", 84), allow(theNode, m, "tcp", 84), allow(m, peer, "tcp", 84))
	t.Logf("%s went %v → %v after the malformed annotation", metricRejNS, before, rejected())

	before = rejected()
	annotate(ptr(`{"ingress":{"isolation":"AllowAll"}}`)) // unknown isolation
	eventually(t, 10*time.Second, "unknown isolation counted", func() error {
		if got := rejected(); got < before+1 {
			return fmt.Errorf("%s = %v, want ≥ %v", metricRejNS, got, before+1)
		}
		return nil
	})
	e.expect(t, deny(external, m, "tcp", 84))

	annotate(ptr(`{"ingress":{"isolation":"DefaultDeny"}}`)) // valid: isolates, not counted
	before = e.agent.settledMetrics(metricRejNS, metricEvents)[metricRejNS]
	e.waitFlows(t, "pod m isolated (DefaultDeny)", podCookie(ns, "m"), isolated)
	e.expect(t, deny(external, m, "tcp", 84), allow(theNode, m, "tcp", 84))
	e.patchLabels(t, "namespace", "", ns, map[string]*string{"touched": ptr("yes")}) // re-processed, still valid
	time.Sleep(300 * time.Millisecond)
	if got := e.agent.settledMetrics(metricRejNS, metricEvents)[metricRejNS]; got != before {
		t.Errorf("a valid DefaultDeny annotation was counted as rejected: %v → %v", before, got)
	}

	annotate(nil)
	e.waitFlows(t, "pod m open (no annotation)", podCookie(ns, "m"), flowSpec{count: podFlowCount})
	e.expect(t, allow(external, m, "tcp", 84), allow(peer, m, "tcp", 84))
}

func jsonOrNull(v *string) string {
	if v == nil {
		return "null"
	}
	return fmt.Sprintf("%q", *v)
}

// kubectlTimed runs "kubectl apply -f file" and polls the bridge until
// spec holds for cookie. It returns the time from just before kubectl's exec
// to the flows being seen, and to kubectl's exit.
func (e *env) kubectlTimed(t *testing.T, file string, cookie openflow.Cookie, spec flowSpec) (committed, kubectlExit time.Duration, polls int) {
	t.Helper()
	cmd := exec.Command("kubectl", "--kubeconfig="+e.c.Kubeconfig, "--cache-dir="+filepath.Join(e.c.Dir, "kubectl-cache"), "apply", "-f", file)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	exited := make(chan time.Duration, 1)
	var runErr error
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { runErr = cmd.Wait(); exited <- time.Since(t0) }()
	deadline := t0.Add(15 * time.Second)
	for {
		polls++
		flows, err := e.flowsOf(cookie)
		if err == nil && spec.check(flows) == nil {
			committed = time.Since(t0)
			break
		}
		if time.Now().After(deadline) {
			<-exited
			t.Fatalf("flows of %s not committed 15 s after kubectl apply (kubectl: %v %s): %v", file, runErr, out.String(), spec.check(flows))
		}
		time.Sleep(time.Millisecond)
	}
	kubectlExit = <-exited
	if runErr != nil {
		t.Fatalf("kubectl apply -f %s: %v\n%s", file, runErr, out.String())
	}
	return committed, kubectlExit, polls
}

func measurePolicyYAML(name string, port int, peerRole string) string {
	return fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: %s
  namespace: measure
spec:
  podSelector:
    matchLabels:
      app: m
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchLabels:
          role: %s
    ports:
    - protocol: TCP
      port: %d
`, name, peerRole, port)
}

// The numbers the issue asks for: kubectl apply → flows committed; flow
// mods per single-pod event; the agent's memory.
func (e *env) testMeasurements(t *testing.T) {
	const ns = "measure"
	e.namespace(t, ns, nil)
	ma := e.pod(t, podSpec{ns: ns, name: "ma", node: localNode, labels: map[string]string{"app": "m"}})
	mb := e.pod(t, podSpec{ns: ns, name: "mb", node: localNode, labels: map[string]string{"role": "mclient"}})
	mc := e.pod(t, podSpec{ns: ns, name: "mc", node: remoteNode, labels: map[string]string{"role": "mclient"}})
	e.waitFlows(t, "pod ma", podCookie(ns, "ma"), flowSpec{count: podFlowCount})
	e.waitFlows(t, "pod mb", podCookie(ns, "mb"), flowSpec{count: podFlowCount})
	measure.ma, measure.mb, measure.mc = ma, mb, mc

	// (1a) 20 new policies, each applied with kubectl. The bridge is polled
	// with ovs-ofctl dump-flows cookie=C/-1 back to back (1 ms apart).
	var commits, exits, afterExit []time.Duration
	var polls int
	var pollTime time.Duration
	record := func(c, x time.Duration, p int) {
		commits, exits, afterExit = append(commits, c), append(exits, x), append(afterExit, c-x)
		polls += p
		pollTime += c
	}
	const n = 20
	for i := range n {
		name := fmt.Sprintf("pol-%02d", i)
		port := 10000 + i
		f := e.writeManifest(t, measurePolicyYAML(name, port, "mclient"))
		record(e.kubectlTimed(t, f, ruleCookie(ns, name, model.Ingress, 0),
			flowSpec{count: -1, has: []string{"table=40,conj_id=", fmt.Sprintf("table=40,tcp,tp_dst=%d", port)}}))
	}
	t.Logf("MEASURE apply->committed (create, %d distinct policies, kubectl exec to flows on the bridge): %s", n, summarize(commits))
	t.Logf("MEASURE   kubectl apply process alone (exec to exit): %s; committed minus kubectl exit: %s; poll period %.1fms",
		summarize(exits), summarize(afterExit), float64(pollTime)/float64(polls)/float64(time.Millisecond))
	e.expect(t, allow(mb, ma, "tcp", 10007), allow(mc, ma, "tcp", 10019), deny(mb, ma, "tcp", 9999), deny(external, ma, "tcp", 10007))

	// (1b) 20 updates of one policy, its port alternating.
	commits, exits, afterExit, polls, pollTime = nil, nil, nil, 0, 0
	for i := range n {
		oldPort, newPort := 10000, 10100
		if i%2 == 1 {
			oldPort, newPort = 10100, 10000
		}
		f := e.writeManifest(t, measurePolicyYAML("pol-00", newPort, "mclient"))
		record(e.kubectlTimed(t, f, ruleCookie(ns, "pol-00", model.Ingress, 0),
			flowSpec{count: -1, has: []string{fmt.Sprintf("table=40,tcp,tp_dst=%d", newPort)}, hasNot: []string{fmt.Sprintf("tp_dst=%d", oldPort)}}))
	}
	t.Logf("MEASURE apply->committed (update, %d port changes of one policy): %s", n, summarize(commits))
	t.Logf("MEASURE   kubectl apply process alone (exec to exit): %s; committed minus kubectl exit: %s; poll period %.1fms",
		summarize(exits), summarize(afterExit), float64(pollTime)/float64(polls)/float64(time.Millisecond))
	e.expect(t, allow(mb, ma, "tcp", 10000), deny(mb, ma, "tcp", 10100))

	// (2) Flow mods per single-pod event.
	ms := e.pod(t, podSpec{ns: ns, name: "ms", node: remoteNode, labels: map[string]string{"role": "special"}})
	mz := e.pod(t, podSpec{ns: ns, name: "mz", node: remoteNode})
	ml := e.pod(t, podSpec{ns: ns, name: "ml", node: localNode})
	measure.mz = mz
	e.createPolicy(t, ingressPolicy(ns, "pol-peer", map[string]string{"app": "m"},
		[]networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"role": "special"})}, tcpPort(11000)))
	peerRule := ruleCookie(ns, "pol-peer", model.Ingress, 0)
	e.waitFlows(t, "pol-peer", peerRule, flowSpec{count: -1, has: []string{"table=40,nw_src=" + ms.IP, "table=40,tcp,tp_dst=11000"}})
	e.waitFlows(t, "pod ml", podCookie(ns, "ml"), flowSpec{count: podFlowCount})
	names := []string{metricFlowMods, metricBundles, metricEvents}
	delta := func(before, after map[string]float64) string {
		return fmt.Sprintf("flow_mods=%v bundles=%v events=%v",
			after[metricFlowMods]-before[metricFlowMods], after[metricBundles]-before[metricBundles], after[metricEvents]-before[metricEvents])
	}
	for _, p := range []struct {
		what string
		ep   endpoint
	}{{"node-2 pod", mz}, {"node-1 pod", ml}} {
		before := e.agent.settledMetrics(names...)
		name := strings.TrimPrefix(p.ep.Name, ns+"/")
		e.patchLabels(t, "pod", ns, name, map[string]*string{"role": ptr("special")})
		e.waitFlows(t, "pol-peer with "+name, peerRule, flowSpec{count: -1, has: []string{"table=40,nw_src=" + p.ep.IP}})
		after := e.agent.settledMetrics(names...)
		t.Logf("MEASURE label change making a %s a peer of one rule: %s", p.what, delta(before, after))
		if got := after[metricFlowMods] - before[metricFlowMods]; got != 1 {
			t.Errorf("a %s becoming the peer of one rule cost %v flow mods, want 1 (its address in that rule)", p.what, got)
		}
	}
	e.expect(t, allow(mz, ma, "tcp", 11000), allow(ml, ma, "tcp", 11000), deny(mz, ma, "tcp", 10000))

	before := e.agent.settledMetrics(names...)
	mn := e.pod(t, podSpec{ns: ns, name: "mn", node: localNode, labels: map[string]string{"app": "solo"}})
	measure.ml, measure.mn = ml, mn
	e.waitFlows(t, "pod mn", podCookie(ns, "mn"), flowSpec{count: podFlowCount})
	after := e.agent.settledMetrics(names...)
	// Its own flows and the drop of its address from the gateway.
	t.Logf("MEASURE single pod add on node-1 (Pod create + status, then its OVS port; not a policy target or peer): %s (the pod's own flows: %d, plus its spoofed-source drop)",
		delta(before, after), podFlowCount)
	if got := after[metricFlowMods] - before[metricFlowMods]; got != podFlowCount+1 {
		t.Errorf("a pod add cost %v flow mods, want %d (its own flows and its spoofed-source drop)", got, podFlowCount+1)
	}
	e.expect(t, allow(external, mn, "tcp", 1), deny(mn, ma, "tcp", 10000), allow(mb, ma, "tcp", 10000))

	st := e.agent.procStatus("VmRSS", "VmHWM")
	m := e.agent.settledMetrics(metricFlows)
	t.Logf("MEASURE agent memory after the measurements: VmRSS=%s VmHWM=%s (%v flows installed)", st["VmRSS"], st["VmHWM"], m[metricFlows])
}

// A policy version the agent cannot use fails closed (controller.applyPolicy):
// its pods stay isolated with no rule allowing anything, the same before and
// after an agent restart — never half-applied, never silently open.
func (e *env) testRejectedAcrossRestart(t *testing.T) {
	const ns = "rejected"
	e.namespace(t, ns, nil)
	a := e.pod(t, podSpec{ns: ns, name: "a", node: localNode, labels: map[string]string{"app": "a"}})
	b := e.pod(t, podSpec{ns: ns, name: "b", node: remoteNode, labels: map[string]string{"role": "client"}})
	e.createPolicy(t, ingressPolicy(ns, "p", map[string]string{"app": "a"},
		[]networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"role": "client"})}, tcpPort(7000)))
	rule := ruleCookie(ns, "p", model.Ingress, 0)
	t.Cleanup(func() {
		_ = e.c.Client.NetworkingV1().NetworkPolicies(ns).Delete(e.ctx(), "p", metav1.DeleteOptions{})
		e.waitFlows(t, "rule p deleted", rule, flowSpec{count: 0})
		e.waitFlows(t, "pod a no longer isolated", podCookie(ns, "a"), flowSpec{count: -1, hasNot: []string{"priority=20000"}})
	})
	good := e.waitFlows(t, "rule p", rule, flowSpec{count: 4, has: []string{"table=40,nw_src=" + b.IP, "table=40,tcp,tp_dst=7000"}})
	e.expect(t, allow(b, a, "tcp", 7000), deny(external, a, "tcp", 7000), deny(b, a, "tcp", 7001))

	const rej = `ovs_netpol_rejected_objects_total{kind="networkpolicy"}`
	before := e.agent.metric(rej)
	np, err := e.c.Client.NetworkingV1().NetworkPolicies(ns).Get(e.ctx(), "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	np.Spec.Ingress[0].Ports = nil
	for p := range int32(normalize.MaxRulePorts + 1) {
		np.Spec.Ingress[0].Ports = append(np.Spec.Ingress[0].Ports, tcpPort(20000+p))
	}
	if _, err := e.c.Client.NetworkingV1().NetworkPolicies(ns).Update(e.ctx(), np, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "oversized update counted", func() error {
		if got := e.agent.metric(rej); got != before+1 {
			return fmt.Errorf("%s = %v, want %v", rej, got, before+1)
		}
		return nil
	})
	// Rejected: the policy fails closed (its pods isolated, no rule), the
	// same before and after a restart.
	_ = good
	e.waitFlows(t, "rule p withdrawn (fail closed)", rule, flowSpec{count: 0})
	e.expect(t, deny(b, a, "tcp", 7000), deny(external, a, "tcp", 7000), deny(b, a, "tcp", 20000))

	e.agent.stop()
	e.agent.start()
	if got := e.agent.metric(rej); got < 1 {
		t.Errorf("after the restart %s = %v, want the rejected policy counted", rej, got)
	}
	flows, err := e.flowsOf(podCookie(ns, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := (flowSpec{count: -1, has: []string{"table=40,priority=20000,nw_dst=" + a.IP + ",actions=drop"}}).check(flows); err != nil {
		t.Errorf("after an agent restart, pod a (selected by a policy whose current version is rejected) is no longer isolated: %v", err)
	}
	e.expectWithin(t, 2*time.Second, deny(b, a, "tcp", 7000), deny(external, a, "tcp", 7000), deny(external, a, "tcp", 20000))
}

// Agent stopped and started with nothing changed: the flows stay while it
// is down, and the restarted agent finds nothing to change.
func (e *env) testAgentRestart(t *testing.T) {
	needMeasure(t)
	before, err := e.ourFlows()
	if err != nil {
		t.Fatal(err)
	}
	e.agent.stop()
	down, err := e.ourFlows()
	if err != nil {
		t.Fatal(err)
	}
	if d := diffLines(before, down); d != "" {
		t.Errorf("flows changed when the agent stopped:\n%s", d)
	}
	ma, mb := measure.ma, measure.mb
	e.expectWithin(t, time.Second, allow(mb, ma, "tcp", 10005), deny(external, ma, "tcp", 10005))

	t0 := time.Now()
	e.agent.start()
	t.Logf("MEASURE agent restart: exec to /readyz %v", time.Since(t0).Round(time.Millisecond))
	after, err := e.ourFlows()
	if err != nil {
		t.Fatal(err)
	}
	if d := diffLines(before, after); d != "" {
		t.Errorf("flows after the restart differ from before (%d vs %d):\n%s", len(after), len(before), d)
	}
	m := e.agent.settledMetrics(metricFlowMods, metricFlows)
	t.Logf("after the restart: %s=%v %s=%v (dump: %d flows)", metricFlowMods, m[metricFlowMods], metricFlows, m[metricFlows], len(after))
	if m[metricFlowMods] != 0 {
		t.Errorf("the restarted agent made %v flow mods with nothing changed, want 0", m[metricFlowMods])
	}
	if int(m[metricFlows]) != len(after) {
		t.Errorf("%s = %v, but %d flows of ours are installed", metricFlows, m[metricFlows], len(after))
	}
	e.expect(t, allow(mb, ma, "tcp", 10005), deny(external, ma, "tcp", 10005))
}

// Changes made while the agent is down are in force when it is ready again.
func (e *env) testChangesWhileDown(t *testing.T) {
	needMeasure(t)
	const ns = "measure"
	ma, mb, mz, ml, mn := measure.ma, measure.mb, measure.mz, measure.ml, measure.mn
	e.agent.stop()
	e.deletePolicy(t, ns, "pol-19")
	e.kubectlApply(t, measurePolicyYAML("pol-new", 12000, "mclient"))
	e.patchLabels(t, "pod", ns, "mz", map[string]*string{"role": nil})
	// ml goes away (CNI DEL, pod deleted); mn gets a new port (CNI DEL + ADD).
	e.detach(t, ml)
	e.deletePod(t, ns, "ml")
	e.detach(t, mn)
	mn2 := e.attach(t, mn, ns, "mn")
	e.agent.start()

	// Ready means the first full sync is committed: it must already
	// reflect the API as it is, without waiting.
	checks := []struct {
		what   string
		cookie openflow.Cookie
		spec   flowSpec
	}{
		{"pol-19 deleted while down", ruleCookie(ns, "pol-19", model.Ingress, 0), flowSpec{count: 0}},
		{"pol-new created while down", ruleCookie(ns, "pol-new", model.Ingress, 0), flowSpec{count: -1, has: []string{"table=40,conj_id=", "table=40,tcp,tp_dst=12000"}}},
		{"mz no longer a peer", ruleCookie(ns, "pol-peer", model.Ingress, 0), flowSpec{count: -1, hasNot: []string{"nw_src=" + mz.IP, "nw_src=" + ml.IP}}},
		{"ml deleted while down", podCookie(ns, "ml"), flowSpec{count: 0}},
		{"mn on its new port", podCookie(ns, "mn"), flowSpec{count: podFlowCount,
			has:    []string{"table=0,in_port=" + fmt.Sprint(mn2.OFPort) + ",dl_src=" + mn2.MAC, "table=60,nw_dst=" + mn.IP + ",actions=set_field:" + mn2.MAC + "->eth_dst,output:" + fmt.Sprint(mn2.OFPort)},
			hasNot: []string{"in_port=" + fmt.Sprint(mn.OFPort), "output:" + fmt.Sprint(mn.OFPort)}}},
	}
	for _, c := range checks {
		flows, err := e.flowsOf(c.cookie)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.spec.check(flows); err != nil {
			t.Errorf("at /readyz, %s: %v", c.what, err)
			e.waitFlows(t, c.what, c.cookie, c.spec) // does it converge at all?
		}
	}
	e.expect(t, deny(mb, ma, "tcp", 10019), allow(mb, ma, "tcp", 12000), deny(mz, ma, "tcp", 11000), allow(mb, ma, "tcp", 10018),
		allow(mn2, external, "tcp", 443), allow(external, mn2, "tcp", 80), deny(ml, ma, "tcp", 11000))
	measure.mn = mn2
}

// ovs-vswitchd restarts (its flows are gone; OVSDB keeps the bridge): the
// agent notices and restores every flow.
func (e *env) testVswitchdRestart(t *testing.T) {
	needMeasure(t)
	ma, mb, mc := measure.ma, measure.mb, measure.mc
	before, err := e.ourFlows()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := e.sw.RestartVswitchd(); err != nil {
		t.Fatal(err)
	}
	up := time.Since(t0)
	right, err := e.ourFlows()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ovs-vswitchd back after %v with %d of our %d flows", up.Round(time.Millisecond), len(right), len(before))
	var after []string
	eventually(t, 30*time.Second, "all flows restored after the ovs-vswitchd restart", func() error {
		var err error
		if after, err = e.ourFlows(); err != nil {
			return err
		}
		if d := diffLines(before, after); d != "" {
			return fmt.Errorf("%d flows, want %d:\n%s", len(after), len(before), d)
		}
		return nil
	})
	restored := time.Since(t0) - up
	t.Logf("MEASURE ovs-vswitchd restart -> all %d flows restored: %v after the restart began, %v after vswitchd answered (agent check interval 5 s)",
		len(after), time.Since(t0).Round(time.Millisecond), restored.Round(time.Millisecond))
	if restored > 8*time.Second {
		t.Errorf("flows restored %v after ovs-vswitchd came back; the agent checks every 5 s", restored)
	}
	if !e.agent.running() {
		t.Fatal("the agent exited")
	}
	e.agent.waitReady(time.Second)
	e.expect(t,
		allow(mb, ma, "tcp", 10005), allow(mc, ma, "tcp", 12000), deny(external, ma, "tcp", 10005),
		deny(mb, ma, "tcp", 10019), allow(theNode, ma, "tcp", 1), allow(ma, mb, "tcp", 80))
}

// The agent's footprint with everything the test loaded, and its log.
func (e *env) testFootprint(t *testing.T) {
	st := e.agent.procStatus("VmRSS", "VmHWM")
	m := e.agent.settledMetrics(metricFlows)
	pods, err := e.c.Client.CoreV1().Pods("").List(e.ctx(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pols, err := e.c.Client.NetworkingV1().NetworkPolicies("").List(e.ctx(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nss, err := e.c.Client.CoreV1().Namespaces().List(e.ctx(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if flows, err := e.ourFlows(); err != nil {
		t.Error(err)
	} else if int(m[metricFlows]) != len(flows) {
		t.Errorf("%s = %v, but %d flows of ours are installed", metricFlows, m[metricFlows], len(flows))
	}
	t.Logf("MEASURE agent RSS with the test cluster loaded (%d namespaces, %d pods, %d policies, %v flows; after a restart of the agent): VmRSS=%s VmHWM=%s",
		len(nss.Items), len(pods.Items), len(pols.Items), m[metricFlows], st["VmRSS"], st["VmHWM"])
	t.Logf("agent warnings and errors over the whole test (log %s):\n%s", e.agent.logPath, e.agent.logSummary())
}

// diffLines lists lines only in a ("-") or only in b ("+").
func diffLines(a, b []string) string {
	in := func(s []string) map[string]int {
		m := map[string]int{}
		for _, l := range s {
			m[l]++
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, l := range a {
		if mb[l] == 0 {
			out = append(out, "- "+l)
		}
	}
	for _, l := range b {
		if ma[l] == 0 {
			out = append(out, "+ "+l)
		}
	}
	if len(out) == 0 && len(a) != len(b) {
		out = append(out, fmt.Sprintf("(duplicates differ: %d vs %d lines)", len(a), len(b)))
	}
	if len(out) > 40 {
		out = append(out[:40], fmt.Sprintf("... %d more", len(out)-40))
	}
	return strings.Join(out, "\n")
}

func hostNetworkPod(ns, name, node string, labels map[string]string) *corev1.Pod {
	p := k8stest.NewPod(ns, name, node, labels)
	p.Spec.HostNetwork = true
	return p
}
