package e2e

// Helpers of the fault tests (faults_test.go): traffic that runs through a
// fault (long-lived connections echoing, new-connection probes in a loop),
// the agent's metrics, flows with their counters, and a world on a private
// cluster (for stopping its kube-apiserver).

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/k8stest"
	"github.com/ovs-netpol/ovs-netpol/internal/testproc"
)

// ---- new connections in a loop

// attempt is one new connection of a probeLoop.
type attempt struct {
	start time.Time
	ok    bool
}

// probeLoop opens a new connection from a pod to a target every interval
// (netpol-agnhost loop) until stopped, and keeps every result.
type probeLoop struct {
	what string
	cmd  *exec.Cmd
	done chan struct{}

	mu   sync.Mutex
	atts []attempt
}

// Time limits of a loop's attempts: a denied attempt that connects at all
// counts, so 300 ms is plenty; an allowed one gets more, so that a loaded
// machine does not pass for a broken path.
const (
	deniedTimeout  = 300 * time.Millisecond
	allowedTimeout = time.Second
)

// startProbeLoop starts new connections from p to target ("tcp:IP:PORT" or
// "udp:IP:PORT") every interval, each with the time limit timeout; UDP
// attempts each use a source port of their own (a reused 5-tuple would be
// an established conntrack entry).
func startProbeLoop(t *testing.T, what string, p *pod, target string, interval, timeout time.Duration) *probeLoop {
	t.Helper()
	args := []string{"netns", "exec", p.netns, binPath("netpol-agnhost"), "loop",
		"--interval", interval.String(), "--timeout", timeout.String(), "--duration", "10m"}
	if strings.HasPrefix(target, "udp:") {
		args = append(args, "--sport-base", strconv.Itoa(nextUDPPorts(4000)))
	}
	l := &probeLoop{what: what, cmd: exec.Command("ip", append(args, target)...), done: make(chan struct{})}
	out, err := l.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := testproc.Start(l.cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.stop() })
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "started" {
		t.Fatalf("loop %s: %q", what, sc.Text())
	}
	go func() {
		defer close(l.done)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 2 {
				continue
			}
			ns, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				continue
			}
			l.mu.Lock()
			l.atts = append(l.atts, attempt{time.Unix(0, ns), f[1] == "ok"})
			l.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	return l
}

// stop ends the loop and returns its attempts in start order. Attempts
// attemptsSoFar returns a copy of the loop's attempts until now.
func (l *probeLoop) attemptsSoFar() []attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]attempt(nil), l.atts...)
}

// still running when it stops are lost, which only shortens the record.
func (l *probeLoop) stop() []attempt {
	if l.cmd.ProcessState == nil {
		_ = l.cmd.Process.Kill()
		<-l.done
		_ = l.cmd.Wait()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.Slice(l.atts, func(i, j int) bool { return l.atts[i].start.Before(l.atts[j].start) })
	totals.probes.Add(int64(len(l.atts)))
	return append([]attempt(nil), l.atts...)
}

// count returns how many attempts there were and how many connected.
func count(atts []attempt) (n, ok int) {
	for _, a := range atts {
		if a.ok {
			ok++
		}
	}
	return len(atts), ok
}

// firstOKAfter is the first connected attempt started at or after t0, and
// whether there is one.
func firstOKAfter(atts []attempt, t0 time.Time) (time.Time, bool) {
	for _, a := range atts {
		if a.ok && !a.start.Before(t0) {
			return a.start, true
		}
	}
	return time.Time{}, false
}

// passed lists the start times of connected attempts, for failure messages.
func passed(atts []attempt) []string {
	var out []string
	for _, a := range atts {
		if a.ok {
			out = append(out, a.start.Format("15:04:05.000"))
		}
	}
	return out
}

// ---- long-lived connections

// echoTimeout is how long a held connection may go without its echo before
// it counts as broken: long enough that a stall the connection survives
// (TCP retransmits through a pause of forwarding) is measured as a stall.
const echoTimeout = 5 * time.Second

// keeper keeps held TCP connections echoing (every 50 ms each) until
// stopped, and counts the echoes, the longest echo (a stall) and the
// connections that broke (no echo within echoTimeout).
type keeper struct {
	conns []*keptConn
	quit  chan struct{}
	wg    sync.WaitGroup
}

type keptConn struct {
	what   string
	h      *holder
	echoes int
	stall  time.Duration // the longest echo
	broken error         // the first failed echo; the connection is not used after it
	at     time.Time
}

// keepEchoing opens n connections from each client to each server IP:port
// and starts echoing through them.
func keepEchoing(t *testing.T, n int, pairs ...[2]*pod) *keeper {
	t.Helper()
	k := &keeper{quit: make(chan struct{})}
	for _, pr := range pairs {
		for i := range n {
			port := 80 + i%2
			c := &keptConn{what: fmt.Sprintf("%s -> %s:%d #%d", pr[0].key(), pr[1].key(), port, i), h: pr[0].holdFor(t, pr[1].ip, port, echoTimeout)}
			k.conns = append(k.conns, c)
		}
	}
	for i, c := range k.conns {
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for j := 0; ; j++ {
				select {
				case <-k.quit:
					return
				case <-tick.C:
				}
				sent := time.Now()
				if err := c.h.echo(fmt.Sprintf("c%d-%d", i, j)); err != nil {
					c.broken, c.at = err, sent
					return
				}
				c.stall = max(c.stall, time.Since(sent))
				c.echoes++
			}
		}()
	}
	return k
}

// stop ends the echoing and returns the echoes, the longest echo and the
// broken connections.
func (k *keeper) stop() (echoes int, stall time.Duration, broken []*keptConn) {
	close(k.quit)
	k.wg.Wait()
	for _, c := range k.conns {
		echoes += c.echoes
		stall = max(stall, c.stall)
		if c.broken != nil {
			broken = append(broken, c)
		}
	}
	return echoes, stall, broken
}

// ---- the agent's metrics and flows

// metric reads one unlabelled metric from the agent's /metrics.
func (a *agent) metric(t *testing.T, name string) float64 {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s's agent: %v", a.n.name, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatalf("metric %s: %q", name, sc.Text())
			}
			return v
		}
	}
	t.Fatalf("no metric %s in the agent's /metrics", name)
	return 0
}

// waitReady waits until the agent's /readyz says ok.
func (a *agent) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	hc := &http.Client{Timeout: time.Second}
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := hc.Get("http://" + a.metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if a.p.exited() || time.Since(start) > timeout {
			t.Fatalf("agent of %s not ready (exited: %v %v); log:\n%s", a.n.name, a.p.exited(), a.p.err, testproc.Tail(a.log, 40))
		}
	}
}

var flowDuration = regexp.MustCompile(`(?:^|[ ,])duration=([0-9.]+)s,`)
var flowCounters = regexp.MustCompile(`(?:^|[ ,])(?:duration|n_packets|n_bytes|idle_age|hard_age|idle_time)=[^ ,]+,?`)

// flowAges maps each flow of the bridge (without its counters) to its
// duration, the time since OVS added it (a modify keeps it).
func (n *node) flowAges(t *testing.T) map[string]time.Duration {
	t.Helper()
	flows, err := n.sw.DumpFlows(bridge, false)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Duration{}
	for _, f := range flows {
		m := flowDuration.FindStringSubmatch(f)
		if m == nil {
			t.Fatalf("no duration in %q", f)
		}
		s, _ := strconv.ParseFloat(m[1], 64)
		out[strings.TrimSpace(flowCounters.ReplaceAllString(f, " "))] = time.Duration(s * float64(time.Second))
	}
	return out
}

// readded lists the flows of now that are younger than since: added (or
// re-added) after that moment.
func readded(now map[string]time.Duration, since time.Duration) []string {
	var out []string
	for f, d := range now {
		if d < since {
			out = append(out, fmt.Sprintf("%s (age %v)", f, d.Round(time.Millisecond)))
		}
	}
	sort.Strings(out)
	return out
}

// ---- a world on a cluster of its own

// newPrivateWorld is newWorld on a cluster started for this test alone, for
// faults that would disturb the other tests (kube-apiserver stopped).
func newPrivateWorld(t *testing.T, name, net16 string) *world {
	c := k8stest.Start(t)
	applyAgentManifests(t, c)
	return worldOn(t, c, name, net16)
}

// secs formats a duration in seconds with millisecond precision.
func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }
