package e2e

// TestServices: Services under policy with real traffic (issue 9, items 3
// and 4). Two nodes linked by an uplink, each with its Open vSwitch, the
// built agent and a real kube-proxy on its host; a dual-stack pod network
// (host-local hands out an IPv4 and an IPv6 address per pod, the LOCAL port
// is the gateway of both families, the agent gets --node-ip of both). In
// namespace svc: clients c1, c3 (node 1) and c2, c4 (node 2), backends b1,
// b2 (node 1) and b3, b4 (node 2) serving TCP and UDP 80 and 81, and web1
// (node 1, TCP only on 80) and web2 (node 2, TCP only on 81) that both
// declare the container port "web". Services are created with client-go as
// a user would, EndpointSlices written as the EndpointSlice controller
// writes them. Every case checks who answered (servers answer with their
// pod name) and how a blocked connection failed ("connection_refused" from
// kube-proxy's REJECT, or "timeout" for a drop).

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

const svcNS = "svc"

// svcWorld is TestServices' (and TestDNSPattern's) world and what it
// counts.
type svcWorld struct {
	*world
	gw6    map[*node]string // the node's IPv6 gateway address (dual stack)
	ip6    map[string]string
	probes atomic.Int64
	cases  atomic.Int64
}

// ---- dual stack (a world option)

// dualStack makes node n dual-stack: a second host-local range (IPv6,
// prefix6 + "/64", node i handing out ::i:10-::i:250) in its CNI
// configuration, a default IPv6 route in the pods, and the gateway address
// prefix6+"i:1" on the LOCAL port. Call it before adding pods and before
// starting the agent (give the agent --node-ip=THAT ADDRESS too).
func (n *node) dualStack(t *testing.T, prefix6 string) string {
	t.Helper()
	gw6 := fmt.Sprintf("%s%d:1", prefix6, n.idx)
	must(t, "ip", "netns", "exec", n.sw.NetNS, "sysctl", "-qw", "net.ipv6.conf."+bridge+".disable_ipv6=0")
	must(t, "ip", "-n", n.sw.NetNS, "addr", "add", gw6+"/64", "dev", bridge, "nodad")
	var cfg map[string]any
	if err := json.Unmarshal(n.cniCfg, &cfg); err != nil {
		t.Fatal(err)
	}
	ipam := cfg["ipam"].(map[string]any)
	ipam["ranges"] = append(ipam["ranges"].([]any), []any{map[string]any{
		"subnet":     prefix6 + "/64",
		"rangeStart": fmt.Sprintf("%s%d:10", prefix6, n.idx),
		"rangeEnd":   fmt.Sprintf("%s%d:250", prefix6, n.idx),
		"gateway":    gw6,
	}})
	ipam["routes"] = append(ipam["routes"].([]any), map[string]any{"dst": "::/0"})
	var err error
	if n.cniCfg, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	return gw6
}

// podIPv6 reads the global IPv6 address the CNI plugin gave the pod.
func podIPv6(t *testing.T, p *pod) string {
	t.Helper()
	out := must(t, "ip", "-n", p.netns, "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global")
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "inet6" && i+1 < len(f) {
			return strings.Split(f[i+1], "/")[0]
		}
	}
	t.Fatalf("%s has no global IPv6 address: %q", p.key(), out)
	return ""
}

// setDualStackStatus gives every pod of the world its IPv6 address in
// status.podIPs, as the kubelet reports a dual-stack sandbox, and waits
// until the agents have the IPv6 port security and forwarding flows.
func (s *svcWorld) setDualStackStatus(t *testing.T, pods []*pod) {
	t.Helper()
	for _, p := range pods {
		ip6 := podIPv6(t, p)
		s.ip6[p.key()] = ip6
		cl := s.c.Client.CoreV1().Pods(p.ns)
		obj, err := cl.Get(s.ctx(), p.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		obj.Status.PodIPs = []corev1.PodIP{{IP: p.ip}, {IP: ip6}}
		if _, err := cl.UpdateStatus(s.ctx(), obj, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("status of %s: %v", p.key(), err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		snap := s.flowSnapshot(t)
		missing := ""
		for _, p := range pods {
			if !strings.Contains(snap[p.node.idx-1], "ipv6_src="+s.ip6[p.key()]) {
				missing = p.key() + " (port security)"
			}
			for i := range s.nodes {
				if !strings.Contains(snap[i], "ipv6_dst="+s.ip6[p.key()]) {
					missing = p.key() + " (forwarding on " + s.nodes[i].name + ")"
				}
			}
		}
		if missing == "" {
			s.settle(t, snap, 0)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no IPv6 flows for %s after 30 s", missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---- Services and EndpointSlices

func (s *svcWorld) createService(t *testing.T, ns, name string, spec corev1.ServiceSpec) *corev1.Service {
	t.Helper()
	svc, err := s.c.Client.CoreV1().Services(ns).Create(s.ctx(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Service %s/%s: %v", ns, name, err)
	}
	t.Logf("Service %s/%s: cluster IPs %v, ports %s", ns, name, svc.Spec.ClusterIPs, svcPortsString(svc))
	return svc
}

// deleteService deletes a Service and its EndpointSlices and waits until
// no bridge balances its ports any more.
func (s *svcWorld) deleteService(t *testing.T, ns, name string) {
	t.Helper()
	svcs := s.c.Client.CoreV1().Services(ns)
	svc, err := svcs.Get(s.ctx(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := svcs.Delete(s.ctx(), name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	err = s.c.Client.DiscoveryV1().EndpointSlices(ns).DeleteCollection(s.ctx(), metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, ip := range svc.Spec.ClusterIPs {
		if ip == corev1.ClusterIPNone {
			continue
		}
		for _, p := range svc.Spec.Ports {
			for _, n := range s.nodes {
				for lbState(t, n, strings.ToLower(string(p.Protocol)), ip, int(p.Port)) != "none" {
					if time.Now().After(deadline) {
						t.Fatalf("%s still balances %s %s after Service %s/%s was deleted", n.name, p.Protocol, hostPort(ip, int(p.Port)), ns, name)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}
	}
}

func svcPortsString(svc *corev1.Service) string {
	var out []string
	for _, p := range svc.Spec.Ports {
		s := fmt.Sprintf("%s %d/%s->%s", p.Name, p.Port, p.Protocol, p.TargetPort.String())
		if p.NodePort != 0 {
			s += fmt.Sprintf(" (nodePort %d)", p.NodePort)
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

func svcPort(name string, proto corev1.Protocol, port int32, target intstr.IntOrString) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: port, TargetPort: target}
}

func slicePort(name string, proto corev1.Protocol, port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Protocol: ptr.To(proto), Port: ptr.To(port)}
}

// epCond is an endpoint's conditions.
type epCond struct{ ready, serving, terminating bool }

var (
	epReady       = epCond{true, true, false}
	epTerminating = epCond{false, true, true}  // still serving while it terminates
	epGone        = epCond{false, false, true} // terminating, no longer serving
	epNotReady    = epCond{false, false, false}
)

// endpointAt is pod p as an endpoint at address addr (its IPv4 or IPv6
// address), with the given conditions.
func endpointAt(p *pod, addr string, c epCond) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{addr},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(c.ready), Serving: ptr.To(c.serving), Terminating: ptr.To(c.terminating)},
		NodeName:   ptr.To(p.node.name),
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.ns, Name: p.name, UID: types.UID(p.uid)},
	}
}

// readyEndpoints are the pods as ready IPv4 endpoints.
func readyEndpoints(pods ...*pod) []discoveryv1.Endpoint {
	var out []discoveryv1.Endpoint
	for _, p := range pods {
		out = append(out, endpointAt(p, p.ip, epReady))
	}
	return out
}

// ---- the bridges' load balancers

// lbMatch is how table 25 matches a Service port: "tcp,nw_dst=VIP,tp_dst=80"
// or "udp6,ipv6_dst=VIP,tp_dst=80".
func lbMatch(proto, vip string, port int) string {
	if strings.Contains(vip, ":") {
		return fmt.Sprintf("%s6,ipv6_dst=%s,tp_dst=%d", proto, vip, port)
	}
	return fmt.Sprintf("%s,nw_dst=%s,tp_dst=%d", proto, vip, port)
}

var (
	groupAction = regexp.MustCompile(`actions=.*group:(\d+)`)
	natDst      = regexp.MustCompile(`nat\(dst=([^)]+)\)`)
)

// lbState is what node n's bridge does with a new connection to
// proto:VIP:port: "none" (no flow: not balanced), "drop", or the group's
// backends "IP:PORT,..." sorted.
func lbState(t *testing.T, n *node, proto, vip string, port int) string {
	t.Helper()
	flows, err := n.sw.DumpFlows(bridge, true)
	if err != nil {
		t.Fatal(err)
	}
	m := lbMatch(proto, vip, port) + " "
	group := ""
	var affinity []string // sessionAffinity: the backends of table 28 (no group)
	for _, f := range flows {
		// (OVS prints reg3 between the protocol and the address.)
		if strings.Contains(f, "table=28,") && strings.Contains(f, "_dst="+vip+",tp_dst="+strconv.Itoa(port)+" ") {
			for _, b := range natDst.FindAllStringSubmatch(f, -1) {
				affinity = append(affinity, b[1])
			}
		}
		if !strings.Contains(f, m) || strings.Contains(f, "reg2=") {
			continue
		}
		if strings.Contains(f, "table=25,") && strings.HasSuffix(f, "actions=drop") {
			return "drop"
		}
		if g := groupAction.FindStringSubmatch(f); g != nil {
			group = g[1]
		}
	}
	if group == "" && len(affinity) > 0 {
		sort.Strings(affinity)
		return strings.Join(affinity, ",")
	}
	if group == "" {
		return "none"
	}
	out, err := n.sw.Ofctl("-O", "OpenFlow15", "dump-groups", bridge)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "group_id="+group+",") {
			var backends []string
			for _, b := range natDst.FindAllStringSubmatch(l, -1) {
				backends = append(backends, b[1])
			}
			sort.Strings(backends)
			return strings.Join(backends, ",")
		}
	}
	return "group " + group + " missing"
}

// backendsOf is the lbState of backends at their addresses and port.
func backendsOf(port int, addrs ...string) string {
	var out []string
	for _, a := range addrs {
		if strings.Contains(a, ":") {
			a = "[" + a + "]"
		}
		out = append(out, fmt.Sprintf("%s:%d", a, port))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// waitLB waits until every node's bridge balances proto:VIP:port as want
// says (per node, in node order; one value: every node), then a little
// longer for what the agent does after a bundle (conntrack flushes).
func (s *svcWorld) waitLB(t *testing.T, proto, vip string, port int, want ...string) {
	t.Helper()
	if len(want) == 1 {
		for len(want) < len(s.nodes) {
			want = append(want, want[0])
		}
	}
	start := time.Now()
	for {
		var got []string
		ok := true
		for i, n := range s.nodes {
			g := lbState(t, n, proto, vip, port)
			got = append(got, n.name+": "+g)
			ok = ok && g == want[i]
		}
		if ok {
			t.Logf("%s %s balanced after %v: %s", strings.ToUpper(proto), hostPort(vip, port), time.Since(start).Round(time.Millisecond), strings.Join(got, "; "))
			time.Sleep(200 * time.Millisecond)
			return
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%s %s: the bridges do not balance as expected after 30 s:\nwant %v\ngot  %v", proto, hostPort(vip, port), want, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitProxy waits until node n's kube-proxy has rules whose text contains
// every string of want (e.g. `"svc/web:http cluster IP"`).
func waitProxy(t *testing.T, n *node, want ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rules string
	if err := n.proxy.WaitIptables(ctx, func(r string) bool {
		rules = r
		for _, w := range want {
			if !strings.Contains(r, w) {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("kube-proxy of %s: %v", n.name, err)
	}
	return rules
}

// rejected is how many packets node n's kube-proxy REJECT rule with the
// comment (e.g. "svc/rst:tcp has no endpoints") has rejected
// (iptables-save -c in the node's host namespace).
func rejected(t *testing.T, n *node, comment string) int {
	t.Helper()
	out := must(t, "ip", "netns", "exec", n.sw.NetNS, "iptables-save", "-c", "-t", "filter")
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, `"`+comment+`"`) && strings.Contains(l, "-j REJECT") {
			var pkts, bytes int
			if _, err := fmt.Sscanf(l, "[%d:%d]", &pkts, &bytes); err != nil {
				t.Fatalf("no counters in %q", l)
			}
			return pkts
		}
	}
	t.Fatalf("kube-proxy of %s has no REJECT rule %q:\n%s", n.name, comment, out)
	return 0
}

// expectRejected makes n connections of kind c from each client, which
// must be refused, and checks that kube-proxy's REJECT rule (comment) on
// each client's node counted them.
func (s *svcWorld) expectRejected(t *testing.T, what string, clients []*pod, c conn, n int, comment string) {
	t.Helper()
	for _, cl := range clients {
		before := rejected(t, cl.node, comment)
		// The kernel rate-limits ICMP errors per destination: of a burst,
		// a SYN may be refused only when it is retransmitted, 1 s later.
		s.expectFail(t, what+" "+cl.key(), podSource(cl), c, n, 3*time.Second, whyRefused)
		if after := rejected(t, cl.node, comment); after < before+n {
			t.Errorf("%s: kube-proxy's REJECT rule %q on %s counted %d packets for %d refused connections", what, comment, cl.node.name, after-before, n)
		} else {
			t.Logf("%s: kube-proxy's REJECT rule %q on %s rejected %d packets", what, comment, cl.node.name, after-before)
		}
	}
}

// ---- probes

// outcome is one probe's result: answered by who, or failed for why.
type outcome struct {
	ok       bool
	who, why string
}

func hostPort(ip string, port int) string {
	if strings.Contains(ip, ":") {
		return fmt.Sprintf("[%s]:%d", ip, port)
	}
	return fmt.Sprintf("%s:%d", ip, port)
}

func podSource(p *pod) source { return source{p.netns, ""} }

// hostSource is node n's host, sending from its node IP.
func hostSource(n *node) source { return source{n.sw.NetNS, n.gw} }

// probeTargets runs one netpol-agnhost probe in src with targets
// "PROTO:IP:PORT[:SPORT]" (all at once) and returns their outcomes.
func (s *svcWorld) probeTargets(t *testing.T, src source, timeout time.Duration, targets []string) []outcome {
	t.Helper()
	args := []string{"probe", "--timeout", timeout.String()}
	if src.bind != "" {
		args = append(args, "--source", src.bind)
	}
	for i, tg := range targets {
		args = append(args, fmt.Sprintf("%d=%s", i, tg))
	}
	out, err := agnhost(src.netns, args...)
	if err != nil {
		t.Fatal(err)
	}
	res := make([]outcome, len(targets))
	seen := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			t.Fatalf("bad probe output line %q", l)
		}
		i, err := strconv.Atoi(f[0])
		if err != nil || i >= len(targets) {
			t.Fatalf("bad probe output line %q", l)
		}
		if f[1] == "ok" {
			res[i] = outcome{ok: true, who: f[2]}
		} else {
			res[i] = outcome{why: f[2]}
		}
		seen++
	}
	if seen != len(targets) {
		t.Fatalf("probe printed %d results for %d targets:\n%s", seen, len(targets), out)
	}
	s.probes.Add(int64(len(targets)))
	totals.probes.Add(int64(len(targets)))
	return res
}

// conn is a kind of connection: proto to ip:port.
type conn struct {
	proto, ip string
	port      int
}

func (c conn) String() string { return strings.ToUpper(c.proto) + " " + hostPort(c.ip, c.port) }

// targets is n new connections of kind c; UDP ones each from a source port
// of their own (a fresh 5-tuple), TCP ones from the kernel's.
func (c conn) targets(n int) []string {
	out := make([]string, n)
	base := 0
	if c.proto == "udp" {
		base = nextUDPPorts(n)
	}
	for i := range out {
		out[i] = c.proto + ":" + hostPort(c.ip, c.port)
		if base != 0 {
			out[i] += ":" + strconv.Itoa(base+i)
		}
	}
	return out
}

// answers makes n new connections of kind c from src, all expected to be
// answered, and returns who answered each. Connections that fail are
// tried again (as the matrix checks do for cells expected to pass: under
// load a SYN or datagram lost in a burst of upcalls is not resent within
// the 1 s timeout) for up to 10 s; then the test fails.
func (s *svcWorld) answers(t *testing.T, what string, src source, c conn, n int) []string {
	t.Helper()
	start := time.Now()
	var who []string
	pending, rounds := n, 0
	var why []string
	for pending > 0 {
		rounds++
		why = why[:0]
		for _, o := range s.probeTargets(t, src, time.Second, c.targets(pending)) {
			if o.ok {
				who = append(who, o.who)
			} else {
				why = append(why, o.why)
			}
		}
		pending = len(why)
		if pending == 0 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Errorf("%s: %s: %d of %d connections failed after %d rounds (%v): %s", what, c, pending, n, rounds, time.Since(start).Round(time.Millisecond), strings.Join(why, ", "))
			return who
		}
		if rounds == 1 {
			t.Logf("%s: %s: %d of %d connections expected to pass failed (%s), trying them again", what, c, pending, n, strings.Join(why, ", "))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return who
}

// expectAnswers makes n connections (answers) and checks that each was
// answered by one of allowed and, when all, that every one of allowed
// answered at least one. It returns the count per answerer.
func (s *svcWorld) expectAnswers(t *testing.T, what string, src source, c conn, n int, all bool, allowed ...string) map[string]int {
	t.Helper()
	count := map[string]int{}
	for _, w := range s.answers(t, what, src, c, n) {
		count[w]++
	}
	ok := true
	for w := range count {
		found := false
		for _, a := range allowed {
			found = found || a == w
		}
		if !found {
			ok = false
			t.Errorf("%s: %s: answered by %s, want only %v (%s)", what, c, w, allowed, countString(count))
		}
	}
	if all {
		for _, a := range allowed {
			if count[a] == 0 {
				ok = false
				t.Errorf("%s: %s: %s never answered %d connections, want every one of %v (%s)", what, c, a, n, allowed, countString(count))
			}
		}
	}
	if ok {
		t.Logf("%s: %s: %d connections answered by %s", what, c, n, countString(count))
	}
	return count
}

func countString(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	if len(out) == 0 {
		return "nobody"
	}
	return strings.Join(out, ", ")
}

// Why a connection failed, as netpol-agnhost probe reports it.
const (
	whyTimeout = "timeout"            // dropped
	whyRefused = "connection_refused" // TCP RST or ICMP port unreachable (kube-proxy's REJECT)
	whyNoRoute = "no_route_to_host"   // the host could not resolve the next hop
)

// failedFor tells whether a failed connection failed for one of whys (the
// probe's reason, or the connect's: a TCP connection that was established
// but got no banner is neither "refused" nor "timeout").
func failedFor(o outcome, whys []string) bool {
	for _, w := range whys {
		if o.why == w || o.why == "connect:_"+w {
			return true
		}
	}
	return false
}

// expectFail makes n new connections of kind c from src that must all fail
// for one of whys (failedFor). No retries: one connection answered
// fails the test. It returns how long the probe took.
func (s *svcWorld) expectFail(t *testing.T, what string, src source, c conn, n int, timeout time.Duration, whys ...string) time.Duration {
	t.Helper()
	start := time.Now()
	res := s.probeTargets(t, src, timeout, c.targets(n))
	took := time.Since(start)
	var bad, got []string
	for _, o := range res {
		if o.ok {
			bad = append(bad, "answered by "+o.who)
			continue
		}
		if !failedFor(o, whys) {
			bad = append(bad, o.why)
		}
		got = append(got, o.why)
	}
	if len(bad) > 0 {
		t.Errorf("%s: %s: want all %d connections to fail (%s), got: %s", what, c, n, strings.Join(whys, " or "), strings.Join(bad, ", "))
	} else {
		t.Logf("%s: %s: %d connections failed: %s (probe took %v)", what, c, n, strings.Join(got, ", "), took.Round(time.Millisecond))
	}
	return took
}

// failCase is a kind of connection expected to fail, and why it is tried.
type failCase struct {
	what string
	c    conn
}

// expectFailAll is expectFail for several kinds of connection at once (n
// each, all in one probe).
func (s *svcWorld) expectFailAll(t *testing.T, src source, cases []failCase, n int, timeout time.Duration, whys ...string) {
	t.Helper()
	var targets []string
	for _, fc := range cases {
		targets = append(targets, fc.c.targets(n)...)
	}
	res := s.probeTargets(t, src, timeout, targets)
	for i, fc := range cases {
		var bad, got []string
		for _, o := range res[i*n : (i+1)*n] {
			if o.ok {
				bad = append(bad, "answered by "+o.who)
				continue
			}
			if !failedFor(o, whys) {
				bad = append(bad, o.why)
			}
			got = append(got, o.why)
		}
		if len(bad) > 0 {
			t.Errorf("%s: %s: want all %d connections to fail (%s), got: %s", fc.what, fc.c, n, strings.Join(whys, " or "), strings.Join(bad, ", "))
		} else {
			t.Logf("%s: %s: %d connections failed: %s", fc.what, fc.c, n, strings.Join(got, ", "))
		}
	}
}

// ---- the test

func TestServices(t *testing.T) {
	start := time.Now()
	w := newWorld(t, "svc", "10.65")
	s := &svcWorld{world: w, gw6: map[*node]string{}, ip6: map[string]string{}}
	n1, n2 := w.addNode(t), w.addNode(t)
	link(t, n1, n2)
	for _, n := range w.nodes {
		s.gw6[n] = n.dualStack(t, "fd00:65::")
	}
	n1.startAgent(t, "v1", "--node-ip="+s.gw6[n1])
	n2.startAgent(t, "v1", "--node-ip="+s.gw6[n2])
	w.ensureNamespace(t, svcNS, map[string]string{"ns": svcNS})
	var pods []*pod
	add := func(n *node, name string, spec podSpec) *pod {
		spec.ns, spec.name = svcNS, name
		spec.labels = map[string]string{"pod": name}
		p := n.addPod(t, spec)
		pods = append(pods, p)
		return p
	}
	web := func(port int32) []corev1.ContainerPort {
		return []corev1.ContainerPort{{Name: "web", ContainerPort: port, Protocol: corev1.ProtocolTCP}}
	}
	c1, c3, b1, b2 := add(n1, "c1", podSpec{}), add(n1, "c3", podSpec{}), add(n1, "b1", podSpec{}), add(n1, "b2", podSpec{})
	web1 := add(n1, "web1", podSpec{ports: web(80), tcp: []int{80}, udp: []int{80}})
	c2, c4, b3, b4 := add(n2, "c2", podSpec{}), add(n2, "c4", podSpec{}), add(n2, "b3", podSpec{}), add(n2, "b4", podSpec{})
	web2 := add(n2, "web2", podSpec{ports: web(81), tcp: []int{81}, udp: []int{80}})
	w.waitPodsRealized(t)
	s.setDualStackStatus(t, pods)
	t.Logf("%d dual-stack pods on 2 nodes realized in %v", len(pods), time.Since(start).Round(time.Millisecond))

	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			f(t)
			s.cases.Add(1)
		})
	}

	// 1. TCP and UDP, several ports, a named targetPort resolved per
	// endpoint; SCTP by ofproto/trace.
	run("ports-protocols-named-targetport", func(t *testing.T) {
		svc := s.createService(t, svcNS, "web", corev1.ServiceSpec{Ports: []corev1.ServicePort{
			svcPort("http", corev1.ProtocolTCP, 8080, intstr.FromString("web")),
			svcPort("echo", corev1.ProtocolUDP, 5353, intstr.FromInt32(80)),
		}})
		vip := svc.Spec.ClusterIP
		// The EndpointSlice controller puts endpoints whose ports resolve
		// differently into different slices: one per resolution.
		setSliceOf(t, w, svcNS, "web", "web-7fk2p", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 80), slicePort("echo", corev1.ProtocolUDP, 80)},
			readyEndpoints(web1)...)
		setSliceOf(t, w, svcNS, "web", "web-q9x4d", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 81), slicePort("echo", corev1.ProtocolUDP, 80)},
			readyEndpoints(web2)...)
		s.waitLB(t, "tcp", vip, 8080, backendsOf(80, web1.ip)+","+backendsOf(81, web2.ip))
		s.waitLB(t, "udp", vip, 5353, backendsOf(80, web1.ip, web2.ip))
		// web1 serves TCP only on 80, web2 only on 81: an answer from each
		// shows it was reached on its own port.
		s.expectFail(t, "web1 has no TCP 81", podSource(c1), conn{"tcp", web1.ip, 81}, 1, 3*time.Second, whyRefused)
		s.expectFail(t, "web2 has no TCP 80", podSource(c1), conn{"tcp", web2.ip, 80}, 1, 3*time.Second, whyRefused)
		for _, c := range []*pod{c1, c2} {
			s.expectAnswers(t, c.key(), podSource(c), conn{"tcp", vip, 8080}, 40, true, web1.key(), web2.key())
			s.expectAnswers(t, c.key(), podSource(c), conn{"udp", vip, 5353}, 40, true, web1.key(), web2.key())
		}
		s.deleteService(t, svcNS, "web")
	})

	run("sctp-by-trace", func(t *testing.T) { s.testSCTP(t, c1, c2, b1, b3) })

	// 2. ready / serving / terminating.
	run("ready-serving-terminating", func(t *testing.T) {
		svc := s.createService(t, svcNS, "rst", corev1.ServiceSpec{Ports: []corev1.ServicePort{
			svcPort("tcp", corev1.ProtocolTCP, 80, intstr.FromInt32(80)),
			svcPort("udp", corev1.ProtocolUDP, 80, intstr.FromInt32(80)),
		}})
		vip := svc.Spec.ClusterIP
		ports := []discoveryv1.EndpointPort{slicePort("tcp", corev1.ProtocolTCP, 80), slicePort("udp", corev1.ProtocolUDP, 80)}
		set := func(c1, c2, c3, c4 epCond) {
			setSliceOf(t, w, svcNS, "rst", "rst-m2b8z", discoveryv1.AddressTypeIPv4, ports,
				endpointAt(b1, b1.ip, c1), endpointAt(b2, b2.ip, c2), endpointAt(b3, b3.ip, c3), endpointAt(b4, b4.ip, c4))
		}

		// Ready endpoints only, although serving+terminating ones exist.
		set(epReady, epTerminating, epTerminating, epNotReady)
		s.waitLB(t, "tcp", vip, 80, backendsOf(80, b1.ip))
		for _, c := range []*pod{c1, c2} {
			s.expectAnswers(t, "only ready "+c.key(), podSource(c), conn{"tcp", vip, 80}, 20, true, b1.key())
			s.expectAnswers(t, "only ready "+c.key(), podSource(c), conn{"udp", vip, 80}, 20, true, b1.key())
		}
		// None ready: the serving and terminating ones (not the not-serving).
		set(epGone, epTerminating, epTerminating, epNotReady)
		s.waitLB(t, "tcp", vip, 80, backendsOf(80, b2.ip, b3.ip))
		for _, c := range []*pod{c1, c2} {
			s.expectAnswers(t, "serving+terminating "+c.key(), podSource(c), conn{"tcp", vip, 80}, 40, true, b2.key(), b3.key())
		}
		// None serving: no endpoints. kube-proxy rejects on the host.
		set(epGone, epGone, epGone, epNotReady)
		s.waitLB(t, "tcp", vip, 80, "none")
		for _, n := range w.nodes {
			waitProxy(t, n, `"svc/rst:tcp has no endpoints"`)
		}
		// Refused, not dropped: kube-proxy's ICMP port unreachable comes
		// back into the bridge as related traffic.
		s.expectRejected(t, "none serving", []*pod{c1, c2}, conn{"tcp", vip, 80}, 3, "svc/rst:tcp has no endpoints")
		// The node's host gets the same answer from kube-proxy.
		s.expectFail(t, "none serving, from the node", hostSource(n1), conn{"tcp", vip, 80}, 3, 3*time.Second, whyRefused)
		// One ready again: only it.
		set(epGone, epGone, epGone, epReady)
		s.waitLB(t, "tcp", vip, 80, backendsOf(80, b4.ip))
		s.expectAnswers(t, "ready again "+c1.key(), podSource(c1), conn{"tcp", vip, 80}, 10, true, b4.key())
		s.deleteService(t, svcNS, "rst")
	})

	// 3. No EndpointSlice at all; a port the Service does not have.
	run("no-endpoints-and-missing-port", func(t *testing.T) {
		svc := s.createService(t, svcNS, "empty", corev1.ServiceSpec{Ports: []corev1.ServicePort{
			svcPort("tcp", corev1.ProtocolTCP, 80, intstr.FromInt32(80)),
		}})
		vip := svc.Spec.ClusterIP
		for _, n := range w.nodes {
			waitProxy(t, n, `"svc/empty:tcp has no endpoints"`)
		}
		s.waitLB(t, "tcp", vip, 80, "none")
		s.expectRejected(t, "no EndpointSlice", []*pod{c1, c2}, conn{"tcp", vip, 80}, 3, "svc/empty:tcp has no endpoints")
		s.expectFail(t, "no EndpointSlice, from the node", hostSource(n1), conn{"tcp", vip, 80}, 3, 3*time.Second, whyRefused)
		s.deleteService(t, svcNS, "empty")

		// A port the Service does not have (its backends serve it): neither
		// the bridge nor kube-proxy has a rule for it, so nobody answers.
		// The host routes it like any address outside the cluster (here
		// into a namespace that drops it, so: a timeout, or "no route to
		// host" once the host has given up resolving that next hop).
		one := s.createService(t, svcNS, "one", corev1.ServiceSpec{Ports: []corev1.ServicePort{
			svcPort("tcp", corev1.ProtocolTCP, 80, intstr.FromInt32(80)),
		}})
		setSliceOf(t, w, svcNS, "one", "one-s3l8w", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{slicePort("tcp", corev1.ProtocolTCP, 80)}, readyEndpoints(b1, b3)...)
		s.waitLB(t, "tcp", one.Spec.ClusterIP, 80, backendsOf(80, b1.ip, b3.ip))
		waitProxy(t, n1, `"svc/one:tcp cluster IP"`)
		s.waitLB(t, "tcp", one.Spec.ClusterIP, 81, "none")
		for _, c := range []*pod{c1, c2} {
			s.expectAnswers(t, "the port the Service has "+c.key(), podSource(c), conn{"tcp", one.Spec.ClusterIP, 80}, 5, false, b1.key(), b3.key())
			s.expectFail(t, "a port the Service lacks "+c.key(), podSource(c), conn{"tcp", one.Spec.ClusterIP, 81}, 3, time.Second, whyTimeout, whyNoRoute)
			s.expectFail(t, "a port the Service lacks "+c.key(), podSource(c), conn{"udp", one.Spec.ClusterIP, 81}, 3, time.Second, whyTimeout, whyNoRoute)
		}
		s.expectFail(t, "a port the Service lacks, from the node", hostSource(n1), conn{"tcp", one.Spec.ClusterIP, 81}, 3, time.Second, whyTimeout, whyNoRoute)
		s.deleteService(t, svcNS, "one")
	})

	// 4. Session affinity, and spreading without it.
	run("session-affinity", func(t *testing.T) { s.testAffinity(t, []*pod{c1, c2, c3, c4}, b1, b2, b3) })

	// 5. internalTrafficPolicy Local.
	run("internal-traffic-policy-local", func(t *testing.T) {
		local := corev1.ServiceInternalTrafficPolicyLocal
		svc := s.createService(t, svcNS, "loc", corev1.ServiceSpec{InternalTrafficPolicy: &local, Ports: []corev1.ServicePort{
			svcPort("tcp", corev1.ProtocolTCP, 80, intstr.FromInt32(80)),
		}})
		vip := svc.Spec.ClusterIP
		ports := []discoveryv1.EndpointPort{slicePort("tcp", corev1.ProtocolTCP, 80)}
		setSliceOf(t, w, svcNS, "loc", "loc-h5w9c", discoveryv1.AddressTypeIPv4, ports, readyEndpoints(b1, b3)...)
		s.waitLB(t, "tcp", vip, 80, backendsOf(80, b1.ip), backendsOf(80, b3.ip))
		s.expectAnswers(t, "node 1 has b1", podSource(c1), conn{"tcp", vip, 80}, 20, true, b1.key())
		s.expectAnswers(t, "node 2 has b3", podSource(c2), conn{"tcp", vip, 80}, 20, true, b3.key())
		// Only node 1 has endpoints now: node 2's pods' connections are
		// dropped (kube-proxy drops them too), not rejected.
		setSliceOf(t, w, svcNS, "loc", "loc-h5w9c", discoveryv1.AddressTypeIPv4, ports, readyEndpoints(b1, b2)...)
		s.waitLB(t, "tcp", vip, 80, backendsOf(80, b1.ip, b2.ip), "drop")
		s.expectFail(t, "node 2 has none", podSource(c2), conn{"tcp", vip, 80}, 5, time.Second, whyTimeout)
		s.expectFail(t, "node 2 has none", podSource(c4), conn{"tcp", vip, 80}, 5, time.Second, whyTimeout)
		s.expectAnswers(t, "node 1 has b1, b2", podSource(c1), conn{"tcp", vip, 80}, 30, true, b1.key(), b2.key())
		s.deleteService(t, svcNS, "loc")
	})

	// 6. IPv6 and dual-stack cluster IPs.
	run("dual-stack", func(t *testing.T) { s.testDualStack(t, c1, c2, b1, b3) })

	// 7. Headless and ExternalName Services are untouched.
	run("headless-and-externalname-untouched", func(t *testing.T) { s.testHeadless(t, c1, b1) })

	// 8. A backend goes away: its UDP conntrack entries are flushed; TCP
	// connections stay.
	run("backend-removed-udp-flushed-tcp-kept", func(t *testing.T) { s.testBackendRemoved(t, c1, b1, b2, b3) })

	// 9. Hairpin.
	run("hairpin", func(t *testing.T) {
		svc := s.createService(t, svcNS, "hp", corev1.ServiceSpec{Ports: []corev1.ServicePort{
			svcPort("tcp", corev1.ProtocolTCP, 80, intstr.FromInt32(80)),
			svcPort("udp", corev1.ProtocolUDP, 80, intstr.FromInt32(80)),
		}})
		vip := svc.Spec.ClusterIP
		setSliceOf(t, w, svcNS, "hp", "hp-6tq2v", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{slicePort("tcp", corev1.ProtocolTCP, 80), slicePort("udp", corev1.ProtocolUDP, 80)}, readyEndpoints(b2)...)
		s.waitLB(t, "tcp", vip, 80, backendsOf(80, b2.ip))
		s.waitLB(t, "udp", vip, 80, backendsOf(80, b2.ip))
		hairpin := fmt.Sprintf("table=60, .*priority=107,ip,in_port=%d,", b2.ofport)
		before := packets(t, n1, hairpin)
		s.expectAnswers(t, "b2 through its own Service", podSource(b2), conn{"tcp", vip, 80}, 5, true, b2.key())
		s.expectAnswers(t, "b2 through its own Service", podSource(b2), conn{"udp", vip, 80}, 5, true, b2.key())
		after := packetsAfter(t, n1, hairpin, before)
		t.Logf("b2's hairpin flow (table 60, priority 107) forwarded %d packets", after-before)
		if after <= before {
			t.Errorf("the hairpin flow of b2 forwarded nothing (%d -> %d)", before, after)
		}
		// And from another pod the same Service is b2 as well.
		s.expectAnswers(t, c2.key(), podSource(c2), conn{"tcp", vip, 80}, 5, true, b2.key())
		s.deleteService(t, svcNS, "hp")
	})

	// 10. kube-proxy coexistence: the host's connections are kube-proxy's.
	run("kube-proxy-host-clusterip-and-nodeport", func(t *testing.T) { s.testKubeProxy(t, c1, b1, b2, b3, b4) })

	line := fmt.Sprintf("TestServices: %d cases, %d real probes through Services (IPv4 and IPv6, TCP and UDP, 2 nodes), in %v",
		s.cases.Load(), s.probes.Load(), time.Since(start).Round(time.Second))
	t.Log(line)
	addSummary(line)
}

// testSCTP: this kernel has no SCTP sockets; the agent's flows are traced
// for an SCTP Service port instead.
func (s *svcWorld) testSCTP(t *testing.T, c1, c2, b1, b3 *pod) {
	svc := s.createService(t, svcNS, "sctp", corev1.ServiceSpec{Ports: []corev1.ServicePort{
		svcPort("sctp", corev1.ProtocolSCTP, 7777, intstr.FromInt32(80)),
	}})
	defer s.deleteService(t, svcNS, "sctp")
	vip := svc.Spec.ClusterIP
	setSliceOf(t, s.world, svcNS, "sctp", "sctp-d8r3k", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{slicePort("sctp", corev1.ProtocolSCTP, 80)}, readyEndpoints(b1, b3)...)
	s.waitLB(t, "sctp", vip, 7777, backendsOf(80, b1.ip, b3.ip))
	want := []string{fmt.Sprintf("nat(dst=%s:80)", b1.ip), fmt.Sprintf("nat(dst=%s:80)", b3.ip)}
	for _, c := range []*pod{c1, c2} {
		chosen := map[string]int{}
		for _, sport := range []int{40000, 40001, 40002, 40003, 40004, 40005, 40006, 40007} {
			flow := fmt.Sprintf("in_port=%d,sctp,dl_src=%s,dl_dst=0a:58:0a:41:00:01,nw_src=%s,nw_dst=%s,sctp_src=%d,sctp_dst=7777",
				c.ofport, c.mac, c.ip, vip, sport)
			r, err := c.node.sw.Trace(bridge, flow)
			totals.traces.Add(1)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, wnt := range want {
				if strings.Contains(r.Raw, wnt) {
					got = wnt
				}
			}
			if got == "" || !strings.Contains(r.Raw, lbMatch("sctp", vip, 7777)) {
				t.Fatalf("SCTP %s -> %s:7777 from port %d on %s: want it balanced (table 25) to one of %v:\n%s", c.key(), vip, sport, c.node.name, want, r.Raw)
			}
			chosen[got]++
		}
		t.Logf("SCTP %s -> %s:7777 traced on %s from 8 source ports: %s", c.key(), vip, c.node.name, countString(chosen))
		// Not a Service port: not balanced.
		for _, f := range []string{
			fmt.Sprintf("in_port=%d,sctp,dl_src=%s,dl_dst=0a:58:0a:41:00:01,nw_src=%s,nw_dst=%s,sctp_src=40000,sctp_dst=7778", c.ofport, c.mac, c.ip, vip),
			fmt.Sprintf("in_port=%d,tcp,dl_src=%s,dl_dst=0a:58:0a:41:00:01,nw_src=%s,nw_dst=%s,tcp_src=40000,tcp_dst=7777", c.ofport, c.mac, c.ip, vip),
		} {
			r, err := c.node.sw.Trace(bridge, f)
			totals.traces.Add(1)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(r.Raw, "nat(dst=") || strings.Contains(r.Raw, "group:") {
				t.Errorf("%s: balanced, want it not to be (not a port of the Service):\n%s", f, r.Raw)
			}
		}
	}
	// kube-proxy programs it as well (and keeps syncing).
	for _, n := range s.nodes {
		waitProxy(t, n, `"svc/sctp:sctp cluster IP"`)
	}
}

// testAffinity: sessionAffinity ClientIP with a 2 s timeout.
func (s *svcWorld) testAffinity(t *testing.T, clients []*pod, b1, b2, b3 *pod) {
	const timeout = 2
	affinity := &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(int32(timeout))}}
	svc := s.createService(t, svcNS, "aff", corev1.ServiceSpec{SessionAffinity: corev1.ServiceAffinityClientIP, SessionAffinityConfig: affinity,
		Ports: []corev1.ServicePort{svcPort("tcp", corev1.ProtocolTCP, 80, intstr.FromInt32(80))}})
	spread := s.createService(t, svcNS, "spread", corev1.ServiceSpec{
		Ports: []corev1.ServicePort{svcPort("tcp", corev1.ProtocolTCP, 80, intstr.FromInt32(80))}})
	vip := svc.Spec.ClusterIP
	ports := []discoveryv1.EndpointPort{slicePort("tcp", corev1.ProtocolTCP, 80)}
	setSliceOf(t, s.world, svcNS, "aff", "aff-p3n7s", discoveryv1.AddressTypeIPv4, ports, readyEndpoints(b1, b2, b3)...)
	setSliceOf(t, s.world, svcNS, "spread", "spread-z4c6m", discoveryv1.AddressTypeIPv4, ports, readyEndpoints(b1, b2, b3)...)
	s.waitLB(t, "tcp", vip, 80, backendsOf(80, b1.ip, b2.ip, b3.ip))
	s.waitLB(t, "tcp", spread.Spec.ClusterIP, 80, backendsOf(80, b1.ip, b2.ip, b3.ip))
	backends := []string{b1.key(), b2.key(), b3.key()}

	// Without affinity: spread (P(one backend for all 30) = 3^-29).
	for _, c := range []*pod{clients[0], clients[1]} {
		s.expectAnswers(t, "no affinity "+c.key(), podSource(c), conn{"tcp", spread.Spec.ClusterIP, 80}, 30, true, backends...)
	}

	// With affinity: each round, every client makes one connection (which
	// chooses and is remembered), then 9 at once: all must go where the
	// first went. Then nobody connects for timeout+2 s: the entry expires,
	// and the next round chooses again. If choices were not remade, every
	// client would keep its first backend; with them remade, 4 clients ×
	// 5 re-choices among 3 backends all equal to each client's first has
	// probability 3^-20.
	const rounds = 6
	chosen := make([][]string, len(clients))
	explained := false
	for r := range rounds {
		if r > 0 {
			time.Sleep((timeout + 2) * time.Second)
		}
		var line []string
		for i, c := range clients {
			first := s.answers(t, "affinity", podSource(c), conn{"tcp", vip, 80}, 1)
			if len(first) != 1 {
				t.Fatalf("round %d: %s's first connection failed", r+1, c.key())
			}
			// The first connection picked a backend and ovs-vswitchd learned
			// it (table 28's learn, into table 26), in the pass that picked.
			entry := learnedEntry(t, c.node, c.ip, vip)
			rest := map[string]int{}
			for _, w := range s.answers(t, "affinity", podSource(c), conn{"tcp", vip, 80}, 9) {
				rest[w]++
			}
			if len(rest) != 1 || rest[first[0]] != 9 {
				t.Errorf("round %d: %s's first connection went to %s, the next 9 to %s: want all to %s (affinity); its table 26 entry right after the first connection: %q",
					r+1, c.key(), first[0], countString(rest), first[0], entry)
				if entry == "" && !explained {
					explained = true
					t.Errorf("no affinity entry was learned for %s's first connection of round %d. Its datapath flows after the balancer's commit:\n%s\n"+
						"learn() runs only in ovs-vswitchd: a datapath flow that matches no transport source port would forward later connections without it",
						c.key(), r+1, commitFlows(t, c.node, c.ip, vip))
				}
			}
			chosen[i] = append(chosen[i], first[0])
		}
		for i, c := range clients {
			line = append(line, c.name+"→"+strings.TrimPrefix(chosen[i][r], svcNS+"/"))
		}
		t.Logf("affinity round %d: first connections: %s", r+1, strings.Join(line, " "))
	}
	changed := 0
	for i, c := range clients {
		distinct := map[string]bool{}
		for _, b := range chosen[i] {
			distinct[b] = true
		}
		if len(distinct) > 1 {
			changed++
		}
		t.Logf("%s over %d rounds: %v (%d distinct backends)", c.key(), rounds, chosen[i], len(distinct))
	}
	if changed == 0 {
		t.Errorf("no client was given another backend after its affinity entry expired (%d s idle, %d rounds × %d clients)", timeout+2, rounds, len(clients))
	}
	s.deleteService(t, svcNS, "aff")
	s.deleteService(t, svcNS, "spread")
}

// learnedEntry is node n's table 26 entry for client → vip ("" if none).
func learnedEntry(t *testing.T, n *node, client, vip string) string {
	t.Helper()
	f, err := n.sw.Ofctl("-O", "OpenFlow15", "dump-flows", bridge, "table=26")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(f, "\n") {
		if strings.Contains(l, "nw_src="+client+",nw_dst="+vip+",") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// commitFlows lists node n's datapath flows of client's connections to vip
// after the load balancer's commit (they match the original destination
// with ct_tuple4).
func commitFlows(t *testing.T, n *node, client, vip string) string {
	t.Helper()
	out, err := n.sw.Appctl("dpctl/dump-flows")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "ct_tuple4(dst="+vip+",") && strings.Contains(l, "src="+client+",") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return strings.Join(lines, "\n")
}

// testDualStack: a RequireDualStack Service reached on both cluster IPs,
// and a policy denying the client denies both.
func (s *svcWorld) testDualStack(t *testing.T, c1, c2, b1, b3 *pod) {
	req := corev1.IPFamilyPolicyRequireDualStack
	svc := s.createService(t, svcNS, "ds", corev1.ServiceSpec{IPFamilyPolicy: &req,
		IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
		Ports: []corev1.ServicePort{
			svcPort("tcp", corev1.ProtocolTCP, 80, intstr.FromInt32(80)),
			svcPort("udp", corev1.ProtocolUDP, 80, intstr.FromInt32(80)),
		}})
	if len(svc.Spec.ClusterIPs) != 2 {
		t.Fatalf("want two cluster IPs, got %v", svc.Spec.ClusterIPs)
	}
	v4, v6 := svc.Spec.ClusterIPs[0], svc.Spec.ClusterIPs[1]
	ports := []discoveryv1.EndpointPort{slicePort("tcp", corev1.ProtocolTCP, 80), slicePort("udp", corev1.ProtocolUDP, 80)}
	setSliceOf(t, s.world, svcNS, "ds", "ds-4k8vx", discoveryv1.AddressTypeIPv4, ports, readyEndpoints(b1, b3)...)
	setSliceOf(t, s.world, svcNS, "ds", "ds-6j2wq", discoveryv1.AddressTypeIPv6, ports,
		endpointAt(b1, s.ip6[b1.key()], epReady), endpointAt(b3, s.ip6[b3.key()], epReady))
	s.waitLB(t, "tcp", v4, 80, backendsOf(80, b1.ip, b3.ip))
	s.waitLB(t, "udp", v4, 80, backendsOf(80, b1.ip, b3.ip))
	s.waitLB(t, "tcp", v6, 80, backendsOf(80, s.ip6[b1.key()], s.ip6[b3.key()]))
	s.waitLB(t, "udp", v6, 80, backendsOf(80, s.ip6[b1.key()], s.ip6[b3.key()]))
	all := func(what string, want bool) {
		for _, c := range []*pod{c1, c2} {
			var blocked []failCase
			for _, k := range []conn{{"tcp", v4, 80}, {"udp", v4, 80}, {"tcp", v6, 80}, {"udp", v6, 80}} {
				if want || c == c2 {
					s.expectAnswers(t, what+" "+c.key(), podSource(c), k, 30, true, b1.key(), b3.key())
				} else {
					blocked = append(blocked, failCase{what + " " + c.key(), k})
				}
			}
			if len(blocked) > 0 {
				s.expectFailAll(t, podSource(c), blocked, 4, time.Second, whyTimeout)
			}
		}
	}
	all("dual-stack", true)
	// IPv6 pod to pod, as a reference.
	s.expectAnswers(t, "IPv6 pod to pod", podSource(c1), conn{"tcp", s.ip6[b3.key()], 80}, 3, true, b3.key())

	// Ingress of b1 and b3 only from c2: c1 is denied on both families.
	s.change(t, func() {
		s.kubectlApply(t, np(svcNS, "ds-from-c2", `
podSelector:
  matchExpressions:
  - {key: pod, operator: In, values: [b1, b3]}
ingress:
- from:
  - podSelector:
      matchLabels: {pod: c2}`))
	})
	all("policy allows only c2:", false)
	s.expectFail(t, "policy, IPv6 pod to pod", podSource(c1), conn{"tcp", s.ip6[b3.key()], 80}, 2, time.Second, whyTimeout)
	s.change(t, func() { s.deletePolicies(t, svcNS) })
	s.expectAnswers(t, "policy deleted "+c1.key(), podSource(c1), conn{"tcp", v6, 80}, 10, false, b1.key(), b3.key())
	s.deleteService(t, svcNS, "ds")
}

// groupsAndTable25 is every node's table 25 and groups, sorted lines.
func (s *svcWorld) groupsAndTable25(t *testing.T) (table25, groups [][]string) {
	t.Helper()
	for _, n := range s.nodes {
		f, err := n.sw.Ofctl("-O", "OpenFlow15", "dump-flows", bridge, "table=25", "--no-stats")
		if err != nil {
			t.Fatal(err)
		}
		g, err := n.sw.Ofctl("-O", "OpenFlow15", "dump-groups", bridge)
		if err != nil {
			t.Fatal(err)
		}
		lines := func(s string) []string {
			var out []string
			for _, l := range strings.Split(s, "\n") {
				if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "OFPST_") && !strings.HasPrefix(l, "NXST_") {
					out = append(out, l)
				}
			}
			sort.Strings(out)
			return out
		}
		table25 = append(table25, lines(f))
		groups = append(groups, lines(g))
	}
	return table25, groups
}

func added(before, after []string) []string {
	in := map[string]bool{}
	for _, l := range before {
		in[l] = true
	}
	var out []string
	for _, l := range after {
		if !in[l] {
			out = append(out, l)
		}
	}
	return out
}

// testHeadless: headless and ExternalName Services make no flows or
// groups. A marker Service created after them shows the agents have seen
// them (one informer, events in order): the only change is the marker's.
func (s *svcWorld) testHeadless(t *testing.T, c1, b1 *pod) {
	t25, groups := s.groupsAndTable25(t)
	ports := []corev1.ServicePort{svcPort("tcp", corev1.ProtocolTCP, 80, intstr.FromInt32(80))}
	s.createService(t, svcNS, "headless", corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"pod": "b1"}, Ports: ports})
	setSliceOf(t, s.world, svcNS, "headless", "headless-r7t2n", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{slicePort("tcp", corev1.ProtocolTCP, 80)}, readyEndpoints(b1)...)
	s.createService(t, svcNS, "extname", corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"})
	marker := s.createService(t, svcNS, "marker", corev1.ServiceSpec{Ports: ports})
	setSliceOf(t, s.world, svcNS, "marker", "marker-w2x9b", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{slicePort("tcp", corev1.ProtocolTCP, 80)}, readyEndpoints(b1)...)
	s.waitLB(t, "tcp", marker.Spec.ClusterIP, 80, backendsOf(80, b1.ip))
	t25b, groupsb := s.groupsAndTable25(t)
	for i, n := range s.nodes {
		nf, ng := added(t25[i], t25b[i]), added(groups[i], groupsb[i])
		gone := append(added(t25b[i], t25[i]), added(groupsb[i], groups[i])...)
		if len(nf) != 1 || !strings.Contains(nf[0], "nw_dst="+marker.Spec.ClusterIP+",") || len(ng) != 1 || len(gone) != 0 {
			t.Errorf("%s: after creating a headless, an ExternalName and a marker Service, want only the marker's flow and group new in table 25 and the groups; new flows:\n%s\nnew groups:\n%s\ngone:\n%s",
				n.name, strings.Join(nf, "\n"), strings.Join(ng, "\n"), strings.Join(gone, "\n"))
		} else {
			t.Logf("%s: table 25 %d -> %d flows, %d -> %d groups: only the marker's were added", n.name, len(t25[i]), len(t25b[i]), len(groups[i]), len(groupsb[i]))
		}
	}
	s.deleteService(t, svcNS, "marker")
	s.waitLB(t, "tcp", marker.Spec.ClusterIP, 80, "none")
	t25c, groupsc := s.groupsAndTable25(t)
	for i, n := range s.nodes {
		if d := append(added(t25[i], t25c[i]), added(groups[i], groupsc[i])...); len(d) > 0 {
			t.Errorf("%s: with the headless and ExternalName Services left, table 25 and the groups differ from before:\n%s", n.name, strings.Join(d, "\n"))
		}
	}
	// The headless Service's pod is reached at its own address, as ever.
	s.expectAnswers(t, "headless Service's pod", podSource(c1), conn{"tcp", b1.ip, 80}, 3, true, b1.key())
	s.deleteService(t, svcNS, "headless")
	s.deleteService(t, svcNS, "extname")
}

// ctEntries lists node n's conntrack entries (zone 64000) containing s.
func ctEntries(t *testing.T, n *node, s string) []string {
	t.Helper()
	out, err := n.sw.Appctl("dpctl/dump-conntrack", "zone=64000")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			got = append(got, strings.TrimSpace(l))
		}
	}
	return got
}

// udpFrom sends one datagram exchange to vip:port from a fixed source port
// (the same 5-tuple every time), expected to be answered (retried for up
// to 10 s with the same source port), and returns who answered.
func (s *svcWorld) udpFrom(t *testing.T, c *pod, vip string, port, sport int) string {
	t.Helper()
	start := time.Now()
	for {
		o := s.probeTargets(t, podSource(c), time.Second, []string{fmt.Sprintf("udp:%s:%d", hostPort(vip, port), sport)})[0]
		if o.ok {
			return o.who
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("UDP %s -> %s:%d from port %d: %s", c.key(), vip, port, sport, o.why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// testBackendRemoved: kube-proxy's behaviour when an endpoint goes away
// while its pod keeps running: UDP conntrack entries to it are flushed (the
// next datagram of the same 5-tuple is balanced again), TCP connections
// are left alone, to it and to the others.
func (s *svcWorld) testBackendRemoved(t *testing.T, c1 *pod, backends ...*pod) {
	svc := s.createService(t, svcNS, "udpf", corev1.ServiceSpec{Ports: []corev1.ServicePort{
		svcPort("udp", corev1.ProtocolUDP, 80, intstr.FromInt32(80)),
		svcPort("tcp", corev1.ProtocolTCP, 80, intstr.FromInt32(80)),
	}})
	vip := svc.Spec.ClusterIP
	ports := []discoveryv1.EndpointPort{slicePort("udp", corev1.ProtocolUDP, 80), slicePort("tcp", corev1.ProtocolTCP, 80)}
	setSliceOf(t, s.world, svcNS, "udpf", "udpf-k4j8m", discoveryv1.AddressTypeIPv4, ports, readyEndpoints(backends...)...)
	var ips []string
	for _, b := range backends {
		ips = append(ips, b.ip)
	}
	s.waitLB(t, "udp", vip, 80, backendsOf(80, ips...))
	s.waitLB(t, "tcp", vip, 80, backendsOf(80, ips...))

	// A UDP "connection" (fixed source port) answered by A, twice.
	sport := nextUDPPorts(1)
	a := s.udpFrom(t, c1, vip, 80, sport)
	if again := s.udpFrom(t, c1, vip, 80, sport); again != a {
		t.Fatalf("the same UDP 5-tuple was answered by %s, then by %s", a, again)
	}
	// Other UDP 5-tuples answered by other backends keep their entries.
	var other []int
	for len(other) < 2 {
		sp := nextUDPPorts(1)
		if s.udpFrom(t, c1, vip, 80, sp) != a {
			other = append(other, sp)
		}
	}
	tuple := func(sp int) string { return fmt.Sprintf("udp,orig=(src=%s,dst=%s,sport=%d,dport=80)", c1.ip, vip, sp) }
	if e := ctEntries(t, c1.node, tuple(sport)); len(e) != 1 {
		t.Fatalf("want one conntrack entry for %s, got %v", tuple(sport), e)
	} else {
		t.Logf("UDP %s -> %s:80 from port %d answered twice by %s; conntrack: %s", c1.key(), vip, sport, a, e[0])
	}

	// Held TCP connections through the Service: one to A, one to another.
	var holdA, holdB *holder
	var whoB string
	for i := 0; i < 60 && (holdA == nil || holdB == nil); i++ {
		h := c1.hold(t, vip, 80)
		who := strings.TrimPrefix(h.out.Text(), "connected ")
		switch {
		case who == a && holdA == nil:
			holdA = h
		case who != a && holdB == nil:
			holdB, whoB = h, who
		default:
			h.in.Close()
			_ = h.cmd.Process.Kill()
		}
	}
	if holdA == nil || holdB == nil {
		t.Fatalf("60 held connections through the Service did not reach both %s and another backend", a)
	}
	for _, h := range []*holder{holdA, holdB} {
		if err := h.echo("before"); err != nil {
			t.Fatalf("held connection before the removal: %v", err)
		}
	}

	// A leaves the EndpointSlice; its pod keeps running.
	var rest []*pod
	var restIPs []string
	for _, b := range backends {
		if b.key() != a {
			rest = append(rest, b)
			restIPs = append(restIPs, b.ip)
		}
	}
	setSliceOf(t, s.world, svcNS, "udpf", "udpf-k4j8m", discoveryv1.AddressTypeIPv4, ports, readyEndpoints(rest...)...)
	removed := time.Now()
	s.waitLB(t, "udp", vip, 80, backendsOf(80, restIPs...))
	for len(ctEntries(t, c1.node, tuple(sport))) > 0 && time.Since(removed) < 10*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	if e := ctEntries(t, c1.node, tuple(sport)); len(e) > 0 {
		t.Errorf("%v after %s left the EndpointSlice, the conntrack entry of its UDP connection is still there: %v", time.Since(removed).Round(time.Millisecond), a, e)
	} else {
		t.Logf("the conntrack entry of the UDP connection to %s was gone %v after the EndpointSlice update", a, time.Since(removed).Round(time.Millisecond))
	}
	for _, sp := range other {
		if e := ctEntries(t, c1.node, tuple(sp)); len(e) != 1 {
			t.Errorf("the conntrack entry of the UDP connection from port %d (to another backend) was flushed too: %v", sp, e)
		}
	}
	next := s.udpFrom(t, c1, vip, 80, sport)
	if next == a {
		t.Errorf("the same UDP 5-tuple was still answered by %s after it left the EndpointSlice", a)
	} else {
		t.Logf("the same UDP 5-tuple is now answered by %s (was %s)", next, a)
	}

	// TCP: the connection to another backend is undisturbed; the one to
	// the removed backend keeps working too (kube-proxy flushes no TCP).
	for i := range 3 {
		if err := holdB.echo(fmt.Sprintf("after-%d", i)); err != nil {
			t.Errorf("held TCP connection to %s (still a backend) after %s was removed: %v", whoB, a, err)
		}
		if err := holdA.echo(fmt.Sprintf("after-%d", i)); err != nil {
			t.Errorf("held TCP connection to %s (removed, still running) after its removal: %v", a, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("held TCP connections through the Service to %s (kept) and to %s (removed) both echo after the removal", whoB, a)
	var restKeys []string
	for _, b := range rest {
		restKeys = append(restKeys, b.key())
	}
	s.expectAnswers(t, "new TCP connections after the removal", podSource(c1), conn{"tcp", vip, 80}, 20, false, restKeys...)
	s.deleteService(t, svcNS, "udpf")
}

// packetsAfter waits (up to 3 s: OpenFlow counters of datapath-cached
// flows are updated by ovs-vswitchd's revalidators) until the flows
// matching flow have counted more than was packets, and returns the count.
func packetsAfter(t *testing.T, n *node, flow string, was int) int {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := packets(t, n, flow)
		if got > was || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testKubeProxy: the node's host reaches a cluster IP through kube-proxy
// (its DNAT; the bridge's balancer sees none of it) and a NodePort.
func (s *svcWorld) testKubeProxy(t *testing.T, c1, b1, b2, b3, b4 *pod) {
	n1, n2 := b1.node, b3.node
	ports := []corev1.ServicePort{
		svcPort("tcp80", corev1.ProtocolTCP, 80, intstr.FromInt32(80)),
		svcPort("udp80", corev1.ProtocolUDP, 80, intstr.FromInt32(80)),
	}
	slicePorts := []discoveryv1.EndpointPort{slicePort("tcp80", corev1.ProtocolTCP, 80), slicePort("udp80", corev1.ProtocolUDP, 80)}
	// The host's connections reach pods of its own node only in this
	// topology (a node's address is not reachable from the other node's
	// pods), so the backends are node 1's.
	kp := s.createService(t, svcNS, "kp", corev1.ServiceSpec{Ports: ports})
	vip := kp.Spec.ClusterIP
	setSliceOf(t, s.world, svcNS, "kp", "kp-b7v3q", discoveryv1.AddressTypeIPv4, slicePorts, readyEndpoints(b1, b2)...)
	s.waitLB(t, "tcp", vip, 80, backendsOf(80, b1.ip, b2.ip))
	rules := waitProxy(t, n1, `"svc/kp:tcp80 cluster IP"`, `"svc/kp:udp80 cluster IP"`)
	var chains []string
	for _, l := range strings.Split(rules, "\n") {
		if strings.Contains(l, "svc/kp:") && strings.Contains(l, "-j KUBE-SVC-") {
			chains = append(chains, l)
		}
	}
	if len(chains) == 0 {
		t.Fatalf("kube-proxy of %s has no KUBE-SVC chain for svc/kp:\n%s", n1.name, rules)
	}
	t.Logf("kube-proxy of %s (iptables-save):\n%s", n1.name, strings.Join(chains, "\n"))
	balanced := fmt.Sprintf(`table=25, .*priority=100,tcp,nw_dst=%s,tp_dst=80 `, regexp.QuoteMeta(vip))
	before := packets(t, n1, balanced)
	s.expectAnswers(t, n1.name+"'s host (kube-proxy)", hostSource(n1), conn{"tcp", vip, 80}, 20, false, b1.key(), b2.key())
	s.expectAnswers(t, n1.name+"'s host (kube-proxy)", hostSource(n1), conn{"udp", vip, 80}, 20, false, b1.key(), b2.key())
	// OpenFlow counters of datapath-cached flows are updated by the
	// revalidators (every 500 ms): wait for them.
	time.Sleep(1500 * time.Millisecond)
	mid := packets(t, n1, balanced)
	if mid != before {
		t.Errorf("the bridge's balancer flow for %s:80 counted %d packets of the host's connections: want them DNATed by kube-proxy before the bridge", vip, mid-before)
	}
	s.expectAnswers(t, "a pod, by the bridge", podSource(c1), conn{"tcp", vip, 80}, 5, false, b1.key(), b2.key())
	after := packetsAfter(t, n1, balanced, mid)
	if after <= mid {
		t.Errorf("the bridge's balancer flow for %s:80 counted nothing of the pod's connections", vip)
	}
	t.Logf("table 25 flow of %s:80 on %s: +%d packets from the host's 20 connections, +%d from a pod's 5", vip, n1.name, mid-before, after-mid)

	// A NodePort Service, at node 2's address from node 2's host.
	np := s.createService(t, svcNS, "np", corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: ports})
	setSliceOf(t, s.world, svcNS, "np", "np-f8d2l", discoveryv1.AddressTypeIPv4, slicePorts, readyEndpoints(b3, b4)...)
	nodePort := int(np.Spec.Ports[0].NodePort)
	waitProxy(t, n2, `"svc/np:tcp80" -m tcp --dport `+strconv.Itoa(nodePort), `"svc/np:tcp80 cluster IP"`)
	s.expectAnswers(t, n2.name+"'s host, NodePort", hostSource(n2), conn{"tcp", n2.gw, nodePort}, 10, false, b3.key(), b4.key())
	s.deleteService(t, svcNS, "kp")
	s.deleteService(t, svcNS, "np")
}
