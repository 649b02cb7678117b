package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Helpers of refused_test.go (refused origins, duplicate pod IPs).

// metricValue reads one unlabelled metric from an agent's /metrics.
func metricValue(t *testing.T, a *agent, name string) float64 {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s in the agent's /metrics", name)
	return 0
}

// waitFor polls cond every 20 ms for up to timeout and returns how long it
// took; it fails the test with what on timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// logLines returns the agent's log lines containing every one of subs.
func (a *agent) logLines(subs ...string) []string {
	b, _ := os.ReadFile(a.log)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok && l != "" {
			out = append(out, l)
		}
	}
	return out
}

// eventsOn lists "Reason: message" of the Events on one object.
func (w *world) eventsOn(t *testing.T, ns, name string) []string {
	t.Helper()
	list, err := w.c.Client.CoreV1().Events(ns).List(w.ctx(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, fmt.Sprintf("%s (x%d, from %s): %s", e.Reason, e.Count, e.Source.Component, e.Message))
	}
	return out
}

// tableFlows counts the flows of one table of a node's bridge.
func (n *node) tableFlows(t *testing.T, table int) int {
	t.Helper()
	out, err := n.sw.Ofctl("-O", "OpenFlow15", "dump-aggregate", bridge, fmt.Sprintf("table=%d", table))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(tok, "flow_count="); ok {
			c, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	t.Fatalf("no flow_count in %q", out)
	return 0
}

// limitTable makes ovs-vswitchd refuse flows beyond limit in one table of
// the node's bridge (OVSDB Flow_Table flow_limit, overflow_policy=refuse);
// limit 0 removes the limit. The agent names its tables through the same
// Flow_Table rows, so the row is changed in place.
func (n *node) limitTable(t *testing.T, table, limit int) {
	t.Helper()
	uuid, err := n.sw.Vsctl("get", "Bridge", bridge, fmt.Sprintf("flow_tables:%d", table))
	if err != nil {
		t.Fatalf("the agent named no Flow_Table for table %d: %v", table, err)
	}
	uuid = strings.TrimSpace(uuid)
	args := []string{"set", "Flow_Table", uuid, fmt.Sprintf("flow_limit=%d", limit), "overflow_policy=refuse"}
	if limit == 0 {
		args = []string{"clear", "Flow_Table", uuid, "flow_limit"}
	}
	if out, err := n.sw.Vsctl(args...); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// dropped reports whether a new TCP connection from one local pod to
// another is dropped by the bridge now (ofproto/trace).
func (w *world) dropped(t *testing.T, from, to *pod, port int) bool {
	t.Helper()
	r, err := to.node.sw.Trace(bridge, fmt.Sprintf("in_port=%d,tcp,dl_src=%s,dl_dst=%s,nw_src=%s,nw_dst=%s,tcp_src=40000,tcp_dst=%d",
		from.ofport, from.mac, to.mac, from.ip, to.ip, port))
	if err != nil {
		t.Fatal(err)
	}
	return r.Dropped
}
