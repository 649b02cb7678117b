// Package k8stest starts a real Kubernetes API server for tests: a private
// etcd (Debian etcd-server) and a kube-apiserver built from k8s.io/kubernetes
// (tools/kube, scripts/build-kube.sh), in a fresh
// directory with free localhost ports, so any number of clusters (in one
// test binary or in several at once) never collide.
//
//	c := k8stest.Start(t)           // etcd <1 s, kube-apiserver ~10-15 s
//	c.Client.CoreV1().Namespaces().Create(...)
//	c.CreatePod(ctx, k8stest.NewPod("x", "a", "node-1", labels), []string{"10.244.1.2"})
//	out, err := c.Kubectl("get", "pods", "-A")
//	agent := c.UserConfig(k8stest.AgentUser) // authenticates as the agent's ServiceAccount
//
// Starting an API server costs ~10-15 s, so a package with many tests should
// share one:
//
//	func TestMain(m *testing.M) { os.Exit(k8stest.RunShared(m)) }
//	func TestX(t *testing.T) { c := k8stest.Shared(t); ... } // started on first use
//
// Tests sharing a cluster must use their own namespaces (there is no
// namespace controller: a deleted namespace stays Terminating forever).
//
// What is there: the API (all built-in resources, RBAC authorization, admin
// and extra users from a static token file; dual-stack Service cluster IPs
// from 10.96.0.0/16 and fd00:96::/108, IPv4 unless a Service asks for
// IPv6). What is not: no kubelet, no controllers (no default
// ServiceAccounts, no garbage collection, no Endpoints). Hence:
//   - Pods never run: CreatePod sets their status (phase Running, IPs) through
//     the status subresource, as a kubelet would. Delete them with DeletePod
//     (grace period 0): a normal delete of a bound pod waits for a kubelet.
//   - The ServiceAccount admission plugin is disabled (it refuses pods until
//     the token controller has created the namespace's "default" account).
//   - A watch without a resourceVersion returns only after ~3 s (measured
//     with etcd 3.4); informers, which watch from their list's
//     resourceVersion, are not slowed down.
//
// The kube-apiserver binary is $OVS_NETPOL_KUBE_APISERVER, or the cached
// build ${OVS_NETPOL_CACHE:-$HOME/.cache/ovs-netpol}/kube-apiserver-v1.37.2;
// when that is missing Start runs scripts/build-kube.sh kube-apiserver (~8 min
// cold, longer than go test's default 10 min timeout: build it before the
// tests, as `make test` does). etcd is $OVS_NETPOL_ETCD or etcd from PATH /
// /usr/bin. A missing binary or a failed start fails the test, never skips it.
//
// StartKubeProxy runs a real kube-proxy (iptables mode, built the same way,
// scripts/build-kube.sh kube-proxy) in a network namespace against the
// cluster; kubeproxy.go lists what it needs without a kubelet.
//
// The daemons are children of the test process that die with it
// (PR_SET_PDEATHSIG); t.Cleanup (or RunShared) stops them and removes the
// directory. Directories left by killed test processes are swept on the next
// Start.
package k8stest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
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
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ovs-netpol/ovs-netpol/internal/testproc"
)

// KubeVersion is the kube-apiserver (and kube-proxy) version the tests run
// against (keep in sync with tools/kube/go.mod and scripts/build-kube.sh).
const KubeVersion = "v1.37.2"

// The agent's ServiceAccount (manifests/) as an authenticated user. Every
// cluster has a token for it, so UserConfig(AgentUser) authenticates exactly
// as the agent would in a real cluster.
const (
	AgentNamespace      = "ovs-netpol"
	AgentServiceAccount = "ovs-netpol-agent"
	AgentUser           = "system:serviceaccount:" + AgentNamespace + ":" + AgentServiceAccount
)

// AgentGroups are the groups a real cluster gives AgentUser (system:authenticated
// is added by the API server to every authenticated user).
var AgentGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + AgentNamespace}

const (
	readyTimeout = 60 * time.Second
	etcdTimeout  = 10 * time.Second
	startTries   = 4 // a port taken between picking and binding is retried with new ports
	dirPrefix    = "k8stest-"
)

// Cluster is one running etcd + kube-apiserver.
type Cluster struct {
	Dir        string // private directory: keys, token file, kubeconfig, logs, etcd data
	Kubeconfig string // kubeconfig file for the admin user (usable by kubectl)
	Server     string // https://127.0.0.1:PORT
	Token      string // the admin's bearer token (group system:masters)

	Client kubernetes.Interface // admin clientset
	Config *rest.Config         // admin config (copy it before changing it)

	tokens  map[string]string // user -> token from the token file
	daemons []*daemon         // etcd, kube-apiserver

	apiBin  string   // kube-apiserver as last started, for StartAPIServer
	apiArgs []string // (same port, etcd, keys and tokens)
}

// Start starts etcd and kube-apiserver and registers their teardown with
// t.Cleanup. It fails the test (never skips) when a binary is missing and
// cannot be built, or when the cluster does not become ready.
func Start(t testing.TB) *Cluster {
	t.Helper()
	c, err := start(t.Logf)
	if err != nil {
		t.Fatalf("k8stest: %v", err)
	}
	t.Cleanup(func() {
		for _, err := range c.stop(t.Failed(), t.Logf) {
			t.Errorf("k8stest: %v", err)
		}
	})
	return c
}

var shared struct {
	mu      sync.Mutex
	enabled bool
	c       *Cluster
	err     error
}

// RunShared runs the package's tests (call it from TestMain) and stops the
// cluster that Shared started, if any. It returns m.Run's exit code.
func RunShared(m *testing.M) int {
	shared.mu.Lock()
	shared.enabled = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c != nil {
		for _, err := range shared.c.stop(code != 0, logStderr) {
			fmt.Fprintf(os.Stderr, "k8stest: %v\n", err)
			code = 1
		}
		shared.c = nil
	}
	return code
}

// Shared returns the test binary's shared cluster, starting it on first use.
// It needs TestMain to call RunShared (which stops it at the end); without
// that it fails the test, since nothing would stop the cluster.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.enabled {
		t.Fatalf("k8stest: Shared needs func TestMain(m *testing.M) { os.Exit(k8stest.RunShared(m)) } (or use Start)")
	}
	if shared.c == nil && shared.err == nil {
		shared.c, shared.err = start(logStderr)
	}
	if shared.err != nil {
		t.Fatalf("k8stest: shared cluster: %v", shared.err)
	}
	return shared.c
}

func logStderr(format string, args ...any) { fmt.Fprintf(os.Stderr, "k8stest: "+format+"\n", args...) }

func start(logf func(string, ...any)) (_ *Cluster, err error) {
	sweepOnce.Do(sweepStale)
	etcd, err := etcdBinary()
	if err != nil {
		return nil, err
	}
	apiserver, err := APIServerBinary()
	if err != nil {
		return nil, err
	}
	key, err := serviceAccountKey()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tempBase(), dirPrefix)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, tokens: map[string]string{}}
	defer func() { // c, not the result: a failed start returns nil
		if err != nil {
			c.stop(true, logf) // logs the tails of both daemons' logs
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), key, 0o600); err != nil {
		return nil, err
	}
	if err := c.writeTokens(); err != nil {
		return nil, err
	}

	t0 := time.Now()
	etcdURL, err := c.startEtcd(etcd)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	if err := c.startAPIServer(apiserver, etcdURL); err != nil {
		return nil, err
	}
	logf("etcd ready in %v, kube-apiserver %s ready in %v (%s)",
		t1.Sub(t0).Round(time.Millisecond), c.Server, time.Since(t1).Round(100*time.Millisecond), c.Dir)

	c.Config = c.tokenConfig(c.Token)
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := c.writeKubeconfig(c.Kubeconfig, "admin", c.Token, "", nil); err != nil {
		return nil, err
	}
	return c, nil
}

// writeTokens writes the static token file: the admin (system:masters),
// AgentUser and KubeProxyUser, each with a random token.
func (c *Cluster) writeTokens() error {
	var b strings.Builder
	add := func(user string, groups ...string) {
		tok := randomHex(16)
		c.tokens[user] = tok
		// token,user,uid[,"group1,group2"] (an empty 4th column would be a group "")
		fmt.Fprintf(&b, "%s,%s,%s", tok, user, user)
		if len(groups) > 0 {
			fmt.Fprintf(&b, ",%q", strings.Join(groups, ","))
		}
		b.WriteString("\n")
	}
	add("admin", "system:masters")
	add(AgentUser, AgentGroups...)
	add(KubeProxyUser) // bound to system:node-proxier by the bootstrap RBAC policy
	c.Token = c.tokens["admin"]
	return os.WriteFile(filepath.Join(c.Dir, "tokens.csv"), []byte(b.String()), 0o600)
}

func (c *Cluster) startEtcd(bin string) (string, error) {
	var lastErr error
	for try := 0; try < startTries; try++ {
		ports, err := freePorts(2)
		if err != nil {
			return "", err
		}
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		d, err := c.spawn("etcd", bin,
			"--name=k8stest",
			"--data-dir="+filepath.Join(c.Dir, "etcd"),
			"--listen-client-urls="+client, "--advertise-client-urls="+client,
			"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
			"--initial-cluster=k8stest="+peer,
			"--initial-cluster-state=new",
			// One member: elect it at once (the default timeout is 1 s).
			"--heartbeat-interval=10", "--election-timeout=100",
			"--snapshot-count=100000",
			"--logger=zap", "--log-outputs=stderr", "--log-level=warn",
		)
		if err != nil {
			return "", err
		}
		err = d.waitHTTP(client+"/health", nil, etcdTimeout, func(body []byte) bool {
			return bytes.Contains(body, []byte(`"health":"true"`))
		})
		if err == nil {
			return client, nil
		}
		if !d.portInUse() {
			return "", err
		}
		lastErr = err
		c.forget(d)
	}
	return "", lastErr
}

func (c *Cluster) startAPIServer(bin, etcdURL string) error {
	var lastErr error
	for try := 0; try < startTries; try++ {
		ports, err := freePorts(1)
		if err != nil {
			return err
		}
		c.Server = "https://127.0.0.1:" + strconv.Itoa(ports[0])
		key := filepath.Join(c.Dir, "sa.key")
		d, err := c.spawn("kube-apiserver", bin,
			"--etcd-servers="+etcdURL,
			"--secure-port="+strconv.Itoa(ports[0]),
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--cert-dir="+filepath.Join(c.Dir, "certs"),
			// Dual-stack: Services are IPv4 single-stack unless they ask
			// for IPv6 (ipFamilyPolicy, ipFamilies).
			"--service-cluster-ip-range=10.96.0.0/16,fd00:96::/108",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file="+key,
			"--service-account-signing-key-file="+key,
			"--token-auth-file="+filepath.Join(c.Dir, "tokens.csv"),
			"--authorization-mode=RBAC",
			"--allow-privileged=true",
			// No token controller: with this plugin every pod create fails
			// until the namespace's "default" ServiceAccount exists.
			"--disable-admission-plugins=ServiceAccount",
			// The kubernetes Service's Endpoints would point at 127.0.0.1,
			// which Endpoints validation refuses; nothing needs them.
			"--endpoint-reconciler-type=none",
			"--profiling=false",
		)
		if err != nil {
			return err
		}
		err = c.waitAPIServer(d)
		if err == nil {
			c.apiBin, c.apiArgs = bin, d.Cmd.Args[1:]
			return nil
		}
		if !d.portInUse() {
			return err
		}
		lastErr = err
		c.forget(d)
	}
	return lastErr
}

func (c *Cluster) waitAPIServer(d *daemon) error {
	auth := map[string]string{"Authorization": "Bearer " + c.Token}
	return d.waitHTTP(c.Server+"/readyz", auth, readyTimeout, func(body []byte) bool {
		return strings.TrimSpace(string(body)) == "ok"
	})
}

// StopAPIServer kills kube-apiserver (SIGKILL: clients' connections and
// watches drop at once); etcd keeps running. StartAPIServer brings it back.
func (c *Cluster) StopAPIServer() error {
	i := slices.IndexFunc(c.daemons, func(d *daemon) bool { return d.Name == "kube-apiserver" })
	if i < 0 {
		return errors.New("k8stest: kube-apiserver is not running")
	}
	d := c.daemons[i]
	select {
	case <-d.Done:
		return fmt.Errorf("k8stest: kube-apiserver had exited (%v):\n%s", d.Err, testproc.Tail(d.Log, 30))
	default:
	}
	d.kill()
	c.daemons = slices.Delete(c.daemons, i, i+1)
	return nil
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, with the
// same arguments (port, etcd, keys, tokens), and waits until it is ready.
func (c *Cluster) StartAPIServer() error {
	if c.apiBin == "" {
		return errors.New("k8stest: kube-apiserver was never started")
	}
	d, err := c.spawn("kube-apiserver", c.apiBin, c.apiArgs...)
	if err != nil {
		return err
	}
	return c.waitAPIServer(d)
}

func (c *Cluster) tokenConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            c.Server,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             1000,
		Burst:           2000,
		Timeout:         30 * time.Second,
	}
}

// UserConfig returns a client config acting as user with groups. For
// AgentUser (with no groups or exactly AgentGroups) it is that user's own
// bearer token from the token file, so requests are authenticated like the
// real agent's. For any other user it impersonates user and groups through
// the admin (RBAC then authorizes every request as the impersonated user;
// system:authenticated is added as for a real user).
func (c *Cluster) UserConfig(user string, groups ...string) *rest.Config {
	if tok, ok := c.tokens[user]; ok && user != "admin" &&
		(len(groups) == 0 || (user == AgentUser && slices.Equal(groups, AgentGroups))) {
		return c.tokenConfig(tok)
	}
	cfg := c.tokenConfig(c.Token)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return cfg
}

// UserClient is a clientset for UserConfig(user, groups...).
func (c *Cluster) UserClient(user string, groups ...string) (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(c.UserConfig(user, groups...))
}

// UserKubeconfig writes a kubeconfig file (in Dir) acting as user with
// groups, the same way as UserConfig, e.g. to run the real agent binary with
// its ServiceAccount's permissions. It returns the file's path.
func (c *Cluster) UserKubeconfig(user string, groups ...string) (string, error) {
	cfg := c.UserConfig(user, groups...)
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, user)
	path := filepath.Join(c.Dir, "kubeconfig-"+name+"-"+randomHex(4))
	return path, c.writeKubeconfig(path, name, cfg.BearerToken, cfg.Impersonate.UserName, cfg.Impersonate.Groups)
}

func (c *Cluster) writeKubeconfig(path, name, token, as string, asGroups []string) error {
	var user strings.Builder
	fmt.Fprintf(&user, "    token: %q\n", token)
	if as != "" {
		fmt.Fprintf(&user, "    as: %q\n", as)
		if len(asGroups) > 0 {
			user.WriteString("    as-groups:\n")
			for _, g := range asGroups {
				fmt.Fprintf(&user, "    - %q\n", g)
			}
		}
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: k8stest
  cluster:
    server: %q
    insecure-skip-tls-verify: true
users:
- name: %q
  user:
%scontexts:
- name: k8stest
  context:
    cluster: k8stest
    user: %q
current-context: k8stest
`, c.Server, name, user.String(), name)
	return os.WriteFile(path, []byte(kc), 0o600)
}

// Kubectl runs the preinstalled kubectl as admin against the cluster and
// returns its stdout; on failure the error carries the command and stderr.
func (c *Cluster) Kubectl(args ...string) (string, error) {
	return c.KubectlAs(c.Kubeconfig, args...)
}

// KubectlAs is Kubectl with another kubeconfig (e.g. from UserKubeconfig).
func (c *Cluster) KubectlAs(kubeconfig string, args ...string) (string, error) {
	full := append([]string{"--kubeconfig=" + kubeconfig, "--cache-dir=" + filepath.Join(c.Dir, "kubectl-cache")}, args...)
	cmd := exec.Command("kubectl", full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// NewPod returns a minimal pod bound to node (one pause container, no
// ServiceAccount token) for CreatePod.
func NewPod(namespace, name, node string, labels map[string]string) *corev1.Pod {
	no := false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:                     node,
			AutomountServiceAccountToken: &no,
			Containers:                   []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
}

// CreatePod creates pod (its spec.nodeName is up to the caller) and, as a
// kubelet would, marks it Running and Ready with status.podIP(s) = ips (the
// first is podIP; at most one per IP family) through the status subresource.
// It returns the pod as stored.
func (c *Cluster) CreatePod(ctx context.Context, pod *corev1.Pod, ips []string) (*corev1.Pod, error) {
	ns := pod.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	created, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	now := metav1.Now()
	st := &created.Status
	st.Phase = corev1.PodRunning
	st.StartTime = &now
	st.PodIPs = nil
	for _, ip := range ips {
		st.PodIPs = append(st.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		st.PodIP = ips[0]
	}
	for _, ct := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		st.Conditions = append(st.Conditions, corev1.PodCondition{Type: ct, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	for _, ctr := range created.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: ctr.Name, Image: ctr.Image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	updated, err := c.Client.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("setting status of pod %s/%s: %w", ns, pod.Name, err)
	}
	return updated, nil
}

// DeletePod deletes a pod at once (grace period 0): without a kubelet a
// graceful delete of a bound pod would leave it terminating forever.
func (c *Cluster) DeletePod(ctx context.Context, namespace, name string) error {
	zero := int64(0)
	return c.Client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
}

// stop stops the daemons (newest first) and removes Dir. Daemons that died
// on their own are reported; with failed, the logs' tails are logged first.
func (c *Cluster) stop(failed bool, logf func(string, ...any)) []error {
	var errs []error
	for i := len(c.daemons) - 1; i >= 0; i-- {
		d := c.daemons[i]
		if failed {
			logf("last lines of %s's log:\n%s", d.Name, testproc.Tail(d.Log, 30))
		}
		select {
		case <-d.Done:
			errs = append(errs, fmt.Errorf("%s exited during the test (%v):\n%s", d.Name, d.Err, testproc.Tail(d.Log, 30)))
		default:
			d.kill()
		}
	}
	c.daemons = nil
	if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// forget kills and drops a daemon that failed to start.
func (c *Cluster) forget(d *daemon) {
	d.kill()
	c.daemons = slices.DeleteFunc(c.daemons, func(x *daemon) bool { return x == d })
}

// daemon is a long-running child process.
type daemon struct{ *testproc.Daemon }

func (c *Cluster) spawn(name, bin string, args ...string) (*daemon, error) {
	d, err := startDaemon(name, filepath.Join(c.Dir, name+".log"), bin, args...)
	if err != nil {
		return nil, err
	}
	c.daemons = append(c.daemons, d)
	return d, nil
}

// startDaemon starts bin with args as a daemon whose stdout and stderr are
// appended to log after a line naming the command (retries append to the
// same file).
func startDaemon(name, log, bin string, args ...string) (*daemon, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fmt.Fprintf(f, "=== %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	d, err := testproc.StartDaemon(name, log, cmd)
	if err != nil {
		return nil, err
	}
	return &daemon{d}, nil
}

// waitHTTP polls url until ok(body) with status 200, failing early (with the
// log's tail) if the daemon exits.
func (d *daemon) waitHTTP(url string, header map[string]string, timeout time.Duration, ok func([]byte) bool) error {
	hc := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		if resp, err := hc.Do(req); err != nil {
			last = err.Error()
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && ok(body) {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
		}
		select {
		case <-d.Done:
			return fmt.Errorf("%s exited (%v) before %s was ready; last lines of %s:\n%s", d.Name, d.Err, url, d.Log, testproc.Tail(d.Log, 40))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v (%s: %s); last lines of %s:\n%s", d.Name, timeout, url, last, d.Log, testproc.Tail(d.Log, 40))
		}
	}
}

// portInUse tells whether the daemon exited because a port was taken.
func (d *daemon) portInUse() bool {
	select {
	case <-d.Done:
	case <-time.After(100 * time.Millisecond):
		return false
	}
	b, _ := os.ReadFile(d.Log)
	return bytes.Contains(b, []byte("address already in use"))
}

func (d *daemon) kill() {
	_ = d.Cmd.Process.Kill() // the data is thrown away: no need for a graceful stop
	<-d.Done
}

// APIServerBinary returns the kube-apiserver to run: $OVS_NETPOL_KUBE_APISERVER,
// else the cached build, else it runs scripts/build-kube.sh kube-apiserver
// (its progress goes to stderr) and returns what that built.
func APIServerBinary() (string, error) {
	return kubeBinary("kube-apiserver", "OVS_NETPOL_KUBE_APISERVER")
}

// kubeBinary returns the Kubernetes component to run: $envVar, else the
// cached build ${OVS_NETPOL_CACHE:-$HOME/.cache/ovs-netpol}/COMPONENT-KubeVersion,
// else what scripts/build-kube.sh COMPONENT builds (progress on stderr).
func kubeBinary(component, envVar string) (string, error) {
	if p := os.Getenv(envVar); p != "" {
		if !isExecutable(p) {
			return "", fmt.Errorf("%s=%s is not an executable file", envVar, p)
		}
		return p, nil
	}
	cache := os.Getenv("OVS_NETPOL_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no %s, OVS_NETPOL_CACHE or home directory: %v", envVar, err)
		}
		cache = filepath.Join(home, ".cache", "ovs-netpol")
	}
	if p := filepath.Join(cache, component+"-"+KubeVersion); isExecutable(p) {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("%s is not built and the build script cannot be found: %v", component, err)
	}
	script := filepath.Join(root, "scripts", "build-kube.sh")
	fmt.Fprintf(os.Stderr, "k8stest: no %s %s yet, running %s %s (run it before the tests, as make test does: minutes cold)\n",
		component, KubeVersion, script, component)
	cmd := exec.Command("bash", script, component)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building %s with %s failed (%v); see its output above", component, script, err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	p := lines[len(lines)-1]
	if !isExecutable(p) {
		return "", fmt.Errorf("%s printed %q, not an executable", script, p)
	}
	return p, nil
}

// RepoRoot returns the ovs-netpol repository's root: the nearest directory
// above the working directory with go.mod and scripts/build-kube.sh.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "scripts", "build-kube.sh")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no directory with go.mod and scripts/build-kube.sh above the working directory")
		}
		dir = parent
	}
}

func etcdBinary() (string, error) {
	if p := os.Getenv("OVS_NETPOL_ETCD"); p != "" {
		if !isExecutable(p) {
			return "", fmt.Errorf("OVS_NETPOL_ETCD=%s is not an executable file", p)
		}
		return p, nil
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	if isExecutable("/usr/bin/etcd") {
		return "/usr/bin/etcd", nil
	}
	return "", errors.New("etcd not found: install the Debian package etcd-server (make deps)")
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// One RSA key per process signs and verifies ServiceAccount tokens (the key
// file holds the private key, from which the API server derives the public one).
var saKey struct {
	once sync.Once
	pem  []byte
	err  error
}

func serviceAccountKey() ([]byte, error) {
	saKey.once.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			saKey.err = err
			return
		}
		saKey.pem = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	})
	return saKey.pem, saKey.err
}

// freePorts returns n distinct free localhost TCP ports. Another process may
// take one before the daemon binds it: callers retry on "address already in use".
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close() // held until all are picked, so they are distinct
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tempBase is where cluster directories go: /dev/shm when usable (etcd's
// fsyncs cost nothing on tmpfs; etcd 3.4 has no --unsafe-no-fsync), else TMPDIR.
func tempBase() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() && syscall.Access("/dev/shm", 2) == nil {
		return "/dev/shm"
	}
	return os.TempDir()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// sweepStale removes cluster directories whose test process died without
// running its cleanups (its daemons died with it).
var sweepOnce sync.Once

func sweepStale() {
	for _, base := range []string{"/dev/shm", os.TempDir()} {
		owners, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*", "owner"))
		for _, o := range owners {
			b, err := os.ReadFile(o)
			if err != nil {
				continue
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || pid <= 0 {
				continue
			}
			if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
				_ = os.RemoveAll(filepath.Dir(o))
			}
		}
	}
}
