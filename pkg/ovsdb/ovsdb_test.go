package ovsdb

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
)

const br = "br-int"

var tables = map[uint8]string{0: "classify", 10: "ingress_rules", 20: "egress_rules"}

func testLogger(t *testing.T) logrus.FieldLogger {
	l := logrus.New()
	l.Out = tWriter{t}
	l.Level = logrus.InfoLevel // libovsdb's own logs are at debug level
	return l
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, endpoint string) *Client {
	t.Helper()
	c, err := Connect(ctxT(t, 20*time.Second), endpoint, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// newBridge starts a switch, connects and ensures br-int.
func newBridge(t *testing.T) (*ovstest.Switch, *Client) {
	t.Helper()
	s := ovstest.Start(t)
	c := connect(t, s.DBSock())
	if err := c.EnsureBridge(ctxT(t, 20*time.Second), br, "netdev", tables); err != nil {
		t.Fatal(err)
	}
	return s, c
}

func vsctl(t *testing.T, s *ovstest.Switch, args ...string) string {
	t.Helper()
	out, err := s.Vsctl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// addVeth creates a veth pair in the switch's netns (where ovs-vswitchd
// opens system devices) and returns the MAC of the peer ("pod") end.
func addVeth(t *testing.T, s *ovstest.Switch, host string) net.HardwareAddr {
	t.Helper()
	peer := host + "p"
	run(t, "ip", "-n", s.NetNS, "link", "add", host, "type", "veth", "peer", "name", peer)
	run(t, "ip", "-n", s.NetNS, "link", "set", host, "up")
	run(t, "ip", "-n", s.NetNS, "link", "set", peer, "up")
	ifc := run(t, "ip", "-n", s.NetNS, "-o", "link", "show", peer)
	f := strings.Fields(ifc[strings.Index(ifc, "link/ether"):])
	mac, err := net.ParseMAC(f[1])
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// drain empties a subscription, then waitSignal waits for the next signal.
func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: subscription closed", what)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no signal within 10s", what)
	}
}

// eventually polls f for up to 10s.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEnsureBridge(t *testing.T) {
	s, c := newBridge(t)
	if got := vsctl(t, s, "get", "Bridge", br, "datapath_type", "fail_mode", "protocols"); got !=
		"netdev\nsecure\n[OpenFlow10, OpenFlow11, OpenFlow12, OpenFlow13, OpenFlow14, OpenFlow15]" {
		t.Errorf("bridge settings:\n%s", got)
	}
	if got := vsctl(t, s, "list-ports", br); got != "" {
		t.Errorf("ports: %q", got)
	}
	if got := vsctl(t, s, "get", "Interface", br, "type"); got != "internal" {
		t.Errorf("local interface type %q", got)
	}
	// EnsureBridge waited for ovs-vswitchd: OpenFlow works at once.
	if _, err := s.Ofctl("-O", "OpenFlow15", "show", br); err != nil {
		t.Fatal(err)
	}
	if err := s.AddFlows(br, "table=10,priority=5,ip,actions=drop\ntable=classify,priority=1,actions=resubmit(,10)\n"); err != nil {
		t.Fatal(err)
	}
	out, err := s.Ofctl("-O", "OpenFlow15", "dump-flows", "--names", "--no-stats", br)
	if err != nil {
		t.Fatal(err)
	}
	// OVS quotes names that are not plain words.
	for _, want := range []string{`table="ingress_rules", priority=5,ip actions=drop`, `table=classify, priority=1 actions=resubmit(,"ingress_rules")`} {
		if !strings.Contains(out, want) {
			t.Errorf("dump-flows --names lacks %q:\n%s", want, out)
		}
	}

	// Idempotent: nothing to do, no transaction (next_cfg stays).
	before := vsctl(t, s, "get", "Open_vSwitch", ".", "next_cfg")
	if err := c.EnsureBridge(ctxT(t, 10*time.Second), br, "netdev", tables); err != nil {
		t.Fatal(err)
	}
	if after := vsctl(t, s, "get", "Open_vSwitch", ".", "next_cfg"); after != before {
		t.Errorf("idempotent EnsureBridge wrote: next_cfg %s -> %s", before, after)
	}

	// Drift: someone changes the settings, drops the table names and
	// removes the bridge's internal port.
	sub := c.Subscribe()
	drain(sub)
	uuid := vsctl(t, s, "get", "Bridge", br, "_uuid")
	vsctl(t, s, "set", "Bridge", br, "fail_mode=standalone", "protocols=OpenFlow13",
		"--", "clear", "Bridge", br, "flow_tables",
		"--", "remove", "Bridge", br, "ports", vsctl(t, s, "get", "Port", br, "_uuid"))
	if out, _ := s.Vsctl("--if-exists", "get", "Interface", br, "name"); strings.TrimSpace(out) != "" {
		t.Fatalf("internal interface still there: %q", out)
	}
	waitSignal(t, sub, "bridge drift")
	if err := c.EnsureBridge(ctxT(t, 10*time.Second), br, "netdev", tables); err != nil {
		t.Fatal(err)
	}
	if got := vsctl(t, s, "get", "Bridge", br, "fail_mode", "protocols"); got !=
		"secure\n[OpenFlow10, OpenFlow11, OpenFlow12, OpenFlow13, OpenFlow14, OpenFlow15]" {
		t.Errorf("bridge settings after repair:\n%s", got)
	}
	if got := vsctl(t, s, "get", "Interface", br, "type"); got != "internal" {
		t.Errorf("local interface type after repair: %q", got)
	}
	if got := vsctl(t, s, "get", "Bridge", br, "_uuid"); got != uuid {
		t.Errorf("bridge replaced: %s -> %s", uuid, got)
	}
	// Renamed and dropped tables. (OVS flushed the flow table when
	// fail_mode changed: add the flows again.)
	if err := s.AddFlows(br, "table=10,priority=5,ip,actions=drop\ntable=0,priority=1,actions=resubmit(,10)\n"); err != nil {
		t.Fatal(err)
	}
	renamed := map[uint8]string{10: "ingress", 30: "output"}
	if err := c.EnsureBridge(ctxT(t, 10*time.Second), br, "netdev", renamed); err != nil {
		t.Fatal(err)
	}
	out, err = s.Ofctl("-O", "OpenFlow15", "dump-flows", "--names", "--no-stats", br)
	if err != nil {
		t.Fatal(err)
	}
	// (Renaming ingress_rules to its prefix "ingress" needs EnsureBridge's
	// two-step workaround; table 0 is unnamed now and not printed at all.)
	if !strings.Contains(out, "table=ingress, priority=5") || !strings.Contains(out, " priority=1 actions=resubmit(,ingress)\n") ||
		strings.Contains(out, "classify") {
		t.Errorf("renamed table not shown:\n%s", out)
	}
	names := map[string]string{}
	for _, n := range []string{"0", "10", "30"} {
		v, _ := s.Vsctl("get", "Bridge", br, "flow_tables:"+n)
		if v = strings.TrimSpace(v); v != "" {
			names[n] = vsctl(t, s, "get", "Flow_Table", v, "name")
		}
	}
	if want := map[string]string{"10": `ingress`, "30": `output`}; !maps.Equal(names, want) {
		t.Errorf("flow_tables names %v, want %v", names, want)
	}

	if err := c.EnsureBridge(ctxT(t, 5*time.Second), br, "netdev", map[uint8]string{255: "x"}); err == nil {
		t.Error("table 255 accepted")
	}
}

func TestPodPorts(t *testing.T) {
	s, c := newBridge(t)
	ctx := ctxT(t, 60*time.Second)
	sub := c.Subscribe()
	drain(sub)

	macA := addVeth(t, s, "npa")
	ext := map[string]string{
		KeyPodNamespace: "x", KeyPodName: "a", KeyPodUID: "uid-a",
		KeyContainerID: "c0ffee", KeyAttachedMAC: macA.String(),
	}
	ofA, err := c.AddPodPort(ctx, br, "npa", ext)
	if err != nil {
		t.Fatal(err)
	}
	if ofA <= 0 {
		t.Fatalf("ofport %d", ofA)
	}
	waitSignal(t, sub, "port added")
	want := []PodPort{{Interface: "npa", Namespace: "x", Name: "a", UID: "uid-a", ContainerID: "c0ffee", OFPort: ofA, MAC: macA}}
	if got := c.PodPorts(br); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("PodPorts = %+v, want %+v", got, want)
	}
	if got := vsctl(t, s, "get", "Interface", "npa", "ofport", "type", "external_ids:\"ovs-netpol.io/pod-name\"", "external_ids:attached-mac"); got !=
		fmt.Sprintf("%d\n\"\"\na\n%q", ofA, macA.String()) {
		t.Errorf("interface row:\n%s", got)
	}
	out, err := s.Ofctl("-O", "OpenFlow15", "show", br)
	if err != nil || !strings.Contains(out, fmt.Sprintf(" %d(npa):", ofA)) {
		t.Errorf("ofctl show lacks npa as %d: %v\n%s", ofA, err, out)
	}

	// Idempotent add: same ofport; our keys replaced as a whole, others kept.
	vsctl(t, s, "set", "Interface", "npa", "external_ids:other=kept")
	eventually(t, "cache sees other=kept", func() error {
		if p, _ := c.Port(br, "npa"); p.Interface == "" {
			return fmt.Errorf("no port")
		}
		if i := interfaceByName(c.current().cache, "npa"); i.ExternalIDs["other"] != "kept" {
			return fmt.Errorf("external_ids %v", i.ExternalIDs)
		}
		return nil
	})
	ext2 := map[string]string{KeyPodNamespace: "x", KeyPodName: "a", KeyPodUID: "uid-a2", KeyAttachedMAC: macA.String()}
	if of, err := c.AddPodPort(ctx, br, "npa", ext2); err != nil || of != ofA {
		t.Fatalf("re-add: ofport %d (want %d), %v", of, ofA, err)
	}
	if got := vsctl(t, s, "get", "Interface", "npa", "external_ids"); got !=
		fmt.Sprintf(`{attached-mac=%q, other=kept, "ovs-netpol.io/pod-name"=a, "ovs-netpol.io/pod-namespace"=x, "ovs-netpol.io/pod-uid"=uid-a2}`, macA.String()) {
		t.Errorf("external_ids after re-add: %s", got)
	}
	if got := c.PodPorts(br); len(got) != 1 || got[0].UID != "uid-a2" || got[0].ContainerID != "" {
		t.Errorf("PodPorts after re-add: %+v", got)
	}

	// A second pod, and a port without pod keys (listed by Port, not PodPorts).
	addVeth(t, s, "npb")
	ofB, err := c.AddPodPort(ctx, br, "npb", map[string]string{KeyPodNamespace: "y", KeyPodName: "b"})
	if err != nil || ofB <= 0 || ofB == ofA {
		t.Fatalf("npb: ofport %d, %v", ofB, err)
	}
	addVeth(t, s, "npc")
	ofC, err := c.AddPodPort(ctx, br, "npc", nil)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := c.Port(br, "npc"); !ok || p.OFPort != ofC || p.Namespace != "" {
		t.Errorf("Port(npc) = %+v, %v", p, ok)
	}
	if got := c.PodPorts(br); len(got) != 2 || got[0].Interface != "npa" || got[1].Interface != "npb" || got[1].MAC != nil {
		t.Errorf("PodPorts = %+v", got)
	}
	if _, ok := c.Port(br, "nosuch"); ok {
		t.Error("Port(nosuch) found")
	}

	// A port added by someone else shows up after a signal.
	addVeth(t, s, "npd")
	drain(sub)
	vsctl(t, s, "add-port", br, "npd", "--", "set", "Interface", "npd",
		`external_ids:"ovs-netpol.io/pod-namespace"=z`, `external_ids:"ovs-netpol.io/pod-name"=d`)
	eventually(t, "npd in PodPorts", func() error {
		for _, p := range c.PodPorts(br) {
			if p.Interface == "npd" && p.Namespace == "z" && p.OFPort > 0 {
				return nil
			}
		}
		return fmt.Errorf("PodPorts = %+v", c.PodPorts(br))
	})
	waitSignal(t, sub, "external add")

	// Errors: missing device, missing bridge, interface on another bridge.
	_, err = c.AddPodPort(ctx, br, "nodev", map[string]string{KeyPodNamespace: "x", KeyPodName: "n"})
	if err == nil || !strings.Contains(err.Error(), "nodev") || !strings.Contains(err.Error(), "No such device") {
		t.Errorf("AddPodPort without device: %v", err)
	}
	if got := c.PodPorts(br); len(got) != 3 {
		t.Errorf("PodPorts lists a port without ofport: %+v", got)
	}
	if p, ok := c.Port(br, "nodev"); !ok || p.OFPort != -1 {
		t.Errorf("Port(nodev) = %+v, %v", p, ok)
	}
	if _, err := c.AddPodPort(ctx, "br-none", "npa", nil); err == nil || !strings.Contains(err.Error(), `"br-none" does not exist`) {
		t.Errorf("AddPodPort to a missing bridge: %v", err)
	}
	if err := c.EnsureBridge(ctx, "br-other", "netdev", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddPodPort(ctx, "br-other", "npa", nil); err == nil || !strings.Contains(err.Error(), `exists on bridge "br-int"`) {
		t.Errorf("AddPodPort of a port of another bridge: %v", err)
	}
	if err := c.DelPodPort(ctx, "br-other", "npa"); err != nil {
		t.Errorf("DelPodPort from the wrong bridge: %v", err)
	}

	// Delete: gone from PodPorts and OVSDB; twice is fine.
	drain(sub)
	for _, p := range []string{"npa", "npa", "nodev", "nosuch"} {
		if err := c.DelPodPort(ctx, br, p); err != nil {
			t.Fatalf("DelPodPort(%s): %v", p, err)
		}
	}
	waitSignal(t, sub, "port deleted")
	if got := c.PodPorts(br); len(got) != 2 || got[0].Interface != "npb" || got[1].Interface != "npd" {
		t.Errorf("PodPorts after delete: %+v", got)
	}
	if got := vsctl(t, s, "list-ports", br); got != "npb\nnpc\nnpd" {
		t.Errorf("list-ports: %q", got)
	}
	if out, _ := s.Vsctl("--if-exists", "get", "Interface", "npa", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("interface npa still exists: %q", out)
	}
}

func TestConnectFails(t *testing.T) {
	t0 := time.Now()
	_, err := Connect(ctxT(t, 500*time.Millisecond), "unix:/nonexistent/db.sock", nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/db.sock") || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("Connect to nothing: %v", err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("Connect took %v", d)
	}
}

func TestSubscribeClosedByClose(t *testing.T) {
	s := ovstest.Start(t)
	c, err := Connect(ctxT(t, 10*time.Second), s.DBSock(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureBridge(ctxT(t, 10*time.Second), br, "netdev", nil); err != nil {
		t.Fatal(err)
	}
	sub := c.Subscribe()
	c.Close()
	for range sub { // ends once closed
	}
	if _, ok := <-c.Subscribe(); ok {
		t.Error("Subscribe after Close returned an open channel")
	}
	if _, err := c.AddPodPort(ctxT(t, 2*time.Second), br, "x", nil); err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("write after Close: %v", err)
	}
	if len(c.PodPorts(br)) != 0 || c.current().cache == nil || bridgeByName(c.current().cache, br) == nil {
		t.Error("reads after Close lost the last cache")
	}
}
