package controller

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// claimNode is a Node created at minute age of the test's clock, with its
// pod CIDRs and InternalIPs.
func claimNode(name string, minute int, cidrs []string, ips ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
		CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, minute, 0, 0, time.UTC))}}
	if len(cidrs) > 0 {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = cidrs[0], cidrs
	}
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	return n
}

func (f *memFlows) hasCookie(ck openflow.Cookie) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fl := range f.flows {
		if fl.Cookie == ck {
			return true
		}
	}
	return false
}

// TestControllerRefusesConflictingNodeClaims: a Node that claims (as a pod
// CIDR or an InternalIP) an address this node or an older node owns gets no
// tunnel flows and no host routes: otherwise its tunnel endpoint could send
// as another node's pods, or as addresses of this node's pod CIDR, and
// receive their traffic (flows of one priority that overlap: OVS picks
// either). Of two remote nodes the older keeps its claims.
func TestControllerRefusesConflictingNodeClaims(t *testing.T) {
	local := claimNode("n1", 0, []string{"10.91.1.0/24"}, "172.29.1.2")
	victim := claimNode("n2", 1, []string{"10.91.2.0/24", "fd00:91:2::/64"}, "172.29.2.2")
	tests := []struct {
		name string
		// other is a third node, created after n2 unless it says otherwise.
		other *corev1.Node
		// otherOK: other keeps its tunnel flows; victimOK: n2 does.
		otherOK, victimOK bool
	}{
		{"a node of its own (control)", claimNode("evil", 2, []string{"10.91.9.0/24"}, "172.29.9.2"), true, true},
		{"pod CIDR equal to another node's", claimNode("evil", 2, []string{"10.91.2.0/24"}, "172.29.9.2"), false, true},
		{"pod CIDR inside another node's", claimNode("evil", 2, []string{"10.91.2.128/25"}, "172.29.9.2"), false, true},
		{"pod CIDR holding other nodes' and this node's", claimNode("evil", 2, []string{"10.91.0.0/16"}, "172.29.9.2"), false, true},
		{"pod CIDR 0.0.0.0/0", claimNode("evil", 2, []string{"0.0.0.0/0"}, "172.29.9.2"), false, true},
		{"IPv6 pod CIDR ::/0 next to a free IPv4 one", claimNode("evil", 2, []string{"10.91.9.0/24", "::/0"}, "172.29.9.2"), false, true},
		{"IPv6 pod CIDR holding another node's", claimNode("evil", 2, []string{"fd00:91::/32"}, "fd00:29::9"), false, true},
		{"pod CIDR holding another node's InternalIP", claimNode("evil", 2, []string{"172.29.0.0/16"}, "192.0.2.9"), false, true},
		{"pod CIDR holding its own InternalIP", claimNode("evil", 2, []string{"10.91.9.0/24"}, "10.91.9.7"), false, true},
		{"InternalIP of another node's pod (second address)", claimNode("evil", 2, []string{"10.91.9.0/24"}, "172.29.9.2", "10.91.2.20"), false, true},
		{"InternalIP in this node's pod CIDR", claimNode("evil", 2, []string{"10.91.9.0/24"}, "172.29.9.2", "10.91.1.1"), false, true},
		{"this node's InternalIP", claimNode("evil", 2, []string{"10.91.9.0/24"}, "172.29.1.2"), false, true},
		{"another node's InternalIP", claimNode("evil", 2, []string{"10.91.9.0/24"}, "172.29.2.2"), false, true},
		{"older node keeps its pod CIDR", claimNode("old", -1, []string{"10.91.2.0/24"}, "172.29.9.2"), true, false},
		{"same age: the first name keeps it", claimNode("a-node", 1, []string{"10.91.2.0/24"}, "172.29.9.2"), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			client := fake.NewClientset(local.DeepCopy(), victim.DeepCopy(), tt.other)
			flows := &memFlows{}
			calls := &nodeCalls{}
			metrics := NewMetrics(nil)
			c := New(client, &memPorts{b: map[string]compiler.Binding{}, ch: make(chan struct{}, 1)}, flows, Options{
				Compiler: compiler.Config{Node: "n1", Overlay: compiler.Overlay{TunnelPort: testTunnelPort,
					GatewayMAC: net.HardwareAddr{0x0a, 0x58, 10, 91, 1, 1}}},
				Mode: model.ModeV1, CheckInterval: 50 * time.Millisecond, Metrics: metrics, NodesChanged: calls.record,
			})
			done := make(chan error)
			go func() { done <- c.Run(ctx) }()
			eventually(t, "ready", c.Ready)
			checks := []struct {
				name string
				ok   bool
			}{{"n2", tt.victimOK}, {tt.other.Name, tt.otherOK}}
			// The nodes may reach the controller in more than one commit
			// (then NodesChanged is called more than once): wait for the
			// settled verdict, which the checks below then read.
			conflicts := 0.0
			if !tt.otherOK || !tt.victimOK {
				conflicts = 1
			}
			eventually(t, "NodesChanged with the nodes' verdicts", func() bool {
				if calls.count() == 0 || value(metrics.ConflictingNodes) != conflicts {
					return false
				}
				for _, check := range checks {
					if strings.Contains(" "+calls.last(), " "+check.name+"=") != check.ok || flows.hasCookie(compiler.NodeCookie(check.name)) != check.ok {
						return false
					}
				}
				return true
			})
			for _, check := range checks {
				if got := flows.hasCookie(compiler.NodeCookie(check.name)); got != check.ok {
					t.Errorf("%s has tunnel flows: %v, want %v", check.name, got, check.ok)
				}
				if got := strings.Contains(" "+calls.last(), " "+check.name+"="); got != check.ok {
					t.Errorf("%s in NodesChanged (host routes): %v, want %v (%s)", check.name, got, check.ok, calls.last())
				}
			}
			if tt.otherOK && tt.victimOK && flows.has("tun_src=172.29.9.2,nw_src=10.91.2.") {
				t.Error("another node's pod CIDR admitted from the third node's tunnel endpoint")
			}
			if got := value(metrics.ConflictingNodes); got != conflicts {
				t.Errorf("ovs_netpol_conflicting_nodes = %v, want %v", got, conflicts)
			}
			// The third node goes: n2's claims hold again (a refused node
			// is decided again whenever the nodes change).
			if err := client.CoreV1().Nodes().Delete(ctx, tt.other.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, "n2's tunnel flows after the third node is deleted", func() bool {
				return flows.hasCookie(compiler.NodeCookie("n2")) && !flows.hasCookie(compiler.NodeCookie(tt.other.Name)) &&
					value(metrics.ConflictingNodes) == 0 && strings.Contains(calls.last(), "n2=")
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
