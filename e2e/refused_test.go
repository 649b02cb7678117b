package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRefusedOrigin: ovs-vswitchd refuses one NetworkPolicy's flows for a
// real reason — table 40 (ingress) of br-int is limited in OVSDB
// (Flow_Table flow_limit, overflow_policy=refuse) below what the policy
// needs. The agent keeps applying everything else: a deny-all created
// afterwards in another namespace is enforced (trace and real probes), the
// refused policy's targets stay isolated with nothing allowed (fail
// closed), the refusal is reported (log, metrics, Event) and retried, and
// once the limit is lifted the policy is installed by a retry.
func TestRefusedOrigin(t *testing.T) {
	w := newWorld(t, "rfsd", "10.75")
	n := w.addNode(t)
	a := n.startAgent(t, "v1")
	for _, ns := range []string{"rf-big", "rf-open"} {
		w.ensureNamespace(t, ns, map[string]string{"ns": ns})
	}
	target := n.addPod(t, podSpec{ns: "rf-big", name: "target", labels: map[string]string{"pod": "target"}})
	peer := n.addPod(t, podSpec{ns: "rf-big", name: "peer", labels: map[string]string{"pod": "peer"}})
	server := n.addPod(t, podSpec{ns: "rf-open", name: "server", labels: map[string]string{"pod": "server"}})
	client := n.addPod(t, podSpec{ns: "rf-open", name: "client", labels: map[string]string{"pod": "client"}})
	w.waitPodsRealized(t)
	w.check(t, (&matrix{}).single(tcp80, peer.key(), target.key(), true))
	w.check(t, (&matrix{}).single(tcp80, client.key(), server.key(), true))

	// Room for 10 more flows in table 40: the big policy needs 40 (its
	// peers, the target dimension, the conj_id flow), the isolation flows
	// of target and server 2.
	base := n.tableFlows(t, 40)
	n.limitTable(t, 40, base+10)
	t.Cleanup(func() { n.limitTable(t, 40, 0) })
	t.Logf("table 40 holds %d flows; limited to %d", base, base+10)

	var blocks []string
	for i := 1; i <= 36; i++ {
		blocks = append(blocks, fmt.Sprintf("  - ipBlock: {cidr: 192.0.2.%d/32}", i))
	}
	blocks = append(blocks, fmt.Sprintf("  - ipBlock: {cidr: %s/32}", peer.ip))
	w.kubectlApply(t, np("rf-big", "big", "podSelector: {matchLabels: {pod: target}}\npolicyTypes: [Ingress]\ningress:\n- from:\n"+strings.Join(blocks, "\n")))
	refusedAfter := waitFor(t, "the agent to report rf-big/big refused", 20*time.Second, func() bool {
		return metricValue(t, a, "ovs_netpol_refused_origins") == 1
	})
	refusedAt := time.Now()
	t.Logf("rf-big/big reported refused %v after kubectl apply", refusedAfter.Round(time.Millisecond))
	logs := a.logLines("OVS refused the flows of an origin", "policy rf-big/big ingress rule 0", "OFPFMFC_TABLE_FULL")
	if len(logs) == 0 {
		t.Fatalf("no log line names the refused policy with OVS's error; log:\n%s", strings.Join(a.logLines("refused"), "\n"))
	}
	t.Logf("log: %s", logs[0])

	// A deny-all in another namespace, created while rf-big/big is refused.
	start := time.Now()
	w.kubectlApply(t, np("rf-open", "deny-all", "podSelector: {}\npolicyTypes: [Ingress]"))
	enforced := waitFor(t, "the deny-all to drop client->server in the bridge", 20*time.Second, func() bool {
		return w.dropped(t, client, server, 80)
	})
	t.Logf("deny-all in rf-open enforced %v after kubectl apply returned (%v after it started), while rf-big/big is refused",
		enforced.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	w.check(t, (&matrix{}).single(tcp80, client.key(), server.key(), false))
	// Fail closed: target is isolated, and the refused allow is missing.
	w.check(t, (&matrix{}).single(tcp80, peer.key(), target.key(), false))

	evWait := waitFor(t, "a FlowsRefused Event on rf-big/big", 20*time.Second, func() bool {
		return slices.ContainsFunc(w.eventsOn(t, "rf-big", "big"), func(s string) bool { return strings.HasPrefix(s, "FlowsRefused ") })
	})
	t.Logf("events on rf-big/big after %v: %q", evWait.Round(time.Millisecond), w.eventsOn(t, "rf-big", "big"))
	waitFor(t, "two retries of rf-big/big", 30*time.Second, func() bool {
		return metricValue(t, a, "ovs_netpol_refused_origin_retries_total") >= 2
	})
	t.Logf("2 retries %v after the refusal was reported; metrics: refused_origins %v, bundle_failures_total %v, refused_origin_retries_total %v",
		time.Since(refusedAt).Round(time.Millisecond), metricValue(t, a, "ovs_netpol_refused_origins"),
		metricValue(t, a, "ovs_netpol_bundle_failures_total"), metricValue(t, a, "ovs_netpol_refused_origin_retries_total"))
	if ev := w.eventsOn(t, "rf-big", "big"); len(ev) != 1 {
		t.Fatalf("want one FlowsRefused Event on rf-big/big despite the retries, got %q", ev)
	}

	// Lift the limit: the next retry installs the policy.
	n.limitTable(t, 40, 0)
	accepted := waitFor(t, "rf-big/big accepted", 3*time.Minute, func() bool {
		return metricValue(t, a, "ovs_netpol_refused_origins") == 0
	})
	t.Logf("rf-big/big accepted %v after the limit was lifted; retries in all %v, bundle failures %v", accepted.Round(time.Millisecond),
		metricValue(t, a, "ovs_netpol_refused_origin_retries_total"), metricValue(t, a, "ovs_netpol_bundle_failures_total"))
	for _, l := range a.logLines("rf-big/big") {
		t.Logf("agent: %.300s", l)
	}
	w.check(t, (&matrix{}).single(tcp80, peer.key(), target.key(), true))
	w.check(t, (&matrix{}).single(tcp80, client.key(), server.key(), false))
	waitFor(t, "a FlowsAccepted Event on rf-big/big", 20*time.Second, func() bool {
		return slices.ContainsFunc(w.eventsOn(t, "rf-big", "big"), func(s string) bool { return strings.HasPrefix(s, "FlowsAccepted ") })
	})
	w.deletePolicies(t, "rf-big", "rf-open")
}

// TestDuplicatePodIP: a second live pod claims a running pod's address
// (its status set through the API, as a stale status would read). The
// agent warns naming both pods, counts the address, and the pod created
// first keeps it: it is still reached, and the other gets no flow for it.
// When the first pod finishes (phase Succeeded), the address moves.
func TestDuplicatePodIP(t *testing.T) {
	w := newWorld(t, "dupip", "10.76")
	n := w.addNode(t)
	a := n.startAgent(t, "v1")
	w.ensureNamespace(t, "dup-a", nil)
	w.ensureNamespace(t, "dup-b", nil)
	owner := n.addPod(t, podSpec{ns: "dup-a", name: "owner", labels: map[string]string{"pod": "owner"}})
	client := n.addPod(t, podSpec{ns: "dup-a", name: "client", labels: map[string]string{"pod": "client"}})
	w.waitPodsRealized(t)

	// A pod of this node, created later, whose status claims owner's IP
	// (no network namespace: no runtime would attach it).
	ghost := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "dup-b", Name: "ghost", Labels: map[string]string{"pod": "ghost"}},
		Spec:       corev1.PodSpec{NodeName: n.name, Containers: []corev1.Container{{Name: "c", Image: "none"}}},
	}
	created, err := w.c.Client.CoreV1().Pods("dup-b").Create(w.ctx(), ghost, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.c.Client.CoreV1().Pods("dup-b").Delete(w.ctx(), "ghost", metav1.DeleteOptions{}) })
	created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: owner.ip, PodIPs: []corev1.PodIP{{IP: owner.ip}}}
	if _, err := w.c.Client.CoreV1().Pods("dup-b").UpdateStatus(w.ctx(), created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, "ovs_netpol_duplicate_pod_ips = 1", 20*time.Second, func() bool {
		return metricValue(t, a, "ovs_netpol_duplicate_pod_ips") == 1
	})
	logs := a.logLines("duplicate pod IP", owner.ip, "dup-a/owner", "dup-b/ghost")
	if len(logs) == 0 {
		t.Fatal("no warning names both pods")
	}
	t.Logf("duplicate counted %v after the ghost's status; log: %s", took.Round(time.Millisecond), logs[0])
	// The older pod keeps its address: still reached, delivered to its port.
	w.check(t, (&matrix{}).single(tcp80, client.key(), owner.key(), true))
	snap := w.flowSnapshot(t)[0]
	if !strings.Contains(snap, fmt.Sprintf("ip,nw_dst=%s actions=set_field:%s->eth_dst,output:%d", owner.ip, owner.mac, owner.ofport)) {
		t.Fatalf("delivery of %s to the owner's port missing:\n%s", owner.ip, snap)
	}

	// The owner finishes: it no longer holds the address.
	o, err := w.c.Client.CoreV1().Pods("dup-a").Get(w.ctx(), "owner", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o.Status.Phase = corev1.PodSucceeded
	if _, err := w.c.Client.CoreV1().Pods("dup-a").UpdateStatus(w.ctx(), o, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the duplicate resolved", 20*time.Second, func() bool {
		return metricValue(t, a, "ovs_netpol_duplicate_pod_ips") == 0
	})
	waitFor(t, "the owner's delivery flow gone", 20*time.Second, func() bool {
		return !strings.Contains(w.flowSnapshot(t)[0], fmt.Sprintf("output:%d", owner.ofport))
	})
}
