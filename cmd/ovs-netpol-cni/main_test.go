package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/cni"
)

var pluginDir string // holds the built plugin

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ovs-netpol-cni")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginDir = dir
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "ovs-netpol-cni"), ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the plugin: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const bridge = "br-int"

// world is a private switch with br-int and the IPAM data of one network.
type world struct {
	t       *testing.T
	sw      *ovstest.Switch
	dataDir string
}

func newWorld(t *testing.T) *world {
	s := ovstest.Start(t)
	if err := s.AddBridge(bridge); err != nil {
		t.Fatal(err)
	}
	return &world{t: t, sw: s, dataDir: t.TempDir()}
}

// conf returns a network configuration; mod may change it.
func (w *world) conf(mod func(map[string]any)) []byte {
	c := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "podnet",
		"type":       "ovs-netpol-cni",
		"bridge":     bridge,
		"ovsdb":      w.sw.DBSock(),
		"hostNetNS":  "/var/run/netns/" + w.sw.NetNS,
		"mtu":        1400,
		"ipam": map[string]any{
			"type":    "host-local",
			"subnet":  "10.244.1.0/24",
			"routes":  []any{map[string]any{"dst": "0.0.0.0/0"}},
			"dataDir": w.dataDir,
		},
	}
	if mod != nil {
		mod(c)
	}
	b, err := json.Marshal(c)
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

type pod struct {
	ns, name, uid, cid string
	netns              string // path
	args               string // CNI_ARGS
}

// newPod creates a network namespace for a pod and removes it in cleanup.
func (w *world) newPod(namespace, name string) *pod {
	t := w.t
	nsName := fmt.Sprintf("cnit-%06x", rand.IntN(1<<24))
	run(t, "ip", "netns", "add", nsName)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", nsName).Run() })
	p := &pod{
		ns: namespace, name: name,
		uid:   fmt.Sprintf("uid-%s-%s", namespace, name),
		cid:   fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64()),
		netns: "/var/run/netns/" + nsName,
	}
	p.args = fmt.Sprintf("K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_UID=%s", namespace, name, p.uid)
	return p
}

func (p *pod) nsName() string { return filepath.Base(p.netns) }

// invoke runs the plugin as a runtime does and returns stdout and the error
// of a non-zero exit.
func (w *world) invoke(command string, p *pod, conf []byte) ([]byte, error) {
	cmd := exec.Command(filepath.Join(pluginDir, "ovs-netpol-cni"))
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+command,
		"CNI_CONTAINERID="+p.cid,
		"CNI_NETNS="+p.netns,
		"CNI_IFNAME=eth0",
		"CNI_PATH=/usr/lib/cni:"+pluginDir,
		"CNI_ARGS="+p.args,
	)
	cmd.Stdin = bytes.NewReader(conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w\nstdout: %s\nstderr: %s", command, p.name, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), err
}

func (w *world) add(p *pod) *types100.Result {
	w.t.Helper()
	out, err := w.invoke("ADD", p, w.conf(nil))
	if err != nil {
		w.t.Fatal(err)
	}
	r := &types100.Result{}
	if err := json.Unmarshal(out, r); err != nil {
		w.t.Fatalf("ADD result %s: %v", out, err)
	}
	return r
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (w *world) vsctl(args ...string) string {
	w.t.Helper()
	out, err := w.sw.Vsctl(args...)
	if err != nil {
		w.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// checkAdded verifies an ADD result, the pod's interface, the host end and
// the OVS port, and returns the pod's IP.
func (w *world) checkAdded(p *pod, r *types100.Result) net.IP {
	t := w.t
	t.Helper()
	host := cni.HostVethName(p.cid, "eth0")
	if r.CNIVersion != "1.0.0" || len(r.Interfaces) != 2 || len(r.IPs) != 1 || len(r.Routes) != 1 {
		t.Fatalf("result: %+v", r)
	}
	hi, ci := r.Interfaces[0], r.Interfaces[1]
	if hi.Name != host || hi.Sandbox != "" || hi.Mac == "" || ci.Name != "eth0" || ci.Sandbox != p.netns || ci.Mac == "" || ci.Mtu != 1400 {
		t.Errorf("result interfaces: %v %v", hi, ci)
	}
	ipc := r.IPs[0]
	_, subnet, _ := net.ParseCIDR("10.244.1.0/24")
	if ipc.Interface == nil || *ipc.Interface != 1 || !subnet.Contains(ipc.Address.IP) || ipc.Gateway.String() != "10.244.1.1" {
		t.Errorf("result IP: %v", ipc)
	}
	if r.Routes[0].Dst.String() != "0.0.0.0/0" {
		t.Errorf("result route: %v", r.Routes[0])
	}

	link := run(t, "ip", "-n", p.nsName(), "-o", "addr", "show", "eth0")
	if !strings.Contains(link, ipc.Address.String()) {
		t.Errorf("eth0 in the pod lacks %s:\n%s", ipc.Address.String(), link)
	}
	if l := run(t, "ip", "-n", p.nsName(), "-o", "link", "show", "eth0"); !strings.Contains(l, "mtu 1400") || !strings.Contains(l, ci.Mac) || !strings.Contains(l, "state UP") {
		t.Errorf("eth0 in the pod:\n%s", l)
	}
	if rt := run(t, "ip", "-n", p.nsName(), "route", "show", "default"); !strings.Contains(rt, "via 10.244.1.1 dev eth0") {
		t.Errorf("default route: %q", rt)
	}
	if k := run(t, "ip", "netns", "exec", p.nsName(), "ethtool", "-k", "eth0"); !strings.Contains(k, "tx-checksumming: off") {
		t.Errorf("TX checksum offload not off:\n%s", k)
	}
	// The host end lives in the switch's namespace.
	if l := run(t, "ip", "-n", w.sw.NetNS, "-o", "link", "show", host); !strings.Contains(l, hi.Mac) {
		t.Errorf("host end %s:\n%s", host, l)
	}
	// ... where the host's stack must not answer the pod (ARP) or speak IPv6 on it.
	for key, want := range map[string]string{
		"net.ipv4.conf." + host + ".arp_ignore":   "8",
		"net.ipv6.conf." + host + ".disable_ipv6": "1",
	} {
		if got := strings.TrimSpace(run(t, "ip", "netns", "exec", w.sw.NetNS, "sysctl", "-n", key)); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}

	got := w.vsctl("get", "Interface", host, "ofport", "type",
		`external_ids:"ovs-netpol.io/pod-namespace"`, `external_ids:"ovs-netpol.io/pod-name"`,
		`external_ids:"ovs-netpol.io/pod-uid"`, `external_ids:"ovs-netpol.io/container-id"`,
		"external_ids:attached-mac")
	f := strings.Split(got, "\n")
	for i := range f { // ovs-vsctl quotes values that are not plain words
		if u, err := strconv.Unquote(f[i]); err == nil {
			f[i] = u
		}
	}
	want := []string{"", p.ns, p.name, p.uid, p.cid, ci.Mac}
	if len(f) != 7 || f[0] == "[]" || f[0] == "-1" || strings.Join(f[1:], " ") != strings.Join(want, " ") {
		t.Errorf("OVS interface %s: %q, want ofport>0 and %q", host, f, want)
	}
	return ipc.Address.IP
}

func TestAddCheckDel(t *testing.T) {
	w := newWorld(t)
	a, b := w.newPod("x", "a"), w.newPod("y", "b")
	b.args = "IgnoreUnknown=1;" + b.args + ";K8S_POD_INFRA_CONTAINER_ID=" + b.cid // as kubelet passes them
	ra, rb := w.add(a), w.add(b)
	ipA, ipB := w.checkAdded(a, ra), w.checkAdded(b, rb)
	if ipA.Equal(ipB) {
		t.Fatalf("both pods got %s", ipA)
	}

	// The datapath works: a plain L2 switch first, then a conntrack
	// pipeline that drops invalid packets (which TCP from a veth with TX
	// checksum offload on would be in the userspace datapath).
	if err := w.sw.InstallFlows(bridge, "priority=0,actions=NORMAL"); err != nil {
		t.Fatal(err)
	}
	tcpEcho(t, a, b, ipB, "hello")
	if err := w.sw.InstallFlows(bridge, `
table=0,priority=10,ip,actions=ct(table=1)
table=0,priority=0,actions=NORMAL
table=1,priority=10,ct_state=+trk+inv,actions=drop
table=1,priority=5,ct_state=+trk+new,ip,actions=ct(commit),NORMAL
table=1,priority=0,actions=NORMAL
`); err != nil {
		t.Fatal(err)
	}
	tcpEcho(t, b, a, ipA, "through conntrack")

	// CHECK with prevResult.
	prev, _ := json.Marshal(ra)
	checkConf := w.conf(func(c map[string]any) { c["prevResult"] = json.RawMessage(prev) })
	if _, err := w.invoke("CHECK", a, checkConf); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	// CHECK notices a missing address and a missing port.
	run(t, "ip", "-n", a.nsName(), "addr", "del", ra.IPs[0].Address.String(), "dev", "eth0")
	if out, err := w.invoke("CHECK", a, checkConf); err == nil || !strings.Contains(string(out), "does not match prevResult") {
		t.Errorf("CHECK without the address: %v\n%s", err, out)
	}
	run(t, "ip", "-n", a.nsName(), "addr", "add", ra.IPs[0].Address.String(), "dev", "eth0")
	run(t, "ip", "-n", a.nsName(), "route", "add", "default", "via", "10.244.1.1")
	if _, err := w.invoke("CHECK", a, checkConf); err != nil {
		t.Errorf("CHECK after restoring the address: %v", err)
	}
	hostA := cni.HostVethName(a.cid, "eth0")
	w.vsctl("del-port", bridge, hostA)
	if out, err := w.invoke("CHECK", a, checkConf); err == nil || !strings.Contains(string(out), "has no port "+hostA) {
		t.Errorf("CHECK without the OVS port: %v\n%s", err, out)
	}

	// DEL twice; everything is released.
	for i := range 2 {
		if out, err := w.invoke("DEL", a, w.conf(nil)); err != nil || len(out) != 0 {
			t.Fatalf("DEL #%d: %v %s", i+1, err, out)
		}
	}
	w.checkGone(a, ipA)

	// DEL after the pod's namespace is gone.
	run(t, "ip", "netns", "delete", b.nsName())
	if _, err := w.invoke("DEL", b, w.conf(nil)); err != nil {
		t.Fatal(err)
	}
	w.checkGone(b, ipB)
	if got := w.vsctl("list-ports", bridge); got != "" {
		t.Errorf("ports left: %q", got)
	}
}

// checkGone verifies that the pod's port, veth and address are released.
func (w *world) checkGone(p *pod, ip net.IP) {
	t := w.t
	t.Helper()
	host := cni.HostVethName(p.cid, "eth0")
	if out, _ := w.sw.Vsctl("--if-exists", "get", "Interface", host, "name"); strings.TrimSpace(out) != "" {
		t.Errorf("OVS interface %s still exists", host)
	}
	if err := exec.Command("ip", "-n", w.sw.NetNS, "link", "show", host).Run(); err == nil {
		t.Errorf("host end %s still exists", host)
	}
	if _, err := os.Stat(p.netns); err == nil {
		if err := exec.Command("ip", "-n", p.nsName(), "link", "show", "eth0").Run(); err == nil {
			t.Errorf("eth0 still exists in %s", p.netns)
		}
	}
	if _, err := os.Stat(filepath.Join(w.dataDir, "podnet", ip.String())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("IPAM still holds %s: %v", ip, err)
	}
}

// tcpEcho connects from pod "from" to a listener in pod "to" and checks that
// a message comes back.
func tcpEcho(t *testing.T, from, to *pod, toIP net.IP, msg string) {
	t.Helper()
	var ln net.Listener
	if err := ns.WithNetNSPath(to.netns, func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(toIP.String(), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.Copy(c, c)
	}()
	err := ns.WithNetNSPath(from.netns, func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return fmt.Errorf("echo %q, want %q", buf, msg)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("TCP %s -> %s (%s): %v", from.name, to.name, ln.Addr(), err)
	}
}

func cniError(t *testing.T, out []byte) *types.Error {
	t.Helper()
	e := &types.Error{}
	if err := json.Unmarshal(out, e); err != nil || e.Code == 0 || e.Msg == "" {
		t.Fatalf("not a CNI error: %q (%v)", out, err)
	}
	return e
}

func TestAddErrors(t *testing.T) {
	w := newWorld(t)
	p := w.newPod("x", "bad")
	host := cni.HostVethName(p.cid, "eth0")

	// IPAM fails after the veth exists: the veth is removed again.
	out, err := w.invoke("ADD", p, w.conf(func(c map[string]any) {
		c["ipam"] = map[string]any{"type": "host-local", "subnet": "10.244.1.0/33", "dataDir": w.dataDir}
	}))
	if err == nil {
		t.Fatalf("ADD with a bad subnet succeeded: %s", out)
	}
	if e := cniError(t, out); !strings.Contains(e.Msg, `IPAM plugin "host-local" ADD`) || !strings.Contains(e.Error(), "10.244.1.0/33") {
		t.Errorf("error: %+v", e)
	}
	if exec.Command("ip", "-n", w.sw.NetNS, "link", "show", host).Run() == nil ||
		exec.Command("ip", "-n", p.nsName(), "link", "show", "eth0").Run() == nil {
		t.Error("veth left behind after a failed ADD")
	}

	// The bridge does not exist: IPAM and veth are released.
	out, err = w.invoke("ADD", p, w.conf(func(c map[string]any) { c["bridge"] = "br-none" }))
	if err == nil {
		t.Fatalf("ADD to a missing bridge succeeded: %s", out)
	}
	if e := cniError(t, out); !strings.Contains(e.Error(), `bridge "br-none" does not exist`) {
		t.Errorf("error: %+v", e)
	}
	if ents, _ := os.ReadDir(filepath.Join(w.dataDir, "podnet")); len(ents) > 2 { // last_reserved_ip.0 and lock
		t.Errorf("IPAM left reservations: %v", ents)
	}
	if exec.Command("ip", "-n", w.sw.NetNS, "link", "show", host).Run() == nil {
		t.Error("veth left behind after a failed ADD")
	}

	// No IPAM configured, and an unknown netns.
	out, err = w.invoke("ADD", p, w.conf(func(c map[string]any) { delete(c, "ipam") }))
	if e := cniError(t, out); err == nil || e.Code != types.ErrInvalidNetworkConfig {
		t.Errorf("ADD without ipam: %v %+v", err, e)
	}
	gone := *p
	gone.netns = "/var/run/netns/does-not-exist"
	out, err = w.invoke("ADD", &gone, w.conf(nil))
	if e := cniError(t, out); err == nil || e.Code != types.ErrInvalidNetNS {
		t.Errorf("ADD into a missing netns: %v %+v", err, e)
	}
	if got := w.vsctl("list-ports", bridge); got != "" {
		t.Errorf("ports left: %q", got)
	}

	// disableTxOffload=false leaves TX checksum offload on.
	q := w.newPod("x", "offload")
	out, err = w.invoke("ADD", q, w.conf(func(c map[string]any) { c["disableTxOffload"] = false }))
	if err != nil {
		t.Fatal(err)
	}
	if k := run(t, "ip", "netns", "exec", q.nsName(), "ethtool", "-k", "eth0"); !strings.Contains(k, "tx-checksumming: on") {
		t.Errorf("TX checksum offload not on with disableTxOffload=false:\n%s", k)
	}
	if _, err := w.invoke("DEL", q, w.conf(nil)); err != nil {
		t.Error(err)
	}

	// VERSION.
	out, err = w.invoke("VERSION", p, []byte(`{"cniVersion":"1.0.0"}`))
	if err != nil || !strings.Contains(string(out), `"1.0.0"`) || !strings.Contains(string(out), `"1.1.0"`) {
		t.Errorf("VERSION: %v %s", err, out)
	}
}
