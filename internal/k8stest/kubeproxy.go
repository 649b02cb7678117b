// A real kube-proxy (iptables mode) in a test node's "host" network
// namespace, against the test kube-apiserver: StartKubeProxy. What it takes
// to run one without a kubelet, verified with kube-proxy v1.37.2 (built from
// k8s.io/kubernetes by scripts/build-kube.sh kube-proxy: 76 MB), Debian 12's
// iptables 1.8.9 (the iptables-nft alternative) and kernel 6.18, as root
// ("run": seen running it; "source": read in its code):
//
//   - Binaries (source, run): iptables mode execs only iptables,
//     iptables-save, iptables-restore and the ip6tables trio (Debian package
//     iptables). No conntrack binary: stale UDP flows are deleted over
//     netlink. No nft either: the nftables-leftover cleanup it runs at start
//     skips silently when nft is missing; ipvs cleanup is not run in this mode.
//   - Locks (source, run): kube-proxy takes no lock itself; it passes
//     "-w 5" to iptables. Nothing to create: iptables-nft needs no
//     /run/xtables.lock, and iptables-legacy creates it.
//   - API server (run): it listens on 127.0.0.1 of the test's namespace,
//     which a netns cannot reach ("connection refused" on the netns's own
//     loopback). StartKubeProxy forwards a loopback port inside the namespace
//     to it (a listener the test process opens there).
//   - RBAC (run): the bootstrap ClusterRoleBinding system:node-proxier binds
//     the user system:kube-proxy (KubeProxyUser, a token of every cluster):
//     nothing to create.
//   - Node (source, run): without a Node named hostnameOverride that has an
//     InternalIP (or ExternalIP), it waits 30 s, then assumes 127.0.0.1.
//     Create keeps the status given to it, so one call makes the Node with
//     its addresses. A later change of those addresses, or deleting the
//     Node, makes kube-proxy exit (NodeManager). The Node needs no
//     conditions, podCIDR or kubelet.
//   - Sysctls (run): with kube-proxy's defaults, in a fresh netns it set
//     net.netfilter.nf_conntrack_tcp_timeout_established=86400 and
//     ..._close_wait=3600 (per namespace), and route_localnet=1 (because
//     iptables.localhostNodePorts is on and the unset nodePortAddresses
//     means all, loopback included; it also logs an error about that unset).
//     nf_conntrack_max is read-only inside a netns and the module's hashsize
//     parameter is global and refuses writes from one: the default
//     maxPerCore (32768 per core, min 131072) raises them when the host's are
//     smaller (here both are 262144, so it did not try), and failing to set
//     them stops kube-proxy. The config below leaves every one of them alone
//     (the test compares them before and after); nothing else is required
//     (ip_forward and bridge-nf-call-iptables are neither checked nor set).
//   - Ports (run): healthz and metrics bind inside the namespace; with
//     bindAddressHardFail a taken port makes kube-proxy exit, so
//     StartKubeProxy retries with other ports instead of running without.
//   - Dual stack (run): with ip6tables present and IPv6 on in the netns it
//     runs "in dual-stack mode" (IPv4 primary from the Node's address) and
//     syncs ip6tables too, without an IPv6 node address.
//   - Synced (source, run): /healthz is 200 from the start (and sets
//     lastUpdated to now), so WaitSynced reads the sync timestamps from
//     /metrics; scraping /metrics before the first full sync logs "failed to
//     collect nfacct counter ... object not found" per counter, so it first
//     waits for the rules in iptables-save. The first sync took 0.3-0.5 s per
//     family; a new Service is in iptables ~1 s after it is created
//     (minSyncPeriod 1 s).
//   - Traffic (run): from the namespace, a ClusterIP with an EndpointSlice is
//     DNATed (TCP and UDP; the backend sees the node's address). A ClusterIP
//     without endpoints: TCP connect fails with "connection refused" in <1 ms
//     (REJECT --reject-with icmp-port-unreachable in filter KUBE-SERVICES);
//     a UDP send fails with EPERM and the next read with "connection
//     refused". A connection to a ClusterIP needs a route covering it in the
//     namespace, or it fails with "network is unreachable" before iptables.
//   - Logs (run): at verbosity 2 no warning or error in a normal run.
//
// The test cases are in kubeproxy_test.go (go test -run KubeProxy).

package k8stest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/ovs-netpol/ovs-netpol/internal/tcpsplice"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovs-netpol/ovs-netpol/internal/testproc"
)

// KubeProxyUser is kube-proxy's identity in every test cluster (a token of
// the static token file, no groups). The API server's bootstrap RBAC policy
// binds it to the ClusterRole system:node-proxier (ClusterRoleBinding
// system:node-proxier), exactly what kube-proxy needs: list/watch Services,
// EndpointSlices and ServiceCIDRs, get/list/watch Nodes, create Events.
const KubeProxyUser = "system:kube-proxy"

// KubeProxyOptions configure StartKubeProxy.
type KubeProxyOptions struct {
	// NetNS is the network namespace kube-proxy runs in and programs (a name
	// from `ip netns add`, i.e. /run/netns/NAME): the node's host namespace.
	// Connections from it to a ClusterIP need a route covering the service
	// CIDR there (e.g. a default route); without one the kernel refuses them
	// ("network is unreachable") before iptables sees them. Required.
	NetNS string
	// NodeName is kube-proxy's hostnameOverride, the Node object it reads its
	// addresses from. Required.
	NodeName string
	// NodeIPs are the Node's InternalIP addresses (at most one per family,
	// the first is the primary family). A missing Node is created with them;
	// an existing one must have exactly these InternalIPs (empty: any, but at
	// least one). kube-proxy exits when they change later.
	NodeIPs []string
	// ClusterCIDRs are the pod CIDRs, at most one per family
	// (detectLocalMode ClusterCIDR): traffic to a Service from outside them is
	// masqueraded. Empty: no traffic counts as local.
	ClusterCIDRs []string
	// NodePortAddresses are the node addresses NodePorts are served on
	// (CIDRs or the keywords primary, localhost, all). Default: primary.
	NodePortAddresses []string
	// Verbosity is kube-proxy's log level (klog -v). Default 2: one line per
	// sync with its duration.
	Verbosity int
}

// KubeProxy is a running kube-proxy, stopped by the test's cleanup.
type KubeProxy struct {
	NetNS      string
	NodeName   string
	Dir        string // config, kubeconfig and log
	ConfigFile string // the KubeProxyConfiguration it runs with
	Log        string // its stdout and stderr
	// HealthzAddr and MetricsAddr (127.0.0.1:PORT) are inside NetNS, not
	// reachable from the test's own namespace: use WaitSynced, Healthz and
	// Metrics.
	HealthzAddr string
	MetricsAddr string
	// APIServer is the address (127.0.0.1:PORT inside NetNS) of the
	// forwarder through which it reaches the cluster's API server.
	APIServer string

	d       *daemon
	fwd     net.Listener
	created bool // StartKubeProxy created the Node
}

const kubeProxyTimeout = 60 * time.Second

// KubeProxyBinary returns the kube-proxy to run: $OVS_NETPOL_KUBE_PROXY,
// else the cached build ${OVS_NETPOL_CACHE:-$HOME/.cache/ovs-netpol}/kube-proxy-v1.37.2,
// else it runs scripts/build-kube.sh kube-proxy (progress on stderr) and
// returns what that built.
func KubeProxyBinary() (string, error) {
	return kubeBinary("kube-proxy", "OVS_NETPOL_KUBE_PROXY")
}

// StartKubeProxy runs kube-proxy in iptables mode inside opts.NetNS as
// KubeProxyUser (creating the Node object if missing) and returns once its
// first sync is committed (WaitSynced). It fails the test, never skips it,
// when the binary is missing and cannot be built or kube-proxy does not
// become synced. t.Cleanup kills it (with SIGKILL: kube-proxy leaves its
// rules in place on exit anyway), reports it if it died during the test,
// and deletes the Node if StartKubeProxy created it.
func (c *Cluster) StartKubeProxy(t testing.TB, opts KubeProxyOptions) *KubeProxy {
	t.Helper()
	p, err := c.startKubeProxy(t, opts)
	if err != nil {
		t.Fatalf("k8stest: kube-proxy: %v", err)
	}
	return p
}

func (c *Cluster) startKubeProxy(t testing.TB, opts KubeProxyOptions) (_ *KubeProxy, err error) {
	if opts.NetNS == "" || opts.NodeName == "" {
		return nil, errors.New("KubeProxyOptions.NetNS and NodeName are required")
	}
	if _, err := os.Stat(netnsPath(opts.NetNS)); err != nil {
		return nil, fmt.Errorf("network namespace %q: %w", opts.NetNS, err)
	}
	bin, err := KubeProxyBinary()
	if err != nil {
		return nil, err
	}
	token, ok := c.tokens[KubeProxyUser]
	if !ok {
		return nil, fmt.Errorf("the cluster has no token for %s", KubeProxyUser)
	}
	p := &KubeProxy{NetNS: opts.NetNS, NodeName: opts.NodeName, Dir: t.TempDir()}
	p.Log = filepath.Join(p.Dir, "kube-proxy.log")
	p.ConfigFile = filepath.Join(p.Dir, "config.yaml")

	ctx, cancel := context.WithTimeout(context.Background(), kubeProxyTimeout)
	defer cancel()
	if p.created, err = c.ensureNode(ctx, opts.NodeName, opts.NodeIPs); err != nil {
		return nil, err
	}
	// Registered first, so it runs last: after kube-proxy is dead.
	t.Cleanup(func() {
		if p.created {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := c.Client.CoreV1().Nodes().Delete(ctx, opts.NodeName, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("k8stest: deleting Node %s: %v", opts.NodeName, err)
			}
		}
	})

	// The API server listens on 127.0.0.1 of the test's namespace, which
	// does not exist inside NetNS: forward a loopback port there to it.
	if err := p.forwardAPIServer(c.Server); err != nil {
		return nil, err
	}
	t.Cleanup(func() { p.fwd.Close() })
	kubeconfig := filepath.Join(p.Dir, "kubeconfig")
	if err := writeKubeconfigFile(kubeconfig, "https://"+p.APIServer, "kube-proxy", token); err != nil {
		return nil, err
	}

	t.Cleanup(func() {
		if p.d == nil {
			return
		}
		if t.Failed() {
			t.Logf("k8stest: last lines of kube-proxy's log (%s):\n%s", p.NodeName, testproc.Tail(p.Log, 40))
		}
		select {
		case <-p.d.Done:
			t.Errorf("k8stest: kube-proxy (%s) exited during the test (%v):\n%s", p.NodeName, p.d.Err, testproc.Tail(p.Log, 30))
		default:
			p.d.kill()
		}
	})

	defer func() {
		if err != nil && p.d != nil { // its log's tail is in err
			p.d.kill()
			p.d = nil
		}
	}()
	var lastErr error
	for try := 0; try < startTries; try++ {
		ports, err := reservePorts(opts.NetNS, 2)
		if err != nil {
			return nil, err
		}
		p.HealthzAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
		p.MetricsAddr = "127.0.0.1:" + strconv.Itoa(ports[1])
		if err := os.WriteFile(p.ConfigFile, []byte(kubeProxyConfig(opts, kubeconfig, p.HealthzAddr, p.MetricsAddr)), 0o644); err != nil {
			return nil, err
		}
		if p.d, err = spawnInNetNS(opts.NetNS, "kube-proxy", p.Log, bin, "--config="+p.ConfigFile); err != nil {
			return nil, err
		}
		err = p.WaitSynced(ctx)
		if err == nil {
			return p, nil
		}
		if !p.d.portInUse() {
			return nil, err
		}
		lastErr = err
		p.d.kill()
	}
	return nil, lastErr
}

// kubeProxyConfig is the KubeProxyConfiguration: every setting lives here
// (with --config, kube-proxy ignores most flags). kube-proxy watches the
// file and exits when it is rewritten.
func kubeProxyConfig(opts KubeProxyOptions, kubeconfig, healthz, metrics string) string {
	npa := opts.NodePortAddresses
	if len(npa) == 0 {
		npa = []string{"primary"}
	}
	v := opts.Verbosity
	if v == 0 {
		v = 2
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	var list []string
	for _, a := range npa {
		list = append(list, q(a))
	}
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: %s
clientConnection:
  kubeconfig: %s
# Reachable only inside the namespace; a taken port makes kube-proxy exit
# (and StartKubeProxy retry) instead of running without it.
healthzBindAddress: %s
metricsBindAddress: %s
bindAddressHardFail: true
detectLocalMode: ClusterCIDR
clusterCIDR: %s
# Unset, it means "all" and kube-proxy logs an error about it.
nodePortAddresses: [%s]
iptables:
  # true (the default) with 127.0.0.0/8 among the NodePort addresses sets
  # net.ipv4.conf.all.route_localnet=1; NodePorts on localhost are not needed.
  localhostNodePorts: false
conntrack:
  # 0: leave nf_conntrack_max and the module's global hashsize alone (the
  # defaults raise them to 32768 per core); 0s: leave the (per-namespace)
  # TCP established/close-wait timeouts alone.
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
# The default -999 would make a test daemon the OOM killer's last choice.
oomScoreAdj: 0
logging:
  verbosity: %d
`, q(opts.NodeName), q(kubeconfig), q(healthz), q(metrics), q(strings.Join(opts.ClusterCIDRs, ",")), strings.Join(list, ", "), v)
}

// ensureNode makes sure the Node exists with InternalIPs ips (creating it
// if missing); it reports whether it created it.
func (c *Cluster) ensureNode(ctx context.Context, name string, ips []string) (bool, error) {
	for _, ip := range ips {
		if net.ParseIP(ip) == nil {
			return false, fmt.Errorf("NodeIPs: %q is not an IP address", ip)
		}
	}
	nodes := c.Client.CoreV1().Nodes()
	for {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			var have []string
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					have = append(have, a.Address)
				}
			}
			switch {
			case len(ips) == 0 && len(have) == 0:
				return false, fmt.Errorf("Node %s has no InternalIP and KubeProxyOptions.NodeIPs is empty (kube-proxy would wait 30 s for one, then assume 127.0.0.1)", name)
			case len(ips) > 0 && !slices.Equal(have, ips):
				return false, fmt.Errorf("Node %s exists with InternalIPs %v, not NodeIPs %v", name, have, ips)
			}
			return false, nil
		}
		if !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("getting Node %s: %w", name, err)
		}
		if len(ips) == 0 {
			return false, fmt.Errorf("Node %s does not exist and KubeProxyOptions.NodeIPs is empty", name)
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		}
		for _, ip := range ips {
			node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
		}
		node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
		// The status given to Create is kept (no UpdateStatus needed).
		_, err = nodes.Create(ctx, node, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			continue // created meanwhile: check it
		}
		if err != nil {
			return false, fmt.Errorf("creating Node %s: %w", name, err)
		}
		return true, nil
	}
}

// forwardAPIServer listens on a loopback port inside p.NetNS and copies
// every connection to server (https://127.0.0.1:PORT in the test's own
// namespace). TLS passes through untouched.
func (p *KubeProxy) forwardAPIServer(server string) error {
	target := strings.TrimPrefix(server, "https://")
	var err error
	if p.fwd, err = ListenInNetNS(p.NetNS, "tcp", "127.0.0.1:0"); err != nil {
		return fmt.Errorf("API server forwarder in %s: %w", p.NetNS, err)
	}
	p.APIServer = p.fwd.Addr().String()
	go func() {
		for {
			in, err := p.fwd.Accept()
			if err != nil {
				return // closed by the cleanup
			}
			go func() { _ = tcpsplice.Forward(in, target) }()
		}
	}()
	return nil
}

// WaitSynced waits until kube-proxy has committed everything it has seen:
// its healthz answers 200, iptables-save shows its nat rules, and for every
// IP family it proxies the last successful sync is no older than the last
// queued change and no change is pending (its metrics
// kubeproxy_sync_proxy_rules_last_timestamp_seconds,
// ..._last_queued_timestamp_seconds, ..._service_changes_pending and
// ..._endpoint_changes_pending). An API change made just before the call may
// not have reached kube-proxy yet: to wait for a given Service use
// WaitIptables.
// It fails early, with the log's tail, if kube-proxy exits.
func (p *KubeProxy) WaitSynced(ctx context.Context) error {
	last := "no answer"
	for {
		ok, why := p.synced(ctx)
		if ok {
			return nil
		}
		last = why
		select {
		case <-p.d.Done:
			return fmt.Errorf("kube-proxy exited (%v) before it synced; last lines of %s:\n%s", p.d.Err, p.Log, testproc.Tail(p.Log, 40))
		case <-ctx.Done():
			return fmt.Errorf("kube-proxy not synced (%v: %s); last lines of %s:\n%s", ctx.Err(), last, p.Log, testproc.Tail(p.Log, 40))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (p *KubeProxy) synced(ctx context.Context) (bool, string) {
	code, body, err := p.get(ctx, p.HealthzAddr, "/healthz")
	if err != nil {
		return false, "healthz: " + err.Error()
	}
	if code != http.StatusOK {
		return false, fmt.Sprintf("healthz: %d %s", code, bytes.TrimSpace(body))
	}
	// The first full sync creates the jump chains (KUBE-SERVICES...), then
	// the nfacct counters (every /metrics scrape before that logs an error
	// per counter), then restores its rules, KUBE-MARK-MASQ's among them.
	rules, err := p.iptablesSave("-t", "nat")
	if err != nil {
		return false, err.Error()
	}
	if !strings.Contains(rules, ":KUBE-SERVICES ") || !strings.Contains(rules, "\n-A KUBE-MARK-MASQ ") {
		return false, "no KUBE-SERVICES chain and KUBE-MARK-MASQ rule in the nat table yet"
	}
	code, body, err = p.get(ctx, p.MetricsAddr, "/metrics")
	if err != nil || code != http.StatusOK {
		return false, fmt.Sprintf("metrics: %d %v", code, err)
	}
	m := parseMetrics(body)
	queued := m["kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"]
	if len(queued) == 0 {
		return false, "no sync queued yet"
	}
	done := m["kubeproxy_sync_proxy_rules_last_timestamp_seconds"]
	for family, q := range queued {
		d, ok := done[family]
		if !ok || d < q {
			return false, fmt.Sprintf("%s: last sync %v, last queued change %v", family, d, q)
		}
	}
	for _, g := range []string{"kubeproxy_sync_proxy_rules_service_changes_pending", "kubeproxy_sync_proxy_rules_endpoint_changes_pending"} {
		if v := m[g][""]; v != 0 {
			return false, fmt.Sprintf("%s %v", g, v)
		}
	}
	return true, ""
}

// parseMetrics reads the gauges of a Prometheus text exposition that
// WaitSynced needs: name → ip_family label ("" without labels) → value.
func parseMetrics(body []byte) map[string]map[string]float64 {
	m := map[string]map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		name, labels := line[:sp], ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name, labels = name[:i], name[i:]
		}
		family := ""
		if _, after, ok := strings.Cut(labels, `ip_family="`); ok {
			family, _, _ = strings.Cut(after, `"`)
		}
		if m[name] == nil {
			m[name] = map[string]float64{}
		}
		m[name][family] = v
	}
	return m
}

// Healthz returns kube-proxy's /healthz status code and JSON body.
func (p *KubeProxy) Healthz(ctx context.Context) (int, []byte, error) {
	return p.get(ctx, p.HealthzAddr, "/healthz")
}

// Metrics returns kube-proxy's /metrics (Prometheus text).
func (p *KubeProxy) Metrics(ctx context.Context) ([]byte, error) {
	code, body, err := p.get(ctx, p.MetricsAddr, "/metrics")
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("GET /metrics: %d", code)
	}
	return body, err
}

func (p *KubeProxy) get(ctx context.Context, addr, path string) (int, []byte, error) {
	hc := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
				return DialInNetNS(ctx, p.NetNS, network, a)
			},
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// IptablesSave returns `iptables-save` (every IPv4 table) run inside
// kube-proxy's namespace.
func (p *KubeProxy) IptablesSave() (string, error) { return p.iptablesSave() }

func (p *KubeProxy) iptablesSave(args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", p.NetNS, "iptables-save"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ip netns exec %s iptables-save %s: %v: %s", p.NetNS, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// WaitIptables polls IptablesSave until ok accepts it, e.g. until a
// Service's rules (comment "NAMESPACE/NAME:PORT ...") are there. It fails
// early if kube-proxy exits; on timeout the error carries the last dump.
func (p *KubeProxy) WaitIptables(ctx context.Context, ok func(rules string) bool) error {
	var rules string
	var err error
	for {
		if rules, err = p.IptablesSave(); err == nil && ok(rules) {
			return nil
		}
		select {
		case <-p.d.Done:
			return fmt.Errorf("kube-proxy exited (%v); last lines of %s:\n%s", p.d.Err, p.Log, testproc.Tail(p.Log, 40))
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("waiting for iptables rules: %v (last error: %v)", ctx.Err(), err)
			}
			return fmt.Errorf("waiting for iptables rules: %v; last iptables-save:\n%s", ctx.Err(), rules)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// spawnInNetNS starts bin with args as a daemon inside netns (`ip netns
// exec` execs it in place, so the child is the daemon itself and dies with
// the test process through PR_SET_PDEATHSIG).
func spawnInNetNS(netns, name, log, bin string, args ...string) (*daemon, error) {
	return startDaemon(name, log, "ip", append([]string{"netns", "exec", netns, bin}, args...)...)
}

func writeKubeconfigFile(path, server, user, token string) error {
	c := &Cluster{Server: server}
	return c.writeKubeconfig(path, user, token, "", nil)
}

// Ports handed out by reservePorts in this process, never handed out twice:
// every kube-proxy gets its own, although each namespace has its own loopback.
var portsInUse struct {
	mu    sync.Mutex
	taken map[int]bool
}

// reservePorts returns n distinct free TCP ports of 127.0.0.1 inside netns.
func reservePorts(netns string, n int) ([]int, error) {
	portsInUse.mu.Lock()
	defer portsInUse.mu.Unlock()
	if portsInUse.taken == nil {
		portsInUse.taken = map[int]bool{}
	}
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			return nil, errors.New("no free ports")
		}
		l, err := ListenInNetNS(netns, "tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l) // held until all are picked, so they are distinct
		port := l.Addr().(*net.TCPAddr).Port
		if portsInUse.taken[port] {
			continue
		}
		portsInUse.taken[port] = true
		ports = append(ports, port)
	}
	return ports, nil
}

func netnsPath(name string) string { return filepath.Join("/run/netns", name) }

// InNetNS runs f on an OS thread that has joined the network namespace
// /run/netns/NAME (as `ip netns add` makes), through the CNI plugins' ns
// package (a locked thread, restored afterwards or discarded). Sockets f
// creates belong to that namespace for good and may be used from any
// goroutine afterwards.
func InNetNS(name string, f func() error) error {
	netns, err := ns.GetNS(netnsPath(name))
	if err != nil {
		return fmt.Errorf("network namespace %q: %w", name, err)
	}
	defer netns.Close()
	return netns.Do(func(ns.NetNS) error { return f() })
}

// ListenInNetNS is net.Listen inside the network namespace netns.
func ListenInNetNS(netns, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := InNetNS(netns, func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacketInNetNS is net.ListenPacket inside the network namespace netns.
func ListenPacketInNetNS(netns, network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := InNetNS(netns, func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// DialInNetNS is net.Dialer.DialContext from inside the network namespace netns.
func DialInNetNS(ctx context.Context, netns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := InNetNS(netns, func() (err error) {
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
