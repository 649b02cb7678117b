package inspect

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/evaluator"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// diffPods: namespaces x (team=x) and y, pods x/a (app=web, named port
// "http" 8080/TCP) and x/b on node n1, y/c on node n2; node n2 has the
// InternalIP 10.1.0.2.
const diffPods = `
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: "y"}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 10.1.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, uid: uid-a, labels: {app: web}}
spec:
  nodeName: n1
  containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}]}]
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, uid: uid-b, labels: {app: db}}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: "y", uid: uid-c, labels: {app: client}}
spec: {nodeName: n2, containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.3}
`

// policy renders a networking.k8s.io/v1 NetworkPolicy; spec is YAML
// indented by two spaces.
func diffPolicy(ns, name, spec string) string {
	return fmt.Sprintf("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s, namespace: %q}\nspec:\n%s\n", name, ns, spec)
}

const (
	// webFromX: x/a admits x's pods on TCP 80.
	webFromX = `  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {}}]
    ports: [{port: 80}]`
	// webFromAll: x/a admits every pod of every namespace on TCP 80.
	webFromAll = `  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {}}]
    ports: [{port: 80}]`
	// denyAllY: every pod of y isolated for ingress.
	denyAllY = `  podSelector: {}
  policyTypes: [Ingress]`
	// dbEgress: x/b may only reach 10.9.0.0/16 on UDP 53.
	dbEgress = `  podSelector: {matchLabels: {app: db}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.9.0.0/16}}]
    ports: [{protocol: UDP, port: 53}]`
	// webNamed: x/a admits x's pods on its named port http.
	webNamed = `  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {}}]
    ports: [{port: http}]`
)

func diffObjects(t *testing.T, docs ...string) *manifest.Objects {
	t.Helper()
	objs, err := manifest.Parse("test.yaml", []byte(strings.Join(docs, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func diffCluster(t *testing.T, objs *manifest.Objects) *model.Cluster {
	t.Helper()
	c, _, err := objs.Cluster(model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// connText renders a change as "opens|closes FROM -> TO PORTS [causes]".
func connText(c ConnChange) string {
	word := "closes"
	if c.Opens {
		word = "opens"
	}
	return fmt.Sprintf("%s %s -> %s %s %v", word, c.From, c.To, c.Ports, c.Causes)
}

func TestConnections(t *testing.T) {
	ext := netip.MustParseAddr("10.9.1.1")
	cases := []struct {
		name          string
		before, after []string
		// overlay, when set, is applied to the objects before (Overlay)
		// instead of after.
		overlay  string
		external []netip.Addr
		want     []string
	}{
		{name: "no change", before: []string{diffPolicy("x", "web", webFromX)}, after: []string{diffPolicy("x", "web", webFromX)}},
		{
			name:   "widening a rule to all namespaces opens y/c and the other node's host on that port only",
			before: []string{diffPolicy("x", "web", webFromX)},
			after:  []string{diffPolicy("x", "web", webFromAll)},
			want: []string{
				"opens y/c -> x/a TCP/80 [x/web]",
			},
		},
		{
			name:  "a new deny-all closes every port class to y/c, from pods, the other node and an external address",
			after: []string{diffPolicy("y", "deny", denyAllY)},
			// x's pods and the external address; n2's host is y/c's own node.
			external: []netip.Addr{ext},
			want: []string{
				"closes 10.9.1.1 -> y/c TCP/other [y/deny]",
				"closes 10.9.1.1 -> y/c UDP/other [y/deny]",
				"closes 10.9.1.1 -> y/c SCTP/other [y/deny]",
				"closes x/a -> y/c TCP/other [y/deny]",
				"closes x/a -> y/c UDP/other [y/deny]",
				"closes x/a -> y/c SCTP/other [y/deny]",
				"closes x/b -> y/c TCP/other [y/deny]",
				"closes x/b -> y/c UDP/other [y/deny]",
				"closes x/b -> y/c SCTP/other [y/deny]",
			},
		},
		{
			name:     "deleting a policy opens what it isolated: the ports it named and the others",
			before:   []string{diffPolicy("x", "web", webFromX)},
			external: []netip.Addr{ext},
			want: []string{
				"opens 10.9.1.1 -> x/a TCP/80 [x/web]",
				"opens 10.9.1.1 -> x/a TCP/other [x/web]",
				"opens 10.9.1.1 -> x/a UDP/other [x/web]",
				"opens 10.9.1.1 -> x/a SCTP/other [x/web]",
				"opens node n2 -> x/a TCP/80 [x/web]",
				"opens node n2 -> x/a TCP/other [x/web]",
				"opens node n2 -> x/a UDP/other [x/web]",
				"opens node n2 -> x/a SCTP/other [x/web]",
				"opens x/b -> x/a TCP/other [x/web]",
				"opens x/b -> x/a UDP/other [x/web]",
				"opens x/b -> x/a SCTP/other [x/web]",
				"opens y/c -> x/a TCP/80 [x/web]",
				"opens y/c -> x/a TCP/other [x/web]",
				"opens y/c -> x/a UDP/other [x/web]",
				"opens y/c -> x/a SCTP/other [x/web]",
			},
		},
		{
			name:     "an egress policy closes x/b's egress but to the external block on UDP/53",
			after:    []string{diffPolicy("x", "db", dbEgress)},
			external: []netip.Addr{ext},
			want: []string{
				"closes x/b -> 10.9.1.1 TCP/other [x/db]",
				"closes x/b -> 10.9.1.1 UDP/other [x/db]",
				"closes x/b -> 10.9.1.1 SCTP/other [x/db]",
				"closes x/b -> node n2 TCP/other [x/db]",
				"closes x/b -> node n2 UDP/53 [x/db]",
				"closes x/b -> node n2 UDP/other [x/db]",
				"closes x/b -> node n2 SCTP/other [x/db]",
				"closes x/b -> x/a TCP/other [x/db]",
				"closes x/b -> x/a UDP/53 [x/db]",
				"closes x/b -> x/a UDP/other [x/db]",
				"closes x/b -> x/a SCTP/other [x/db]",
				"closes x/b -> y/c TCP/other [x/db]",
				"closes x/b -> y/c UDP/53 [x/db]",
				"closes x/b -> y/c UDP/other [x/db]",
				"closes x/b -> y/c SCTP/other [x/db]",
			},
		},
		{
			name:   "a named port: the rule moves from 80 to x/a's http (8080)",
			before: []string{diffPolicy("x", "web", webFromX)},
			after:  []string{diffPolicy("x", "web", webNamed)},
			want: []string{
				"opens x/b -> x/a TCP/8080 [x/web]",
				"closes x/b -> x/a TCP/80 [x/web]",
			},
		},
		{
			name:   "relabelling a pod (no policy changed) is an other change",
			before: []string{diffPolicy("x", "web", webFromX)},
			overlay: `apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, image: i}]}`,
			want: []string{
				// b becomes a target of x/web (which did not change): isolated,
				// reached by x's pods on 80.
				"closes y/c -> x/b TCP/80 []",
				"closes y/c -> x/b TCP/other []",
				"closes y/c -> x/b UDP/other []",
				"closes y/c -> x/b SCTP/other []",
				"closes x/a -> x/b TCP/other []",
				"closes x/a -> x/b UDP/other []",
				"closes x/a -> x/b SCTP/other []",
				"closes node n2 -> x/b TCP/80 []",
				"closes node n2 -> x/b TCP/other []",
				"closes node n2 -> x/b UDP/other []",
				"closes node n2 -> x/b SCTP/other []",
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bo := diffObjects(t, append([]string{diffPods}, c.before...)...)
			before := diffCluster(t, bo)
			after := diffCluster(t, diffObjects(t, append([]string{diffPods}, c.after...)...))
			if c.overlay != "" {
				ao, _ := Overlay(bo, diffObjects(t, c.overlay), nil)
				after = diffCluster(t, ao)
			}
			opts := ConnOptions{Nodes: map[string][]netip.Addr{"n2": {netip.MustParseAddr("10.1.0.2")}}, External: c.external}
			got := Connections(before, after, opts)
			var gotText []string
			for _, g := range got {
				gotText = append(gotText, connText(g))
			}
			want := append([]string(nil), c.want...)
			sort.Strings(gotText)
			sort.Strings(want)
			if strings.Join(gotText, "\n") != strings.Join(want, "\n") {
				t.Fatalf("got:\n  %s\nwant:\n  %s", strings.Join(gotText, "\n  "), strings.Join(want, "\n  "))
			}
			// Every change agrees with the evaluator on a port of its class
			// other than the sample, and the verdicts differ.
			for _, g := range got {
				port := g.Ports.Ranges[len(g.Ports.Ranges)-1][1]
				if !g.Ports.Contains(g.Ports.Protocol, port) {
					t.Fatalf("%s does not contain its own last port %d", g.Ports, port)
				}
				vb := evaluator.Allowed(before, diffEndpoint(before, g.From), diffEndpoint(before, g.To), g.Ports.Protocol, port)
				va := evaluator.Allowed(after, diffEndpoint(after, g.From), diffEndpoint(after, g.To), g.Ports.Protocol, port)
				if vb.Allowed == va.Allowed || va.Allowed != g.Opens {
					t.Fatalf("%s: at port %d before %v after %v", connText(g), port, vb, va)
				}
			}
		})
	}
}

func diffEndpoint(c *model.Cluster, e Endpoint) evaluator.Endpoint {
	switch e.Kind {
	case "pod":
		for _, p := range c.Pods {
			if p.Key() == e.Name {
				return evaluator.PodEndpoint(p, e.IP)
			}
		}
	case "node":
		return evaluator.Endpoint{IP: e.IP, HostOf: e.Name}
	}
	return evaluator.Endpoint{IP: e.IP}
}

// TestConnectionsMatchBruteForce: the pairs Connections skips when only
// policies change (neither side selected by a changed policy) are exactly
// those whose verdict cannot change: a brute-force evaluation of every
// pair on every port class finds the same changes.
func TestConnectionsMatchBruteForce(t *testing.T) {
	type state struct {
		policies []string
		overlay  string // objects replacing diffPods' (labels of pods, namespaces)
	}
	relabelB := `apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, image: i}]}`
	relabelY := `apiVersion: v1
kind: Namespace
metadata: {name: "y", labels: {team: x}}`
	states := []state{
		{},
		{policies: []string{diffPolicy("x", "web", webFromX)}},
		{policies: []string{diffPolicy("x", "web", webFromAll)}},
		{policies: []string{diffPolicy("x", "web", webNamed), diffPolicy("x", "db", dbEgress)}},
		{policies: []string{diffPolicy("y", "deny", denyAllY), diffPolicy("x", "web", webFromX)}},
		{policies: []string{diffPolicy("x", "web", webFromX)}, overlay: relabelB},
		{policies: []string{diffPolicy("x", "web", webFromX), diffPolicy("x", "db", dbEgress)}, overlay: relabelB},
		// y joins team x, which a policy's namespace selector picks.
		{policies: []string{diffPolicy("x", "web", `  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: x}}}]`)}, overlay: relabelY},
		{policies: []string{diffPolicy("x", "web", `  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: x}}}]`)}},
	}
	ext := netip.MustParseAddr("10.9.1.1")
	opts := ConnOptions{Nodes: map[string][]netip.Addr{"n2": {netip.MustParseAddr("10.1.0.2")}}, External: []netip.Addr{ext}}
	build := func(st state) *model.Cluster {
		objs := diffObjects(t, append([]string{diffPods}, st.policies...)...)
		if st.overlay != "" {
			objs, _ = Overlay(objs, diffObjects(t, st.overlay), nil)
		}
		return diffCluster(t, objs)
	}
	total := 0
	for i, b := range states {
		for j, a := range states {
			before, after := build(b), build(a)
			got := map[string]bool{}
			for _, c := range Connections(before, after, opts) {
				got[fmt.Sprintf("%s>%s>%s", c.From, c.To, c.Ports)] = c.Opens
			}
			want := map[string]bool{}
			ends := []Endpoint{{Kind: "external", Name: ext.String(), IP: ext}, {Kind: "node", Name: "n2", IP: netip.MustParseAddr("10.1.0.2")}}
			for _, p := range before.SortedPods() {
				ends = append(ends, Endpoint{Kind: "pod", Name: p.Key(), IP: p.IPs[0]})
			}
			for _, from := range ends {
				for _, to := range ends {
					if from.Kind != "pod" && to.Kind != "pod" {
						continue
					}
					if from.Kind == "node" && to.Kind == "pod" && diffEndpoint(after, to).Pod.Node == from.Name {
						continue
					}
					for _, pc := range PortClasses(before, after) {
						vb := evaluator.Allowed(before, diffEndpoint(before, from), diffEndpoint(before, to), pc.Protocol, pc.Sample)
						va := evaluator.Allowed(after, diffEndpoint(after, from), diffEndpoint(after, to), pc.Protocol, pc.Sample)
						if vb.Allowed != va.Allowed {
							want[fmt.Sprintf("%s>%s>%s", from, to, pc)] = va.Allowed
						}
					}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("state %d -> %d: Connections found\n%v\nbrute force\n%v", i, j, got, want)
			}
			total += len(want)
		}
	}
	t.Logf("%d state pairs, %d connection changes, all found", len(states)*len(states), total)
}

func TestPortClasses(t *testing.T) {
	cases := []struct {
		name     string
		policies []string
		want     string
	}{
		{"no policy: one class per protocol", nil,
			"TCP/other[[1 65535]]@1 UDP/other[[1 65535]]@1 SCTP/other[[1 65535]]@1"},
		{"one port", []string{diffPolicy("x", "web", webFromX)},
			"TCP/80@80 TCP/other[[1 79] [81 65535]]@1 UDP/other[[1 65535]]@1 SCTP/other[[1 65535]]@1"},
		{"a named port resolves to every pod's number", []string{diffPolicy("x", "web", webNamed)},
			"TCP/8080@8080 TCP/other[[1 8079] [8081 65535]]@1 UDP/other[[1 65535]]@1 SCTP/other[[1 65535]]@1"},
		{"a range and a port inside it", []string{diffPolicy("x", "r", `  podSelector: {}
  ingress:
  - ports: [{port: 1000, endPort: 2000}, {port: 1500}, {protocol: UDP}]`)},
			"TCP/1000-1499,1501-2000@1000 TCP/1500@1500 TCP/other[[1 999] [2001 65535]]@1 UDP/other[[1 65535]]@1 SCTP/other[[1 65535]]@1"},
		{"overlapping ranges to the last port", []string{diffPolicy("x", "r", `  podSelector: {}
  ingress:
  - ports: [{protocol: SCTP, port: 100, endPort: 65535}, {protocol: SCTP, port: 1, endPort: 200}]`)},
			"TCP/other[[1 65535]]@1 UDP/other[[1 65535]]@1 SCTP/1-99@1 SCTP/100-200@100 SCTP/201-65535@201"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := diffCluster(t, diffObjects(t, append([]string{diffPods}, c.policies...)...))
			var got []string
			for _, pc := range PortClasses(cl) {
				g := fmt.Sprintf("%s@%d", pc, pc.Sample)
				if pc.Other {
					g = fmt.Sprintf("%s%v@%d", pc, pc.Ranges, pc.Sample)
				}
				got = append(got, g)
				if !pc.Contains(pc.Protocol, pc.Sample) {
					t.Fatalf("%s: sample %d outside", pc, pc.Sample)
				}
			}
			if g := strings.Join(got, " "); g != c.want {
				t.Fatalf("got  %s\nwant %s", g, c.want)
			}
		})
	}
}

func TestOverlay(t *testing.T) {
	liveSvc := `---
apiVersion: v1
kind: Service
metadata: {name: s, namespace: x}
spec: {clusterIP: 10.96.0.10, clusterIPs: [10.96.0.10], selector: {app: web}, ports: [{port: 80}]}`
	live := diffObjects(t, diffPods, diffPolicy("x", "web", webFromX), diffPolicy("y", "deny", denyAllY), liveSvc)
	apply := diffObjects(t,
		// Relabel x/b: the file's pod has no status, the live one's stays.
		`apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: web, tier: new}}
spec: {nodeName: other, containers: [{name: c, image: i}]}`,
		// The v1beta1 form of x/web replaces the v1 one.
		`---
apiVersion: extensions/v1beta1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec: {podSelector: {}}`,
		`---
apiVersion: v1
kind: Service
metadata: {name: s, namespace: x}
spec: {selector: {app: db}, ports: [{port: 81}]}`,
		`---
apiVersion: v1
kind: Pod
metadata: {name: new, namespace: x}
spec: {containers: [{name: c, image: i}]}`)
	del := diffObjects(t, diffPolicy("y", "deny", denyAllY), diffPolicy("y", "absent", denyAllY))
	out, warnings := Overlay(live, apply, del)

	if len(warnings) != 2 || !strings.Contains(warnings[0], "absent") || !strings.Contains(warnings[1], "Pod x/new") {
		t.Fatalf("warnings: %q", warnings)
	}
	var b *model.Pod
	c := diffCluster(t, out)
	for _, p := range c.Pods {
		if p.Key() == "x/b" {
			b = p
		}
	}
	if b == nil || b.Labels["tier"] != "new" || b.UID != "uid-b" || b.Node != "n1" || len(b.IPs) != 1 || b.IPs[0].String() != "10.0.0.2" {
		t.Fatalf("x/b after: %+v", b)
	}
	if len(out.PoliciesV1) != 0 || len(out.PoliciesV1beta1) != 1 || out.PoliciesV1beta1[0].Name != "web" {
		t.Fatalf("policies after: %d v1, %d v1beta1", len(out.PoliciesV1), len(out.PoliciesV1beta1))
	}
	if len(out.Services) != 1 || out.Services[0].Spec.ClusterIP != "10.96.0.10" || out.Services[0].Spec.Ports[0].Port != 81 {
		t.Fatalf("service after: %+v", out.Services)
	}
	if len(out.Pods) != 4 {
		t.Fatalf("%d pods after, want 4", len(out.Pods))
	}
	// The live objects are left alone.
	if live.Pods[1].Labels["tier"] != "" || len(live.PoliciesV1) != 2 {
		t.Fatal("Overlay changed the live objects")
	}
	var changes []string
	for _, ch := range ObjectChanges(diffCluster(t, live), c) {
		changes = append(changes, ch.String())
	}
	want := "NetworkPolicy x/web changed|NetworkPolicy y/deny deleted|Pod x/b changed|Pod x/new added|Service x/s changed"
	if got := strings.Join(changes, "|"); got != want {
		t.Fatalf("ObjectChanges:\n got %s\nwant %s", got, want)
	}
}

func TestObjectChangesIgnoresWhatPolicyDoesNotRead(t *testing.T) {
	annotated := strings.Replace(diffPolicy("x", "web", webFromX), "metadata: {name: web, namespace: \"x\"}", "metadata: {name: web, namespace: \"x\", annotations: {owner: me}}", 1)
	if annotated == diffPolicy("x", "web", webFromX) {
		t.Fatal("fixture did not change")
	}
	reordered := diffPolicy("x", "web", `  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - ports: [{port: 80, protocol: TCP}]
    from: [{podSelector: {}}]`)
	before := diffCluster(t, diffObjects(t, diffPods, diffPolicy("x", "web", webFromX)))
	for _, after := range []string{annotated, reordered} {
		if ch := ObjectChanges(before, diffCluster(t, diffObjects(t, diffPods, after))); len(ch) != 0 {
			t.Fatalf("changes: %v for\n%s", ch, after)
		}
	}
	if ch := ObjectChanges(before, diffCluster(t, diffObjects(t, diffPods, diffPolicy("x", "web", webFromAll)))); len(ch) != 1 || ch[0].Op != Changed {
		t.Fatalf("a changed peer: %v", ch)
	}
}

// TestFlowDiff: the flows a change adds and removes, applied to the flows
// before, give exactly the flows after; each is named by its origin.
func TestFlowDiff(t *testing.T) {
	cases := []struct {
		name           string
		before, after  []string
		addedOrigins   []string // substrings some added flow's origin has
		removedOrigins []string
	}{
		{name: "no change", before: []string{diffPolicy("x", "web", webFromX)}, after: []string{diffPolicy("x", "web", webFromX)}},
		{name: "a policy added", after: []string{diffPolicy("x", "web", webFromX)},
			addedOrigins: []string{"policy x/web ingress rule 0", "pod x/a"}},
		// The rule's peers grow by y/c's address: nothing goes.
		{name: "a rule widened", before: []string{diffPolicy("x", "web", webFromX)}, after: []string{diffPolicy("x", "web", webFromAll)},
			addedOrigins: []string{"policy x/web ingress rule 0"}},
		{name: "a rule narrowed", before: []string{diffPolicy("x", "web", webFromAll)}, after: []string{diffPolicy("x", "web", webFromX)},
			removedOrigins: []string{"policy x/web ingress rule 0"}},
		{name: "a policy deleted", before: []string{diffPolicy("x", "web", webFromX), diffPolicy("x", "db", dbEgress)}, after: []string{diffPolicy("x", "web", webFromX)},
			removedOrigins: []string{"policy x/db egress rule 0"}},
	}
	ac := AgentConfig{Node: "n1", Mode: model.ModeV1, GatewayPort: compiler.PortLocal, CTZone: compiler.DefaultCTZone}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bo := diffObjects(t, append([]string{diffPods}, c.before...)...)
			ao := diffObjects(t, append([]string{diffPods}, c.after...)...)
			bindings := compiler.DefaultBindings(diffCluster(t, bo), "n1", nil, compiler.PortLocal)
			bn, err := CompileNode(bo, ac, bindings)
			if err != nil {
				t.Fatal(err)
			}
			an, err := CompileNode(ao, ac, bindings)
			if err != nil {
				t.Fatal(err)
			}
			flows, groups := FlowDiff(bn, an)
			if len(groups) != 0 {
				t.Fatalf("groups changed without Services: %v", groups)
			}
			set := map[string]bool{}
			for _, f := range bn.Result.Flows {
				set[f.String()] = true
			}
			added, removed := 0, 0
			for _, f := range flows {
				if f.Added {
					added++
					if set[f.Text] {
						t.Fatalf("added flow was there before: %s", f.Text)
					}
					set[f.Text] = true
				} else {
					removed++
					if !set[f.Text] {
						t.Fatalf("removed flow was not there before: %s", f.Text)
					}
					delete(set, f.Text)
				}
				if f.Origin == "" || strings.Contains(f.Origin, OriginUnknown) {
					t.Fatalf("flow without a known origin: %s %q", f.Text, f.Origin)
				}
			}
			wantSet := map[string]bool{}
			for _, f := range an.Result.Flows {
				wantSet[f.String()] = true
			}
			if fmt.Sprint(set) != fmt.Sprint(wantSet) {
				t.Fatalf("flows before + diff != flows after (%d vs %d flows)", len(set), len(wantSet))
			}
			has := func(added bool, sub string) bool {
				for _, f := range flows {
					if f.Added == added && strings.Contains(f.Origin, sub) {
						return true
					}
				}
				return false
			}
			for _, o := range c.addedOrigins {
				if !has(true, o) {
					t.Errorf("no added flow of %q", o)
				}
			}
			for _, o := range c.removedOrigins {
				if !has(false, o) {
					t.Errorf("no removed flow of %q", o)
				}
			}
			if len(c.addedOrigins) == 0 && added != 0 || len(c.removedOrigins) == 0 && removed != 0 {
				t.Errorf("%d added, %d removed: want none where no origin is listed", added, removed)
			}
			t.Logf("%d flows before, %d after: %d added, %d removed", len(bn.Result.Flows), len(an.Result.Flows), added, removed)
		})
	}
}

// TestConnectionsScale measures Connections on a synthetic cluster (20
// namespaces × 20 pods, one ingress policy per namespace): one policy
// changed (only pairs with a selected side are evaluated) and one pod
// relabelled (every pair is). Figures are logged, not asserted; the
// changes found are checked against what the change must do.
func TestConnectionsScale(t *testing.T) {
	var docs []string
	const namespaces, podsPer = 20, 20
	for n := 0; n < namespaces; n++ {
		ns := fmt.Sprintf("ns%d", n)
		docs = append(docs, fmt.Sprintf("---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {team: t%d}}", ns, n%4))
		for p := 0; p < podsPer; p++ {
			docs = append(docs, fmt.Sprintf("---\napiVersion: v1\nkind: Pod\nmetadata: {name: p%d, namespace: %s, labels: {app: a%d}}\nspec: {nodeName: n%d, containers: [{name: c, image: i}]}\nstatus: {podIP: 10.%d.%d.%d}",
				p, ns, p%5, p%3, 100+n/250, n%250, p+1))
		}
		docs = append(docs, diffPolicy(ns, "web", fmt.Sprintf(`  podSelector: {matchLabels: {app: a0}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: t%d}}}]
    ports: [{port: 80}, {port: 8000, endPort: 9000}]`, n%4)))
	}
	before := diffObjects(t, docs...)
	bc := diffCluster(t, before)
	// ns0/web widened to every namespace on the same ports.
	widened, _ := Overlay(before, diffObjects(t, diffPolicy("ns0", "web", `  podSelector: {matchLabels: {app: a0}}
  ingress:
  - from: [{namespaceSelector: {}}]
    ports: [{port: 80}, {port: 8000, endPort: 9000}]`)), nil)
	// ns1/p1 joins app=a0: now isolated like its namespace's web pods.
	relabelled, _ := Overlay(before, diffObjects(t, `apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: ns1, labels: {app: a0}}
spec: {nodeName: n1, containers: [{name: c, image: i}]}`), nil)
	pods := namespaces * podsPer
	for _, c := range []struct {
		name  string
		after *manifest.Objects
		check func(cc ConnChange) bool
	}{
		{"one policy widened", widened, func(cc ConnChange) bool {
			return cc.Opens && strings.HasPrefix(cc.To.Name, "ns0/") && (cc.Ports.String() == "TCP/80" || cc.Ports.String() == "TCP/8000-9000")
		}},
		{"one pod relabelled", relabelled, func(cc ConnChange) bool {
			return !cc.Opens && cc.To.Name == "ns1/p1"
		}},
	} {
		ac := diffCluster(t, c.after)
		start := time.Now()
		got := Connections(bc, ac, ConnOptions{})
		took := time.Since(start)
		for _, cc := range got {
			if !c.check(cc) {
				t.Fatalf("%s: unexpected change %s", c.name, connText(cc))
			}
		}
		if len(got) == 0 {
			t.Fatalf("%s: no change found", c.name)
		}
		t.Logf("%s: %d pods (%d pairs), %d port classes: %d changes in %v", c.name, pods, pods*pods, len(PortClasses(bc, ac)), len(got), took.Round(time.Millisecond))
	}
}
