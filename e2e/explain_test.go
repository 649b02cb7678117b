package e2e

// TestExplainVerify: the BUILT ovs-netpol explains an allowed and a denied
// connection on the real stack (model verdict with the deciding rule or
// the isolating policy, and the trace through the agent's live flows with
// each flow's origin), verify agrees with the agent's flows, then catches
// an allow flow deleted by hand with ovs-ofctl (confirmed by a real
// connection that no longer passes), and agrees again once the agent has
// put the flow back. The agent's periodic verify (--verify-interval)
// exports its result and cost as metrics.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/testproc"
)

const (
	explainNSA = "explain-a"
	explainNSB = "explain-b"
)

// explainPolicy: explain-b/server admits explain-a's app=client pods on TCP
// 80, nothing else.
var explainPolicy = np(explainNSB, "allow-client", `podSelector: {matchLabels: {app: server}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: explain-a}}
    podSelector: {matchLabels: {app: client}}
  ports: [{protocol: TCP, port: 80}]`)

// runCLI runs the built CLI and returns its stdout+stderr and exit code.
func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binPath("ovs-netpol"), args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("ovs-netpol %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// scrape returns the value of one metric line (name with labels as
// exposed) from the agent's /metrics, and whether it is there.
func scrape(t *testing.T, addr, series string) (float64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %q", series, l)
			}
			return f, true
		}
	}
	return 0, false
}

func TestExplainVerify(t *testing.T) {
	w := newPrivateWorld(t, "explain", "10.86")
	w.podServices = true // every pod gets a Service: explain through a cluster IP
	n, n2 := w.addNode(t), w.addNode(t)
	link(t, n, n2)
	agentArgs := []string{"--verify-interval=3s"}
	a := n.startAgent(t, "v1", agentArgs...)
	n2.startAgent(t, "v1")
	w.ensureNamespace(t, explainNSA, map[string]string{"ns": explainNSA})
	w.ensureNamespace(t, explainNSB, map[string]string{"ns": explainNSB})
	client := n.addPod(t, podSpec{ns: explainNSA, name: "client", labels: map[string]string{"app": "client"}})
	n.addPod(t, podSpec{ns: explainNSA, name: "other", labels: map[string]string{"app": "other"}})
	server := n.addPod(t, podSpec{ns: explainNSB, name: "server", labels: map[string]string{"app": "server"}})
	// A client on the other node: its connections cross the uplink.
	n2.addPod(t, podSpec{ns: explainNSA, name: "remote", labels: map[string]string{"app": "client"}})
	w.waitPodsRealized(t)
	w.change(t, func() { w.kubectlApply(t, explainPolicy) })
	// The model's verdicts, confirmed by real connections first.
	w.check(t, newMatrix([]probeT{tcp80}, []string{"explain-a/client", "explain-a/other", "explain-a/remote"}, []string{"explain-b/server"}, false).
		expect("explain-a/client", "explain-b/server", true, tcp80).
		expect("explain-a/remote", "explain-b/server", true, tcp80))

	nodeArgs := []string{"--kubeconfig", w.c.Kubeconfig, "--ovs-rundir", n.sw.Dir}
	explain := func(from, to string, extra ...string) (string, int) {
		args := append(append([]string{"explain", "--from", from, "--to", to, "--port", "80"}, nodeArgs...), extra...)
		start := time.Now()
		out, code := runCLI(t, args...)
		t.Logf("$ ovs-netpol %s   (exit %d, %v)\n%s", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond), out)
		return out, code
	}
	verify := func(on ...*node) (string, int) {
		args := append([]string{"verify", "--external-ip", extIP}, nodeArgs...)
		if len(on) > 0 {
			args = []string{"verify", "--external-ip", extIP, "--kubeconfig", w.c.Kubeconfig, "--ovs-rundir", on[0].sw.Dir}
		}
		start := time.Now()
		out, code := runCLI(t, args...)
		t.Logf("$ ovs-netpol %s   (exit %d, %v)\n%s", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond), out)
		return out, code
	}
	mustContain := func(what, out string, subs ...string) {
		t.Helper()
		for _, s := range subs {
			if !strings.Contains(out, s) {
				t.Errorf("%s: output lacks %q", what, s)
			}
		}
	}

	// Allowed: the rule that allows it, delivered to the server's port.
	out, code := explain("explain-a/client", "explain-b/server")
	if code != 0 {
		t.Fatalf("explain of an allowed pair exited %d", code)
	}
	mustContain("explain allowed", out,
		"model verdict: ALLOWED",
		"allowed by policy explain-b/allow-client ingress rule 0",
		fmt.Sprintf("bridge: delivered to port %d; model: delivered to port %d: agrees with the model", server.ofport, server.ofport),
		"origin: policy explain-b/allow-client ingress rule 0",
		"origin: pod explain-a/client", "origin: pod explain-b/server")

	// Denied: the isolating policy, dropped by the server's isolation flow.
	out, code = explain("explain-a/other", "explain-b/server")
	if code != 0 {
		t.Fatalf("explain of a denied pair exited %d", code)
	}
	mustContain("explain denied", out,
		"model verdict: DENIED",
		"pod explain-b/server is isolated for ingress by policy explain-b/allow-client and no rule allows this connection",
		"bridge: dropped in table 40 by the flow at priority 20000; model: dropped: agrees with the model",
		"origin: pod explain-b/server — isolation of pod explain-b/server for ingress (isolated by policy explain-b/allow-client): no rule allowed the connection")

	// Through the server's Service: the backend the balancer picks.
	out, code = explain("explain-a/client", server.svcIP)
	if code != 0 {
		t.Fatalf("explain through a Service exited %d", code)
	}
	mustContain("explain through the Service", out,
		"Service explain-b/s-server port 80: balanced over 1 backend(s)",
		"the bridge's load balancer picked pod explain-b/server ("+server.ip+")",
		"origin: service explain-b/s-server",
		fmt.Sprintf("bridge: delivered to port %d; model: delivered to port %d: agrees with the model", server.ofport, server.ofport))

	// Across nodes: node 1 decides the remote client's ingress here (it
	// comes in over the uplink), and its own client's egress (out by the
	// uplink); the other side is node 2's.
	out, code = explain("explain-a/remote", "explain-b/server")
	if code != 0 {
		t.Fatalf("explain from the other node exited %d", code)
	}
	mustContain("explain from the other node", out, "which decides ingress here", fmt.Sprintf("packet: in_port=%d,", uplinkOFPort),
		fmt.Sprintf("bridge: delivered to port %d; model: delivered to port %d: agrees with the model", server.ofport, server.ofport))
	out, code = explain("explain-a/client", "explain-a/remote")
	if code != 0 {
		t.Fatalf("explain to the other node exited %d", code)
	}
	mustContain("explain to the other node", out, "which decides egress here",
		fmt.Sprintf("bridge: delivered to port %d; model: delivered to port %d: agrees with the model", uplinkOFPort, uplinkOFPort))

	// The same as JSON.
	out, code = explain("explain-a/other", "explain-b/server", "-o", "json")
	var x struct {
		Allowed bool
		Paths   []struct{ Ingress struct{ IsolatedBy []string } }
		Trace   struct {
			Delivered, Agrees bool
			Steps             []struct{ Table int }
		}
	}
	if err := json.Unmarshal([]byte(out), &x); err != nil || code != 0 {
		t.Fatalf("explain -o json (exit %d): %v", code, err)
	}
	if x.Allowed || x.Trace.Delivered || !x.Trace.Agrees || len(x.Paths) != 1 || strings.Join(x.Paths[0].Ingress.IsolatedBy, ",") != "policy explain-b/allow-client" {
		t.Fatalf("explain -o json of the denied pair: %+v", x)
	}

	// verify agrees with the agent's flows.
	out, code = verify()
	if code != 0 {
		t.Fatalf("verify exited %d on the agent's own flows", code)
	}
	mustContain("verify", out, ": 0 mismatches")
	// ... through the Services' cluster IPs too: client -> s-server is
	// checked against the backend the bridge picked.
	mustContain("verify through Services", out, "via Services (rows: from, columns: Service ports)", "explain-b/s-server TCP/80",
		"connections traced to cluster IPs (")
	if m := regexp.MustCompile(`node \S+: (\d+) connections traced to cluster IPs \((\d+) Service ports\) in (\S+): 0 mismatches`).FindStringSubmatch(out); m == nil {
		t.Errorf("verify: no count of the connections traced to cluster IPs with 0 mismatches")
	} else {
		t.Logf("verify on node 1: %s connections to cluster IPs over %s Service ports in %s", m[1], m[2], m[3])
	}
	jsonArgs := append([]string{"verify", "--external-ip", extIP, "-o", "json"}, nodeArgs...)
	jout, code := runCLI(t, jsonArgs...)
	var vr struct {
		ServiceCells []struct {
			From, To, Backend       string
			ModelAllowed, Delivered bool
			Mismatch                string
		}
		ServiceTraces int
	}
	if err := json.Unmarshal([]byte(jout), &vr); err != nil || code != 0 {
		t.Fatalf("verify -o json (exit %d): %v", code, err)
	}
	found := false
	for _, c := range vr.ServiceCells {
		if c.From == "explain-a/client" && c.To == "explain-b/s-server TCP/80" {
			found = true
			if !c.ModelAllowed || !c.Delivered || c.Mismatch != "" || !strings.Contains(c.Backend, "pod explain-b/server ("+server.ip+")") {
				t.Errorf("verify -o json: client through s-server: %+v, want allowed and delivered to the server", c)
			}
		}
	}
	if !found || vr.ServiceTraces != len(vr.ServiceCells) {
		t.Errorf("verify -o json: client through s-server checked %v, %d Service traces for %d cells", found, vr.ServiceTraces, len(vr.ServiceCells))
	}
	if out, code = verify(n2); code != 0 {
		t.Fatalf("verify exited %d on node 2", code)
	}
	mustContain("verify on node 2", out, ": 0 mismatches")

	// The agent's periodic verify: its metrics.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if v, _ := scrape(t, a.metrics, `ovs_netpol_verify_runs_total{result="agree"}`); v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agreeing periodic verify within 30 s; agent log:\n%s", testproc.Tail(a.log, 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
	mism, _ := scrape(t, a.metrics, "ovs_netpol_verify_mismatches")
	dur, _ := scrape(t, a.metrics, "ovs_netpol_verify_last_duration_seconds")
	traces, _ := scrape(t, a.metrics, "ovs_netpol_verify_last_traces")
	last, ok := scrape(t, a.metrics, "ovs_netpol_verify_last_run_timestamp_seconds")
	if !ok || mism != 0 || traces == 0 || time.Since(time.Unix(int64(last), 0)) > time.Minute {
		t.Fatalf("periodic verify metrics: mismatches %v traces %v last run %v", mism, traces, last)
	}
	runs := map[string]float64{}
	for _, r := range []string{"agree", "mismatch", "error"} {
		runs[r], _ = scrape(t, a.metrics, `ovs_netpol_verify_runs_total{result="`+r+`"}`)
	}
	t.Logf("agent's periodic verify: last run %v traces in %.3f s, %v mismatches; runs so far by result: %v", traces, dur, mism, runs)
	if runs["error"] != 0 {
		t.Errorf("periodic verify runs failed: %v (agent log:\n%s)", runs, testproc.Tail(a.log, 40))
	}

	// An allow flow deleted by hand. The agent compares the bridge's flow
	// count with what it committed every 5 s and resyncs, so it is
	// stopped first (its flows stay on the bridge) to keep the deletion.
	a.stop()
	flows, err := n.sw.DumpFlows(bridge, true)
	if err != nil {
		t.Fatal(err)
	}
	peerFlow := regexp.MustCompile(`table=40, priority=30000,ip,nw_src=` + regexp.QuoteMeta(client.ip) + ` actions=conjunction`)
	var match string
	for _, f := range flows {
		if peerFlow.MatchString(f) {
			match = fmt.Sprintf("table=40,priority=30000,ip,nw_src=%s", client.ip)
			t.Logf("deleting by hand: %s", f)
		}
	}
	if match == "" {
		t.Fatalf("no table-40 peer flow for %s among:\n%s", client.ip, strings.Join(flows, "\n"))
	}
	if out, err := n.sw.Ofctl("-O", "OpenFlow15", "del-flows", "--strict", bridge, match); err != nil {
		t.Fatalf("ovs-ofctl del-flows --strict %s: %v %s", match, err, out)
	}
	t.Logf("$ ovs-ofctl -O OpenFlow15 del-flows --strict %s '%s'", bridge, match)
	// ovs-vswitchd revalidates its datapath flow cache in the background:
	// until then a new connection can still match the megaflow the earlier
	// allowed ones installed (seen once: the probe connected).
	if err := n.sw.PurgeDatapathCache(); err != nil {
		t.Fatal(err)
	}
	// Real traffic agrees with what verify is about to say.
	res := w.observe(t, []cellKey{{tcp80, "explain-a/client", "explain-b/server"}}, false)
	for k, r := range res {
		t.Logf("real probe %s %s -> %s after the deletion: ok=%v (%s)", k.p, k.from, k.to, r.ok, r.why)
		if r.ok {
			t.Fatalf("the connection still passes after its allow flow was deleted")
		}
	}
	out, code = verify()
	if code == 0 {
		t.Fatal("verify exited 0 with an allow flow deleted")
	}
	mustContain("verify after the deletion", out,
		"MISMATCH explain-a/client -> explain-b/server TCP/80: model: allowed",
		"bridge: dropped in table 40 by the flow at priority 20000")
	// The same connection through the server's Service (its only backend).
	mustContain("verify after the deletion, through the Service", out,
		"MISMATCH explain-a/client -> Service explain-b/s-server TCP/80: model: delivered to port",
		"for the backend the bridge picked, pod explain-b/server ("+server.ip+")")
	if strings.Count(out, "MISMATCH ") != 2 {
		t.Errorf("verify reported %d mismatches, want exactly the deleted rule's two (at the pod address and through its Service)", strings.Count(out, "MISMATCH "))
	}
	out, code = explain("explain-a/client", "explain-b/server")
	if code == 0 {
		t.Fatal("explain exited 0 while the bridge drops an allowed connection")
	}
	mustContain("explain after the deletion", out, "model verdict: ALLOWED", "MISMATCH between the model and the bridge: the model allows it")

	// The agent restarts, resyncs, and everything agrees again.
	a = n.startAgent(t, "v1", agentArgs...)
	w.settle(t, w.flowSnapshot(t), 3*time.Second)
	if out, code = verify(); code != 0 {
		t.Fatalf("verify exited %d after the agent restored its flows", code)
	}
	w.check(t, newMatrix([]probeT{tcp80}, []string{"explain-a/client", "explain-a/other", "explain-a/remote"}, []string{"explain-b/server"}, false).
		expect("explain-a/client", "explain-b/server", true, tcp80).
		expect("explain-a/remote", "explain-b/server", true, tcp80))
	_ = a
}
