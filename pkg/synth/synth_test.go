package synth

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

func digest(t *testing.T, c *Cluster) string {
	t.Helper()
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, objs := range []any{c.Namespaces, c.Pods, c.Policies} {
		if err := enc.Encode(objs); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

var small = Scale{Name: "small", Namespaces: 23, Pods: 600, Policies: 150, Nodes: 5}

func TestDeterministic(t *testing.T) {
	a, b := Generate(small, 7), Generate(small, 7)
	if digest(t, a) != digest(t, b) {
		t.Fatal("same seed, different clusters")
	}
	if digest(t, a) == digest(t, Generate(small, 8)) {
		t.Fatal("different seeds, same cluster")
	}
	if a.NewPod(3, 1).Name != b.NewPod(3, 1).Name {
		t.Fatal("NewPod not deterministic")
	}
}

func TestCountsAndModel(t *testing.T) {
	for _, s := range []Scale{small, S1} {
		c := Generate(s, DefaultSeed)
		if len(c.Namespaces) != s.Namespaces || len(c.Pods) != s.Pods || len(c.Policies) != s.Policies {
			t.Fatalf("%s: %d namespaces, %d pods, %d policies", s.Name, len(c.Namespaces), len(c.Pods), len(c.Policies))
		}
		m, err := c.Model()
		if err != nil {
			t.Fatal(err)
		}
		// Unique keys: nothing was overwritten.
		if len(m.Namespaces) != s.Namespaces || len(m.Pods) != s.Pods || len(m.Policies) != s.Policies {
			t.Fatalf("%s model: %d namespaces, %d pods, %d policies", s.Name, len(m.Namespaces), len(m.Pods), len(m.Policies))
		}
		ips := map[string]bool{}
		nodes := map[string]int{}
		for _, p := range c.Pods {
			if ips[p.Status.PodIP] {
				t.Fatalf("duplicate IP %s", p.Status.PodIP)
			}
			ips[p.Status.PodIP] = true
			nodes[p.Spec.NodeName]++
		}
		if len(nodes) != s.Nodes {
			t.Errorf("%s: pods on %d nodes, want %d", s.Name, len(nodes), s.Nodes)
		}
	}
}

// TestShapes: every template is used at S1 and the policy mix has what the
// benchmarks claim (egress, ipBlock with except, named ports, ranges).
func TestShapes(t *testing.T) {
	c := Generate(S1, DefaultSeed)
	m, err := c.Model()
	if err != nil {
		t.Fatal(err)
	}
	var egress, except, named, ranges, nsSel, combined int
	for _, p := range m.Policies {
		if p.AffectsEgress {
			egress++
		}
		for _, rules := range [][]model.Rule{p.Ingress, p.Egress} {
			for _, r := range rules {
				for _, peer := range r.Peers {
					if peer.IPBlock != nil && len(peer.IPBlock.Except) > 0 {
						except++
					}
					if peer.NamespaceSelector != nil {
						nsSel++
						if peer.PodSelector != nil {
							combined++
						}
					}
				}
				for _, ps := range r.Ports {
					if ps.Name != "" {
						named++
					}
					if ps.EndPort != 0 {
						ranges++
					}
				}
			}
		}
	}
	t.Logf("S1: %d egress policies, %d ipBlocks with except, %d named ports, %d ranges, %d namespace selectors (%d combined)", egress, except, named, ranges, nsSel, combined)
	if egress == 0 || except == 0 || named == 0 || ranges == 0 || nsSel == 0 || combined == 0 {
		t.Fatal("a policy shape is missing")
	}
}

func serviceDigest(t *testing.T, c *Cluster) string {
	t.Helper()
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, objs := range []any{c.Services, c.EndpointSlices} {
		if err := enc.Encode(objs); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestServices: S1Services is S1 plus the Services (the rest byte for
// byte), deterministic, valid for the agent (Model), with the shapes
// BENCHMARKS.md describes, and every endpoint a real pod the Service
// selects.
func TestServices(t *testing.T) {
	a, b := Generate(S1Services, DefaultSeed), Generate(S1, DefaultSeed)
	if digest(t, a) != digest(t, b) {
		t.Fatal("S1Services: namespaces, pods or policies differ from S1's")
	}
	if a.NewPod(3, 1).Name != b.NewPod(3, 1).Name {
		t.Fatal("S1Services: NewPod differs from S1's")
	}
	if len(b.Services)+len(b.EndpointSlices) != 0 {
		t.Fatal("S1 has Services")
	}
	if serviceDigest(t, a) != serviceDigest(t, Generate(S1Services, DefaultSeed)) {
		t.Fatal("same seed, different Services")
	}
	if serviceDigest(t, a) == serviceDigest(t, Generate(S1Services, 2)) {
		t.Fatal("different seeds, same Services")
	}
	if len(a.Services) != S1Services.Services || len(a.EndpointSlices) != len(a.Services) {
		t.Fatalf("%d Services, %d slices", len(a.Services), len(a.EndpointSlices))
	}
	m, err := a.Model()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Services) != len(a.Services) || len(m.EndpointSlices) != len(a.EndpointSlices) {
		t.Fatalf("model: %d Services, %d slices", len(m.Services), len(m.EndpointSlices))
	}
	pods := map[string]*corev1.Pod{}
	for _, p := range a.Pods {
		pods[p.Status.PodIP] = p
	}
	vips := map[string]bool{}
	var twoPorts, udp, affinity, local, three, endpoints int
	for i, svc := range a.Services {
		vip := netip.MustParseAddr(svc.Spec.ClusterIP)
		if vips[vip.String()] || !ServiceVIPs.Contains(vip) || pods[vip.String()] != nil {
			t.Fatalf("%s/%s: cluster IP %s reused, outside %s or a pod's", svc.Namespace, svc.Name, vip, ServiceVIPs)
		}
		vips[vip.String()] = true
		sl := a.EndpointSlices[i]
		if sl.Labels[discoveryv1.LabelServiceName] != svc.Name || sl.Namespace != svc.Namespace {
			t.Fatalf("slice %d %s/%s is not %s/%s's", i, sl.Namespace, sl.Name, svc.Namespace, svc.Name)
		}
		selected := map[*corev1.Pod]bool{}
		for _, p := range a.SelectedPods(svc) {
			selected[p] = true
		}
		for _, e := range sl.Endpoints {
			p := pods[e.Addresses[0]]
			if p == nil || !selected[p] || *e.NodeName != p.Spec.NodeName || e.TargetRef.Name != p.Name {
				t.Fatalf("%s/%s: endpoint %s is not a pod it selects", svc.Namespace, svc.Name, e.Addresses[0])
			}
		}
		for _, p := range sl.Ports {
			if *p.Port == 0 {
				t.Fatalf("%s/%s: port %s unresolved", svc.Namespace, svc.Name, *p.Name)
			}
		}
		endpoints += len(sl.Endpoints)
		if len(sl.Endpoints) == 3 {
			three++
		}
		if len(svc.Spec.Ports) >= 2 {
			twoPorts++
		}
		for _, p := range svc.Spec.Ports {
			if p.Protocol == corev1.ProtocolUDP {
				udp++
				break
			}
		}
		if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			affinity++
		}
		if *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal {
			local++
		}
	}
	t.Logf("S1Services: %d Services, %d endpoints (%d Services with 3), %d with 2+ ports, %d with a UDP port, %d sessionAffinity ClientIP, %d internalTrafficPolicy Local",
		len(a.Services), endpoints, three, twoPorts, udp, affinity, local)
	if three < len(a.Services)*99/100 || twoPorts == 0 || udp < 2 || affinity == 0 || local == 0 {
		t.Fatal("a Service shape is missing")
	}
	if a.Services[0].Name != "kube-dns" || len(a.EndpointSlices[0].Endpoints) != 2 {
		t.Fatalf("first Service %s/%s with %d endpoints, want kube-system/kube-dns with the 2 CoreDNS pods", a.Services[0].Namespace, a.Services[0].Name, len(a.EndpointSlices[0].Endpoints))
	}
	// New Services: fresh names and addresses, endpoints it selects.
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		svc, sl := a.NewService(100 + i*37)
		if seen[svc.Name] || vips[svc.Spec.ClusterIP] || len(sl.Endpoints) == 0 {
			t.Fatalf("NewService: %s/%s %s, %d endpoints", svc.Namespace, svc.Name, svc.Spec.ClusterIP, len(sl.Endpoints))
		}
		seen[svc.Name], vips[svc.Spec.ClusterIP] = true, true
	}
}
