package e2e

// TestDiff: `ovs-netpol diff` (the BUILT CLI) predicts what applying a
// changed manifest does, and the prediction is checked against reality:
// the connections it lists as opening or closing are exactly the cells of
// the real probe matrix that flip when the manifest is then applied with
// kubectl, and the flows it lists as added or removed are exactly those
// that appear on and disappear from the bridge. The matrices before and
// after are written by hand from the semantics and probed with real
// connections (world.check), so the diff is compared with observed traffic
// through an expectation the probes confirmed, not with itself.
//
// TestKubectlPlugin: the built CLI linked as kubectl-ovs_netpol on PATH is
// run by the real kubectl as `kubectl ovs-netpol --version`.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/flowsync"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// The worlds' namespaces (a cluster of its own: the shared one keeps other
// tests' stale Pod objects, some sharing addresses, which the CLI rightly
// refuses to normalize).
const (
	diffNSX = "diff-x"
	diffNSY = "diff-y"
)

// Live: diff-x/a admits diff-x's pods on TCP 80; diff-y/c admits everyone
// on TCP 80, TCP 81 and UDP 80.
var (
	diffLiveX = np(diffNSX, "web", `podSelector: {matchLabels: {pod: a}}
ingress:
- from: [{podSelector: {}}]
  ports: [{port: 80}]`)
	diffLiveY = np(diffNSY, "open", `podSelector: {matchLabels: {pod: c}}
ingress:
- ports: [{port: 80}, {port: 81}, {protocol: UDP, port: 80}]`)
	// Changed: diff-x/web widened to every namespace's pods on TCP 80 and
	// 81; diff-y/open tightened to diff-x/b on TCP 80.
	diffNewX = np(diffNSX, "web", `podSelector: {matchLabels: {pod: a}}
ingress:
- from: [{namespaceSelector: {}}]
  ports: [{port: 80}, {port: 81}]`)
	diffNewY = np(diffNSY, "open", `podSelector: {matchLabels: {pod: c}}
ingress:
- from: [{namespaceSelector: {matchLabels: {ns: diff-x}}, podSelector: {matchLabels: {pod: b}}}]
  ports: [{port: 80}]`)
)

// diffMatrix: every pod, the node and the external address to every pod,
// TCP and UDP 80 and 81, all allowed; edit with expect.
func diffMatrix(pods []string) *matrix {
	from := append(append([]string(nil), pods...), srcNode, srcExt)
	return newMatrix(stdProbes, from, pods, true)
}

// diffJSON is the part of `diff -o json` the test reads.
type diffJSON struct {
	Warnings    []string `json:"warnings"`
	Connections []struct {
		From, To struct {
			Kind, Name, IP string
		}
		Ports struct {
			Protocol string     `json:"protocol"`
			Ranges   [][2]int32 `json:"ranges"`
		} `json:"ports"`
		Opens  bool     `json:"opens"`
		Causes []string `json:"causes"`
	} `json:"connections"`
	Nodes []struct {
		Node     string `json:"node"`
		Bindings string `json:"bindings"`
		Flows    []struct {
			Added  bool   `json:"added"`
			Flow   string `json:"flow"`
			Origin string `json:"origin"`
		} `json:"flows"`
	} `json:"nodes"`
}

func TestDiff(t *testing.T) {
	start := time.Now()
	w := newPrivateWorld(t, "diff", "10.87")
	n := w.addNode(t)
	n.startAgent(t, "v1")
	w.ensureNamespace(t, diffNSX, map[string]string{"ns": diffNSX})
	w.ensureNamespace(t, diffNSY, map[string]string{"ns": diffNSY})
	var pods []string
	for _, p := range []struct{ ns, name string }{{diffNSX, "a"}, {diffNSX, "b"}, {diffNSY, "c"}, {diffNSY, "d"}} {
		n.addPod(t, podSpec{ns: p.ns, name: p.name, labels: map[string]string{"pod": p.name}})
		pods = append(pods, p.ns+"/"+p.name)
	}
	w.waitPodsRealized(t)
	w.change(t, func() { w.kubectlApply(t, diffLiveX, diffLiveY) })

	// Live, by hand: diff-x/a only from diff-x's pods on TCP 80;
	// diff-y/c from anyone on TCP 80, 81 and UDP 80.
	live := diffMatrix(pods).
		expect("all", "diff-x/a", false).
		expect("diff-x/*", "diff-x/a", true, tcp80).
		expect("all", "diff-y/c", false).
		expect("all", "diff-y/c", true, tcp80, tcp81, udp80).
		always()
	w.check(t, live)

	// Step 1: diff-x/web widened, diff-y/open tightened. After, by hand:
	// diff-x/a from every pod on TCP 80 and 81 (not from the external
	// address: a namespace selector selects pods only); diff-y/c from
	// diff-x/b on TCP 80.
	changed := filepath.Join(w.dir, "CHANGED.yaml")
	if err := os.WriteFile(changed, []byte(diffNewX+"---\n"+diffNewY), 0o644); err != nil {
		t.Fatal(err)
	}
	step1 := diffMatrix(pods).
		expect("all", "diff-x/a", false).
		expect("*", "diff-x/a", true, tcp80, tcp81).
		expect("all", "diff-y/c", false).
		expect("diff-x/b", "diff-y/c", true, tcp80).
		always()
	w.diffStep(t, n, "widen diff-x/web, tighten diff-y/open", live, step1, []string{"-f", changed},
		func() { w.kubectlApply(t, diffNewX, diffNewY) })

	// Step 2: diff-x/web deleted (--delete) and a new egress policy for
	// diff-y/d (only to diff-x's pods on TCP 80). After, by hand: diff-x/a
	// open to all; diff-y/c as in step 1; diff-y/d reaches diff-x's pods
	// on TCP 80 only (and itself).
	egressD := np(diffNSY, "d-out", `podSelector: {matchLabels: {pod: d}}
policyTypes: [Egress]
egress:
- to: [{namespaceSelector: {matchLabels: {ns: diff-x}}}]
  ports: [{port: 80}]`)
	added := filepath.Join(w.dir, "ADDED.yaml")
	deleted := filepath.Join(w.dir, "DELETED.yaml")
	if err := os.WriteFile(added, []byte(egressD), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(deleted, []byte(diffNewX), 0o644); err != nil {
		t.Fatal(err)
	}
	step2 := diffMatrix(pods).
		expect("all", "diff-y/c", false).
		expect("diff-x/b", "diff-y/c", true, tcp80).
		expect("diff-y/d", "*", false).
		expect("diff-y/d", "diff-x/*", true, tcp80).
		always()
	w.diffStep(t, n, "delete diff-x/web, add diff-y/d-out", step1, step2, []string{"-f", added, "--delete", deleted},
		func() {
			w.kubectlApply(t, egressD)
			if out, err := w.c.Kubectl("delete", "-f", deleted); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	t.Logf("TestDiff: %v", time.Since(start).Round(time.Millisecond))
}

// diffStep runs the built `ovs-netpol diff` with diffArgs against the live
// state (probed as matrix before), applies the change for real (apply),
// probes the matrix after, and checks (a) that the connections the diff
// lists, on the probed cells, are exactly the cells that flipped, and (b)
// that the flows it lists as added and removed are exactly those that
// appeared on and disappeared from the bridge; then that a diff of the
// same arguments shows nothing more to change.
func (w *world) diffStep(t *testing.T, n *node, name string, before, after *matrix, diffArgs []string, apply func()) {
	t.Helper()
	args := append(append([]string{"diff"}, diffArgs...), "--kubeconfig", w.c.Kubeconfig, "--ovs-rundir", n.sw.Dir, "--external-ip", extIP)
	t0 := time.Now()
	text, err := run(binPath("ovs-netpol"), args...)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	t.Logf("%s: ovs-netpol %s (%v):\n%s", name, strings.Join(args, " "), took.Round(time.Millisecond), text)
	out, err := run(binPath("ovs-netpol"), append(args, "-o", "json")...)
	if err != nil {
		t.Fatal(err)
	}
	var d diffJSON
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("diff -o json: %v\n%s", err, out)
	}
	if len(d.Nodes) != 1 || d.Nodes[0].Node != n.name || d.Nodes[0].Bindings != "bridge" {
		t.Fatalf("diff compared nodes %+v, want %s with the bridge's bindings", d.Nodes, n.name)
	}

	// Apply it for real.
	snapBefore := w.flowSnapshot(t)
	w.change(t, apply)
	snapAfter := w.flowSnapshot(t)
	w.check(t, after)

	// (a) Connections: the cells that flipped are the diff's.
	observed := map[string]bool{}
	for _, k := range before.keys() {
		if before.cells[k] != after.cells[k] {
			observed[fmt.Sprintf("%s %s -> %s", word(after.cells[k]), k.from, k.to)+" "+k.p.String()] = true
		}
	}
	predicted := map[string]bool{}
	var outside []string
	for _, c := range d.Connections {
		from, to := c.From.Name, c.To.Name
		if c.From.Kind == "external" && c.From.Name == extIP {
			from = srcExt
		}
		inMatrix := false
		for _, k := range before.keys() {
			if k.from != from || k.to != to || !strings.EqualFold(k.p.proto, c.Ports.Protocol) {
				continue
			}
			for _, r := range c.Ports.Ranges {
				if int32(k.p.port) >= r[0] && int32(k.p.port) <= r[1] {
					predicted[fmt.Sprintf("%s %s -> %s", word(c.Opens), k.from, k.to)+" "+k.p.String()] = true
					inMatrix = true
				}
			}
		}
		if !inMatrix {
			outside = append(outside, fmt.Sprintf("%s %s -> %s %s/%v", word(c.Opens), from, to, c.Ports.Protocol, c.Ports.Ranges))
		}
	}
	if got, want := setLines(predicted), setLines(observed); got != want {
		t.Errorf("%s: connections the diff predicted (on the probed cells):\n%s\nflipped in the real probes:\n%s", name, got, want)
	}
	t.Logf("%s: %d probed cells flipped (%d opened, %d closed), as predicted; %d more predicted changes outside the probed cells (SCTP, other ports, external destinations): %s",
		name, len(observed), countPrefix(observed, "opens"), countPrefix(observed, "closes"), len(outside), strings.Join(outside, "; "))
	if countPrefix(observed, "opens") == 0 || countPrefix(observed, "closes") == 0 {
		t.Errorf("%s: the change was meant to open and close connections: %d flipped", name, len(observed))
	}

	// (b) Flows: added and removed, as on the bridge (OVS prints a match's
	// fields in an order of its own: compared sorted).
	sortedText := func(f flowsync.InstalledFlow) string {
		f.Match = openflow.SortedFields(f.Match)
		return f.String()
	}
	canon := func(snap string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(snap, "\n") {
			if l == "" {
				continue
			}
			f, err := flowsync.ParseFlow(l)
			if err != nil {
				t.Fatalf("bridge flow %q: %v", l, err)
			}
			m[sortedText(f)] = true
		}
		return m
	}
	bm, am := canon(snapBefore[0]), canon(snapAfter[0])
	appeared, disappeared := map[string]bool{}, map[string]bool{}
	for f := range am {
		if !bm[f] {
			appeared[f] = true
		}
	}
	for f := range bm {
		if !am[f] {
			disappeared[f] = true
		}
	}
	added, removed := map[string]bool{}, map[string]bool{}
	origins := map[string]int{}
	for _, f := range d.Nodes[0].Flows {
		pf, err := flowsync.ParseFlow(f.Flow)
		if err != nil {
			t.Fatalf("diff flow %q: %v", f.Flow, err)
		}
		if f.Added {
			added[sortedText(pf)] = true
		} else {
			removed[sortedText(pf)] = true
		}
		origins[f.Origin]++
		if f.Origin == "" || strings.Contains(f.Origin, "unknown") {
			t.Errorf("flow without a known origin: %s %q", f.Flow, f.Origin)
		}
	}
	if setLines(added) != setLines(appeared) {
		t.Errorf("%s: flows the diff said would be added:\n%s\nflows that appeared on the bridge:\n%s", name, setLines(added), setLines(appeared))
	}
	if setLines(removed) != setLines(disappeared) {
		t.Errorf("%s: flows the diff said would be removed:\n%s\nflows that disappeared from the bridge:\n%s", name, setLines(removed), setLines(disappeared))
	}
	if len(added)+len(removed) == 0 {
		t.Errorf("%s: the change was meant to change flows", name)
	}
	var byOrigin []string
	for o, k := range origins {
		byOrigin = append(byOrigin, fmt.Sprintf("%s: %d", o, k))
	}
	sort.Strings(byOrigin)
	t.Logf("%s: flows %d added, %d removed, as on the bridge (%d flows before, %d after); by origin: %s",
		name, len(added), len(removed), len(bm), len(am), strings.Join(byOrigin, "; "))
	addSummary(fmt.Sprintf("TestDiff %s: ovs-netpol diff predicted %d probed connection flips (%d observed) and %d+%d flows (exactly the bridge's change) in %v",
		name, len(predicted), len(observed), len(added), len(removed), took.Round(time.Millisecond)))

	// Once applied, the same diff has nothing left to change.
	out, err = run(binPath("ovs-netpol"), append(args, "-o", "json")...)
	if err != nil {
		t.Fatal(err)
	}
	var again diffJSON
	if err := json.Unmarshal([]byte(out), &again); err != nil {
		t.Fatal(err)
	}
	if len(again.Connections) != 0 || len(again.Nodes) != 1 || len(again.Nodes[0].Flows) != 0 {
		t.Errorf("%s: diff after applying: %d connections, flows %+v; want none", name, len(again.Connections), again.Nodes)
	}
}

func word(opens bool) string {
	if opens {
		return "opens"
	}
	return "closes"
}

func setLines(m map[string]bool) string {
	var l []string
	for k := range m {
		l = append(l, "  "+k)
	}
	sort.Strings(l)
	return strings.Join(l, "\n")
}

func countPrefix(m map[string]bool, prefix string) int {
	n := 0
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

// TestKubectlPlugin: kubectl finds the CLI on PATH as kubectl-ovs_netpol
// and runs it as `kubectl ovs-netpol`.
func TestKubectlPlugin(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl is needed:", err)
	}
	dir := t.TempDir()
	// As make install lays it out: the plugin, and the helper kubectl runs
	// to complete the plugin's words.
	for _, name := range []string{"kubectl-ovs_netpol", "kubectl_complete-ovs_netpol"} {
		if err := os.Link(binPath("ovs-netpol"), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
	kc := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(kubectl, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	v := kc("ovs-netpol", "--version")
	want, err := run(binPath("ovs-netpol"), "--version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "kubectl ovs-netpol ") || strings.TrimPrefix(v, "kubectl ") != want {
		t.Fatalf("kubectl ovs-netpol --version: %q; ovs-netpol --version: %q", v, want)
	}
	list := kc("plugin", "list")
	if !strings.Contains(list, filepath.Join(dir, "kubectl-ovs_netpol")) {
		t.Fatalf("kubectl plugin list does not show it:\n%s", list)
	}
	help := kc("ovs-netpol", "diff", "--help")
	if !strings.Contains(help, "kubectl ovs-netpol diff -f CHANGED.yaml") {
		t.Fatalf("kubectl ovs-netpol diff --help does not use the plugin's name:\n%s", help)
	}
	// kubectl's own completion of the plugin's subcommands and flags.
	for _, c := range []struct{ words, want string }{
		{"co", "compile\t"},
		{"di", "diff\t"},
		{"diff --exter", "--external-ip\t"},
	} {
		out := kc(append([]string{"__complete", "ovs-netpol"}, strings.Fields(c.words)...)...)
		if !strings.Contains(out, c.want) {
			t.Fatalf("kubectl __complete ovs-netpol %s: no %q in\n%s", c.words, c.want, out)
		}
	}
	t.Logf("kubectl ovs-netpol --version: %s", strings.TrimSpace(v))
}
