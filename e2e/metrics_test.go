package e2e

// TestMetrics checks the agent's flow-counter metrics and its policy Events
// with real traffic: a policy admits pod client to pod server on TCP 80;
// client makes N real connections (each counted once, by its SYN: the rest
// of a connection passes as established before the policy tables), pod
// intruder makes M attempts that the server's isolation drops (each
// attempt's SYN; its timeout is below Linux's first SYN retransmission at
// 1 s, so one packet per attempt). The BUILT agent's /metrics must show the
// rule's allowed counter and the server's ingress denied counter moved by
// at least N and M packets (and at most twice that: anything more would be
// packets counted that this test did not send), flows per table equal to
// the bridge's, the policies gauge equal to the API's policies, and
// `kubectl get events` the Realized Event on the policy exactly once after
// a metadata-only update and a wait longer than the agent's per-policy gap.
// Then ovs-vswitchd restarts (flows and counters gone, replayed by the
// agent's full sync): the rule's total carries on from where it was, and
// the full sync records no second Event.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// metricsNS is TestMetrics' namespace (its Pod objects stay in the shared
// cluster: no other world may use it).
const metricsNS = "metrics"

// metricsScrape is one /metrics page: sample lines by "name{labels}" as printed.
type metricsScrape map[string]float64

// scrapeAgent reads the agent's /metrics (Prometheus text format).
func scrapeAgent(t *testing.T, a *agent) (metricsScrape, string) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		t.Fatalf("scraping %s: %v", a.metrics, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %v %s", a.metrics, err, resp.Status)
	}
	out := metricsScrape{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("bad sample line %q", line)
		}
		out[line[:i]] = v
	}
	return out, string(body)
}

// scrapeExcerpt is the lines of a scrape mentioning every one of subs.
func scrapeExcerpt(body string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		ok := !strings.HasPrefix(l, "#")
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestMetrics(t *testing.T) {
	const (
		allowedConns   = 10 // N
		deniedAttempts = 5  // M
		// minFrame is the least an IPv4 TCP packet takes on the wire
		// as OVS counts it (Ethernet 14 + IPv4 20 + TCP 20 bytes).
		minFrame = 54
	)
	w := newWorld(t, "metrics", "10.88")
	n := w.addNode(t)
	a := n.startAgent(t, "v1")
	w.ensureNamespace(t, metricsNS, nil)
	server := n.addPod(t, podSpec{ns: metricsNS, name: "server", labels: map[string]string{"app": "server"}})
	client := n.addPod(t, podSpec{ns: metricsNS, name: "client", labels: map[string]string{"app": "client"}})
	intruder := n.addPod(t, podSpec{ns: metricsNS, name: "intruder", labels: map[string]string{"app": "intruder"}})
	w.waitPodsRealized(t)
	before, _ := scrapeAgent(t, a)

	w.change(t, func() {
		w.kubectlApply(t, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-client
  namespace: `+metricsNS+`
spec:
  podSelector:
    matchLabels: {app: server}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: client}
    ports:
    - {protocol: TCP, port: 80}
`)
	})
	applied := time.Now()
	rule := `{direction="ingress",namespace="metrics",policy="allow-client",rule="0"}`
	allowedP, allowedB := "ovs_netpol_rule_allowed_packets_total"+rule, "ovs_netpol_rule_allowed_bytes_total"+rule
	denied := `ovs_netpol_pod_denied_packets_total{direction="ingress",namespace="metrics",pod="server"}`
	var base metricsScrape
	waitFor(t, "the rule's and the server's series", 30*time.Second, func() bool {
		base, _ = scrapeAgent(t, a)
		_, okA := base[allowedP]
		_, okD := base[denied]
		return okA && okD
	})

	// Real traffic.
	probe := func(p *pod, timeout string) string {
		out, err := agnhost(p.netns, "probe", "--timeout", timeout, fmt.Sprintf("tcp:%s:80", server.ip))
		if err != nil {
			t.Fatalf("probe from %s: %v\n%s", p.key(), err, out)
		}
		return strings.TrimSpace(out)
	}
	for i := range allowedConns {
		if out := probe(client, "2s"); !strings.Contains(out, " ok ") {
			t.Fatalf("allowed connection %d of %s: %q", i, client.key(), out)
		}
	}
	for i := range deniedAttempts {
		if out := probe(intruder, "500ms"); !strings.Contains(out, " fail ") {
			t.Fatalf("denied attempt %d of %s got through: %q", i, intruder.key(), out)
		}
	}
	sent := time.Now()

	// OVS moves datapath counts to its flows every ~0.5 s and the agent
	// caches a dump for 2 s: wait for the counts, then for one more of
	// each so that late ones are in before the upper bounds are checked.
	var last metricsScrape
	var body string
	waitFor(t, "the counters to move", 30*time.Second, func() bool {
		last, body = scrapeAgent(t, a)
		return last[allowedP]-base[allowedP] >= allowedConns && last[denied]-base[denied] >= deniedAttempts
	})
	seen := time.Since(sent)
	time.Sleep(3 * time.Second)
	last, body = scrapeAgent(t, a)
	dAllowed, dBytes, dDenied := last[allowedP]-base[allowedP], last[allowedB]-base[allowedB], last[denied]-base[denied]
	t.Logf("per-rule metrics (scrape excerpt):\n%s\n%s", scrapeExcerpt(body, "ovs_netpol_rule_allowed_", `namespace="metrics"`), scrapeExcerpt(body, "ovs_netpol_pod_denied_", `namespace="metrics"`))
	t.Logf("%d connections made: allowed packets +%v (%v bytes); %d denied attempts: denied packets +%v; counters seen %v after the traffic",
		allowedConns, dAllowed, dBytes, deniedAttempts, dDenied, seen.Round(time.Millisecond))
	if dAllowed < allowedConns || dAllowed > 2*allowedConns {
		t.Errorf("allowed packets of the rule moved by %v for %d connections, want %d..%d", dAllowed, allowedConns, allowedConns, 2*allowedConns)
	}
	if dBytes < minFrame*dAllowed {
		t.Errorf("allowed bytes moved by %v for %v packets: under %d bytes a packet", dBytes, dAllowed, minFrame)
	}
	if dDenied < deniedAttempts || dDenied > 2*deniedAttempts {
		t.Errorf("denied packets of %s moved by %v for %d attempts, want %d..%d", server.key(), dDenied, deniedAttempts, deniedAttempts, 2*deniedAttempts)
	}
	// Nothing was denied to the client, nor allowed to the intruder by a
	// rule of this namespace.
	for k, v := range last {
		if strings.Contains(k, `namespace="metrics"`) && strings.HasPrefix(k, "ovs_netpol_pod_denied_packets_total") && k != denied && v != 0 {
			t.Errorf("%s = %v, want 0", k, v)
		}
	}

	// The same figures on the bridge: the rule's conj_id flow.
	checkTableFlowMetrics(t, n, a)

	// Policies and rules: what the API holds, and one ingress rule more
	// than before the policy.
	nps, err := w.c.Client.NetworkingV1().NetworkPolicies("").List(w.ctx(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := last["ovs_netpol_policies"]; got != float64(len(nps.Items)) {
		t.Errorf("ovs_netpol_policies = %v, the API has %d NetworkPolicies", got, len(nps.Items))
	}
	in, eg := `ovs_netpol_policy_rules{direction="ingress"}`, `ovs_netpol_policy_rules{direction="egress"}`
	if last[in]-before[in] != 1 || last[eg] != before[eg] {
		t.Errorf("policy rules: ingress %v -> %v, egress %v -> %v; want one ingress rule more", before[in], last[in], before[eg], last[eg])
	}
	lagCount, lagSum := last["ovs_netpol_realization_lag_seconds_count"], last["ovs_netpol_realization_lag_seconds_sum"]
	if lagCount < 1 {
		t.Errorf("ovs_netpol_realization_lag_seconds_count = %v after a policy was applied", lagCount)
	}
	t.Logf("policies %v (API %d); rules ingress %v egress %v; realization lag: %v events, mean %.1f ms; bundles timed: %v, mean %.1f ms",
		last["ovs_netpol_policies"], len(nps.Items), last[in], last[eg], lagCount, 1000*lagSum/max(lagCount, 1),
		last["ovs_netpol_bundle_seconds_count"], 1000*last["ovs_netpol_bundle_seconds_sum"]/max(last["ovs_netpol_bundle_seconds_count"], 1))

	// Events: Realized once, also after a metadata-only update (no spec
	// change) and a wait beyond the agent's 10 s gap between Events of a
	// policy.
	if out, err := w.c.Kubectl("annotate", "-n", metricsNS, "networkpolicy", "allow-client", "e2e.ovs-netpol.io/note=metadata-only"); err != nil {
		t.Fatalf("kubectl annotate: %v\n%s", err, out)
	}
	if wait := 15*time.Second - time.Since(applied); wait > 0 {
		time.Sleep(wait)
	}
	out, err := w.c.Kubectl("get", "events", "-n", metricsNS, "-o", "json",
		"--field-selector", "involvedObject.kind=NetworkPolicy,involvedObject.name=allow-client")
	if err != nil {
		t.Fatalf("kubectl get events: %v\n%s", err, out)
	}
	var evs corev1.EventList
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		t.Fatalf("kubectl get events: %v\n%s", err, out)
	}
	var realized []corev1.Event
	for _, e := range evs.Items {
		t.Logf("event on allow-client: %s %s count=%d source=%s/%s: %s", e.Type, e.Reason, e.Count, e.Source.Component, e.Source.Host, e.Message)
		if e.Reason == "Realized" {
			realized = append(realized, e)
		}
	}
	if len(realized) != 1 || realized[0].Count > 1 || realized[0].Source.Host != n.name {
		t.Fatalf("%d Realized Events on allow-client (want exactly one, count 1, from %s), %v after the apply", len(realized), n.name, time.Since(applied).Round(time.Second))
	}
	if want := "Realized on node " + n.name + ": "; !strings.HasPrefix(realized[0].Message, want) || !strings.Contains(realized[0].Message, "for 1 rule (1 ingress, 0 egress); it selects 1 pod here.") {
		t.Errorf("Realized message %q", realized[0].Message)
	}

	// ovs-vswitchd restarts: the flows and their counters are gone until
	// the agent replays them. The totals carry on from where they were,
	// and the full sync records no Event.
	const moreConns = 3
	baseline := w.flowSnapshot(t)
	prev, _ := scrapeAgent(t, a)
	if err := n.sw.StopVswitchd(true); err != nil {
		t.Fatal(err)
	}
	if err := n.sw.StartVswitchd(); err != nil {
		t.Fatal(err)
	}
	restored := waitFor(t, "the agent to replay the flows", time.Minute, func() bool { return equalSnap(w.flowSnapshot(t), baseline) })
	for i := range moreConns {
		if out := probe(client, "2s"); !strings.Contains(out, " ok ") {
			t.Fatalf("allowed connection %d after the restart: %q", i, out)
		}
	}
	waitFor(t, "the counter to move after the restart", 30*time.Second, func() bool {
		last, _ = scrapeAgent(t, a)
		return last[allowedP]-prev[allowedP] >= moreConns
	})
	time.Sleep(3 * time.Second)
	last, body = scrapeAgent(t, a)
	t.Logf("ovs-vswitchd restarted, flows replayed in %v; %d more connections: allowed packets %v -> %v; counter resets seen %v:\n%s",
		restored.Round(time.Millisecond), moreConns, prev[allowedP], last[allowedP], last["ovs_netpol_flow_counter_resets_total"],
		scrapeExcerpt(body, "ovs_netpol_rule_allowed_packets_total", `namespace="metrics"`))
	if d := last[allowedP] - prev[allowedP]; d < moreConns || d > 2*moreConns {
		t.Errorf("allowed packets moved by %v across the restart for %d connections, want %d..%d (the total carries on)", d, moreConns, moreConns, 2*moreConns)
	}
	if got := countRealized(t, w); got != 1 {
		t.Errorf("%d Realized Events on allow-client after the full sync, want still 1", got)
	}
	totals.scenarios.Add(1)
}

// countRealized counts the Realized Events on metrics/allow-client, their
// aggregated counts included.
func countRealized(t *testing.T, w *world) int {
	t.Helper()
	list, err := w.c.Client.CoreV1().Events(metricsNS).List(w.ctx(), metav1.ListOptions{FieldSelector: "involvedObject.name=allow-client,reason=Realized"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range list.Items {
		n += int(max(e.Count, 1))
	}
	return n
}

// checkTableFlowMetrics compares ovs_netpol_table_flows with the bridge's own
// flows (ours: cookie magic 0x4e) per table, on a scrape taken between two
// equal dumps (the agent's figures are at most 2 s old: retried while the
// flows change).
func checkTableFlowMetrics(t *testing.T, n *node, a *agent) {
	t.Helper()
	count := func() (map[string]int, int) {
		flows, err := n.sw.DumpFlows(bridge, true)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, f := range flows {
			var table, cookie string
			for _, tok := range strings.FieldsFunc(f, func(r rune) bool { return r == ',' || r == ' ' }) {
				if v, ok := strings.CutPrefix(tok, "table="); ok {
					table = v
				}
				if v, ok := strings.CutPrefix(tok, "cookie="); ok {
					cookie = v
				}
			}
			if table == "" {
				table = "0"
			}
			if strings.HasPrefix(cookie, "0x4e") && len(cookie) == 18 {
				out[table]++
			}
		}
		return out, len(flows)
	}
	for try := 0; ; try++ {
		time.Sleep(2100 * time.Millisecond) // past the agent's cache
		want, all := count()
		got, body := scrapeAgent(t, a)
		again, _ := count()
		if fmt.Sprint(want) != fmt.Sprint(again) {
			if try < 5 {
				continue
			}
			t.Fatalf("the bridge's flows keep changing")
		}
		bad := false
		seen := 0
		for k, v := range got {
			if !strings.HasPrefix(k, "ovs_netpol_table_flows{") {
				continue
			}
			table := k[strings.Index(k, `table="`)+7:]
			table = table[:strings.IndexByte(table, '"')]
			seen += int(v)
			if int(v) != want[table] {
				bad = true
				t.Errorf("%s = %v, the bridge has %d of our flows in table %s", k, v, want[table], table)
			}
		}
		total := 0
		for _, c := range want {
			total += c
		}
		if seen != total {
			t.Errorf("ovs_netpol_table_flows sum to %d, the bridge has %d of our flows", seen, total)
		}
		if !bad {
			t.Logf("flows per table (scrape, equal to the bridge's %d of %d flows):\n%s", total, all, scrapeExcerpt(body, "ovs_netpol_table_flows{"))
		}
		return
	}
}
