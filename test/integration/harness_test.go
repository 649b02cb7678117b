package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovs-netpol/ovs-netpol/internal/k8stest"
	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/internal/testproc"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// The emulated cluster: this agent is node-1; node-2 exists only as the
// spec.nodeName of remote pods. Pods of node-1 get 10.244.1.K and an
// internal port; pods of node-2 get 10.244.2.K. Traffic from node-2 and from
// outside enters through the gateway (the bridge's LOCAL port) with its own
// source address; the node's own address is node-local (always allowed).
const (
	bridge     = "br-int"
	localNode  = "node-1"
	remoteNode = "node-2"
	nodeIP     = "172.18.0.1"
	externalIP = "192.0.2.10"
)

// checkPrerequisites fails (never skips) with what to install.
func checkPrerequisites(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces for ovs-vswitchd): run the tests as root")
	}
	for _, bin := range []struct{ name, pkg string }{
		{"ovs-vswitchd", "openvswitch-switch"}, {"ovsdb-server", "openvswitch-switch"},
		{"ovs-ofctl", "openvswitch-switch"}, {"ovs-vsctl", "openvswitch-switch"},
		{"ip", "iproute2"}, {"etcd", "etcd-server"}, {"kubectl", "kubectl (preinstalled client ≥ 1.32)"},
		{"go", "Go ≥ 1.26 (builds the agent)"},
	} {
		if _, err := lookPath(bin.name); err != nil {
			missing = append(missing, fmt.Sprintf("%s (install %s)", bin.name, bin.pkg))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("integration tests need:\n  %s\n(`make deps` installs the Debian packages)", strings.Join(missing, "\n  "))
	}
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dirs := []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"}
	if name == "go" {
		dirs = append([]string{filepath.Join(runtime.GOROOT(), "bin")}, dirs...)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// agentBinary builds ./cmd/ovs-netpol-agent once per test binary
// (OVS_NETPOL_AGENT_RACE=1 builds it with -race; the measurements are then
// not representative).
var agentBuild struct {
	once sync.Once
	path string
	err  error
	dir  string
}

func agentBinary(t *testing.T) string {
	t.Helper()
	agentBuild.once.Do(func() {
		root, err := k8stest.RepoRoot()
		if err != nil {
			agentBuild.err = err
			return
		}
		dir, err := os.MkdirTemp("", "ovs-netpol-agent-bin")
		if err != nil {
			agentBuild.err = err
			return
		}
		agentBuild.dir = dir
		goBin, err := lookPath("go")
		if err != nil {
			agentBuild.err = err
			return
		}
		out := filepath.Join(dir, "ovs-netpol-agent")
		args := []string{"build", "-o", out}
		if os.Getenv("OVS_NETPOL_AGENT_RACE") == "1" {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/ovs-netpol-agent")
		cmd := exec.Command(goBin, args...)
		cmd.Dir = root
		start := time.Now()
		if b, err := cmd.CombinedOutput(); err != nil {
			agentBuild.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
			return
		}
		fmt.Fprintf(os.Stderr, "integration: built %s in %v\n", out, time.Since(start).Round(time.Millisecond))
		agentBuild.path = out
	})
	if agentBuild.err != nil {
		t.Fatalf("building the agent: %v", agentBuild.err)
	}
	return agentBuild.path
}

// ---------------------------------------------------------------------------
// The agent process.

type agentProc struct {
	t       *testing.T
	bin     string
	args    []string
	logPath string
	metrics string // host:port
	hc      *http.Client

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs the agent and waits for /readyz (first full sync committed).
func (a *agentProc) start() {
	a.t.Helper()
	f, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		a.t.Fatal(err)
	}
	fmt.Fprintf(f, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), a.bin, strings.Join(a.args, " "))
	a.cmd = exec.Command(a.bin, a.args...)
	a.cmd.Stdout, a.cmd.Stderr = f, f
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	a.done = make(chan struct{})
	err = testproc.Start(a.cmd)
	f.Close()
	if err != nil {
		a.t.Fatalf("starting the agent: %v", err)
	}
	go func(cmd *exec.Cmd, done chan struct{}) { a.err = cmd.Wait(); close(done) }(a.cmd, a.done)
	a.waitReady(30 * time.Second)
}

func (a *agentProc) running() bool {
	if a.cmd == nil {
		return false
	}
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

func (a *agentProc) waitReady(timeout time.Duration) {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		resp, err := a.hc.Get("http://" + a.metrics + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-a.done:
			a.t.Fatalf("the agent exited (%v) before it was ready; log:\n%s", a.err, testproc.Tail(a.logPath, 40))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("the agent is not ready after %v (/readyz: %s); log:\n%s", timeout, last, testproc.Tail(a.logPath, 40))
		}
	}
}

// stop sends SIGTERM and waits; the agent must exit 0 ("flows stay").
func (a *agentProc) stop() {
	a.t.Helper()
	if !a.running() {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
		a.t.Errorf("the agent did not exit within 15 s of SIGTERM (killed)")
		return
	}
	if a.err != nil {
		a.t.Errorf("the agent exited with %v after SIGTERM; want a clean exit", a.err)
	}
}

// kill is the cleanup path: no assertions.
func (a *agentProc) kill() {
	if !a.running() {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// scrape returns the agent's /metrics as sample name{labels} → value.
func (a *agentProc) scrape() (map[string]float64, error) {
	resp, err := a.hc.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		out[l[:i]] = v
	}
	return out, sc.Err()
}

func (a *agentProc) metric(name string) float64 {
	a.t.Helper()
	m, err := a.scrape()
	if err != nil {
		a.t.Fatalf("scraping /metrics: %v", err)
	}
	return m[name]
}

// settledMetrics scrapes until two scrapes 300 ms apart agree on names.
func (a *agentProc) settledMetrics(names ...string) map[string]float64 {
	a.t.Helper()
	var prev map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := a.scrape()
		if err != nil {
			a.t.Fatalf("scraping /metrics: %v", err)
		}
		if prev != nil {
			same := true
			for _, n := range names {
				if m[n] != prev[n] {
					same = false
				}
			}
			if same {
				return m
			}
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("metrics %v do not settle", names)
		}
		prev = m
		time.Sleep(300 * time.Millisecond)
	}
}

// procStatus returns fields of /proc/PID/status (e.g. VmRSS, VmHWM).
func (a *agentProc) procStatus(fields ...string) map[string]string {
	a.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		a.t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && slices.Contains(fields, k) {
			out[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return out
}

// logSummary counts the agent's warning and error messages.
func (a *agentProc) logSummary() string {
	b, err := os.ReadFile(a.logPath)
	if err != nil {
		return err.Error()
	}
	counts := map[string]int{}
	for _, l := range strings.Split(string(b), "\n") {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(l), &e) != nil || (e.Level != "warning" && e.Level != "error" && e.Level != "fatal") {
			continue
		}
		counts[e.Level+": "+e.Msg]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var s strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&s, "  %4d × %s\n", counts[k], k)
	}
	if s.Len() == 0 {
		return "  none\n"
	}
	return s.String()
}

// ---------------------------------------------------------------------------
// The environment: one API server, one switch, one agent.

type env struct {
	t     *testing.T
	c     *k8stest.Cluster
	sw    *ovstest.Switch
	agent *agentProc
	dir   string

	mu       sync.Mutex
	nextHost map[string]int // node → last host number used in 10.244.N.0/24
	nextPort int
}

// endpoint is a traffic source or destination: a local pod (OFPort > 0,
// enters through its port with its MAC), or an address that enters through
// the gateway (LOCAL): a pod of node-2, an external host, the node itself.
type endpoint struct {
	Name   string
	IP     string
	OFPort int
	MAC    string
	Iface  string
	UID    string
}

func (e endpoint) String() string { return e.Name }

func newEnv(t *testing.T) *env {
	checkPrerequisites(t)
	bin := agentBinary(t)
	c := k8stest.Shared(t)
	sw := ovstest.Start(t)
	e := &env{t: t, c: c, sw: sw, dir: t.TempDir(), nextHost: map[string]int{}, nextPort: 10}

	root, err := k8stest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The agent runs as its ServiceAccount with exactly the RBAC of manifests/.
	for _, f := range []string{"namespace.yaml", "rbac.yaml"} {
		if out, err := c.Kubectl("apply", "-f", filepath.Join(root, "manifests", f)); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	kubeconfig, err := c.UserKubeconfig(k8stest.AgentUser)
	if err != nil {
		t.Fatal(err)
	}
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	e.agent = &agentProc{
		t: t, bin: bin, logPath: filepath.Join(e.dir, "agent.log"), metrics: metrics,
		hc: &http.Client{Timeout: 5 * time.Second},
		args: []string{
			"--kubeconfig=" + kubeconfig,
			"--node-name=" + localNode,
			"--bridge=" + bridge,
			"--ovs-rundir=" + sw.Dir,
			"--ovsdb=" + sw.DBSock(),
			"--datapath-type=netdev",
			"--metrics-addr=" + metrics,
			"--node-ip=" + nodeIP,
			"--log-format=json",
			"--tunnel=none", // one node, no Node podCIDR: the flat mode
		},
	}
	// The datapath purge after bundles (when this agent has the flag): our
	// vswitchd's control socket is not at the default OVS_RUNDIR/ovs-vswitchd.PID.ctl.
	if help, _ := exec.Command(bin, "--help").CombinedOutput(); strings.Contains(string(help), "--vswitchd-ctl") {
		e.agent.args = append(e.agent.args, "--vswitchd-ctl="+filepath.Join(sw.Dir, "vswitchd.ctl"))
	}
	// Registered after ovstest.Start: runs before the switch is torn down.
	t.Cleanup(func() {
		e.agent.kill()
		if t.Failed() {
			t.Logf("agent log (%s), last 150 lines:\n%s", e.agent.logPath, testproc.Tail(e.agent.logPath, 150))
		}
	})
	start := time.Now()
	e.agent.start()
	t.Logf("agent ready %v after start (it created %s itself); flags: %s", time.Since(start).Round(time.Millisecond), bridge, strings.Join(e.agent.args[1:], " "))
	return e
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	e.t.Cleanup(cancel)
	return ctx
}

// namespace creates a namespace with labels.
func (e *env) namespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := e.c.Client.CoreV1().Namespaces().Create(e.ctx(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) allocIP(node string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := map[string]int{localNode: 1, remoteNode: 2}[node]
	e.nextHost[node]++
	if e.nextHost[node] > 250 {
		e.t.Fatalf("out of addresses on %s", node)
	}
	return fmt.Sprintf("10.244.%d.%d", n, e.nextHost[node])
}

func (e *env) allocPort() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nextPort++
	return e.nextPort
}

func macFor(ip string) string {
	a := net.ParseIP(ip).To4()
	return fmt.Sprintf("0a:58:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3])
}

// podSpec is what a test pod looks like.
type podSpec struct {
	ns, name string
	node     string
	labels   map[string]string
	ports    []corev1.ContainerPort
	ip       string // "" = next free on its node
	noPort   bool   // a node-1 pod without its OVS port (yet)
}

// pod creates the Pod (status Running with its IP, as a kubelet would) and,
// for a node-1 pod, emulates the CNI: an internal port with the binding
// external_ids. It returns the endpoint.
func (e *env) pod(t *testing.T, s podSpec) endpoint {
	t.Helper()
	if s.ip == "" {
		s.ip = e.allocIP(s.node)
	}
	p := k8stest.NewPod(s.ns, s.name, s.node, s.labels)
	p.Spec.Containers[0].Ports = s.ports
	created, err := e.c.CreatePod(e.ctx(), p, []string{s.ip})
	if err != nil {
		t.Fatal(err)
	}
	ep := endpoint{Name: s.ns + "/" + s.name, IP: s.ip, UID: string(created.UID)}
	if s.node == localNode && !s.noPort {
		ep = e.attach(t, ep, s.ns, s.name)
	}
	return ep
}

// podCNIOrder creates a node-1 pod in the order a real node sees: the Pod
// (Pending, no IP), then the CNI's port, then the kubelet's status with the
// IP. It returns the endpoint once the pod's own flows are installed.
func (e *env) podCNIOrder(t *testing.T, s podSpec) endpoint {
	t.Helper()
	if s.ip == "" {
		s.ip = e.allocIP(s.node)
	}
	p := k8stest.NewPod(s.ns, s.name, s.node, s.labels)
	p.Spec.Containers[0].Ports = s.ports
	created, err := e.c.Client.CoreV1().Pods(s.ns).Create(e.ctx(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ep := e.attach(t, endpoint{Name: s.ns + "/" + s.name, IP: s.ip, UID: string(created.UID)}, s.ns, s.name)
	now := metav1.Now()
	created.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, StartTime: &now, PodIP: s.ip, PodIPs: []corev1.PodIP{{IP: s.ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
	}
	if _, err := e.c.Client.CoreV1().Pods(s.ns).UpdateStatus(e.ctx(), created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ep
}

// attach adds the pod's port as the CNI would (one ovs-vsctl transaction:
// the port and its binding keys) and waits for its ofport.
func (e *env) attach(t *testing.T, ep endpoint, ns, name string) endpoint {
	t.Helper()
	ep.OFPort = e.allocPort()
	ep.MAC = macFor(ep.IP)
	ep.Iface = fmt.Sprintf("pod%d", ep.OFPort)
	q := strconv.Quote
	if _, err := e.sw.Vsctl("--", "add-port", bridge, ep.Iface, "--", "set", "Interface", ep.Iface,
		"type=internal", fmt.Sprintf("ofport_request=%d", ep.OFPort),
		"external_ids:"+q("ovs-netpol.io/pod-namespace")+"="+q(ns),
		"external_ids:"+q("ovs-netpol.io/pod-name")+"="+q(name),
		"external_ids:"+q("ovs-netpol.io/pod-uid")+"="+q(ep.UID),
		"external_ids:attached-mac="+q(ep.MAC)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "ofport of "+ep.Iface, func() error {
		out, err := e.sw.Vsctl("get", "Interface", ep.Iface, "ofport")
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(out); got != strconv.Itoa(ep.OFPort) {
			return fmt.Errorf("ofport %s, want %d", got, ep.OFPort)
		}
		return nil
	})
	e.sw.ForgetPorts()
	return ep
}

func (e *env) detach(t *testing.T, ep endpoint) {
	t.Helper()
	if _, err := e.sw.Vsctl("del-port", bridge, ep.Iface); err != nil {
		t.Fatal(err)
	}
	e.sw.ForgetPorts()
}

func (e *env) deletePod(t *testing.T, ns, name string) {
	t.Helper()
	if err := e.c.DeletePod(e.ctx(), ns, name); err != nil {
		t.Fatal(err)
	}
}

// patchLabels merge-patches labels of a pod or namespace (null removes).
func (e *env) patchLabels(t *testing.T, kind, ns, name string, labels map[string]*string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	var err error
	switch kind {
	case "pod":
		_, err = e.c.Client.CoreV1().Pods(ns).Patch(e.ctx(), name, "application/merge-patch+json", b, metav1.PatchOptions{})
	case "namespace":
		_, err = e.c.Client.CoreV1().Namespaces().Patch(e.ctx(), name, "application/merge-patch+json", b, metav1.PatchOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func ptr(s string) *string { return &s }

// kubectlApply writes yaml to a file and runs kubectl apply -f on it.
func (e *env) kubectlApply(t *testing.T, yaml string) {
	t.Helper()
	f := e.writeManifest(t, yaml)
	if out, err := e.c.Kubectl("apply", "-f", f); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

func (e *env) writeManifest(t *testing.T, yaml string) string {
	t.Helper()
	f, err := os.CreateTemp(e.dir, "manifest-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(yaml); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// ---------------------------------------------------------------------------
// Flows.

func ruleCookie(ns, policy string, dir model.Direction, idx int) openflow.Cookie {
	return compiler.RuleCookie(compiler.RuleKey(&model.Policy{Namespace: ns, Name: policy}, dir, idx))
}

func podCookie(ns, name string) openflow.Cookie {
	return compiler.PodCookie(&model.Pod{Namespace: ns, Name: name})
}

// dumpFlows returns the flows matching the cookie filter ("cookie=V/M"),
// without statistics, with port and table numbers, sorted.
func (e *env) dumpFlows(filter string) ([]string, error) {
	out, err := e.sw.Ofctl("-O", "OpenFlow15", "--no-names", "--no-stats", "dump-flows", bridge, filter)
	if err != nil {
		return nil, err
	}
	var flows []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, " ") && strings.TrimSpace(l) != "" {
			flows = append(flows, strings.TrimSpace(l))
		}
	}
	sort.Strings(flows)
	return flows, nil
}

func (e *env) flowsOf(c openflow.Cookie) ([]string, error) {
	return e.dumpFlows(fmt.Sprintf("cookie=%s/-1", c))
}

// ourFlows is every flow with our magic cookie byte.
func (e *env) ourFlows() ([]string, error) {
	return e.dumpFlows(fmt.Sprintf("cookie=%s/%s", openflow.Ours, openflow.OursMask))
}

// flowSpec describes what a cookie's flows must look like.
type flowSpec struct {
	count  int      // exact number of flows; -1 = any
	has    []string // substrings some flow must contain
	hasNot []string // substrings no flow may contain
}

func (s flowSpec) check(flows []string) error {
	var problems []string
	if s.count >= 0 && len(flows) != s.count {
		problems = append(problems, fmt.Sprintf("%d flows, want %d", len(flows), s.count))
	}
	for _, h := range s.has {
		if !slices.ContainsFunc(flows, func(f string) bool { return flowHas(f, h) }) {
			problems = append(problems, fmt.Sprintf("no flow with %q", h))
		}
	}
	for _, h := range s.hasNot {
		if slices.ContainsFunc(flows, func(f string) bool { return flowHas(f, h) }) {
			problems = append(problems, fmt.Sprintf("a flow with %q", h))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s; flows:\n    %s", strings.Join(problems, "; "), strings.Join(flows, "\n    "))
	}
	return nil
}

// flowHas tells whether a dumped flow has every comma-separated token of
// want ("tcp,tp_dst=80", "nw_src=10.244.1.2", "actions=drop") as a whole
// token of the flow (so 10.244.1.2 does not match 10.244.1.20). A token of
// want that ends in '=' matches any value ("conj_id=").
func flowHas(flow, want string) bool {
	toks := strings.FieldsFunc(flow, func(r rune) bool { return r == ',' || r == ' ' })
	if !slices.ContainsFunc(toks, func(tok string) bool { return strings.HasPrefix(tok, "table=") }) {
		toks = append(toks, "table=0") // dump-flows omits table 0
	}
	for _, w := range strings.Split(want, ",") {
		if !slices.ContainsFunc(toks, func(tok string) bool {
			if strings.HasSuffix(w, "=") {
				return strings.HasPrefix(tok, w)
			}
			return tok == w
		}) {
			return false
		}
	}
	return true
}

// waitFlows waits until the cookie's flows satisfy spec and returns them.
func (e *env) waitFlows(t *testing.T, what string, c openflow.Cookie, spec flowSpec) []string {
	t.Helper()
	var flows []string
	eventually(t, 15*time.Second, fmt.Sprintf("flows of %s (cookie %s)", what, c), func() error {
		var err error
		if flows, err = e.flowsOf(c); err != nil {
			return err
		}
		return spec.check(flows)
	})
	return flows
}

// conjIDs returns the conj_id values of flows.
func conjIDs(flows []string) []string {
	var ids []string
	for _, f := range flows {
		if i := strings.Index(f, "conj_id="); i >= 0 {
			rest := f[i+len("conj_id="):]
			if j := strings.IndexAny(rest, " ,"); j >= 0 {
				rest = rest[:j]
			}
			ids = append(ids, rest)
		}
	}
	sort.Strings(ids)
	return ids
}

// ---------------------------------------------------------------------------
// Verdicts.

// probe is one new connection and whether it must be allowed.
type probe struct {
	src, dst endpoint
	proto    string // tcp, udp, sctp
	port     int
	allow    bool
}

func (p probe) String() string {
	v := "deny"
	if p.allow {
		v = "allow"
	}
	return fmt.Sprintf("%s → %s %s/%d: want %s", p.src, p.dst, p.proto, p.port, v)
}

func (p probe) flow() string {
	var b strings.Builder
	if p.src.OFPort > 0 {
		fmt.Fprintf(&b, "in_port=%d,dl_src=%s,dl_dst=0a:58:ff:ff:ff:fe,", p.src.OFPort, p.src.MAC)
	} else {
		b.WriteString("in_port=LOCAL,dl_src=02:42:ac:12:00:01,dl_dst=0a:58:ff:ff:ff:fe,")
	}
	fmt.Fprintf(&b, "%s,nw_src=%s,nw_dst=%s,%s_src=40000,%s_dst=%d", p.proto, p.src.IP, p.dst.IP, p.proto, p.proto, p.port)
	return b.String()
}

// want is the OpenFlow port an allowed packet leaves by.
func (p probe) want() int {
	if p.dst.OFPort > 0 {
		return p.dst.OFPort
	}
	return ovstest.OFPPLocal
}

// verdict traces the probe; allowed means output to the destination's port.
func (e *env) verdict(p probe) (bool, *ovstest.TraceResult, error) {
	r, err := e.sw.Trace(bridge, p.flow())
	if err != nil {
		return false, nil, err
	}
	return slices.Contains(r.OutputPorts, p.want()), r, nil
}

// expect waits until every probe has its verdict (bounded), then reports
// the ones that do not with their trace.
func (e *env) expect(t *testing.T, probes ...probe) {
	t.Helper()
	e.expectWithin(t, 15*time.Second, probes...)
}

func (e *env) expectWithin(t *testing.T, timeout time.Duration, probes ...probe) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var wrong []string
		var firstRaw string
		for _, p := range probes {
			got, r, err := e.verdict(p)
			if err != nil {
				wrong = append(wrong, fmt.Sprintf("%s: trace failed: %v", p, err))
				continue
			}
			if got != p.allow {
				wrong = append(wrong, fmt.Sprintf("%s, got the opposite (outputs %v)", p, r.OutputNames))
				if firstRaw == "" {
					firstRaw = fmt.Sprintf("ofproto/trace %s %s\n%s", bridge, p.flow(), r.Raw)
				}
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %d of %d verdicts wrong:\n  %s\nfirst wrong trace:\n%s",
				timeout, len(wrong), len(probes), strings.Join(wrong, "\n  "), firstRaw)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func allow(src, dst endpoint, proto string, port int) probe {
	return probe{src: src, dst: dst, proto: proto, port: port, allow: true}
}

func deny(src, dst endpoint, proto string, port int) probe {
	return probe{src: src, dst: dst, proto: proto, port: port, allow: false}
}

// eventually retries f every 10 ms until it succeeds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Statistics.

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// nearest rank: the ceil(p·n)-th smallest (for n=20: median = 10th, p90 = 18th)
	r := int(p*float64(len(sorted))+0.999999) - 1
	r = max(0, min(r, len(sorted)-1))
	return sorted[r]
}

func summarize(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
	return fmt.Sprintf("n=%d median=%s p90=%s min=%s max=%s", len(s), ms(percentile(s, 0.5)), ms(percentile(s, 0.9)), ms(s[0]), ms(s[len(s)-1]))
}
