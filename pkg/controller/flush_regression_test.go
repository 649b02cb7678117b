package controller

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// flakyFlows is memFlows whose next Apply fails once (failNext), and
// which records conntrack flushes.
type flakyFlows struct {
	memFlows
	fmu      sync.Mutex
	failNext bool
	flushes  []openflow.ConntrackFlush
	groups   map[uint32]openflow.Group
}

func (f *flakyFlows) Sync(ctx context.Context, desired []openflow.Flow, groups []openflow.Group) (int, int, error) {
	f.fmu.Lock()
	f.groups = map[uint32]openflow.Group{}
	for _, g := range groups {
		f.groups[g.ID] = g
	}
	f.fmu.Unlock()
	return f.memFlows.Sync(ctx, desired, groups)
}

// balancedTo reports whether a group balances to backend (ADDR:PORT).
func (f *flakyFlows) balancedTo(backend string) bool {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	for _, g := range f.groups {
		if strings.Contains(g.String(), "nat(dst="+backend+")") {
			return true
		}
	}
	return false
}

func (f *flakyFlows) Apply(ctx context.Context, ch Change) error {
	f.fmu.Lock()
	fail := f.failNext
	f.failNext = false
	f.fmu.Unlock()
	if fail {
		return errors.New("ovs-ofctl: connection reset (injected)")
	}
	f.fmu.Lock()
	for _, g := range ch.SetGroups {
		f.groups[g.ID] = g
	}
	for _, id := range ch.DelGroups {
		delete(f.groups, id)
	}
	f.fmu.Unlock()
	return f.memFlows.Apply(ctx, ch)
}

func (f *flakyFlows) FlushConntrack(_ context.Context, fl []openflow.ConntrackFlush) error {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	f.flushes = append(f.flushes, fl...)
	return nil
}

func (f *flakyFlows) flushed(backend string) bool {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	for _, fl := range f.flushes {
		if fl.BackendIP == backend {
			return true
		}
	}
	return false
}

func dnsSlice(ips ...string) *discoveryv1.EndpointSlice {
	name, proto, port := "dns", corev1.ProtocolUDP, int32(5353)
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "x", Name: "dns-1", Labels: map[string]string{discoveryv1.LabelServiceName: "dns"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Protocol: &proto, Port: &port}},
	}
	for _, ip := range ips {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}})
	}
	return sl
}

// TestConntrackFlushSurvivesFailedBundle: a UDP backend goes away in
// a batch whose bundle fails (any ovs-ofctl error: the agent retries with
// a full sync). The Flush of that batch already recorded the backend as
// gone (svcServing), so the retry computed no stale entries and the
// flush of the removed backend's conntrack entries never happened: clients
// keep sending to the dead backend until they stop for 30+ s.
func TestConntrackFlushSurvivesFailedBundle(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "dns"}, Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			Ports: []corev1.ServicePort{{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53}}}},
		dnsSlice("10.1.1.1", "10.1.1.2"),
	)
	ports := &memPorts{b: map[string]compiler.Binding{}, ch: make(chan struct{}, 1)}
	flows := &flakyFlows{}
	c := New(client, ports, flows, Options{Compiler: compiler.Config{Node: "n1"}, Mode: model.ModeV1, CheckInterval: 50 * time.Millisecond})
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	eventually(t, "ready", c.Ready)
	eventually(t, "balanced to 10.1.1.2", func() bool { return flows.balancedTo("10.1.1.2:5353") })

	flows.fmu.Lock()
	flows.failNext = true
	flows.fmu.Unlock()
	if _, err := client.DiscoveryV1().EndpointSlices("x").Update(ctx, dnsSlice("10.1.1.1"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "10.1.1.2 no longer balanced (after the retry)", func() bool { return c.Ready() && !flows.balancedTo("10.1.1.2:5353") })
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && !flows.flushed("10.1.1.2") {
		time.Sleep(20 * time.Millisecond)
	}
	if !flows.flushed("10.1.1.2") {
		t.Errorf("the UDP conntrack entries of removed backend 10.1.1.2 were never flushed (the failed bundle's flushes were dropped)")
	}
	cancel()
	<-done
}
