package bench

import (
	"net/netip"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// osdnFixture is a tiny cluster measured on node n1: namespaces a and c
// have a pod there (in use), b has none.
//
//	a (team=x): web1 (n1, 10.0.0.1), web2 (n2, 10.0.0.2), api1 (n2), db1 (n2)
//	b (team=x): api2 (n2), web3 (n2)
//	c (team=y): x1 (n1, app=api)
//
// The web pods declare the named port http = 8080/TCP.
func osdnFixture(policies ...*model.Policy) *model.Cluster {
	m := model.NewCluster(model.ModeV1)
	m.AddNamespace(&model.Namespace{Name: "a", Labels: labels.Set{"team": "x"}})
	m.AddNamespace(&model.Namespace{Name: "b", Labels: labels.Set{"team": "x"}})
	m.AddNamespace(&model.Namespace{Name: "c", Labels: labels.Set{"team": "y"}})
	web := []model.ContainerPort{{Name: "http", Port: 8080, Protocol: model.TCP}}
	for _, p := range []struct {
		ns, name, app, node, ip string
		ports                   []model.ContainerPort
	}{
		{"a", "web1", "web", "n1", "10.0.0.1", web},
		{"a", "web2", "web", "n2", "10.0.0.2", web},
		{"a", "api1", "api", "n2", "10.0.0.3", nil},
		{"a", "db1", "db", "n2", "10.0.0.4", nil},
		{"b", "api2", "api", "n2", "10.0.1.1", nil},
		{"b", "web3", "web", "n2", "10.0.1.2", web},
		{"c", "x1", "api", "n1", "10.0.2.1", nil},
	} {
		m.AddPod(&model.Pod{UID: p.ns + "-" + p.name, Namespace: p.ns, Name: p.name, Labels: labels.Set{"app": p.app},
			Node: p.node, IPs: []netip.Addr{netip.MustParseAddr(p.ip)}, Ports: p.ports, Phase: "Running"})
	}
	for _, p := range policies {
		m.AddPolicy(p)
	}
	return m
}

func app(v string) labels.Selector  { return labels.SelectorFromSet(labels.Set{"app": v}) }
func team(v string) labels.Selector { return labels.SelectorFromSet(labels.Set{"team": v}) }

func ingressPolicy(ns, name string, sel labels.Selector, rules ...model.Rule) *model.Policy {
	return &model.Policy{Namespace: ns, Name: name, PodSelector: sel, AffectsIngress: true, Ingress: rules}
}

func tcp(p int32) model.PortSpec { return model.PortSpec{Protocol: model.TCP, Port: p} }

func TestOpenShiftSDN(t *testing.T) {
	fromAPI := []model.Peer{{PodSelector: app("api")}}
	webFromAPI := func(name string) *model.Policy {
		return ingressPolicy("a", name, app("web"), model.Rule{Peers: fromAPI,
			Ports: []model.PortSpec{tcp(80), {Protocol: model.UDP, Port: 53}}})
	}
	// Default 2 below: a and c in use, neither with an empty podSelector.
	for _, tc := range []struct {
		name     string
		policies []*model.Policy
		want     OSDNCounts
	}{
		{"no policies", nil,
			OSDNCounts{InUse: 2, Default: 2}},
		// dest web1, web2 (cluster-wide) × peer api1 (own namespace only) × 2 ports.
		{"podSelector peer, two ports", []*model.Policy{webFromAPI("p")},
			OSDNCounts{InUse: 2, Allow: 4, Drop: 2, Default: 2}},
		// Identical flows of two policies are one flow each.
		{"identical flows counted once", []*model.Policy{webFromAPI("p1"), webFromAPI("p2")},
			OSDNCounts{InUse: 2, Allow: 4, Drop: 2, Default: 2}},
		// dest db1 × one part per namespace (VNID) a, b.
		{"namespace-only peer", []*model.Policy{ingressPolicy("a", "p", app("db"),
			model.Rule{Peers: []model.Peer{{NamespaceSelector: team("x")}}})},
			OSDNCounts{InUse: 2, Allow: 2, Drop: 1, Default: 2}},
		// dest "" × reg0=a × 443; every pod of a selected: no drop or
		// default flow for a, c keeps its default.
		{"empty podSelector, empty peer podSelector", []*model.Policy{ingressPolicy("a", "p", labels.Everything(),
			model.Rule{Peers: []model.Peer{{PodSelector: labels.Everything()}}, Ports: []model.PortSpec{tcp(443)}})},
			OSDNCounts{InUse: 2, Allow: 1, Default: 1}},
		// dest web1, web2 × "" (every namespace) × "".
		{"empty namespaceSelector peer", []*model.Policy{ingressPolicy("a", "p", app("web"),
			model.Rule{Peers: []model.Peer{{NamespaceSelector: labels.Everything()}}})},
			OSDNCounts{InUse: 2, Allow: 2, Drop: 2, Default: 2}},
		// dest web1, web2 × api1, api2 (both team=x namespaces) × 8080.
		{"namespace and pod selector peer", []*model.Policy{ingressPolicy("a", "p", app("web"),
			model.Rule{Peers: []model.Peer{{NamespaceSelector: team("x"), PodSelector: app("api")}}, Ports: []model.PortSpec{tcp(8080)}})},
			OSDNCounts{InUse: 2, Allow: 4, Drop: 2, Default: 2}},
		// namespaceSelector with podSelector {}: one part per pod (x1), not per namespace.
		{"namespaceSelector with empty podSelector", []*model.Policy{ingressPolicy("a", "p", app("db"),
			model.Rule{Peers: []model.Peer{{NamespaceSelector: team("y"), PodSelector: labels.Everything()}}})},
			OSDNCounts{InUse: 2, Allow: 1, Drop: 1, Default: 2}},
		{"rule without from and ports", []*model.Policy{ingressPolicy("a", "p", app("web"), model.Rule{})},
			OSDNCounts{InUse: 2, Allow: 2, Drop: 2, Default: 2}},
		{"deny, no rules", []*model.Policy{ingressPolicy("a", "p", app("web"))},
			OSDNCounts{InUse: 2, Drop: 2, Default: 2}},
		{"namespace not in use", []*model.Policy{ingressPolicy("b", "p", app("web"), model.Rule{Peers: fromAPI})},
			OSDNCounts{InUse: 2, Default: 2}},
		// Egress: our cross product, local web1 × db1 × 5432 = 1; no ingress,
		// so nothing selected.
		{"egress only", []*model.Policy{{Namespace: "a", Name: "p", PodSelector: app("web"), AffectsEgress: true,
			Egress: []model.Rule{{Peers: []model.Peer{{PodSelector: app("db")}}, Ports: []model.PortSpec{tcp(5432)}}}}},
			OSDNCounts{InUse: 2, Default: 2, Substituted: 1, SubstitutedRules: 1}},
		// Ingress by the scheme: web1, web2 × api1 = 2; egress cross
		// product: web1 × x1 × {80, 443} = 2.
		{"ingress and egress", []*model.Policy{{Namespace: "a", Name: "p", PodSelector: app("web"), AffectsIngress: true, AffectsEgress: true,
			Ingress: []model.Rule{{Peers: fromAPI}},
			Egress:  []model.Rule{{Peers: []model.Peer{{NamespaceSelector: team("y")}}, Ports: []model.PortSpec{tcp(80), tcp(443)}}}}},
			OSDNCounts{InUse: 2, Allow: 2, Drop: 2, Default: 2, Substituted: 2, SubstitutedRules: 1}},
		// Named port: cross product web1 × api1 × http (8080 on web1) = 1;
		// the policy still selects web1, web2.
		{"named port", []*model.Policy{ingressPolicy("a", "p", app("web"),
			model.Rule{Peers: fromAPI, Ports: []model.PortSpec{{Protocol: model.TCP, Name: "http"}}})},
			OSDNCounts{InUse: 2, Drop: 2, Default: 2, Substituted: 1, SubstitutedRules: 1}},
		// ipBlock: web1 × (192.168.0.0/16 minus 192.168.1.0/24 = 8 prefixes) × 80.
		{"ipBlock peer", []*model.Policy{ingressPolicy("a", "p", app("web"),
			model.Rule{Peers: []model.Peer{{IPBlock: &model.IPBlock{CIDR: netip.MustParsePrefix("192.168.0.0/16"),
				Except: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}}}}, Ports: []model.PortSpec{tcp(80)}})},
			OSDNCounts{InUse: 2, Drop: 2, Default: 2, Substituted: 8, SubstitutedRules: 1}},
		// 8000-8999 is 6 port masks (8000/64, 8064/128, 8192/512, 8704/256,
		// 8960/32, 8992/8): web1 × api1 × 6.
		{"port range", []*model.Policy{ingressPolicy("a", "p", app("web"),
			model.Rule{Peers: fromAPI, Ports: []model.PortSpec{{Protocol: model.TCP, Port: 8000, EndPort: 8999}}})},
			OSDNCounts{InUse: 2, Drop: 2, Default: 2, Substituted: 6, SubstitutedRules: 1}},
		{"SCTP and a port without number", []*model.Policy{ingressPolicy("a", "p", app("web"),
			model.Rule{Peers: fromAPI, Ports: []model.PortSpec{{Protocol: model.SCTP, Port: 9000}, {Protocol: model.UDP}}})},
			OSDNCounts{InUse: 2, Drop: 2, Default: 2, Substituted: 2, SubstitutedRules: 1}},
		// Rule 0 by the scheme (2 × 1 × 1), rule 1 (named port) as its cross product (1).
		{"expressible and named-port rules in one policy", []*model.Policy{ingressPolicy("a", "p", app("web"),
			model.Rule{Peers: fromAPI, Ports: []model.PortSpec{tcp(80)}},
			model.Rule{Peers: fromAPI, Ports: []model.PortSpec{{Protocol: model.TCP, Name: "http"}}})},
			OSDNCounts{InUse: 2, Allow: 2, Drop: 2, Default: 2, Substituted: 1, SubstitutedRules: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := osdnFixture(tc.policies...)
			res, err := compiler.Compile(m, compiler.Config{Node: "n1", NodeIPs: []netip.Addr{NodeIP},
				Bindings: compiler.DefaultBindings(m, "n1", nil)})
			if err != nil {
				t.Fatal(err)
			}
			if got := OpenShiftSDN(m, "n1", res.Flows); got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			sum := 0
			for _, n := range RuleCrossProducts(res.Flows) {
				sum += n
			}
			if cp := CountFlows(res.Flows).CrossPolicy; sum != cp {
				t.Errorf("rule cross products add up to %d, CountFlows.CrossPolicy is %d", sum, cp)
			}
		})
	}
}
