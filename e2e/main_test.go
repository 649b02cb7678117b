// Package e2e runs ovs-netpol end to end with real traffic: a real etcd and
// kube-apiserver (internal/k8stest), private userspace Open vSwitch instances
// (internal/ovstest, each ovs-vswitchd in its own network namespace), the BUILT
// agent (cmd/ovs-netpol-agent) per node, and pods made the way a runtime
// makes them: a Pod object (node, labels, named container ports), a network
// namespace attached by invoking the BUILT CNI plugin (cmd/ovs-netpol-cni,
// host-local IPAM from /usr/lib/cni), then the pod's status IP set from the
// CNI result. Every pod runs e2e/cmd/netpol-agnhost serving TCP and UDP (echo)
// on 80 and 81; probes are real connections made by the same binary inside
// the source pod's namespace (`ip netns exec`), 1 s per try, in parallel.
//
// Topology of a node: pods share one subnet on br-int (same L2, also across
// nodes linked by an uplink veth); the node's "host" is the switch's network
// namespace, where br-int's LOCAL port has the gateway address (the agent's
// --node-ip) and an "external" address 192.0.2.10 (traffic the host routes
// from outside, policed like any source).
//
// Tests (see each file): TestSeed (the Kubernetes 1.6 documentation example,
// agent in --isolation v1.6 and v1), TestPolicies (x/y/z × a/b/c scenarios,
// changes, established connections, spoofing, SCTP by trace), TestTwoNodes,
// TestEnforcementLag. Needs root and `make deps`; a missing tool fails the
// test, never skips it.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/k8stest"
)

// bin holds the built binaries (agent, CNI plugin, CLI, netpol-agnhost).
var (
	binDir  string
	repoDir string
)

func binPath(name string) string { return filepath.Join(binDir, name) }

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: needs root (network namespaces, Open vSwitch)")
		return 1
	}
	var err error
	if repoDir, err = k8stest.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	sweepStaleNetns()
	if binDir, err = os.MkdirTemp("", tempPrefix()+"bin-"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(binDir)
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", binDir+"/",
		"./cmd/ovs-netpol-agent", "./cmd/ovs-netpol-cni", "./cmd/ovs-netpol", "./e2e/cmd/netpol-agnhost")
	cmd.Dir = repoDir
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the binaries: %v\n%s", err, out)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: built agent, CNI plugin, CLI and netpol-agnhost in %v\n", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	code := k8stest.RunShared(m)
	fmt.Fprintf(os.Stderr, "e2e: %s in %v\n", totalsString(), time.Since(start).Round(time.Second))
	summaryMu.Lock()
	for _, s := range summaries {
		fmt.Fprintf(os.Stderr, "e2e: %s\n", s)
	}
	summaryMu.Unlock()
	return code
}

var (
	summaryMu sync.Mutex
	summaries []string
)

// addSummary keeps a line for the end of the run.
func addSummary(s string) {
	summaryMu.Lock()
	summaries = append(summaries, s)
	summaryMu.Unlock()
}

// netnsPrefix names every network namespace the e2e tests create:
// e2e-PID-..., so that namespaces left by a killed test process are found.
func netnsPrefix() string { return fmt.Sprintf("e2e-%d-", os.Getpid()) }

// tempPrefix names the e2e tests' temporary directories, with the PID for
// sweepStaleNetns.
func tempPrefix() string { return fmt.Sprintf("ovs-netpol-e2e-%d-", os.Getpid()) }

// sweepStaleNetns deletes e2e-PID-* namespaces and ovs-netpol-e2e-PID-*
// directories whose process is gone (killed before its cleanups ran).
func sweepStaleNetns() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "ovs-netpol-e2e-*"))
	for _, d := range dirs {
		f := strings.SplitN(filepath.Base(d), "-", 5)
		if len(f) < 5 {
			continue
		}
		if pid, err := strconv.Atoi(f[3]); err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = os.RemoveAll(d)
		}
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || !strings.HasPrefix(f[0], "e2e-") {
			continue
		}
		parts := strings.SplitN(f[0], "-", 3)
		if len(parts) < 3 {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			_ = exec.Command("ip", "netns", "delete", f[0]).Run()
		}
	}
}
