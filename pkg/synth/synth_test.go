package synth

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"

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
