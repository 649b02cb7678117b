package normalize

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// Node converts a Node into the model: its InternalIP addresses (IPv4
// first) and its pod CIDRs (IPv4 first). spec.podCIDR and spec.podCIDRs are
// checked as kube-apiserver checks them: each a valid CIDR without host
// bits, at most two, one per family, and podCIDR, when set, equal to
// podCIDRs[0] (a Node with only podCIDR has podCIDRs [podCIDR]; one with
// only podCIDRs is served with podCIDR = podCIDRs[0]). A node without addresses
// or pod CIDRs is valid: the overlay leaves it out. Errors name the node
// and the field.
func Node(n *corev1.Node) (*model.Node, error) {
	if n == nil {
		return nil, errors.New("nil Node")
	}
	name := n.Name
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return nil, fmt.Errorf("node %s: metadata.name: %s", printable.String(name), strings.Join(msgs, "; "))
	}
	ips, err := NodeInternalIPs(n)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	for _, ip := range ips {
		if ip.Is4In6() || ip.IsUnspecified() || ip.IsMulticast() {
			return nil, fmt.Errorf("node %s: status.addresses: InternalIP %s is not a unicast address", name, ip)
		}
	}
	cidrs, err := nodePodCIDRs(&n.Spec)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	return &model.Node{Name: name, InternalIPs: ipv4First(ips, netip.Addr.Is4), PodCIDRs: ipv4First(cidrs, func(p netip.Prefix) bool { return p.Addr().Is4() }),
		Created: n.CreationTimestamp.UTC()}, nil
}

// nodePodCIDRs validates spec.podCIDR and spec.podCIDRs.
func nodePodCIDRs(spec *corev1.NodeSpec) ([]netip.Prefix, error) {
	list := spec.PodCIDRs
	if len(list) == 0 && spec.PodCIDR != "" {
		list = []string{spec.PodCIDR}
	}
	if len(list) == 0 {
		return nil, nil
	}
	// Only podCIDRs: the API server accepts it and serves podCIDR =
	// podCIDRs[0] (its v1 conversion); a podCIDR that differs is refused.
	if spec.PodCIDR != "" && spec.PodCIDR != list[0] {
		return nil, fmt.Errorf("spec.podCIDR %q must equal spec.podCIDRs[0] %q", printable.String(spec.PodCIDR), printable.String(list[0]))
	}
	if len(list) > 2 {
		return nil, fmt.Errorf("spec.podCIDRs: %d CIDRs, at most 2 (one per IP family)", len(list))
	}
	var out []netip.Prefix
	for i, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Is4In6() {
			return nil, fmt.Errorf("spec.podCIDRs[%d]: %q is not a valid CIDR", i, printable.String(s))
		}
		if p.Masked() != p {
			return nil, fmt.Errorf("spec.podCIDRs[%d]: %s has host bits set (the network is %s)", i, p, p.Masked())
		}
		for _, q := range out {
			if q.Addr().Is4() == p.Addr().Is4() {
				return nil, fmt.Errorf("spec.podCIDRs: %s and %s are of one IP family (want one CIDR from each)", q, p)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// ipv4First orders IPv4 before IPv6, keeping the order within a family.
func ipv4First[T any](in []T, is4 func(T) bool) []T {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b T) int {
		switch a4, b4 := is4(a), is4(b); {
		case a4 && !b4:
			return -1
		case b4 && !a4:
			return 1
		}
		return 0
	})
	return out
}
