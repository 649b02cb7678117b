package controller

import (
	"context"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

const testTunnelPort = 4096

func node(name, podCIDR, ip string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:   corev1.NodeSpec{PodCIDR: podCIDR},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
	if podCIDR != "" {
		n.Spec.PodCIDRs = []string{podCIDR}
	}
	return n
}

// nodeCalls records NodesChanged calls.
type nodeCalls struct {
	mu    sync.Mutex
	calls [][]*model.Node
}

func (r *nodeCalls) record(nodes []*model.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, nodes)
}

func (r *nodeCalls) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// last renders the last call as "name=IP:CIDR ..." (sorted as given).
func (r *nodeCalls) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) == 0 {
		return "(no call)"
	}
	var parts []string
	for _, n := range r.calls[len(r.calls)-1] {
		var ips, cidrs []string
		for _, ip := range n.InternalIPs {
			ips = append(ips, ip.String())
		}
		for _, c := range n.PodCIDRs {
			cidrs = append(cidrs, c.String())
		}
		parts = append(parts, n.Name+"="+strings.Join(ips, "+")+":"+strings.Join(cidrs, "+"))
	}
	return strings.Join(parts, " ")
}

// tunnelFlow is the forward flow of a remote podCIDR (issue 13's contract),
// sent from n1's InternalIP.
func tunnelFlow(cidr, endpoint string) string {
	return "nw_dst=" + cidr + " actions=set_field:172.29.1.2->tun_src,set_field:" + endpoint + "->tun_dst,output:4096"
}

// TestControllerFollowsNodes: Node add, update and delete reach the
// compiler (tunnel flows) and NodesChanged; an invalid podCIDR is rejected,
// counted and its flows removed; an update that changes nothing the flows
// use (a label, a heartbeat) and a full resync call NodesChanged no more.
func TestControllerFollowsNodes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(
		node("n1", "10.91.1.0/24", "172.29.1.2"),
		node("n2", "10.91.2.0/24", "172.29.2.2"),
	)
	ports := &memPorts{b: map[string]compiler.Binding{}, ch: make(chan struct{}, 1)}
	flows := &memFlows{}
	calls := &nodeCalls{}
	metrics := NewMetrics(nil)
	c := New(client, ports, flows, Options{
		Compiler: compiler.Config{Node: "n1", Overlay: compiler.Overlay{TunnelPort: testTunnelPort,
			GatewayMAC: net.HardwareAddr{0x0a, 0x58, 10, 91, 1, 1}}},
		Mode: model.ModeV1, CheckInterval: 50 * time.Millisecond, Metrics: metrics, NodesChanged: calls.record,
	})
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	eventually(t, "ready", c.Ready)
	// The two Nodes may reach the controller in one commit or two.
	startNodes := "n1=172.29.1.2:10.91.1.0/24 n2=172.29.2.2:10.91.2.0/24"
	eventually(t, "NodesChanged with both nodes", func() bool { return calls.count() >= 1 && calls.last() == startNodes })
	for _, f := range []string{tunnelFlow("10.91.2.0/24", "172.29.2.2"), "tun_src=172.29.2.2"} {
		if !flows.has(f) {
			t.Fatalf("no flow with %s at start", f)
		}
	}
	if flows.has("10.91.1.0/24 actions=set_field") {
		t.Fatal("the local node's podCIDR is sent into the tunnel")
	}

	nodes := client.CoreV1().Nodes()
	rejected := func() float64 { return value(metrics.Rejected.WithLabelValues("node")) }
	steps := []struct {
		name   string
		change func(context.Context, kubernetes.Interface) error
		// present and absent are flow substrings; nodes is what
		// NodesChanged must say; rejected and invalid are the metrics.
		present, absent []string
		nodes           string
		rejected        float64
		invalid         float64
	}{
		{"node added", func(ctx context.Context, cl kubernetes.Interface) error {
			_, err := nodes.Create(ctx, node("n3", "10.91.3.0/24", "172.29.3.2"), metav1.CreateOptions{})
			return err
		}, []string{tunnelFlow("10.91.3.0/24", "172.29.3.2"), "tun_src=172.29.3.2"}, nil,
			"n1=172.29.1.2:10.91.1.0/24 n2=172.29.2.2:10.91.2.0/24 n3=172.29.3.2:10.91.3.0/24", 0, 0},
		{"node's address changed", func(ctx context.Context, cl kubernetes.Interface) error {
			_, err := nodes.Update(ctx, node("n2", "10.91.2.0/24", "172.29.2.9"), metav1.UpdateOptions{})
			return err
		}, []string{tunnelFlow("10.91.2.0/24", "172.29.2.9"), "tun_src=172.29.2.9"}, []string{"172.29.2.2->tun_dst", "tun_src=172.29.2.2"},
			"n1=172.29.1.2:10.91.1.0/24 n2=172.29.2.9:10.91.2.0/24 n3=172.29.3.2:10.91.3.0/24", 0, 0},
		{"invalid podCIDR: rejected, counted, its flows removed", func(ctx context.Context, cl kubernetes.Interface) error {
			// The fake clientset does not validate; the API server would
			// refuse a prefix length over 32.
			_, err := nodes.Update(ctx, node("n3", "10.91.3.0/33", "172.29.3.2"), metav1.UpdateOptions{})
			return err
		}, nil, []string{"10.91.3.0", "172.29.3.2"},
			"n1=172.29.1.2:10.91.1.0/24 n2=172.29.2.9:10.91.2.0/24", 1, 1},
		{"fixed again", func(ctx context.Context, cl kubernetes.Interface) error {
			_, err := nodes.Update(ctx, node("n3", "10.91.3.0/24", "172.29.3.2"), metav1.UpdateOptions{})
			return err
		}, []string{tunnelFlow("10.91.3.0/24", "172.29.3.2")}, nil,
			"n1=172.29.1.2:10.91.1.0/24 n2=172.29.2.9:10.91.2.0/24 n3=172.29.3.2:10.91.3.0/24", 1, 0},
		{"podCIDR and podCIDRs disagree: rejected", func(ctx context.Context, cl kubernetes.Interface) error {
			n := node("n3", "10.91.3.0/24", "172.29.3.2")
			n.Spec.PodCIDRs = []string{"10.91.4.0/24"}
			_, err := nodes.Update(ctx, n, metav1.UpdateOptions{})
			return err
		}, nil, []string{"10.91.3.0", "10.91.4.0", "172.29.3.2"},
			"n1=172.29.1.2:10.91.1.0/24 n2=172.29.2.9:10.91.2.0/24", 2, 1},
		{"invalid node deleted", func(ctx context.Context, cl kubernetes.Interface) error {
			return nodes.Delete(ctx, "n3", metav1.DeleteOptions{})
		}, nil, []string{"172.29.3.2"},
			// The valid set did not change: no call expected, checked below.
			"", 2, 0},
		{"node deleted", func(ctx context.Context, cl kubernetes.Interface) error {
			return nodes.Delete(ctx, "n2", metav1.DeleteOptions{})
		}, nil, []string{"10.91.2.0", "172.29.2.9"},
			"n1=172.29.1.2:10.91.1.0/24", 2, 0},
	}
	for _, s := range steps {
		before := calls.count()
		events := value(metrics.Events)
		if err := s.change(ctx, client); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.nodes != "" {
			eventually(t, s.name+": NodesChanged", func() bool { return calls.count() > before })
			if got := calls.last(); got != s.nodes {
				t.Errorf("%s: NodesChanged with %s, want %s", s.name, got, s.nodes)
			}
		} else {
			eventually(t, s.name+": processed", func() bool { return value(metrics.Events) > events })
		}
		eventually(t, s.name+": flows", func() bool {
			for _, f := range s.present {
				if !flows.has(f) {
					return false
				}
			}
			for _, f := range s.absent {
				if flows.has(f) {
					return false
				}
			}
			return true
		})
		invalid := func() float64 { return value(metrics.InvalidNodes) }
		eventually(t, s.name+": metrics", func() bool { return rejected() == s.rejected && invalid() == s.invalid })
	}

	// Nothing NodesChanged reports changes: a label (status heartbeats are
	// the same to the model), and a full resync after the switch lost its
	// flows. Then a real change: exactly one more call, so neither of
	// the first two made one (the worker reports in order).
	before := calls.count()
	events := value(metrics.Events)
	n1, err := nodes.Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n1.Labels = map[string]string{"heartbeat": "1"}
	n1.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
	if _, err := nodes.Update(ctx, n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "label change processed", func() bool { return value(metrics.Events) > events })
	flows.mu.Lock()
	flows.flows = map[openflow.Key]openflow.Flow{}
	flows.mu.Unlock()
	eventually(t, "resync after flow loss", func() bool { n, _ := flows.Count(ctx); return n > 0 })
	if _, err := nodes.Create(ctx, node("n4", "10.91.4.0/24", "172.29.4.2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n4 reported", func() bool { return strings.Contains(calls.last(), "n4=") })
	if got := calls.count() - before; got != 1 {
		t.Errorf("%d NodesChanged calls for one change after a no-op update and a resync, want 1", got)
	}
	eventually(t, "n4's flows", func() bool { return flows.has(tunnelFlow("10.91.4.0/24", "172.29.4.2")) })
	if got := c.Status().Nodes; got != 2 {
		t.Errorf("Status().Nodes = %d, want 2", got)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestNodesChangedGetsCopies: what NodesChanged receives is the callback's
// to keep or change; the model's nodes are not touched.
func TestNodesChangedGetsCopies(t *testing.T) {
	c := New(nil, nil, nil, Options{Compiler: compiler.Config{Node: "n1"}, Mode: model.ModeV1})
	n := &model.Node{Name: "n2", InternalIPs: []netip.Addr{netip.MustParseAddr("172.29.2.2")},
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.91.2.0/24")}}
	c.nodes.valid["n2"], c.nodes.accepted["n2"] = n, n
	got, ok := c.takeNodesChange()
	if !ok || len(got) != 1 {
		t.Fatalf("takeNodesChange: %v %v", got, ok)
	}
	got[0].InternalIPs[0] = netip.MustParseAddr("192.0.2.1")
	got[0].PodCIDRs[0] = netip.MustParsePrefix("192.0.2.0/24")
	if n.InternalIPs[0].String() != "172.29.2.2" || n.PodCIDRs[0].String() != "10.91.2.0/24" {
		t.Errorf("the model's node changed with the callback's copy: %+v", n)
	}
	if _, again := c.takeNodesChange(); again {
		t.Error("a second take without a change reports one")
	}
}

// TestTrimNodeKeepsTheModel: what TrimForCache drops of a Node is nothing
// normalize.Node reads.
func TestTrimNodeKeepsTheModel(t *testing.T) {
	full := func() *corev1.Node {
		n := node("n2", "10.91.2.0/24", "172.29.2.2")
		n.Spec.PodCIDRs = []string{"10.91.2.0/24", "fd00:91:2::/64"}
		n.Status.Addresses = append(n.Status.Addresses,
			corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "fd00:29:2::2"},
			corev1.NodeAddress{Type: corev1.NodeHostName, Address: "n2"},
			corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "198.51.100.2"})
		n.Labels = map[string]string{"kubernetes.io/hostname": "n2"}
		n.Annotations = map[string]string{"node.alpha.kubernetes.io/ttl": "0"}
		n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
		n.Status.Images = []corev1.ContainerImage{{Names: []string{"registry.example/big:1"}, SizeBytes: 1 << 30}}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		return n
	}
	want, err := normalize.Node(full())
	if err != nil {
		t.Fatal(err)
	}
	trimmed, err := TrimForCache(full())
	if err != nil {
		t.Fatal(err)
	}
	tn := trimmed.(*corev1.Node)
	got, err := normalize.Node(tn)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("trimmed Node normalizes to %+v, %v; want %+v", got, err, want)
	}
	if tn.Labels != nil || tn.Annotations != nil || tn.ManagedFields != nil || tn.Status.Images != nil || tn.Status.Conditions != nil {
		t.Errorf("not trimmed: %+v", tn)
	}
}
