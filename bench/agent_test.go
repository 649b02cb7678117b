package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"

	"github.com/ovs-netpol/ovs-netpol/internal/k8stest"
	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/controller"
	"github.com/ovs-netpol/ovs-netpol/pkg/flowsync"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
	"github.com/ovs-netpol/ovs-netpol/pkg/synth"
)

// BenchmarkAgentS1 measures realization through the real agent path at S1:
// a real kube-apiserver (k8stest) holding the S1 cluster, the controller
// (informers → incremental compiler → one bundle per batch) in this process
// with the flowsync installer on a real userspace ovs-vswitchd (ovstest),
// exactly as cmd/ovs-netpol-agent wires them (the same adapter code). It
// runs once (-benchtime 1x) and
// reports, per event kind, latency from the informer event to the bundle
// committed (p50, p99), compute alone (apply + Flush), flow mods; beside it
// the floor, raw ovs-ofctl bundles of 1 and 1,000 flows timed in between
// the events; a burst of 1,000 pod events in one second; and the real agent
// binary's steady-state RSS on the same cluster. BENCH_EVENTS sets the
// events per kind (default 100).
func BenchmarkAgentS1(b *testing.B) {
	perKind := envInt("BENCH_EVENTS", 100)
	for b.Loop() {
		runAgentBench(b, agentBench{scale: synth.S1, kinds: EventKinds, perKind: perKind, burst: true})
	}
}

// BenchmarkAgentS1Services is BenchmarkAgentS1 on S1 plus 10,000 Services
// of 3 endpoints each (synth.S1Services) with the Service events: an
// endpoint added to a Service's EndpointSlice, one removed, a Service
// added (the Service first, untimed: without endpoints it changes no
// flow; then its EndpointSlice, timed, as the EndpointSlice controller
// would write it). The floor is a raw one-flow "ovs-ofctl bundle", the
// command flowsync runs for bundles that change groups (as Service events'
// do). No burst; the agent binary's RSS last.
func BenchmarkAgentS1Services(b *testing.B) {
	perKind := envInt("BENCH_EVENTS", 100)
	for b.Loop() {
		runAgentBench(b, agentBench{scale: synth.S1Services, kinds: ServiceEventKinds, perKind: perKind, floorBundle: true})
	}
}

// agentBench is one run of the agent benchmark.
type agentBench struct {
	scale   synth.Scale
	kinds   []EventKind
	perKind int
	burst   bool // the in-process burst of 1,000 label changes
	// floorBundle: the floor (and the same-size raw bundles) are "ovs-ofctl
	// bundle" files ("flow add" lines) instead of "--bundle add-flows"
	// ones. Both floors are measured either way.
	floorBundle bool
}

func runAgentBench(b *testing.B, run agentBench) {
	s := run.scale
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	qm := installQueueMetrics()

	sw := ovstest.Start(b)
	if err := sw.AddBridge("br-int"); err != nil {
		b.Fatal(err)
	}
	kc := k8stest.Start(b)
	c := synth.Generate(s, synth.DefaultSeed)
	m, err := c.Model()
	if err != nil {
		b.Fatal(err)
	}
	script := NewScriptOf(c, BenchNode, run.perKind, 2, run.kinds)

	t0 := time.Now()
	if err := loadCluster(ctx, kc, c, b.Logf); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d namespaces, %d pods, %d policies, %d Services and %d EndpointSlices into the apiserver in %v",
		len(c.Namespaces), len(c.Pods), len(c.Policies), len(c.Services), len(c.EndpointSlices), time.Since(t0).Round(time.Millisecond))
	b.ReportMetric(time.Since(t0).Seconds(), "load-s")

	cfg := NodeConfig(m)
	full, err := compiler.Compile(m, cfg)
	if err != nil {
		b.Fatal(err)
	}
	// The pods the script adds on this node have their ports already.
	bindings := maps.Clone(cfg.Bindings)
	maps.Copy(bindings, script.LocalBindings)

	// The controller in process, with recording adapters.
	rec := newRecorder(sw)
	metrics := rec.metrics()
	client, err := kubernetes.NewForConfig(kc.Config)
	if err != nil {
		b.Fatal(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	ctrl := controller.New(client, staticPorts(bindings), rec, controller.Options{
		Compiler: compiler.Config{Node: BenchNode, NodeIPs: NodeConfig(m).NodeIPs},
		Log:      log, Metrics: metrics, CheckInterval: time.Hour,
	})
	done := make(chan error, 1)
	ctrlCtx, stopCtrl := context.WithCancel(ctx)
	defer stopCtrl()
	t0 = time.Now()
	go func() { done <- ctrl.Run(ctrlCtx) }()
	for !ctrl.Ready() {
		select {
		case err := <-done:
			b.Fatalf("controller stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Since(t0) > 5*time.Minute {
			b.Fatal("controller not ready after 5 minutes")
		}
	}
	// Ready is the first full sync; the rest of the initial list may
	// follow in the next batches.
	for ctrl.Status().Flows != len(full.Flows) {
		if time.Since(t0) > 5*time.Minute {
			b.Fatalf("in-process controller: %d flows, want %d", ctrl.Status().Flows, len(full.Flows))
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Logf("in-process controller synced in %v: %d flows and %d groups installed", time.Since(t0).Round(time.Millisecond), len(full.Flows), len(full.Groups))
	b.ReportMetric(float64(len(full.Flows)), "flows")
	b.ReportMetric(float64(len(full.Groups)), "groups")
	b.ReportMetric(time.Since(t0).Seconds(), "sync-s")
	rec.waitIdle()

	floor := &floorRunner{sw: sw, dir: b.TempDir(), bundle: run.floorBundle}
	events := runEvents(b, ctx, kc, rec, qm, floor, script)
	reportEvents(b, events, floor, rec, script.Kinds)
	if run.burst {
		runBurst(b, ctx, kc, burstPods(c, script, 0), rec, qm)
	}
	if f := os.Getenv("BENCH_HEAPPROFILE"); f != "" {
		writeHeapProfile(b, f)
	}
	finalFlows := ctrl.Status().Flows
	stopCtrl()
	if err := <-done; err != nil {
		b.Fatal(err)
	}

	// Last, alone, the real agent binary on the same cluster, for its
	// memory: once synced and idle, and after a burst like the one above.
	agentBinary(b, ctx, sw, kc, bindings, finalFlows, burstPods(c, script, 1))
}

// --- loading the apiserver ---

// loadCluster creates the synthetic objects with many concurrent requests:
// namespaces, then pods (create, then status with the IP as a kubelet
// would), then policies, then Services and their EndpointSlices.
func loadCluster(ctx context.Context, kc *k8stest.Cluster, c *synth.Cluster, logf func(string, ...any)) error {
	t0 := time.Now()
	phase := func(what string) {
		logf("loaded %s in %v", what, time.Since(t0).Round(time.Millisecond))
		t0 = time.Now()
	}
	cfg := *kc.Config
	cfg.QPS, cfg.Burst = 20000, 40000
	client, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		return err
	}
	const workers = 64
	if err := parallel(len(c.Namespaces), workers, func(i int) error {
		ns := c.Namespaces[i]
		_, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) { // kube-system: the apiserver makes it
			var have *corev1.Namespace
			if have, err = client.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{}); err == nil {
				have.Labels = ns.Labels
				_, err = client.CoreV1().Namespaces().Update(ctx, have, metav1.UpdateOptions{})
			}
		}
		return err
	}); err != nil {
		return err
	}
	if err := parallel(len(c.Pods), workers, func(i int) error {
		_, err := createPod(ctx, client, c.Pods[i])
		if err == nil {
			err = setPodStatus(ctx, client, c.Pods[i])
		}
		return err
	}); err != nil {
		return err
	}
	phase("pods")
	if err := parallel(len(c.Policies), workers, func(i int) error {
		np := c.Policies[i]
		_, err := client.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	phase("policies")
	if len(c.Services) == 0 {
		return nil
	}
	if err := parallel(len(c.Services), workers, func(i int) error {
		svc := c.Services[i]
		_, err := client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	phase("Services")
	err = parallel(len(c.EndpointSlices), workers, func(i int) error {
		sl := c.EndpointSlices[i]
		_, err := client.DiscoveryV1().EndpointSlices(sl.Namespace).Create(ctx, sl, metav1.CreateOptions{})
		return err
	})
	phase("EndpointSlices")
	return err
}

// createPod creates a pod without its status (the apiserver ignores it).
func createPod(ctx context.Context, client kubernetes.Interface, p *corev1.Pod) (*corev1.Pod, error) {
	cp := p.DeepCopy()
	cp.UID, cp.Status = "", corev1.PodStatus{}
	return client.CoreV1().Pods(p.Namespace).Create(ctx, cp, metav1.CreateOptions{})
}

// setPodStatus reports the pod running with its IP, as a kubelet does.
func setPodStatus(ctx context.Context, client kubernetes.Interface, p *corev1.Pod) error {
	patch := fmt.Sprintf(`{"status":{"phase":"Running","podIP":%q,"podIPs":[{"ip":%q}]}}`, p.Status.PodIP, p.Status.PodIP)
	_, err := client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	return err
}

// parallel runs f(0..n-1) on workers goroutines; the first error wins.
func parallel(n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// --- adapters that record what the controller does ---

type staticPorts map[string]compiler.Binding

func (p staticPorts) Bindings() map[string]compiler.Binding { return maps.Clone(p) }
func (p staticPorts) Changed() <-chan struct{}              { return nil }

// batch is what one controller batch did.
type batch struct {
	end       time.Time     // SyncSeconds observed: bundle committed
	sync      time.Duration // batch start → end, the controller's own measure
	compute   time.Duration // apply + Flush
	events    int           // queue items in the batch
	queueWait time.Duration // the longest time an item of the batch waited in the queue
	mods      int           // flow mods in its bundle (0: no bundle)
	bundle    time.Duration // ovs-ofctl bundle alone
	// cookies counts the bundle's flow and group mods by cookie (a group
	// delete, which carries none, as 0).
	cookies map[openflow.Cookie]int
}

// recorder is the controller's Flows (cmd/ovs-netpol-agent's ofctlFlows:
// the flowsync installer) and the observer of its metrics.
type recorder struct {
	inst *flowsync.Installer

	mu      sync.Mutex
	cur     batch // being filled
	batches []batch
	signal  chan struct{}
	// flushes are the conntrack flushes (UDP backends gone), flushTime
	// their ovs-ofctl ct-flush calls: the controller runs them after the
	// commit, in a goroutine of their own, outside the events' latency.
	flushes   int
	flushTime time.Duration
}

func newRecorder(sw *ovstest.Switch) *recorder {
	return &recorder{
		inst:   &flowsync.Installer{Bridge: "br-int", RunDir: sw.Dir},
		signal: make(chan struct{}, 1),
	}
}

// Sync, Apply and Count are cmd/ovs-netpol-agent's ofctlFlows.
func (r *recorder) Sync(ctx context.Context, flows []openflow.Flow, groups []openflow.Group) (int, int, error) {
	st, err := r.inst.SyncAll(ctx, flows, groups)
	return st.Added + st.Replaced + st.Groups, st.Deleted, err
}

func (r *recorder) Apply(ctx context.Context, ch controller.Change) error {
	mods, groups := flowsync.Mods(ch.AddFlows, ch.DelFlows, ch.SetGroups, ch.DelGroups)
	t0 := time.Now()
	if err := r.inst.ApplyBundle(ctx, mods, groups); err != nil {
		return err
	}
	r.mu.Lock()
	r.cur.mods += len(mods) + len(groups)
	r.cur.bundle += time.Since(t0)
	if r.cur.cookies == nil {
		r.cur.cookies = map[openflow.Cookie]int{}
	}
	for _, m := range mods {
		r.cur.cookies[m.Flow.Cookie]++
	}
	for _, g := range groups {
		r.cur.cookies[g.Group.Cookie]++
	}
	r.mu.Unlock()
	return nil
}

func (r *recorder) Count(ctx context.Context) (int, error) { return r.inst.FlowCount(ctx) }

func (r *recorder) FlushConntrack(ctx context.Context, fl []openflow.ConntrackFlush) error {
	t0 := time.Now()
	err := r.inst.FlushConntrack(ctx, fl)
	r.mu.Lock()
	r.flushes += len(fl)
	r.flushTime += time.Since(t0)
	r.mu.Unlock()
	return err
}

// metrics returns controller metrics whose observations feed the recorder.
func (r *recorder) metrics() *controller.Metrics {
	m := controller.NewMetrics(nil)
	m.ComputeSeconds = observer{m.ComputeSeconds, func(v float64) {
		r.mu.Lock()
		r.cur.compute = seconds(v)
		r.mu.Unlock()
	}}
	m.Events = counter{m.Events, func(v float64) {
		r.mu.Lock()
		r.cur.events += int(v)
		r.mu.Unlock()
	}}
	m.SyncSeconds = observer{m.SyncSeconds, func(v float64) {
		r.mu.Lock()
		r.cur.end, r.cur.sync = time.Now(), seconds(v)
		r.batches = append(r.batches, r.cur)
		r.cur = batch{}
		r.mu.Unlock()
		select {
		case r.signal <- struct{}{}:
		default:
		}
	}}
	return m
}

// queueWaited notes an item's wait in the queue (from the workqueue
// metrics) for the batch being filled.
func (r *recorder) queueWaited(d time.Duration) {
	r.mu.Lock()
	r.cur.queueWait = max(r.cur.queueWait, d)
	r.mu.Unlock()
}

// processed is the number of queue items processed so far and of batches.
func (r *recorder) processed() (items, batches int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.batches {
		items += b.events
	}
	return items, len(r.batches)
}

// waitItems waits until at least n items were processed in total and
// returns the batches since batch index from.
func (r *recorder) waitItems(ctx context.Context, n, from int, timeout time.Duration) ([]batch, error) {
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		total := 0
		for _, b := range r.batches {
			total += b.events
		}
		if total >= n {
			out := append([]batch(nil), r.batches[from:]...)
			r.mu.Unlock()
			return out, nil
		}
		r.mu.Unlock()
		select {
		case <-r.signal:
		case <-deadline:
			return nil, fmt.Errorf("%d of %d queue items processed after %v", total, n, timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// waitIdle waits until no batch ended for 300 ms.
func (r *recorder) waitIdle() {
	for {
		select {
		case <-r.signal:
		case <-time.After(300 * time.Millisecond):
			return
		}
	}
}

func seconds(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }

type observer struct {
	prometheus.Histogram
	f func(float64)
}

func (o observer) Observe(v float64) { o.Histogram.Observe(v); o.f(v) }

type counter struct {
	prometheus.Counter
	f func(float64)
}

func (c counter) Add(v float64) { c.Counter.Add(v); c.f(v) }
func (c counter) Inc()          { c.Add(1) }

// queueMetrics records, from client-go's workqueue metrics of the
// controller's queue ("ovs-netpol"), when items were added and how long
// each waited.
type queueMetrics struct {
	mu      sync.Mutex
	lastAdd time.Time
	adds    int
	waited  func(time.Duration)
}

var (
	queueMetricsOnce sync.Once
	theQueueMetrics  = &queueMetrics{}
)

// installQueueMetrics sets the workqueue metrics provider (once per
// process: client-go allows only one).
func installQueueMetrics() *queueMetrics {
	queueMetricsOnce.Do(func() { workqueue.SetProvider(queueProvider{theQueueMetrics}) })
	return theQueueMetrics
}

func (q *queueMetrics) onWait(f func(time.Duration)) {
	q.mu.Lock()
	q.waited = f
	q.mu.Unlock()
}

// addsSince returns the number of adds and the time of the last.
func (q *queueMetrics) snapshot() (int, time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.adds, q.lastAdd
}

type queueProvider struct{ q *queueMetrics }

type noop struct{}

func (noop) Inc()            {}
func (noop) Dec()            {}
func (noop) Set(float64)     {}
func (noop) Observe(float64) {}

type addsMetric struct{ q *queueMetrics }

func (a addsMetric) Inc() {
	a.q.mu.Lock()
	a.q.adds++
	a.q.lastAdd = time.Now()
	a.q.mu.Unlock()
}

type latencyMetric struct{ q *queueMetrics }

func (l latencyMetric) Observe(v float64) {
	l.q.mu.Lock()
	f := l.q.waited
	l.q.mu.Unlock()
	if f != nil {
		f(seconds(v))
	}
}

func (p queueProvider) mine(name string) bool { return name == "ovs-netpol" }

func (p queueProvider) NewDepthMetric(string) workqueue.GaugeMetric { return noop{} }
func (p queueProvider) NewAddsMetric(name string) workqueue.CounterMetric {
	if p.mine(name) {
		return addsMetric{p.q}
	}
	return noop{}
}
func (p queueProvider) NewLatencyMetric(name string) workqueue.HistogramMetric {
	if p.mine(name) {
		return latencyMetric{p.q}
	}
	return noop{}
}
func (p queueProvider) NewWorkDurationMetric(string) workqueue.HistogramMetric { return noop{} }
func (p queueProvider) NewUnfinishedWorkSecondsMetric(string) workqueue.SettableGaugeMetric {
	return noop{}
}
func (p queueProvider) NewLongestRunningProcessorSecondsMetric(string) workqueue.SettableGaugeMetric {
	return noop{}
}
func (p queueProvider) NewRetriesMetric(string) workqueue.CounterMetric { return noop{} }

// --- the floor: raw ovs-ofctl bundles ---

// floorRunner times raw ovs-ofctl bundles of foreign flows on the
// benchmark's bridge: the floor events are compared with.
type floorRunner struct {
	sw  *ovstest.Switch
	dir string
	// bundle: the floor is "ovs-ofctl bundle" (what flowsync runs when a
	// bundle changes groups: flows and groups in one transaction) instead
	// of "ovs-ofctl --bundle add-flows" (flows alone, the floor of the
	// original goal). The other command is timed too.
	bundle bool
	n      int
	// one, oneNoNames and big are the floor's command: plain, with
	// --no-names (as flowsync runs it) and with 1,000 flows. other and
	// otherNoNames are the one-flow bundle by the other command.
	one, big, oneNoNames Samples
	other, otherNoNames  Samples
}

// floorCommand is the raw command's arguments: "--bundle add-flows" reads
// "add ..." lines, "bundle" reads "flow add ..." lines.
func floorCommand(bundle, noNames bool, file string) []string {
	args := []string{"-O", "OpenFlow15"}
	if noNames {
		args = append(args, "--no-names")
	}
	if bundle {
		return append(args, "bundle", "br-int", file)
	}
	return append(args, "--bundle", "add-flows", "br-int", file)
}

// measure times one raw bundle of flows foreign flows (table 99, cookie
// 0x1: ignored by the controller) by the floor's command, then removes
// them untimed; for one flow also by the other command and with
// --no-names. Bundles of 1 and 1,000 flows are recorded.
func (f *floorRunner) measure(b *testing.B, flows int) time.Duration {
	f.n++
	file := func(bundle bool) string {
		name := filepath.Join(f.dir, fmt.Sprintf("floor-%d-%v.flows", f.n, bundle))
		prefix := "add "
		if bundle {
			prefix = "flow add "
		}
		var text []byte
		for i := 0; i < flows; i++ {
			text = fmt.Appendf(text, "%stable=99,priority=100,cookie=0x1,ip,nw_dst=198.18.%d.%d actions=drop\n", prefix, (f.n*flows+i)/250%250, (f.n*flows+i)%250+1)
		}
		if err := os.WriteFile(name, text, 0o644); err != nil {
			b.Fatal(err)
		}
		return name
	}
	mine, other := file(f.bundle), ""
	if flows == 1 {
		other = file(!f.bundle)
	}
	timed := func(args []string) time.Duration {
		t0 := time.Now()
		if _, err := f.sw.Ofctl(args...); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		if _, err := f.sw.Ofctl("-O", "OpenFlow15", "del-flows", "br-int", "table=99"); err != nil {
			b.Fatal(err)
		}
		return d
	}
	d := timed(floorCommand(f.bundle, false, mine))
	switch flows {
	case 1:
		f.one.Add(d)
		// The same with --no-names, as flowsync runs it (no port and
		// table name lookups first), and by the other command.
		f.oneNoNames.Add(timed(floorCommand(f.bundle, true, mine)))
		f.other.Add(timed(floorCommand(!f.bundle, false, other)))
		f.otherNoNames.Add(timed(floorCommand(!f.bundle, true, other)))
	case 1000:
		f.big.Add(d)
	}
	return d
}

// --- single events ---

type eventResult struct {
	kind      EventKind
	latency   time.Duration // informer event enqueued → bundle committed
	client    time.Duration // API write sent → bundle committed
	sameSize  time.Duration // a raw bundle of as many flows, timed right after
	compute   time.Duration
	mods      int
	batches   int
	bundles   int
	noBundle  bool
	queueWait time.Duration
	bundle    time.Duration // the ovs-ofctl bundle alone
	// disturbed: another queue item (the controller's own policy report
	// pass, queued up to a second after a commit) came in while the event
	// was in flight, so which batch committed the event is unknown: its
	// mods are counted, its latency and compute are not.
	disturbed bool
	// For Service events: mods whose cookie is not the Service's (none
	// expected), and the Service's size: ports × (endpoints after the
	// event + 1), which bounds the backends before and after.
	foreign int
	ports   int
	size    int
}

// runEvents applies the script one event at a time, each once the previous
// is committed, and times the floor in between.
func runEvents(b *testing.B, ctx context.Context, kc *k8stest.Cluster, rec *recorder, qm *queueMetrics, floor *floorRunner, script *Script) []eventResult {
	qm.onWait(rec.queueWaited)
	client := kc.Client
	// Queue items are counted when added (the queue metrics) and when
	// processed (the batches), beyond those of before (a controller
	// stopped earlier in the process counts in the same queue metrics).
	// settle waits until want items were added since from (the event's
	// own) and none is outstanding; each event starts with none.
	rec.waitIdle()
	adds, _ := qm.snapshot()
	done, _ := rec.processed()
	base := adds - done
	settle := func(ev Event, from, want int) (added int) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			a, _ := qm.snapshot()
			p, _ := rec.processed()
			if a-from >= want && a-p <= base {
				return a - from
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s: %d of %d queue items added, %d outstanding after 30s", ev, a-from, want, a-p-base)
			}
			time.Sleep(time.Millisecond)
		}
	}
	var out []eventResult
	for i, ev := range script.Events {
		if ev.Kind == PodAddRemote || ev.Kind == PodAddLocal || ev.Kind == ServiceAdd {
			// The pod object first, without an IP, or the Service
			// without endpoints: not what we time (no flow can change),
			// so let it settle.
			a, _ := qm.snapshot()
			if err := setup(ctx, client, ev); err != nil {
				b.Fatalf("%s (setup): %v", ev, err)
			}
			settle(ev, a, 1)
		}
		a, _ := qm.snapshot()
		settle(ev, a, 0)
		_, nb := rec.processed()
		adds0, _ := qm.snapshot()
		t0 := time.Now()
		if err := apply(ctx, client, ev); err != nil {
			b.Fatalf("%s: %v", ev, err)
		}
		// One item is the event's; a second came in while it was in
		// flight: disturbed. The second may also have come first, and
		// been processed before the informer delivered the event's:
		// counted again a moment later.
		added := settle(ev, adds0, 1)
		time.Sleep(10 * time.Millisecond)
		if a, _ := qm.snapshot(); a-adds0 > added {
			added = settle(ev, adds0, a-adds0)
		}
		disturbed := added > 1
		bs, err := rec.waitItems(ctx, 0, nb, time.Second)
		if err != nil {
			b.Fatalf("%s: %v", ev, err)
		}
		r := eventResult{kind: ev.Kind, batches: len(bs), disturbed: disturbed}
		var own openflow.Cookie
		if ev.Service != nil {
			own = compiler.ServiceCookie(&model.Service{Namespace: ev.Service.Namespace, Name: ev.Service.Name})
			r.ports = len(ev.Service.Spec.Ports)
			r.size = r.ports * (len(ev.Slice.Endpoints) + 1)
		}
		for _, bt := range bs {
			r.compute += bt.compute
			r.mods += bt.mods
			r.bundle += bt.bundle
			if bt.mods > 0 {
				r.bundles++
			}
			for c, n := range bt.cookies {
				if ev.Service != nil && c != own {
					r.foreign += n
				}
			}
		}
		last := bs[len(bs)-1]
		r.queueWait = last.queueWait
		r.latency = last.queueWait + last.sync
		r.client = last.end.Sub(t0)
		r.noBundle = r.bundles == 0
		if r.mods > 1 {
			r.sameSize = floor.measure(b, r.mods)
		}
		out = append(out, r)
		floor.measure(b, 1)
		if i%10 == 0 {
			floor.measure(b, 1000)
		}
		time.Sleep(20 * time.Millisecond)
	}
	qm.onWait(nil)
	return out
}

// setup performs the untimed part of an event, before it: a pod add's pod
// object without its IP, a Service add's Service without endpoints.
func setup(ctx context.Context, client kubernetes.Interface, ev Event) error {
	switch ev.Kind {
	case PodAddRemote, PodAddLocal:
		_, err := createPod(ctx, client, ev.Pod)
		return err
	case ServiceAdd:
		_, err := client.CoreV1().Services(ev.Service.Namespace).Create(ctx, ev.Service, metav1.CreateOptions{})
		return err
	}
	return nil
}

// apply performs one event against the apiserver.
func apply(ctx context.Context, client kubernetes.Interface, ev Event) error {
	switch ev.Kind {
	case EndpointAdd, EndpointRemove:
		// The whole list, as the EndpointSlice controller rewrites it
		// (a merge patch replaces lists).
		patch, err := json.Marshal(map[string]any{"endpoints": ev.Slice.Endpoints})
		if err != nil {
			return err
		}
		_, err = client.DiscoveryV1().EndpointSlices(ev.Slice.Namespace).Patch(ctx, ev.Slice.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	case ServiceAdd:
		_, err := client.DiscoveryV1().EndpointSlices(ev.Slice.Namespace).Create(ctx, ev.Slice, metav1.CreateOptions{})
		return err
	case PodAddRemote, PodAddLocal:
		return setPodStatus(ctx, client, ev.Pod)
	case PodRelabel:
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, synth.LabelTier, ev.Pod.Labels[synth.LabelTier])
		_, err := client.CoreV1().Pods(ev.Pod.Namespace).Patch(ctx, ev.Pod.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	case NamespaceRelabel:
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, synth.LabelEnv, ev.Namespace.Labels[synth.LabelEnv])
		_, err := client.CoreV1().Namespaces().Patch(ctx, ev.Namespace.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	case PolicyAdd:
		_, err := client.NetworkingV1().NetworkPolicies(ev.Policy.Namespace).Create(ctx, ev.Policy, metav1.CreateOptions{})
		return err
	case PolicyDelete:
		return client.NetworkingV1().NetworkPolicies(ev.Policy.Namespace).Delete(ctx, ev.Policy.Name, metav1.DeleteOptions{})
	case NodeAdd:
		// Spec and status in one create (the apiserver keeps a Node's
		// status on create): one informer event.
		_, err := client.CoreV1().Nodes().Create(ctx, ev.Node, metav1.CreateOptions{})
		return err
	case NodeRemove:
		return client.CoreV1().Nodes().Delete(ctx, ev.Node.Name, metav1.DeleteOptions{})
	}
	return fmt.Errorf("unknown event kind %q", ev.Kind)
}

func reportEvents(b *testing.B, rs []eventResult, floor *floorRunner, rec *recorder, kinds []EventKind) {
	slow := slices.DeleteFunc(slices.Clone(rs), func(r eventResult) bool { return r.disturbed })
	slices.SortFunc(slow, func(x, y eventResult) int { return int(y.latency - x.latency) })
	for _, r := range slow[:min(8, len(slow))] {
		b.Logf("slow: %s: %v = queue %v + compute %v + bundle %v (%d mods, same-size raw %v) + rest", r.kind,
			r.latency.Round(10*time.Microsecond), r.queueWait.Round(10*time.Microsecond), r.compute.Round(10*time.Microsecond),
			r.bundle.Round(10*time.Microsecond), r.mods, r.sameSize.Round(10*time.Microsecond))
	}
	var all, allCompute []time.Duration
	for _, k := range kinds {
		var lat, client, compute, over []time.Duration
		mods, none, foreign, maxMods, events, disturbed := 0, 0, 0, 0, 0, 0
		var perPort, perSize []float64
		for _, r := range rs {
			if r.kind != k {
				continue
			}
			events++
			if r.disturbed {
				disturbed++
				mods += r.mods
				continue
			}
			compute = append(compute, r.compute)
			allCompute = append(allCompute, r.compute)
			mods += r.mods
			foreign += r.foreign
			maxMods = max(maxMods, r.mods)
			if r.ports > 0 {
				perPort = append(perPort, float64(r.mods)/float64(r.ports))
				perSize = append(perSize, float64(r.mods)/float64(r.size))
			}
			if r.noBundle {
				none++
				continue // nothing to realize: latency would be compute alone
			}
			lat = append(lat, r.latency)
			if r.sameSize > 0 {
				over = append(over, r.latency-r.sameSize) // beyond a raw bundle of the same size
			} else {
				over = append(over, r.latency-floor.one.Quantile(0.5))
			}
			client = append(client, r.client)
			all = append(all, r.latency)
		}
		n := metricName(k)
		b.ReportMetric(Ms(Quantile(lat, 0.5)), n+"-p50-ms")
		b.ReportMetric(Ms(Quantile(lat, 0.99)), n+"-p99-ms")
		b.ReportMetric(Ms(Quantile(client, 0.5)), n+"-client-p50-ms")
		b.ReportMetric(Ms(Quantile(over, 0.5)), n+"-over-raw-p50-ms")
		b.ReportMetric(Ms(Quantile(compute, 0.5)), n+"-compute-p50-ms")
		b.ReportMetric(Ms(Quantile(compute, 0.99)), n+"-compute-p99-ms")
		b.ReportMetric(float64(mods)/float64(max(1, events)), n+"-mods")
		b.ReportMetric(float64(none), n+"-no-bundle")
		b.ReportMetric(float64(events), n+"-events")
		b.ReportMetric(float64(disturbed), n+"-disturbed")
		if len(perPort) > 0 {
			// Proportionality: mods per event against the Service's
			// ports, the largest, and mods of anything else (none).
			sum, hi := 0.0, 0.0
			for _, v := range perPort {
				sum += v
				hi = max(hi, v)
			}
			b.ReportMetric(sum/float64(len(perPort)), n+"-mods-per-port")
			b.ReportMetric(hi, n+"-max-mods-per-port")
			b.ReportMetric(float64(maxMods), n+"-max-mods")
			b.ReportMetric(float64(foreign), n+"-foreign-mods")
			b.ReportMetric(slices.Max(perSize), n+"-max-mods-per-size")
		}
	}
	b.ReportMetric(Ms(Quantile(all, 0.5)), "event-p50-ms")
	b.ReportMetric(Ms(Quantile(all, 0.99)), "event-p99-ms")
	b.ReportMetric(Ms(Quantile(allCompute, 0.5)), "compute-p50-ms")
	b.ReportMetric(Ms(Quantile(allCompute, 0.99)), "compute-p99-ms")
	b.ReportMetric(Ms(floor.one.Quantile(0.5)), "floor1-p50-ms")
	b.ReportMetric(Ms(floor.one.Quantile(0.99)), "floor1-p99-ms")
	b.ReportMetric(Ms(floor.oneNoNames.Quantile(0.5)), "floor1-nonames-p50-ms")
	b.ReportMetric(Ms(floor.oneNoNames.Quantile(0.99)), "floor1-nonames-p99-ms")
	rec.mu.Lock()
	b.ReportMetric(float64(rec.flushes), "ct-flushes")
	if rec.flushes > 0 {
		b.ReportMetric(Ms(rec.flushTime)/float64(rec.flushes), "ct-flush-ms")
	}
	rec.mu.Unlock()
	b.ReportMetric(Ms(floor.big.Quantile(0.5)), "floor1000-p50-ms")
	// Both commands' one-flow bundles, whichever is the floor.
	addFlows, addFlowsNN, bundle, bundleNN := &floor.one, &floor.oneNoNames, &floor.other, &floor.otherNoNames
	if floor.bundle {
		addFlows, addFlowsNN, bundle, bundleNN = bundle, bundleNN, addFlows, addFlowsNN
	}
	b.ReportMetric(Ms(addFlows.Quantile(0.5)), "floor1-addflows-p50-ms")
	b.ReportMetric(Ms(addFlowsNN.Quantile(0.5)), "floor1-addflows-nonames-p50-ms")
	b.ReportMetric(Ms(bundle.Quantile(0.5)), "floor1-bundle-p50-ms")
	b.ReportMetric(Ms(bundleNN.Quantile(0.5)), "floor1-bundle-nonames-p50-ms")
	if floor.bundle {
		b.ReportMetric(1, "floor-is-bundle")
	}
}

// --- the burst ---

// burstSize is the number of events of a burst, sent within one second.
const burstSize = 1000

// burstPods picks burstSize distinct application pods spread over the
// namespaces (sets 0 and 1 are disjoint), none of which the script
// relabels.
func burstPods(c *synth.Cluster, script *Script, set int) []*corev1.Pod {
	var pods []*corev1.Pod
	for i := len(c.Pods) - 1 - set; i >= 0 && len(pods) < burstSize; i -= 3 {
		if p := c.Pods[i]; p.Labels[synth.LabelTier] != "" && !script.Relabelled[p.Namespace+"/"+p.Name] {
			pods = append(pods, c.Pods[i])
		}
	}
	return pods
}

// sendBurst moves each pod to another tier, the changes paced evenly over
// one second.
func sendBurst(ctx context.Context, kc *k8stest.Cluster, pods []*corev1.Pod) error {
	start := time.Now()
	return parallel(len(pods), 128, func(i int) error {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(len(pods)))))
		p := pods[i]
		tier := synth.Tiers[(indexOf(synth.Tiers, p.Labels[synth.LabelTier])+2)%len(synth.Tiers)]
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, synth.LabelTier, tier)
		_, err := kc.Client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	})
}

// runBurst changes the tier label of 1,000 distinct pods, paced evenly
// over one second, and reports how long after the last event (enqueued by
// the informer) everything was committed, and in how many bundles.
func runBurst(b *testing.B, ctx context.Context, kc *k8stest.Cluster, pods []*corev1.Pod, rec *recorder, qm *queueMetrics) {
	n := len(pods)
	rec.waitIdle()
	items, nb := rec.processed()
	adds0, _ := qm.snapshot()
	start := time.Now()
	if err := sendBurst(ctx, kc, pods); err != nil {
		b.Fatal(err)
	}
	sent := time.Since(start)
	bs, err := rec.waitItems(ctx, items+n, nb, 60*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	adds, lastAdd := qm.snapshot()
	// The batch that brought the count to items+n committed the last event.
	total, bundles, mods := 0, 0, 0
	var end time.Time
	for _, bt := range bs {
		total += bt.events
		if bt.mods > 0 {
			bundles++
			mods += bt.mods
		}
		if total >= n {
			end = bt.end
			break
		}
	}
	b.Logf("burst: %d label changes sent in %v; %d queue adds; last committed %v after the last event; %d batches, %d bundles, %d flow mods",
		n, sent.Round(time.Millisecond), adds-adds0, end.Sub(lastAdd).Round(time.Millisecond), len(bs), bundles, mods)
	b.ReportMetric(sent.Seconds(), "burst-sent-s")
	b.ReportMetric(Ms(end.Sub(lastAdd)), "burst-after-last-ms")
	b.ReportMetric(Ms(end.Sub(start)), "burst-total-ms")
	b.ReportMetric(float64(bundles), "burst-bundles")
	b.ReportMetric(float64(mods), "burst-mods")
}

// writeHeapProfile writes the live heap (after a GC) to file.
func writeHeapProfile(b *testing.B, file string) {
	runtime.GC()
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}
