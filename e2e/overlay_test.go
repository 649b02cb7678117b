package e2e

// The Geneve overlay end to end (issue 13), on the routed world of
// overlay_harness_test.go: nodes in separate network namespaces joined by a
// router, no shared L2, every agent started with the same arguments.
//
// TestOverlayThreeNodes: pods on three nodes; full matrices (pod IPs and
// the pods' Services' cluster IPs) open, then under ingress and egress
// policies (podSelector, namespaceSelector, ipBlock of pods' CIDR and of a
// remote node's InternalIP, ports), each side shown enforced on its own
// node (counters of the tunnel and drop flows, a trace); nodes' hosts to
// pods and pods to nodes' InternalIPs; pod MTU and a transfer larger than
// it across nodes.
//
// TestOverlayNodeAddRemove: while new connections run every 50 ms between
// two nodes, a third node is added (Node, agent, pod: time to its first
// cross-node connection), renumbered (its InternalIP changes: the tunnel
// follows), and removed (agent stopped, Node deleted: the others' routes and
// tunnel flows for it go); no outage between the two others (every failed
// connection is listed; two failing in a row fail the test) and no held
// connection breaks.

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ovPods are TestOverlayThreeNodes' pods: the digit is the node.
var ovPods = []string{"ovx/a1", "ovx/b1", "ovx/a2", "ovy/b2", "ovx/a3", "ovy/b3"}

func TestOverlayThreeNodes(t *testing.T) {
	start := time.Now()
	o := newOverlay(t, "ovl", "10.91", "172.29")
	o.podServices = true
	var nodes []*ovNode
	for range 3 {
		nodes = append(nodes, o.start(t, true))
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	checkAgentsIdentical(t, nodes)
	checkOverlaySetup(t, nodes)

	o.ensureNamespace(t, "ovx", map[string]string{"ns": "ovx"})
	o.ensureNamespace(t, "ovy", map[string]string{"ns": "ovy"})
	for _, key := range ovPods {
		ns, name, _ := strings.Cut(key, "/")
		idx, _ := strconv.Atoi(name[len(name)-1:])
		nodes[idx-1].addPod(t, podSpec{ns: ns, name: name, labels: map[string]string{"pod": name}, ports: standardPorts()})
	}
	o.waitPodsRealized(t)
	t.Logf("three nodes, %d pods with their Services realized in %v", len(ovPods), time.Since(start).Round(time.Millisecond))
	o.warmTunnels(t)

	from := append(append([]string(nil), ovPods...), srcNode, srcExt)
	matrixOf := func(want func(m *matrix)) *matrix {
		m := newMatrix(stdProbes, from, ovPods, true)
		if want != nil {
			want(m)
		}
		return m.always()
	}
	a1, b1, a2, a3, b3 := o.pod("ovx/a1"), o.pod("ovx/b1"), o.pod("ovx/a2"), o.pod("ovx/a3"), o.pod("ovy/b3")

	t.Run("open", func(t *testing.T) {
		o.check(t, matrixOf(nil))
		o.check(t, matrixOf(nil).throughServices())
		// Every node's host reaches every other node's pod, with the
		// source the kernel picks (its gateway address: the route into
		// br-int) and bound to its InternalIP; every pod reaches every
		// other node's InternalIP (through the tunnel). Pods to hosts: TCP
		// only, since the host's UDP server, bound to the wildcard address,
		// answers from the address of its route back (br-int's gateway),
		// not from the InternalIP the pod sent to.
		var cells []hostCell
		for _, n := range nodes {
			for _, p := range []*pod{a1, a2, a3} {
				if o.ovNodeOf(p) == n {
					continue
				}
				cells = append(cells, fromHost(n, "", tcp80, p, true), fromHost(n, n.ip, tcp80, p, true), fromHost(n, n.ip, udp81, p, true))
				cells = append(cells, toHost(p, tcp80, n, n.ip, true), toHost(p, tcp81, n, n.ip, true))
			}
		}
		checkCells(t, "open: hosts and pods across nodes", cells)
		totals.scenarios.Add(1)
	})

	t.Run("mtu", func(t *testing.T) {
		for _, p := range []*pod{a1, a2, a3} {
			out := must(t, "ip", "-n", p.netns, "-o", "link", "show", "eth0")
			if !strings.Contains(out, " mtu 1450 ") {
				t.Errorf("%s eth0: want mtu 1450 (underlay 1500 - 50 of Geneve over IPv4):\n%s", p.key(), out)
			}
		}
		// A 60,000-byte line echoed through a TCP connection across nodes
		// (both ways): segments of the pod's full MTU, encapsulated to
		// 1500 bytes on the underlay; with a wrong pod MTU they would
		// exceed the underlay's and the transfer would stall.
		line := strings.Repeat("0123456789", 6000)
		for _, c := range []struct{ from, to *pod }{{a1, a3}, {b3, a1}, {a2, b3}} {
			h := c.from.holdFor(t, c.to.ip, 80, 5*time.Second)
			t0 := time.Now()
			if err := h.echo(line); err != nil {
				t.Errorf("60,000 bytes %s -> %s and back: %v", c.from.key(), c.to.key(), err)
				continue
			}
			t.Logf("60,000 bytes %s (%s) -> %s (%s) and back in %v", c.from.key(), c.from.node.name, c.to.key(), c.to.node.name, time.Since(t0).Round(time.Microsecond))
		}
	})

	t.Run("ingress-and-egress-policies", func(t *testing.T) {
		o.change(t, func() {
			o.kubectlApply(t,
				np("ovx", "a2-ingress", `podSelector:
  matchLabels: {pod: a2}
ingress:
- from:
  - podSelector:
      matchLabels: {pod: a1}
  ports: [{protocol: TCP, port: 80}]
- from:
  - namespaceSelector:
      matchLabels: {ns: ovy}
  ports: [{protocol: UDP, port: 81}]
- from:
  - ipBlock: {cidr: `+n1.ip+`/32}
  ports: [{protocol: TCP, port: 81}]`),
				np("ovx", "b1-egress", `podSelector:
  matchLabels: {pod: b1}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {cidr: `+n3.podCIDR+`}
  ports: [{protocol: TCP, port: 80}]
- to:
  - namespaceSelector:
      matchLabels: {ns: ovy}
    podSelector:
      matchLabels: {pod: b2}
- to:
  - ipBlock: {cidr: `+n2.ip+`/32}
  ports: [{protocol: TCP, port: 80}]`))
		})
		want := matrixOf(func(m *matrix) {
			m.expect("all", "ovx/a2", false).
				expect("ovx/a1", "ovx/a2", true, tcp80).
				expect("ovy/*", "ovx/a2", true, udp81).
				expect("ovx/b1", "*", false).
				expect("ovx/b1", "ovx/a3|ovy/b3", true, tcp80).
				expect("ovx/b1", "ovy/b2", true)
		})
		o.check(t, want)
		// Through the cluster IPs: balanced on the client's node, egress
		// judged there, ingress on the backend's node.
		o.check(t, want.throughServices())

		// Hosts: node 1's InternalIP is admitted to a2 on TCP/81 (ipBlock);
		// node 1's host with its gateway source, and node 3's host, are
		// not (other nodes' hosts are not node-local); node 2's own host
		// always is. b1 reaches node 2's InternalIP on TCP/80 only, not
		// node 3's; a1 (no egress policy) reaches node 3's.
		checkCells(t, "policies: hosts and pods across nodes", []hostCell{
			fromHost(n1, n1.ip, tcp81, a2, true),
			fromHost(n1, n1.ip, tcp80, a2, false),
			fromHost(n1, "", tcp81, a2, false),
			fromHost(n3, n3.ip, tcp81, a2, false),
			fromHost(n2, n2.ip, tcp80, a2, true),
			fromHost(n2, "", tcp81, a2, true),
			toHost(b1, tcp80, n2, n2.ip, true),
			toHost(b1, tcp81, n2, n2.ip, false),
			toHost(b1, tcp80, n3, n3.ip, false),
			toHost(a1, tcp80, n3, n3.ip, true),
		})

		// Where each side is enforced, with real traffic and the flows'
		// counters: a3 (node 3) -> a2 (node 2) TCP/81 is denied by a2's
		// ingress: node 3 sends it into the tunnel, node 2 drops it.
		fwd := []string{"table=60", "nw_dst=" + n2.podCIDR + " ", "set_field:" + n2.ip + "->tun_dst"}
		drop := []string{"table=40", "priority=20000", "nw_dst=" + a2.ip + " ", "actions=drop"}
		fwd0, drop0 := packetsWith(t, n3, fwd...), packetsWith(t, n2, drop...)
		res := o.observe(t, []cellKey{{tcp81, "ovx/a3", "ovx/a2"}, {udp80, "ovx/a3", "ovx/a2"}}, false)
		for k, r := range res {
			if r.ok {
				t.Errorf("%s a3 -> a2 passed", k.p)
			}
		}
		fwd1, drop1 := packetsWith(t, n3, fwd...), packetsWith(t, n2, drop...)
		t.Logf("a3 (node 3) -> a2 (node 2), denied by a2's ingress: node 3 sent %d packets into the tunnel to node 2, node 2 dropped %d", fwd1-fwd0, drop1-drop0)
		if fwd1 <= fwd0 || drop1 <= drop0 {
			t.Errorf("want node 3 to tunnel (%d -> %d) and node 2 to drop (%d -> %d) a3's packets", fwd0, fwd1, drop0, drop1)
		}

		// b1 (node 1) -> a3 (node 3) TCP/81: a3 admits everything; only
		// b1's egress, on node 1, denies it. Node 1 drops it (its egress
		// isolation counter moves), nothing reaches node 3 from node 1's
		// tunnel endpoint, and the trace on node 1 ends in table 30.
		egress := []string{"table=30", "priority=20000", fmt.Sprintf("in_port=%d ", b1.ofport)}
		rx := []string{"table=0,", "tun_src=" + n1.ip, "nw_src=" + n1.podCIDR}
		eg0, rx0 := packetsWith(t, n1, egress...), packetsWith(t, n3, rx...)
		res = o.observe(t, []cellKey{{tcp81, "ovx/b1", "ovx/a3"}, {udp81, "ovx/b1", "ovx/a3"}}, false)
		for k, r := range res {
			if r.ok {
				t.Errorf("%s b1 -> a3 passed", k.p)
			}
		}
		eg1, rx1 := packetsWith(t, n1, egress...), packetsWith(t, n3, rx...)
		t.Logf("b1 (node 1) -> a3 (node 3), denied by b1's egress: node 1 dropped %d packets, node 3 received %d from node 1's pods", eg1-eg0, rx1-rx0)
		if eg1 <= eg0 || rx1 != rx0 {
			t.Errorf("want node 1 to drop (%d -> %d) and node 3 to receive nothing (%d -> %d)", eg0, eg1, rx0, rx1)
		}
		r, err := n1.sw.Trace(bridge, fmt.Sprintf("in_port=%d,tcp,dl_src=%s,dl_dst=%s,nw_src=%s,nw_dst=%s,tcp_src=40000,tcp_dst=81",
			b1.ofport, b1.mac, gatewayMACOf(t, n1), b1.ip, a3.ip))
		totals.traces.Add(1)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Dropped || !strings.Contains(r.Raw, fmt.Sprintf("in_port=%d, priority 20000", b1.ofport)) {
			t.Errorf("b1 -> a3 on node 1: want a drop by b1's egress isolation:\n%s", r.Raw)
		}
		// And the allowed b1 -> a3 TCP/80 goes into the tunnel to node 3.
		r, err = n1.sw.Trace(bridge, fmt.Sprintf("in_port=%d,tcp,dl_src=%s,dl_dst=%s,nw_src=%s,nw_dst=%s,tcp_src=40000,tcp_dst=80",
			b1.ofport, b1.mac, gatewayMACOf(t, n1), b1.ip, a3.ip), "trk,new")
		totals.traces.Add(1)
		if err != nil {
			t.Fatal(err)
		}
		// (The datapath action is the encapsulation itself, tnl_push to
		// node 3's address, not an output port number.)
		if !strings.Contains(r.Raw, fmt.Sprintf("output:%d", tunnelOFPort)) || !strings.Contains(r.DatapathActions, "tnl_push(") ||
			!strings.Contains(r.DatapathActions, "dst="+n3.ip+",") {
			t.Errorf("b1 -> a3 TCP/80 on node 1: want output to the tunnel with tun_dst=%s:\n%s", n3.ip, r.Raw)
		}
		totals.scenarios.Add(1)
	})

	t.Run("policies-deleted", func(t *testing.T) {
		o.change(t, func() { o.deletePolicies(t, "ovx", "ovy") })
		o.check(t, matrixOf(nil))
		totals.scenarios.Add(1)
	})
	addSummary(fmt.Sprintf("TestOverlayThreeNodes: 3 routed nodes, %d pods, in %v", len(ovPods), time.Since(start).Round(time.Second)))
}

// checkAgentsIdentical: the agents' arguments differ only in --node-name
// and in what stands for each node's own machine.
func checkAgentsIdentical(t *testing.T, nodes []*ovNode) {
	t.Helper()
	own := regexp.MustCompile(`^--(node-name|ovs-rundir|metrics-addr|cni-conf-dir|host-netns)=`)
	var ref []string
	for i, n := range nodes {
		var args []string
		for _, a := range n.agent.args[1:] {
			if !own.MatchString(a) {
				args = append(args, a)
			}
			if strings.HasPrefix(a, "--node-ip") || strings.HasPrefix(a, "--uplink-port") {
				t.Errorf("agent of %s runs with %s", n.name, a)
			}
		}
		if i == 0 {
			ref = args
			t.Logf("every agent: %s", strings.Join(args, " "))
		} else if !slices.Equal(args, ref) {
			t.Errorf("agent of %s: %v, want the same as the first: %v", n.name, args, ref)
		}
	}
}

// checkOverlaySetup checks what the agents set up on each node: the
// Geneve port at ofport 4096, br-int's gateway address and MTU, a host
// route per other node (via its gateway, onlink, proto 78), the CNI
// configuration's range.
func checkOverlaySetup(t *testing.T, nodes []*ovNode) {
	t.Helper()
	for _, n := range nodes {
		out, err := n.sw.Vsctl("--columns=name,type,options,ofport", "find", "Interface", "type=geneve")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "remote_ip=flow") || !strings.Contains(out, fmt.Sprintf("ofport              : %d", tunnelOFPort)) {
			t.Errorf("%s: want one flow-based Geneve port at ofport %d:\n%s", n.name, tunnelOFPort, out)
		}
		link := must(t, "ip", "-n", n.sw.NetNS, "-o", "addr", "show", "dev", bridge)
		if !strings.Contains(link, " "+n.gw+"/24 ") {
			t.Errorf("%s: want the gateway %s/24 on %s:\n%s", n.name, n.gw, bridge, link)
		}
		mtu := must(t, "ip", "-n", n.sw.NetNS, "-o", "link", "show", "dev", bridge)
		if !strings.Contains(mtu, " mtu 1450 ") {
			t.Errorf("%s: want %s's MTU 1450:\n%s", n.name, bridge, mtu)
		}
		var want []string
		for _, r := range nodes {
			if r != n {
				want = append(want, fmt.Sprintf("%s via %s dev %s", r.podCIDR, r.gw, bridge))
			}
		}
		waitRoutes(t, n, want)
		if !strings.Contains(string(n.cniCfg), `"`+n.podCIDR+`"`) {
			t.Errorf("%s: the CNI configuration the agent wrote does not name the podCIDR %s:\n%s", n.name, n.podCIDR, n.cniCfg)
		}
		t.Logf("%s: Geneve port at %d, %s %s/24 mtu 1450, host routes %v", n.name, tunnelOFPort, bridge, n.gw, n.hostRoutes(t))
	}
}

// waitRoutes waits until the node's proto-78 routes are exactly want
// (each line "DST via GW dev DEV" followed by options), up to 10 s.
func waitRoutes(t *testing.T, n *ovNode, want []string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := n.hostRoutes(t)
		ok := len(got) == len(want)
		for _, w := range want {
			if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w+" ") && strings.Contains(g, "onlink") }) {
				ok = false
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%s: host routes %q, want %q (onlink, proto %s)", n.name, got, want, routeProto)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gatewayMACOf is the MAC of the node's br-int LOCAL port (the agent's
// 0a:58:<gateway>).
func gatewayMACOf(t *testing.T, n *ovNode) string {
	t.Helper()
	out := must(t, "ip", "netns", "exec", n.sw.NetNS, "cat", "/sys/class/net/"+bridge+"/address")
	return strings.TrimSpace(out)
}

// packetsWith sums n_packets of the node's flows containing every part;
// it fails the test when there is none.
func packetsWith(t *testing.T, n *ovNode, parts ...string) int {
	t.Helper()
	// OpenFlow counters lag the datapath until a revalidator round has
	// pulled its flows' statistics: wait for one.
	if _, err := n.sw.Appctl("revalidator/wait"); err != nil {
		t.Fatal(err)
	}
	flows, err := n.sw.DumpFlows(bridge, false)
	if err != nil {
		t.Fatal(err)
	}
	sum, found := 0, false
	for _, f := range flows {
		if !strings.HasPrefix(f, "cookie=") {
			continue
		}
		match := true
		for _, p := range parts {
			if !strings.Contains(f+" ", p) {
				match = false
				break
			}
		}
		if match {
			found = true
			if m := nPackets.FindStringSubmatch(f); m != nil {
				v, _ := strconv.Atoi(m[1])
				sum += v
			}
		}
	}
	if !found {
		t.Fatalf("%s has no flow with %q", n.name, parts)
	}
	return sum
}

// ---- node add, renumber, remove under traffic

// outages sorts each loop's attempts into isolated failures and failures
// next to another failed attempt of the same loop. An outage of 100 ms or
// more fails at least two consecutive attempts of every loop (one every
// 50 ms, 1 s each); a single failed attempt between passing ones is a
// connection whose SYN or datagrams got no answer within its 1 s while the
// next one, 50 ms later, passed: what the matrices retry (world.check:
// under load a packet lost in a burst of upcalls is not resent in time).
func outages(loops map[string][]attempt) (n int, isolated, outage []string) {
	for name, as := range loops {
		n += len(as)
		for i, a := range as {
			if a.ok {
				continue
			}
			at := fmt.Sprintf("%s at %s", name, a.start.UTC().Format("15:04:05.000"))
			if (i > 0 && !as[i-1].ok) || (i+1 < len(as) && !as[i+1].ok) {
				outage = append(outage, at)
			} else {
				isolated = append(isolated, at)
			}
		}
	}
	sort.Strings(isolated)
	sort.Strings(outage)
	return n, isolated, outage
}

// untilReachable probes from every source pod to p (TCP/80) every 50 ms
// until each has connected once, up to limit; it returns when each first
// connected, measured from since.
func untilReachable(t *testing.T, o *overlay, p *pod, since time.Time, limit time.Duration, from ...*pod) map[string]time.Duration {
	t.Helper()
	got := map[string]time.Duration{}
	for len(got) < len(from) {
		for _, f := range from {
			if _, ok := got[f.key()]; ok {
				continue
			}
			out, err := agnhost(f.netns, "probe", "--timeout", "200ms", fmt.Sprintf("x=tcp:%s:80", p.ip))
			if err == nil && strings.HasPrefix(out, "x ok "+p.key()) {
				got[f.key()] = time.Since(since)
			}
		}
		if time.Since(since) > limit {
			t.Fatalf("%s not reachable from %d of %d pods after %v", p.key(), len(from)-len(got), len(from), limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return got
}

// untilTunnel waits until the node's flows name endpoint ip (present) or
// no longer do (!present), and returns how long it took from since.
func untilTunnel(t *testing.T, n *ovNode, ip string, present bool, since time.Time) time.Duration {
	t.Helper()
	for {
		if (len(n.tunnelFlows(t, ip)) > 0) == present {
			return time.Since(since)
		}
		if time.Since(since) > 30*time.Second {
			t.Fatalf("%s: tunnel flows for %s present=%v after 30 s:\n%s", n.name, ip, !present, strings.Join(n.tunnelFlows(t, ip), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOverlayNodeAddRemove(t *testing.T) {
	o := newOverlay(t, "ovar", "10.92", "172.28")
	n1, n2 := o.start(t, true), o.start(t, true)
	o.ensureNamespace(t, "ovar", map[string]string{"ns": "ovar"})
	p1 := n1.addPod(t, podSpec{ns: "ovar", name: "p1", labels: map[string]string{"pod": "p1"}})
	p2 := n2.addPod(t, podSpec{ns: "ovar", name: "p2", labels: map[string]string{"pod": "p2"}})
	o.waitPodsRealized(t)
	o.warmTunnels(t)
	o.check(t, newMatrix(stdProbes, []string{"ovar/p1", "ovar/p2", srcNode, srcExt}, []string{"ovar/p1", "ovar/p2"}, true))

	// New connections every 50 ms, TCP and UDP both ways, and held TCP
	// connections echoing every 50 ms, between node 1 and node 2 for all
	// of what follows.
	var loops []*probeLoop
	for _, c := range []struct {
		from, to *pod
		p        probeT
	}{{p1, p2, tcp80}, {p2, p1, udp80}, {p1, p2, udp81}, {p2, p1, tcp81}} {
		loops = append(loops, startProbeLoop(t, fmt.Sprintf("%s %s->%s", c.p, c.from.key(), c.to.key()), c.from,
			fmt.Sprintf("%s:%s:%d", c.p.proto, c.to.ip, c.p.port), 50*time.Millisecond, allowedTimeout))
	}
	keep := keepEchoing(t, 2, [2]*pod{p1, p2}, [2]*pod{p2, p1})

	// Added: the machine boots, registers its Node (podCIDR, InternalIP),
	// its agent starts (no kube-proxy: it exits when its Node's addresses
	// change or the Node goes, and k8stest would count that as a failure),
	// a pod is attached with the CNI configuration the agent wrote.
	n3 := o.addMachine(t)
	n3.register(t)
	t0 := n3.registered
	var routed [2]time.Duration
	var wg sync.WaitGroup
	for i, n := range []*ovNode{n1, n2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			untilTunnel(t, n, n3.ip, true, t0)
			routed[i] = time.Since(t0)
		}()
	}
	agentReady := n3.startAgent(t)
	agentReadyAt := time.Since(t0)
	p3 := n3.addPod(t, podSpec{ns: "ovar", name: "p3", labels: map[string]string{"pod": "p3"}})
	podAt := time.Since(t0)
	first := untilReachable(t, o, p3, t0, 30*time.Second, p1, p2)
	wg.Wait()
	waitRoutes(t, n1, []string{fmt.Sprintf("%s via %s dev %s", n2.podCIDR, n2.gw, bridge), fmt.Sprintf("%s via %s dev %s", n3.podCIDR, n3.gw, bridge)})
	waitRoutes(t, n2, []string{fmt.Sprintf("%s via %s dev %s", n1.podCIDR, n1.gw, bridge), fmt.Sprintf("%s via %s dev %s", n3.podCIDR, n3.gw, bridge)})
	t.Logf("node 3 added: Node created -> tunnel flows on node 1 %v, node 2 %v; agent ready %v (its own start %v); pod attached %v; first connection from p1 (node 1) %v, from p2 (node 2) %v",
		routed[0].Round(time.Millisecond), routed[1].Round(time.Millisecond), agentReadyAt.Round(time.Millisecond), agentReady.Round(time.Millisecond),
		podAt.Round(time.Millisecond), first["ovar/p1"].Round(time.Millisecond), first["ovar/p2"].Round(time.Millisecond))
	o.waitPodsRealized(t)
	all := []string{"ovar/p1", "ovar/p2", "ovar/p3"}
	o.check(t, newMatrix(stdProbes, append(slices.Clone(all), srcNode, srcExt), all, true))

	t.Run("internal-ip-changed", func(t *testing.T) {
		// Node 3 is renumbered: its underlay address really changes
		// (172.28.3.2 -> .3), then its Node's status says so. Until the
		// others follow, traffic to node 3 breaks; the tunnel must move.
		old, renumbered := n3.ip, fmt.Sprintf("%s.3.3", o.under16)
		ns := n3.sw.NetNS
		must(t, "ip", "-n", ns, "addr", "del", old+"/24", "dev", "br-phy")
		must(t, "ip", "-n", ns, "addr", "add", renumbered+"/24", "dev", "br-phy")
		must(t, "ip", "-n", ns, "route", "replace", "default", "via", o.under16+".3.1")
		n3.ip = renumbered
		t1 := time.Now()
		n3.setAddresses(t, nil, renumbered)
		moved := [2]time.Duration{untilTunnel(t, n1, renumbered, true, t1), untilTunnel(t, n2, renumbered, true, t1)}
		for _, n := range []*ovNode{n1, n2} {
			untilTunnel(t, n, old, false, t1)
			if f := n.tunnelFlows(t, old); len(f) > 0 {
				t.Errorf("%s still has tunnel flows for %s:\n%s", n.name, old, strings.Join(f, "\n"))
			}
		}
		first := untilReachable(t, o, p3, t1, 30*time.Second, p1, p2)
		t.Logf("node 3's InternalIP %s -> %s: tun_dst/tun_src moved on node 1 in %v, node 2 in %v; p3 reached again from p1 after %v, from p2 after %v",
			old, renumbered, moved[0].Round(time.Millisecond), moved[1].Round(time.Millisecond), first["ovar/p1"].Round(time.Millisecond), first["ovar/p2"].Round(time.Millisecond))
		o.check(t, newMatrix(stdProbes, append(slices.Clone(all), srcNode, srcExt), all, true))
	})

	t.Run("removed", func(t *testing.T) {
		t2 := time.Now()
		o.remove(t, n3)
		removedIn := time.Since(t2)
		gone := [2]time.Duration{untilTunnel(t, n1, n3.ip, false, t2), untilTunnel(t, n2, n3.ip, false, t2)}
		for _, c := range []struct{ n, other *ovNode }{{n1, n2}, {n2, n1}} {
			waitRoutes(t, c.n, []string{fmt.Sprintf("%s via %s dev %s", c.other.podCIDR, c.other.gw, bridge)})
			if f := c.n.tunnelFlows(t, n3.ip); len(f) > 0 {
				t.Errorf("%s still has tunnel flows for node 3:\n%s", c.n.name, strings.Join(f, "\n"))
			}
			t.Logf("%s after node 3 left: host routes %q, flows naming a tunnel endpoint: %d", c.n.name, c.n.hostRoutes(t), countTunnelFlows(t, c.n))
		}
		t.Logf("node 3 removed (pods deleted, agent stopped, Node deleted in %v): its tunnel flows gone from node 1 after %v, node 2 after %v",
			removedIn.Round(time.Millisecond), gone[0].Round(time.Millisecond), gone[1].Round(time.Millisecond))
	})

	echoes, stall, broken := keep.stop()
	atts := map[string][]attempt{}
	for _, l := range loops {
		atts[l.what] = l.stop()
	}
	n, isolated, outage := outages(atts)
	t.Logf("between node 1 and node 2 during all of it: %d new connections (TCP and UDP, both ways, every 50 ms), %d failed: %d isolated %v, %d next to another failure %v; %d echoes through 4 held TCP connections, longest %v, %d broken",
		n, len(isolated)+len(outage), len(isolated), isolated, len(outage), outage, echoes, stall.Round(time.Millisecond), len(broken))
	if len(outage) > 0 || n == 0 {
		t.Errorf("want no outage between the other nodes: %d of %d connections failed next to another failed one of their loop: %s", len(outage), n, strings.Join(outage, ", "))
	}
	for _, c := range broken {
		t.Errorf("held connection %s broke at %s: %v", c.what, c.at.UTC().Format("15:04:05.000"), c.broken)
	}
	o.check(t, newMatrix(stdProbes, []string{"ovar/p1", "ovar/p2", srcNode, srcExt}, []string{"ovar/p1", "ovar/p2"}, true))
	totals.scenarios.Add(1)
	addSummary(fmt.Sprintf("TestOverlayNodeAddRemove: node added -> first cross-node connection %v/%v; %d connections and %d echoes between the other nodes meanwhile, %d failed (%d next to another)",
		first["ovar/p1"].Round(time.Millisecond), first["ovar/p2"].Round(time.Millisecond), n, echoes, len(isolated)+len(outage), len(outage)))
}

// countTunnelFlows counts the node's flows that name a tunnel endpoint.
func countTunnelFlows(t *testing.T, n *ovNode) int {
	t.Helper()
	flows, err := n.sw.DumpFlows(bridge, true)
	if err != nil {
		t.Fatal(err)
	}
	c := 0
	for _, f := range flows {
		if strings.Contains(f, "tun_src=") || strings.Contains(f, "tun_dst") {
			c++
		}
	}
	return c
}
