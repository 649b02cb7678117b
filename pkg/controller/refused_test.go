package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// refusingFlows is a switch that refuses every bundle holding a flow whose
// text contains one of the refused strings, and implements ByOrigin as
// the OVS adapter does: each origin's mods in one bundle, refused origins
// taken off the bridge.
type refusingFlows struct {
	memFlows
	rmu     sync.Mutex
	refuse  []string
	tries   map[openflow.Cookie]int // bundles tried per origin, by origin
	applied int                     // bundles tried in all
	syncs   int                     // full syncs
}

func (f *refusingFlows) setRefused(s ...string) {
	f.rmu.Lock()
	f.refuse = s
	f.rmu.Unlock()
}

func (f *refusingFlows) refused(fl openflow.Flow) bool {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	for _, s := range f.refuse {
		if strings.Contains(fl.String(), s) {
			return true
		}
	}
	return false
}

func (f *refusingFlows) check(flows []openflow.Flow) error {
	f.rmu.Lock()
	f.applied++
	if f.tries == nil {
		f.tries = map[openflow.Cookie]int{}
	}
	seen := map[openflow.Cookie]bool{}
	for _, fl := range flows {
		if !seen[fl.Cookie] {
			seen[fl.Cookie] = true
			f.tries[fl.Cookie]++
		}
	}
	f.rmu.Unlock()
	for _, fl := range flows {
		if f.refused(fl) {
			return fmt.Errorf("OFPBAC_BAD_LEN for flow %s", fl.Key().Match)
		}
	}
	return nil
}

func (f *refusingFlows) Apply(ctx context.Context, ch Change) error {
	if err := f.check(ch.AddFlows); err != nil {
		return err
	}
	return f.memFlows.Apply(ctx, ch)
}

func (f *refusingFlows) Sync(ctx context.Context, desired []openflow.Flow, groups []openflow.Group) (int, int, error) {
	if err := f.check(desired); err != nil {
		return 0, 0, err
	}
	return f.memFlows.Sync(ctx, desired, groups)
}

func (f *refusingFlows) ApplyByOrigin(ctx context.Context, ch Change, _ error) ([]Refusal, error) {
	byOrigin := map[openflow.Cookie]*Change{}
	var order []openflow.Cookie
	at := func(c openflow.Cookie) *Change {
		if byOrigin[c] == nil {
			byOrigin[c] = &Change{}
			order = append(order, c)
		}
		return byOrigin[c]
	}
	for _, fl := range ch.AddFlows {
		at(fl.Cookie).AddFlows = append(at(fl.Cookie).AddFlows, fl)
	}
	for _, fl := range ch.DelFlows {
		at(fl.Cookie).DelFlows = append(at(fl.Cookie).DelFlows, fl)
	}
	var out []Refusal
	for _, c := range order {
		part := *byOrigin[c]
		if err := f.Apply(ctx, part); err != nil {
			out = append(out, Refusal{Cookie: c, Err: err})
			f.mu.Lock()
			for k, fl := range f.flows {
				if fl.Cookie == c {
					delete(f.flows, k)
				}
			}
			for _, fl := range part.AddFlows {
				delete(f.flows, fl.Key())
			}
			f.mu.Unlock()
		}
	}
	return out, nil
}

func (f *refusingFlows) SyncByOrigin(ctx context.Context, desired []openflow.Flow, groups []openflow.Group) (int, int, []Refusal, error) {
	f.rmu.Lock()
	f.syncs++
	f.rmu.Unlock()
	if _, _, err := f.Sync(ctx, desired, groups); err == nil {
		return len(desired), 0, nil, nil
	}
	f.mu.Lock()
	f.flows = map[openflow.Key]openflow.Flow{}
	f.mu.Unlock()
	refused, err := f.ApplyByOrigin(ctx, Change{AddFlows: desired}, nil)
	return len(desired), 0, refused, err
}

func (f *refusingFlows) triesOf(c openflow.Cookie) int {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	return f.tries[c]
}

func ingressFrom(ns, name string, target, from map[string]string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: target},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	if from != nil {
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
			PodSelector: &metav1.LabelSelector{MatchLabels: from}}}}}
	}
	return np
}

// events lists the reasons and messages of the Events recorded on one object.
func events(t *testing.T, client *fake.Clientset, ns, name string) []string {
	t.Helper()
	list, err := client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name {
			out = append(out, e.Reason+": "+e.Message)
		}
	}
	return out
}

// TestRefusedOriginIsIsolated: OVS refuses one policy's flows. Every other
// change (a deny-all in another namespace, a new pod) is still applied; the
// refused policy is reported (log, metrics, one Event), kept off the
// bridge with its pods isolated (fail closed), retried with backoff, and
// installed once a change fixes it or OVS accepts it again.
func TestRefusedOriginIsIsolated(t *testing.T) {
	for _, fix := range []string{"policy-changed", "ovs-accepts-again"} {
		t.Run(fix, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			client := fake.NewClientset(
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}},
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "y"}},
				pod("x", "a", "a", "n1", "10.1.1.1", map[string]string{"pod": "a"}),
				pod("x", "b", "b", "n2", "10.1.1.2", map[string]string{"pod": "b"}),
				pod("x", "d", "d", "n2", "10.1.1.4", map[string]string{"pod": "d"}),
				pod("y", "c", "c", "n1", "10.1.2.3", map[string]string{"pod": "c"}),
			)
			ports := &memPorts{b: map[string]compiler.Binding{
				"x/a": {OFPort: 10, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}},
				"y/c": {OFPort: 11, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 3}},
			}, ch: make(chan struct{}, 1)}
			flows := &refusingFlows{}
			// The peer flow of b, which only x/bad's rule has: its origin is
			// refused.
			flows.setRefused("ip,nw_src=10.1.1.2 actions=conjunction(")
			metrics := NewMetrics(nil)
			c := New(client, ports, flows, Options{Compiler: compiler.Config{Node: "n1"}, Mode: model.ModeV1,
				CheckInterval: 50 * time.Millisecond, Metrics: metrics})
			done := make(chan error)
			go func() { done <- c.Run(ctx) }()
			eventually(t, "ready", c.Ready)

			bad := ingressFrom("x", "bad", map[string]string{"pod": "a"}, map[string]string{"pod": "b"})
			if _, err := client.NetworkingV1().NetworkPolicies("x").Create(ctx, bad, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, "x/bad reported refused", func() bool { return len(c.RefusedOrigins()) == 1 })
			badCookie := compiler.RuleCookie(compiler.RuleKey(&model.Policy{Namespace: "x", Name: "bad"}, model.Ingress, 0))
			if got := c.RefusedOrigins()[0]; !strings.HasPrefix(got, "policy x/bad ingress rule 0: OFPBAC_BAD_LEN") {
				t.Fatalf("refused origin reported as %q", got)
			}
			// Fail closed: a is isolated (its pod origin was accepted), no
			// flow of the refused rule is installed.
			eventually(t, "isolation of x/a", func() bool { return flows.has("ip,nw_dst=10.1.1.1 actions=drop") })
			if flows.has(badCookie.String()) {
				t.Fatal("a flow of the refused rule is installed")
			}

			// Another namespace's deny-all is applied meanwhile.
			start := time.Now()
			if _, err := client.NetworkingV1().NetworkPolicies("y").Create(ctx, ingressFrom("y", "deny-all", nil, nil), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, "deny-all of y enforced", func() bool { return flows.has("ip,nw_dst=10.1.2.3 actions=drop") })
			t.Logf("deny-all enforced %v after its creation while x/bad is refused", time.Since(start).Round(time.Millisecond))
			eventually(t, "a retry of x/bad", func() bool { return value(metrics.RefusedRetries) >= 1 })

			// The flow count check (every 50 ms) agrees with the bridge: no
			// full resync beyond the first.
			syncs := value(metrics.BundleFailures)
			time.Sleep(200 * time.Millisecond)
			flows.rmu.Lock()
			fullSyncs := flows.syncs
			flows.rmu.Unlock()
			if fullSyncs != 1 {
				t.Fatalf("%d full syncs while an origin is refused, want only the first", fullSyncs)
			}
			if got := value(metrics.RefusedOrigins); got != 1 {
				t.Fatalf("ovs_netpol_refused_origins = %v, want 1", got)
			}

			switch fix {
			case "policy-changed":
				bad.Spec.Ingress[0].From[0].PodSelector.MatchLabels = map[string]string{"pod": "d"}
				if _, err := client.NetworkingV1().NetworkPolicies("x").Update(ctx, bad, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			case "ovs-accepts-again":
				flows.setRefused()
			}
			eventually(t, "x/bad installed", func() bool { return len(c.RefusedOrigins()) == 0 && flows.has(badCookie.String()) })
			want := "ip,nw_src=10.1.1.4 actions=conjunction("
			if fix == "ovs-accepts-again" {
				want = "ip,nw_src=10.1.1.2 actions=conjunction("
			}
			if !flows.has(want) {
				t.Fatalf("x/bad's peer flow %q missing", want)
			}
			t.Logf("retries %v, bundle failures %v (before the fix %v), bundles tried with x/bad's flows %d, events on x/bad %q",
				value(metrics.RefusedRetries), value(metrics.BundleFailures), syncs,
				flows.triesOf(badCookie), events(t, client, "x", "bad"))
			if got := value(metrics.RefusedOrigins); got != 0 {
				t.Fatalf("ovs_netpol_refused_origins = %v after the fix", got)
			}
			// Realized (policyevents.go) once its flows are in.
			eventually(t, "the Events on x/bad", func() bool {
				ev := events(t, client, "x", "bad")
				return len(ev) == 3 && slices.ContainsFunc(ev, func(s string) bool { return strings.HasPrefix(s, "FlowsRefused: ") }) &&
					slices.ContainsFunc(ev, func(s string) bool { return strings.HasPrefix(s, "FlowsAccepted: ") }) &&
					slices.ContainsFunc(ev, func(s string) bool { return strings.HasPrefix(s, "Realized: Realized on node n1: ") })
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRefusedOriginAtStartup: the first full sync is refused for one
// origin: the agent becomes ready with everything else installed.
func TestRefusedOriginAtStartup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}},
		pod("x", "a", "a", "n1", "10.1.1.1", map[string]string{"pod": "a"}),
		pod("x", "b", "b", "n2", "10.1.1.2", map[string]string{"pod": "b"}),
		ingressFrom("x", "bad", map[string]string{"pod": "a"}, map[string]string{"pod": "b"}),
	)
	ports := &memPorts{b: map[string]compiler.Binding{"x/a": {OFPort: 10, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}}, ch: make(chan struct{}, 1)}
	flows := &refusingFlows{}
	flows.setRefused("ip,nw_src=10.1.1.2 actions=conjunction(")
	metrics := NewMetrics(nil)
	c := New(client, ports, flows, Options{Compiler: compiler.Config{Node: "n1"}, Mode: model.ModeV1, CheckInterval: 50 * time.Millisecond, Metrics: metrics})
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	eventually(t, "ready", c.Ready)
	if got := c.RefusedOrigins(); len(got) != 1 || !strings.HasPrefix(got[0], "policy x/bad ingress rule 0") {
		t.Fatalf("refused origins %q", got)
	}
	if !flows.has("ip,nw_dst=10.1.1.1 actions=drop") || !flows.has("ip,in_port=10,dl_src=02:00:00:00:00:01,nw_src=10.1.1.1") {
		t.Fatal("x/a's flows missing")
	}
	flows.setRefused()
	eventually(t, "x/bad accepted on retry", func() bool {
		return len(c.RefusedOrigins()) == 0 && flows.has("ip,nw_src=10.1.1.2 actions=conjunction(")
	})
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// value reads a counter's or gauge's current value.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
