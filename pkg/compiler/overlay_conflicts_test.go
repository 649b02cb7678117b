package compiler_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// localNode is node-1 of the conflict tests: dual stack.
func localNode() *model.Node {
	return mustNode("node-1", []string{"172.29.1.2", "fd00:29:1::2"}, "10.91.1.0/24", "fd00:91:1::/64")
}

// rejection is a RejectedNode in short: "name reason with".
func rejection(r compiler.RejectedNode) string {
	s := r.Name + " " + r.Reason
	if r.With != "" {
		s += " " + r.With
	}
	if r.Local {
		s += " (local)"
	}
	return s
}

func usableNames(r compiler.RemoteNodes) []string {
	var out []string
	for _, n := range r.Usable {
		out = append(out, n.Name)
	}
	return out
}

// created sets n's creation time to minute m.
func created(n *model.Node, m int) *model.Node {
	n.Created = time.Date(2026, 12, 6, 12, m, 0, 0, time.UTC)
	return n
}

func TestResolveRemoteNodes(t *testing.T) {
	tests := []struct {
		name     string
		nodes    []*model.Node // besides localNode()
		usable   []string
		rejected []string
	}{
		{"disjoint nodes", []*model.Node{
			mustNode("node-2", []string{"172.29.2.2"}, "10.91.2.0/24"),
			mustNode("node-3", []string{"172.29.3.2", "fd00:29:3::2"}, "10.91.3.0/24", "fd00:91:3::/64"),
		}, []string{"node-2", "node-3"}, nil},
		{"equal pod CIDRs: the first by name wins", []*model.Node{
			mustNode("node-3", []string{"172.29.3.2"}, "10.92.2.0/24"),
			mustNode("node-2", []string{"172.29.2.2"}, "10.92.2.0/24"),
		}, []string{"node-2"}, []string{"node-3 pod-cidr-overlap node-2"}},
		{"a later pod CIDR inside an earlier one", []*model.Node{
			mustNode("node-2", []string{"172.29.2.2"}, "10.92.0.0/16"),
			mustNode("node-3", []string{"172.29.3.2"}, "10.92.3.0/24"),
		}, []string{"node-2"}, []string{"node-3 pod-cidr-overlap node-2"}},
		{"a later pod CIDR around an earlier one", []*model.Node{
			mustNode("node-2", []string{"172.29.2.2"}, "10.92.2.0/24"),
			mustNode("node-3", []string{"172.29.3.2"}, "10.92.0.0/16"),
		}, []string{"node-2"}, []string{"node-3 pod-cidr-overlap node-2"}},
		{"InternalIP inside an earlier node's pod CIDR", []*model.Node{
			mustNode("node-2", []string{"172.29.2.2"}, "10.92.2.0/24"),
			mustNode("node-3", []string{"10.92.2.7"}, "10.92.3.0/24"),
		}, []string{"node-2"}, []string{"node-3 internal-ip-in-pod-cidr node-2"}},
		{"pod CIDR around an earlier node's InternalIP", []*model.Node{
			mustNode("node-2", []string{"172.30.2.2"}, "10.92.2.0/24"),
			mustNode("node-3", []string{"172.29.3.2"}, "172.30.0.0/16"),
		}, []string{"node-2"}, []string{"node-3 internal-ip-in-pod-cidr node-2"}},
		{"same tunnel endpoint", []*model.Node{
			mustNode("node-2", []string{"172.29.2.2"}, "10.92.2.0/24"),
			mustNode("node-3", []string{"172.29.2.2"}, "10.92.3.0/24"),
		}, []string{"node-2"}, []string{"node-3 same-internal-ip node-2"}},
		{"same second InternalIP (IPv6)", []*model.Node{
			mustNode("node-2", []string{"172.29.2.2", "fd00:29::5"}, "10.92.2.0/24"),
			mustNode("node-3", []string{"172.29.3.2", "fd00:29::5"}, "10.92.3.0/24"),
		}, []string{"node-2"}, []string{"node-3 same-internal-ip node-2"}},
		{"this node's pod CIDR wins over an earlier name", []*model.Node{
			mustNode("node-0", []string{"172.29.0.2"}, "10.91.1.0/25"),
		}, nil, []string{"node-0 pod-cidr-overlap node-1 (local)"}},
		{"pod CIDR around this node's InternalIP", []*model.Node{
			mustNode("node-2", []string{"172.30.2.2"}, "172.29.0.0/16"),
		}, nil, []string{"node-2 internal-ip-in-pod-cidr node-1 (local)"}},
		{"InternalIP is this node's gateway", []*model.Node{
			mustNode("node-2", []string{"10.91.1.1"}, "10.92.2.0/24"),
		}, nil, []string{"node-2 internal-ip-in-pod-cidr node-1 (local)"}},
		{"InternalIP is this node's", []*model.Node{
			mustNode("node-2", []string{"172.29.1.2"}, "10.92.2.0/24"),
		}, nil, []string{"node-2 same-internal-ip node-1 (local)"}},
		{"IPv6 pod CIDR overlaps this node's", []*model.Node{
			mustNode("node-2", []string{"172.29.2.2"}, "10.92.2.0/24", "fd00:91::/32"),
		}, nil, []string{"node-2 pod-cidr-overlap node-1 (local)"}},
		{"IPv4 /0 pod CIDR", []*model.Node{
			mustNode("node-0", []string{"172.29.0.2"}, "0.0.0.0/0"),
			mustNode("node-2", []string{"172.29.2.2"}, "10.92.2.0/24"),
		}, []string{"node-2"}, []string{"node-0 pod-cidr-is-default-route"}},
		{"IPv6 /0 pod CIDR next to a good IPv4 one", []*model.Node{
			mustNode("node-0", []string{"172.29.0.2"}, "10.92.0.0/24", "::/0"),
			mustNode("node-2", []string{"172.29.2.2"}, "10.92.2.0/24", "fd00:92:2::/64"),
		}, []string{"node-2"}, []string{"node-0 pod-cidr-is-default-route"}},
		{"IPv6 nested pod CIDRs", []*model.Node{
			mustNode("node-2", []string{"fd00:29:2::2"}, "fd00:92:2::/64"),
			mustNode("node-3", []string{"fd00:29:3::2"}, "fd00:92::/32"),
		}, []string{"node-2"}, []string{"node-3 pod-cidr-overlap node-2"}},
		{"dual stack: a conflict in one family rejects the node whole", []*model.Node{
			mustNode("node-2", []string{"172.29.2.2"}, "10.92.2.0/24", "fd00:92:2::/64"),
			mustNode("node-3", []string{"172.29.3.2"}, "10.92.3.0/24", "fd00:92:2::/64"),
		}, []string{"node-2"}, []string{"node-3 pod-cidr-overlap node-2"}},
		{"families do not overlap", []*model.Node{
			mustNode("node-2", []string{"172.29.2.2"}, "10.92.2.0/24"),
			mustNode("node-3", []string{"fd00:29:3::2"}, "fd00:92:2::/64"),
		}, []string{"node-2", "node-3"}, nil},
		{"a rejected node does not block a later one", []*model.Node{
			mustNode("node-a", []string{"172.29.10.2"}, "10.92.0.0/24"),
			mustNode("node-b", []string{"172.29.11.2"}, "10.92.0.0/23"),
			mustNode("node-c", []string{"172.29.12.2"}, "10.92.1.0/24"),
		}, []string{"node-a", "node-c"}, []string{"node-b pod-cidr-overlap node-a"}},
		{"a node rejected by this node does not block either", []*model.Node{
			mustNode("node-2", []string{"172.29.2.2"}, "10.91.0.0/16"),
			mustNode("node-3", []string{"172.29.3.2"}, "10.91.3.0/24"),
		}, []string{"node-3"}, []string{"node-2 pod-cidr-overlap node-1 (local)"}},
		{"InternalIP inside its own pod CIDR", []*model.Node{
			mustNode("node-2", []string{"10.92.2.5"}, "10.92.2.0/24"),
		}, nil, []string{"node-2 internal-ip-in-own-pod-cidr"}},
		{"two Nodes of one name", []*model.Node{
			mustNode("node-2", []string{"172.29.2.2"}, "10.92.2.0/24"),
			mustNode("node-2", []string{"172.29.2.3"}, "10.92.3.0/24"),
			mustNode("node-3", []string{"172.29.3.2"}, "10.92.2.0/24"),
		}, []string{"node-3"}, []string{"node-2 duplicate-name"}},
		{"nodes without tunnel endpoint or pod CIDR are not usable but claim", []*model.Node{
			mustNode("node-2", nil, "10.92.3.0/24"),
			mustNode("node-20", []string{"172.29.3.2"}),
			mustNode("node-3", []string{"172.29.3.2"}, "10.92.3.0/24"),
			mustNode("node-4", []string{"172.29.4.2"}, "10.92.4.0/24"),
		}, []string{"node-4"}, []string{"node-3 pod-cidr-overlap node-2"}},
		{"a link-local pod CIDR", []*model.Node{
			mustNode("node-2", []string{"172.29.2.2"}, "169.254.0.0/16"),
		}, nil, []string{"node-2 special-purpose-or-other"}},
		{"an older node wins over an earlier name", []*model.Node{
			created(mustNode("node-2", []string{"172.29.2.2"}, "10.92.2.0/24"), 2),
			created(mustNode("node-3", []string{"172.29.3.2"}, "10.92.2.0/24"), 1),
		}, []string{"node-3"}, []string{"node-2 pod-cidr-overlap node-3"}},
		{"an IPv4-mapped InternalIP", []*model.Node{
			mustNode("node-2", []string{"::ffff:172.29.2.2"}, "10.92.2.0/24"),
		}, nil, []string{"node-2 invalid-address"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nodes := append([]*model.Node{localNode()}, tc.nodes...)
			rng := rand.New(rand.NewPCG(7, uint64(len(tc.name))))
			var first compiler.RemoteNodes
			for i := range 20 { // shuffled: the order given does not matter
				rng.Shuffle(len(nodes), func(a, b int) { nodes[a], nodes[b] = nodes[b], nodes[a] })
				got := compiler.ResolveRemoteNodes(nodes, "node-1")
				var rejected []string
				for _, r := range got.Rejected {
					rejected = append(rejected, rejection(r))
				}
				if !slices.Equal(usableNames(got), tc.usable) || !slices.Equal(rejected, tc.rejected) {
					t.Fatalf("order %d: usable %v rejected %v, want %v and %v", i, usableNames(got), rejected, tc.usable, tc.rejected)
				}
				if i == 0 {
					first = got
				} else if !reflect.DeepEqual(got, first) {
					t.Fatalf("order %d: %+v, first order %+v", i, got, first)
				}
			}
		})
	}
}

func TestResolveRemoteNodesWithoutLocalNode(t *testing.T) {
	got := compiler.ResolveRemoteNodes([]*model.Node{
		mustNode("node-2", []string{"172.29.2.2"}, "10.91.1.0/24"),
		mustNode("node-3", []string{"172.29.3.2"}, "10.91.1.0/24"),
	}, "node-1")
	if !slices.Equal(usableNames(got), []string{"node-2"}) || len(got.Rejected) != 1 || rejection(got.Rejected[0]) != "node-3 pod-cidr-overlap node-2" {
		t.Fatalf("usable %v rejected %v", usableNames(got), got.Rejected)
	}
	const want = `node "node-3": pod-cidr-overlap (10.91.1.0/24) with node "node-2" (10.91.1.0/24)`
	if s := got.Rejected[0].String(); s != want {
		t.Errorf("String() = %s, want %s", s, want)
	}
}

// The compiler's node IPs (this host's other addresses) are this node's
// claims too, as in the controller.
func TestResolveRemoteNodesLocalIPs(t *testing.T) {
	nodes := []*model.Node{localNode(), mustNode("node-2", []string{"172.29.2.2"}, "192.168.7.0/24")}
	if got := compiler.ResolveRemoteNodes(nodes, "node-1"); !slices.Equal(usableNames(got), []string{"node-2"}) {
		t.Fatalf("without local IPs: usable %v", usableNames(got))
	}
	got := compiler.ResolveRemoteNodes(nodes, "node-1", netip.MustParseAddr("192.168.7.9"))
	if len(got.Usable) != 0 || len(got.Rejected) != 1 || rejection(got.Rejected[0]) != "node-2 internal-ip-in-pod-cidr node-1 (local)" {
		t.Fatalf("usable %v rejected %v", usableNames(got), got.Rejected)
	}
}

// conflictNode is a random node i with claims drawn from small pools, so
// that conflicts of every kind are frequent.
func conflictNode(rng *rand.Rand, i int) *model.Node {
	n := &model.Node{Name: fmt.Sprintf("node-%02d", i)}
	if rng.IntN(8) > 0 {
		n.InternalIPs = append(n.InternalIPs, netip.AddrFrom4([4]byte{172, 29, byte(rng.IntN(12)), 2}))
	}
	if rng.IntN(3) == 0 {
		n.InternalIPs = append(n.InternalIPs, netip.MustParseAddr(fmt.Sprintf("fd00:29:%x::2", rng.IntN(12))))
	}
	if rng.IntN(6) == 0 { // an InternalIP among pod addresses
		n.InternalIPs = append([]netip.Addr{netip.AddrFrom4([4]byte{10, 92, byte(rng.IntN(12)), 7})}, n.InternalIPs...)
	}
	if rng.IntN(8) > 0 {
		bits := []int{24, 24, 24, 23, 20, 16, 24, 24, 24, 0}[rng.IntN(10)]
		n.PodCIDRs = append(n.PodCIDRs, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 92, byte(rng.IntN(40)), 0}), bits).Masked())
	}
	if rng.IntN(3) == 0 {
		bits := []int{64, 64, 56, 48, 64, 64, 64, 0}[rng.IntN(8)]
		n.PodCIDRs = append(n.PodCIDRs, netip.PrefixFrom(netip.MustParseAddr(fmt.Sprintf("fd00:92:%x::", rng.IntN(40))), bits).Masked())
	}
	return n
}

// TestResolveRemoteNodesProperties checks the rule against a brute force
// over random clusters full of conflicts (creation times of a few values,
// so that ties fall back to names): accepted nodes (not rejected: usable,
// or without tunnel endpoint or pod CIDR) overlap neither each other nor
// this node; each rejected node overlaps this node or an older accepted
// node, the one named, or is wrong by itself; every node with a tunnel
// endpoint and a pod CIDR is usable or rejected; the result is the same in
// any order; the rejected names are model.RefusedNodes' (the controller's).
func TestResolveRemoteNodesProperties(t *testing.T) {
	overlaps := func(a, b *model.Node) bool {
		for _, p := range claimsOf(a) {
			for _, q := range claimsOf(b) {
				if p.Overlaps(q) {
					return true
				}
			}
		}
		return false
	}
	older := func(a, b *model.Node) bool {
		return a.Created.Before(b.Created) || a.Created.Equal(b.Created) && a.Name < b.Name
	}
	kinds := map[string]int{}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 13))
		local := conflictNode(rng, 0)
		local.Name = "node-local"
		nodes := []*model.Node{local}
		for i := range 1 + rng.IntN(25) {
			nodes = append(nodes, created(conflictNode(rng, i+1), rng.IntN(4)))
		}
		got := compiler.ResolveRemoteNodes(nodes, local.Name)
		rng.Shuffle(len(nodes), func(a, b int) { nodes[a], nodes[b] = nodes[b], nodes[a] })
		if again := compiler.ResolveRemoteNodes(nodes, local.Name); !reflect.DeepEqual(got, again) {
			t.Fatalf("seed %d: shuffled input gave another result", seed)
		}
		byName := map[string]*model.Node{}
		for _, n := range nodes {
			byName[n.Name] = n
		}
		rejected := map[string]bool{}
		for _, r := range got.Rejected {
			rejected[r.Name] = true
		}
		if want := model.RefusedNodes(local.Name, nil, nodes); !maps.Equal(rejected, boolKeys(want)) {
			t.Fatalf("seed %d: rejected %v, model.RefusedNodes %v", seed, slices.Sorted(maps.Keys(rejected)), slices.Sorted(maps.Keys(want)))
		}
		var accepted []*model.Node
		for _, n := range nodes {
			if n != local && !rejected[n.Name] {
				accepted = append(accepted, n)
			}
		}
		usable := map[string]bool{}
		for _, n := range got.Usable {
			usable[n.Name] = true
		}
		for i, n := range accepted {
			if overlaps(n, local) {
				t.Fatalf("seed %d: accepted %s overlaps this node", seed, n.Name)
			}
			for _, m := range accepted[:i] {
				if overlaps(n, m) {
					t.Fatalf("seed %d: accepted %s and %s overlap", seed, m.Name, n.Name)
				}
			}
			if candidate := n.TunnelIP().IsValid() && len(n.PodCIDRs) > 0; candidate != usable[n.Name] {
				t.Fatalf("seed %d: accepted %s: usable %v, has tunnel endpoint and pod CIDR %v", seed, n.Name, usable[n.Name], candidate)
			}
		}
		for _, r := range got.Rejected {
			kinds[r.Reason]++
			n := byName[r.Name]
			if r.With == "" {
				continue
			}
			w := byName[r.With]
			if !(r.Local && w == local || !rejected[r.With] && older(w, n)) {
				t.Fatalf("seed %d: %s rejected for %s, which is neither this node nor an older accepted node", seed, r.Name, r.With)
			}
			if !overlaps(n, w) || !r.Claim.Overlaps(r.WithClaim) {
				t.Fatalf("seed %d: %s does not overlap what it was rejected for", seed, r)
			}
		}
		// Maximality: a rejected node without a conflict of its own
		// overlaps this node or an older accepted node.
		for _, n := range nodes {
			if n == local || !rejected[n.Name] {
				continue
			}
			blocked := overlaps(n, local)
			for _, a := range accepted {
				blocked = blocked || older(a, n) && overlaps(n, a)
			}
			for _, p := range n.PodCIDRs {
				blocked = blocked || p.Bits() == 0
			}
			for _, ip := range n.InternalIPs {
				for _, p := range n.PodCIDRs {
					blocked = blocked || p.Contains(ip)
				}
			}
			if !blocked {
				t.Fatalf("seed %d: %s rejected but it overlaps no accepted node", seed, n.Name)
			}
		}
	}
	t.Logf("rejections by reason over 300 random clusters: %v", kinds)
}

func boolKeys(m map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

func claimsOf(n *model.Node) []netip.Prefix {
	out := slices.Clone(n.PodCIDRs)
	for _, ip := range n.InternalIPs {
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out
}

// BenchmarkResolveRemoteNodes: the whole resolution, which the incremental
// compiler runs once per Flush with node events, for clusters of n
// dual-stack nodes without conflicts.
func BenchmarkResolveRemoteNodes(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			var nodes []*model.Node
			for i := range n {
				nodes = append(nodes, &model.Node{Name: fmt.Sprintf("node-%05d", i),
					InternalIPs: []netip.Addr{netip.AddrFrom4([4]byte{172, 18, byte(i >> 8), byte(i)})},
					PodCIDRs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24),
						netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x91, 0, 0, byte(i >> 8), byte(i)}), 64)}})
			}
			for b.Loop() {
				if r := compiler.ResolveRemoteNodes(nodes, "node-00000"); len(r.Usable) != n-1 {
					b.Fatalf("%d usable", len(r.Usable))
				}
			}
		})
	}
}
