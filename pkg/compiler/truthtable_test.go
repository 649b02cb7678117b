package compiler_test

// TestTruthTable is a hand-written truth table of NetworkPolicy semantics
// (/work/shared/notes/semantics.md). Every scenario builds the x/y/z × a/b/c
// fixture, adds policies written as YAML manifests (decoded strictly into the
// API types and normalized by pkg/normalize, the real path), compiles and
// installs the flows of every node on a real ovs-vswitchd, and checks the
// whole reachability matrix (9 pods + the destination's node + an external
// address, × 9 destinations, × TCP/UDP/SCTP on ports 80 and 81; IPv6 too for
// dual-stack scenarios) twice: the matrix traced through the bridges must
// equal the expectation, and so must the reference evaluator's. Scenarios
// with several steps change the cluster (policies, labels, annotations, pod
// phase) and check the new matrix after recompiling.
//
// The expectations are derived by hand from the semantics, never from what
// the code answers. Every expectation starts from "everything allowed"; the
// cells every matrix obeys whatever the policies (a pod reaches itself, the
// node reaches its pods) are set last.
//
// Pod placement (round-robin): with 2 nodes node-1 has x/a x/c y/b z/a z/c
// and node-2 x/b y/a y/c z/b; with 3 nodes node-N has the N-th pod (a, b, c)
// of every namespace.
//
// Coverage (semantics → scenarios):
//   - isolation: v1-no-policy, v1-deny-all-ingress, v1-deny-all-egress,
//     v1-self-and-node-always-allowed (self and node cells: every matrix)
//   - empty vs missing: v1-empty-rule-allows-all-then-empty-list-denies,
//     v1-namespace-selector-empty-all-pods-not-ext,
//     v1-pod-selector-empty-own-namespace
//   - selectors: v1-namespace-and-pod-selector-in-one-peer-is-and,
//     v1-two-peers-are-or, v1-match-expressions
//   - policyTypes: v1-policytypes-*
//   - ports: v1-ports-missing-means-all, v1-port-without-protocol-is-tcp,
//     v1-protocol-without-port-is-every-port, v1-udp-only-rule-opens-no-tcp,
//     v1-sctp-only-rules, v1-endport-inclusive
//   - named ports: v1-named-port-*
//   - ipBlock: v1-ipblock-*, v1-egress-to-ipblock
//   - both directions, replies: v1-egress-and-ingress-both-needed,
//     v1-replies-pass-when-replier-is-egress-isolated
//   - unions: v1-overlapping-*
//   - selecting nothing: v1-policy-selecting-no-pod-has-no-effect,
//     v1-peer-selector-matching-nothing-allows-nothing
//   - pods that do not count: v1-hostnetwork-pod-is-no-peer,
//     v1-finished-pod-address-is-no-peer, v1-pod-succeeded-and-address-reused
//   - changes: v1-pod-label-change-*, v1-namespace-label-change,
//     v1-policy-delete, and the update steps of
//     v1-empty-rule-allows-all-then-empty-list-denies and
//     v1-ipblock-except-external
//   - legacy annotation in v1 mode: v1-legacy-annotation-isolates-ingress,
//     v1-malformed-annotation-fails-closed
//   - v1.6 mode: v16-*
//   - multi-node: multinode-enforcement-points (where each side is
//     enforced), and every scenario with opts(…, 2) or (…, 3)

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	extv1beta1 "k8s.io/api/extensions/v1beta1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/ovs-netpol/ovs-netpol/internal/netpoltest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/evaluator"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
)

type (
	probe = netpoltest.Probe
	reach = netpoltest.Reachability
)

var (
	tcp80   = probe{Protocol: model.TCP, Port: 80}
	tcp81   = probe{Protocol: model.TCP, Port: 81}
	udp80   = probe{Protocol: model.UDP, Port: 80}
	udp81   = probe{Protocol: model.UDP, Port: 81}
	sctp80  = probe{Protocol: model.SCTP, Port: 80}
	sctp81  = probe{Protocol: model.SCTP, Port: 81}
	tcp6379 = probe{Protocol: model.TCP, Port: 6379}
	udp6379 = probe{Protocol: model.UDP, Port: 6379}
)

const (
	defaultDeny = `{"ingress":{"isolation":"DefaultDeny"}}`
)

// ttStep is one state of a scenario: changes to the cluster, then the
// expected matrix after the flows are recompiled and installed.
type ttStep struct {
	name string
	// mutate changes pods and namespaces (labels, ports, phase, annotations).
	mutate func(t *testing.T, f *netpoltest.Fixture)
	// remove deletes policies ("namespace/name"); add adds or replaces
	// policies given as YAML manifests.
	remove []string
	add    []string
	// want edits a matrix that starts all-allowed; self and node cells are
	// set to allowed afterwards. want6 is the IPv6 expectation of a
	// dual-stack scenario (default: want); its node and ext rows do not
	// exist (the fixture gives them no IPv6 address).
	want  func(r *reach)
	want6 func(r *reach)
	// ignore lists pods whose rows and columns are not compared (pods that
	// stopped running: they have no port flows to trace).
	ignore []string
	// check runs extra assertions after the matrices.
	check func(t *testing.T, w *netpoltest.World)
}

type ttScenario struct {
	name   string
	opts   netpoltest.Options
	probes []probe // default netpoltest.StandardProbes
	steps  []ttStep
}

// ttTotals counts what the run checked, for the final log line.
var ttTotals struct {
	scenarios, steps, matrices, tracedCells, evalCells, extraTraces, serviceCells atomic.Int64
}

func TestTruthTable(t *testing.T) {
	start := time.Now()
	for _, c := range []*atomic.Int64{&ttTotals.scenarios, &ttTotals.steps, &ttTotals.matrices, &ttTotals.tracedCells, &ttTotals.evalCells, &ttTotals.extraTraces, &ttTotals.serviceCells} {
		c.Store(0)
	}
	scenarios := truthTable()
	names := map[string]bool{}
	for _, sc := range scenarios {
		if names[sc.name] {
			t.Fatalf("duplicate scenario %s", sc.name)
		}
		names[sc.name] = true
	}
	t.Run("scenarios", func(t *testing.T) {
		for _, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				runScenario(t, sc)
			})
		}
	})
	t.Logf("truth table: %d scenarios, %d steps, %d matrices; %d cells checked against the traced flows, %d against the evaluator and %d traced through Services' cluster IPs (%d cells in all); %d extra traces; %v",
		ttTotals.scenarios.Load(), ttTotals.steps.Load(), ttTotals.matrices.Load(),
		ttTotals.tracedCells.Load(), ttTotals.evalCells.Load(), ttTotals.serviceCells.Load(),
		ttTotals.tracedCells.Load()+ttTotals.evalCells.Load()+ttTotals.serviceCells.Load(), ttTotals.extraTraces.Load(), time.Since(start).Round(time.Millisecond))
}

func runScenario(t *testing.T, sc ttScenario) {
	probes := sc.probes
	if probes == nil {
		probes = netpoltest.StandardProbes
	}
	f := netpoltest.NewFixture(sc.opts)
	// The first step's changes are made before the world starts (ports are
	// created for the pods running then); the world belongs to the scenario,
	// not to a step.
	applyChanges(t, f, sc.steps[0])
	w := netpoltest.NewWorld(t, f)
	w.PodServices = true
	for i, st := range sc.steps {
		name := fmt.Sprintf("step%d", i+1)
		if st.name != "" {
			name += "-" + st.name
		}
		if !t.Run(name, func(t *testing.T) {
			if i > 0 {
				applyChanges(t, f, st)
			}
			runStep(t, sc, st, f, w, probes)
		}) {
			break // later steps build on this one
		}
	}
	ttTotals.scenarios.Add(1)
}

func applyChanges(t *testing.T, f *netpoltest.Fixture, st ttStep) {
	t.Helper()
	if st.mutate != nil {
		st.mutate(t, f)
	}
	for _, key := range st.remove {
		if _, ok := f.Cluster.Policies[key]; !ok {
			t.Fatalf("no policy %s to remove", key)
		}
		delete(f.Cluster.Policies, key)
	}
	for _, doc := range st.add {
		f.Cluster.AddPolicy(parsePolicy(t, doc))
	}
}

func runStep(t *testing.T, sc ttScenario, st ttStep, f *netpoltest.Fixture, w *netpoltest.World, probes []probe) {
	w.Apply(t)
	fams := []int{4}
	if sc.opts.DualStack {
		fams = append(fams, 6)
	}
	ignore := map[string]bool{}
	for _, k := range st.ignore {
		ignore[k] = true
	}
	for _, fam := range fams {
		wantFn := st.want
		if fam == 6 && st.want6 != nil {
			wantFn = st.want6
		}
		want := netpoltest.NewReachability(f, probes, true)
		if wantFn != nil {
			wantFn(want)
		}
		want.ExpectSelfAndNode()
		traced := w.MatrixExcept(t, probes, fam, ignore)
		eval := evaluate(f, probes, fam)
		cells := 0
		for _, r := range []*reach{want, traced, eval} {
			cells = keepComparable(f, r, probes, fam, ignore)
		}
		ttTotals.matrices.Add(1)
		ttTotals.tracedCells.Add(int64(cells))
		ttTotals.evalCells.Add(int64(cells))
		if n, d := want.Diff(traced, "expected", "traced"); n > 0 {
			t.Errorf("IPv%d: %d of %d cells of the traced flows differ from the expectation:\n%s", fam, n, cells, d)
		}
		if n, d := want.Diff(eval, "expected", "evaluator"); n > 0 {
			t.Errorf("IPv%d: %d of %d cells of the evaluator differ from the expectation:\n%s", fam, n, cells, d)
		}
		// The same matrix through every destination's Service: the bridge
		// balances to the pod, and policy judges the pod (pod rows only).
		// (Probes the Services have ports for: the standard ones.)
		var svcProbes []probe
		for _, p := range probes {
			if slices.Contains(netpoltest.StandardProbes, p) {
				svcProbes = append(svcProbes, p)
			}
		}
		if len(svcProbes) == 0 {
			continue
		}
		viaSvc := w.ServiceMatrixExcept(t, svcProbes, fam, ignore)
		wantPods := netpoltest.NewReachability(f, svcProbes, false)
		svcCells := 0
		for _, p := range svcProbes {
			for _, s := range f.Order {
				for _, d := range f.Order {
					if _, _, ok := f.Endpoints(s, d, fam); ok && !ignore[s] && !ignore[d] {
						wantPods.Set(p, s, d, want.Get(p, s, d))
						svcCells++
					}
				}
			}
		}
		ttTotals.serviceCells.Add(int64(svcCells))
		if n, d := wantPods.Diff(viaSvc, "expected", "traced through Services"); n > 0 {
			t.Errorf("IPv%d: %d of %d cells traced through cluster IPs differ from the expectation:\n%s", fam, n, svcCells, d)
		}
	}
	if st.check != nil {
		st.check(t, w)
	}
	ttTotals.steps.Add(1)
}

// evaluate is netpoltest.Evaluate for either address family.
func evaluate(f *netpoltest.Fixture, probes []probe, fam int) *reach {
	if fam == 4 {
		return netpoltest.Evaluate(f, probes)
	}
	r := netpoltest.NewReachability(f, probes, false)
	for _, p := range probes {
		for _, s := range f.Sources() {
			for _, d := range f.Order {
				se, de, ok := f.Endpoints(s, d, fam)
				if ok {
					r.Set(p, s, d, evaluator.Allowed(f.Cluster, se, de, p.Protocol, p.Port).Allowed)
				}
			}
		}
	}
	return r
}

// keepComparable blanks the cells that cannot be compared (ignored pods;
// sources without an address of the family) and returns how many remain.
func keepComparable(f *netpoltest.Fixture, r *reach, probes []probe, fam int, ignore map[string]bool) int {
	n := 0
	for _, p := range probes {
		for _, s := range f.Sources() {
			for _, d := range f.Order {
				if _, _, ok := f.Endpoints(s, d, fam); !ok || ignore[s] || ignore[d] {
					r.Set(p, s, d, false)
					continue
				}
				n++
			}
		}
	}
	return n
}

// --- manifests -------------------------------------------------------------

// v1 and v1beta1 render a NetworkPolicy manifest around spec, a YAML block
// (indented with tabs in the Go source; the common tab prefix is removed).
func v1(ns, name, spec string) string {
	return manifest(normalize.APIVersionV1, ns, name, spec)
}

func v1beta1(ns, name, spec string) string {
	return manifest(normalize.APIVersionV1beta1, ns, name, spec)
}

func manifest(apiVersion, ns, name, spec string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: %s\nkind: NetworkPolicy\nmetadata:\n  name: %s\n  namespace: %q\nspec:\n", apiVersion, name, ns)
	for _, l := range strings.Split(dedent(spec), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

func dedent(s string) string {
	lines := strings.Split(s, "\n")
	for len(lines) > 0 && strings.TrimSpace(lines[0]) == "" {
		lines = lines[1:]
	}
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	prefix := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, "\t"))
		if prefix < 0 || n < prefix {
			prefix = n
		}
	}
	for i, l := range lines {
		if len(l) >= prefix {
			lines[i] = l[prefix:]
		}
	}
	return strings.Join(lines, "\n")
}

// parsePolicy decodes a manifest strictly into its API type and normalizes it.
func parsePolicy(t *testing.T, doc string) *model.Policy {
	t.Helper()
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
		t.Fatalf("manifest:\n%s\n%v", doc, err)
	}
	if tm.Kind != "NetworkPolicy" {
		t.Fatalf("manifest:\n%s\nkind %q", doc, tm.Kind)
	}
	var p *model.Policy
	var err error
	switch tm.APIVersion {
	case normalize.APIVersionV1:
		np := &networkingv1.NetworkPolicy{}
		if err := yaml.UnmarshalStrict([]byte(doc), np); err != nil {
			t.Fatalf("manifest:\n%s\n%v", doc, err)
		}
		p, err = normalize.NetworkPolicyV1(np)
	case normalize.APIVersionV1beta1:
		np := &extv1beta1.NetworkPolicy{}
		if err := yaml.UnmarshalStrict([]byte(doc), np); err != nil {
			t.Fatalf("manifest:\n%s\n%v", doc, err)
		}
		p, err = normalize.NetworkPolicyV1beta1(np)
	default:
		t.Fatalf("manifest:\n%s\nunknown apiVersion %q", doc, tm.APIVersion)
	}
	if err != nil {
		t.Fatalf("manifest:\n%s\nnormalize: %v", doc, err)
	}
	return p
}

// --- fixture mutations ---------------------------------------------------------

// setNamespace replaces namespace ns by normalizing a corev1.Namespace with
// its current labels plus extra labels (a "-" value deletes a label) and,
// when annotation is non-nil, the legacy isolation annotation. wantWarning
// says whether normalize must report the annotation as malformed.
func setNamespace(t *testing.T, f *netpoltest.Fixture, ns string, annotation *string, wantWarning bool, extra ...string) {
	t.Helper()
	old := f.Cluster.Namespaces[ns]
	obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{}}}
	for k, v := range old.Labels {
		obj.Labels[k] = v
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "-" {
			delete(obj.Labels, extra[i])
		} else {
			obj.Labels[extra[i]] = extra[i+1]
		}
	}
	if annotation != nil {
		obj.Annotations = map[string]string{model.LegacyAnnotation: *annotation}
	}
	n, warning := normalize.Namespace(obj)
	if n == nil {
		t.Fatalf("namespace %s: %v", ns, warning)
	}
	if (warning != nil) != wantWarning {
		t.Fatalf("namespace %s with annotation %v: warning %v, want a warning: %v", ns, annotation, warning, wantWarning)
	}
	if warning != nil {
		t.Logf("expected warning: %v", warning)
	}
	f.Cluster.AddNamespace(n)
}

func annotate(value string, malformed bool, namespaces ...string) func(t *testing.T, f *netpoltest.Fixture) {
	return func(t *testing.T, f *netpoltest.Fixture) {
		for _, ns := range namespaces {
			setNamespace(t, f, ns, &value, malformed)
		}
	}
}

func nsLabels(ns string, kv ...string) func(t *testing.T, f *netpoltest.Fixture) {
	return func(t *testing.T, f *netpoltest.Fixture) {
		keep := annotationOf(f, ns)
		setNamespace(t, f, ns, keep, f.Cluster.Namespaces[ns].LegacyIsolation == model.LegacyMalformed, kv...)
	}
}

// annotationOf recreates the annotation of a namespace built by this file.
func annotationOf(f *netpoltest.Fixture, ns string) *string {
	switch f.Cluster.Namespaces[ns].LegacyIsolation {
	case model.LegacyDefaultDeny:
		s := defaultDeny
		return &s
	case model.LegacyMalformed:
		s := "malformed"
		return &s
	}
	return nil
}

// podLabels sets (or with value "-" deletes) labels on fixture pods.
func podLabels(changes ...string) func(t *testing.T, f *netpoltest.Fixture) {
	return func(t *testing.T, f *netpoltest.Fixture) {
		for i := 0; i+2 < len(changes); i += 3 {
			pod := f.Pods[changes[i]]
			if changes[i+2] == "-" {
				delete(pod.Labels, changes[i+1])
			} else {
				pod.Labels[changes[i+1]] = changes[i+2]
			}
		}
	}
}

// setPort points a pod's named container port at another number (port 0
// removes it).
func setPort(t *testing.T, f *netpoltest.Fixture, key, name string, port int32) {
	t.Helper()
	pod := f.Pods[key]
	for i, cp := range pod.Ports {
		if cp.Name == name {
			if port == 0 {
				pod.Ports = append(pod.Ports[:i:i], pod.Ports[i+1:]...)
			} else {
				pod.Ports[i].Port = port
			}
			return
		}
	}
	t.Fatalf("pod %s has no port %s", key, name)
}

func all(fns ...func(t *testing.T, f *netpoltest.Fixture)) func(t *testing.T, f *netpoltest.Fixture) {
	return func(t *testing.T, f *netpoltest.Fixture) {
		for _, fn := range fns {
			fn(t, f)
		}
	}
}

// extraPod adds a pod that is not part of the matrix (it has no port).
func extraPod(p *model.Pod) func(t *testing.T, f *netpoltest.Fixture) {
	return func(t *testing.T, f *netpoltest.Fixture) {
		if p.Node == "" {
			p.Node = f.Nodes[0]
		}
		f.Cluster.AddPod(p)
	}
}

// --- extra assertions --------------------------------------------------------

func expectTrace(t *testing.T, w *netpoltest.World, src, dst string, p probe, fam int, allowed bool, droppedOn string) {
	t.Helper()
	ok, detail, err := w.Trace(src, dst, p, fam)
	ttTotals.extraTraces.Add(1)
	if err != nil {
		t.Errorf("trace %s -> %s %s: %v", src, dst, p, err)
		return
	}
	if ok != allowed {
		t.Errorf("new connection %s -> %s %s IPv%d: allowed=%v, want %v (%s)", src, dst, p, fam, ok, allowed, detail)
		return
	}
	if droppedOn != "" && !strings.HasPrefix(detail, "dropped on "+droppedOn+" ") {
		t.Errorf("new connection %s -> %s %s: %q, want it dropped on %s", src, dst, p, detail, droppedOn)
	}
}

// ruleFlowCount counts the flows node's compiled result has for one rule.
func ruleFlowCount(t *testing.T, w *netpoltest.World, node, policy string, d model.Direction, rule int) int {
	t.Helper()
	p := w.F.Cluster.Policies[policy]
	if p == nil {
		t.Fatalf("no policy %s", policy)
	}
	cookie := compiler.RuleCookie(compiler.RuleKey(p, d, rule))
	n := 0
	for _, fl := range w.Nodes[node].Result.Flows {
		if fl.Cookie == cookie {
			n++
		}
	}
	return n
}

// --- the table ---------------------------------------------------------------

func opts(mode model.Mode, nodes int) netpoltest.Options {
	return netpoltest.Options{Mode: mode, Nodes: nodes}
}

func dual(mode model.Mode, nodes int) netpoltest.Options {
	return netpoltest.Options{Mode: mode, Nodes: nodes, DualStack: true}
}

func one(st ttStep) []ttStep { return []ttStep{st} }

func truthTable() []ttScenario {
	v1m, v16 := model.ModeV1, model.ModeV16
	return []ttScenario{
		// ---- v1: isolation basics ----
		{name: "v1-no-policy", opts: opts(v1m, 1), steps: one(ttStep{
			want: nil, // everything, ext included, reaches everything
		})},
		{name: "v1-deny-all-ingress", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{v1("x", "deny-ingress", `
				podSelector: {}
			`)},
			// Ingress isolation of x only: x still sends anywhere.
			want: func(r *reach) { r.Expect("all", "x/*", false) },
		})},
		{name: "v1-deny-all-egress", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{v1("x", "deny-egress", `
				podSelector: {}
				policyTypes: [Egress]
			`)},
			// x sends nowhere (not even to x); x still receives from anyone,
			// ext included.
			want: func(r *reach) { r.Expect("x/*", "*", false) },
		})},
		{name: "v1-empty-rule-allows-all-then-empty-list-denies", opts: opts(v1m, 1), steps: []ttStep{
			{
				name: "ingress-[{}]",
				add: []string{v1("x", "open", `
					podSelector: {}
					ingress:
					- {}
				`)},
				// A rule with no from and no ports: every source, ext included.
				want: nil,
			},
			{
				name: "ingress-[]",
				add: []string{v1("x", "open", `
					podSelector: {}
					ingress: []
				`)},
				want: func(r *reach) { r.Expect("all", "x/*", false) },
			},
		}},
		{name: "v1-namespace-selector-empty-all-pods-not-ext", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{v1("x", "all-pods", `
				podSelector: {}
				ingress:
				- from:
				  - namespaceSelector: {}
			`)},
			want: func(r *reach) { r.Expect("ext", "x/*", false) },
		})},
		{name: "v1-pod-selector-empty-own-namespace", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{v1("x", "own-ns", `
				podSelector: {}
				ingress:
				- from:
				  - podSelector: {}
			`)},
			want: func(r *reach) { r.Expect("y/*|z/*|ext", "x/*", false) },
		})},
		{name: "v1-namespace-and-pod-selector-in-one-peer-is-and", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{v1("x", "and", `
				podSelector:
				  matchLabels: {pod: a}
				ingress:
				- from:
				  - namespaceSelector:
				      matchLabels: {ns: "y"}
				    podSelector:
				      matchLabels: {pod: b}
			`)},
			want: func(r *reach) { r.Expect("all", "x/a", false).Expect("y/b", "x/a", true) },
		})},
		{name: "v1-two-peers-are-or", opts: dual(v1m, 1), steps: one(ttStep{
			add: []string{v1("x", "or", `
				podSelector:
				  matchLabels: {pod: a}
				ingress:
				- from:
				  - namespaceSelector:
				      matchLabels: {ns: "y"}
				  - podSelector:
				      matchLabels: {pod: b}
			`)},
			// The lone podSelector means pod=b of x (the policy's namespace),
			// not y/b or z/b.
			want: func(r *reach) { r.Expect("all", "x/a", false).Expect("y/*|x/b", "x/a", true) },
		})},
		{name: "v1-match-expressions", opts: opts(v1m, 1), steps: one(ttStep{
			mutate: podLabels("x/c", "tier", "web", "y/a", "tier", "web"),
			add: []string{v1("z", "expr", `
				podSelector:
				  matchExpressions:
				  - {key: pod, operator: In, values: [a, b]}
				ingress:
				- from:
				  # x/c: the only pod of x with a tier label
				  - namespaceSelector:
				      matchExpressions:
				      - {key: ns, operator: In, values: [x]}
				    podSelector:
				      matchExpressions:
				      - {key: tier, operator: Exists}
				  # y/b, y/c: pods of y without a tier label
				  - namespaceSelector:
				      matchExpressions:
				      - {key: ns, operator: In, values: ["y"]}
				    podSelector:
				      matchExpressions:
				      - {key: tier, operator: DoesNotExist}
				  # z/b, z/c: z is the namespace not named x or y; pod is not a
				  - namespaceSelector:
				      matchExpressions:
				      - {key: kubernetes.io/metadata.name, operator: NotIn, values: [x, "y"]}
				    podSelector:
				      matchExpressions:
				      - {key: pod, operator: NotIn, values: [a]}
			`)},
			want: func(r *reach) {
				r.Expect("all", "z/a|z/b", false).Expect("x/c|y/b|y/c|z/b|z/c", "z/a|z/b", true)
			},
		})},

		// ---- v1: policyTypes ----
		{name: "v1-policytypes-default-ingress-only", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{v1("x", "ingress-rules", `
				podSelector:
				  matchLabels: {pod: a}
				ingress:
				- from:
				  - podSelector:
				      matchLabels: {pod: b}
			`)},
			// Only ingress rules: policyTypes is [Ingress]; x/a's egress is open.
			want: func(r *reach) { r.Expect("all", "x/a", false).Expect("x/b", "x/a", true) },
		})},
		{name: "v1-policytypes-default-adds-egress-when-egress-rules", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{v1("x", "egress-rules", `
				podSelector:
				  matchLabels: {pod: a}
				egress:
				- to:
				  - podSelector:
				      matchLabels: {pod: b}
			`)},
			// No policyTypes + egress rules = [Ingress, Egress]: no ingress
			// rule, so x/a receives nothing; it sends only to x/b.
			want: func(r *reach) {
				r.Expect("all", "x/a", false).Expect("x/a", "*", false).Expect("x/a", "x/b", true)
			},
		})},
		{name: "v1-policytypes-egress-only-leaves-ingress", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{v1("y", "egress-only", `
				podSelector: {}
				policyTypes: [Egress]
				ingress:
				- from:
				  - podSelector:
				      matchLabels: {pod: nobody}
				egress:
				- to:
				  - namespaceSelector:
				      matchLabels: {ns: z}
			`)},
			// The ingress rules are ignored (Ingress not in policyTypes).
			want: func(r *reach) { r.Expect("y/*", "*", false).Expect("y/*", "z/*", true) },
		})},

		// ---- v1: ports ----
		{name: "v1-ports-missing-means-all", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{v1("x", "from-y", `
				podSelector:
				  matchLabels: {pod: a}
				ingress:
				- from:
				  - namespaceSelector:
				      matchLabels: {ns: "y"}
			`)},
			want: func(r *reach) { r.Expect("all", "x/a", false).Expect("y/*", "x/a", true) },
		})},
		{name: "v1-port-without-protocol-is-tcp", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{v1("x", "port-80", `
				podSelector: {}
				ingress:
				- ports:
				  - port: 80
			`)},
			want: func(r *reach) { r.Expect("all", "x/*", false).Expect("all", "x/*", true, tcp80) },
		})},
		{name: "v1-protocol-without-port-is-every-port", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{v1("x", "udp", `
				podSelector: {}
				ingress:
				- ports:
				  - protocol: UDP
			`)},
			want: func(r *reach) { r.Expect("all", "x/*", false).Expect("all", "x/*", true, udp80, udp81) },
		})},
		{name: "v1-udp-only-rule-opens-no-tcp", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{v1("y", "udp-81", `
				podSelector: {}
				ingress:
				- from:
				  - namespaceSelector: {}
				  ports:
				  - protocol: UDP
				    port: 81
			`)},
			want: func(r *reach) { r.Expect("all", "y/*", false).Expect("*", "y/*", true, udp81) },
		})},
		{name: "v1-sctp-only-rules", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{
				v1("z", "sctp-in", `
					podSelector:
					  matchLabels: {pod: c}
					ingress:
					- ports:
					  - {protocol: SCTP, port: 80}
					  - {protocol: SCTP, port: 81}
				`),
				v1("x", "sctp-out", `
					podSelector:
					  matchLabels: {pod: a}
					policyTypes: [Egress]
					egress:
					- ports:
					  - {protocol: SCTP, port: 80}
				`),
			},
			want: func(r *reach) {
				r.Expect("all", "z/c", false).Expect("all", "z/c", true, sctp80, sctp81)
				// x/a -> z/c sctp/81: z/c would take it, x/a's egress does not.
				r.Expect("x/a", "*", false).Expect("x/a", "*", true, sctp80)
			},
		})},
		{name: "v1-endport-inclusive", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{
				v1("x", "a-80-81", `
					podSelector:
					  matchLabels: {pod: a}
					ingress:
					- ports:
					  - {protocol: TCP, port: 80, endPort: 81}
				`),
				v1("x", "b-81-90", `
					podSelector:
					  matchLabels: {pod: b}
					ingress:
					- ports:
					  - {port: 81, endPort: 90}
				`),
				v1("x", "c-udp-70-80", `
					podSelector:
					  matchLabels: {pod: c}
					ingress:
					- ports:
					  - {protocol: UDP, port: 70, endPort: 80}
				`),
			},
			want: func(r *reach) {
				r.Expect("all", "x/*", false)
				r.Expect("all", "x/a", true, tcp80, tcp81)
				r.Expect("all", "x/b", true, tcp81)
				r.Expect("all", "x/c", true, udp80)
			},
		})},
		{name: "v1-named-port-ingress-per-pod", opts: opts(v1m, 1), steps: one(ttStep{
			// x/b's serve-80-tcp is port 81.
			mutate: func(t *testing.T, f *netpoltest.Fixture) { setPort(t, f, "x/b", "serve-80-tcp", 81) },
			add: []string{v1("x", "named", `
				podSelector: {}
				ingress:
				- ports:
				  - port: serve-80-tcp
				  - {protocol: UDP, port: serve-81-udp}
				  # the name exists only for TCP: resolves nowhere for UDP
				  - {protocol: UDP, port: serve-80-tcp}
			`)},
			want: func(r *reach) {
				r.Expect("all", "x/*", false)
				r.Expect("all", "x/a|x/c", true, tcp80)
				r.Expect("all", "x/b", true, tcp81)
				r.Expect("all", "x/*", true, udp81)
			},
		})},
		{name: "v1-named-port-unresolvable-matches-nothing", opts: opts(v1m, 1), steps: one(ttStep{
			mutate: func(t *testing.T, f *netpoltest.Fixture) {
				p := f.Pods["y/c"]
				p.Ports = append(p.Ports, model.ContainerPort{Name: "metrics", Port: 81, Protocol: model.TCP})
			},
			add: []string{v1("y", "metrics", `
				podSelector: {}
				ingress:
				- ports:
				  - port: metrics
				  - port: no-such-port
			`)},
			// y/a, y/b have no "metrics" port: isolated, nothing allowed.
			want: func(r *reach) { r.Expect("all", "y/*", false).Expect("all", "y/c", true, tcp81) },
		})},
		{name: "v1-named-port-egress-resolves-on-destination", opts: opts(v1m, 2), steps: one(ttStep{
			mutate: func(t *testing.T, f *netpoltest.Fixture) {
				setPort(t, f, "z/b", "serve-81-tcp", 80)
				setPort(t, f, "y/c", "serve-81-tcp", 0)
			},
			add: []string{
				v1("x", "a-out", `
					podSelector:
					  matchLabels: {pod: a}
					policyTypes: [Egress]
					egress:
					- to:
					  - namespaceSelector: {}
					  ports:
					  - port: serve-81-tcp
				`),
				v1("x", "b-out", `
					podSelector:
					  matchLabels: {pod: b}
					policyTypes: [Egress]
					egress:
					- ports:
					  - {protocol: UDP, port: serve-80-udp}
				`),
			},
			want: func(r *reach) {
				r.Expect("x/a", "*", false).Expect("x/a", "*", true, tcp81)
				// z/b's serve-81-tcp is 80; y/c has no such port.
				r.Expect("x/a", "z/b|y/c", false).Expect("x/a", "z/b", true, tcp80)
				r.Expect("x/b", "*", false).Expect("x/b", "*", true, udp80)
			},
		})},

		// ---- v1: ipBlock ----
		{name: "v1-ipblock-except-external", opts: opts(v1m, 1), steps: []ttStep{
			{
				name: "ext-excepted",
				add: []string{v1("x", "ext", `
					podSelector: {}
					ingress:
					- from:
					  - ipBlock:
					      cidr: 192.0.2.0/24
					      except: [192.0.2.10/32]
				`)},
				want: func(r *reach) { r.Expect("all", "x/*", false) },
			},
			{
				name: "ext-allowed",
				add: []string{v1("x", "ext", `
					podSelector: {}
					ingress:
					- from:
					  - ipBlock:
					      cidr: 192.0.2.0/24
					      except: [192.0.2.128/25]
				`)},
				want: func(r *reach) { r.Expect("all", "x/*", false).Expect("ext", "x/*", true) },
			},
		}},
		{name: "v1-ipblock-pod-addresses-dual-stack", opts: dual(v1m, 3), steps: one(ttStep{
			add: []string{v1("z", "blocks", `
				podSelector: {}
				ingress:
				- from:
				  - ipBlock:
				      cidr: 10.1.2.0/24
				      except: [10.1.2.2/32]
				  - ipBlock:
				      cidr: "fd00:10:1::1:0/112"
				      except: ["fd00:10:1::1:1/128"]
			`)},
			// IPv4: y's pods but y/b; IPv6: x's pods but x/a.
			want:  func(r *reach) { r.Expect("all", "z/*", false).Expect("y/a|y/c", "z/*", true) },
			want6: func(r *reach) { r.Expect("all", "z/*", false).Expect("x/b|x/c", "z/*", true) },
		})},
		{name: "v1-ipblock-except-only-its-own-peer", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{v1("z", "blocks", `
				podSelector:
				  matchLabels: {pod: c}
				ingress:
				- from:
				  - ipBlock:
				      cidr: 10.1.0.0/16
				      except: [10.1.1.0/24]
				  - namespaceSelector:
				      matchLabels: {ns: x}
				    podSelector:
				      matchLabels: {pod: a}
			`)},
			// x/a is excepted from the block but allowed by the other peer.
			want: func(r *reach) { r.Expect("all", "z/c", false).Expect("y/*|z/*|x/a", "z/c", true) },
		})},
		{name: "v1-ipblock-whole-family-except", opts: dual(v1m, 1), steps: one(ttStep{
			add: []string{
				v1("x", "ipv4-but-pods", `
					podSelector: {}
					ingress:
					- from:
					  - ipBlock:
					      cidr: 0.0.0.0/0
					      except: [10.1.0.0/16]
				`),
				v1("y", "all-ipv6", `
					podSelector: {}
					ingress:
					- from:
					  - ipBlock: {cidr: "::/0"}
				`),
			},
			// An IPv4 block never matches IPv6 sources and vice versa.
			want:  func(r *reach) { r.Expect("all", "x/*|y/*", false).Expect("ext", "x/*", true) },
			want6: func(r *reach) { r.Expect("all", "x/*", false) },
		})},
		{name: "v1-overlapping-peers-of-different-rules", opts: opts(v1m, 1), steps: one(ttStep{
			// Peers of different rules overlap (a block and pods inside it,
			// with different ports): each rule must still be honoured on its
			// own.
			add: []string{
				v1("x", "block-tcp-80", `
					podSelector:
					  matchLabels: {pod: a}
					ingress:
					- from:
					  - ipBlock: {cidr: 10.1.0.0/16}
					  ports:
					  - port: 80
				`),
				v1("x", "yb-udp-81", `
					podSelector:
					  matchLabels: {pod: a}
					ingress:
					- from:
					  - namespaceSelector:
					      matchLabels: {ns: "y"}
					    podSelector:
					      matchLabels: {pod: b}
					  ports:
					  - {protocol: UDP, port: 81}
				`),
				v1("x", "z-tcp-80-81", `
					podSelector:
					  matchLabels: {pod: a}
					ingress:
					- from:
					  - ipBlock: {cidr: 10.1.3.0/24}
					  - namespaceSelector: {}
					    podSelector:
					      matchLabels: {pod: c}
					  ports:
					  - {port: 80, endPort: 81}
				`),
			},
			want: func(r *reach) {
				r.Expect("all", "x/a", false)
				r.Expect("*", "x/a", true, tcp80)
				r.Expect("y/b", "x/a", true, udp81)
				r.Expect("z/*|*/c", "x/a", true, tcp81)
			},
		})},
		{name: "v1-egress-to-ipblock", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{v1("y", "out", `
				podSelector:
				  matchLabels: {pod: b}
				policyTypes: [Egress]
				egress:
				- to:
				  - ipBlock:
				      cidr: 10.1.3.0/24
				      except: [10.1.3.3/32]
				  ports:
				  - port: 80
				  - protocol: UDP
			`)},
			want: func(r *reach) {
				r.Expect("y/b", "*", false).Expect("y/b", "z/a|z/b", true, tcp80, udp80, udp81)
			},
		})},

		// ---- v1: both directions, statefulness, unions ----
		{name: "v1-egress-and-ingress-both-needed", opts: opts(v1m, 3), steps: []ttStep{
			{
				name: "both-isolated",
				add: []string{
					v1("x", "a-out", `
						podSelector:
						  matchLabels: {pod: a}
						policyTypes: [Egress]
						egress:
						- to:
						  - namespaceSelector:
						      matchLabels: {ns: "y"}
						    podSelector:
						      matchLabels: {pod: b}
						  ports:
						  - port: 80
					`),
					v1("y", "b-in", `
						podSelector:
						  matchLabels: {pod: b}
						ingress:
						- from:
						  - namespaceSelector:
						      matchLabels: {ns: x}
						  ports:
						  - port: 80
						  - port: 81
					`),
				},
				want: func(r *reach) {
					r.Expect("all", "y/b", false).Expect("x/*", "y/b", true, tcp80, tcp81)
					// x/a -> y/b tcp/81: y/b's ingress allows it, x/a's egress not.
					r.Expect("x/a", "*", false).Expect("x/a", "y/b", true, tcp80)
				},
			},
		}},
		{name: "v1-replies-pass-when-replier-is-egress-isolated", opts: opts(v1m, 3), steps: one(ttStep{
			add: []string{
				v1("y", "b-no-egress", `
					podSelector:
					  matchLabels: {pod: b}
					policyTypes: [Egress]
				`),
				v1("x", "a-no-ingress", `
					podSelector:
					  matchLabels: {pod: a}
				`),
			},
			want: func(r *reach) { r.Expect("y/b", "*", false).Expect("all", "x/a", false) },
			check: func(t *testing.T, w *netpoltest.World) {
				// x/a (node-1) and x/b (node-2) open connections to y/b
				// (node-2); y/b may not open any, but its replies pass, even
				// to x/a, which is itself ingress-isolated.
				for _, orig := range []string{"x/a", "x/b"} {
					for _, p := range netpoltest.StandardProbes {
						expectTrace(t, w, orig, "y/b", p, 4, true, "")
						expectTrace(t, w, "y/b", orig, p, 4, false, "")
						ok, detail, err := w.TraceReply("y/b", orig, p, 4)
						ttTotals.extraTraces.Add(1)
						if err != nil || !ok {
							t.Errorf("reply y/b -> %s %s of an allowed connection: passed=%v (%s) %v", orig, p, ok, detail, err)
						}
					}
				}
			},
		})},
		{name: "v1-overlapping-ingress-policies-union", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{
				v1("x", "y-tcp-80", `
					podSelector: {}
					ingress:
					- from:
					  - namespaceSelector:
					      matchLabels: {ns: "y"}
					  ports:
					  - port: 80
				`),
				v1("x", "z-to-a", `
					podSelector:
					  matchLabels: {pod: a}
					ingress:
					- from:
					  - namespaceSelector:
					      matchLabels: {ns: z}
				`),
				v1("x", "ext-udp", `
					podSelector:
					  matchExpressions:
					  - {key: pod, operator: In, values: [a, b]}
					ingress:
					- from:
					  - ipBlock: {cidr: 192.0.2.0/24}
					  ports:
					  - protocol: UDP
				`),
			},
			want: func(r *reach) {
				r.Expect("all", "x/*", false)
				r.Expect("y/*", "x/*", true, tcp80)
				r.Expect("z/*", "x/a", true)
				r.Expect("ext", "x/a|x/b", true, udp80, udp81)
			},
		})},
		{name: "v1-overlapping-egress-policies-union", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{
				v1("x", "deny-out", `
					podSelector: {}
					policyTypes: [Egress]
				`),
				v1("x", "a-to-y", `
					podSelector:
					  matchLabels: {pod: a}
					policyTypes: [Egress]
					egress:
					- to:
					  - namespaceSelector:
					      matchLabels: {ns: "y"}
				`),
				v1("x", "a-udp-81", `
					podSelector:
					  matchLabels: {pod: a}
					policyTypes: [Egress]
					egress:
					- ports:
					  - {protocol: UDP, port: 81}
				`),
			},
			want: func(r *reach) {
				r.Expect("x/*", "*", false).Expect("x/a", "y/*", true).Expect("x/a", "*", true, udp81)
			},
		})},
		{name: "v1-policy-selecting-no-pod-has-no-effect", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{
				v1("x", "nobody", `
					podSelector:
					  matchLabels: {pod: nobody}
					policyTypes: [Ingress, Egress]
				`),
				v1("y", "no-pod-label", `
					podSelector:
					  matchExpressions:
					  - {key: pod, operator: DoesNotExist}
				`),
			},
			want: nil,
		})},
		{name: "v1-peer-selector-matching-nothing-allows-nothing", opts: opts(v1m, 1), steps: one(ttStep{
			add: []string{
				v1("x", "from-nobody", `
					podSelector: {}
					ingress:
					- from:
					  - podSelector:
					      matchLabels: {pod: nobody}
					- from:
					  - namespaceSelector:
					      matchLabels: {ns: nowhere}
					    podSelector: {}
				`),
				v1("y", "to-nowhere", `
					podSelector:
					  matchLabels: {pod: a}
					policyTypes: [Egress]
					egress:
					- to:
					  - namespaceSelector:
					      matchLabels: {ns: nowhere}
				`),
			},
			want: func(r *reach) { r.Expect("all", "x/*", false).Expect("y/a", "*", false) },
		})},
		{name: "v1-self-and-node-always-allowed", opts: dual(v1m, 2), steps: one(ttStep{
			add: []string{
				v1("x", "deny", "podSelector: {}\npolicyTypes: [Ingress, Egress]"),
				v1("y", "deny", "podSelector: {}\npolicyTypes: [Ingress, Egress]"),
				v1("z", "deny", "podSelector: {}\npolicyTypes: [Ingress, Egress]"),
			},
			// Only a pod to itself and each node to its pods remain.
			want: func(r *reach) { r.Expect("all", "*", false) },
		})},

		// ---- v1: pods that do not count ----
		{name: "v1-hostnetwork-pod-is-no-peer", opts: opts(v1m, 1), steps: one(ttStep{
			// A hostNetwork pod owning the external address (its host's):
			// were it selected as a peer, ext would get in.
			mutate: extraPod(&model.Pod{UID: "uid-x-hn", Namespace: "x", Name: "hn", Labels: labels.Set{"role": "hn"},
				IPs: []netip.Addr{netpoltest.ExternalIP}, Phase: "Running", HostNetwork: true}),
			add: []string{
				v1("y", "from-hn", `
					podSelector: {}
					ingress:
					- from:
					  - namespaceSelector: {}
					    podSelector:
					      matchLabels: {role: hn}
				`),
				// Selects only the hostNetwork pod: no effect.
				v1("x", "hn-isolated", `
					podSelector:
					  matchLabels: {role: hn}
					policyTypes: [Ingress, Egress]
				`),
			},
			want: func(r *reach) { r.Expect("all", "y/*", false) },
		})},
		{name: "v1-finished-pod-address-is-no-peer", opts: opts(v1m, 1), steps: one(ttStep{
			// Finished pods whose addresses now belong to y/b and y/c.
			mutate: all(
				extraPod(&model.Pod{UID: "uid-x-old1", Namespace: "x", Name: "old1", Labels: labels.Set{"role": "old"},
					IPs: []netip.Addr{netip.MustParseAddr("10.1.2.2")}, Phase: model.PodSucceeded}),
				extraPod(&model.Pod{UID: "uid-x-old2", Namespace: "x", Name: "old2", Labels: labels.Set{"role": "old"},
					IPs: []netip.Addr{netip.MustParseAddr("10.1.2.3")}, Phase: model.PodFailed}),
			),
			add: []string{v1("z", "from-old", `
				podSelector: {}
				ingress:
				- from:
				  - namespaceSelector: {}
				    podSelector:
				      matchLabels: {role: old}
			`)},
			want: func(r *reach) { r.Expect("all", "z/*", false) },
		})},
		{name: "v1-pod-succeeded-and-address-reused", opts: opts(v1m, 1), steps: []ttStep{
			{
				name: "running",
				add: []string{v1("z", "from-xa", `
					podSelector: {}
					ingress:
					- from:
					  - namespaceSelector:
					      matchLabels: {ns: x}
					    podSelector:
					      matchLabels: {pod: a}
				`)},
				want: func(r *reach) { r.Expect("all", "z/*", false).Expect("x/a", "z/*", true) },
			},
			{
				// x/a finished; y/b now has its address 10.1.1.1.
				name: "succeeded",
				mutate: func(t *testing.T, f *netpoltest.Fixture) {
					f.Pods["x/a"].Phase = model.PodSucceeded
					f.Pods["y/b"].IPs = []netip.Addr{netip.MustParseAddr("10.1.1.1")}
				},
				ignore: []string{"x/a"},
				want:   func(r *reach) { r.Expect("all", "z/*", false) },
			},
		}},

		// ---- v1: label changes ----
		{name: "v1-pod-label-change-retargets", opts: opts(v1m, 1), steps: []ttStep{
			{
				name:   "x/b-labelled",
				mutate: podLabels("x/b", "role", "db"),
				add: []string{v1("x", "db", `
					podSelector:
					  matchLabels: {role: db}
				`)},
				want: func(r *reach) { r.Expect("all", "x/b", false) },
			},
			{
				name:   "label-moved-to-x/c",
				mutate: podLabels("x/b", "role", "-", "x/c", "role", "db"),
				want:   func(r *reach) { r.Expect("all", "x/c", false) },
			},
		}},
		{name: "v1-pod-label-change-repeers", opts: opts(v1m, 1), steps: []ttStep{
			{
				name:   "x/a-client",
				mutate: podLabels("x/a", "role", "client"),
				add: []string{v1("y", "from-clients", `
					podSelector: {}
					ingress:
					- from:
					  - namespaceSelector: {}
					    podSelector:
					      matchLabels: {role: client}
				`)},
				want: func(r *reach) { r.Expect("all", "y/*", false).Expect("x/a", "y/*", true) },
			},
			{
				name:   "z/c-client",
				mutate: podLabels("x/a", "role", "-", "z/c", "role", "client"),
				want:   func(r *reach) { r.Expect("all", "y/*", false).Expect("z/c", "y/*", true) },
			},
		}},
		{name: "v1-namespace-label-change", opts: opts(v1m, 1), steps: []ttStep{
			{
				name:   "z-blue",
				mutate: nsLabels("z", "team", "blue"),
				add: []string{v1("x", "from-blue", `
					podSelector: {}
					ingress:
					- from:
					  - namespaceSelector:
					      matchLabels: {team: blue}
				`)},
				want: func(r *reach) { r.Expect("all", "x/*", false).Expect("z/*", "x/*", true) },
			},
			{
				name:   "x-blue-z-not",
				mutate: all(nsLabels("z", "team", "-"), nsLabels("x", "team", "blue")),
				want:   func(r *reach) { r.Expect("all", "x/*", false).Expect("x/*", "x/*", true) },
			},
		}},

		// ---- legacy annotation under v1 ----
		{name: "v1-legacy-annotation-isolates-ingress", opts: opts(v1m, 1), steps: one(ttStep{
			// z: annotated, no policy; y: annotated, policies still allow
			// (and v1 egress isolation works as usual).
			mutate: annotate(defaultDeny, false, "y", "z"),
			add: []string{
				v1("y", "from-x", `
					podSelector: {}
					ingress:
					- from:
					  - namespaceSelector:
					      matchLabels: {ns: x}
				`),
				v1("y", "a-no-egress", `
					podSelector:
					  matchLabels: {pod: a}
					policyTypes: [Egress]
				`),
			},
			want: func(r *reach) {
				r.Expect("all", "y/*|z/*", false).Expect("x/*", "y/*", true).Expect("y/a", "*", false)
			},
		})},
		{name: "v1-malformed-annotation-fails-closed", opts: opts(v1m, 1), steps: one(ttStep{
			mutate: annotate(`{"ingress":`, true, "z"),
			want:   func(r *reach) { r.Expect("all", "z/*", false) },
		})},

		// ---- v1.6 mode ----
		{name: "v16-annotated-namespace-isolated", opts: opts(v16, 2), steps: one(ttStep{
			mutate: annotate(defaultDeny, false, "x"),
			add: []string{v1beta1("x", "b-to-a", `
				podSelector:
				  matchLabels: {pod: a}
				ingress:
				- from:
				  - podSelector:
				      matchLabels: {pod: b}
			`)},
			// Even x's own pods are cut off, except what is whitelisted.
			want: func(r *reach) { r.Expect("all", "x/*", false).Expect("x/b", "x/a", true) },
		})},
		{name: "v16-unannotated-namespace-policies-no-effect", opts: opts(v16, 1), steps: one(ttStep{
			mutate: annotate(defaultDeny, false, "x"),
			add: []string{
				v1beta1("x", "from-a", `
					podSelector: {}
					ingress:
					- from:
					  - podSelector:
					      matchLabels: {pod: a}
				`),
				v1beta1("y", "from-a", `
					podSelector: {}
					ingress:
					- from:
					  - podSelector:
					      matchLabels: {pod: a}
				`),
				v1beta1("y", "select-all", `
					podSelector: {}
				`),
			},
			want: func(r *reach) { r.Expect("all", "x/*", false).Expect("x/a", "x/*", true) },
		})},
		{name: "v16-egress-ignored", opts: opts(v16, 1), steps: one(ttStep{
			mutate: annotate(defaultDeny, false, "x", "z"),
			add: []string{
				v1beta1("x", "in-and-out", `
					podSelector: {}
					policyTypes: [Ingress, Egress]
					ingress:
					- from:
					  - namespaceSelector:
					      matchLabels: {ns: "y"}
					egress:
					- to:
					  - podSelector:
					      matchLabels: {pod: nobody}
				`),
				v1beta1("y", "no-egress", `
					podSelector: {}
					policyTypes: [Egress]
				`),
				v1beta1("z", "no-egress", `
					podSelector: {}
					policyTypes: [Egress]
				`),
			},
			// Only ingress exists in 1.6: x takes only y; nobody's egress is
			// restricted.
			want: func(r *reach) {
				r.Expect("all", "x/*", false).Expect("y/*", "x/*", true).Expect("all", "z/*", false)
			},
		})},
		{name: "v16-empty-ingress-list-keeps-isolation", opts: opts(v16, 1), steps: one(ttStep{
			mutate: annotate(defaultDeny, false, "x", "z"),
			add: []string{
				v1beta1("x", "empty", "podSelector: {}\ningress: []"),
				v1beta1("y", "empty", "podSelector: {}\ningress: []"),
				v1beta1("z", "open", "podSelector: {}\ningress:\n- {}"),
			},
			// x stays isolated, y stays open, z is isolated but whitelists all.
			want: func(r *reach) { r.Expect("all", "x/*", false) },
		})},
		{name: "v16-seed-policy", opts: opts(v16, 1),
			probes: append(append([]probe(nil), netpoltest.StandardProbes...), tcp6379, udp6379),
			steps: one(ttStep{
				mutate: all(
					annotate(defaultDeny, false, "x"),
					nsLabels("y", "project", "myproject"),
					podLabels("x/a", "role", "db", "x/b", "role", "frontend", "z/c", "role", "frontend"),
				),
				add: []string{v1beta1("x", "test-network-policy", `
					podSelector:
					  matchLabels:
					    role: db
					ingress:
					- from:
					  - namespaceSelector:
					      matchLabels:
					        project: myproject
					  - podSelector:
					      matchLabels:
					        role: frontend
					  ports:
					  - protocol: tcp
					    port: 6379
				`)},
				// z/c is a frontend of another namespace: not allowed.
				want: func(r *reach) {
					r.Expect("all", "x/*", false).Expect("y/*|x/b", "x/a", true, tcp6379)
				},
			})},
		{name: "v16-annotation-removed-reopens", opts: opts(v16, 1), steps: []ttStep{
			{
				name:   "annotated",
				mutate: annotate(defaultDeny, false, "x"),
				add: []string{v1beta1("x", "from-a", `
					podSelector: {}
					ingress:
					- from:
					  - podSelector:
					      matchLabels: {pod: a}
				`)},
				want: func(r *reach) { r.Expect("all", "x/*", false).Expect("x/a", "x/*", true) },
			},
			{
				name:   "annotation-removed",
				mutate: func(t *testing.T, f *netpoltest.Fixture) { setNamespace(t, f, "x", nil, false) },
				want:   nil,
			},
		}},
		{name: "v16-malformed-annotation-fails-closed", opts: opts(v16, 1), steps: one(ttStep{
			mutate: all(
				annotate("DefaultDeny", true, "y"),
				annotate(`{"ingress":{"isolation":"DefaultAllow"}}`, true, "z"),
			),
			add: []string{v1beta1("y", "from-x", `
				podSelector: {}
				ingress:
				- from:
				  - namespaceSelector:
				      matchLabels: {ns: x}
				  ports:
				  - {protocol: tcp, port: 80}
			`)},
			want: func(r *reach) { r.Expect("all", "y/*|z/*", false).Expect("x/*", "y/*", true, tcp80) },
		})},

		// ---- multi-node: each side enforced on its own node ----
		{name: "multinode-enforcement-points", opts: opts(v1m, 2), steps: one(ttStep{
			// node-1: x/a x/c y/b z/a z/c; node-2: x/b y/a y/c z/b.
			add: []string{
				v1("y", "a-from-xa", `
					podSelector:
					  matchLabels: {pod: a}
					ingress:
					- from:
					  - namespaceSelector:
					      matchLabels: {ns: x}
					    podSelector:
					      matchLabels: {pod: a}
				`),
				v1("x", "c-to-yc", `
					podSelector:
					  matchLabels: {pod: c}
					policyTypes: [Egress]
					egress:
					- to:
					  - namespaceSelector:
					      matchLabels: {ns: "y"}
					    podSelector:
					      matchLabels: {pod: c}
				`),
			},
			want: func(r *reach) {
				r.Expect("all", "y/a", false).Expect("x/a", "y/a", true)
				r.Expect("x/c", "*", false).Expect("x/c", "y/c", true)
			},
			check: func(t *testing.T, w *netpoltest.World) {
				if w.F.Pods["y/a"].Node != "node-2" || w.F.Pods["x/a"].Node != "node-1" || w.F.Pods["x/c"].Node != "node-1" {
					t.Fatalf("unexpected pod placement")
				}
				// y/a's ingress is enforced on node-2 (br2), x/c's egress on node-1 (br1).
				expectTrace(t, w, "z/a", "y/a", tcp80, 4, false, "br2")
				expectTrace(t, w, "x/c", "z/b", tcp80, 4, false, "br1")
				expectTrace(t, w, "x/c", "y/a", tcp80, 4, false, "br1")
				expectTrace(t, w, "x/a", "y/a", tcp80, 4, true, "")
				expectTrace(t, w, "x/c", "y/c", udp81, 4, true, "")
				if n := ruleFlowCount(t, w, "node-1", "y/a-from-xa", model.Ingress, 0); n != 0 {
					t.Errorf("node-1 has %d flows of y/a-from-xa's ingress rule; its target lives on node-2", n)
				}
				if n := ruleFlowCount(t, w, "node-2", "y/a-from-xa", model.Ingress, 0); n == 0 {
					t.Errorf("node-2 has no flow of y/a-from-xa's ingress rule")
				}
				if n := ruleFlowCount(t, w, "node-2", "x/c-to-yc", model.Egress, 0); n != 0 {
					t.Errorf("node-2 has %d flows of x/c-to-yc's egress rule; its target lives on node-1", n)
				}
				if n := ruleFlowCount(t, w, "node-1", "x/c-to-yc", model.Egress, 0); n == 0 {
					t.Errorf("node-1 has no flow of x/c-to-yc's egress rule")
				}
			},
		})},

		// ---- updates and deletes ----
		{name: "v1-policy-delete", opts: opts(v1m, 1), steps: []ttStep{
			{
				name: "deny-and-allow",
				add: []string{
					v1("x", "deny", "podSelector: {}"),
					v1("x", "from-y", `
						podSelector: {}
						ingress:
						- from:
						  - namespaceSelector:
						      matchLabels: {ns: "y"}
					`),
				},
				want: func(r *reach) { r.Expect("all", "x/*", false).Expect("y/*", "x/*", true) },
			},
			{
				name:   "allow-deleted",
				remove: []string{"x/from-y"},
				want:   func(r *reach) { r.Expect("all", "x/*", false) },
			},
		}},
	}
}
