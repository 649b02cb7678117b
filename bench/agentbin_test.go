package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/ovs-netpol/ovs-netpol/internal/k8stest"
	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/flowsync"
	"github.com/ovs-netpol/ovs-netpol/pkg/ovsdb"
)

// agentBinary runs the real cmd/ovs-netpol-agent against the cluster on
// its own bridge, with an OVSDB port per local pod (as the CNI plugin
// leaves them), and reports its resident memory: once all wantFlows are
// installed and it is idle (agent-idle-rss-MB), and after a burst of label
// changes of pods (agent-rss-MB: steady state after activity), with its
// peak (agent-peak-rss-MB) and the time until all flows were installed
// (agent-synced-s). The agent is stopped before returning.
func agentBinary(b *testing.B, ctx context.Context, sw *ovstest.Switch, kc *k8stest.Cluster, bindings map[string]compiler.Binding, wantFlows int, pods []*corev1.Pod) {
	root, err := k8stest.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "ovs-netpol-agent")
	build := exec.Command("go", "build", "-o", bin, "./cmd/ovs-netpol-agent")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the agent: %v\n%s", err, out)
	}
	const bridge = "br-agent"
	if err := sw.AddBridge(bridge); err != nil {
		b.Fatal(err)
	}
	if err := addPodPorts(sw, bridge, bindings); err != nil {
		b.Fatal(err)
	}
	addr, err := freeAddr()
	if err != nil {
		b.Fatal(err)
	}
	logFile := filepath.Join(b.TempDir(), "agent.log")
	logf, err := os.Create(logFile)
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin,
		"--kubeconfig="+kc.Kubeconfig, "--node-name="+BenchNode, "--bridge="+bridge,
		"--ovs-rundir="+sw.Dir, "--datapath-type=netdev", "--metrics-addr="+addr,
		"--node-ip="+NodeIP.String(), "--log-level=warn",
		"--tunnel=none") // one node without a pod CIDR: the flat mode
	cmd.Stdout, cmd.Stderr = logf, logf
	// Run it as deployed: with the DaemonSet's memory limit for Go.
	limit, err := deployedGOMEMLIMIT(root)
	if err != nil {
		b.Fatal(err)
	}
	if v, ok := os.LookupEnv("BENCH_AGENT_GOMEMLIMIT"); ok {
		limit = v // "off": Go's default
	}
	cmd.Env = append(os.Environ(), "GOMEMLIMIT="+limit)
	limitBytes, err := parseByteSize(limit)
	if err != nil {
		b.Fatalf("GOMEMLIMIT %q: %v", limit, err)
	}
	b.ReportMetric(float64(limitBytes)/(1<<20), "agent-gomemlimit-MiB")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	failIfExited := func() {
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logFile)
			b.Fatalf("agent exited (%v):\n%s", err, out)
		default:
		}
	}

	inst := &flowsync.Installer{Bridge: bridge, RunDir: sw.Dir}
	for {
		failIfExited()
		n, err := inst.FlowCount(ctx)
		if err == nil && n == wantFlows {
			break
		}
		if time.Since(t0) > 5*time.Minute {
			b.Fatalf("agent binary: %d flows after 5 minutes, want %d (%v)", n, wantFlows, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	synced := time.Since(t0)
	settle := time.Duration(envInt("BENCH_AGENT_SETTLE", 15)) * time.Second
	time.Sleep(settle)
	idle, _ := sampleRSS(b, cmd.Process.Pid)

	events0 := agentMetric(b, addr, "ovs_netpol_events_total")
	if err := sendBurst(ctx, kc, pods); err != nil {
		b.Fatal(err)
	}
	for agentMetric(b, addr, "ovs_netpol_events_total") < events0+float64(len(pods)) {
		failIfExited()
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(settle)
	rss, peak := sampleRSS(b, cmd.Process.Pid)
	b.Logf("agent binary: all %d flows on %s after %v; RSS idle %.1f MiB, after a burst of %d events %.1f MiB (peak %.1f MiB)",
		wantFlows, bridge, synced.Round(time.Millisecond), MB(idle), len(pods), MB(rss), MB(peak))
	b.ReportMetric(synced.Seconds(), "agent-synced-s")
	b.ReportMetric(MB(idle), "agent-idle-rss-MB")
	b.ReportMetric(MB(rss), "agent-rss-MB")
	b.ReportMetric(MB(peak), "agent-peak-rss-MB")
	b.ReportMetric(agentMetric(b, addr, "go_memstats_heap_alloc_bytes")/(1<<20), "agent-heap-MB")
}

// sampleRSS returns the median VmRSS of five samples a second apart, and
// the peak (VmHWM).
func sampleRSS(b *testing.B, pid int) (rss, peak uint64) {
	var samples []uint64
	for i := 0; i < 5; i++ {
		r, h, err := procMemory(pid)
		if err != nil {
			b.Fatal(err)
		}
		samples = append(samples, r)
		peak = max(peak, h)
		time.Sleep(time.Second)
	}
	slices.Sort(samples)
	return samples[len(samples)/2], peak
}

// agentMetric reads one unlabelled metric from the agent's /metrics.
func agentMetric(b *testing.B, addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			return f
		}
	}
	b.Fatalf("agent metric %s missing", name)
	return 0
}

// addPodPorts adds an internal port per binding carrying the external IDs
// the CNI plugin sets (pod namespace and name, attached MAC) and the
// binding's OpenFlow port number, in one ovs-vsctl transaction.
func addPodPorts(sw *ovstest.Switch, bridge string, bindings map[string]compiler.Binding) error {
	keys := make([]string, 0, len(bindings))
	for k := range bindings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var args []string
	for i, k := range keys {
		ns, name, _ := strings.Cut(k, "/")
		bd := bindings[k]
		port := fmt.Sprintf("pod%d", i)
		args = append(args, "--", "add-port", bridge, port, "--", "set", "Interface", port, "type=internal",
			fmt.Sprintf("ofport_request=%d", bd.OFPort),
			fmt.Sprintf("external_ids:%s=%q", ovsdb.KeyPodNamespace, ns),
			fmt.Sprintf("external_ids:%s=%q", ovsdb.KeyPodName, name),
			fmt.Sprintf("external_ids:%s=%q", ovsdb.KeyAttachedMAC, bd.MAC.String()))
	}
	_, err := sw.Vsctl(args...)
	return err
}

// procMemory reads VmRSS and VmHWM of a process.
func procMemory(pid int) (rss, hwm uint64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm, sc.Err()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// deployedGOMEMLIMIT is the GOMEMLIMIT the DaemonSet gives the agent
// container in manifests/daemonset.yaml ("off" when it sets none).
func deployedGOMEMLIMIT(root string) (string, error) {
	data, err := os.ReadFile(filepath.Join(root, "manifests", "daemonset.yaml"))
	if err != nil {
		return "", err
	}
	var ds appsv1.DaemonSet
	if err := yaml.Unmarshal(data, &ds); err != nil {
		return "", fmt.Errorf("manifests/daemonset.yaml: %w", err)
	}
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name != "agent" {
			continue
		}
		for _, e := range c.Env {
			if e.Name == "GOMEMLIMIT" {
				return e.Value, nil
			}
		}
		return "off", nil
	}
	return "", errors.New("manifests/daemonset.yaml: no container named agent")
}

// parseByteSize reads a GOMEMLIMIT value ("off" is 0): a number with an
// optional B, KiB, MiB, GiB or TiB suffix, as the Go runtime accepts.
func parseByteSize(v string) (int64, error) {
	if v == "off" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, err
	}
	return n * mult, nil
}
