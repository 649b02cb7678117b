package controller

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// memPorts and memFlows stand in for OVSDB and ovs-ofctl.
type memPorts struct {
	mu sync.Mutex
	b  map[string]compiler.Binding
	ch chan struct{}
}

func (p *memPorts) Bindings() map[string]compiler.Binding {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]compiler.Binding{}
	for k, v := range p.b {
		out[k] = v
	}
	return out
}
func (p *memPorts) Changed() <-chan struct{} { return p.ch }
func (p *memPorts) set(key string, b compiler.Binding) {
	p.mu.Lock()
	p.b[key] = b
	p.mu.Unlock()
	select {
	case p.ch <- struct{}{}:
	default:
	}
}

type memFlows struct {
	mu      sync.Mutex
	flows   map[openflow.Key]openflow.Flow
	bundles int
	mods    int
}

func (f *memFlows) Sync(_ context.Context, desired []openflow.Flow, _ []openflow.Group) (int, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flows = map[openflow.Key]openflow.Flow{}
	for _, fl := range desired {
		f.flows[fl.Key()] = fl
	}
	return len(desired), 0, nil
}
func (f *memFlows) Apply(_ context.Context, ch Change) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fl := range ch.DelFlows {
		delete(f.flows, fl.Key())
	}
	for _, fl := range ch.AddFlows {
		f.flows[fl.Key()] = fl
	}
	f.bundles++
	f.mods += len(ch.AddFlows) + len(ch.DelFlows)
	return nil
}
func (f *memFlows) FlushConntrack(context.Context, []openflow.ConntrackFlush) error { return nil }
func (f *memFlows) Count(context.Context) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.flows), nil
}
func (f *memFlows) has(sub string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fl := range f.flows {
		if strings.Contains(fl.String(), sub) {
			return true
		}
	}
	return false
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func pod(ns, name, uid, node, ip string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + uid), Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

// TestControllerFollowsEvents drives the controller through a fake
// clientset (unit level; the integration tests use a real apiserver).
func TestControllerFollowsEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"ns": "x"}}},
		pod("x", "a", "a", "n1", "10.1.1.1", map[string]string{"pod": "a"}),
		pod("x", "b", "b", "n2", "10.1.1.2", map[string]string{"pod": "b"}),
	)
	ports := &memPorts{b: map[string]compiler.Binding{"x/a": {OFPort: 10, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}}, ch: make(chan struct{}, 1)}
	flows := &memFlows{}
	c := New(client, ports, flows, Options{Compiler: compiler.Config{Node: "n1"}, Mode: model.ModeV1, CheckInterval: 50 * time.Millisecond})
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	eventually(t, "ready", c.Ready)
	if !flows.has("ip,in_port=10,dl_src=02:00:00:00:00:01,nw_src=10.1.1.1") {
		t.Fatal("port security flow of x/a missing")
	}

	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "allow-b"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
				PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}}}}}},
		},
	}
	if _, err := client.NetworkingV1().NetworkPolicies("x").Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "peer flow for x/b", func() bool { return flows.has("ip,nw_src=10.1.1.2 actions=conjunction(") })
	eventually(t, "isolation of x/a", func() bool { return flows.has("priority=20000") })

	// Relabel b: it stops being a peer.
	b, _ := client.CoreV1().Pods("x").Get(ctx, "b", metav1.GetOptions{})
	b.Labels = map[string]string{"pod": "other"}
	if _, err := client.CoreV1().Pods("x").Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "peer flow gone", func() bool { return !flows.has("nw_src=10.1.1.2 actions=conjunction(") })

	// A port appears for a new local pod.
	if _, err := client.CoreV1().Pods("x").Create(ctx, pod("x", "c", "c", "n1", "10.1.1.3", map[string]string{"pod": "c"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ports.set("x/c", compiler.Binding{OFPort: 11, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 3}})
	eventually(t, "x/c delivery", func() bool {
		return flows.has("ip,nw_dst=10.1.1.3 actions=set_field:02:00:00:00:00:03->eth_dst,output:11")
	})

	// Deleting the policy removes its flows and the isolation.
	if err := client.NetworkingV1().NetworkPolicies("x").Delete(ctx, "allow-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "isolation gone", func() bool { return !flows.has("priority=20000") && !flows.has("conj_id=") })

	// A switch that lost its flows (restart) is refilled.
	flows.mu.Lock()
	flows.flows = map[openflow.Key]openflow.Flow{}
	flows.mu.Unlock()
	eventually(t, "resync after flow loss", func() bool {
		return flows.has("ip,nw_dst=10.1.1.3 actions=set_field:02:00:00:00:00:03->eth_dst,output:11")
	})

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
