package normalize

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNode(t *testing.T) {
	internal := func(ips ...string) []corev1.NodeAddress {
		var out []corev1.NodeAddress
		for _, ip := range ips {
			out = append(out, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
		}
		return out
	}
	tests := []struct {
		name     string
		podCIDR  string
		podCIDRs []string
		addrs    []corev1.NodeAddress
		nodeName string
		want     string // "InternalIPs PodCIDRs"
		wantErr  string
	}{
		{name: "podCIDR only", podCIDR: "10.91.1.0/24", addrs: internal("172.29.1.2"), want: "[172.29.1.2] [10.91.1.0/24]"},
		{name: "dual stack, IPv6 listed first", podCIDR: "fd00:91:1::/64", podCIDRs: []string{"fd00:91:1::/64", "10.91.1.0/24"},
			addrs: internal("fd00:29::2", "172.29.1.2", "fd00:29::2"), want: "[172.29.1.2 fd00:29::2] [10.91.1.0/24 fd00:91:1::/64]"},
		{name: "no podCIDR, no addresses: valid, no overlay", want: "[] []"},
		{name: "not a CIDR", podCIDR: "10.91.1.0", wantErr: `node n1: spec.podCIDRs[0]: "10.91.1.0" is not a valid CIDR`},
		{name: "host bits set", podCIDR: "10.91.1.1/24", wantErr: "node n1: spec.podCIDRs[0]: 10.91.1.1/24 has host bits set (the network is 10.91.1.0/24)"},
		{name: "two of a family", podCIDR: "10.91.1.0/24", podCIDRs: []string{"10.91.1.0/24", "10.92.1.0/24"},
			wantErr: "node n1: spec.podCIDRs: 10.91.1.0/24 and 10.92.1.0/24 are of one IP family"},
		{name: "three", podCIDR: "10.91.1.0/24", podCIDRs: []string{"10.91.1.0/24", "fd00::/64", "fd01::/64"}, wantErr: "at most 2"},
		{name: "podCIDR differs from podCIDRs[0]", podCIDR: "10.91.2.0/24", podCIDRs: []string{"10.91.1.0/24"},
			wantErr: `node n1: spec.podCIDR "10.91.2.0/24" must equal spec.podCIDRs[0] "10.91.1.0/24"`},
		// The API server accepts it and serves podCIDR = podCIDRs[0].
		{name: "podCIDRs without podCIDR", podCIDRs: []string{"fd00:91:1::/64", "10.91.1.0/24"}, want: "[] [10.91.1.0/24 fd00:91:1::/64]"},
		{name: "IPv4-mapped", podCIDR: "::ffff:10.0.0.0/120", wantErr: "is not a valid CIDR"},
		{name: "bad InternalIP", podCIDR: "10.91.1.0/24", addrs: internal("nope"), wantErr: `node n1: status.addresses[0].address: invalid IP address "nope"`},
		{name: "unspecified InternalIP", addrs: internal("0.0.0.0"), wantErr: "is not a unicast address"},
		{name: "bad name", nodeName: "a\nb", wantErr: `node "a\nb": metadata.name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := tt.nodeName
			if name == "" {
				name = "n1"
			}
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: tt.podCIDR, PodCIDRs: tt.podCIDRs},
				Status: corev1.NodeStatus{Addresses: tt.addrs}}
			got, err := Node(n)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := fmt.Sprint(got.InternalIPs, " ", got.PodCIDRs); got.Name != name || s != tt.want {
				t.Errorf("got %s %s, want %s", got.Name, s, tt.want)
			}
		})
	}
}
