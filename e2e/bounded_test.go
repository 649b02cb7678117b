package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ovs-netpol/ovs-netpol/internal/testproc"
)

// TestManySharedRulesAgent is the freeze, on the real stack: 4,200
// legal policies, created with kubectl, each allowing one peer pod to one
// target pod on its own TCP port. Before conjunction tiers one flow held
// 4,200 conjunction actions, OVS refused every bundle, and a deny-all
// created afterwards in another namespace was never enforced. Now the
// agent installs them (no sync error), real connections get each rule's
// verdict, and the deny-all is enforced within seconds.
//
// The policy count can be raised (OVS_NETPOL_MANY_POLICIES=20000) to run
// the 20,000-rule case through the agent.
func TestManySharedRulesAgent(t *testing.T) {
	policies := 4200
	if v := os.Getenv("OVS_NETPOL_MANY_POLICIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			t.Fatalf("OVS_NETPOL_MANY_POLICIES=%q: want a number ≥ 2", v)
		}
		policies = n
	}
	w := newWorld(t, "many", "10.72")
	n := w.addNode(t)
	a := n.startAgent(t, "v1")
	w.ensureNamespace(t, "many", map[string]string{"ns": "many"})
	w.ensureNamespace(t, "many-other", map[string]string{"ns": "many-other"})
	last := 1000 + policies - 1
	target := n.addPod(t, podSpec{ns: "many", name: "target", labels: map[string]string{"app": "target"}, tcp: []int{80, 1000, last}})
	n.addPod(t, podSpec{ns: "many", name: "peer", labels: map[string]string{"app": "peer"}})
	n.addPod(t, podSpec{ns: "many", name: "stranger", labels: map[string]string{"app": "stranger"}})
	victim := n.addPod(t, podSpec{ns: "many-other", name: "victim", labels: map[string]string{"app": "victim"}})
	client := n.addPod(t, podSpec{ns: "many-other", name: "client", labels: map[string]string{"app": "client"}})
	w.waitPodsRealized(t)
	_ = target

	// kubectl create, four processes at once (one takes over a minute).
	const parts = 4
	var files []string
	for part := range parts {
		var docs strings.Builder
		for i := part; i < policies; i += parts {
			fmt.Fprintf(&docs, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-%d, namespace: many}
spec:
  podSelector: {matchLabels: {app: target}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: peer}}}]
    ports: [{protocol: TCP, port: %d}]
---
`, i, 1000+i)
		}
		f := filepath.Join(w.dir, fmt.Sprintf("many-policies-%d.yaml", part))
		if err := os.WriteFile(f, []byte(docs.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	start := time.Now()
	errs := make(chan error, parts)
	for _, f := range files {
		go func() {
			out, err := w.c.Kubectl("create", "-f", f)
			if err != nil {
				err = fmt.Errorf("kubectl create -f %s: %v\n%s", f, err, testproc.Tail(out, 10))
			}
			errs <- err
		}()
	}
	for range files {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	created := time.Since(start)

	// The agent has them all when the conj_id flow of the last policy's
	// rule is on the bridge: one per policy, in table 40.
	errorsBefore := a.metric(t, "ovs_netpol_sync_errors_total")
	deadline := time.Now().Add(3 * time.Minute)
	conjIDs := 0
	for {
		out, err := n.sw.Ofctl("-O", "OpenFlow15", "dump-flows", bridge, "table=40")
		if err != nil {
			t.Fatal(err)
		}
		conjIDs = strings.Count(out, "conj_id=")
		if conjIDs >= policies {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the bridge has %d of %d conj_id flows; agent log:\n%s", time.Since(start).Round(time.Second), conjIDs, policies, testproc.Tail(a.log, 30))
		}
		time.Sleep(250 * time.Millisecond)
	}
	realized := time.Since(start)
	out, err := n.sw.Ofctl("-O", "OpenFlow15", "dump-flows", bridge, "table=40")
	if err != nil {
		t.Fatal(err)
	}
	most, prios := 0, map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		if c := strings.Count(l, "conjunction("); c > 0 {
			most = max(most, c)
			if i := strings.Index(l, "priority="); i >= 0 {
				prios[strings.SplitN(l[i:], ",", 2)[0]] = true
			}
		}
	}

	allowed := probeT{"tcp", 1000}
	allowedLast := probeT{"tcp", last}
	m := newMatrix([]probeT{allowed, allowedLast, tcp80}, []string{"many/peer", "many/stranger"}, []string{"many/target"}, false).
		expect("many/peer", "many/target", true, allowed, allowedLast)
	w.check(t, m)

	// A deny-all in another namespace, created now, is enforced.
	before := newMatrix([]probeT{tcp80}, []string{"many-other/client"}, []string{"many-other/victim"}, true)
	w.check(t, before)
	loop := startProbeLoop(t, "client → victim", client, fmt.Sprintf("tcp:%s:80", victim.ip), 50*time.Millisecond, 300*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	denyAt := time.Now()
	w.kubectlApply(t, np("many-other", "deny-all", "podSelector: {}\npolicyTypes: [Ingress]"))
	var enforced time.Duration
	for {
		atts := loop.attemptsSoFar()
		var lastOK time.Time
		failsAfter := 0
		for _, at := range atts {
			if at.start.After(denyAt) {
				if at.ok {
					lastOK, failsAfter = at.start, 0
				} else {
					failsAfter++
				}
			}
		}
		if failsAfter >= 10 {
			enforced = max(lastOK.Sub(denyAt), 0)
			break
		}
		if time.Since(denyAt) > 30*time.Second {
			t.Fatalf("deny-all in many-other not enforced 30 s after its creation (with %d policies in many); agent log:\n%s", policies, testproc.Tail(a.log, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	loop.stop()
	w.check(t, newMatrix([]probeT{tcp80}, []string{"many-other/client"}, []string{"many-other/victim"}, false))

	errors := a.metric(t, "ovs_netpol_sync_errors_total") - errorsBefore
	if errors != 0 {
		t.Errorf("%v sync errors while installing %d policies; agent log:\n%s", errors, policies, testproc.Tail(a.log, 30))
	}
	summary := fmt.Sprintf("%d policies sharing one peer and one target (kubectl create %v): on the bridge %v after the first create, %d conj_id flows in table 40, at most %d conjunctions in one flow over %d priorities, 0 sync errors; a deny-all created afterwards in another namespace: last new connection passed %v after its creation",
		policies, created.Round(time.Millisecond), realized.Round(time.Millisecond), conjIDs, most, len(prios), enforced.Round(time.Millisecond))
	t.Log(summary)
	addSummary(summary)
	totals.scenarios.Add(1)

	// One DeleteCollection of thousands of policies outlasts the shared
	// client's timeout.
	cfg := rest.CopyConfig(w.c.Config)
	cfg.Timeout = 10 * time.Minute
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := cs.NetworkingV1().NetworkPolicies("many").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	w.deletePolicies(t, "many-other")
}
