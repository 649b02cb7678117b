package e2e

// TestPolicies: one node, namespaces x, y, z (labelled ns=NAME) with pods a,
// b, c (labelled pod=NAME, named ports serve-80-tcp ... serve-81-sctp; in x,
// a also declares "web"=80/TCP and b "web"=81/TCP), the agent in v1 mode.
// Every scenario's expectation is written by hand from the semantics
// (/work/shared/notes/semantics.md) and checked as a whole matrix of real
// connections: TCP and UDP on 80 and 81 from every pod, the node and an
// external address to every pod. After each scenario its policies are
// deleted and the bridge must return exactly to the flows it had before.

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	xyzNamespaces = []string{"x", "y", "z"}
	xyzPodNames   = []string{"a", "b", "c"}
)

// np renders a NetworkPolicy manifest; spec is YAML at column 0. Values "y"
// must stay quoted (YAML 1.1 reads y as true).
func np(ns, name, spec string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: %s\n  namespace: %q\nspec:\n", name, ns)
	for _, l := range strings.Split(strings.Trim(spec, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

type step struct {
	name string
	// do makes the step's API changes (nil: none).
	do func(t *testing.T, w *world)
	// want edits a matrix that starts all-allowed; self and node cells are
	// set to allowed afterwards.
	want func(m *matrix)
	// check runs extra assertions.
	check func(t *testing.T, w *world)
}

type scenario struct {
	name  string
	steps []step
	// undo reverts what deleting the policies does not (labels, annotations).
	undo func(t *testing.T, w *world)
	// newPods: the scenario recreates pods (the flow baseline changes).
	newPods bool
}

// apply is a step action applying manifests with kubectl.
func apply(docs ...string) func(t *testing.T, w *world) {
	return func(t *testing.T, w *world) { w.kubectlApply(t, docs...) }
}

func xyzWorld(t *testing.T) *world {
	w := newWorld(t, "xyz", "10.62")
	w.podServices = true
	n := w.addNode(t)
	n.startAgent(t, "v1")
	start := time.Now()
	for _, ns := range xyzNamespaces {
		w.ensureNamespace(t, ns, map[string]string{"ns": ns})
		for _, name := range xyzPodNames {
			ports := standardPorts()
			if ns == "x" && name == "a" {
				ports = append(ports, corev1.ContainerPort{Name: "web", ContainerPort: 80, Protocol: corev1.ProtocolTCP})
			}
			if ns == "x" && name == "b" {
				ports = append(ports, corev1.ContainerPort{Name: "web", ContainerPort: 81, Protocol: corev1.ProtocolTCP})
			}
			n.addPod(t, podSpec{ns: ns, name: name, labels: map[string]string{"pod": name}, ports: ports})
		}
	}
	w.waitPodsRealized(t)
	t.Logf("9 pods attached by the CNI plugin and realized by the agent in %v", time.Since(start).Round(time.Millisecond))
	return w
}

func (w *world) xyzMatrix(def bool) *matrix {
	var to []string
	for _, ns := range xyzNamespaces {
		for _, p := range xyzPodNames {
			to = append(to, ns+"/"+p)
		}
	}
	from := append(append([]string(nil), to...), srcNode, srcExt)
	return newMatrix(stdProbes, from, to, def)
}

// runScenario runs the steps, then deletes the scenario's policies, undoes
// its other changes and waits for the bridge to return to baseline.
func (w *world) runScenario(t *testing.T, sc scenario, baseline *[]string) {
	for i, st := range sc.steps {
		name := fmt.Sprintf("step%d", i+1)
		if st.name != "" {
			name += "-" + st.name
		}
		ok := t.Run(name, func(t *testing.T) {
			if st.do != nil {
				w.change(t, func() { st.do(t, w) })
			}
			want := w.xyzMatrix(true)
			if st.want != nil {
				st.want(want)
			}
			want.always()
			w.check(t, want)
			// The same connections through the destinations' Services.
			w.check(t, want.throughServices())
			if st.check != nil {
				st.check(t, w)
			}
		})
		if !ok {
			break
		}
	}
	cleanup := func() {
		w.deletePolicies(t, xyzNamespaces...)
		if sc.undo != nil {
			sc.undo(t, w)
		}
	}
	if sc.newPods {
		w.change(t, cleanup)
		*baseline = w.flowSnapshot(t)
	} else {
		cleanup()
		w.waitFlows(t, *baseline, 10*time.Second)
	}
	totals.scenarios.Add(1)
}

func TestPolicies(t *testing.T) {
	start := time.Now()
	w := xyzWorld(t)
	baseline := w.flowSnapshot(t)
	t.Run("scenarios", func(t *testing.T) {
		for _, sc := range xyzScenarios(w) {
			if !t.Run(sc.name, func(t *testing.T) { w.runScenario(t, sc, &baseline) }) {
				// A failed scenario may leave state behind: make sure the
				// next one starts clean.
				w.deletePolicies(t, xyzNamespaces...)
			}
		}
	})
	t.Run("established-connection-survives-deny", func(t *testing.T) { testEstablished(t, w) })
	t.Run("spoofing", func(t *testing.T) { testSpoofing(t, w) })
	t.Run("sctp-by-trace", func(t *testing.T) { testSCTPTrace(t, w, &baseline) })
	t.Run("stale-datapath-flow-told-apart", func(t *testing.T) { testStaleDatapath(t, w, &baseline) })
	t.Logf("TestPolicies: %v; so far %s", time.Since(start).Round(time.Millisecond), totalsString())
}

func xyzScenarios(w *world) []scenario {
	ip := func(key string) string { return w.pod(key).ip }
	denyIngressX := np("x", "deny-ingress", "podSelector: {}\npolicyTypes: [Ingress]")
	return []scenario{
		{name: "no-policy-all-open", steps: []step{{}}},
		{name: "deny-all-ingress", steps: []step{{
			do:   apply(denyIngressX),
			want: func(m *matrix) { m.expect("all", "x/*", false) },
		}}},
		{name: "deny-all-egress", steps: []step{{
			do: apply(np("x", "deny-egress", "podSelector: {}\npolicyTypes: [Egress]")),
			// Replies to y, z, node and ext pass: x's pods only may not start connections.
			want: func(m *matrix) { m.expect("x/*", "*", false) },
		}}},
		{name: "deny-all-both-directions-everywhere-node-still-allowed", steps: []step{{
			do: apply(
				np("x", "deny-all", "podSelector: {}\npolicyTypes: [Ingress, Egress]"),
				np("y", "deny-all", "podSelector: {}\npolicyTypes: [Ingress, Egress]"),
				np("z", "deny-all", "podSelector: {}\npolicyTypes: [Ingress, Egress]")),
			// Only a pod to itself and the node to its pods are left.
			want: func(m *matrix) { m.expect("all", "*", false) },
		}}},
		{name: "allow-from-same-namespace", steps: []step{{
			do: apply(np("x", "same-ns", `
podSelector: {}
ingress:
- from:
  - podSelector: {}`)),
			want: func(m *matrix) { m.expect("all", "x/*", false).expect("x/*", "x/*", true) },
		}}},
		{name: "allow-from-namespace-selector", steps: []step{{
			do: apply(np("x", "from-y", `
podSelector:
  matchLabels: {pod: a}
ingress:
- from:
  - namespaceSelector:
      matchLabels: {ns: "y"}`)),
			want: func(m *matrix) { m.expect("all", "x/a", false).expect("y/*", "x/a", true) },
		}}},
		{name: "namespace-and-pod-selector-in-one-peer-is-and", steps: []step{{
			do: apply(np("x", "y-and-b", `
podSelector:
  matchLabels: {pod: a}
ingress:
- from:
  - namespaceSelector:
      matchLabels: {ns: "y"}
    podSelector:
      matchLabels: {pod: b}`)),
			want: func(m *matrix) { m.expect("all", "x/a", false).expect("y/b", "x/a", true) },
		}}},
		{name: "two-peers-are-or", steps: []step{{
			do: apply(np("x", "y-or-b", `
podSelector:
  matchLabels: {pod: a}
ingress:
- from:
  - namespaceSelector:
      matchLabels: {ns: "y"}
  - podSelector:
      matchLabels: {pod: b}`)),
			want: func(m *matrix) { m.expect("all", "x/a", false).expect("y/*|x/b", "x/a", true) },
		}}},
		{name: "empty-namespace-selector-all-pods-not-external", steps: []step{{
			do: apply(np("x", "all-pods", `
podSelector:
  matchLabels: {pod: a}
ingress:
- from:
  - namespaceSelector: {}`)),
			want: func(m *matrix) { m.expect("all", "x/a", false).expect("*", "x/a", true) },
		}}},
		{name: "empty-rule-allows-everything-including-external", steps: []step{{
			do: apply(denyIngressX, np("x", "open-a", `
podSelector:
  matchLabels: {pod: a}
ingress:
- {}`)),
			want: func(m *matrix) { m.expect("all", "x/b|x/c", false) },
		}}},
		{name: "port-tcp-80", steps: []step{{
			do: apply(np("x", "tcp80", `
podSelector:
  matchLabels: {pod: a}
ingress:
- from:
  - namespaceSelector: {}
  ports:
  - {protocol: TCP, port: 80}`)),
			want: func(m *matrix) { m.expect("all", "x/a", false).expect("*", "x/a", true, tcp80) },
		}}},
		{name: "port-without-protocol-is-tcp", steps: []step{{
			do: apply(np("x", "port81", `
podSelector:
  matchLabels: {pod: a}
ingress:
- ports:
  - port: 81`)),
			want: func(m *matrix) { m.expect("all", "x/a", false).expect("all", "x/a", true, tcp81) },
		}}},
		{name: "protocol-without-port-is-every-port", steps: []step{{
			do: apply(np("x", "udp", `
podSelector:
  matchLabels: {pod: a}
ingress:
- ports:
  - protocol: UDP`)),
			want: func(m *matrix) { m.expect("all", "x/a", false).expect("all", "x/a", true, udp80, udp81) },
		}}},
		{name: "udp-only-rule-opens-no-tcp", steps: []step{{
			do: apply(np("x", "udp81", `
podSelector:
  matchLabels: {pod: a}
ingress:
- ports:
  - {protocol: UDP, port: 81}`)),
			want: func(m *matrix) { m.expect("all", "x/a", false).expect("all", "x/a", true, udp81) },
		}}},
		{name: "endport-inclusive", steps: []step{{
			do: apply(
				np("x", "range-a", "podSelector:\n  matchLabels: {pod: a}\ningress:\n- ports:\n  - {protocol: TCP, port: 80, endPort: 81}"),
				np("x", "range-b", "podSelector:\n  matchLabels: {pod: b}\ningress:\n- ports:\n  - {protocol: TCP, port: 81, endPort: 90}"),
				np("x", "range-c", "podSelector:\n  matchLabels: {pod: c}\ningress:\n- ports:\n  - {protocol: UDP, port: 70, endPort: 80}")),
			want: func(m *matrix) {
				m.expect("all", "x/*", false).
					expect("all", "x/a", true, tcp80, tcp81).
					expect("all", "x/b", true, tcp81).
					expect("all", "x/c", true, udp80)
			},
		}}},
		{name: "named-ports-ingress", steps: []step{{
			do: apply(np("x", "named", `
podSelector:
  matchLabels: {pod: a}
ingress:
- ports:
  - port: serve-80-tcp
  - {protocol: UDP, port: serve-81-udp}`)),
			want: func(m *matrix) { m.expect("all", "x/a", false).expect("all", "x/a", true, tcp80, udp81) },
		}}},
		{name: "named-port-resolves-per-pod", steps: []step{{
			// "web" is 80 on x/a, 81 on x/b, and not declared by x/c.
			do: apply(np("x", "web", "podSelector: {}\ningress:\n- ports:\n  - port: web")),
			want: func(m *matrix) {
				m.expect("all", "x/*", false).expect("all", "x/a", true, tcp80).expect("all", "x/b", true, tcp81)
			},
		}}},
		{name: "named-port-resolving-nowhere-allows-nothing", steps: []step{{
			do:   apply(np("x", "nowhere", "podSelector:\n  matchLabels: {pod: a}\ningress:\n- ports:\n  - port: no-such-port")),
			want: func(m *matrix) { m.expect("all", "x/a", false) },
		}}},
		{name: "named-ports-egress-resolve-against-destinations", steps: []step{{
			do: apply(
				np("y", "web-out", "podSelector:\n  matchLabels: {pod: a}\npolicyTypes: [Egress]\negress:\n- ports:\n  - port: web"),
				np("y", "udp81-out", "podSelector:\n  matchLabels: {pod: b}\npolicyTypes: [Egress]\negress:\n- ports:\n  - {protocol: UDP, port: serve-81-udp}")),
			want: func(m *matrix) {
				m.expect("y/a|y/b", "*", false).
					expect("y/a", "x/a", true, tcp80).expect("y/a", "x/b", true, tcp81).
					expect("y/b", "*", true, udp81)
			},
		}}},
		{name: "ipblock-with-except", steps: []step{{
			do: func(t *testing.T, w *world) {
				w.kubectlApply(t, np("x", "block", fmt.Sprintf(`
podSelector:
  matchLabels: {pod: a}
ingress:
- from:
  - ipBlock:
      cidr: %s.0.0/16
      except: [%s/32]`, w.net16, ip("y/b"))))
			},
			// ext (192.0.2.10) is outside the block.
			want: func(m *matrix) { m.expect("all", "x/a", false).expect("*", "x/a", true).expect("y/b", "x/a", false) },
		}}},
		{name: "ipblock-external-address", steps: []step{{
			do: apply(np("x", "ext", `
podSelector:
  matchLabels: {pod: a}
ingress:
- from:
  - ipBlock: {cidr: 192.0.2.0/24}`)),
			want: func(m *matrix) { m.expect("all", "x/a", false).expect("ext", "x/a", true) },
		}}},
		{name: "egress-to-ipblock-with-except", steps: []step{{
			do: func(t *testing.T, w *world) {
				w.kubectlApply(t, np("x", "out-block", fmt.Sprintf(`
podSelector:
  matchLabels: {pod: a}
policyTypes: [Egress]
egress:
- to:
  - ipBlock:
      cidr: %s.0.0/16
      except: [%s/32]`, w.net16, ip("z/c"))))
			},
			want: func(m *matrix) { m.expect("x/a", "z/c", false) },
		}}},
		{name: "egress-and-ingress-both-needed", steps: []step{{
			do: apply(
				np("x", "a-to-y", "podSelector:\n  matchLabels: {pod: a}\npolicyTypes: [Egress]\negress:\n- to:\n  - namespaceSelector:\n      matchLabels: {ns: \"y\"}"),
				np("y", "b-from-z", "podSelector:\n  matchLabels: {pod: b}\ningress:\n- from:\n  - namespaceSelector:\n      matchLabels: {ns: z}")),
			want: func(m *matrix) {
				m.expect("x/a", "*", false).expect("x/a", "y/a|y/c", true).
					expect("all", "y/b", false).expect("z/*", "y/b", true)
			},
		}}},
		{name: "egress-only-within-namespace", steps: []step{{
			do:   apply(np("x", "egress-in-x", "podSelector: {}\npolicyTypes: [Egress]\negress:\n- to:\n  - podSelector: {}")),
			want: func(m *matrix) { m.expect("x/*", "*", false).expect("x/*", "x/*", true) },
		}}},
		{name: "overlapping-policies-are-a-union", steps: []step{{
			do: apply(
				np("x", "tcp80-from-y", "podSelector:\n  matchLabels: {pod: a}\ningress:\n- from:\n  - namespaceSelector:\n      matchLabels: {ns: \"y\"}\n  ports:\n  - {protocol: TCP, port: 80}"),
				np("x", "tcp81-from-z", "podSelector:\n  matchLabels: {pod: a}\ningress:\n- from:\n  - namespaceSelector:\n      matchLabels: {ns: z}\n  ports:\n  - {protocol: TCP, port: 81}"),
				np("x", "all-from-ya", "podSelector:\n  matchLabels: {pod: a}\ningress:\n- from:\n  - namespaceSelector:\n      matchLabels: {ns: \"y\"}\n    podSelector:\n      matchLabels: {pod: a}")),
			want: func(m *matrix) {
				m.expect("all", "x/a", false).expect("y/*", "x/a", true, tcp80).
					expect("z/*", "x/a", true, tcp81).expect("y/a", "x/a", true)
			},
		}}},
		{name: "overlapping-targets-match-expressions", steps: []step{{
			do: apply(
				np("x", "ab-from-c", `
podSelector:
  matchExpressions:
  - {key: pod, operator: In, values: [a, b]}
ingress:
- from:
  - podSelector:
      matchLabels: {pod: c}`),
				np("x", "not-a-udp-from-y", `
podSelector:
  matchExpressions:
  - {key: pod, operator: NotIn, values: [a]}
ingress:
- from:
  - namespaceSelector:
      matchLabels: {ns: "y"}
  ports:
  - protocol: UDP`)),
			want: func(m *matrix) {
				m.expect("all", "x/*", false).expect("x/c", "x/a|x/b", true).
					expect("y/*", "x/b|x/c", true, udp80, udp81)
			},
		}}},
		{name: "policy-selecting-no-pod-has-no-effect", steps: []step{{
			do: apply(np("x", "nobody", "podSelector:\n  matchLabels: {pod: nobody}\npolicyTypes: [Ingress, Egress]")),
		}}},
		{name: "peer-selector-matching-nothing-allows-nothing", steps: []step{{
			do:   apply(np("x", "from-nobody", "podSelector:\n  matchLabels: {pod: a}\ningress:\n- from:\n  - podSelector:\n      matchLabels: {pod: nobody}")),
			want: func(m *matrix) { m.expect("all", "x/a", false) },
		}}},
		{name: "policytypes-egress-only-ignores-ingress-rules", steps: []step{{
			do: apply(np("x", "egress-only", `
podSelector:
  matchLabels: {pod: a}
policyTypes: [Egress]
ingress:
- from:
  - podSelector:
      matchLabels: {pod: nobody}`)),
			want: func(m *matrix) { m.expect("x/a", "*", false) },
		}}},
		{name: "both-directions-in-one-policy", steps: []step{{
			do: apply(np("x", "both", `
podSelector:
  matchLabels: {pod: a}
policyTypes: [Ingress, Egress]
ingress:
- from:
  - namespaceSelector:
      matchLabels: {ns: "y"}
    podSelector:
      matchLabels: {pod: a}
egress:
- to:
  - namespaceSelector:
      matchLabels: {ns: z}
    podSelector:
      matchLabels: {pod: a}`)),
			want: func(m *matrix) {
				m.expect("all", "x/a", false).expect("y/a", "x/a", true).
					expect("x/a", "*", false).expect("x/a", "z/a", true)
			},
		}}},
		{name: "legacy-annotation-isolates-ingress-in-v1", steps: []step{{
			do: func(t *testing.T, w *world) {
				w.annotate(t, "x", `{"ingress": {"isolation": "DefaultDeny"}}`)
			},
			want: func(m *matrix) { m.expect("all", "x/*", false) },
		}}, undo: func(t *testing.T, w *world) { w.annotate(t, "x", "") }},
		{name: "malformed-annotation-fails-closed", steps: []step{{
			do:   func(t *testing.T, w *world) { w.annotate(t, "x", `{"ingress": {"isolation": `) },
			want: func(m *matrix) { m.expect("all", "x/*", false) },
		}}, undo: func(t *testing.T, w *world) { w.annotate(t, "x", "") }},

		// ---- changes
		{name: "change-policy-update-then-delete", steps: []step{
			{name: "from-y", do: apply(np("x", "upd", "podSelector:\n  matchLabels: {pod: a}\ningress:\n- from:\n  - namespaceSelector:\n      matchLabels: {ns: \"y\"}")),
				want: func(m *matrix) { m.expect("all", "x/a", false).expect("y/*", "x/a", true) }},
			{name: "updated-to-from-z", do: apply(np("x", "upd", "podSelector:\n  matchLabels: {pod: a}\ningress:\n- from:\n  - namespaceSelector:\n      matchLabels: {ns: z}")),
				want: func(m *matrix) { m.expect("all", "x/a", false).expect("z/*", "x/a", true) }},
			{name: "updated-to-udp-only", do: apply(np("x", "upd", "podSelector:\n  matchLabels: {pod: a}\ningress:\n- from:\n  - namespaceSelector:\n      matchLabels: {ns: z}\n  ports:\n  - protocol: UDP")),
				want: func(m *matrix) { m.expect("all", "x/a", false).expect("z/*", "x/a", true, udp80, udp81) }},
			{name: "deleted", do: func(t *testing.T, w *world) { w.deletePolicies(t, "x") }},
		}},
		{name: "change-pod-labels", steps: []step{
			{name: "a-from-b", do: apply(np("x", "a-from-b", "podSelector:\n  matchLabels: {pod: a}\ningress:\n- from:\n  - podSelector:\n      matchLabels: {pod: b}")),
				want: func(m *matrix) { m.expect("all", "x/a", false).expect("x/b", "x/a", true) }},
			{name: "c-relabelled-b-becomes-peer", do: func(t *testing.T, w *world) { w.label(t, "x/c", "b") },
				want: func(m *matrix) { m.expect("all", "x/a", false).expect("x/b|x/c", "x/a", true) }},
			{name: "b-relabelled-a-becomes-target-not-peer", do: func(t *testing.T, w *world) { w.label(t, "x/b", "a") },
				want: func(m *matrix) { m.expect("all", "x/a|x/b", false).expect("x/c", "x/a|x/b", true) }},
		}, undo: func(t *testing.T, w *world) { w.label(t, "x/b", "b"); w.label(t, "x/c", "c") }},
		{name: "change-namespace-labels", steps: []step{
			{name: "no-team-yet", do: apply(np("x", "from-blue", "podSelector:\n  matchLabels: {pod: a}\ningress:\n- from:\n  - namespaceSelector:\n      matchLabels: {team: blue}")),
				want: func(m *matrix) { m.expect("all", "x/a", false) }},
			{name: "z-joins", do: func(t *testing.T, w *world) { w.nsLabel(t, "z", "team", "blue") },
				want: func(m *matrix) { m.expect("all", "x/a", false).expect("z/*", "x/a", true) }},
			{name: "y-joins-z-leaves", do: func(t *testing.T, w *world) { w.nsLabel(t, "y", "team", "blue"); w.nsLabel(t, "z", "team", "") },
				want: func(m *matrix) { m.expect("all", "x/a", false).expect("y/*", "x/a", true) }},
		}, undo: func(t *testing.T, w *world) { w.nsLabel(t, "y", "team", "") }},
		{name: "change-pods-recreated-with-new-ips", newPods: true, steps: []step{
			{name: "a-from-y-b", do: apply(np("x", "a-from-yb", "podSelector:\n  matchLabels: {pod: a}\ningress:\n- from:\n  - namespaceSelector:\n      matchLabels: {ns: \"y\"}\n    podSelector:\n      matchLabels: {pod: b}")),
				want: func(m *matrix) { m.expect("all", "x/a", false).expect("y/b", "x/a", true) }},
			{name: "peer-y-b-and-target-x-a-recreated", do: func(t *testing.T, w *world) {
				for _, key := range []string{"y/b", "x/a"} {
					old := w.pod(key)
					w.deletePod(t, old)
					ports := standardPorts()
					if key == "x/a" {
						ports = append(ports, corev1.ContainerPort{Name: "web", ContainerPort: 80, Protocol: corev1.ProtocolTCP})
					}
					nw := old.node.addPod(t, podSpec{ns: old.ns, name: old.name, labels: map[string]string{"pod": old.name}, ports: ports})
					if nw.ip == old.ip || nw.uid == old.uid {
						t.Fatalf("%s recreated with the same IP %s / UID", key, nw.ip)
					}
					t.Logf("%s recreated: %s -> %s, ofport %d -> %d", key, old.ip, nw.ip, old.ofport, nw.ofport)
				}
			}, want: func(m *matrix) { m.expect("all", "x/a", false).expect("y/b", "x/a", true) }},
		}},
	}
}

func (w *world) annotate(t *testing.T, ns, value string) {
	t.Helper()
	arg := "net.beta.kubernetes.io/network-policy-"
	if value != "" {
		arg = "net.beta.kubernetes.io/network-policy=" + value
	}
	if out, err := w.c.Kubectl("annotate", "--overwrite", "ns", ns, arg); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// label sets the pod label of a pod.
func (w *world) label(t *testing.T, key, value string) {
	t.Helper()
	p := w.pod(key)
	patch := fmt.Sprintf(`{"metadata":{"labels":{"pod":%q}}}`, value)
	if _, err := w.c.Client.CoreV1().Pods(p.ns).Patch(w.ctx(), p.name, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// nsLabel sets (or with "" removes) a namespace label.
func (w *world) nsLabel(t *testing.T, ns, k, v string) {
	t.Helper()
	val := "null"
	if v != "" {
		val = fmt.Sprintf("%q", v)
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%s}}}`, k, val)
	if _, err := w.c.Client.CoreV1().Namespaces().Patch(w.ctx(), ns, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// ---- established connections

// testEstablished: decided in flows/README.md, established connections
// survive a new deny (only new connections are checked): a long-lived TCP
// connection x/a -> x/b keeps working after a policy isolating x/b, while
// new connections are refused at once.
func testEstablished(t *testing.T, w *world) {
	a, b := w.pod("x/a"), w.pod("x/b")
	h := a.hold(t, b.ip, 80)
	if err := h.echo("before"); err != nil {
		t.Fatalf("held connection before the deny: %v", err)
	}
	// UDP has no connection but conntrack's: datagrams of the same 5-tuple
	// (a fixed source port) as an allowed exchange are established too.
	sport := nextUDPPorts(2)
	udp := func(sp int) bool {
		out, err := agnhost(a.netns, "probe", "--timeout", "1s", fmt.Sprintf("0=udp:%s:80:%d", b.ip, sp))
		totals.probes.Add(1)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(out, " ok ")
	}
	if !udp(sport) {
		t.Fatal("UDP x/a -> x/b before the deny failed")
	}
	w.change(t, func() {
		w.kubectlApply(t, np("x", "deny-b", "podSelector:\n  matchLabels: {pod: b}\npolicyTypes: [Ingress]"))
	})
	want := w.xyzMatrix(true).expect("all", "x/b", false).always()
	w.check(t, want)
	for i := range 5 {
		if err := h.echo(fmt.Sprintf("after-%d", i)); err != nil {
			t.Fatalf("held connection after the deny (echo %d): %v", i, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	res := w.observe(t, []cellKey{{tcp80, "x/a", "x/b"}}, false)
	if res[cellKey{tcp80, "x/a", "x/b"}].ok {
		t.Fatal("a new connection x/a -> x/b passed while the held one was open")
	}
	if !udp(sport) {
		t.Error("UDP x/a -> x/b from the same source port (an established conntrack entry) failed after the deny")
	}
	if udp(sport + 1) {
		t.Error("UDP x/a -> x/b from a new source port passed after the deny")
	}
	t.Logf("held TCP connection x/a -> x/b:80 kept echoing for 1.5 s after the deny, and UDP from the source port used before; new connections blocked")
	w.change(t, func() { w.deletePolicies(t, "x") })
	if err := h.echo("after-delete"); err != nil {
		t.Fatalf("held connection after the policy was deleted: %v", err)
	}
	totals.scenarios.Add(1)
}

// ---- SCTP

// testSCTPTrace: this kernel has no SCTP sockets, so an SCTP rule is checked
// with ofproto/trace through the agent's real flows, and with real traffic
// that it opens no TCP or UDP.
func testSCTPTrace(t *testing.T, w *world, baseline *[]string) {
	if fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, syscall.IPPROTO_SCTP); err == nil {
		syscall.Close(fd)
		t.Log("note: this kernel has SCTP sockets; SCTP is still checked by trace only")
	} else {
		t.Logf("SCTP checked by ofproto/trace only: this kernel has no SCTP sockets (%v)", err)
	}
	w.change(t, func() {
		w.kubectlApply(t, np("x", "sctp", `
podSelector:
  matchLabels: {pod: a}
ingress:
- from:
  - podSelector:
      matchLabels: {pod: b}
  ports:
  - {protocol: SCTP, port: 80}`))
	})
	w.check(t, w.xyzMatrix(true).expect("all", "x/a", false).always())
	dst := w.pod("x/a")
	for _, c := range []struct {
		from string
		port int
		want bool
	}{{"x/b", 80, true}, {"x/b", 81, false}, {"x/c", 80, false}, {"y/b", 80, false}, {"x/c", 81, false}} {
		src := w.pod(c.from)
		flow := fmt.Sprintf("in_port=%d,sctp,dl_src=%s,dl_dst=%s,nw_src=%s,nw_dst=%s,sctp_src=40000,sctp_dst=%d",
			src.ofport, src.mac, dst.mac, src.ip, dst.ip, c.port)
		r, err := dst.node.sw.Trace(bridge, flow)
		totals.traces.Add(1)
		if err != nil {
			t.Fatal(err)
		}
		got := false
		for _, p := range r.OutputPorts {
			if p == dst.ofport {
				got = true
			}
		}
		if got != c.want {
			t.Errorf("SCTP/%d %s -> x/a: traced allowed=%v, want %v:\n%s", c.port, c.from, got, c.want, r.Raw)
		} else {
			t.Logf("SCTP/%d %s -> x/a: %v (trace: %s)", c.port, c.from, map[bool]string{true: "allowed", false: "dropped"}[got], r.DatapathActions)
		}
	}
	w.change(t, func() { w.deletePolicies(t, "x") })
	w.waitFlows(t, *baseline, 10*time.Second)
	totals.scenarios.Add(1)
}
