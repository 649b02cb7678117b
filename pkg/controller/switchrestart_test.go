package controller

import (
	"context"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// A switch that lost its flows is refilled as soon as SwitchRestarted says
// so, not at the next flow count check (here an hour away).
func TestSwitchRestartedRefillsAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}},
		pod("x", "a", "a", "n1", "10.1.1.1", map[string]string{"pod": "a"}),
	)
	ports := &memPorts{b: map[string]compiler.Binding{"x/a": {OFPort: 10, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}}, ch: make(chan struct{}, 1)}
	flows := &memFlows{}
	c := New(client, ports, flows, Options{Compiler: compiler.Config{Node: "n1"}, Mode: model.ModeV1, CheckInterval: time.Hour})
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	eventually(t, "ready", c.Ready)
	const portSecurity = "ip,in_port=10,dl_src=02:00:00:00:00:01,nw_src=10.1.1.1"
	if !flows.has(portSecurity) {
		t.Fatal("port security flow of x/a missing")
	}

	flows.mu.Lock()
	flows.flows = map[openflow.Key]openflow.Flow{} // ovs-vswitchd restarted
	flows.mu.Unlock()
	c.SwitchRestarted()
	eventually(t, "flows refilled after SwitchRestarted", func() bool { return flows.has(portSecurity) })

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
