package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/ovs-netpol/ovs-netpol/internal/k8stest"
	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/internal/testproc"
)

const (
	bridge = "br-int"
	// extIP is the "external" source: an address of the node's host that is
	// not a node IP, so its traffic is routed, not node-local.
	extIP = "192.0.2.10"
	// uplinkOFPort is the OpenFlow port of the uplink between two nodes.
	uplinkOFPort = 100
)

// totals counts what the run did, for the final line and the report.
var totals struct {
	scenarios, matrices, probes, traces atomic.Int64
	serviceMatrices, serviceProbes      atomic.Int64
	// datapathPurges: matrices that passed only after the datapath cache
	// was purged (world.staleDatapath).
	datapathPurges atomic.Int64
}

func totalsString() string {
	return fmt.Sprintf("%d scenarios, %d matrices (%d of them through Services' cluster IPs), %d real probes (%d through cluster IPs), %d ofproto/traces, %d stale datapath caches purged",
		totals.scenarios.Load(), totals.matrices.Load(), totals.serviceMatrices.Load(), totals.probes.Load(), totals.serviceProbes.Load(), totals.traces.Load(), totals.datapathPurges.Load())
}

// ---- processes

// proc is a long-running child: it gets SIGKILL if the test process dies.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

// startProc starts argv with stdout and stderr appended to logPath.
func startProc(name, logPath string, stdin io.Reader, argv ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fmt.Fprintf(f, "=== %s\n", strings.Join(argv, " "))
	p := &proc{name: name, done: make(chan struct{}), log: logPath}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.Stdin = stdin
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := testproc.Start(p.cmd); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after grace, and waits.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// run runs a command and returns its stdout; errors carry stderr.
func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func must(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ---- world: one cluster, its nodes and pods

type world struct {
	t    *testing.T
	name string // short, unique among worlds: node names and netns names
	c    *k8stest.Cluster
	dir  string // logs, IPAM data, manifests

	// The pod network: subnet (a /16) shared by all nodes of the world;
	// node i hands out .i.10–.i.250 and its host is .i.1.
	net16 string // e.g. "10.62"

	nodes []*node
	mu    sync.Mutex
	pods  map[string]*pod // "ns/name"

	// podServices gives every pod a Service ("s-NAME", TCP and UDP 80 and
	// 81) and keeps its EndpointSlice (as the EndpointSlice controller
	// would), so that matrices are also probed through cluster IPs, as
	// upstream's netpol e2e probes them.
	podServices bool
}

type node struct {
	w      *world
	idx    int // 1-based
	name   string
	sw     *ovstest.Switch
	gw     string // host address in the pod subnet = node IP
	cniCfg []byte
	agent  *agent
	uplink bool
	proxy  *k8stest.KubeProxy // kube-proxy in the node's host namespace
}

type pod struct {
	ns, name string
	node     *node
	uid      string
	cid      string
	netns    string
	ip       string
	mac      string
	hostVeth string
	ofport   int
	server   *proc
	svcIP    string // the cluster IP of its Service (world.podServices)
}

func (p *pod) key() string { return p.ns + "/" + p.name }

var rbacOnce sync.Once

// newWorld makes a world on the shared cluster. net16 must be unique per
// world (e.g. "10.62"), and so must name.
func newWorld(t *testing.T, name, net16 string) *world {
	c := k8stest.Shared(t)
	rbacOnce.Do(func() { applyAgentManifests(t, c) })
	return worldOn(t, c, name, net16)
}

// applyAgentManifests applies the agent's namespace and RBAC.
func applyAgentManifests(t *testing.T, c *k8stest.Cluster) {
	for _, f := range []string{"namespace.yaml", "rbac.yaml"} {
		if out, err := c.Kubectl("apply", "-f", filepath.Join(repoDir, "manifests", f)); err != nil {
			t.Fatalf("applying manifests/%s (the agent's RBAC): %v\n%s", f, err, out)
		}
	}
}

// worldOn makes a world on cluster c.
func worldOn(t *testing.T, c *k8stest.Cluster, name, net16 string) *world {
	dir, err := os.MkdirTemp("", tempPrefix()+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, name: name, c: c, dir: dir, net16: net16, pods: map[string]*pod{}}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range w.nodes {
				if n.agent != nil {
					t.Logf("last lines of %s's agent log:\n%s", n.name, testproc.Tail(n.agent.log, 40))
				}
			}
		}
		os.RemoveAll(dir)
	})
	return w
}

// teardownNode removes the node's pods (CNI DEL, namespaces) and stops its
// agent; Pod objects stay (the shared cluster has no kubelet to mind them).
func (w *world) teardownNode(n *node) {
	w.mu.Lock()
	var pods []*pod
	for _, p := range w.pods {
		if p.node == n {
			pods = append(pods, p)
		}
	}
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Add(1)
		go func() { defer wg.Done(); w.teardownPod(p) }()
	}
	wg.Wait()
	if n.agent != nil {
		n.agent.stop()
	}
}

// addNode starts a private Open vSwitch with br-int, gives the host end of
// br-int (LOCAL, in the switch's namespace) the gateway address and the
// external address, and prepares the CNI configuration.
func (w *world) addNode(t *testing.T) *node {
	idx := len(w.nodes) + 1
	n := &node{w: w, idx: idx, name: fmt.Sprintf("%s-node-%d", w.name, idx), gw: fmt.Sprintf("%s.%d.1", w.net16, idx)}
	n.sw = ovstest.Start(t)
	// Registered after the switch's own cleanup, so it runs before it.
	t.Cleanup(func() { w.teardownNode(n) })
	if err := n.sw.AddBridge(bridge); err != nil {
		t.Fatal(err)
	}
	ns := n.sw.NetNS
	must(t, "ip", "-n", ns, "addr", "add", n.gw+"/16", "dev", bridge)
	must(t, "ip", "-n", ns, "addr", "add", extIP+"/32", "dev", bridge)
	must(t, "ip", "-n", ns, "link", "set", bridge, "up")
	must(t, "ip", "-n", ns, "link", "set", "lo", "up")
	// The host's TCP through the tap would carry partial checksums, which
	// userspace conntrack marks invalid (as for a pod's veth).
	must(t, "ip", "netns", "exec", ns, "ethtool", "-K", bridge, "tx", "off")
	// Like a real node: it forwards, and has a default route, which also
	// covers the Service CIDR (kube-proxy's rules apply to routed packets
	// only). Beyond it is a namespace of its own that drops everything
	// (this kernel has no dummy links).
	must(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	outside := fmt.Sprintf("%s%s-out%d", netnsPrefix(), w.name, idx)
	must(t, "ip", "netns", "add", outside)
	t.Cleanup(func() { _, _ = run("ip", "netns", "delete", outside) })
	must(t, "ip", "link", "add", "world0", "netns", ns, "type", "veth", "peer", "name", "world1", "netns", outside)
	must(t, "ip", "-n", ns, "link", "set", "world0", "up")
	must(t, "ip", "-n", outside, "link", "set", "world1", "up")
	must(t, "ip", "-n", ns, "route", "add", "default", "dev", "world0")
	// A real kube-proxy on the node's host, as in a cluster: host traffic
	// to cluster IPs, node ports and Services without endpoints are its.
	n.proxy = w.c.StartKubeProxy(t, k8stest.KubeProxyOptions{NetNS: ns, NodeName: n.name,
		NodeIPs: []string{n.gw}, ClusterCIDRs: []string{w.net16 + ".0.0/16"}})
	dataDir := filepath.Join(w.dir, n.name+"-ipam")
	cfg := map[string]any{
		"cniVersion":   "1.0.0",
		"name":         "e2e-" + n.name,
		"type":         "ovs-netpol-cni",
		"bridge":       bridge,
		"ovsdb":        n.sw.DBSock(),
		"datapathType": "netdev",
		"hostNetNS":    "/var/run/netns/" + ns,
		"ipam": map[string]any{
			"type": "host-local",
			"ranges": []any{[]any{map[string]any{
				"subnet":     w.net16 + ".0.0/16",
				"rangeStart": fmt.Sprintf("%s.%d.10", w.net16, idx),
				"rangeEnd":   fmt.Sprintf("%s.%d.250", w.net16, idx),
				"gateway":    n.gw,
			}}},
			"routes":  []any{map[string]any{"dst": "0.0.0.0/0"}},
			"dataDir": dataDir,
		},
	}
	var err error
	if n.cniCfg, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	w.nodes = append(w.nodes, n)
	return n
}

// link connects two nodes' bridges with a veth pair (one end in each
// switch's namespace), each end the bridge's uplink port (uplinkOFPort).
// Call it before starting the agents (they get --uplink-port).
func link(t *testing.T, a, b *node) {
	ea, eb := fmt.Sprintf("up%d%d", a.idx, b.idx), fmt.Sprintf("up%d%d", b.idx, a.idx)
	must(t, "ip", "link", "add", ea, "netns", a.sw.NetNS, "type", "veth", "peer", "name", eb, "netns", b.sw.NetNS)
	for _, e := range []struct {
		n   *node
		dev string
	}{{a, ea}, {b, eb}} {
		must(t, "ip", "-n", e.n.sw.NetNS, "link", "set", e.dev, "up")
		must(t, "ip", "netns", "exec", e.n.sw.NetNS, "ethtool", "-K", e.dev, "tx", "off")
		if _, err := e.n.sw.Vsctl("--", "add-port", bridge, e.dev, "--", "set", "Interface", e.dev,
			fmt.Sprintf("ofport_request=%d", uplinkOFPort)); err != nil {
			t.Fatal(err)
		}
		e.n.uplink = true
	}
}

// ---- agent

type agent struct {
	n       *node
	p       *proc
	log     string
	metrics string
	args    []string
}

// startAgent runs the built agent for node n with the agent's ServiceAccount
// identity (manifests/rbac.yaml) and waits until /readyz says ok.
func (n *node) startAgent(t *testing.T, isolation string, extra ...string) *agent {
	t.Helper()
	if n.agent != nil {
		n.agent.stop()
	}
	kc, err := n.w.c.UserKubeconfig(k8stest.AgentUser)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	a := &agent{n: n, log: filepath.Join(n.w.dir, n.name+"-agent.log"), metrics: fmt.Sprintf("127.0.0.1:%d", port)}
	a.args = []string{binPath("ovs-netpol-agent"),
		"--kubeconfig=" + kc, "--node-name=" + n.name, "--bridge=" + bridge,
		"--ovs-rundir=" + n.sw.Dir, "--datapath-type=netdev", "--isolation=" + isolation,
		"--node-ip=" + n.gw, "--metrics-addr=" + a.metrics, "--log-level=debug",
		"--tunnel=none", // these worlds are flat L2 (--uplink-port); the overlay's are in overlay_harness_test.go
	}
	if n.uplink {
		a.args = append(a.args, fmt.Sprintf("--uplink-port=%d", uplinkOFPort))
	}
	a.args = append(a.args, extra...)
	ready := a.start(t)
	t.Logf("agent of %s (--isolation %s) ready in %v", n.name, isolation, ready.Round(time.Millisecond))
	return a
}

// start runs a.args as a.n's agent and waits until /readyz says ok; it
// returns how long that took.
func (a *agent) start(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	if a.p, err = startProc(a.n.name+"-agent", a.log, nil, a.args...); err != nil {
		t.Fatal(err)
	}
	a.n.agent = a
	hc := &http.Client{Timeout: time.Second}
	for {
		if resp, err := hc.Get("http://" + a.metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		if a.p.exited() || time.Since(start) > 60*time.Second {
			t.Fatalf("agent of %s not ready after %v (exited: %v %v); log:\n%s", a.n.name, time.Since(start).Round(time.Millisecond), a.p.exited(), a.p.err, testproc.Tail(a.log, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (a *agent) stop() {
	a.p.stop(5 * time.Second)
	if a.n.agent == a {
		a.n.agent = nil
	}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ---- namespaces and pods

func (w *world) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	w.t.Cleanup(cancel)
	return ctx
}

// ensureNamespace creates (or relabels) a namespace.
func (w *world) ensureNamespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	cl := w.c.Client.CoreV1().Namespaces()
	ns, err := cl.Get(w.ctx(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cl.Create(w.ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	} else if err == nil {
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		for k, v := range labels {
			ns.Labels[k] = v
		}
		_, err = cl.Update(w.ctx(), ns, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// podSpec describes a pod to create.
type podSpec struct {
	ns, name string
	labels   map[string]string
	ports    []corev1.ContainerPort // declared container ports (named ports)
	tcp, udp []int                  // what netpol-agnhost serves (default 80,81)
}

// standardPorts are the named ports of the x/y/z fixture: serve-80-tcp ...
func standardPorts() []corev1.ContainerPort {
	var out []corev1.ContainerPort
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
		for _, port := range []int32{80, 81} {
			out = append(out, corev1.ContainerPort{Name: fmt.Sprintf("serve-%d-%s", port, strings.ToLower(string(proto))), ContainerPort: port, Protocol: proto})
		}
	}
	return out
}

// addPod makes a pod as a runtime does: the Pod object bound to the node,
// a network namespace attached by the CNI plugin (ADD), the server started
// in it, then status.podIP from the CNI result.
func (n *node) addPod(t *testing.T, s podSpec) *pod {
	t.Helper()
	w := n.w
	no := false
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name, Labels: s.labels},
		Spec: corev1.PodSpec{
			NodeName:                     n.name,
			AutomountServiceAccountToken: &no,
			Containers:                   []corev1.Container{{Name: "agnhost", Image: "netpol-agnhost", Ports: s.ports}},
		},
	}
	created, err := w.c.Client.CoreV1().Pods(s.ns).Create(w.ctx(), obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := &pod{ns: s.ns, name: s.name, node: n, uid: string(created.UID),
		cid:   fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64()),
		netns: fmt.Sprintf("%s%s-%06x", netnsPrefix(), w.name, rand.IntN(1<<24))}
	w.mu.Lock()
	w.pods[p.key()] = p
	w.mu.Unlock()
	must(t, "ip", "netns", "add", p.netns)
	must(t, "ip", "-n", p.netns, "link", "set", "lo", "up") // what the loopback plugin does

	out, err := n.cni("ADD", p)
	if err != nil {
		t.Fatal(err)
	}
	r := &types100.Result{}
	if err := json.Unmarshal(out, r); err != nil || len(r.IPs) == 0 || len(r.Interfaces) < 2 {
		t.Fatalf("CNI ADD result of %s: %v\n%s", p.key(), err, out)
	}
	p.ip = r.IPs[0].Address.IP.String()
	p.hostVeth = r.Interfaces[0].Name
	p.mac = r.Interfaces[1].Mac
	of, err := n.sw.Vsctl("get", "Interface", p.hostVeth, "ofport")
	if err != nil {
		t.Fatal(err)
	}
	if p.ofport, err = strconv.Atoi(strings.TrimSpace(of)); err != nil || p.ofport <= 0 {
		t.Fatalf("ofport of %s: %q", p.hostVeth, of)
	}
	n.sw.ForgetPorts()

	tcp, udp := s.tcp, s.udp
	if tcp == nil {
		tcp = []int{80, 81}
	}
	if udp == nil {
		udp = []int{80, 81}
	}
	logPath := filepath.Join(w.dir, strings.ReplaceAll(p.key(), "/", "_")+"-"+p.cid[:6]+".log")
	p.server, err = startProc(p.key(), logPath, nil, "ip", "netns", "exec", p.netns, binPath("netpol-agnhost"), "serve",
		"--name", p.key(), "--tcp", joinInts(tcp), "--udp", joinInts(udp))
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(logPath)
		if bytes.Contains(b, []byte("\nready\n")) {
			break
		}
		if p.server.exited() || time.Since(start) > 10*time.Second {
			t.Fatalf("server in %s did not start:\n%s", p.key(), b)
		}
	}

	// As the kubelet does once the sandbox is up.
	now := metav1.Now()
	created.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, StartTime: &now, PodIP: p.ip, PodIPs: []corev1.PodIP{{IP: p.ip}},
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "agnhost", Image: "netpol-agnhost", Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
	}
	if _, err := w.c.Client.CoreV1().Pods(s.ns).UpdateStatus(w.ctx(), created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("status of %s: %v", p.key(), err)
	}
	if w.podServices {
		w.ensurePodService(t, p, tcp, udp)
	}
	return p
}

// podServicePorts are the ports of a pod's Service: what it serves of TCP
// and UDP 80 and 81, each to the same port.
func podServicePorts(tcp, udp []int) (svc []corev1.ServicePort, slice []discoveryv1.EndpointPort) {
	for _, pp := range []struct {
		proto corev1.Protocol
		ports []int
	}{{corev1.ProtocolTCP, tcp}, {corev1.ProtocolUDP, udp}} {
		for _, port := range pp.ports {
			name := fmt.Sprintf("serve-%d-%s", port, strings.ToLower(string(pp.proto)))
			svc = append(svc, corev1.ServicePort{Name: name, Protocol: pp.proto, Port: int32(port), TargetPort: intstr.FromInt32(int32(port))})
			slice = append(slice, discoveryv1.EndpointPort{Name: ptr.To(name), Protocol: ptr.To(pp.proto), Port: ptr.To(int32(port))})
		}
	}
	return svc, slice
}

// ensurePodService gives pod p its Service "s-NAME" (created once, the
// cluster IP allocated by the apiserver) and sets its EndpointSlice to the
// pod as it is now, ready, as the EndpointSlice controller would.
func (w *world) ensurePodService(t *testing.T, p *pod, tcp, udp []int) {
	t.Helper()
	svcPorts, slicePorts := podServicePorts(tcp, udp)
	name := "s-" + p.name
	svcs := w.c.Client.CoreV1().Services(p.ns)
	svc, err := svcs.Get(w.ctx(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		svc, err = svcs.Create(w.ctx(), &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"pod": p.name}, Ports: svcPorts},
		}, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatalf("service of %s: %v", p.key(), err)
	}
	p.svcIP = svc.Spec.ClusterIP
	w.setSlice(t, p.ns, name, name, slicePorts, endpointOf(p, true))
}

// endpointOf is pod p as an endpoint, ready or not.
func endpointOf(p *pod, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{p.ip},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready), Terminating: ptr.To(false)},
		NodeName:   ptr.To(p.node.name),
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.ns, Name: p.name, UID: types.UID(p.uid)},
	}
}

// setSlice creates or replaces the IPv4 EndpointSlice name of Service svc.
func (w *world) setSlice(t *testing.T, ns, svc, name string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) {
	t.Helper()
	setSliceOf(t, w, ns, svc, name, discoveryv1.AddressTypeIPv4, ports, eps...)
}

func setSliceOf(t *testing.T, w *world, ns, svc, name string, family discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) {
	t.Helper()
	cl := w.c.Client.DiscoveryV1().EndpointSlices(ns)
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "e2e.ovs-netpol.io"}},
		AddressType: family, Ports: ports, Endpoints: eps,
	}
	old, err := cl.Get(w.ctx(), name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = cl.Create(w.ctx(), sl, metav1.CreateOptions{})
	case err == nil:
		sl.ResourceVersion = old.ResourceVersion
		_, err = cl.Update(w.ctx(), sl, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("EndpointSlice %s/%s: %v", ns, name, err)
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// cni invokes the built plugin as a runtime does (CNI spec: env + config on
// stdin) and returns its stdout.
func (n *node) cni(command string, p *pod) ([]byte, error) {
	cmd := exec.Command(binPath("ovs-netpol-cni"))
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+command,
		"CNI_CONTAINERID="+p.cid,
		"CNI_NETNS=/var/run/netns/"+p.netns,
		"CNI_IFNAME=eth0",
		"CNI_PATH=/usr/lib/cni:"+binDir,
		fmt.Sprintf("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=%s;K8S_POD_UID=%s", p.ns, p.name, p.cid, p.uid),
	)
	cmd.Stdin = bytes.NewReader(n.cniCfg)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("CNI %s of %s: %v\nstdout: %s\nstderr: %s", command, p.key(), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// deletePod tears the pod down as a runtime does (server, CNI DEL,
// namespace) and deletes the Pod object.
func (w *world) deletePod(t *testing.T, p *pod) {
	t.Helper()
	if w.podServices {
		// The endpoint goes, as the EndpointSlice controller would see it.
		err := w.c.Client.DiscoveryV1().EndpointSlices(p.ns).Delete(w.ctx(), "s-"+p.name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	w.teardownPod(p)
	zero := int64(0)
	if err := w.c.Client.CoreV1().Pods(p.ns).Delete(w.ctx(), p.name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
}

func (w *world) teardownPod(p *pod) {
	w.mu.Lock()
	if w.pods[p.key()] == p {
		delete(w.pods, p.key())
	}
	w.mu.Unlock()
	if p.server != nil {
		p.server.stop(time.Second)
	}
	if _, err := p.node.cni("DEL", p); err != nil {
		w.t.Errorf("%v", err)
	}
	_, _ = run("ip", "netns", "delete", p.netns)
}

func (w *world) pod(key string) *pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pods[key]
	if p == nil {
		w.t.Fatalf("no pod %s", key)
	}
	return p
}

// ---- flows: waiting for the agents to realize a change

// flowSnapshot is every node's flow table (no counters), sorted.
func (w *world) flowSnapshot(t testing.TB) []string {
	var out []string
	for _, n := range w.nodes {
		f, err := n.sw.DumpFlows(bridge, true)
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(f)
		out = append(out, strings.Join(f, "\n"))
	}
	return out
}

func equalSnap(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// change runs fn (API writes) and waits until the agents have realized it:
// some bridge's flows changed and then stayed the same for 300 ms. When no
// flow change comes within 3 s (a change with no effect on flows), it
// returns anyway; the matrix checks retry on their own.
func (w *world) change(t *testing.T, fn func()) {
	t.Helper()
	before := w.flowSnapshot(t)
	fn()
	w.settle(t, before, 3*time.Second)
}

func (w *world) settle(t *testing.T, before []string, waitChange time.Duration) {
	t.Helper()
	start := time.Now()
	last := before
	stableSince := time.Now()
	changed := false
	for {
		time.Sleep(50 * time.Millisecond)
		cur := w.flowSnapshot(t)
		if !equalSnap(cur, before) {
			changed = true
		}
		if !equalSnap(cur, last) {
			last, stableSince = cur, time.Now()
			continue
		}
		if (changed || time.Since(start) > waitChange) && time.Since(stableSince) >= 300*time.Millisecond {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Logf("flows still changing after 30 s")
			break
		}
	}
	if !changed && waitChange > 0 {
		t.Logf("no flow change within %v", waitChange)
	}
}

// waitFlows waits until the flows equal want (e.g. a baseline).
func (w *world) waitFlows(t *testing.T, want []string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		cur := w.flowSnapshot(t)
		if equalSnap(cur, want) {
			return
		}
		if time.Now().After(deadline) {
			for i := range cur {
				if cur[i] != want[i] {
					t.Fatalf("flows of %s did not return to the expected set within %v:\n%s", w.nodes[i].name, timeout, lineDiff(want[i], cur[i]))
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lineDiff lists the lines only in want ("-") and only in got ("+").
func lineDiff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	wm, gm := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !gm[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !wm[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

// waitPodsRealized waits until every pod's port-security flow is on its
// node's bridge and the flows have been stable for 300 ms.
func (w *world) waitPodsRealized(t *testing.T) {
	t.Helper()
	start := time.Now()
	for {
		missing := ""
		w.mu.Lock()
		pods := make([]*pod, 0, len(w.pods))
		for _, p := range w.pods {
			pods = append(pods, p)
		}
		w.mu.Unlock()
		snap := w.flowSnapshot(t)
		for _, p := range pods {
			want := fmt.Sprintf("priority=100,ip,in_port=%d,dl_src=%s,nw_src=%s ", p.ofport, p.mac, p.ip)
			if !strings.Contains(snap[p.node.idx-1], want) {
				missing = p.key()
				break
			}
			// Its Service is balanced on every node.
			if p.svcIP != "" {
				for i := range w.nodes {
					if !strings.Contains(snap[i], fmt.Sprintf(",nw_dst=%s,tp_dst=80 ", p.svcIP)) {
						missing = p.key() + "'s Service on " + w.nodes[i].name
					}
				}
			}
		}
		if missing == "" {
			w.settle(t, snap, 0)
			return
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no port-security flow for %s after 30 s", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kubectlApply applies YAML documents with kubectl (the user's path).
func (w *world) kubectlApply(t *testing.T, yamlDocs ...string) {
	t.Helper()
	f := filepath.Join(w.dir, fmt.Sprintf("apply-%d.yaml", rand.Uint32()))
	if err := os.WriteFile(f, []byte(strings.Join(yamlDocs, "\n---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := w.c.Kubectl("apply", "-f", f); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, strings.Join(yamlDocs, "\n---\n"))
	}
}

// deletePolicies deletes every NetworkPolicy of the namespaces.
func (w *world) deletePolicies(t *testing.T, namespaces ...string) {
	t.Helper()
	for _, ns := range namespaces {
		if err := w.c.Client.NetworkingV1().NetworkPolicies(ns).DeleteCollection(w.ctx(), metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// ---- interactive helpers run in a pod

// holder is a long-lived TCP connection from a pod (netpol-agnhost hold).
type holder struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func (p *pod) hold(t *testing.T, ip string, port int) *holder {
	t.Helper()
	return p.holdFor(t, ip, port, time.Second)
}

// holdFor is hold whose echoes may take up to timeout.
func (p *pod) holdFor(t *testing.T, ip string, port int, timeout time.Duration) *holder {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", p.netns, binPath("netpol-agnhost"), "hold", "--timeout", timeout.String(), fmt.Sprintf("tcp:%s:%d", ip, port))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := testproc.Start(cmd); err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(func() { in.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if !h.out.Scan() || !strings.HasPrefix(h.out.Text(), "connected ") {
		t.Fatalf("hold %s -> %s:%d: %q", p.key(), ip, port, h.out.Text())
	}
	return h
}

// echo sends a line through the held connection: nil if it came back.
func (h *holder) echo(msg string) error {
	if _, err := fmt.Fprintln(h.in, msg); err != nil {
		return err
	}
	if !h.out.Scan() {
		return fmt.Errorf("holder exited: %v", h.out.Err())
	}
	if r := h.out.Text(); r != "ok" {
		return fmt.Errorf("%s", r)
	}
	return nil
}

// agnhost runs netpol-agnhost in a network namespace and returns its stdout.
func agnhost(netns string, args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", netns, binPath("netpol-agnhost")}, args...)...)
}
