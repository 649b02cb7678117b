package e2e

// TestTwoNodes: two nodes, each its own Open vSwitch (run dir, bridge,
// ovs-vswitchd in its own network namespace) and agent (--node-name), their
// bridges linked by a veth between the two switches' namespaces (each end the
// bridge's --uplink-port). Pods a1, b1, c1 on node 1 and a2, b2 on node 2
// share one subnet. An ingress policy on node 2's pod a2 and an egress
// policy on node 1's pod b1 are each enforced where the pod runs, with real
// traffic, shown by the counters of the flows that forwarded and dropped it.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var twoPods = []string{"two/a1", "two/b1", "two/c1", "two/a2", "two/b2"}

func TestTwoNodes(t *testing.T) {
	w := newWorld(t, "two", "10.63")
	w.podServices = true
	n1, n2 := w.addNode(t), w.addNode(t)
	link(t, n1, n2)
	n1.startAgent(t, "v1")
	n2.startAgent(t, "v1")
	w.ensureNamespace(t, "two", map[string]string{"ns": "two"})
	for _, key := range twoPods {
		name := strings.TrimPrefix(key, "two/")
		n := n1
		if strings.HasSuffix(name, "2") {
			n = n2
		}
		n.addPod(t, podSpec{ns: "two", name: name, labels: map[string]string{"pod": name}, ports: standardPorts()})
	}
	w.waitPodsRealized(t)
	from := append(append([]string(nil), twoPods...), srcNode, srcExt)
	matrixOf := func(want func(m *matrix)) *matrix {
		m := newMatrix(stdProbes, from, twoPods, true)
		if want != nil {
			want(m)
		}
		return m.always()
	}

	t.Run("open-across-nodes", func(t *testing.T) {
		w.check(t, matrixOf(nil))
		w.check(t, matrixOf(nil).throughServices())
	})

	a2, b1 := w.pod("two/a2"), w.pod("two/b1")
	t.Run("ingress-on-node-2-egress-on-node-1", func(t *testing.T) {
		w.change(t, func() {
			w.kubectlApply(t,
				np("two", "a2-from-a1", "podSelector:\n  matchLabels: {pod: a2}\ningress:\n- from:\n  - podSelector:\n      matchLabels: {pod: a1}"),
				np("two", "b1-to-b2", "podSelector:\n  matchLabels: {pod: b1}\npolicyTypes: [Egress]\negress:\n- to:\n  - podSelector:\n      matchLabels: {pod: b2}"))
		})
		want := matrixOf(func(m *matrix) {
			m.expect("all", "two/a2", false).expect("two/a1", "two/a2", true).
				expect("two/b1", "*", false).expect("two/b1", "two/b2", true)
		})
		w.check(t, want)
		// Through the Services: balanced on the client's node, egress
		// decided there, ingress on the backend's node.
		w.check(t, want.throughServices())

		// Where each side is enforced: a2's ingress isolation exists on
		// node 2 only, b1's egress isolation on node 1 only.
		isoIn := fmt.Sprintf("table=40, priority=20000,ip,nw_dst=%s ", a2.ip)
		isoOut := fmt.Sprintf("table=30, priority=20000,in_port=%d ", b1.ofport)
		snap := w.flowSnapshot(t)
		for _, c := range []struct {
			node  int
			flow  string
			there bool
		}{{1, isoIn, false}, {2, isoIn, true}, {1, isoOut, true}, {2, isoOut, false}} {
			if got := strings.Contains(snap[c.node-1], c.flow); got != c.there {
				t.Errorf("node %d has %q: %v, want %v", c.node, c.flow, got, c.there)
			}
		}

		// Real traffic c1 -> a2 (denied by a2's ingress): node 1 forwards it
		// to the uplink, node 2 drops it.
		fwd := fmt.Sprintf("table=60, .*priority=90,ip,nw_dst=%s actions=output:%d", regexp.QuoteMeta(a2.ip), uplinkOFPort)
		drop := fmt.Sprintf("table=40, .*priority=20000,ip,nw_dst=%s actions=drop", regexp.QuoteMeta(a2.ip))
		fwd0, drop0 := packets(t, n1, fwd), packets(t, n2, drop)
		res := w.observe(t, []cellKey{{tcp80, "two/c1", "two/a2"}, {udp81, "two/c1", "two/a2"}}, false)
		for k, r := range res {
			if r.ok {
				t.Errorf("%s c1 -> a2 passed", k.p)
			}
		}
		fwd1, drop1 := packets(t, n1, fwd), packets(t, n2, drop)
		t.Logf("c1 (node 1) -> a2 (node 2): node 1 forwarded %d packets to the uplink, node 2 dropped %d", fwd1-fwd0, drop1-drop0)
		if fwd1 <= fwd0 || drop1 <= drop0 {
			t.Errorf("want node 1 to forward (%d -> %d) and node 2 to drop (%d -> %d) c1's packets", fwd0, fwd1, drop0, drop1)
		}
		// And b1 -> a1 (denied by b1's egress) never leaves node 1: the
		// trace on node 1 drops it in table 30.
		a1 := w.pod("two/a1")
		r, err := n1.sw.Trace(bridge, fmt.Sprintf("in_port=%d,tcp,dl_src=%s,dl_dst=%s,nw_src=%s,nw_dst=%s,tcp_src=40000,tcp_dst=80", b1.ofport, b1.mac, a1.mac, b1.ip, a1.ip))
		totals.traces.Add(1)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Dropped || !strings.Contains(r.Raw, fmt.Sprintf("in_port=%d, priority 20000", b1.ofport)) {
			t.Errorf("b1 -> a1 on node 1: want a drop by b1's egress isolation:\n%s", r.Raw)
		} else {
			t.Logf("b1 -> a1 traced on node 1: dropped by b1's egress isolation (table 30, in_port=%d, priority 20000)", b1.ofport)
		}
		totals.scenarios.Add(1)
	})

	t.Run("policies-deleted", func(t *testing.T) {
		w.change(t, func() { w.deletePolicies(t, "two") })
		w.check(t, matrixOf(nil))
		totals.scenarios.Add(1)
	})
}

var nPackets = regexp.MustCompile(`n_packets=(\d+)`)

// packets sums n_packets of the flows of node n matching the regexp.
func packets(t *testing.T, n *node, flow string) int {
	t.Helper()
	re := regexp.MustCompile(flow)
	flows, err := n.sw.DumpFlows(bridge, false)
	if err != nil {
		t.Fatal(err)
	}
	sum, found := 0, false
	for _, f := range flows {
		if re.MatchString(f) {
			found = true
			if m := nPackets.FindStringSubmatch(f); m != nil {
				v, _ := strconv.Atoi(m[1])
				sum += v
			}
		}
	}
	if !found {
		t.Fatalf("node %s has no flow matching %s", n.name, flow)
	}
	return sum
}
