package main

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestWaitForNodeRefusesUnusableClaims: the agent does not build the overlay
// on a pod CIDR or InternalIP of its own Node that every other node refuses
// (model.RefusedNodes: a /0, a special-purpose range, a pod CIDR holding the
// InternalIP): the gateway would sit in it and the CNI configuration hand
// out its addresses. It waits, saying why, until the Node is fixed.
func TestWaitForNodeRefusesUnusableClaims(t *testing.T) {
	defer func(p time.Duration) { nodePollInterval = p }(nodePollInterval)
	nodePollInterval = time.Millisecond
	for _, tc := range []struct {
		name, podCIDR, ip, why string
	}{
		{"link-local pod CIDR", "169.254.0.0/16", "172.29.1.2", "its pod CIDR 169.254.0.0/16 overlaps 169.254.0.0/16 (link-local)"},
		{"a /0", "0.0.0.0/0", "172.29.1.2", "its pod CIDR 0.0.0.0/0 is every address of its family"},
		{"pod CIDR holding the InternalIP", "172.29.0.0/16", "172.29.1.2", "its pod CIDR 172.29.0.0/16 holds its InternalIP 172.29.1.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"},
				Spec:   corev1.NodeSpec{PodCIDR: tc.podCIDR, PodCIDRs: []string{tc.podCIDR}},
				Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: tc.ip}}}}
			client := fake.NewClientset(node)
			lines, log := newLogLines()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := waitForNode(ctx, client, "n1", log)
				done <- err
			}()
			lines.next(t, tc.why)
			select {
			case err := <-done:
				t.Fatalf("returned with an unusable Node: %v", err)
			default:
			}
			node.Spec.PodCIDR, node.Spec.PodCIDRs = "10.91.1.0/24", []string{"10.91.1.0/24"}
			if _, err := client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
