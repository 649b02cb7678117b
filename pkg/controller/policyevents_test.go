package controller

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// drain returns the Events recorded so far ("TYPE REASON MESSAGE").
func drain(r *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-r.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// policyEventsFixture runs a controller for node n1 with pod x/a attached
// (ofport 10) and x/b on n2, recording Events into a FakeRecorder (no
// client-go aggregation: what is seen is what the controller recorded).
type policyEventsFixture struct {
	ctx    context.Context
	client *fake.Clientset
	ports  *memPorts
	flows  *memFlows
	rec    *record.FakeRecorder
	c      *Controller
}

func newPolicyEventsFixture(t *testing.T, interval, gap time.Duration) *policyEventsFixture {
	ctx, cancel := context.WithCancel(context.Background())
	f := &policyEventsFixture{ctx: ctx, rec: record.NewFakeRecorder(1000), flows: &memFlows{}}
	f.client = fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "y"}},
		pod("x", "a", "a", "n1", "10.1.1.1", map[string]string{"pod": "a"}),
		pod("x", "b", "b", "n2", "10.1.1.2", map[string]string{"pod": "b"}),
		pod("y", "r", "r", "n2", "10.1.2.1", map[string]string{"pod": "r"}),
	)
	f.ports = &memPorts{b: map[string]compiler.Binding{"x/a": {OFPort: 10, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}}, ch: make(chan struct{}, 1)}
	f.c = New(f.client, f.ports, f.flows, Options{Compiler: compiler.Config{Node: "n1"}, Mode: model.ModeV1,
		CheckInterval: 50 * time.Millisecond, Recorder: f.rec})
	f.c.pev.interval, f.c.pev.gap = interval, gap
	done := make(chan error, 1)
	go func() { done <- f.c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	eventually(t, "ready", f.c.Ready)
	return f
}

// ruleFlows counts the installed flows carrying the cookie of a rule.
func (f *policyEventsFixture) ruleFlows(ns, name string, d model.Direction, i int) int {
	ck := compiler.RuleCookie(compiler.RuleKey(&model.Policy{Namespace: ns, Name: name}, d, i))
	f.flows.mu.Lock()
	defer f.flows.mu.Unlock()
	n := 0
	for _, fl := range f.flows.flows {
		if fl.Cookie == ck {
			n++
		}
	}
	return n
}

// waitEvents waits until n Events are recorded, then for quiet (four report
// intervals) and returns all recorded.
func (f *policyEventsFixture) waitEvents(t *testing.T, n int, quiet time.Duration) []string {
	t.Helper()
	var got []string
	eventually(t, fmt.Sprintf("%d Events", n), func() bool {
		got = append(got, drain(f.rec)...)
		return len(got) >= n
	})
	time.Sleep(quiet)
	return append(got, drain(f.rec)...)
}

func (f *policyEventsFixture) update(t *testing.T, np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	t.Helper()
	out, err := f.client.NetworkingV1().NetworkPolicies(np.Namespace).Update(f.ctx, np, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPolicyEventsOnChangeOnly: a policy selecting a pod here gets one
// Realized Event with its flow count; churn that leaves its spec and
// outcome alone (peer relabelled, annotation, an ovs-vswitchd restart's
// full sync, other policies) records nothing; a spec change (generation)
// records one more; an invalid spec records PolicyRejected and its fix
// Realized; a policy selecting no pod here records nothing.
func TestPolicyEventsOnChangeOnly(t *testing.T) {
	const interval, gap = 20 * time.Millisecond, 200 * time.Millisecond
	quiet := 10 * interval
	f := newPolicyEventsFixture(t, interval, gap)
	np := ingressFrom("x", "p", map[string]string{"pod": "a"}, map[string]string{"pod": "b"})
	np.Generation = 1
	if _, err := f.client.NetworkingV1().NetworkPolicies("x").Create(f.ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Only remote pods selected: nothing to realize on n1.
	if _, err := f.client.NetworkingV1().NetworkPolicies("y").Create(f.ctx, ingressFrom("y", "remote-only", nil, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "x/p's peer flow", func() bool { return f.flows.has("ip,nw_src=10.1.1.2 actions=conjunction(") })
	got := f.waitEvents(t, 1, quiet)
	want := fmt.Sprintf("Normal Realized Realized on node n1: %d flows for 1 rule (1 ingress, 0 egress); it selects 1 pod here.", f.ruleFlows("x", "p", model.Ingress, 0))
	if len(got) != 1 || got[0] != want {
		t.Fatalf("Events after creating x/p and y/remote-only:\n%s\nwant only:\n%s", strings.Join(got, "\n"), want)
	}
	t.Logf("recorded: %s", got[0])

	// Churn that changes flows but not what is reported.
	flowsBefore := f.ruleFlows("x", "p", model.Ingress, 0)
	b, err := f.client.CoreV1().Pods("x").Get(f.ctx, "b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Labels = map[string]string{"pod": "other"}
	if _, err := f.client.CoreV1().Pods("x").Update(f.ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "x/b no longer a peer", func() bool { return !f.flows.has("ip,nw_src=10.1.1.2 actions=conjunction(") })
	cur, err := f.client.NetworkingV1().NetworkPolicies("x").Get(f.ctx, "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Annotations = map[string]string{"note": "metadata only"}
	cur = f.update(t, cur)
	f.c.SwitchRestarted() // a full sync, as after an ovs-vswitchd restart
	if _, err := f.client.NetworkingV1().NetworkPolicies("x").Create(f.ctx, ingressFrom("x", "other", map[string]string{"pod": "none"}, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(gap + quiet) // past the gap: nothing is held back either
	if got := drain(f.rec); len(got) != 0 {
		t.Fatalf("Events recorded by churn that changed no spec or outcome (x/p's flows %d -> %d):\n%s", flowsBefore, f.ruleFlows("x", "p", model.Ingress, 0), strings.Join(got, "\n"))
	}

	// A spec change: one Event.
	cur.Generation = 2
	cur.Spec.Ingress[0].From[0].PodSelector.MatchLabels = map[string]string{"pod": "other"}
	cur = f.update(t, cur)
	got = f.waitEvents(t, 1, quiet)
	if len(got) != 1 || !strings.HasPrefix(got[0], "Normal Realized Realized on node n1: ") {
		t.Fatalf("Events after a spec change: %q, want one Realized", got)
	}

	// An invalid spec: PolicyRejected; fixed: Realized (after the gap).
	time.Sleep(gap)
	cur.Generation = 3
	cur.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/33"}}}
	cur = f.update(t, cur)
	got = f.waitEvents(t, 1, quiet)
	if len(got) != 1 || !strings.HasPrefix(got[0], "Warning PolicyRejected Not realized on node n1: the policy cannot be used (") ||
		!strings.Contains(got[0], "Its 1 pod here is isolated") {
		t.Fatalf("Events after an invalid spec: %q, want one PolicyRejected", got)
	}
	t.Logf("recorded: %s", got[0])
	cur.Generation = 4
	cur.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}}
	f.update(t, cur)
	got = f.waitEvents(t, 1, gap+quiet)
	if len(got) != 1 || !strings.HasPrefix(got[0], "Normal Realized Realized on node n1: ") {
		t.Fatalf("Events after the fix: %q, want one Realized", got)
	}
	if r := f.c.PolicyReports(); len(r) != 1 || r[0] != "x/p realized" {
		t.Fatalf("reports %q, want only x/p realized (y/remote-only and x/other select no pod here)", r)
	}
}

// TestPolicyEventsFlappingBounded: a policy whose spec changes every 10 ms
// for a while records at most one Event per gap, and its final state once
// the flapping stops.
func TestPolicyEventsFlappingBounded(t *testing.T) {
	const interval, gap = 10 * time.Millisecond, 250 * time.Millisecond
	f := newPolicyEventsFixture(t, interval, gap)
	np := ingressFrom("x", "flap", map[string]string{"pod": "a"}, map[string]string{"pod": "b"})
	cur, err := f.client.NetworkingV1().NetworkPolicies("x").Create(f.ctx, np, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	changes := 0
	for time.Since(start) < 5*gap {
		changes++
		cur.Generation = int64(changes)
		cur.Spec.Ingress[0].From[0].PodSelector.MatchLabels = map[string]string{"pod": fmt.Sprintf("b%d", changes%2)}
		cur = f.update(t, cur)
		time.Sleep(10 * time.Millisecond)
	}
	flapping := time.Since(start)
	during := drain(f.rec)
	// Emissions are at least a gap apart: one at the start, then one per
	// gap of flapping.
	bound := 1 + int(flapping/gap)
	if len(during) > bound {
		t.Fatalf("%d Events while flapping %d times in %v, want at most %d:\n%s", len(during), changes, flapping, bound, strings.Join(during, "\n"))
	}
	// After the flapping the last generation is reported.
	var reported policyIdentity
	eventually(t, "the last generation reported", func() bool {
		f.c.mu.Lock()
		defer f.c.mu.Unlock()
		if r := f.c.pev.reported["x/flap"]; r != nil {
			reported = r.identity
		}
		return reported.generation == int64(changes)
	})
	after := drain(f.rec)
	if len(after) > 1 {
		t.Fatalf("%d Events after the flapping stopped, want at most 1: %q", len(after), after)
	}
	t.Logf("%d spec changes in %v: %d Events while flapping (bound %d), %d after; last generation %d reported",
		changes, flapping.Round(time.Millisecond), len(during), bound, len(after), reported.generation)

	// The selected pod flaps in and out of the selection: each return is a
	// change (it selects pods here again), held to the gap as well.
	a, err := f.client.CoreV1().Pods("x").Get(f.ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	drain(f.rec)
	start = time.Now()
	relabels := 0
	for time.Since(start) < 5*gap {
		relabels++
		a.Labels = map[string]string{"pod": []string{"a", "not-a"}[relabels%2]}
		if a, err = f.client.CoreV1().Pods("x").Update(f.ctx, a, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	flapping = time.Since(start)
	during = drain(f.rec)
	if bound := 1 + int(flapping/gap); len(during) > bound {
		t.Fatalf("%d Events while x/a flapped in and out of x/flap's selection %d times in %v, want at most %d:\n%s", len(during), relabels, flapping, bound, strings.Join(during, "\n"))
	}
	t.Logf("%d relabels of the selected pod in %v: %d Events (bound %d)", relabels, flapping.Round(time.Millisecond), len(during), 1+int(flapping/gap))
}

// TestPolicyEventsFlowCountMatchesBridge: the Realized message's flow
// count is what the bridge holds under the policy's rule cookies (what
// `ovs-ofctl dump-flows br-int cookie=C/-1` lists), for a policy with two
// rules in both directions.
func TestPolicyEventsFlowCountMatchesBridge(t *testing.T) {
	f := newPolicyEventsFixture(t, 10*time.Millisecond, time.Second)
	tcp := corev1.ProtocolTCP
	port := func(p int) networkingv1.NetworkPolicyPort {
		v := intstr.FromInt32(int32(p))
		return networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &v}
	}
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "two-ways"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{
				{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}}}}, Ports: []networkingv1.NetworkPolicyPort{port(80)}},
				{Ports: []networkingv1.NetworkPolicyPort{port(443)}},
			},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.0/24", Except: []string{"192.0.2.128/25"}}}}},
			},
		},
	}
	if _, err := f.client.NetworkingV1().NetworkPolicies("x").Create(f.ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := f.waitEvents(t, 1, 100*time.Millisecond)
	total := 0
	for _, r := range []struct {
		d model.Direction
		i int
	}{{model.Ingress, 0}, {model.Ingress, 1}, {model.Egress, 0}} {
		n := f.ruleFlows("x", "two-ways", r.d, r.i)
		if n == 0 {
			t.Fatalf("no flow of %s rule %d installed", r.d, r.i)
		}
		total += n
	}
	want := fmt.Sprintf("Normal Realized Realized on node n1: %d flows for 3 rules (2 ingress, 1 egress); it selects 1 pod here.", total)
	if len(got) != 1 || got[0] != want {
		t.Fatalf("Events %q, want only %q", got, want)
	}
	t.Logf("recorded: %s", want)
}
