package controller

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// gatedFlows is memFlows whose full syncs, once gated, wait for the test.
type gatedFlows struct {
	*memFlows
	syncs   atomic.Int32
	gated   atomic.Bool
	started chan struct{}
	gate    chan struct{}
}

func (f *gatedFlows) Sync(ctx context.Context, desired []openflow.Flow, groups []openflow.Group) (int, int, error) {
	f.syncs.Add(1)
	if f.gated.CompareAndSwap(true, false) {
		f.started <- struct{}{}
		<-f.gate
	}
	return f.memFlows.Sync(ctx, desired, groups)
}

// ovs-vswitchd restarting again while the full sync for its previous
// restart runs (that sync may have gone partly to the old one): exactly one
// more full sync follows, neither lost nor repeated.
func TestSwitchRestartedDuringFullSync(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}},
		pod("x", "a", "a", "n1", "10.1.1.1", map[string]string{"pod": "a"}),
	)
	ports := &memPorts{b: map[string]compiler.Binding{"x/a": {OFPort: 10, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}}, ch: make(chan struct{}, 1)}
	flows := &gatedFlows{memFlows: &memFlows{}, started: make(chan struct{}), gate: make(chan struct{})}
	c := New(client, ports, flows, Options{Compiler: compiler.Config{Node: "n1"}, Mode: model.ModeV1, CheckInterval: time.Hour})
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	eventually(t, "ready", c.Ready)
	before := flows.syncs.Load()

	flows.gated.Store(true)
	c.SwitchRestarted()
	<-flows.started // the full sync for the first restart is running
	second := make(chan struct{})
	go func() { defer close(second); c.SwitchRestarted() }()
	time.Sleep(100 * time.Millisecond) // the second call is waiting for the sync
	close(flows.gate)
	<-second
	eventually(t, "a full sync after the second restart", func() bool { return flows.syncs.Load()-before >= 2 })
	time.Sleep(500 * time.Millisecond) // no further ones
	if got := flows.syncs.Load() - before; got != 2 {
		t.Fatalf("%d full syncs after two restarts (the second during the first's sync), want 2", got)
	}
	const portSecurity = "ip,in_port=10,dl_src=02:00:00:00:00:01,nw_src=10.1.1.1"
	if !flows.has(portSecurity) {
		t.Fatal("port security flow of x/a missing")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
