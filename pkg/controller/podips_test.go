package controller

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// TestIPClaimsWinner: a pod attached on this node keeps a shared address,
// then the pod created first, then the lower UID; the count of duplicated addresses follows claims and
// releases.
func TestIPClaimsWinner(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ip := netip.MustParseAddr("10.0.0.1")
	old := ipClaim{key: "x/old", uid: "u9", created: t0}
	young := ipClaim{key: "x/young", uid: "u1", created: t0.Add(time.Second)}
	twinA := ipClaim{key: "y/twin-b", uid: "u2", created: t0}
	attached := ipClaim{key: "z/attached-here", uid: "u5", created: t0.Add(time.Hour), bound: true}
	for _, tc := range []struct {
		name   string
		claims []ipClaim
		winner string
	}{
		{"older-wins-whatever-its-uid", []ipClaim{young, old}, "x/old"},
		{"same-age-lower-uid-wins", []ipClaim{old, twinA}, "y/twin-b"},
		{"alone", []ipClaim{young}, "x/young"},
		{"attached-here-wins-over-older-stale-status", []ipClaim{old, attached, young}, "z/attached-here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reversed := slices.Clone(tc.claims)
			slices.Reverse(reversed)
			for _, order := range [][]ipClaim{tc.claims, reversed} {
				cl := newIPClaims()
				for _, c := range order {
					cl.set(c, []netip.Addr{ip})
				}
				if got := cl.claimants(ip)[0].key; got != tc.winner {
					t.Fatalf("order %v: %s keeps the address, want %s", order, got, tc.winner)
				}
				if want := min(len(tc.claims)-1, 1); cl.dups != want { // addresses, not pods
					t.Fatalf("dups = %d, want %d", cl.dups, want)
				}
				for _, c := range order {
					cl.set(c, nil)
				}
				if cl.dups != 0 || len(cl.byIP) != 0 || len(cl.byPod) != 0 {
					t.Fatalf("claims left after releasing all: %+v", cl)
				}
			}
		})
	}
}

func podAt(ns, name, uid, node, ip string, created time.Time, labels map[string]string) *corev1.Pod {
	p := pod(ns, name, uid, node, ip, labels)
	p.CreationTimestamp = metav1.NewTime(created)
	return p
}

// TestDuplicatePodIPs runs the controller over two live local pods with
// one address, their objects listed in either order and the second one
// arriving at start or later: the older pod gets the address's flows in
// every case, the result equals a full compile, the duplicate is counted,
// and the younger pod gets the address when the older one finishes.
func TestDuplicatePodIPs(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	older := podAt("x", "older", "b", "n1", "10.1.1.1", t0, map[string]string{"pod": "older"})
	younger := podAt("x", "younger", "a", "n1", "10.1.1.1", t0.Add(time.Minute), map[string]string{"pod": "younger"})
	bindings := map[string]compiler.Binding{
		"x/older":   {OFPort: 10, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}},
		"x/younger": {OFPort: 11, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}},
	}
	var results [][]openflow.Flow
	for _, tc := range []struct {
		name        string
		first, then *corev1.Pod
	}{
		{"older-first-younger-later", older, younger},
		{"younger-first-older-later", younger, older},
		{"both-at-start-older-listed-first", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			objs := []runtime.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}}}
			if tc.first != nil {
				objs = append(objs, tc.first.DeepCopy())
			} else {
				objs = append(objs, older.DeepCopy(), younger.DeepCopy())
			}
			client := fake.NewClientset(objs...)
			ports := &memPorts{b: bindings, ch: make(chan struct{}, 1)}
			flows := &memFlows{}
			metrics := NewMetrics(nil)
			c := New(client, ports, flows, Options{Compiler: compiler.Config{Node: "n1"}, Mode: model.ModeV1, CheckInterval: 50 * time.Millisecond, Metrics: metrics})
			done := make(chan error)
			go func() { done <- c.Run(ctx) }()
			eventually(t, "ready", c.Ready)
			if tc.then != nil {
				if _, err := client.CoreV1().Pods("x").Create(ctx, tc.then.DeepCopy(), metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, "the duplicate counted", func() bool { return value(metrics.DuplicatePodIPs) == 1 })
			eventually(t, "both pods in the model", func() bool { return c.Status().Pods == 2 })
			if !flows.has("ip,nw_dst=10.1.1.1 actions=set_field:02:00:00:00:00:01->eth_dst,output:10") {
				t.Fatal("the address is not delivered to the older pod")
			}
			if flows.has("output:11") || flows.has("in_port=11,dl_src=02:00:00:00:00:02,nw_src=10.1.1.1") {
				t.Fatal("the younger pod has flows for the older pod's address")
			}
			c.mu.Lock()
			full, err := compiler.Compile(c.inc.Cluster(), c.inc.Config())
			inc := c.inc.Flows()
			c.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(full.Flows, inc, openflow.Flow.Equal) {
				t.Fatal("incremental flows differ from a full compile of the same model")
			}
			results = append(results, inc)

			// The older pod finishes: the younger one gets the address.
			o, err := client.CoreV1().Pods("x").Get(ctx, "older", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			o.Status.Phase = corev1.PodSucceeded
			if _, err := client.CoreV1().Pods("x").UpdateStatus(ctx, o, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the younger pod gets the address", func() bool {
				return flows.has("ip,nw_dst=10.1.1.1 actions=set_field:02:00:00:00:00:02->eth_dst,output:11") && value(metrics.DuplicatePodIPs) == 0
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
	for i := 1; i < len(results); i++ {
		if !slices.EqualFunc(results[0], results[i], openflow.Flow.Equal) {
			t.Fatalf("case %d's flows differ from case 0's: the event order decided", i)
		}
	}
}
