package compiler_test

// Regression tests from a fresh-eyes review of the in-bridge Service load
// balancer: each states the defect it found (fixed since) and fails if it
// comes back.

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// regressionNode is one node's bridge with one pod, x/victim (10.244.1.10 and
// fd00:10:244:1::10), isolated for ingress by a policy without rules, and
// a node IP configured (so gateway traffic from other sources is policed).
func regressionNode(t *testing.T, extra func(c *model.Cluster)) (*ovstest.Switch, compiler.Binding, *compiler.Result) {
	t.Helper()
	c := model.NewCluster(model.ModeV1)
	c.AddNamespace(&model.Namespace{Name: "x", Labels: labels.Set{"ns": "x"}})
	c.AddPod(&model.Pod{UID: "victim", Namespace: "x", Name: "victim", Node: "node-1", Labels: labels.Set{"app": "victim"},
		IPs: []netip.Addr{netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("fd00:10:244:1::10")}})
	c.AddPolicy(&model.Policy{Namespace: "x", Name: "deny-all", PodSelector: labels.Everything(), AffectsIngress: true})
	if extra != nil {
		extra(c)
	}
	cfg := compiler.Config{Node: "node-1", UplinkPort: 9, NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.1")}}
	cfg.Bindings = compiler.DefaultBindings(c, "node-1", nil, 9)
	res, err := compiler.Compile(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sw := ovstest.Start(t)
	if err := sw.AddBridge("br-int"); err != nil {
		t.Fatal(err)
	}
	if err := sw.AddInternalPort("br-int", "up", 9); err != nil {
		t.Fatal(err)
	}
	b := cfg.Bindings["x/victim"]
	if err := sw.AddInternalPort("br-int", "victim", int(b.OFPort)); err != nil {
		t.Fatal(err)
	}
	if err := sw.InstallBundle("br-int", res.Text(false)); err != nil {
		t.Fatal(err)
	}
	return sw, b, res
}

// TestSpoofedSelfTrafficDropped: the table-30 "a pod always
// reaches itself" flow (ip,nw_src=IP,nw_dst=IP → goto_table:50, priority
// 65000) had no in_port, so a packet arriving from the gateway or the
// uplink with the victim's own address as source AND destination skips
// table 40: an ingress-isolated pod received it. Anyone who can route a
// packet with a spoofed source to the node (other nodes' hosts, the
// uplink, the host's forwarding with loose rp_filter, IPv6 without
// rp_filter) reaches every port of every isolated pod (blind UDP is enough
// to hit a service).
func TestSpoofedSelfTrafficDropped(t *testing.T) {
	sw, _, _ := regressionNode(t, nil)
	for _, tc := range []struct{ in, fields string }{
		{"LOCAL", "udp,nw_src=10.9.9.9,nw_dst=10.244.1.10,udp_src=4000,udp_dst=53"},                 // control: policed
		{"LOCAL", "udp,nw_src=10.244.1.10,nw_dst=10.244.1.10,udp_src=4000,udp_dst=53"},              // spoofed self
		{"9", "udp,nw_src=10.244.1.10,nw_dst=10.244.1.10,udp_src=4000,udp_dst=53"},                  // from the uplink
		{"9", "udp6,ipv6_src=fd00:10:244:1::10,ipv6_dst=fd00:10:244:1::10,udp_src=4000,udp_dst=53"}, // IPv6
	} {
		res, err := sw.Trace("br-int", "in_port="+tc.in+","+tc.fields)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Dropped {
			t.Errorf("in_port=%s %s reached %v although x/victim is isolated for ingress with no rule\n%s",
				tc.in, tc.fields, res.OutputNames, strings.Join(res.Passes, " | "))
		}
	}
}

// TestHairpinAddressLeavesCloudAddressesAlone: table 0 rewrote the
// destination of every packet a pod sends to 169.254.169.253 (priority
// 103, meant for replies of hairpin connections) to the pod's own address,
// for new connections too. 169.254.169.253 is a real address in the
// largest cloud (the Amazon Route 53 Resolver, the VPC DNS server on
// Nitro instances): a pod using it as its nameserver talks to itself and
// DNS broke, silently. The hairpin address is now one clouds do not serve
// (and --hairpin-ip).
func TestHairpinAddressLeavesCloudAddressesAlone(t *testing.T) {
	sw, b, _ := regressionNode(t, nil)
	res, err := sw.Trace("br-int", fmt.Sprintf("in_port=%d,dl_src=%s,udp,nw_src=10.244.1.10,nw_dst=169.254.169.253,udp_src=4000,udp_dst=53", b.OFPort, b.MAC))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.OutputPorts) != 1 || res.OutputPorts[0] != ovstest.OFPPLocal {
		t.Errorf("a pod's DNS query to 169.254.169.253 went to %v, not to the gateway (LOCAL)\n%s", res.OutputNames, strings.Join(res.Passes, " | "))
	}
}

// TestUDPEntriesFromBeforeFirstEndpointFlushed: a UDP
// datagram to a Service port without endpoints is not balanced (no table-25
// flow): table 50 commits it un-NATed (reply source = the cluster IP). When
// the first endpoint appeared, staleUDP flushed nothing (it only flushed
// backends that stopped serving), so every later datagram of that 5-tuple
// follows the un-NATed entry to the gateway instead of to the backend, for
// as long as the client keeps sending (each datagram refreshes the entry:
// a statsd/syslog/DNS client with a fixed socket never recovers).
// kube-proxy v1.37 (pkg/proxy/conntrack/cleanup.go CleanStaleEntries)
// deletes every UDP entry to ClusterIP:port whose reply source is not a
// serving endpoint, which includes these. Traffic is real here: packet-out
// through the userspace datapath's conntrack, the agent's flushes applied
// with ovs-ofctl ct-flush as the agent does.
func TestUDPEntriesFromBeforeFirstEndpointFlushed(t *testing.T) {
	vip := netip.MustParseAddr("10.96.0.10")
	c := model.NewCluster(model.ModeV1)
	c.AddNamespace(&model.Namespace{Name: "x"})
	client := &model.Pod{UID: "client", Namespace: "x", Name: "client", Node: "node-1", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.11")}}
	backend := &model.Pod{UID: "dns", Namespace: "x", Name: "dns", Node: "node-1", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.12")}}
	c.AddPod(client)
	c.AddPod(backend)
	c.AddService(&model.Service{Namespace: "x", Name: "dns", ClusterIPs: []netip.Addr{vip},
		Ports: []model.ServicePort{{Name: "dns", Protocol: model.UDP, Port: 53}}})
	cfg := compiler.Config{Node: "node-1", NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.1")}}
	cfg.Bindings = compiler.DefaultBindings(c, "node-1", nil)
	inc := compiler.NewIncremental(c, cfg)
	sw := ovstest.Start(t)
	if err := sw.AddBridge("br-int"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*model.Pod{client, backend} {
		if err := sw.AddInternalPort("br-int", p.Name, int(cfg.Bindings[p.Key()].OFPort)); err != nil {
			t.Fatal(err)
		}
	}
	// sync: Flush, install everything, apply the flushes (as the agent).
	sync := func() {
		t.Helper()
		if _, err := inc.Flush(); err != nil {
			t.Fatal(err)
		}
		res, err := compiler.Compile(inc.Cluster(), inc.Config())
		if err != nil {
			t.Fatal(err)
		}
		if err := sw.InstallBundle("br-int", res.Text(false)); err != nil {
			t.Fatal(err)
		}
		for _, f := range inc.ConntrackFlushes() {
			orig, reply := f.Tuples()
			if out, err := sw.Ofctl("-O", "OpenFlow15", "ct-flush", "br-int", "zone="+strconv.Itoa(int(f.Zone)), orig, reply); err != nil {
				t.Fatal(out, err)
			}
		}
	}
	cb := cfg.Bindings["x/client"]
	send := func(sport uint16) {
		t.Helper()
		pkt := udpFrame(cb.MAC, []byte{0x0a, 0x58, 0, 0, 0, 1}, client.IPs[0], vip, sport, 53)
		if out, err := sw.Ofctl("-O", "OpenFlow15", "packet-out", "br-int", fmt.Sprintf("in_port=%d packet=%s actions=table", cb.OFPort, pkt)); err != nil {
			t.Fatal(out, err)
		}
	}
	backendPort := strconv.Itoa(int(cfg.Bindings["x/dns"].OFPort))
	delivered := func() int { t.Helper(); return portOutput(t, sw, backendPort) }

	sync()
	send(4000) // no endpoints yet: on to the host (kube-proxy rejects)
	inc.SetEndpointSlice(&model.EndpointSlice{Namespace: "x", Name: "dns-1", Service: "dns",
		Ports:     []model.EndpointPort{{Name: "dns", Protocol: model.UDP, Port: 5353}},
		Endpoints: []model.Endpoint{{Address: backend.IPs[0], Ready: true, Serving: true, Node: "node-1"}}})
	sync()
	want := openflow.ConntrackFlush{Zone: compiler.DefaultCTZone, Protocol: 17, ServiceIP: vip.String(), ServicePort: 53, BackendIP: vip.String(), BackendPort: 53}
	if fl := inc.ConntrackFlushes(); len(fl) != 1 || fl[0] != want {
		t.Errorf("flushes after the first endpoint: %v, want the un-DNATed entries (%v)", fl, want)
	}

	before := delivered()
	send(4001) // control: a new 5-tuple is balanced to the backend
	if delivered() != before+1 {
		t.Fatalf("control: a new datagram did not reach the backend")
	}
	before = delivered()
	send(4000) // the client retries on its socket
	if got := delivered() - before; got != 1 {
		ct, _ := sw.Appctl("dpctl/dump-conntrack")
		t.Errorf("the client's retry (same 5-tuple as before the endpoint existed) was not balanced to the backend; conntrack:\n%s", ct)
	}
}

// portOutput is what the bridge sent to an OpenFlow port (tx packets plus
// tx drops: the test's internal ports are down).
func portOutput(t *testing.T, sw *ovstest.Switch, port string) int {
	t.Helper()
	out, err := sw.Ofctl("-O", "OpenFlow15", "dump-ports", "br-int", port)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`tx pkts=(\d+), bytes=\d+, drop=(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no tx counters in %q", out)
	}
	a, _ := strconv.Atoi(m[1])
	b, _ := strconv.Atoi(m[2])
	return a + b
}

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// udpFrame is an Ethernet/IPv4/UDP frame in hex (UDP checksum 0).
func udpFrame(srcMAC, dstMAC []byte, src, dst netip.Addr, sport, dport uint16) string {
	payload := []byte("hello")
	udp := make([]byte, 8+len(payload))
	udp[0], udp[1], udp[2], udp[3] = byte(sport>>8), byte(sport), byte(dport>>8), byte(dport)
	udp[4], udp[5] = byte(len(udp)>>8), byte(len(udp))
	copy(udp[8:], payload)
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	ip[2], ip[3] = byte((20+len(udp))>>8), byte(20+len(udp))
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	c := csum(ip)
	ip[10], ip[11] = byte(c>>8), byte(c)
	eth := append(append(append([]byte{}, dstMAC...), srcMAC...), 0x08, 0x00)
	return hex.EncodeToString(append(append(eth, ip...), udp...))
}

// TestSpoofFromGatewayCannotOpenEgress: the balancer
// commits a pod's connection (mark 0x2, DNATed) before policy; egress
// drops it. A packet with the same 5-tuple and the pod's source address
// arriving from the gateway port (or the uplink: table 0 accepts any
// source there) followed that conntrack entry to the backend, is judged by
// table 30 as not coming from a local pod (egress flows key on in_port),
// passes the backend's ingress, and table 50 clears the mark: the
// connection is now "allowed", and the egress-isolated pod's own packets
// pass as established. One spoofed datagram from outside the pod opens
// the pod's egress to a destination its policy denies. (The same works
// without a Service, on the pod address: the root cause is that table 0
// lets the gateway and uplink send with a local pod's source address.)
func TestSpoofFromGatewayCannotOpenEgress(t *testing.T) {
	vip := netip.MustParseAddr("10.96.0.10")
	c := model.NewCluster(model.ModeV1)
	c.AddNamespace(&model.Namespace{Name: "x"})
	client := &model.Pod{UID: "client", Namespace: "x", Name: "client", Node: "node-1", Labels: labels.Set{"app": "client"},
		IPs: []netip.Addr{netip.MustParseAddr("10.244.1.11")}}
	backend := &model.Pod{UID: "dns", Namespace: "x", Name: "dns", Node: "node-1", Labels: labels.Set{"app": "dns"},
		IPs: []netip.Addr{netip.MustParseAddr("10.244.1.12")}}
	c.AddPod(client)
	c.AddPod(backend)
	// The client may send nothing at all.
	c.AddPolicy(&model.Policy{Namespace: "x", Name: "client-deny-egress", PodSelector: labels.SelectorFromSet(labels.Set{"app": "client"}), AffectsEgress: true})
	c.AddService(&model.Service{Namespace: "x", Name: "dns", ClusterIPs: []netip.Addr{vip},
		Ports: []model.ServicePort{{Name: "dns", Protocol: model.UDP, Port: 53}}})
	c.AddEndpointSlice(&model.EndpointSlice{Namespace: "x", Name: "dns-1", Service: "dns",
		Ports:     []model.EndpointPort{{Name: "dns", Protocol: model.UDP, Port: 5353}},
		Endpoints: []model.Endpoint{{Address: backend.IPs[0], Ready: true, Serving: true, Node: "node-1"}}})
	cfg := compiler.Config{Node: "node-1", NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.1")}}
	cfg.Bindings = compiler.DefaultBindings(c, "node-1", nil)
	res, err := compiler.Compile(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sw := ovstest.Start(t)
	if err := sw.AddBridge("br-int"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*model.Pod{client, backend} {
		if err := sw.AddInternalPort("br-int", p.Name, int(cfg.Bindings[p.Key()].OFPort)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.InstallBundle("br-int", res.Text(false)); err != nil {
		t.Fatal(err)
	}
	cb, bb := cfg.Bindings["x/client"], cfg.Bindings["x/dns"]
	gwMAC := []byte{0x0a, 0x58, 0, 0, 0, 1}
	out := func(inPort string, frame string) {
		t.Helper()
		if o, err := sw.Ofctl("-O", "OpenFlow15", "packet-out", "br-int", fmt.Sprintf("in_port=%s packet=%s actions=table", inPort, frame)); err != nil {
			t.Fatal(o, err)
		}
	}
	query := udpFrame(cb.MAC, gwMAC, client.IPs[0], vip, 4000, 53)
	answer := udpFrame(bb.MAC, gwMAC, backend.IPs[0], client.IPs[0], 5353, 4000)
	bPort, cPort := strconv.Itoa(int(bb.OFPort)), strconv.Itoa(int(cb.OFPort))
	reached := func() int { return portOutput(t, sw, bPort) }

	n := reached()
	out(cPort, query) // the client's query: balanced, then dropped by its egress
	if reached() != n {
		t.Fatal("setup: the egress-isolated client reached the backend")
	}
	out("LOCAL", query) // the same datagram, spoofed, from the gateway
	out(bPort, answer)  // the backend answers it (to the client)
	n = reached()
	out(cPort, query) // the client again, same socket
	out(cPort, query)
	if got := reached() - n; got != 0 {
		ct, _ := sw.Appctl("dpctl/dump-conntrack", "-m")
		t.Errorf("after one spoofed datagram from the gateway, %d of the egress-isolated client's own datagrams reached the backend (its egress allows nothing); conntrack:\n%s", got, ct)
	}
}

// TestSpoofDropsCarryTheNodeCookie: table 0's drops of a local pod's
// address arriving from the gateway or the uplink guard the node's accept
// flows, so they carry the node's cookie. With the pod's cookie they left
// the bridge with the pod's refused flows, while rules of other origins
// still admitted its address (pkg/flowsync
// TestRefusedPodAddressStaysUnspoofable).
func TestSpoofDropsCarryTheNodeCookie(t *testing.T) {
	_, _, res := regressionNode(t, nil)
	n := 0
	for _, f := range res.Flows {
		if f.Table == compiler.TableClassify && f.Priority == 106 {
			n++
			if f.Cookie.Kind() != openflow.KindNode {
				t.Errorf("spoofed-source drop %s carries a %v cookie, want the node's", f, f.Cookie.Kind())
			}
		}
	}
	if n == 0 {
		t.Fatal("no spoofed-source drop (table 0, priority 106) compiled")
	}
}
