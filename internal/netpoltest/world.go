package netpoltest

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
)

// UplinkPort is the OpenFlow port that links a node's bridge to the other
// nodes (and where external traffic arrives) in a World.
const UplinkPort = 9

// World is a fixture's nodes as bridges of one real ovs-vswitchd, each
// loaded with the flows compiled for its node, checked with ofproto/trace.
type World struct {
	F      *Fixture
	Switch *ovstest.Switch
	Nodes  map[string]*NodeBridge
	// PodServices makes Apply give every pod its Service first (see
	// SyncPodServices), so that matrices can be traced through cluster IPs.
	PodServices bool
}

// NodeBridge is one node's bridge.
type NodeBridge struct {
	Bridge string
	Index  int
	Config compiler.Config
	Result *compiler.Result
}

// NewWorld starts a switch with one bridge per fixture node and a port per
// pod (internal ports named n<node><ns><pod>, e.g. n1xa).
func NewWorld(t testing.TB, f *Fixture) *World {
	t.Helper()
	w := &World{F: f, Switch: ovstest.Start(t), Nodes: map[string]*NodeBridge{}}
	for i, node := range f.Nodes {
		nb := &NodeBridge{Bridge: fmt.Sprintf("br%d", i+1), Index: i + 1}
		if err := w.Switch.AddBridge(nb.Bridge); err != nil {
			t.Fatalf("bridge for %s: %v", node, err)
		}
		if err := w.Switch.AddInternalPort(nb.Bridge, fmt.Sprintf("up%d", i+1), UplinkPort); err != nil {
			t.Fatalf("uplink for %s: %v", node, err)
		}
		nb.Config = compiler.Config{
			Node:       node,
			UplinkPort: UplinkPort,
			NodeIPs:    []netip.Addr{NodeIP(i + 1)},
		}
		nb.Config.Bindings = compiler.DefaultBindings(f.Cluster, node, nil, UplinkPort)
		w.Nodes[node] = nb
		for _, key := range f.Order {
			pod := f.Pods[key]
			if pod.Node != node {
				continue
			}
			b := nb.Config.Bindings[key]
			if err := w.Switch.AddInternalPort(nb.Bridge, w.portName(pod.Namespace, pod.Name, nb), int(b.OFPort)); err != nil {
				t.Fatalf("port for %s: %v", key, err)
			}
		}
	}
	return w
}

func (w *World) portName(ns, pod string, nb *NodeBridge) string {
	return fmt.Sprintf("n%d%s%s", nb.Index, ns, pod)
}

// Apply compiles every node's flows from the fixture's current cluster and
// installs them (one atomic replace per bridge).
func (w *World) Apply(t testing.TB) {
	t.Helper()
	if w.PodServices {
		SyncPodServices(w.F)
	}
	for _, node := range w.F.Nodes {
		nb := w.Nodes[node]
		res, err := compiler.Compile(w.F.Cluster, nb.Config)
		if err != nil {
			t.Fatalf("compile for %s: %v", node, err)
		}
		nb.Result = res
		if err := w.Switch.InstallBundle(nb.Bridge, res.Text(true)); err != nil {
			t.Fatalf("install flows on %s: %v", nb.Bridge, err)
		}
	}
}

// FlowCount is the number of flows installed for node.
func (w *World) FlowCount(node string) int { return len(w.Nodes[node].Result.Flows) }

// transport renders the trace match of a probe for family fam.
func transport(p Probe, fam int) string {
	name := strings.ToLower(string(p.Protocol))
	proto := name
	if fam == 6 {
		proto += "6"
	}
	return fmt.Sprintf("%s,%s_src=40000,%s_dst=%d", proto, name, name, p.Port)
}

func ipFields(src, dst netip.Addr) string {
	if src.Is6() {
		return fmt.Sprintf("ipv6_src=%s,ipv6_dst=%s", src, dst)
	}
	return fmt.Sprintf("nw_src=%s,nw_dst=%s", src, dst)
}

// leg is one bridge's part of a connection's path.
type leg struct {
	nb      *NodeBridge
	inPort  string
	dlSrc   string
	want    string // the port name the packet must leave by
	ctState string
}

// Trace decides one new connection by tracing it through every bridge on
// its path: the source's bridge (egress side) and, when the destination is
// on another node, the destination's bridge entered from its uplink.
// allowed is true when every leg delivers to the expected port; detail
// explains a refusal or a misdelivery.
func (w *World) Trace(src, dst string, p Probe, fam int) (allowed bool, detail string, err error) {
	return w.trace(src, dst, p, fam, "trk,new", false)
}

// TraceService is Trace of a connection from pod src to the cluster IP of
// pod dst's Service (World.PodServices) on the probe's port: the source's
// bridge balances it to dst, then policy decides on dst's address.
func (w *World) TraceService(src, dst string, p Probe, fam int) (allowed bool, detail string, err error) {
	if _, ok := w.F.Pods[src]; !ok {
		return false, "", fmt.Errorf("a Service trace needs a pod source, not %s", src)
	}
	return w.trace(src, dst, p, fam, "trk,new", true)
}

// TraceReply traces a reply packet of an established connection: pass the
// replier as src and the connection's originator as dst (ct_state
// est,rpl). Replies must always pass.
func (w *World) TraceReply(src, dst string, p Probe, fam int) (bool, string, error) {
	return w.trace(src, dst, p, fam, "trk,est,rpl", false)
}

func (w *World) trace(src, dst string, p Probe, fam int, ctState string, viaService bool) (bool, string, error) {
	se, de, ok := w.F.Endpoints(src, dst, fam)
	if !ok {
		return false, "", fmt.Errorf("no family %d addresses for %s -> %s", fam, src, dst)
	}
	dpod := de.Pod
	dnb := w.Nodes[dpod.Node]
	dport := w.portName(dpod.Namespace, dpod.Name, dnb)
	dmac := dnb.Config.Bindings[dpod.Key()].MAC.String()
	var legs []leg
	switch {
	case src == SourceNode:
		legs = []leg{{nb: dnb, inPort: "LOCAL", dlSrc: "02:00:00:00:00:fe", want: dport}}
	case src == dst && !viaService:
		// A pod reaching its own address never leaves its network
		// namespace (the kernel loops it back): nothing to trace. Through
		// the bridge, a pod reaches itself only through its Service
		// (TraceService: the bridge's hairpin).
		if w.PodServices && slices.Contains(StandardProbes, p) {
			return w.trace(src, dst, p, fam, ctState, true)
		}
		return true, "", nil
	case src == SourceExternal:
		legs = []leg{{nb: dnb, inPort: fmt.Sprint(UplinkPort), dlSrc: "02:00:00:00:00:ee", want: dport}}
	default:
		spod := se.Pod
		snb := w.Nodes[spod.Node]
		sb := snb.Config.Bindings[spod.Key()]
		first := leg{nb: snb, inPort: compiler.PortName(sb.OFPort), dlSrc: sb.MAC.String(), want: dport}
		if snb != dnb {
			first.want = fmt.Sprintf("up%d", snb.Index)
			legs = []leg{first, {nb: dnb, inPort: fmt.Sprint(UplinkPort), dlSrc: sb.MAC.String(), want: dport}}
		} else {
			legs = []leg{first}
		}
	}
	for i, l := range legs {
		dstIP := de.IP
		if viaService && i == 0 {
			dstIP = ServiceIP(dpod.Namespace, dpod.Name, fam)
		}
		flow := fmt.Sprintf("in_port=%s,%s,dl_src=%s,dl_dst=%s,%s", l.inPort, transport(p, fam), l.dlSrc, dmac, ipFields(se.IP, dstIP))
		res, err := w.Switch.Trace(l.nb.Bridge, flow, ctState)
		if err != nil {
			return false, "", err
		}
		if res.Dropped {
			return false, fmt.Sprintf("dropped on %s (%s)", l.nb.Bridge, flow), nil
		}
		if len(res.OutputNames) != 1 || res.OutputNames[0] != l.want {
			return false, "", fmt.Errorf("%s -> %s %s on %s: output to %v, want only %s\n%s", src, dst, p, l.nb.Bridge, res.OutputNames, l.want, res.Raw)
		}
	}
	return true, "", nil
}

// Matrix traces every source × destination × probe (family fam), in
// parallel, and returns the observed reachability.
func (w *World) Matrix(t testing.TB, probes []Probe, fam int) *Reachability {
	t.Helper()
	return w.MatrixExcept(t, probes, fam, nil)
}

// MatrixExcept is Matrix leaving out the cells of the ignored pods.
func (w *World) MatrixExcept(t testing.TB, probes []Probe, fam int, ignore map[string]bool) *Reachability {
	t.Helper()
	return w.matrix(t, probes, fam, ignore, false)
}

// ServiceMatrixExcept is MatrixExcept through the pods' Services' cluster
// IPs (World.PodServices): rows are pods only, the node and external rows
// stay false (they reach Services through kube-proxy, not the bridge).
func (w *World) ServiceMatrixExcept(t testing.TB, probes []Probe, fam int, ignore map[string]bool) *Reachability {
	t.Helper()
	return w.matrix(t, probes, fam, ignore, true)
}

func (w *World) matrix(t testing.TB, probes []Probe, fam int, ignore map[string]bool, viaService bool) *Reachability {
	t.Helper()
	r := NewReachability(w.F, probes, false)
	type job struct {
		p        Probe
		src, dst string
	}
	jobs := make(chan job)
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				ok, _, err := w.trace(j.src, j.dst, j.p, fam, "trk,new", viaService)
				mu.Lock()
				if err != nil {
					errs = append(errs, err.Error())
				}
				r.Set(j.p, j.src, j.dst, ok)
				mu.Unlock()
			}
		}()
	}
	for _, p := range probes {
		for _, s := range w.F.Sources() {
			if viaService && w.F.Pods[s] == nil {
				continue
			}
			for _, d := range w.F.Order {
				if ignore[s] || ignore[d] {
					continue
				}
				if _, _, ok := w.F.Endpoints(s, d, fam); ok {
					jobs <- job{p, s, d}
				}
			}
		}
	}
	close(jobs)
	wg.Wait()
	if len(errs) > 0 {
		if len(errs) > 3 {
			errs = errs[:3]
		}
		t.Fatalf("tracing failed:\n%s", strings.Join(errs, "\n"))
	}
	return r
}
