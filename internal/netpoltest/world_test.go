package netpoltest

import (
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"k8s.io/apimachinery/pkg/labels"
)

// TestWorldSmoke: with no policy everything is reachable; a deny-all ingress
// policy in x closes x to everyone but itself and its node.
func TestWorldSmoke(t *testing.T) {
	f := NewFixture(Options{Nodes: 2})
	w := NewWorld(t, f)
	w.Apply(t)
	probes := []Probe{{model.TCP, 80}, {model.UDP, 81}, {model.SCTP, 80}}
	start := time.Now()
	got := w.Matrix(t, probes, 4)
	t.Logf("%d cells traced in %v", got.Cells(), time.Since(start))
	want := NewReachability(f, probes, true)
	if n, d := want.Diff(got, "expected", "traced"); n > 0 {
		t.Fatalf("no policies:\n%s", d)
	}

	f.Cluster.AddPolicy(&model.Policy{Namespace: "x", Name: "deny", PodSelector: labels.Everything(), AffectsIngress: true})
	w.Apply(t)
	got = w.Matrix(t, probes, 4)
	want = NewReachability(f, probes, true).Expect("all", "x/*", false).ExpectSelfAndNode()
	if n, d := want.Diff(got, "expected", "traced"); n > 0 {
		t.Fatalf("deny-all in x:\n%s", d)
	}
	if n, d := want.Diff(Evaluate(f, probes), "expected", "evaluator"); n > 0 {
		t.Fatalf("deny-all in x:\n%s", d)
	}
}
