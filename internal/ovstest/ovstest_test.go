package ovstest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// newSwitch starts a switch with bridge br0 and internal ports p1 (ofport 1)
// and p2 (ofport 2).
func newSwitch(t *testing.T) *Switch {
	t.Helper()
	s := Start(t)
	if err := s.AddBridge("br0"); err != nil {
		t.Fatal(err)
	}
	for i, p := range []string{"p1", "p2"} {
		if err := s.AddInternalPort("br0", p, i+1); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestStartBridgePorts(t *testing.T) {
	t0 := time.Now()
	s := Start(t)
	d := time.Since(t0)
	t.Logf("Start took %v", d)
	if d > 5*time.Second {
		t.Errorf("Start took %v, want < 5s", d)
	}
	if len(s.DBSock()) >= 108 || !strings.HasPrefix(s.DBSock(), "unix:/tmp/ovst") {
		t.Errorf("DBSock = %q", s.DBSock())
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err != nil || !strings.Contains(string(out), s.NetNS) {
		t.Fatalf("netns %q not listed: %v\n%s", s.NetNS, err, out)
	}

	if err := s.AddBridge("br0"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddInternalPort("br0", "p1", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.AddInternalPort("br0", "p2", 7); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Vsctl("get", "Bridge", "br0", "datapath_type", "fail_mode"); err != nil || out != "netdev\nsecure\n" {
		t.Errorf("bridge config = %q, %v", out, err)
	}
	out, err := s.Ofctl("-O", "OpenFlow15", "show", "br0")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{" 1(p1):", " 7(p2):", " LOCAL(br0):"} {
		if !strings.Contains(out, want) {
			t.Errorf("ovs-ofctl show lacks %q:\n%s", want, out)
		}
	}
	// Default OpenFlow version works too (protocols include OpenFlow10).
	if _, err := s.Ofctl("dump-flows", "br0"); err != nil {
		t.Error(err)
	}
	// The internal ports' devices exist in the switch's netns only.
	if err := exec.Command("ip", "netns", "exec", s.NetNS, "ip", "link", "show", "p2").Run(); err != nil {
		t.Errorf("p2 not in netns %s: %v", s.NetNS, err)
	}
	if err := exec.Command("ip", "link", "show", "p2").Run(); err == nil {
		t.Errorf("p2 visible in the host netns")
	}
	// "ip netns exec" execs vswitchd in place: the child we watch is vswitchd.
	for i, f := range []string{"ovsdb.pid", "vswitchd.pid"} {
		b, err := os.ReadFile(s.Dir + "/" + f)
		if want := fmt.Sprint(s.daemons[i].Cmd.Process.Pid); err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s = %q, %v; want %s", f, b, err, want)
		}
	}
	if _, err := s.Appctl("version"); err != nil {
		t.Error(err)
	}
	if err := s.PurgeDatapathCache(); err != nil {
		t.Error(err)
	}
	// Errors carry the tool's stderr.
	if err := s.AddInternalPort("nobridge", "p3", 3); err == nil || !strings.Contains(err.Error(), "no bridge named nobridge") {
		t.Errorf("AddInternalPort on missing bridge: %v", err)
	}
}

const pipeline = `# table 0: conntrack first
table=0,priority=100,ip,actions=ct(table=1,zone=5)
table=0,priority=10,arp,actions=NORMAL   # trailing comment

# table 1: established traffic passes, new traffic needs the policy
table=1,priority=200,ct_state=+est+trk,ip,actions=output:2
table=1,priority=200,ct_state=+inv+trk,ip,actions=drop
table=1,priority=100,ct_state=+new+trk,ip,actions=resubmit(,2)
# table 2: conjunction (src in {10.0.0.1, 10.0.0.3}) x (tcp/80, udp/53, sctp/80)
table=2,priority=50,ip,nw_src=10.0.0.1,actions=conjunction(7,1/2)
table=2,priority=50,ip,nw_src=10.0.0.3,actions=conjunction(7,1/2)
table=2,priority=50,tcp,tp_dst=80,actions=conjunction(7,2/2)
table=2,priority=50,udp,tp_dst=53,actions=conjunction(7,2/2)
table=2,priority=50,sctp,tp_dst=80,actions=conjunction(7,2/2)
table=2,priority=50,conj_id=7,ip,actions=ct(commit,zone=5),output:2
table=2,priority=50,ip,nw_dst=10.0.0.100,actions=output:2,LOCAL
table=2,priority=0,actions=drop
`

const tcpFlow = "in_port=1,tcp,dl_src=00:00:00:00:00:01,dl_dst=00:00:00:00:00:02,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=80"

func TestTrace(t *testing.T) {
	s := newSwitch(t)
	if err := s.InstallFlows("br0", pipeline); err != nil {
		t.Fatal(err)
	}
	flows, err := s.DumpFlows("br0", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) != 13 {
		t.Fatalf("got %d flows, want 13:\n%s", len(flows), strings.Join(flows, "\n"))
	}

	tests := []struct {
		name    string
		flow    string
		ctNext  []string
		wantOut []int // nil: dropped
		passes  int
	}{
		{"tcp allowed new", tcpFlow, []string{"trk,new"}, []int{2}, 2},
		{"default ct state is new", tcpFlow, nil, []int{2}, 2},
		{"established", strings.Replace(tcpFlow, "10.0.0.1", "10.0.0.9", 1), []string{"trk,est"}, []int{2}, 2},
		{"invalid", tcpFlow, []string{"trk,inv"}, nil, 2},
		{"src not in conjunction", strings.Replace(tcpFlow, "10.0.0.1", "10.0.0.9", 1), nil, nil, 2},
		{"port not in conjunction", strings.Replace(tcpFlow, "tp_dst=80", "tcp_dst=81", 1), nil, nil, 2},
		{"udp 53", "in_port=1,udp,nw_src=10.0.0.3,nw_dst=10.0.0.2,udp_dst=53", nil, []int{2}, 2},
		{"udp 80 denied", "in_port=p1,udp,nw_src=10.0.0.3,nw_dst=10.0.0.2,udp_dst=80", nil, nil, 2},
		{"sctp 80", "in_port=1,sctp,nw_src=10.0.0.1,nw_dst=10.0.0.2,sctp_dst=80", nil, []int{2}, 2},
		{"two outputs incl LOCAL", "in_port=1,icmp,nw_src=10.0.0.9,nw_dst=10.0.0.100", nil, []int{2, OFPPLocal}, 2},
		{"arp normal floods", "in_port=1,arp,arp_spa=10.0.0.1,arp_tpa=10.0.0.2,dl_dst=ff:ff:ff:ff:ff:ff", nil, []int{OFPPLocal, 2}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s.Trace("br0", tc.flow, tc.ctNext...)
			if err != nil {
				t.Fatal(err)
			}
			if r.Dropped != (tc.wantOut == nil) || !slices.Equal(sortedInts(r.OutputPorts), sortedInts(tc.wantOut)) {
				t.Errorf("outputs %v dropped=%v, want %v\n%s", r.OutputPorts, r.Dropped, tc.wantOut, r.Raw)
			}
			if len(r.Passes) != tc.passes || r.DatapathActions != r.Passes[len(r.Passes)-1] {
				t.Errorf("passes %q, final %q, want %d passes\n%s", r.Passes, r.DatapathActions, tc.passes, r.Raw)
			}
			if tc.passes == 2 && !strings.Contains(r.Passes[0], "recirc(") {
				t.Errorf("first pass %q lacks recirc", r.Passes[0])
			}
			if r.Dropped && r.DatapathActions != "drop" {
				t.Errorf("dropped but final actions %q", r.DatapathActions)
			}
		})
	}

	r, err := s.Trace("br0", tcpFlow, "trk,new")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.DatapathActions, "ct(commit,zone=5),") || !reflect.DeepEqual(r.OutputNames, []string{"p2"}) {
		t.Errorf("final actions %q names %v\n%s", r.DatapathActions, r.OutputNames, r.Raw)
	}
	if !strings.Contains(r.Raw, "resume conntrack with ct_state=new|trk") {
		t.Errorf("trace lacks the recirculation banner:\n%s", r.Raw)
	}
	if r, err := s.Trace("br0", tcpFlow); err != nil || !strings.Contains(r.Raw, "default ct_state=trk|new") {
		t.Errorf("default ct state: %v\n%v", err, r)
	}

	// tp_dst is only an alias of tcp_dst in trace syntax.
	if _, err := s.Trace("br0", "in_port=1,sctp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=80"); err == nil ||
		!strings.Contains(err.Error(), "prerequisites not met") {
		t.Errorf("sctp with tp_dst: %v", err)
	}
	if _, err := s.Trace("nobridge", tcpFlow); err == nil || !strings.Contains(err.Error(), "unknown bridge") {
		t.Errorf("unknown bridge: %v", err)
	}
}

// A packet output before it goes through conntrack counts, and --ct-next
// values apply to successive recirculations.
func TestTraceOutputBeforeCtAndTwoRecirculations(t *testing.T) {
	s := newSwitch(t)
	if err := s.InstallFlows("br0", `
table=0,ip,actions=output:2,ct(table=1,zone=1)
table=1,ct_state=+new+trk,ip,actions=ct(table=2,zone=2)
table=1,priority=0,actions=drop
table=2,ct_state=+est+trk,ip,actions=LOCAL
table=2,priority=0,actions=drop
`); err != nil {
		t.Fatal(err)
	}
	r, err := s.Trace("br0", tcpFlow, "trk,new", "trk,est")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.OutputPorts, []int{2, OFPPLocal}) || r.Dropped || len(r.Passes) != 3 || r.DatapathActions != "1" {
		t.Errorf("outputs %v dropped=%v passes %q\n%s", r.OutputPorts, r.Dropped, r.Passes, r.Raw)
	}
	r, err = s.Trace("br0", tcpFlow, "trk,new", "trk,new")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.OutputPorts, []int{2}) || r.Dropped || r.DatapathActions != "drop" {
		t.Errorf("outputs %v dropped=%v passes %q\n%s", r.OutputPorts, r.Dropped, r.Passes, r.Raw)
	}
}

func TestInstallAndAddFlows(t *testing.T) {
	s := newSwitch(t)
	if err := s.InstallFlows("br0", "table=0,priority=1,actions=drop\ntable=0,priority=5,ip,actions=output:1\n"); err != nil {
		t.Fatal(err)
	}
	if err := s.InstallFlows("br0", "# only comments and\n\ntable=0,priority=9,ip,nw_dst=10.0.0.2,actions=output:2\n"); err != nil {
		t.Fatal(err)
	}
	wantFlows(t, s, "priority=9,ip,nw_dst=10.0.0.2 actions=output:2")

	// A bad line rejects the whole file and the error names the problem.
	err := s.InstallFlows("br0", "table=0,priority=3,actions=drop\ntable=0,ip,nw_src=1.2.3.4/33,actions=drop\n")
	if err == nil || !strings.Contains(err.Error(), "1.2.3.4/33") {
		t.Errorf("bad flow file: %v", err)
	}
	wantFlows(t, s, "priority=9,ip,nw_dst=10.0.0.2 actions=output:2")

	if err := s.AddFlows("br0", `
add table=1,priority=5,ip,actions=drop
table=1,priority=6,ip,actions=drop
modify_strict table=0,priority=9,ip,nw_dst=10.0.0.2,actions=output:1
delete_strict table=1,priority=5,ip
`); err != nil {
		t.Fatal(err)
	}
	wantFlows(t, s, "priority=9,ip,nw_dst=10.0.0.2 actions=output:1", "table=1, priority=6,ip actions=drop")
	if err := s.AddFlows("br0", "delete table=1\nadd table=2,actions=bogus\n"); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("bad add-flows: %v", err)
	}
	wantFlows(t, s, "priority=9,ip,nw_dst=10.0.0.2 actions=output:1", "table=1, priority=6,ip actions=drop")

	flows, err := s.DumpFlows("br0", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) != 2 || !strings.Contains(flows[0], "n_packets=0") {
		t.Errorf("DumpFlows with stats: %q", flows)
	}
	if err := s.InstallFlows("br0", ""); err != nil {
		t.Fatal(err)
	}
	wantFlows(t, s)
}

func wantFlows(t *testing.T, s *Switch, want ...string) {
	t.Helper()
	got, err := s.DumpFlows("br0", true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("flows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Two switches at once (each with its own ovs-netdev in its own netns).
func TestParallelSwitches(t *testing.T) {
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			s := newSwitch(t)
			if err := s.InstallFlows("br0", fmt.Sprintf("in_port=1,actions=output:%d", 2-i%2)); err != nil {
				t.Fatal(err)
			}
			r, err := s.Trace("br0", "in_port=1,ip")
			if err != nil {
				t.Fatal(err)
			}
			if want := []int{2}; i%2 == 1 && !r.Dropped || i%2 == 0 && !slices.Equal(r.OutputPorts, want) {
				t.Errorf("switch %d: outputs %v dropped %v\n%s", i, r.OutputPorts, r.Dropped, r.Raw)
			}
		})
	}
}

func TestCleanup(t *testing.T) {
	var s *Switch
	var pids []int
	t.Run("inner", func(t *testing.T) {
		s = newSwitch(t)
		for _, d := range s.daemons {
			pids = append(pids, d.Cmd.Process.Pid)
		}
	})
	checkGone(t, s.Dir, s.NetNS, pids)
}

// A test process killed without running its cleanups leaves no daemons, and
// the next Start's sweep removes its namespace and directory.
func TestKilledTestProcess(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "OVSTEST_HELPER=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var dir, netns string
	var pids []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if l, ok := strings.CutPrefix(sc.Text(), "SWITCH "); ok {
			var p1, p2 int
			if _, err := fmt.Sscan(l, &dir, &netns, &p1, &p2); err != nil {
				t.Fatal(err)
			}
			pids = []int{p1, p2}
			break
		}
	}
	if dir == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("helper process printed no switch")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	// The daemons die with their parent.
	if err := poll(5*time.Second, func() error {
		for _, p := range pids {
			if !processGone(p) {
				return fmt.Errorf("daemon %d still running", p)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The dir and netns are left behind (unless another test binary's Start
	// has swept them already).
	sweepStale()
	checkGone(t, dir, netns, pids)
}

func TestHelperProcess(t *testing.T) {
	if os.Getenv("OVSTEST_HELPER") != "1" {
		return
	}
	s := newSwitch(t)
	fmt.Printf("SWITCH %s %s %d %d\n", s.Dir, s.NetNS, s.daemons[0].Cmd.Process.Pid, s.daemons[1].Cmd.Process.Pid)
	time.Sleep(time.Minute) // killed by the parent test
}

func checkGone(t *testing.T, dir, netns string, pids []int) {
	t.Helper()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir %s still exists: %v", dir, err)
	}
	if _, err := os.Stat("/run/netns/" + netns); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns %s still exists: %v", netns, err)
	}
	if len(pids) != 2 {
		t.Errorf("got %d daemon pids, want 2", len(pids))
	}
	for _, p := range pids {
		if !processGone(p) {
			t.Errorf("process %d still exists", p)
		}
	}
}

// processGone reports whether pid has exited: it no longer exists or is a
// zombie (orphans are reaped by init, which may take a while in a container).
func processGone(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// The state follows the parenthesized command name.
	i := strings.LastIndexByte(string(stat), ')')
	return i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z")
}

func TestDatapathOutputs(t *testing.T) {
	for in, want := range map[string][]int{
		"drop":                       nil,
		"3":                          {3},
		"3,1,ct(zone=3),recirc(0x9)": {3, 1},
		"ct(commit,zone=5,nat(src=10.0.0.1)),4,2":      {4, 2},
		"clone(ct(commit),5),set(ipv4(src=1.1.1.1)),6": {5, 6},
		"userspace(pid=0,slow_path(controller))":       nil,
	} {
		if got := datapathOutputs(in); !slices.Equal(got, want) {
			t.Errorf("datapathOutputs(%q) = %v, want %v", in, got, want)
		}
	}
}

func sortedInts(s []int) []int {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// fatalTB records Fatalf instead of failing the real test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestMissingBinaryIsFatal(t *testing.T) {
	saved := binaries
	binaries = append(slices.Clone(binaries), "ovs-no-such-tool")
	defer func() { binaries = saved }()
	tb := &fatalTB{TB: t}
	done := make(chan *Switch)
	go func() {
		defer close(done)
		done <- Start(tb)
	}()
	if s := <-done; s != nil {
		t.Fatal("Start returned despite a missing binary")
	}
	if !strings.Contains(tb.msg, "ovs-no-such-tool") || !strings.Contains(tb.msg, "openvswitch-switch") ||
		!strings.Contains(tb.msg, "iproute2") {
		t.Errorf("Fatalf message: %q", tb.msg)
	}
}
