package e2e

// TestChurnSoak runs the built agent under steady churn: random pod creates
// and deletes (mostly remote pods, API objects on another node, and now and
// then a local pod attached through the CNI plugin), pod and namespace label
// changes, and policy creates, updates and deletes, at SOAK_RATE events/s for
// SOAK_DURATION. Every SOAK_PROBE_EVERY the churn pauses, the agent is left
// to settle, and real connections between the four long-lived local pods
// (TCP 80, TCP 81, UDP 80) are compared with the reference evaluator's
// verdicts on the apiserver's current objects. Throughout, the agent's log
// must have no warning or error line and its sync-error and rejected-object
// counters must not move. At the end every created object is deleted and
// every initial label and policy put back, and br-int's flows and groups
// (`ovs-ofctl dump-flows --no-stats`, `dump-groups`, sorted) must equal the
// initial dump byte for byte. The agent's RSS is sampled every 3 s; the run
// fails when the final sample exceeds 2× the first plus 64 MiB (a bound on
// unbounded growth, not a leak detector: a slow leak under that bound passes,
// which is why the figures are logged for comparison between runs).
//
// CI runs the 3-minute version with the fixed default seed. The full run:
//
//	SOAK_DURATION=20m go test ./e2e -run TestChurnSoak -v -timeout 40m
//
// (or `make soak`). The seed is logged; SOAK_SEED=N replays a sequence of
// events (the timing of the agent's batches still varies).

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/ovs-netpol/ovs-netpol/pkg/evaluator"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// soakConfig is read from the environment (defaults: the CI run).
type soakConfig struct {
	duration, probeEvery time.Duration
	seed                 uint64
	rate                 float64
}

func readSoakConfig(t *testing.T) soakConfig {
	c := soakConfig{duration: 3 * time.Minute, probeEvery: 20 * time.Second, seed: 1, rate: 8}
	var err error
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		if c.duration, err = time.ParseDuration(v); err != nil {
			t.Fatalf("SOAK_DURATION: %v", err)
		}
	}
	if v := os.Getenv("SOAK_PROBE_EVERY"); v != "" {
		if c.probeEvery, err = time.ParseDuration(v); err != nil {
			t.Fatalf("SOAK_PROBE_EVERY: %v", err)
		}
	}
	if v := os.Getenv("SOAK_SEED"); v == "random" {
		c.seed = uint64(time.Now().UnixNano())
	} else if v != "" {
		if c.seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("SOAK_SEED: %v", err)
		}
	}
	if v := os.Getenv("SOAK_RATE"); v != "" {
		if c.rate, err = strconv.ParseFloat(v, 64); err != nil || c.rate <= 0 {
			t.Fatalf("SOAK_RATE: %q is not a positive number", v)
		}
	}
	return c
}

// stablePods are the long-lived local pods the probes run between.
var stablePods = []struct{ ns, name string }{
	{"soak-a", "l0"}, {"soak-a", "l1"}, {"soak-b", "l2"}, {"soak-c", "l3"},
}

var soakProbes = []probeT{tcp80, tcp81, udp80}

func TestChurnSoak(t *testing.T) {
	cfg := readSoakConfig(t)
	t.Logf("churn soak: seed %d, %v at %.1f events/s, probes every %v (replay: SOAK_SEED=%d SOAK_DURATION=%v go test ./e2e -run TestChurnSoak -v)",
		cfg.seed, cfg.duration, cfg.rate, cfg.probeEvery, cfg.seed, cfg.duration)

	// A cluster of its own: the shared one keeps earlier tests' Pod objects
	// (no kubelet), some with addresses reused since, which the agent warns
	// about; and the churn's thousands of writes stay out of other tests.
	w := newPrivateWorld(t, "soak", "10.70")
	n := w.addNode(t)
	a := n.startAgent(t, "v1")
	s := &soakState{
		w: w, rng: rand.New(rand.NewPCG(cfg.seed, 0x736f616b)), namespaces: []string{"soak-a", "soak-b", "soak-c"},
		local: n, remoteNode: "soak-node-2",
		initPodLabels: map[string]map[string]string{}, initNSLabels: map[string]map[string]string{},
		initPolicies: map[string]networkingv1.NetworkPolicySpec{},
		remotePods:   map[string]string{}, localPods: map[string]*pod{}, policies: map[string]bool{},
		counts: map[string]int{},
	}
	for i := 10; i <= 250; i++ {
		s.freeRemoteIP = append(s.freeRemoteIP, fmt.Sprintf("%s.2.%d", w.net16, i))
	}

	// The initial object set.
	for _, ns := range s.namespaces {
		s.initNSLabels[ns] = s.randomNSLabels()
		w.ensureNamespace(t, ns, nil)
		if err := s.setNSLabels(ns, s.initNSLabels[ns]); err != nil {
			t.Fatal(err)
		}
	}
	var stable []string
	for _, sp := range stablePods {
		l := s.randomPodLabels(sp.name)
		p := n.addPod(t, podSpec{ns: sp.ns, name: sp.name, labels: l, ports: standardPorts()})
		s.initPodLabels[p.key()] = l
		stable = append(stable, p.key())
	}
	for i := 0; i < 6; i++ {
		ns, name := soakPick(s.rng, s.namespaces), fmt.Sprintf("init%d", i)
		l := s.randomPodLabels(name)
		if err := s.createRemotePod(ns, name, l); err != nil {
			t.Fatal(err)
		}
		// Initial: relabelled by the churn, never deleted.
		s.initPodLabels[ns+"/"+name] = l
		if i == 0 {
			if err := soakService(w, ns, name, s.remotePods[ns+"/"+name], s.remoteNode); err != nil {
				t.Fatal(err)
			}
		}
		delete(s.remotePods, ns+"/"+name)
	}
	l0 := w.pod(stable[0])
	if err := soakService(w, l0.ns, l0.name, l0.ip, n.name); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		key := fmt.Sprintf("%s/init-%d", soakPick(s.rng, s.namespaces), i)
		spec := s.randomPolicySpec()
		s.initPolicies[key] = spec
		if err := s.putPolicy(key, spec); err != nil {
			t.Fatal(err)
		}
	}
	w.waitPodsRealized(t)
	s.quiesce(t, a)
	initial, err := dumpBridge(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initial state: %d namespaces, %d local and %d remote pods, %d policies, 2 Services; br-int has %d flows and %d groups",
		len(s.namespaces), len(stablePods), 6, len(s.initPolicies), countLines(initial.flows), countLines(initial.groups))
	probes := s.probe(t, stable)

	prevProblems, logOffset, err := logProblems(a.log, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(prevProblems) > 0 {
		t.Errorf("the agent logged %d warnings/errors while the initial state was set up:\n%s", len(prevProblems), strings.Join(prevProblems, "\n"))
	}
	m0, err := agentMetrics(a)
	if err != nil {
		t.Fatal(err)
	}
	rss := startRSSSampler(a.p.cmd.Process.Pid, 3*time.Second)

	// The churn: event i is due at start + i/rate of churn time (pauses for
	// probes excluded); a late loop catches up without sleeping.
	var problems []string
	start := time.Now()
	var churnTime, pausedTime time.Duration
	events, checks := 0, 0
	lastProbe := time.Now()
	segStart := time.Now()
	for churnTime+time.Since(segStart) < cfg.duration {
		due := time.Duration(float64(events) / cfg.rate * float64(time.Second))
		if d := due - (churnTime + time.Since(segStart)); d > 0 {
			time.Sleep(d)
		}
		kind, err := s.step()
		if err != nil {
			t.Fatalf("seed %d, event %d (%s): %v", cfg.seed, events+1, kind, err)
		}
		s.counts[kind]++
		events++
		if time.Since(lastProbe) >= cfg.probeEvery {
			churnTime += time.Since(segStart)
			p0 := time.Now()
			s.quiesce(t, a)
			probes += s.probe(t, stable)
			checks++
			if lines, off, err := logProblems(a.log, logOffset); err != nil {
				t.Fatal(err)
			} else {
				logOffset = off
				problems = append(problems, lines...)
			}
			m, err := agentMetrics(a)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%v of churn: %d events, %d bundles, %d flows, %d policies, %d remote and %d local churn pods, %d log problems",
				churnTime.Round(time.Second), events, int(m["ovs_netpol_bundles_total"]-m0["ovs_netpol_bundles_total"]), int(m["ovs_netpol_flows"]),
				len(s.policies), len(s.remotePods), len(s.localPods), len(problems))
			if t.Failed() {
				t.Fatalf("stopping the soak at the first failure (seed %d, event %d)", cfg.seed, events)
			}
			pausedTime += time.Since(p0)
			lastProbe, segStart = time.Now(), time.Now()
		}
	}
	churnTime += time.Since(segStart)

	// Back to the initial object set.
	if err := s.restore(); err != nil {
		t.Fatal(err)
	}
	restoreStart := time.Now()
	var final bridgeDump
	for {
		if final, err = dumpBridge(n); err != nil {
			t.Fatal(err)
		}
		if final == initial || time.Since(restoreStart) > 60*time.Second {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	identical := final == initial
	if !identical {
		t.Errorf("br-int differs from the initial dump 60 s after the restore (seed %d):\nflows:\n%s\ngroups:\n%s",
			cfg.seed, lineDiff(initial.flows, final.flows), lineDiff(initial.groups, final.groups))
	}
	s.quiesce(t, a)
	probes += s.probe(t, stable)
	checks++

	samples, rssErr := rss.finish()
	if rssErr != nil {
		t.Errorf("sampling the agent's RSS: %v", rssErr)
	}
	lines, _, err := logProblems(a.log, logOffset)
	if err != nil {
		t.Fatal(err)
	}
	problems = append(problems, lines...)
	m1, err := agentMetrics(a)
	if err != nil {
		t.Fatal(err)
	}
	syncErrs := m1["ovs_netpol_sync_errors_total"] - m0["ovs_netpol_sync_errors_total"]
	rejected := sumPrefix(m1, "ovs_netpol_rejected_objects_total") - sumPrefix(m0, "ovs_netpol_rejected_objects_total")
	if len(problems) > 0 {
		t.Errorf("the agent logged %d warnings/errors during the churn (seed %d):\n%s", len(problems), cfg.seed, strings.Join(firstN(problems, 20), "\n"))
	}
	if syncErrs != 0 || rejected != 0 {
		t.Errorf("agent counters during the churn: %v sync errors, %v rejected objects (seed %d)", syncErrs, rejected, cfg.seed)
	}

	var initRSS, maxRSS, finalRSS int64
	if len(samples) > 0 {
		initRSS, finalRSS = samples[0], samples[len(samples)-1]
		for _, v := range samples {
			maxRSS = max(maxRSS, v)
		}
	}
	const slackKiB = 64 << 10
	if finalRSS > 2*initRSS+slackKiB {
		t.Errorf("agent RSS grew from %d KiB to %d KiB (bound: 2× initial + 64 MiB)", initRSS, finalRSS)
	}

	var kinds []string
	for k, v := range s.counts {
		kinds = append(kinds, fmt.Sprintf("%d %s", v, k))
	}
	sort.Strings(kinds)
	summary := fmt.Sprintf("churn soak (seed %d): %d events in %v of churn (%.1f/s; %v paused for %d probe rounds; %v in all): %s; "+
		"agent: %d events, %d bundles, %d flow mods, %v sync errors, %v rejected, %d log warnings/errors; %d real probes checked against the evaluator; "+
		"RSS initial %.1f MiB, max %.1f MiB, final %.1f MiB (%d samples every 3 s); flows and groups identical to the initial dump after the restore: %v (%d flows, restored in %v)",
		cfg.seed, events, churnTime.Round(time.Second), float64(events)/churnTime.Seconds(), pausedTime.Round(time.Second), checks, time.Since(start).Round(time.Second),
		strings.Join(kinds, ", "),
		int(m1["ovs_netpol_events_total"]-m0["ovs_netpol_events_total"]), int(m1["ovs_netpol_bundles_total"]-m0["ovs_netpol_bundles_total"]),
		int(m1["ovs_netpol_flow_mods_total"]-m0["ovs_netpol_flow_mods_total"]), syncErrs, rejected, len(problems), probes,
		float64(initRSS)/1024, float64(maxRSS)/1024, float64(finalRSS)/1024, len(samples), identical, countLines(final.flows),
		time.Since(restoreStart).Round(time.Millisecond))
	t.Log(summary)
	addSummary(summary)
	totals.scenarios.Add(1)
}

func countLines(s string) int {
	if s == "" {
		return 0
	}
	return strings.Count(s, "\n") + 1
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("... and %d more", len(s)-n))
	}
	return s
}

// quiesce waits until the agent has caught up: its processed-event counter
// and br-int's flows unchanged for 1 s.
func (s *soakState) quiesce(t *testing.T, a *agent) {
	t.Helper()
	start := time.Now()
	var lastEvents float64 = -1
	var lastFlows []string
	stableSince := time.Now()
	for {
		m, err := agentMetrics(a)
		if err != nil {
			t.Fatal(err)
		}
		flows := s.w.flowSnapshot(t)
		if m["ovs_netpol_events_total"] != lastEvents || !equalSnap(flows, lastFlows) {
			lastEvents, lastFlows, stableSince = m["ovs_netpol_events_total"], flows, time.Now()
		} else if time.Since(stableSince) >= time.Second {
			return
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("the agent did not settle within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// probe checks real connections between the stable pods against the
// evaluator's verdicts on the current API objects; it returns the number
// of cells probed.
func (s *soakState) probe(t *testing.T, keys []string) int {
	t.Helper()
	c, err := currentCluster(s.w, s.namespaces)
	if err != nil {
		t.Fatalf("reading the cluster for the evaluator: %v", err)
	}
	byKey := map[string]*model.Pod{}
	for _, p := range c.Pods {
		byKey[p.Key()] = p
	}
	want := newMatrix(soakProbes, keys, keys, false)
	for _, k := range want.keys() {
		src, dst := byKey[k.from], byKey[k.to]
		if src == nil || dst == nil {
			t.Fatalf("pod %s or %s missing from the apiserver's objects", k.from, k.to)
		}
		proto := model.TCP
		if k.p.proto == "udp" {
			proto = model.UDP
		}
		v := evaluator.Allowed(c, evaluator.PodEndpoint(src, netip.MustParseAddr(s.w.pod(k.from).ip)),
			evaluator.PodEndpoint(dst, netip.MustParseAddr(s.w.pod(k.to).ip)), proto, int32(k.p.port))
		want.cells[k] = v.Allowed
	}
	s.w.check(t, want)
	return len(want.cells)
}
