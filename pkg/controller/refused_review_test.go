package controller

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Security review of refused-origin isolation (fail closed): tests that pin
// what a refused origin leaves on the bridge, with the controller and the
// switch stand-in of refused_test.go (same ByOrigin contract as the OVS
// adapter: a refused origin's flows by cookie and its refused keys are
// removed).

// reviewWorld is two pods of node n1 (x/a on port 10, x/s on port 12) and
// x/b on node n2, with the given policies; flows refuses nothing yet.
func reviewWorld(t *testing.T, policies ...*networkingv1.NetworkPolicy) (*Controller, *refusingFlows, *fake.Clientset, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	objs := []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}},
		pod("x", "a", "a", "n1", "10.1.1.1", map[string]string{"pod": "a"}),
		pod("x", "s", "s", "n1", "10.1.1.5", map[string]string{"pod": "s"}),
		pod("x", "b", "b", "n2", "10.1.1.2", map[string]string{"pod": "b"}),
	}
	for _, p := range policies {
		objs = append(objs, p)
	}
	client := fake.NewClientset(objs...)
	ports := &memPorts{b: map[string]compiler.Binding{
		"x/a": {OFPort: 10, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}},
		"x/s": {OFPort: 12, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 5}},
	}, ch: make(chan struct{}, 1)}
	flows := &refusingFlows{}
	c := New(client, ports, flows, Options{Compiler: compiler.Config{Node: "n1"}, Mode: model.ModeV1,
		CheckInterval: 50 * time.Millisecond, Metrics: NewMetrics(nil)})
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	eventually(t, "ready", c.Ready)
	return c, flows, client, func() {
		cancel()
		<-done
	}
}

// installed lists the flows on the stand-in bridge whose text contains sub.
func (f *refusingFlows) installed(sub string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, fl := range f.flows {
		if strings.Contains(fl.String(), sub) {
			out = append(out, fl.String())
		}
	}
	return out
}

// TestReviewRefusedPodUpdateRemovesThePod: a pod that was installed
// (reachable, not isolated) becomes isolated by a new deny-all, and OVS
// refuses its new isolation drop flow. The pod's old flows (delivery to its
// address, port security) must not stay: the old state would leave it
// reachable by everyone its policy now denies. Every flow of the pod's
// origin is off the bridge, also after a later incremental change that
// touches the pod, until OVS accepts the drop; then all of it is back.
func TestReviewRefusedPodUpdateRemovesThePod(t *testing.T) {
	c, flows, client, stop := reviewWorld(t)
	defer stop()
	ctx := context.Background()
	aCookie := compiler.PodCookie(&model.Pod{Namespace: "x", Name: "a"}).String()
	if len(flows.installed("ip,nw_dst=10.1.1.1 actions=set_field")) != 1 {
		t.Fatal("x/a's delivery flow missing before the test")
	}
	flows.setRefused("ip,nw_dst=10.1.1.1 actions=drop")
	if _, err := client.NetworkingV1().NetworkPolicies("x").Create(ctx, ingressFrom("x", "deny-a", map[string]string{"pod": "a"}, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "x/a refused", func() bool { return len(c.RefusedOrigins()) == 1 })
	if got := c.RefusedOrigins()[0]; !strings.HasPrefix(got, "pod x/a:") {
		t.Fatalf("refused origin %q, want pod x/a", got)
	}
	if left := flows.installed(aCookie); len(left) > 0 {
		t.Fatalf("x/a's origin is refused but %d of its flows stay on the bridge (its old, non-isolated state): %q", len(left), left)
	}
	// A later change of the pod (a label) recompiles its flows: they stay
	// off the bridge (adds of a refused origin become deletes).
	p, err := client.CoreV1().Pods("x").Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels["extra"] = "1"
	if _, err := client.CoreV1().Pods("x").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The label change re-runs the pod through the model; x/b's peer flows
	// elsewhere are untouched. Wait for a retry to have happened too.
	eventually(t, "a retry of x/a", func() bool { return flows.triesOf(compiler.PodCookie(&model.Pod{Namespace: "x", Name: "a"})) >= 3 })
	if left := flows.installed(aCookie); len(left) > 0 {
		t.Fatalf("after a change of the refused pod, %d of its flows are on the bridge: %q", len(left), left)
	}
	flows.setRefused()
	eventually(t, "x/a accepted, isolated", func() bool {
		return len(c.RefusedOrigins()) == 0 && len(flows.installed("ip,nw_dst=10.1.1.1 actions=drop")) == 1 &&
			len(flows.installed("ip,nw_dst=10.1.1.1 actions=set_field")) == 1
	})
	t.Logf("x/a's flows back after the refusal was lifted: %d", len(flows.installed(aCookie)))
}

// TestReviewRefusedSharedPeerFlow: two policies allow x/b into x/a; their
// peer flow (nw_src=10.1.1.2) is one flow with both conjunctions and the
// cookie of one rule. OVS refuses that flow: its rule is refused and the
// other rule, whose own flows are accepted, loses the peer too. Nothing may
// then let x/b in: no table 40 flow matches its address, x/a stays
// isolated, and neither rule's conjunction can complete for x/b.
func TestReviewRefusedSharedPeerFlow(t *testing.T) {
	one := ingressFrom("x", "one", map[string]string{"pod": "a"}, map[string]string{"pod": "b"})
	c, flows, _, stop := reviewWorld(t, one)
	defer stop()
	shared := "ip,nw_src=10.1.1.2 actions=conjunction("
	flows.setRefused(shared)
	ctx := context.Background()
	if _, err := c.client.NetworkingV1().NetworkPolicies("x").Create(ctx, ingressFrom("x", "other", map[string]string{"pod": "a"}, map[string]string{"pod": "b"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a refused rule", func() bool { return len(c.RefusedOrigins()) >= 1 })
	if got := flows.installed("nw_src=10.1.1.2"); len(got) > 0 {
		t.Fatalf("x/b's address still matched in table 40 while the shared peer flow is refused: %q", got)
	}
	if len(flows.installed("table=40,priority=20000")) != 1 || len(flows.installed("ip,nw_dst=10.1.1.1 actions=drop")) != 1 {
		t.Fatal("x/a is not isolated while its rules are refused")
	}
	t.Logf("refused: %q; conj_id flows installed: %d", c.RefusedOrigins(), len(flows.installed("conj_id=")))
	flows.setRefused()
	eventually(t, "accepted again", func() bool { return len(c.RefusedOrigins()) == 0 && len(flows.installed(shared)) == 1 })
}

// TestReviewDuplicateIPNeverLendsAnotherPodsIdentity: x/l, a pod attached
// on this node, and x/r, an older pod of node n2 (a stale status), claim
// 10.1.1.1. x/q admits only x/r. Whatever the order (x/l's port binding at
// start, or only after x/r's claim was in), x/l keeps the address (port
// security, delivery, the drop of it as a spoofed source) and x/r enters
// the model without it: x/q's rule never admits 10.1.1.1, so x/l's traffic
// is never judged as x/r's, and x/r's address is never forwarded away.
func TestReviewDuplicateIPNeverLendsAnotherPodsIdentity(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, boundLater := range []bool{false, true} {
		t.Run(map[bool]string{false: "bound-at-start", true: "bound-after-the-stale-claim"}[boundLater], func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			client := fake.NewClientset(
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}},
				podAt("x", "r", "r", "n2", "10.1.1.1", t0, map[string]string{"pod": "r"}),
				podAt("x", "l", "l", "n1", "10.1.1.1", t0.Add(time.Hour), map[string]string{"pod": "l"}),
				podAt("x", "q", "q", "n1", "10.1.1.9", t0, map[string]string{"pod": "q"}),
				ingressFrom("x", "q-from-r", map[string]string{"pod": "q"}, map[string]string{"pod": "r"}),
			)
			lBinding := compiler.Binding{OFPort: 10, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
			b := map[string]compiler.Binding{"x/q": {OFPort: 19, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}}}
			if !boundLater {
				b["x/l"] = lBinding
			}
			ports := &memPorts{b: b, ch: make(chan struct{}, 1)}
			flows := &refusingFlows{}
			c := New(client, ports, flows, Options{Compiler: compiler.Config{Node: "n1", UplinkPort: 2}, Mode: model.ModeV1,
				CheckInterval: 50 * time.Millisecond, Metrics: NewMetrics(nil)})
			done := make(chan error)
			go func() { done <- c.Run(ctx) }()
			defer func() { cancel(); <-done }()
			eventually(t, "ready", c.Ready)
			if boundLater {
				// Before x/l is attached, the stale claim holds the address:
				// x/l has no flows at all then (it has no port).
				if got := flows.installed("in_port=10,"); len(got) > 0 {
					t.Fatalf("x/l has port flows before its binding: %q", got)
				}
				if len(flows.installed("ip,nw_dst=10.1.1.1 actions=output:2")) != 1 {
					t.Fatal("before x/l's binding the older stale claim should hold the address (forwarded to the uplink)")
				}
				ports.set("x/l", lBinding)
			}
			eventually(t, "x/l holds 10.1.1.1", func() bool {
				return len(flows.installed("ip,nw_dst=10.1.1.1 actions=set_field:02:00:00:00:00:01->eth_dst,output:10")) == 1 &&
					len(flows.installed("ip,in_port=10,dl_src=02:00:00:00:00:01,nw_src=10.1.1.1 actions=goto_table:10")) == 1
			})
			for _, spoof := range []string{"ip,in_port=LOCAL,nw_src=10.1.1.1 actions=drop", "ip,in_port=2,nw_src=10.1.1.1 actions=drop"} {
				if len(flows.installed(spoof)) != 1 {
					t.Fatalf("%q missing: x/l's address is not protected from the gateway/uplink", spoof)
				}
			}
			if got := flows.installed("nw_src=10.1.1.1 actions=conjunction("); len(got) > 0 {
				t.Fatalf("x/q's rule for x/r admits x/l's address: %q", got)
			}
			if got := flows.installed("nw_dst=10.1.1.1 actions=output:2"); len(got) > 0 {
				t.Fatalf("x/l's address is forwarded to the uplink as x/r's: %q", got)
			}
			if !flows.has("ip,nw_dst=10.1.1.9 actions=drop") {
				t.Fatal("x/q is not isolated")
			}
		})
	}
}

// TestReviewRefusedNodeOriginAcceptsNothingFromTheHost: OVS refuses the
// node origin (the gateway's accept flows and the "from this node" allow)
// at the first sync. None of its flows is installed: nothing from the
// gateway passes table 0 (the pipeline's default drop), and the pods' own
// origins are installed. The spoofed-source drops carry the node's cookie
// (they guard its accept flows) and go with it: nothing from the gateway
// is accepted anyway.
func TestReviewRefusedNodeOriginAcceptsNothingFromTheHost(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}},
		pod("x", "a", "a", "n1", "10.1.1.1", map[string]string{"pod": "a"}),
		ingressFrom("x", "deny-a", map[string]string{"pod": "a"}, nil),
	)
	ports := &memPorts{b: map[string]compiler.Binding{"x/a": {OFPort: 10, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}}, ch: make(chan struct{}, 1)}
	flows := &refusingFlows{}
	flows.setRefused("reg0=0x1/0x1 actions=goto_table:50")
	c := New(client, ports, flows, Options{Compiler: compiler.Config{Node: "n1"}, Mode: model.ModeV1,
		CheckInterval: 50 * time.Millisecond, Metrics: NewMetrics(nil)})
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, "ready", c.Ready)
	if got := c.RefusedOrigins(); len(got) != 1 || !strings.HasPrefix(got[0], "node") {
		t.Fatalf("refused origins %q, want the node's", got)
	}
	nodeCookie := openflow.NewCookie(openflow.KindNode, "node").String()
	if got := flows.installed(nodeCookie); len(got) > 0 {
		t.Fatalf("flows of the refused node origin installed: %q", got)
	}
	if got := flows.installed("in_port=LOCAL actions=goto_table:"); len(got) > 0 {
		t.Fatalf("traffic from the gateway is accepted while the node origin is refused: %q", got)
	}
	for _, want := range []string{"ip,nw_dst=10.1.1.1 actions=drop",
		"ip,in_port=10,dl_src=02:00:00:00:00:01,nw_src=10.1.1.1 actions=goto_table:10"} {
		if len(flows.installed(want)) != 1 {
			t.Fatalf("x/a's flow %q missing while only the node origin is refused", want)
		}
	}
	flows.setRefused()
	eventually(t, "the node origin accepted on retry", func() bool {
		return len(c.RefusedOrigins()) == 0 && len(flows.installed(nodeCookie)) > 0
	})
}
