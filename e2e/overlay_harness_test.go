package e2e

// The routed world of the overlay tests (issue 13): nodes that share no L2.
//
//	router netns (ip_forward=1): r1 172.29.1.1/24, r2 172.29.2.1/24, ...
//	   |  veth
//	node i (its switch's netns, where its ovs-vswitchd runs):
//	   ul0 -- br-phy (netdev bridge, NORMAL) holding 172.29.i.2/24 = the Node's
//	          InternalIP, default route via 172.29.i.1
//	   br-int (the agent's): LOCAL has the gateway 10.91.i.1/24 (the agent puts
//	          it there), the flow-based Geneve port, the pods' veths
//
// ovs-vswitchd encapsulates and resolves the underlay route and next hop
// itself (native tunneling of the userspace datapath), so a Geneve packet
// from node 1 to node 2 crosses br-phy, the router and node 2's br-phy.
// Each node has a Node object with spec.podCIDR(s) 10.91.i.0/24 and
// status.addresses InternalIP 172.29.i.2, as a kubelet and the node IPAM
// controller would make it, a real kube-proxy (optional per node), a
// host-network server (answers as host/NODE on TCP/UDP 80 and 81 at every
// address of the node) and the agent, started with the same arguments on
// every node except --node-name and what stands for the node's own machine
// (its OVS run dir, its /etc/cni/net.d, its network namespace, a free metrics
// port): no --node-ip, no --uplink-port, no subnet. Pods are attached with
// the CNI configuration the agent wrote.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovs-netpol/ovs-netpol/internal/k8stest"
	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
)

const (
	// tunnelOFPort is the OpenFlow port the agent requests for its Geneve port.
	tunnelOFPort = 4096
	// routeProto marks the host routes the agent installs (ip route ... proto 78).
	routeProto = "78"
	// cniConfName is the file the agent writes in --cni-conf-dir.
	cniConfName = "10-ovs-netpol.conflist"
)

// overlay is a routed world: a world whose nodes reach each other only
// through the router namespace.
type overlay struct {
	*world
	router string // the router's network namespace
	// kubeconfig is the agents' (their ServiceAccount's), one file for all.
	kubeconfig string
	under16    string // underlay /16, e.g. "172.29"
	mu         sync.Mutex
	byName     map[string]*ovNode
}

// ovNode is a node of the routed world.
type ovNode struct {
	*node
	o       *overlay
	ip      string // InternalIP: the underlay address on br-phy
	podCIDR string
	cniDir  string // stands for the node's /etc/cni/net.d
	host    *proc  // the host-network server
	// registered is when its Node object was created.
	registered time.Time
	// setup is how long the machine took (switch, underlay, host server).
	setup time.Duration
}

// newOverlay makes a routed world on the shared cluster: pod network
// pod16.0.0/16, underlay under16.0.0/16.
func newOverlay(t *testing.T, name, pod16, under16 string) *overlay {
	w := newWorld(t, name, pod16)
	o := &overlay{world: w, under16: under16, byName: map[string]*ovNode{}}
	o.router = netnsPrefix() + name + "-rt"
	must(t, "ip", "netns", "add", o.router)
	t.Cleanup(func() { _, _ = run("ip", "netns", "delete", o.router) })
	must(t, "ip", "-n", o.router, "link", "set", "lo", "up")
	must(t, "ip", "netns", "exec", o.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return o
}

// addMachine starts node idx's machine: its Open vSwitch, its underlay link
// to the router with br-phy, br-int pre-created (so that TX checksum offload
// can be turned off on its tap before the agent starts: userspace conntrack
// marks partial checksums invalid; the agent adopts the bridge) and its
// host-network server. No Node object, no agent yet.
func (o *overlay) addMachine(t *testing.T) *ovNode {
	t.Helper()
	start := time.Now()
	w := o.world
	idx := len(w.nodes) + 1
	name := fmt.Sprintf("%s-node-%d", w.name, idx)
	n := &ovNode{o: o,
		node:    &node{w: w, idx: idx, name: name, gw: fmt.Sprintf("%s.%d.1", w.net16, idx)},
		ip:      fmt.Sprintf("%s.%d.2", o.under16, idx),
		podCIDR: fmt.Sprintf("%s.%d.0/24", w.net16, idx),
		cniDir:  filepath.Join(w.dir, name, "cni-net.d"),
	}
	if err := os.MkdirAll(n.cniDir, 0o755); err != nil {
		t.Fatal(err)
	}
	n.sw = ovstest.Start(t)
	// Registered after the switch's own cleanup, so it runs before it.
	t.Cleanup(func() {
		if slices.Contains(w.nodes, n.node) {
			w.teardownNode(n.node)
		}
	})
	ns := n.sw.NetNS
	must(t, "ip", "-n", ns, "link", "set", "lo", "up")
	must(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")

	// Underlay: ul0 in the node, rIDX in the router.
	rdev := fmt.Sprintf("r%d", idx)
	must(t, "ip", "link", "add", "ul0", "netns", ns, "type", "veth", "peer", "name", rdev, "netns", o.router)
	must(t, "ip", "-n", o.router, "addr", "add", fmt.Sprintf("%s.%d.1/24", o.under16, idx), "dev", rdev)
	must(t, "ip", "-n", o.router, "link", "set", rdev, "up")
	must(t, "ip", "-n", ns, "link", "set", "ul0", "up")
	must(t, "ip", "netns", "exec", ns, "ethtool", "-K", "ul0", "tx", "off")
	must(t, "ip", "netns", "exec", o.router, "ethtool", "-K", rdev, "tx", "off")
	if _, err := n.sw.Vsctl("--", "add-br", "br-phy", "--", "set", "Bridge", "br-phy", "datapath_type=netdev",
		"--", "add-port", "br-phy", "ul0"); err != nil {
		t.Fatal(err)
	}
	waitLink(t, ns, "br-phy")
	must(t, "ip", "-n", ns, "addr", "add", n.ip+"/24", "dev", "br-phy")
	must(t, "ip", "-n", ns, "link", "set", "br-phy", "up")
	must(t, "ip", "netns", "exec", ns, "ethtool", "-K", "br-phy", "tx", "off")
	must(t, "ip", "-n", ns, "route", "add", "default", "via", fmt.Sprintf("%s.%d.1", o.under16, idx))

	if err := n.sw.AddBridge(bridge); err != nil {
		t.Fatal(err)
	}
	must(t, "ip", "netns", "exec", ns, "ethtool", "-K", bridge, "tx", "off")

	var err error
	logPath := filepath.Join(w.dir, name+"-host-server.log")
	n.host, err = startProc(name+"-host", logPath, nil, "ip", "netns", "exec", ns, binPath("netpol-agnhost"), "serve",
		"--name", "host/"+name, "--tcp", "80,81", "--udp", "80,81")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.host.stop(time.Second) })
	waitFileContains(t, logPath, "\nready\n", n.host)
	w.nodes = append(w.nodes, n.node)
	o.mu.Lock()
	o.byName[name] = n
	o.mu.Unlock()
	n.setup = time.Since(start)
	return n
}

// waitLink waits until a network device exists in the namespace.
func waitLink(t *testing.T, ns, dev string) {
	t.Helper()
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if _, err := run("ip", "-n", ns, "link", "show", dev); err == nil {
			return
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no device %s in %s after 10 s", dev, ns)
		}
	}
}

func waitFileContains(t *testing.T, path, s string, p *proc) {
	t.Helper()
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte(s)) {
			return
		}
		if p.exited() || time.Since(start) > 10*time.Second {
			t.Fatalf("%s did not start:\n%s", p.name, b)
		}
	}
}

// register creates the node's Node object as a kubelet registers it, with
// spec.podCIDR(s) as the node IPAM controller sets them, then its
// status.addresses (UpdateStatus, as the kubelet reports them).
func (n *ovNode) register(t *testing.T) {
	t.Helper()
	nodes := n.w.c.Client.CoreV1().Nodes()
	obj := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: map[string]string{corev1.LabelHostname: n.name}},
		Spec:       corev1.NodeSpec{PodCIDR: n.podCIDR, PodCIDRs: []string{n.podCIDR}},
	}
	n.registered = time.Now()
	created, err := nodes.Create(n.w.ctx(), obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Node %s: %v", n.name, err)
	}
	t.Cleanup(func() { n.deleteNodeObject(t) })
	n.setAddresses(t, created, n.ip)
}

// setAddresses sets the Node's status.addresses: InternalIP ip and its
// Hostname.
func (n *ovNode) setAddresses(t *testing.T, obj *corev1.Node, ip string) {
	t.Helper()
	nodes := n.w.c.Client.CoreV1().Nodes()
	var err error
	if obj == nil {
		if obj, err = nodes.Get(n.w.ctx(), n.name, metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	obj.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: n.name}}
	if _, err := nodes.UpdateStatus(n.w.ctx(), obj, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("status of Node %s: %v", n.name, err)
	}
}

func (n *ovNode) deleteNodeObject(t *testing.T) {
	err := n.w.c.Client.CoreV1().Nodes().Delete(n.w.ctx(), n.name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting Node %s: %v", n.name, err)
	}
}

// startKubeProxy runs a real kube-proxy on the node's host. Its Node must
// exist (with the InternalIP); kube-proxy exits if the Node's addresses
// change or the Node is deleted (k8stest), so a node that will be removed
// or renumbered runs none.
func (n *ovNode) startKubeProxy(t *testing.T) {
	n.proxy = n.w.c.StartKubeProxy(t, k8stest.KubeProxyOptions{NetNS: n.sw.NetNS, NodeName: n.name,
		NodeIPs: []string{n.ip}, ClusterCIDRs: []string{n.w.net16 + ".0.0/16"}})
}

// agentArgs are the agent's arguments: the DaemonSet's, the same on every
// node but for --node-name and what stands for the node's own machine.
func (n *ovNode) agentArgs(kubeconfig, metrics string) []string {
	return []string{binPath("ovs-netpol-agent"),
		"--kubeconfig=" + kubeconfig, "--node-name=" + n.name, "--bridge=" + bridge,
		"--datapath-type=netdev", "--isolation=v1", "--log-level=debug", "--tunnel=geneve",
		// The node's own machine: its OVS, metrics port, /etc/cni/net.d and
		// host network namespace (the agent runs in the test's namespace).
		"--ovs-rundir=" + n.sw.Dir, "--metrics-addr=" + metrics,
		"--cni-conf-dir=" + n.cniDir, "--host-netns=/var/run/netns/" + n.sw.NetNS,
	}
}

// startAgent runs the built agent for the node and waits until /readyz says
// ok, then reads the CNI configuration it wrote (cniConf).
func (n *ovNode) startAgent(t *testing.T) time.Duration {
	t.Helper()
	if n.agent != nil {
		n.agent.stop()
	}
	o := n.o
	if o.kubeconfig == "" {
		kc, err := n.w.c.UserKubeconfig(k8stest.AgentUser)
		if err != nil {
			t.Fatal(err)
		}
		o.kubeconfig = kc
	}
	a := &agent{n: n.node, log: filepath.Join(n.w.dir, n.name+"-agent.log"), metrics: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	a.args = n.agentArgs(o.kubeconfig, a.metrics)
	ready := a.start(t)
	n.cniCfg = n.cniConf(t)
	// The "ext" row: an address of the host that is not a node IP, routed
	// into br-int like traffic from outside. Added after the agent's
	// gateway address: the kernel takes br-int's first address as the
	// source of the host's connections to other nodes' pods (the agent's
	// routes name no source), as on a real node where the gateway is the
	// only one.
	if out := must(t, "ip", "-n", n.sw.NetNS, "addr", "show", "dev", bridge); !strings.Contains(out, " "+extIP+"/32 ") {
		must(t, "ip", "-n", n.sw.NetNS, "addr", "add", extIP+"/32", "dev", bridge)
	}
	t.Logf("agent of %s ready in %v", n.name, ready.Round(time.Millisecond))
	return ready
}

// cniConf turns the configuration list the agent wrote into what a runtime
// hands the plugin (libcni: the list's cniVersion and name in the plugin's
// object), adding what only this test needs:
//   - hostNetNS: the host end of the veth goes to the node's namespace (the
//     plugin runs in the test's own; on a real node it is the host's);
//   - ipam.dataDir: host-local's leases per node (the nodes share this
//     machine's /var/lib/cni).
//
// Everything else (bridge, OVSDB endpoint, datapath type, MTU, the podCIDR
// range, gateway, routes) is the agent's.
func (n *ovNode) cniConf(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(n.cniDir, cniConfName)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the CNI configuration the agent of %s wrote: %v", n.name, err)
	}
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &list); err != nil || len(list.Plugins) != 1 {
		t.Fatalf("%s: want a configuration list with one plugin (%v):\n%s", path, err, raw)
	}
	conf := list.Plugins[0]
	conf["cniVersion"], conf["name"] = list.CNIVersion, list.Name
	conf["hostNetNS"] = "/var/run/netns/" + n.sw.NetNS
	ipam, ok := conf["ipam"].(map[string]any)
	if !ok {
		t.Fatalf("%s: no ipam object:\n%s", path, raw)
	}
	ipam["dataDir"] = filepath.Join(n.w.dir, n.name, "ipam")
	out, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// start brings a node up as a cluster does: the machine, its Node object,
// kube-proxy (withProxy), the agent.
func (o *overlay) start(t *testing.T, withProxy bool) *ovNode {
	t.Helper()
	n := o.addMachine(t)
	n.register(t)
	if withProxy {
		n.startKubeProxy(t)
	}
	n.startAgent(t)
	t.Logf("%s: machine (switch, underlay, br-phy, host server) in %v, agent ready %v after its Node was created",
		n.name, n.setup.Round(time.Millisecond), time.Since(n.registered).Round(time.Millisecond))
	return n
}

// remove takes a node out: its pods deleted (CNI DEL, Pod objects), its
// agent stopped, its Node deleted. Its switch stays until the test ends
// (nothing reaches it any more).
func (o *overlay) remove(t *testing.T, n *ovNode) {
	t.Helper()
	w := o.world
	if len(w.nodes) == 0 || w.nodes[len(w.nodes)-1] != n.node {
		// world.waitPodsRealized finds a node's flows at position idx-1.
		t.Fatalf("only the last node added can be removed, not %s", n.name)
	}
	w.mu.Lock()
	var pods []*pod
	for _, p := range w.pods {
		if p.node == n.node {
			pods = append(pods, p)
		}
	}
	w.mu.Unlock()
	for _, p := range pods {
		w.deletePod(t, p)
	}
	if n.agent != nil {
		n.agent.stop()
	}
	n.deleteNodeObject(t)
	w.nodes = slices.DeleteFunc(w.nodes, func(x *node) bool { return x == n.node })
}

// ovNodeOf is the routed-world node of a pod.
func (o *overlay) ovNodeOf(p *pod) *ovNode {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.byName[p.node.name]
}

// hostRoutes lists the node's host routes the agent owns (proto 78), as
// "DST via GW dev DEV ...".
func (n *ovNode) hostRoutes(t *testing.T) []string {
	t.Helper()
	out := must(t, "ip", "-n", n.sw.NetNS, "route", "show", "proto", routeProto)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// tunnelFlows lists the node's flows that name the tunnel endpoint ip
// (tun_src or tun_dst), without counters.
func (n *ovNode) tunnelFlows(t *testing.T, ip string) []string {
	t.Helper()
	flows, err := n.sw.DumpFlows(bridge, true)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`tun_(src|dst)=` + regexp.QuoteMeta(ip) + `\b`)
	var out []string
	for _, f := range flows {
		if re.MatchString(f) {
			out = append(out, f)
		}
	}
	return out
}

// ---- probes whose source or destination is a node's host

// hostCell is one connection the pod matrices cannot express: from a node's
// host (bound to one of its addresses, or unbound: the kernel picks the
// source) to a pod, or from a pod to a node's host address.
type hostCell struct {
	from   string // row name, e.g. "host/ovl-node-2@172.29.2.2"
	netns  string
	bind   string // source address ("": the kernel's choice)
	p      probeT
	to     string // column name
	ip     string // destination address
	answer string // who must answer (pod key or host/NODE)
	want   bool
}

func (c hostCell) String() string { return fmt.Sprintf("%s %s->%s", c.p, c.from, c.to) }

// fromHost is a cell from node n's host bound to bind ("" unbound) to pod p.
func fromHost(n *ovNode, bind string, pr probeT, p *pod, want bool) hostCell {
	from := "host/" + n.name
	if bind != "" {
		from += "@" + bind
	}
	return hostCell{from: from, netns: n.sw.NetNS, bind: bind, p: pr, to: p.key(), ip: p.ip, answer: p.key(), want: want}
}

// toHost is a cell from pod p to node n's host at address ip.
func toHost(p *pod, pr probeT, n *ovNode, ip string, want bool) hostCell {
	return hostCell{from: p.key(), netns: p.netns, p: pr, to: "host/" + n.name + "@" + ip, ip: ip, answer: "host/" + n.name, want: want}
}

// probeCells tries every cell once (all at once, grouped by source).
func probeCells(t *testing.T, cells []hostCell) map[int]result {
	t.Helper()
	type src struct{ netns, bind string }
	groups := map[src][]int{}
	for i, c := range cells {
		groups[src{c.netns, c.bind}] = append(groups[src{c.netns, c.bind}], i)
	}
	out := map[int]result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []string
	for s, idx := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"probe", "--timeout", "1s"}
			if s.bind != "" {
				args = append(args, "--source", s.bind)
			}
			for _, i := range idx {
				c := cells[i]
				a := fmt.Sprintf("%d=%s:%s:%d", i, c.p.proto, c.ip, c.p.port)
				if c.p.proto == "udp" {
					a += fmt.Sprintf(":%d", nextUDPPorts(1))
				}
				args = append(args, a)
			}
			res, err := agnhost(s.netns, args...)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err.Error())
				return
			}
			for _, l := range strings.Split(strings.TrimSpace(res), "\n") {
				f := strings.Fields(l)
				i := -1
				if len(f) >= 3 {
					i, _ = strconv.Atoi(f[0])
				}
				if !slices.Contains(idx, i) {
					errs = append(errs, "bad probe output line: "+l)
					continue
				}
				r := result{ok: f[1] == "ok", why: strings.Join(f[2:], " ")}
				if r.ok && f[2] != cells[i].answer {
					r = result{why: "answered by " + f[2]}
					errs = append(errs, fmt.Sprintf("%s was answered by %s", cells[i], f[2]))
				}
				out[i] = r
			}
		}()
	}
	wg.Wait()
	totals.probes.Add(int64(len(cells)))
	if len(errs) > 0 {
		t.Fatalf("probing failed:\n%s", strings.Join(errs, "\n"))
	}
	return out
}

// checkCells probes the cells with the matrices' rule (world.check): a
// connection that passes where it must not fails the test at once; one that
// fails where it must pass is tried again for up to 10 s.
func checkCells(t *testing.T, what string, cells []hostCell) {
	t.Helper()
	start := time.Now()
	got := probeCells(t, cells)
	for i, c := range cells {
		if got[i].ok && !c.want {
			t.Errorf("%s: %s passed, want blocked", what, c)
		}
	}
	rounds := 1
	for {
		var missed []int
		for i, c := range cells {
			if c.want && !got[i].ok {
				missed = append(missed, i)
			}
		}
		if len(missed) == 0 {
			break
		}
		if time.Since(start) > 10*time.Second {
			for _, i := range missed {
				t.Errorf("%s: %s failed (%s) for %v, want connected", what, cells[i], got[i].why, time.Since(start).Round(time.Millisecond))
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
		var retry []hostCell
		for _, i := range missed {
			retry = append(retry, cells[i])
		}
		res := probeCells(t, retry)
		for j, i := range missed {
			got[i] = res[j]
		}
		rounds++
	}
	var b strings.Builder
	for i, c := range cells {
		v := "X"
		if got[i].ok {
			v = "."
		}
		fmt.Fprintf(&b, "  %s %s\n", v, c)
	}
	t.Logf("%s: %d host connections as expected (%d rounds):\n%s", what, len(cells), rounds, b.String())
}

// warmTunnels sends one UDP exchange (resent every 250 ms until answered)
// from a pod of every node to a pod of every other node, and logs how long
// each took. ovs-vswitchd's native tunneling drops the packet that makes it
// resolve the underlay next hop (ARP for the router; it does not learn it
// from the host's own ARP traffic), so a node's first tunnel packet is lost:
// a first TCP SYN would be retried only after 1 s, the probes' timeout.
// A running cluster has done this long before any test connection.
func (o *overlay) warmTunnels(t *testing.T) {
	t.Helper()
	first := map[*node]*pod{}
	o.mu.Lock()
	for _, p := range o.pods {
		if q := first[p.node]; q == nil || p.key() < q.key() {
			first[p.node] = p
		}
	}
	o.mu.Unlock()
	var lines []string
	for _, a := range o.nodes {
		for _, b := range o.nodes {
			pa, pb := first[a], first[b]
			if a == b || pa == nil || pb == nil {
				continue
			}
			start := time.Now()
			out, err := agnhost(pa.netns, "probe", "--timeout", "15s", fmt.Sprintf("w=udp:%s:80:%d", pb.ip, nextUDPPorts(1)))
			if err != nil || !strings.HasPrefix(out, "w ok ") {
				t.Fatalf("warming the tunnel %s -> %s: %v %s", pa.key(), pb.key(), err, out)
			}
			lines = append(lines, fmt.Sprintf("%s->%s %v", a.name, b.name, time.Since(start).Round(time.Millisecond)))
		}
	}
	t.Logf("first UDP exchange per node pair (resent every 250 ms): %s", strings.Join(lines, ", "))
}
