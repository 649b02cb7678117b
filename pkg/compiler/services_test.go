package compiler_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/internal/netpoltest"
	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// TestServicesIncrementalEqualsFull: random Service and EndpointSlice events
// (with pod and policy events between them), after each Flush the
// incremental flows and groups equal a full compile, and only the Service's
// own fragment changes.
func TestServicesIncrementalEqualsFull(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		f := netpoltest.NewFixture(netpoltest.Options{Nodes: 2, DualStack: seed%2 == 0})
		netpoltest.SampleServices(f)
		cfg := compiler.Config{Node: "node-1", UplinkPort: 9}
		cfg.Bindings = compiler.DefaultBindings(f.Cluster, "node-1", nil, 9)
		inc := compiler.NewIncremental(f.Cluster, cfg)
		flushEqualsFull(t, inc, fmt.Sprintf("seed %d: start", seed))
		for i := range 30 {
			var desc string
			if rng.IntN(4) == 0 {
				desc = randomEvent(rng, f, inc)
			} else {
				desc = randomServiceEvent(rng, f, inc)
			}
			flushEqualsFull(t, inc, fmt.Sprintf("seed %d, event %d (%s)", seed, i, desc))
		}
	}
}

func randomServiceEvent(rng *rand.Rand, f *netpoltest.Fixture, inc *compiler.Incremental) string {
	c := inc.Cluster()
	name := fmt.Sprintf("svc%d", rng.IntN(4))
	ns := netpoltest.NamespaceNames[rng.IntN(3)]
	switch rng.IntN(5) {
	case 0, 1:
		svc := &model.Service{Namespace: ns, Name: name, ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, 50, byte(1 + rng.IntN(20))})}}
		if rng.IntN(2) == 0 {
			svc.ClusterIPs = append(svc.ClusterIPs, netip.MustParseAddr(fmt.Sprintf("fd00:96::50:%d", 1+rng.IntN(20))))
		}
		for i, proto := range model.Protocols {
			if rng.IntN(2) == 0 {
				svc.Ports = append(svc.Ports, model.ServicePort{Name: fmt.Sprintf("p%d", i), Protocol: proto, Port: int32(80 + i)})
			}
		}
		if rng.IntN(3) == 0 {
			svc.AffinitySeconds = int32(1 + rng.IntN(100000))
		}
		svc.InternalLocal = rng.IntN(4) == 0
		inc.SetService(svc)
		return "set service " + svc.Key()
	case 2:
		inc.DeleteService(ns + "/" + name)
		return "delete service " + ns + "/" + name
	case 3:
		sl := &model.EndpointSlice{Namespace: ns, Name: fmt.Sprintf("%s-%d", name, rng.IntN(2)), Service: name, IPv6: rng.IntN(3) == 0}
		for i, proto := range model.Protocols {
			sl.Ports = append(sl.Ports, model.EndpointPort{Name: fmt.Sprintf("p%d", i), Protocol: proto, Port: int32(80 + rng.IntN(3))})
		}
		for _, p := range c.SortedPods() {
			ip, ok := netpoltest.PodIP(p, map[bool]int{false: 4, true: 6}[sl.IPv6])
			if !ok || rng.IntN(2) == 0 {
				continue
			}
			sl.Endpoints = append(sl.Endpoints, model.Endpoint{Address: ip, Ready: rng.IntN(4) > 0, Serving: rng.IntN(4) > 0, Terminating: rng.IntN(4) == 0, Node: p.Node})
		}
		inc.SetEndpointSlice(sl)
		return "set slice " + sl.Key()
	default:
		key := fmt.Sprintf("%s/%s-%d", ns, name, rng.IntN(2))
		inc.DeleteEndpointSlice(key)
		return "delete slice " + key
	}
}

// TestServiceConntrackFlushes: a UDP backend that stops serving has its
// conntrack entries flushed (kube-proxy does); TCP keeps them, and so does
// a terminating backend still serving, or a Service that is deleted.
func TestServiceConntrackFlushes(t *testing.T) {
	vip := netip.MustParseAddr("10.96.7.7")
	svc := &model.Service{Namespace: "x", Name: "dns", ClusterIPs: []netip.Addr{vip}, Ports: []model.ServicePort{
		{Name: "udp", Protocol: model.UDP, Port: 53}, {Name: "tcp", Protocol: model.TCP, Port: 53}}}
	slice := func(eps ...model.Endpoint) *model.EndpointSlice {
		return &model.EndpointSlice{Namespace: "x", Name: "dns-1", Service: "dns", Ports: []model.EndpointPort{
			{Name: "udp", Protocol: model.UDP, Port: 5353}, {Name: "tcp", Protocol: model.TCP, Port: 5353}}, Endpoints: eps}
	}
	a := model.Endpoint{Address: netip.MustParseAddr("10.1.1.1"), Ready: true, Serving: true}
	b := model.Endpoint{Address: netip.MustParseAddr("10.1.1.2"), Ready: true, Serving: true}
	c := model.NewCluster(model.ModeV1)
	c.AddService(svc)
	c.AddEndpointSlice(slice(a, b))
	inc := compiler.NewIncremental(c, compiler.Config{Node: "node-1", CTZone: 9})
	flush := func(what string) []openflow.ConntrackFlush {
		t.Helper()
		if _, err := inc.Flush(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return inc.ConntrackFlushes()
	}
	if got := flush("start"); len(got) != 0 {
		t.Fatalf("start: flushes %v", got)
	}
	bTerm := b
	bTerm.Ready, bTerm.Terminating = false, true
	inc.SetEndpointSlice(slice(a, bTerm))
	if got := flush("b terminating, serving"); len(got) != 0 {
		t.Errorf("a backend still serving lost its entries: %v", got)
	}
	inc.SetEndpointSlice(slice(a))
	want := []openflow.ConntrackFlush{{Zone: 9, Protocol: 17, ServiceIP: "10.96.7.7", ServicePort: 53, BackendIP: "10.1.1.2", BackendPort: 5353}}
	if got := flush("b gone"); !slices.Equal(got, want) {
		t.Errorf("b gone: flushes %v, want %v (UDP only)", got, want)
	}
	orig, reply := want[0].Tuples()
	if orig != "ct_nw_dst=10.96.7.7,ct_nw_proto=17,ct_tp_dst=53" || reply != "ct_nw_src=10.1.1.2,ct_nw_proto=17,ct_tp_src=5353" {
		t.Errorf("tuples %q %q", orig, reply)
	}
	if got := flush("nothing"); len(got) != 0 {
		t.Errorf("flushes without a change: %v", got)
	}
	inc.DeleteService("x/dns")
	if got := flush("service deleted"); len(got) != 0 {
		t.Errorf("a deleted Service's entries are kept, as kube-proxy keeps them: %v", got)
	}
}

// TestServiceTraces follows new connections to the sample Services through
// a real ovs-vswitchd (ofproto/trace): where each kind of Service sends
// them.
func TestServiceTraces(t *testing.T) {
	f := netpoltest.NewFixture(netpoltest.Options{Nodes: 2, DualStack: true})
	netpoltest.SampleServices(f)
	w := netpoltest.NewWorld(t, f)
	w.Apply(t)
	nb := w.Nodes["node-1"]
	// x/a, y/b, z/c on node-1 (pods round-robin: x/a=1, x/b=2, x/c=1, y/a=2, y/b=1, y/c=2, z/a=1, z/b=2, z/c=1).
	src := f.Pods["x/a"]
	if src.Node != "node-1" || f.Pods["z/a"].Node != "node-1" || f.Pods["z/b"].Node != "node-2" {
		t.Fatalf("fixture layout changed: %s %s %s", src.Node, f.Pods["z/a"].Node, f.Pods["z/b"].Node)
	}
	b := nb.Config.Bindings[src.Key()]
	trace := func(fam int, proto string, vip string, port int) string {
		t.Helper()
		ip, _ := netpoltest.PodIP(src, fam)
		fields := fmt.Sprintf("nw_src=%s,nw_dst=%s", ip, vip)
		p := proto
		if fam == 6 {
			fields = fmt.Sprintf("ipv6_src=%s,ipv6_dst=%s", ip, vip)
			p += "6"
		}
		flow := fmt.Sprintf("in_port=%d,%s,dl_src=%s,dl_dst=0a:58:00:00:00:01,%s,%s_src=40000,%s_dst=%d", b.OFPort, p, b.MAC, fields, proto, proto, port)
		res, err := w.Switch.Trace(nb.Bridge, flow)
		if err != nil {
			t.Fatal(err)
		}
		if res.Dropped {
			return "drop"
		}
		return strings.Join(res.OutputNames, ",") + " " + strings.Join(res.Passes, " | ")
	}
	expect := func(what, got string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("%s: %s", what, got)
		}
	}
	for _, fam := range []int{4, 6} {
		vip := func(n int) string {
			if fam == 6 {
				return fmt.Sprintf("fd00:96::100:%d", n)
			}
			return fmt.Sprintf("10.96.100.%d", n)
		}
		// x/web TCP 80 → x/a (hairpin, its own port) or x/b (on node-2:
		// the uplink), port 81; never y/c (terminating, not ready).
		got := trace(fam, "tcp", vip(1), 80)
		expect(fmt.Sprintf("IPv%d web tcp", fam), got, (strings.HasPrefix(got, "n1xa ") || strings.HasPrefix(got, "up1 ")) && strings.Contains(got, "]:81)") != (fam == 4) && strings.Contains(got, ":81)"))
		got = trace(fam, "udp", vip(1), 53)
		expect(fmt.Sprintf("IPv%d web udp", fam), got, strings.HasPrefix(got, "n1xa ") || strings.HasPrefix(got, "up1 "))
		got = trace(fam, "sctp", vip(1), 9)
		expect(fmt.Sprintf("IPv%d web sctp", fam), got, strings.HasPrefix(got, "n1xa ") || strings.HasPrefix(got, "up1 "))
		// A port the Service does not have: not balanced (to the host).
		got = trace(fam, "tcp", vip(1), 81)
		expect(fmt.Sprintf("IPv%d web tcp/81", fam), got, strings.HasPrefix(got, "br1 "))
		// sticky: affinity, y/a (node-2) or y/b (node-1).
		got = trace(fam, "tcp", vip(2), 80)
		expect(fmt.Sprintf("IPv%d sticky", fam), got, strings.HasPrefix(got, "n1yb ") || strings.HasPrefix(got, "up1 "))
		// local: z/a is on node-1.
		got = trace(fam, "tcp", vip(4), 80)
		expect(fmt.Sprintf("IPv%d local", fam), got, strings.HasPrefix(got, "n1za "))
		// draining: only terminating, serving endpoints: z/b (node-2) or z/c (node-1).
		got = trace(fam, "tcp", vip(5), 80)
		expect(fmt.Sprintf("IPv%d draining", fam), got, strings.HasPrefix(got, "n1zc ") || strings.HasPrefix(got, "up1 "))
		// empty: no endpoints: on to the host unchanged, where kube-proxy rejects.
		got = trace(fam, "tcp", vip(6), 80)
		expect(fmt.Sprintf("IPv%d empty", fam), got, strings.HasPrefix(got, "br1 ") && !strings.Contains(got, "nat(dst"))
	}
	// local seen from node-2: its only endpoint is on node-1: dropped.
	nb2 := w.Nodes["node-2"]
	s2 := f.Pods["x/b"]
	b2 := nb2.Config.Bindings[s2.Key()]
	res, err := w.Switch.Trace(nb2.Bridge, fmt.Sprintf("in_port=%d,tcp,dl_src=%s,nw_src=%s,nw_dst=10.96.100.4,tcp_src=40000,tcp_dst=80", b2.OFPort, b2.MAC, s2.IPs[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Dropped {
		t.Errorf("internalTrafficPolicy Local without a local endpoint: not dropped:\n%s", res.Raw)
	}
}

// TestServiceManyEndpoints: a Service port with more backends than one
// OpenFlow group message holds (IPv6: the largest buckets) becomes a group
// of equally weighted sub-groups; OVS installs it and balances through it.
// The same backends with session affinity (multipath, no group) too.
func TestServiceManyEndpoints(t *testing.T) {
	c := model.NewCluster(model.ModeV1)
	vip := netip.MustParseAddr("fd00:96::7")
	c.AddService(&model.Service{Namespace: "x", Name: "big", ClusterIPs: []netip.Addr{vip},
		Ports: []model.ServicePort{{Name: "http", Protocol: model.TCP, Port: 80}}})
	c.AddService(&model.Service{Namespace: "x", Name: "sticky", ClusterIPs: []netip.Addr{netip.MustParseAddr("fd00:96::8")}, AffinitySeconds: 60,
		Ports: []model.ServicePort{{Name: "http", Protocol: model.TCP, Port: 80}}})
	sl := &model.EndpointSlice{Namespace: "x", Name: "big-1", Service: "big", IPv6: true,
		Ports: []model.EndpointPort{{Name: "http", Protocol: model.TCP, Port: 8080}}}
	for i := range 1000 {
		sl.Endpoints = append(sl.Endpoints, model.Endpoint{Address: netip.MustParseAddr(fmt.Sprintf("fd00:10:2::%x", i+1)), Ready: true, Serving: true})
	}
	c.AddEndpointSlice(sl)
	sticky := *sl
	sticky.Name, sticky.Service = "sticky-1", "sticky"
	c.AddEndpointSlice(&sticky)
	res, err := compiler.Compile(c, compiler.Config{Node: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Groups) != 4 {
		t.Fatalf("%d groups, want a top group and 3 sub-groups", len(res.Groups))
	}
	total := 0
	for _, g := range res.Groups {
		if len(g.Buckets) > 400 {
			t.Errorf("group %d has %d buckets", g.ID, len(g.Buckets))
		}
		if _, top := g.Buckets[0].Actions[0].(openflow.ToGroup); !top {
			total += len(g.Buckets)
		}
	}
	if total != 1000 {
		t.Errorf("%d backends in the sub-groups, want 1000", total)
	}
	sw := ovstest.Start(t)
	if err := sw.AddBridge("br-int"); err != nil {
		t.Fatal(err)
	}
	if err := sw.AddInternalPort("br-int", "client", 10); err != nil {
		t.Fatal(err)
	}
	if err := sw.InstallBundle("br-int", res.Text(true)); err != nil {
		t.Fatalf("OVS refused the groups: %v", err)
	}
	dump, err := sw.Ofctl("-O", "OpenFlow15", "dump-groups", "br-int")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range res.Groups {
		if !strings.Contains(dump, " "+g.String()+"\n") {
			t.Errorf("group %d is not printed by OVS as we render it", g.ID)
		}
	}
	tr, err := sw.Trace("br-int", "in_port=LOCAL,tcp6,ipv6_src=fd00:10:1::1,ipv6_dst=fd00:96::7,tcp_src=40000,tcp_dst=80")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(tr.Passes, " "), "nat(dst=[fd00:10:2::") {
		t.Errorf("not balanced through the sub-groups:\n%s", tr.Raw)
	}
	tr, err = sw.Trace("br-int", "in_port=LOCAL,tcp6,ipv6_src=fd00:10:1::1,ipv6_dst=fd00:96::8,tcp_src=40000,tcp_dst=80")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tr.Raw, "learn(") || !strings.Contains(strings.Join(tr.Passes, " "), "nat(dst=[fd00:10:2::") {
		t.Errorf("not balanced with affinity among 1,000 backends:\n%s", tr.Raw)
	}
}
