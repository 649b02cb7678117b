// Package ovstest starts a real, private Open vSwitch (userspace datapath) for
// tests and lets them load OpenFlow tables and trace packets through them.
//
// Every Switch has its own run directory (databases, sockets, logs) and its
// own network namespace for ovs-vswitchd, so any number of switches (in one
// test binary or in several at once) never collide. The daemons are children
// of the test process that die with it (PR_SET_PDEATHSIG); t.Cleanup stops
// them and removes the namespace and the directory.
//
// Needs root and the Debian packages openvswitch-switch and iproute2.
//
// Facts about OVS 3.1 this package relies on (verified):
//   - ovs-ofctl flow files: '#' starts a comment anywhere on a line (whole-line
//     and trailing comments are fine), blank lines are skipped, there are no
//     continuation lines.
//   - ofproto/trace flow syntax: "tp_dst" is only an alias of tcp_dst; for UDP
//     and SCTP the trace refuses it ("prerequisites not met"), use udp_dst /
//     sctp_dst (flow files accept tp_dst for all three). tcp_flags takes no
//     +flag syntax in a trace. in_port takes an OpenFlow number or port name.
//   - A ct(table=N) makes the trace print "Datapath actions: ...,ct(...),recirc(0xID)"
//     for the first pass, then a banner "recirc(0xID) - resume conntrack with
//     [default ]ct_state=trk|new" and a second full trace ending in its own
//     "Datapath actions:" line. Each --ct-next sets ct_state for the next
//     recirculation in order; without one OVS assumes trk|new.
//   - Numbers in "Datapath actions" are datapath port numbers; ovs-appctl
//     dpif/show maps them ("    p1 1/2: (tap)" = ofport 1, dp port 2). Output
//     to the packet's own in_port is silently dropped (use IN_PORT).
package ovstest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/testproc"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// OFPPLocal is the OpenFlow number of a bridge's LOCAL port.
const OFPPLocal = 65534

// Switch is one private Open vSwitch instance.
type Switch struct {
	Dir   string // run dir (OVS_RUNDIR): conf.db, db.sock, *.ctl, BRIDGE.mgmt, logs
	NetNS string // the network namespace ovs-vswitchd runs in

	bins    map[string]string // binary name -> absolute path
	env     []string          // environment for every OVS command
	daemons []*daemon         // started daemons, in start order
	seq     atomic.Int64      // for unique flow file names

	ctl *unixctl // direct control-socket client for traces

	dpMu    sync.Mutex
	dpCache map[int]dpPort // datapath port map; reset when ports are added
}

var binaries = []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ip"}

var schemaPaths = []string{
	"/usr/share/openvswitch/vswitch.ovsschema",
	"/usr/local/share/openvswitch/vswitch.ovsschema",
}

// Start starts ovsdb-server and ovs-vswitchd (in a new network namespace) in
// a fresh directory under /tmp and registers their teardown with t.Cleanup.
// It fails the test (never skips) if OVS or iproute2 is missing.
func Start(t testing.TB) *Switch {
	t.Helper()
	sweepOnce.Do(sweepStale)

	bins, err := findBinaries()
	if err != nil {
		t.Fatalf("ovstest: %v (install the Debian packages openvswitch-switch and iproute2)", err)
	}
	schema := ""
	for _, p := range schemaPaths {
		if _, err := os.Stat(p); err == nil {
			schema = p
			break
		}
	}
	if schema == "" {
		t.Fatalf("ovstest: OVS schema not found in %v (install the Debian package openvswitch-switch)", schemaPaths)
	}

	// Short path: unix socket paths must stay below 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "ovst")
	if err != nil {
		t.Fatalf("ovstest: %v", err)
	}
	s := &Switch{
		Dir:  dir,
		bins: bins,
		env:  append(os.Environ(), "OVS_RUNDIR="+dir, "OVS_LOGDIR="+dir, "OVS_DBDIR="+dir),
	}
	t.Cleanup(func() { s.stop(t) })
	if err := s.start(schema); err != nil {
		t.Fatalf("ovstest: starting Open vSwitch in %s: %v", dir, err)
	}
	return s
}

func (s *Switch) start(schema string) error {
	d := s.Dir
	if _, err := s.run("ovsdb-tool", "create", d+"/conf.db", schema); err != nil {
		return err
	}
	db, err := s.spawn("ovsdb-server", nil, d+"/conf.db",
		"--remote=punix:"+d+"/db.sock", "--unixctl="+d+"/ovsdb.ctl",
		"--pidfile="+d+"/ovsdb.pid", "--log-file="+d+"/ovsdb.log", "-vconsole:off")
	if err != nil {
		return err
	}
	if err := db.waitSocket(d + "/db.sock"); err != nil {
		return err
	}
	if _, err := s.run("ovs-vsctl", "--db="+s.DBSock(), "--no-wait", "init"); err != nil {
		return err
	}

	// Record the owner before the netns exists so a later sweepStale can
	// remove it if this process dies without running its cleanups.
	for range 10 {
		name := fmt.Sprintf("ovst-%06x", rand.IntN(1<<24))
		if err := os.WriteFile(d+"/owner", fmt.Appendf(nil, "%d %s\n", os.Getpid(), name), 0o644); err != nil {
			return err
		}
		if _, err = s.run("ip", "netns", "add", name); err == nil {
			s.NetNS = name
			break
		}
	}
	if s.NetNS == "" {
		return fmt.Errorf("creating a network namespace (needs root): %w", err)
	}
	// "ip netns exec" execs ovs-vswitchd in place (no fork), so the child we
	// wait for is vswitchd itself.
	vs, err := s.spawn("ip", []string{"netns", "exec", s.NetNS, s.bins["ovs-vswitchd"]},
		s.DBSock(), "--unixctl="+d+"/vswitchd.ctl",
		"--pidfile="+d+"/vswitchd.pid", "--log-file="+d+"/vswitchd.log", "-vconsole:off")
	if err != nil {
		return err
	}
	return vs.waitSocket(d + "/vswitchd.ctl")
}

// DBSock returns the OVSDB address, "unix:DIR/db.sock".
func (s *Switch) DBSock() string { return "unix:" + s.Dir + "/db.sock" }

// Vsctl runs ovs-vsctl against this switch's database and returns its stdout.
func (s *Switch) Vsctl(args ...string) (string, error) {
	return s.run("ovs-vsctl", append([]string{"--db=" + s.DBSock(), "--timeout=10"}, args...)...)
}

// Ofctl runs ovs-ofctl with OVS_RUNDIR=Dir, so a bridge name BR resolves to
// DIR/BR.mgmt, and returns its stdout. The bridges allow OpenFlow10..15.
func (s *Switch) Ofctl(args ...string) (string, error) {
	return s.run("ovs-ofctl", append([]string{"--timeout=60"}, args...)...)
}

// Appctl runs ovs-appctl against this switch's ovs-vswitchd.
func (s *Switch) Appctl(args ...string) (string, error) {
	return s.run("ovs-appctl", append([]string{"-t", s.Dir + "/vswitchd.ctl", "--timeout=30"}, args...)...)
}

// ctlCall runs an ovs-appctl command over the control socket.
func (s *Switch) ctlCall(args ...string) (string, error) {
	s.dpMu.Lock()
	if s.ctl == nil {
		s.ctl = &unixctl{path: s.Dir + "/vswitchd.ctl"}
	}
	ctl := s.ctl
	s.dpMu.Unlock()
	return ctl.call(args[0], args[1:]...)
}

// PurgeDatapathCache drops all cached datapath flows, so that packets sent
// after a flow change see the new OpenFlow tables at once: revalidator/purge
// deletes the flows ovs-vswitchd installed (those it keeps a revalidator key
// for), dpctl/del-flows whatever else the datapath holds.
func (s *Switch) PurgeDatapathCache() error {
	for _, cmd := range []string{"revalidator/purge", "dpctl/del-flows"} {
		if _, err := s.Appctl(cmd); err != nil {
			return err
		}
	}
	return nil
}

// AddBridge creates a userspace (netdev) bridge with fail_mode=secure and
// protocols OpenFlow10..OpenFlow15 and waits until ovs-ofctl can talk to it.
func (s *Switch) AddBridge(name string) error {
	s.forgetPorts()
	if _, err := s.Vsctl("--", "add-br", name, "--", "set", "Bridge", name,
		"datapath_type=netdev", "fail_mode=secure",
		"protocols=OpenFlow10,OpenFlow11,OpenFlow12,OpenFlow13,OpenFlow14,OpenFlow15"); err != nil {
		return err
	}
	return poll(10*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(s.Dir, name+".mgmt")); err != nil {
			return err
		}
		_, err := s.Ofctl("-O", "OpenFlow15", "show", name)
		return err
	})
}

// AddInternalPort adds an internal port with the given OpenFlow port number
// and waits until OVS has assigned exactly that number. The port's network
// device lives in the switch's namespace (NetNS).
func (s *Switch) AddInternalPort(bridge, name string, ofport int) error {
	s.forgetPorts()
	if _, err := s.Vsctl("--", "add-port", bridge, name, "--", "set", "Interface", name,
		"type=internal", fmt.Sprintf("ofport_request=%d", ofport)); err != nil {
		return err
	}
	return poll(10*time.Second, func() error {
		out, err := s.Vsctl("get", "Interface", name, "ofport", "error")
		if err != nil {
			return err
		}
		got := strings.SplitN(strings.TrimSpace(out), "\n", 2)
		if len(got) == 2 && got[1] != "[]" {
			return fmt.Errorf("interface %s: error %s", name, got[1])
		}
		if got[0] != strconv.Itoa(ofport) {
			return fmt.Errorf("interface %s: ofport is %s, want %d", name, got[0], ofport)
		}
		return nil
	})
}

// InstallFlows atomically replaces the bridge's whole flow table with text
// (ovs-ofctl flow syntax, one flow per line; '#' comments and blank lines are
// allowed) using "ovs-ofctl -O OpenFlow15 --bundle replace-flows".
func (s *Switch) InstallFlows(bridge, text string) error {
	return s.flowFile("replace-flows", bridge, text)
}

// AddFlows applies text atomically with "ovs-ofctl -O OpenFlow15 --bundle
// add-flows"; lines may start with add, modify, modify_strict, delete or
// delete_strict (default add).
func (s *Switch) AddFlows(bridge, text string) error {
	return s.flowFile("add-flows", bridge, text)
}

// InstallBundle atomically replaces the bridge's flows and groups with an
// "ovs-ofctl bundle" file (lines "flow add ...", "group add ...", comments),
// as "ovs-netpol compile" prints it.
func (s *Switch) InstallBundle(bridge, text string) error {
	return s.Bundle(bridge, "flow delete\ngroup delete group_id=all\n"+text)
}

// Bundle applies an "ovs-ofctl -O OpenFlow15 bundle" file atomically.
func (s *Switch) Bundle(bridge, text string) error {
	f := filepath.Join(s.Dir, fmt.Sprintf("bundle-%d.txt", s.seq.Add(1)))
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		return err
	}
	defer os.Remove(f)
	_, err := s.Ofctl("-O", "OpenFlow15", "bundle", bridge, f)
	return err
}

func (s *Switch) flowFile(cmd, bridge, text string) error {
	f := filepath.Join(s.Dir, fmt.Sprintf("flows-%d.txt", s.seq.Add(1)))
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		return err
	}
	defer os.Remove(f)
	_, err := s.Ofctl("-O", "OpenFlow15", "--bundle", cmd, bridge, f)
	return err
}

// DumpFlows returns the bridge's flows as printed by "ovs-ofctl -O OpenFlow15
// dump-flows" (one flow per element, trimmed, reply header removed).
func (s *Switch) DumpFlows(bridge string, noStats bool) ([]string, error) {
	args := []string{"-O", "OpenFlow15", "dump-flows", bridge}
	if noStats {
		args = append(args, "--no-stats")
	}
	out, err := s.Ofctl(args...)
	if err != nil {
		return nil, err
	}
	var flows []string
	for _, l := range strings.Split(out, "\n") {
		// Flows are indented; headers ("OFPST_FLOW reply ...") are not.
		if strings.HasPrefix(l, " ") && strings.TrimSpace(l) != "" {
			flows = append(flows, strings.TrimSpace(l))
		}
	}
	return flows, nil
}

// TraceResult is the parsed output of ofproto/trace.
type TraceResult struct {
	Raw string // full trace output (for failure messages)
	// DatapathActions is the text after the last "Datapath actions:" line,
	// i.e. of the last pass after following all recirculations.
	DatapathActions string
	// Passes holds the "Datapath actions:" text of every pass in order: the
	// first pass, then one per recirculation (ct(table=...)).
	Passes []string
	// OutputPorts are the OpenFlow port numbers the packet is output to, over
	// all passes (a flow may output before it sends the packet through
	// conntrack), in trace order. LOCAL is OFPPLocal (65534).
	OutputPorts []int
	// OutputNames are the interface names of OutputPorts, same order.
	OutputNames []string
	// Dropped is true when the packet is output nowhere in any pass.
	Dropped bool
}

// Trace runs "ovs-appctl ofproto/trace BRIDGE FLOW [--ct-next STATE]...".
// FLOW example: "in_port=1,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tcp_dst=80";
// for UDP/SCTP use udp_dst/sctp_dst (tp_dst is refused there). Each ctNext
// (e.g. "trk,est") is the conntrack state after the next recirculation; OVS
// uses "trk,new" for recirculations without one.
func (s *Switch) Trace(bridge, flow string, ctNext ...string) (*TraceResult, error) {
	args := []string{"ofproto/trace", bridge, flow}
	for _, c := range ctNext {
		args = append(args, "--ct-next", c)
	}
	out, err := s.ctlCall(args...)
	if err != nil {
		return nil, err
	}
	r := &TraceResult{Raw: out}
	var dpPorts []int
	for _, l := range strings.Split(out, "\n") {
		if a, ok := strings.CutPrefix(l, "Datapath actions: "); ok {
			a = strings.TrimSpace(a)
			r.Passes = append(r.Passes, a)
			dpPorts = append(dpPorts, datapathOutputs(a)...)
		}
	}
	if len(r.Passes) == 0 {
		return nil, fmt.Errorf("no \"Datapath actions\" in trace output:\n%s", out)
	}
	r.DatapathActions = r.Passes[len(r.Passes)-1]
	r.Dropped = len(dpPorts) == 0
	if r.Dropped {
		return r, nil
	}
	ports, err := s.datapathPorts()
	if err != nil {
		return nil, err
	}
	for _, dp := range dpPorts {
		p, ok := ports[dp]
		if !ok {
			return nil, fmt.Errorf("datapath port %d not in dpif/show\ntrace:\n%s", dp, out)
		}
		r.OutputPorts = append(r.OutputPorts, p.ofport)
		r.OutputNames = append(r.OutputNames, p.name)
	}
	return r, nil
}

// datapathOutputs returns the datapath port numbers a datapath action list
// outputs to: bare numbers at top level or inside clone(...). Other actions
// (ct(...), recirc(...), set(...), userspace(...), drop) output nowhere.
func datapathOutputs(actions string) []int {
	var ports []int
	for _, a := range openflow.SplitTopLevel(actions) {
		if n, err := strconv.Atoi(a); err == nil {
			ports = append(ports, n)
		} else if inner, ok := strings.CutPrefix(a, "clone("); ok {
			ports = append(ports, datapathOutputs(strings.TrimSuffix(inner, ")"))...)
		}
	}
	return ports
}

func (s *Switch) forgetPorts() {
	s.dpMu.Lock()
	s.dpCache = nil
	s.dpMu.Unlock()
}

type dpPort struct {
	name   string
	ofport int
}

// dpifLine matches a port line of "ovs-appctl dpif/show", e.g.
// "    p1 1/2: (tap)" or "    br0 65534/1: (tap)".
var dpifLine = regexp.MustCompile(`^\s{4}(\S+) (\d+)/(\d+):`)

// datapathPorts maps datapath port numbers to ports. All netdev bridges share
// one datapath, so the numbers are unique across bridges.
func (s *Switch) datapathPorts() (map[int]dpPort, error) {
	s.dpMu.Lock()
	defer s.dpMu.Unlock()
	if s.dpCache != nil {
		return s.dpCache, nil
	}
	out, err := s.Appctl("dpif/show")
	if err != nil {
		return nil, err
	}
	ports := map[int]dpPort{}
	for _, l := range strings.Split(out, "\n") {
		if m := dpifLine.FindStringSubmatch(l); m != nil {
			of, _ := strconv.Atoi(m[2])
			dp, _ := strconv.Atoi(m[3])
			ports[dp] = dpPort{name: m[1], ofport: of}
		}
	}
	s.dpCache = ports
	return ports, nil
}

// run runs an OVS binary with the switch's environment; on failure the error
// carries the command line and its stderr.
func (s *Switch) run(bin string, args ...string) (string, error) {
	cmd := exec.Command(s.bins[bin], args...)
	cmd.Env = s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s", bin, strings.Join(args, " "), err,
			strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// daemon is a long-running child process.
type daemon struct{ *testproc.Daemon }

// spawn starts bin with prefix+args as a daemon, its output in
// DIR/NAME.stderr.
func (s *Switch) spawn(bin string, prefix []string, args ...string) (*daemon, error) {
	name := bin
	if bin == "ip" {
		name = filepath.Base(prefix[len(prefix)-1])
	}
	log := filepath.Join(s.Dir, name+".stderr")
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(s.bins[bin], append(prefix, args...)...)
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = f, f
	td, err := testproc.StartDaemon(name, log, cmd)
	if err != nil {
		return nil, err
	}
	d := &daemon{td}
	s.daemons = append(s.daemons, d)
	return d, nil
}

// waitSocket waits until the daemon accepts connections on the unix socket
// path, failing early if it exits.
func (d *daemon) waitSocket(path string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-d.Done:
			out, _ := os.ReadFile(d.Log)
			return fmt.Errorf("%s exited (%v): %s", d.Name, d.Err, strings.TrimSpace(string(out)))
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no socket %s after 10s: %v", d.Name, path, err)
		}
	}
}

// stop terminates the daemon (SIGTERM, then SIGKILL after 5s) and waits.
func (d *daemon) stop() {
	_ = d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.Done:
	case <-time.After(5 * time.Second):
		_ = d.Cmd.Process.Kill()
		<-d.Done
	}
}

func (s *Switch) stop(t testing.TB) {
	if s.ctl != nil {
		s.ctl.close()
	}
	if t.Failed() {
		for _, l := range []string{"vswitchd.log", "ovsdb.log"} {
			t.Logf("ovstest: last lines of %s:\n%s", l, testproc.Tail(filepath.Join(s.Dir, l), 30))
		}
	}
	for i := len(s.daemons) - 1; i >= 0; i-- {
		d := s.daemons[i]
		select {
		case <-d.Done: // a daemon that died during the test is a failure
			out, _ := os.ReadFile(d.Log)
			t.Errorf("ovstest: %s exited during the test (%v): %s", d.Name, d.Err, strings.TrimSpace(string(out)))
		default:
			d.stop()
		}
	}
	if s.NetNS != "" {
		if _, err := s.run("ip", "netns", "delete", s.NetNS); err != nil {
			t.Errorf("ovstest: %v", err)
		}
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		t.Errorf("ovstest: %v", err)
	}
}

// poll calls f until it succeeds or timeout passes, returning f's last error.
func poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func findBinaries() (map[string]string, error) {
	bins := map[string]string{}
	var missing []string
	for _, b := range binaries {
		p, err := lookBinary(b)
		if err != nil {
			missing = append(missing, b)
			continue
		}
		bins[b] = p
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing binaries: %s", strings.Join(missing, ", "))
	}
	return bins, nil
}

// lookBinary finds name in PATH or in the usual directories (non-root PATHs
// on Debian lack the sbin ones).
func lookBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// sweepStale removes run dirs and namespaces left by test processes that died
// without running their cleanups (their daemons died with them).
var sweepOnce sync.Once

func sweepStale() {
	owners, _ := filepath.Glob("/tmp/ovst*/owner")
	for _, o := range owners {
		f, err := os.Open(o)
		if err != nil {
			continue
		}
		var pid int
		var netns string
		sc := bufio.NewScanner(f)
		if sc.Scan() {
			_, err = fmt.Sscan(sc.Text(), &pid, &netns)
		}
		f.Close()
		if err != nil || pid <= 0 || !strings.HasPrefix(netns, "ovst-") {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // owner still alive (or not ours to judge)
		}
		if ip, err := lookBinary("ip"); err == nil {
			_ = exec.Command(ip, "netns", "delete", netns).Run()
		}
		_ = os.RemoveAll(filepath.Dir(o))
	}
}

// RestartVswitchd stops ovs-vswitchd (SIGTERM, SIGKILL after 5 s) and starts
// it again in the same network namespace with the same database, as an
// upgrade or a crash-and-restart would. The configuration in OVSDB (bridges,
// ports, ofport_request, flow table names) survives; OpenFlow flows do not:
// every bridge comes back with an empty table. It returns once every bridge
// answers ovs-ofctl again. Datapath port numbers may change, so the port map
// used by Trace is forgotten, and pooled control connections are closed.
func (s *Switch) RestartVswitchd() error {
	if err := s.StopVswitchd(false); err != nil {
		return err
	}
	return s.StartVswitchd()
}

// StopVswitchd stops ovs-vswitchd and waits until it has exited: with kill,
// by SIGKILL at once (a crash: no cleanup of its own), else as
// RestartVswitchd does. StartVswitchd starts it again.
func (s *Switch) StopVswitchd(kill bool) error {
	old, err := s.running("ovs-vswitchd")
	if err != nil {
		return err
	}
	if kill {
		_ = old.Cmd.Process.Kill()
		<-old.Done
	} else {
		old.stop()
	}
	s.daemons = slices.DeleteFunc(s.daemons, func(d *daemon) bool { return d == old })
	s.dpMu.Lock()
	if s.ctl != nil {
		s.ctl.close()
	}
	s.dpCache = nil
	s.dpMu.Unlock()
	return nil
}

// StartVswitchd starts ovs-vswitchd after StopVswitchd, in the same network
// namespace with the same database, and returns once every bridge answers
// ovs-ofctl again.
func (s *Switch) StartVswitchd() error {
	d := s.Dir
	vs, err := s.spawn("ip", []string{"netns", "exec", s.NetNS, s.bins["ovs-vswitchd"]},
		s.DBSock(), "--unixctl="+d+"/vswitchd.ctl",
		"--pidfile="+d+"/vswitchd.pid", "--log-file="+d+"/vswitchd.log", "-vconsole:off")
	if err != nil {
		return err
	}
	if err := vs.waitSocket(d + "/vswitchd.ctl"); err != nil {
		return err
	}
	out, err := s.Vsctl("list-br")
	if err != nil {
		return err
	}
	for _, br := range strings.Fields(out) {
		if err := poll(10*time.Second, func() error {
			_, err := s.Ofctl("-O", "OpenFlow15", "show", br)
			return err
		}); err != nil {
			return fmt.Errorf("ovstest: bridge %s after restarting ovs-vswitchd: %w", br, err)
		}
	}
	return nil
}

// RestartOVSDBServer kills ovsdb-server (SIGKILL: every client's connection
// drops at once) and starts it again on the same database file and socket;
// ovs-vswitchd and other clients must reconnect on their own. It returns
// once the socket accepts connections.
func (s *Switch) RestartOVSDBServer() error {
	old, err := s.running("ovsdb-server")
	if err != nil {
		return err
	}
	_ = old.Cmd.Process.Kill()
	<-old.Done
	i := slices.Index(s.daemons, old)
	d := s.Dir
	db, err := s.spawn("ovsdb-server", nil, d+"/conf.db",
		"--remote=punix:"+d+"/db.sock", "--unixctl="+d+"/ovsdb.ctl",
		"--pidfile="+d+"/ovsdb.pid", "--log-file="+d+"/ovsdb.log", "-vconsole:off")
	if err != nil {
		return err
	}
	// Back in old's place: the teardown stops daemons in reverse start order.
	s.daemons = slices.Delete(s.daemons, len(s.daemons)-1, len(s.daemons))
	s.daemons[i] = db
	return db.waitSocket(d + "/db.sock")
}

// running returns the started daemon name, which must still run.
func (s *Switch) running(name string) (*daemon, error) {
	for _, d := range s.daemons {
		if d.Name != name {
			continue
		}
		select {
		case <-d.Done:
			out, _ := os.ReadFile(d.Log)
			return nil, fmt.Errorf("ovstest: %s had exited before the restart (%v): %s", name, d.Err, strings.TrimSpace(string(out)))
		default:
			return d, nil
		}
	}
	return nil, fmt.Errorf("ovstest: no %s was started", name)
}

// ForgetPorts drops the cached datapath port map Trace uses to name output
// ports. Call it after adding ports with Vsctl (AddInternalPort and AddBridge
// do it themselves).
func (s *Switch) ForgetPorts() { s.forgetPorts() }
