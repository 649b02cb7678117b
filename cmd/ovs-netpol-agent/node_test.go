package main

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

func TestCheckNodeFlags(t *testing.T) {
	ok := options{tunnel: tunnelGeneve, tunnelPortName: "ovs-netpol-gnv0"}
	tests := []struct {
		name string
		mod  func(o *options)
		want string // "" = accepted
	}{
		{"defaults", func(*options) {}, ""},
		{"none with uplink", func(o *options) { o.tunnel, o.uplinkPort = tunnelNone, "7" }, ""},
		{"geneve with uplink", func(o *options) { o.uplinkPort = "7" }, "--uplink-port is the flat-L2 mode"},
		{"unknown tunnel", func(o *options) { o.tunnel = "vxlan" }, `--tunnel "vxlan"`},
		{"empty port name", func(o *options) { o.tunnelPortName = "" }, "--tunnel-port-name"},
		{"long port name", func(o *options) { o.tunnelPortName = "ovs-netpol-gnv00" }, "1 to 15 characters"},
		{"MTU set", func(o *options) { o.mtu = 1400 }, ""},
		{"MTU too small", func(o *options) { o.mtu = 1279 }, "--mtu 1279"},
		{"MTU too big", func(o *options) { o.mtu = 65536 }, "--mtu 65536"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.mod(&o)
			err := checkNodeFlags(o)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("checkNodeFlags: %v, want %q", err, tc.want)
			}
		})
	}
}

// logLines is a logger whose lines a test can read as they come.
type logLines struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	line chan string
}

func newLogLines() (*logLines, logrus.FieldLogger) {
	l := &logLines{line: make(chan string, 100)}
	log := logrus.New()
	log.Out = l
	log.Level = logrus.DebugLevel
	return l, log
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	l.line <- string(p)
	return len(p), nil
}

// next waits for the next log line containing want (skipping others).
func (l *logLines) next(t *testing.T, want string) {
	t.Helper()
	for {
		select {
		case s := <-l.line:
			if strings.Contains(s, want) {
				return
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no log line with %q", want)
		}
	}
}

func TestWaitForNode(t *testing.T) {
	defer func(p time.Duration) { nodePollInterval = p }(nodePollInterval)
	nodePollInterval = time.Millisecond
	client := fake.NewClientset()
	lines, log := newLogLines()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	type result struct {
		n   *model.Node
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := waitForNode(ctx, client, "n1", log)
		done <- result{n, err}
	}()
	// Each state of the Node is logged as the reason the agent waits.
	lines.next(t, "cannot read the Node object")
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lines.next(t, "the Node has no spec.podCIDR yet")
	node.Spec.PodCIDR, node.Spec.PodCIDRs = "10.91.1.0/24", []string{"10.91.1.0/24", "10.91.2.0/24"}
	if _, err := client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	lines.next(t, "the Node object is invalid")
	node.Spec.PodCIDRs = []string{"10.91.1.0/24", "fd00:91:1::/64"}
	if _, err := client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	lines.next(t, "the Node has no InternalIP address yet")
	select {
	case r := <-done:
		t.Fatalf("returned before the Node had an InternalIP: %+v %v", r.n, r.err)
	default:
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.29.1.2"}}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.n.TunnelIP() != netip.MustParseAddr("172.29.1.2") || len(r.n.PodCIDRs) != 2 {
		t.Errorf("node %+v", r.n)
	}
	lines.next(t, "the Node has its pod CIDR and InternalIP")

	// The wait ends with the context, saying why it waited.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := waitForNode(cctx, client, "n2", log); err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cannot read the Node object") {
		t.Errorf("cancelled wait: %v", err)
	}
}

func TestRouteSyncer(t *testing.T) {
	defer func(p time.Duration) { routeResyncEvery = p }(routeResyncEvery)
	routeResyncEvery = time.Hour // resyncs only when a test wants them
	_, log := newLogLines()

	type call struct {
		bridge  string
		remotes []string
	}
	calls := make(chan call, 10)
	fail := errors.New("netlink says no")
	var failing bool
	var mu sync.Mutex
	sync := func(bridge string, remotes []*model.Node) error {
		var names []string
		for _, n := range remotes {
			names = append(names, n.Name)
		}
		calls <- call{bridge, names}
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return fail
		}
		return nil
	}
	reg := prometheus.NewRegistry()
	rs := newRouteSyncer("br-int", "n1", sync, reg, log)
	rs.synced = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rs.run(ctx)

	nodes := func(names ...string) []*model.Node {
		var out []*model.Node
		for _, n := range names {
			out = append(out, &model.Node{Name: n})
		}
		return out
	}
	rs.nodesChanged(nodes("n0", "n1", "n2"))
	<-rs.synced
	if c := <-calls; c.bridge != "br-int" || strings.Join(c.remotes, ",") != "n0,n2" {
		t.Errorf("sync %+v: want br-int with every node but n1", c)
	}

	// Failures are counted; the next change retries with the newest nodes.
	mu.Lock()
	failing = true
	mu.Unlock()
	rs.nodesChanged(nodes("n1", "n3"))
	<-rs.synced
	<-calls
	mu.Lock()
	failing = false
	mu.Unlock()
	rs.nodesChanged(nodes("n1", "n3", "n4"))
	<-rs.synced
	if c := <-calls; strings.Join(c.remotes, ",") != "n3,n4" {
		t.Errorf("retry synced %v", c.remotes)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
	}
	if want := map[string]float64{"ovs_netpol_host_route_sync_errors_total": 1, "ovs_netpol_host_route_syncs_total": 3}; !maps.Equal(got, want) {
		t.Errorf("metrics %v, want %v", got, want)
	}
	select {
	case c := <-calls:
		t.Errorf("unexpected sync %+v", c)
	default:
	}
}

// The resync runs on its own, and not before the controller reported Nodes.
func TestRouteSyncerResyncs(t *testing.T) {
	defer func(p time.Duration) { routeResyncEvery = p }(routeResyncEvery)
	routeResyncEvery = time.Millisecond
	_, log := newLogLines()
	calls := make(chan int, 100)
	rs := newRouteSyncer("br-int", "n1", func(_ string, remotes []*model.Node) error {
		calls <- len(remotes)
		return nil
	}, nil, log)
	rs.synced = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rs.run(ctx)
	// Ticks before the controller reported the Nodes sync nothing (the
	// host's routes are not wiped meanwhile): every sync below has n2.
	time.Sleep(5 * routeResyncEvery)
	rs.nodesChanged([]*model.Node{{Name: "n2"}})
	for range 3 { // the change, then resyncs with no change
		<-rs.synced
		if n := <-calls; n != 1 {
			t.Errorf("synced %d remotes, want 1", n)
		}
	}
}
