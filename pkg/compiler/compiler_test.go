package compiler

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
	"k8s.io/apimachinery/pkg/labels"
)

func sel(t *testing.T, s string) labels.Selector {
	t.Helper()
	l, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// bigCluster has one namespace "t" with nTargets local pods labelled app=t,
// and namespace "p" with nPeers pods labelled app=p on another node.
func bigCluster(t *testing.T, nTargets, nPeers int) *model.Cluster {
	c := model.NewCluster(model.ModeV1)
	c.AddNamespace(&model.Namespace{Name: "t", Labels: labels.Set{"ns": "t"}})
	c.AddNamespace(&model.Namespace{Name: "p", Labels: labels.Set{"ns": "p"}})
	for i := 0; i < nTargets; i++ {
		c.AddPod(&model.Pod{UID: fmt.Sprintf("t%d", i), Namespace: "t", Name: fmt.Sprintf("t%d", i), Node: "n1",
			Labels: labels.Set{"app": "t"}, IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})}})
	}
	for i := 0; i < nPeers; i++ {
		c.AddPod(&model.Pod{UID: fmt.Sprintf("p%d", i), Namespace: "p", Name: fmt.Sprintf("p%d", i), Node: "n2",
			Labels: labels.Set{"app": "p"}, IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)})}})
	}
	return c
}

func compileFor(t *testing.T, c *model.Cluster) *Result {
	t.Helper()
	cfg := Config{Node: "n1"}
	cfg.Bindings = DefaultBindings(c, "n1", nil)
	r, err := Compile(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func flowsWithCookie(r *Result, c openflow.Cookie) []openflow.Flow {
	var out []openflow.Flow
	for _, f := range r.Flows {
		if f.Cookie == c {
			out = append(out, f)
		}
	}
	return out
}

// TestConjunctionCost: a rule with P peer addresses, Q port matches and T
// targets costs P+Q+T+1 flows, not P×Q×T.
func TestConjunctionCost(t *testing.T) {
	for _, tc := range []struct{ targets, peers, ports int }{{1, 1, 1}, {5, 20, 3}, {30, 200, 8}} {
		c := bigCluster(t, tc.targets, tc.peers)
		var ports []model.PortSpec
		for i := 0; i < tc.ports; i++ {
			ports = append(ports, model.PortSpec{Protocol: model.TCP, Port: int32(1000 + 2*i)})
		}
		c.AddPolicy(&model.Policy{Namespace: "t", Name: "pol", PodSelector: sel(t, "app=t"), AffectsIngress: true,
			Ingress: []model.Rule{{Peers: []model.Peer{{NamespaceSelector: sel(t, "ns=p")}}, Ports: ports}}})
		r := compileFor(t, c)
		got := len(flowsWithCookie(r, RuleCookie("t/pol/ingress/0")))
		want := tc.peers + tc.ports + tc.targets + 1
		t.Logf("T=%d P=%d Q=%d: %d flows (cross product would be %d)", tc.targets, tc.peers, tc.ports, got, tc.targets*tc.peers*tc.ports)
		if got != want {
			t.Errorf("T=%d P=%d Q=%d: %d flows, want P+Q+T+1 = %d", tc.targets, tc.peers, tc.ports, got, want)
		}
	}
}

// TestSharedMatchOneFlow: two rules with the same peer share one flow with
// two conjunction actions.
func TestSharedMatchOneFlow(t *testing.T) {
	c := bigCluster(t, 2, 1)
	rule := func(port int32) model.Rule {
		return model.Rule{Peers: []model.Peer{{NamespaceSelector: sel(t, "ns=p")}}, Ports: []model.PortSpec{{Protocol: model.TCP, Port: port}}}
	}
	c.AddPolicy(&model.Policy{Namespace: "t", Name: "pol", PodSelector: sel(t, "app=t"), AffectsIngress: true,
		Ingress: []model.Rule{rule(80), rule(81)}})
	r := compileFor(t, c)
	n := 0
	for _, f := range r.Flows {
		if f.Match.String() == "ip,nw_src=10.0.1.1" {
			n++
			if len(f.Actions.Conjunctions()) != 2 {
				t.Errorf("shared peer flow has actions %q, want two conjunctions", f.ActionsText())
			}
		}
	}
	if n != 1 {
		t.Errorf("%d flows match the shared peer, want 1", n)
	}
}

// TestStableIDs: adding a policy changes only its own flows and the
// isolation flows of the pods it newly isolates.
func TestStableIDs(t *testing.T) {
	c := bigCluster(t, 3, 3)
	c.AddPolicy(&model.Policy{Namespace: "t", Name: "first", PodSelector: sel(t, "app=t"), AffectsIngress: true,
		Ingress: []model.Rule{{Peers: []model.Peer{{NamespaceSelector: sel(t, "ns=p")}}, Ports: []model.PortSpec{{Protocol: model.TCP, Port: 80}}}}})
	before := compileFor(t, c)
	c.AddPolicy(&model.Policy{Namespace: "t", Name: "second", PodSelector: sel(t, "app=t"), AffectsIngress: true, AffectsEgress: true,
		Ingress: []model.Rule{{Peers: []model.Peer{{NamespaceSelector: sel(t, "ns=p")}}, Ports: []model.PortSpec{{Protocol: model.UDP, Port: 53}}}},
		Egress:  []model.Rule{{Ports: []model.PortSpec{{Protocol: model.UDP, Port: 53}}}}})
	after := compileFor(t, c)

	old := map[string]bool{}
	for _, f := range before.Flows {
		old[f.String()] = true
	}
	secondCookie := map[openflow.Cookie]bool{RuleCookie("t/second/ingress/0"): true, RuleCookie("t/second/egress/0"): true}
	for _, f := range before.Flows {
		found := false
		for _, g := range after.Flows {
			if g.Key() == f.Key() {
				found = true
				// A shared peer flow gains the new rule's conjunction; the
				// old conjunction must stay exactly as it was.
				if !g.SameActions(f) && !(f.IsConjunction() && subset(f.Actions.Conjunctions(), g.Actions.Conjunctions())) {
					t.Errorf("flow %s changed to %s", f, g)
				}
			}
		}
		if !found {
			t.Errorf("flow %s vanished", f)
		}
	}
	for _, g := range after.Flows {
		if old[g.String()] {
			continue
		}
		switch {
		case secondCookie[g.Cookie]:
		case g.Cookie.Kind() == openflow.KindPod && g.Table == TableEgress && g.Priority == PrioIsolation:
		case g.IsConjunction():
			// shared flow that gained the new rule's conjunction
		default:
			t.Errorf("unexpected new or changed flow %s", g)
		}
	}
}

// subset reports whether every conjunction of a is in b.
func subset(a, b []openflow.Conjunction) bool {
	for _, c := range a {
		if !slices.Contains(b, c) {
			return false
		}
	}
	return true
}

func TestDeterministic(t *testing.T) {
	mk := func() string {
		c := bigCluster(t, 4, 4)
		c.AddPolicy(&model.Policy{Namespace: "t", Name: "a", PodSelector: sel(t, "app=t"), AffectsIngress: true,
			Ingress: []model.Rule{{Peers: []model.Peer{{NamespaceSelector: sel(t, "ns=p")}}}}})
		c.AddPolicy(&model.Policy{Namespace: "t", Name: "b", PodSelector: sel(t, ""), AffectsEgress: true,
			Egress: []model.Rule{{Ports: []model.PortSpec{{Protocol: model.TCP, Port: 80, EndPort: 90}}}}})
		return compileFor(t, c).Text(true)
	}
	first := mk()
	for i := 0; i < 5; i++ {
		if mk() != first {
			t.Fatal("compile output differs between runs")
		}
	}
}
