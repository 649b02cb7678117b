package bench

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ovs-netpol/ovs-netpol/internal/k8stest"
	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/controller"
	"github.com/ovs-netpol/ovs-netpol/pkg/flowsync"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
	"github.com/ovs-netpol/ovs-netpol/pkg/ovsdb"
	"github.com/ovs-netpol/ovs-netpol/pkg/synth"
)

// The ports of the two modes: the Geneve port is requested where the agent
// requests it (cmd/ovs-netpol-agent's tunnelOFPortRequest); the uplink is
// an internal port, out of the pods' range.
const (
	overlayTunnelOFPort = 4096
	overlayUplinkOFPort = 4095
	overlayTunnelName   = "ovs-netpol-gnv0"
)

// BenchmarkAgentS1Overlay is BenchmarkAgentS1's path (a real kube-apiserver,
// the controller in process with the flowsync installer on a real userspace
// ovs-vswitchd) on S1 plus a Node object per node: node n has pod CIDR
// 10.n.0.0/16 (synth numbers node n's pods in it) and InternalIP
// 172.18.0.(n+1) (node-000's is NodeIP). The cluster is loaded once; then
// two runs on a fresh br-int each, one controller each:
//
//   - uplink: today's flat-L2 mode (Config.UplinkPort, an internal port; no
//     overlay): remote pod adds.
//   - overlay: a flow-based Geneve port created through OVSDB as the agent
//     creates it (type=geneve, options:remote_ip=flow, its ofport as
//     Config.Overlay.TunnelPort; the bridge's hwaddr set to the gateway
//     MAC): remote pod adds, and per round a new Node created (pod CIDR
//     and InternalIP in one request) then deleted.
//
// Each run reports the flows its controller installed (flows: compiled;
// bridge-flows: counted on br-int; mode-flows: of origins the node has only
// in that mode, i.e. remote pods' in uplink mode, remote nodes' in overlay
// mode), and per event kind what BenchmarkAgentS1 reports (latency from the
// informer event to the bundle committed, p50/p99, compute, flow mods,
// the floor of raw ovs-ofctl bundles timed in between). After the events
// the bridge is compared with a fresh compile of the cluster as it is then
// (any difference fails the benchmark), and the run's pods are deleted:
// both runs start from S1 and its Nodes. BENCH_EVENTS sets the events per
// kind (default 100).
func BenchmarkAgentS1Overlay(b *testing.B) {
	perKind := envInt("BENCH_EVENTS", 100)
	env := newOverlayEnv(b, perKind)
	b.Run("uplink", func(b *testing.B) { env.run(b, false) })
	b.Run("overlay", func(b *testing.B) { env.run(b, true) })
}

// overlayEnv is what both runs share: the switch, the apiserver holding S1
// and its Nodes, and the pods the runs added so far.
type overlayEnv struct {
	ctx     context.Context
	sw      *ovstest.Switch
	kc      *k8stest.Cluster
	db      *ovsdb.Client
	c       *synth.Cluster
	nodes   []*corev1.Node // the S1 nodes' Node objects
	perKind int
	// remoteAdds are 2×perKind remote pod adds: the uplink run takes the
	// first half, the overlay run the second (no name or address twice).
	remoteAdds []Event
	qm         *queueMetrics
}

func newOverlayEnv(b *testing.B, perKind int) *overlayEnv {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	env := &overlayEnv{ctx: ctx, perKind: perKind, qm: installQueueMetrics()}
	env.sw = ovstest.Start(b)
	env.kc = k8stest.Start(b)
	db, err := ovsdb.Connect(ctx, env.sw.DBSock(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(db.Close)
	env.db = db
	env.c = synth.Generate(synth.S1, synth.DefaultSeed)
	for n := range env.c.Scale.Nodes {
		env.nodes = append(env.nodes, nodeObject(synth.NodeName(n),
			netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n), 0, 0}), 16),
			netip.AddrFrom4([4]byte{172, 18, 0, byte(n + 1)})))
	}
	if got := env.nodes[0].Status.Addresses[0].Address; got != NodeIP.String() {
		b.Fatalf("node-000's InternalIP %s is not NodeIP %s", got, NodeIP)
	}
	env.remoteAdds = NewScriptOf(env.c, BenchNode, 2*perKind, 2, []EventKind{PodAddRemote}).Events

	t0 := time.Now()
	if err := loadCluster(ctx, env.kc, env.c, b.Logf); err != nil {
		b.Fatal(err)
	}
	cfg := *env.kc.Config
	cfg.QPS, cfg.Burst = 20000, 40000
	client, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := parallel(len(env.nodes), 64, func(i int) error {
		_, err := client.CoreV1().Nodes().Create(ctx, env.nodes[i], metav1.CreateOptions{})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d namespaces, %d pods, %d policies and %d Nodes into the apiserver in %v",
		len(env.c.Namespaces), len(env.c.Pods), len(env.c.Policies), len(env.nodes), time.Since(t0).Round(time.Millisecond))
	return env
}

// nodeObject is a Node as the kubelet and the node IPAM controller leave
// it: spec.podCIDR(s) and an InternalIP (and Hostname) address.
func nodeObject(name string, cidr netip.Prefix, ip netip.Addr) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		Spec:       corev1.NodeSpec{PodCIDR: cidr.String(), PodCIDRs: []string{cidr.String()}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: ip.String()}, {Type: corev1.NodeHostName, Address: name}}},
	}
}

// model is S1 with its Nodes and the pods added.
func (env *overlayEnv) model(b *testing.B, added []*corev1.Pod) *model.Cluster {
	m, err := env.c.Model()
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range added {
		mp, err := normalize.Pod(p)
		if err != nil {
			b.Fatal(err)
		}
		m.AddPod(mp)
	}
	for _, n := range env.nodes {
		mn, err := normalize.Node(n)
		if err != nil {
			b.Fatal(err)
		}
		m.AddNode(mn)
	}
	return m
}

// script is a run's events: its half of the remote pod adds and, with the
// overlay, after each a new Node added and the same Node removed.
func (env *overlayEnv) script(overlay bool) *Script {
	s := &Script{Kinds: []EventKind{PodAddRemote}, LocalBindings: map[string]compiler.Binding{}, Relabelled: map[string]bool{}}
	adds := env.remoteAdds[:env.perKind]
	if overlay {
		adds = env.remoteAdds[env.perKind:]
		s.Kinds = append(s.Kinds, NodeAdd, NodeRemove)
	}
	for i, ev := range adds {
		s.Events = append(s.Events, ev)
		if overlay {
			// Addresses no S1 node uses; each node is gone before the next
			// comes, so 100 pod CIDRs suffice for any BENCH_EVENTS.
			n := nodeObject(fmt.Sprintf("node-new-%04d", i),
				netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i%100), 0, 0}), 16),
				netip.AddrFrom4([4]byte{172, 18, 1 + byte(i/250%200), byte(i%250 + 1)}))
			s.Events = append(s.Events, Event{Kind: NodeAdd, Node: n}, Event{Kind: NodeRemove, Node: n})
		}
	}
	return s
}

// freshBridge replaces br-int by an empty one (a node whose agent starts).
func (env *overlayEnv) freshBridge(b *testing.B) {
	if _, err := env.sw.Vsctl("--if-exists", "del-br", "br-int"); err != nil {
		b.Fatal(err)
	}
	if err := env.sw.AddBridge("br-int"); err != nil {
		b.Fatal(err)
	}
}

// run is one mode's run: bridge and ports, the controller from a fresh
// start to synced, the events, the check against a fresh compile.
func (env *overlayEnv) run(b *testing.B, overlay bool) {
	ctx := env.ctx
	env.freshBridge(b)
	m := env.model(b, nil)
	cfg := compiler.Config{Node: BenchNode, NodeIPs: []netip.Addr{NodeIP}}
	if overlay {
		// As cmd/ovs-netpol-agent's setupNode does (but for the host side:
		// gateway address, MTU, routes). NodeIPs stay the InternalIP alone:
		// the agent adds the gateway address, 10.0.0.1, which synth gives
		// to a pod of node-000.
		self, err := normalize.Node(env.nodes[0])
		if err != nil {
			b.Fatal(err)
		}
		mac := model.GatewayMAC(self)
		if err := env.db.SetBridgeHWAddr(ctx, "br-int", mac); err != nil {
			b.Fatal(err)
		}
		ofport, err := env.db.EnsureTunnelPort(ctx, "br-int", overlayTunnelName, "geneve", map[string]string{"remote_ip": "flow"}, overlayTunnelOFPort)
		if err != nil {
			b.Fatal(err)
		}
		cfg.Overlay = compiler.Overlay{TunnelPort: uint32(ofport), GatewayMAC: mac}
		b.Logf("Geneve port %s at ofport %d, gateway MAC %s", overlayTunnelName, ofport, mac)
	} else {
		if err := env.sw.AddInternalPort("br-int", "uplink0", overlayUplinkOFPort); err != nil {
			b.Fatal(err)
		}
		cfg.UplinkPort = overlayUplinkOFPort
	}
	bindings := compiler.DefaultBindings(m, BenchNode, nil, overlayUplinkOFPort, overlayTunnelOFPort)
	withBindings := cfg
	withBindings.Bindings = bindings
	full, err := compiler.Compile(m, withBindings)
	if err != nil {
		b.Fatal(err)
	}
	plain := compiler.Config{Node: BenchNode, NodeIPs: cfg.NodeIPs, Bindings: bindings}
	base, err := compiler.Compile(m, plain)
	if err != nil {
		b.Fatal(err)
	}

	rec := newRecorder(env.sw)
	client, err := kubernetes.NewForConfig(env.kc.Config)
	if err != nil {
		b.Fatal(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	// The agent hands the nodes to its host-route syncer here, after the
	// commit; counted only.
	var nodesChanged atomic.Int64
	ctrl := controller.New(client, staticPorts(bindings), rec, controller.Options{
		Compiler: cfg, Log: log, Metrics: rec.metrics(), CheckInterval: time.Hour,
		NodesChanged: func([]*model.Node) { nodesChanged.Add(1) },
	})
	done := make(chan error, 1)
	ctrlCtx, stopCtrl := context.WithCancel(ctx)
	defer stopCtrl()
	t0 := time.Now()
	go func() { done <- ctrl.Run(ctrlCtx) }()
	for !ctrl.Ready() || ctrl.Status().Flows != len(full.Flows) {
		select {
		case err := <-done:
			b.Fatalf("controller stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Since(t0) > 5*time.Minute {
			b.Fatalf("controller: %d flows after 5 minutes, want %d", ctrl.Status().Flows, len(full.Flows))
		}
	}
	synced := time.Since(t0)
	rec.waitIdle()
	onBridge, err := rec.Count(ctx)
	if err != nil {
		b.Fatal(err)
	}
	modeFlows := flowsOfNewOrigins(base.Flows, full.Flows)
	b.Logf("synced in %v: %d flows compiled, %d on br-int; %d of them of origins only this mode has (%d without either mode)",
		synced.Round(time.Millisecond), len(full.Flows), onBridge, modeFlows, len(base.Flows))
	b.ReportMetric(float64(len(full.Flows)), "flows")
	b.ReportMetric(float64(onBridge), "bridge-flows")
	b.ReportMetric(float64(modeFlows), "mode-flows")
	b.ReportMetric(float64(len(full.Flows)-len(base.Flows)), "flows-over-no-mode")
	b.ReportMetric(synced.Seconds(), "sync-s")

	script := env.script(overlay)
	floor := &floorRunner{sw: env.sw, dir: b.TempDir()}
	changes0 := nodesChanged.Load()
	t0 = time.Now()
	events := runEvents(b, ctx, env.kc, rec, env.qm, floor, script)
	b.Logf("%d events in %v", len(events), time.Since(t0).Round(time.Millisecond))
	reportEvents(b, events, floor, rec, script.Kinds)
	var added []*corev1.Pod
	for _, ev := range script.Events {
		if ev.Kind == PodAddRemote {
			added = append(added, ev.Pod)
		}
	}
	if overlay {
		b.ReportMetric(float64(nodesChanged.Load()-changes0), "nodes-changed-calls")
	}

	// The bridge now must be what a fresh compile of the cluster as it is
	// makes: the events were applied, nothing else.
	rec.waitIdle()
	after := env.model(b, added)
	withBindings.Bindings = compiler.DefaultBindings(after, BenchNode, bindings, overlayUplinkOFPort, overlayTunnelOFPort)
	want, err := compiler.Compile(after, withBindings)
	if err != nil {
		b.Fatal(err)
	}
	have, err := rec.inst.Dump(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if d := flowsync.Diff(want.Flows, have); len(d) != 0 {
		var sample []string
		for _, mod := range d[:min(5, len(d))] {
			sample = append(sample, mod.String())
		}
		b.Fatalf("after the events br-int differs from a fresh compile in %d flows, e.g.\n%s", len(d), strings.Join(sample, "\n"))
	}
	b.Logf("after the events: br-int holds the %d flows a fresh compile makes", len(want.Flows))
	stopCtrl()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	// The next run starts from S1 again.
	if err := parallel(len(added), 16, func(i int) error {
		return client.CoreV1().Pods(added[i].Namespace).Delete(ctx, added[i].Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	}); err != nil {
		b.Fatal(err)
	}
}

// flowsOfNewOrigins counts the flows of set whose cookie base has no flow
// of.
func flowsOfNewOrigins(base, set []openflow.Flow) int {
	known := map[openflow.Cookie]bool{}
	for _, f := range base {
		known[f.Cookie] = true
	}
	n := 0
	for _, f := range set {
		if !known[f.Cookie] {
			n++
		}
	}
	return n
}
