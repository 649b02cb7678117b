package controller

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// TestAuditView: an annotated namespace's isolated pod gets its metered
// packet-in; ReinstallMetered adds exactly the metered flows again in one
// bundle; PodAt names the owners of addresses.
func TestAuditView(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Annotations: map[string]string{model.AuditAnnotation: "deny"}}},
		pod("x", "a", "a", "n1", "10.1.1.1", map[string]string{"pod": "a"}),
		pod("x", "b", "b", "n2", "10.1.1.2", map[string]string{"pod": "b"}),
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny-all"},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}},
	)
	ports := &memPorts{b: map[string]compiler.Binding{"x/a": {OFPort: 10, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}}, ch: make(chan struct{}, 1)}
	flows := &memFlows{}
	cfg := compiler.Config{Node: "n1", Audit: compiler.AuditConfig{DenyMeter: compiler.DefaultAuditDenyMeter, AllowMeter: compiler.DefaultAuditAllowMeter}}
	c := New(client, ports, flows, Options{Compiler: cfg, Mode: model.ModeV1, CheckInterval: time.Hour})
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	eventually(t, "ready", c.Ready)
	eventually(t, "x/a's metered isolation", func() bool { return flows.has(",ip,nw_dst=10.1.1.1 actions=controller(userdata=") })

	nMetered := 0
	flows.mu.Lock()
	for _, f := range flows.flows {
		if metered(f) {
			nMetered++
		}
	}
	bundles := flows.bundles
	flows.mu.Unlock()
	n, err := c.ReinstallMetered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	flows.mu.Lock()
	after := flows.bundles
	flows.mu.Unlock()
	if n != nMetered || n == 0 || after != bundles+1 {
		t.Errorf("reinstalled %d flows in %d bundles; %d flows are metered, want them in one bundle", n, after-bundles, nMetered)
	}

	for _, tc := range []struct {
		addr string
		want string
		ok   bool
	}{{"10.1.1.1", "x/a", true}, {"10.1.1.2", "x/b", true}, {"10.9.9.9", "", false}} {
		if got, ok := c.PodAt(netip.MustParseAddr(tc.addr)); got != tc.want || ok != tc.ok {
			t.Errorf("PodAt(%s) = %q, %v; want %q, %v", tc.addr, got, ok, tc.want, tc.ok)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
