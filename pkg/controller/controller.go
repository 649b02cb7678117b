// Package controller wires the node agent: client-go informers feed the
// incremental compiler, OVSDB port bindings say where local pods are, and
// every batch of events ends in one atomic bundle on the bridge.
package controller

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	netlisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Ports is where local pods' port bindings come from (the OVSDB adapter).
type Ports interface {
	// Bindings returns the current bindings by pod namespace/name.
	Bindings() map[string]compiler.Binding
	// Changed signals (coalescing) that Bindings may have changed.
	Changed() <-chan struct{}
}

// Flows is the bridge's flow and group tables (the OpenFlow adapter).
type Flows interface {
	// Sync makes our installed flows and groups equal desired, reading what
	// is installed first: for start-up and after the switch lost its flows.
	Sync(ctx context.Context, flows []openflow.Flow, groups []openflow.Group) (added, deleted int, err error)
	// Apply commits a change as one bundle.
	Apply(ctx context.Context, ch Change) error
	// FlushConntrack deletes conntrack entries.
	FlushConntrack(ctx context.Context, flushes []openflow.ConntrackFlush) error
	// Count returns how many of our flows are installed.
	Count(ctx context.Context) (int, error)
}

// Change is one bundle: flows added (or replaced) and deleted, groups added
// (or replaced) and deleted.
type Change struct {
	AddFlows, DelFlows []openflow.Flow
	SetGroups          []openflow.Group
	DelGroups          []uint32
}

// Len is the number of flow and group mods.
func (ch Change) Len() int {
	return len(ch.AddFlows) + len(ch.DelFlows) + len(ch.SetGroups) + len(ch.DelGroups)
}

// Options configure a Controller.
type Options struct {
	// Compiler carries node name, ports, node IPs and conntrack zone;
	// Bindings are taken from Ports.
	Compiler compiler.Config
	Mode     model.Mode
	// CheckInterval is how often the installed flow count is compared with
	// the desired one (an ovs-vswitchd restart empties the tables).
	CheckInterval time.Duration
	// MaxBatch bounds how many queued events one bundle covers.
	MaxBatch int
	Log      logrus.FieldLogger
	Metrics  *Metrics
	// Recorder records Events on the objects whose flows OVS refused; nil:
	// Run records them through the client (component ovs-netpol-agent).
	Recorder record.EventRecorder
	// NodesChanged, when set, is called with every valid Node that is not
	// refused for a claim another node holds (model.RefusedNodes; sorted by
	// name, the local one included) after a commit that changed them, and
	// once after the first commit: the agent's host routes follow it. It
	// runs on the controller's worker, outside its lock: a slow callback
	// delays the next batch, not the informers.
	NodesChanged func(nodes []*model.Node)
}

// item is one unit of queued work.
type item struct {
	kind string // "ns", "pod", "policy", "service", "slice", "node", "ports", "retry"
	key  string
}

// Controller keeps one node's bridge equal to the compiled policy.
type Controller struct {
	opts    Options
	log     logrus.FieldLogger
	client  kubernetes.Interface
	ports   Ports
	flows   Flows
	queue   workqueue.TypedRateLimitingInterface[item]
	metrics *Metrics
	// recorder is set before Run starts the worker.
	recorder record.EventRecorder

	nsLister     corelisters.NamespaceLister
	pods         podStore
	policyLister netlisters.NetworkPolicyLister
	svcLister    corelisters.ServiceLister
	sliceLister  discoverylisters.EndpointSliceLister
	nodeLister   corelisters.NodeLister
	synced       []cache.InformerSynced

	mu      sync.Mutex // guards everything below
	inc     *compiler.Incremental
	podUIDs map[string]string // namespace/name → UID in the model
	// installed is how many flows the last successful commit left on the
	// bridge. They are the incremental compiler's flow set at that time:
	// its Flush reports exactly the keys whose flow changed since, so the
	// flows are not kept a second time here.
	installed int
	needFull  bool
	// flushes are conntrack flushes computed but not yet handed to the
	// flusher: they wait for a successful commit (see process).
	flushes []openflow.ConntrackFlush
	// refused are the origins whose flows OVS refused: off the bridge
	// (their adapter removed them), retried (see refused.go); retryTimer
	// queues the next retry.
	refused    map[openflow.Cookie]*refusal
	retryTimer *time.Timer
	// ips holds which active pods claim which address (see podips.go).
	ips ipClaims
	// pev is what was reported in Events on policies (policyevents.go).
	pev policyEvents
	// nodes are the cluster's Nodes as the model has them (nodes.go).
	nodes nodeSet

	// flushMu guards flushQueue, the flushes the flusher goroutine runs
	// (outside mu: one ovs-ofctl per flush, 30–60 ms each, must not stall
	// events); flushWake wakes it.
	flushMu    sync.Mutex
	flushQueue []openflow.ConntrackFlush
	flushWake  chan struct{}

	// arrivals are the queued events' arrival times (own lock; metrics.go).
	arrivals arrivals

	ready   atomic.Bool
	settled bool // the initial state was processed (worker goroutine only)
}

// New builds a controller; Run starts it.
func New(client kubernetes.Interface, ports Ports, flows Flows, o Options) *Controller {
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = 5 * time.Second
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 5000
	}
	cfg := o.Compiler
	cfg.Bindings = map[string]compiler.Binding{}
	c := &Controller{
		opts: o, log: o.Log, client: client, ports: ports, flows: flows, metrics: o.Metrics,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[item](),
			workqueue.TypedRateLimitingQueueConfig[item]{Name: "ovs-netpol"}),
		inc:       compiler.NewIncremental(model.NewCluster(o.Mode), cfg),
		podUIDs:   map[string]string{},
		refused:   map[openflow.Cookie]*refusal{},
		ips:       newIPClaims(),
		pev:       newPolicyEvents(),
		nodes:     newNodeSet(),
		recorder:  o.Recorder,
		needFull:  true,
		flushWake: make(chan struct{}, 1),
	}
	return c
}

// Ready reports whether the first full sync has been committed.
func (c *Controller) Ready() bool { return c.ready.Load() }

// Run watches the API and the switch until ctx ends. On return the flows
// stay on the bridge as they are.
func (c *Controller) Run(ctx context.Context) error {
	defer c.queue.ShutDown()
	factory := informers.NewSharedInformerFactoryWithOptions(c.client, 0, informers.WithTransform(TrimForCache))
	nsInf := factory.Core().V1().Namespaces()
	podInf := factory.Core().V1().Pods()
	polInf := factory.Networking().V1().NetworkPolicies()
	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	nodeInf := factory.Core().V1().Nodes()
	c.nsLister, c.pods, c.policyLister = nsInf.Lister(), podStore{podInf.Informer().GetIndexer()}, polInf.Lister()
	c.svcLister, c.sliceLister, c.nodeLister = svcInf.Lister(), sliceInf.Lister(), nodeInf.Lister()
	c.synced = []cache.InformerSynced{nsInf.Informer().HasSynced, podInf.Informer().HasSynced, polInf.Informer().HasSynced,
		svcInf.Informer().HasSynced, sliceInf.Informer().HasSynced, nodeInf.Informer().HasSynced}
	handler := func(kind string) cache.ResourceEventHandlerFuncs {
		enqueue := func(obj any) {
			key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
			if err != nil {
				c.log.WithError(err).Warn("cannot key object")
				return
			}
			c.noteArrival(item{kind, key})
			c.queue.Add(item{kind, key})
		}
		return cache.ResourceEventHandlerFuncs{
			AddFunc:    enqueue,
			UpdateFunc: func(_, obj any) { enqueue(obj) },
			DeleteFunc: enqueue,
		}
	}
	for _, reg := range []struct {
		inf  cache.SharedIndexInformer
		kind string
	}{{nsInf.Informer(), "ns"}, {podInf.Informer(), "pod"}, {polInf.Informer(), "policy"},
		{svcInf.Informer(), "service"}, {sliceInf.Informer(), "slice"}, {nodeInf.Informer(), "node"}} {
		if _, err := reg.inf.AddEventHandler(handler(reg.kind)); err != nil {
			return err
		}
	}
	if c.recorder == nil && c.client != nil {
		// client-go's recorder: repeated Events are aggregated and
		// rate-limited per object (its correlator), and patched, not
		// created again.
		b := record.NewBroadcaster(record.WithContext(ctx))
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
		defer b.Shutdown()
		c.recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "ovs-netpol-agent", Host: c.opts.Compiler.Node})
	}
	factory.Start(ctx.Done())
	c.log.Info("waiting for informer caches")
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return ctx.Err()
	}
	c.log.Info("informer caches synced")

	go c.watchPorts(ctx)
	go c.watchSwitch(ctx)
	go c.flusher(ctx)
	c.queue.Add(item{kind: "ports"})
	c.worker(ctx)
	factory.Shutdown()
	return nil
}

func (c *Controller) watchPorts(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.ports.Changed():
			c.queue.Add(item{kind: "ports"})
		}
	}
}

// watchSwitch notices an ovs-vswitchd that lost our flows (restart) and
// asks for a full sync.
func (c *Controller) watchSwitch(ctx context.Context) {
	t := time.NewTicker(c.opts.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.Ready() {
			continue
		}
		// Counted under the lock: a bundle committed between the count and
		// the comparison made them differ under churn (a false "restart"
		// and a needless full resync, found by the churn soak).
		c.mu.Lock()
		n, err := c.flows.Count(ctx)
		want := c.installed
		if err != nil || n != want {
			if err == nil {
				c.log.WithFields(logrus.Fields{"installed": n, "expected": want}).Warn("bridge flows differ from what was committed (ovs-vswitchd restart?): full resync")
			}
			c.needFull = true
		}
		need := c.needFull
		c.mu.Unlock()
		if need {
			c.queue.Add(item{kind: "ports"})
		}
	}
}

func (c *Controller) worker(ctx context.Context) {
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	for {
		first, shutdown := c.queue.Get()
		if shutdown {
			return
		}
		batch := []item{first}
		// The first sync takes everything queued, so that ready means the
		// whole initial state is on the bridge.
		for c.queue.Len() > 0 && (len(batch) < c.opts.MaxBatch || !c.Ready()) {
			it, shutdown := c.queue.Get()
			if shutdown {
				break
			}
			batch = append(batch, it)
		}
		taken := c.arrivals.take(batch)
		err := c.process(ctx, batch)
		c.realized(taken, err, time.Now())
		if err == nil {
			c.reportNodes()
		}
		if err == nil && !c.settled && c.Ready() && c.queue.Len() == 0 {
			// The initial state is in. Decoding the initial lists (every
			// pod at once) was the agent's memory peak: give the freed
			// memory back to the system now instead of over minutes.
			c.settled = true
			debug.FreeOSMemory()
		}
		for _, it := range batch {
			if err != nil {
				c.queue.AddRateLimited(it)
			} else {
				c.queue.Forget(it)
			}
			c.queue.Done(it)
		}
		if err != nil && ctx.Err() == nil {
			c.log.WithError(err).Warn("sync failed; retrying")
		}
	}
}

// process applies a batch of events to the model and commits the result.
func (c *Controller) process(ctx context.Context, batch []item) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	for _, it := range batch {
		c.apply(it)
	}
	c.resolveNodes()
	changed, err := c.inc.Flush()
	if err != nil {
		return err
	}
	// Kept until a commit succeeds: a failed bundle is retried as a full
	// sync, which computes no flushes of its own.
	c.flushes = append(c.flushes, c.inc.ConntrackFlushes()...)
	compute := time.Since(start)
	c.metrics.ComputeSeconds.Observe(compute.Seconds())
	c.metrics.Events.Add(float64(len(batch)))
	now := time.Now()
	if c.needFull {
		var added, deleted int
		var refused []Refusal
		if bo, ok := c.flows.(ByOrigin); ok {
			added, deleted, refused, err = bo.SyncByOrigin(ctx, c.inc.Flows(), c.inc.Groups())
		} else {
			added, deleted, err = c.flows.Sync(ctx, c.inc.Flows(), c.inc.Groups())
		}
		if len(refused) > 0 || err != nil {
			c.metrics.BundleFailures.Inc()
		}
		c.noteRefused(refused, now)
		if err != nil {
			c.metrics.SyncErrors.Inc()
			return fmt.Errorf("full sync: %w", err)
		}
		// A full sync tried every origin: those refused before and not now
		// were accepted.
		still := map[openflow.Cookie]bool{}
		for _, r := range refused {
			still[r.Cookie] = true
		}
		for ck := range c.refused {
			if !still[ck] {
				c.clearRefused(ck, true)
			}
		}
		c.installed = c.inc.Len() - c.refusedFlows()
		c.needFull = false
		c.metrics.FlowMods.Add(float64(added + deleted))
		c.log.WithFields(logrus.Fields{"flows": c.installed, "groups": c.inc.GroupCount(), "added": added, "deleted": deleted,
			"refused origins": len(c.refused), "took": time.Since(start)}).Info("full sync committed")
	} else if err := c.commit(ctx, changed, now); err != nil {
		c.metrics.SyncErrors.Inc()
		c.needFull = true // the bridge state is unknown now
		return err
	}
	c.scheduleRetry(now)
	// After the commit, new connections already go to the new backends:
	// now the old ones' UDP entries can go.
	if len(c.flushes) > 0 {
		c.queueFlushes(c.flushes)
		c.flushes = nil
	}
	c.metrics.Flows.Set(float64(c.installed))
	c.metrics.Groups.Set(float64(c.inc.GroupCount()))
	c.metrics.SyncSeconds.Observe(time.Since(start).Seconds())
	c.reportPolicies(time.Now())
	if !c.ready.Load() {
		c.ready.Store(true)
		c.log.Info("ready: first full sync committed")
	}
	return nil
}

// commit sends the keys the last Flush reported (each one's flow changed
// since the previous Flush, whose flows are installed) as one bundle.
func (c *Controller) commit(ctx context.Context, changed []openflow.Key, now time.Time) error {
	var ch Change
	for _, k := range changed {
		if f, ok := c.inc.Flow(k); ok {
			ch.AddFlows = append(ch.AddFlows, f)
		} else if old, ok := c.inc.Removed(k); ok {
			ch.DelFlows = append(ch.DelFlows, old)
		}
	}
	for _, id := range c.inc.GroupChanges() {
		if g, ok := c.inc.Group(id); ok {
			ch.SetGroups = append(ch.SetGroups, g)
		} else {
			ch.DelGroups = append(ch.DelGroups, id)
		}
	}
	ch, touched := c.withoutRefused(ch)
	if ch.Len() > 0 {
		if err := c.applyTimed(ctx, ch); err != nil {
			c.metrics.BundleFailures.Inc()
			err = fmt.Errorf("bundle of %d flow adds, %d flow deletes, %d group adds/changes and %d group deletes: %w",
				len(ch.AddFlows), len(ch.DelFlows), len(ch.SetGroups), len(ch.DelGroups), err)
			bo, ok := c.flows.(ByOrigin)
			if !ok {
				return err
			}
			// Only after a failure: every origin OVS accepts goes in, the
			// refused ones are reported and retried.
			refused, err := bo.ApplyByOrigin(ctx, ch, err)
			c.noteRefused(refused, now)
			if err != nil {
				return err
			}
		}
		c.metrics.FlowMods.Add(float64(ch.Len()))
		c.metrics.Bundles.Inc()
		c.log.WithFields(logrus.Fields{"add": len(ch.AddFlows), "delete": len(ch.DelFlows), "groups": len(ch.SetGroups) + len(ch.DelGroups)}).Debug("bundle committed")
	}
	if err := c.retryRefused(ctx, touched, now); err != nil {
		return fmt.Errorf("retrying refused origins: %w", err)
	}
	c.installed = c.inc.Len() - c.refusedFlows()
	return nil
}

// queueFlushes hands conntrack flushes to the flusher goroutine.
func (c *Controller) queueFlushes(fl []openflow.ConntrackFlush) {
	c.flushMu.Lock()
	c.flushQueue = append(c.flushQueue, fl...)
	c.flushMu.Unlock()
	select {
	case c.flushWake <- struct{}{}:
	default:
	}
}

// flusher runs the queued conntrack flushes, in order, one by one; a
// failed one is retried a second later (UDP clients that keep sending keep
// their entry alive: it does not expire on its own).
func (c *Controller) flusher(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.flushWake:
		}
		c.flushMu.Lock()
		todo := c.flushQueue
		c.flushQueue = nil
		c.flushMu.Unlock()
		for i, f := range todo {
			if err := c.flows.FlushConntrack(ctx, []openflow.ConntrackFlush{f}); err != nil {
				if ctx.Err() != nil {
					return
				}
				c.log.WithError(err).Warn("flushing conntrack entries of a removed Service backend failed; retrying")
				c.flushMu.Lock()
				c.flushQueue = append(todo[i:], c.flushQueue...)
				c.flushMu.Unlock()
				time.AfterFunc(time.Second, func() {
					select {
					case c.flushWake <- struct{}{}:
					default:
					}
				})
				break
			}
			c.metrics.CTFlushes.Inc()
			orig, reply := f.Tuples()
			c.log.WithFields(logrus.Fields{"original": orig, "reply": reply}).Debug("conntrack entries of a removed UDP backend flushed")
		}
	}
}

// apply brings one object's current state (from the listers) into the model.
func (c *Controller) apply(it item) {
	switch it.kind {
	case "retry": // refused origins are retried after every batch
	case "ports":
		c.setBindings(c.ports.Bindings())
	case "ns":
		ns, err := c.nsLister.Get(it.key)
		if apierrors.IsNotFound(err) {
			c.inc.DeleteNamespace(it.key)
			return
		}
		if err != nil {
			c.reject("namespace", it.key, err)
			return
		}
		n, warning := normalize.Namespace(ns)
		if warning != nil {
			c.reject("namespace", it.key, warning) // counted; n still applies (fails closed)
		}
		c.inc.SetNamespace(n)
	case "pod":
		c.applyPod(it.key)
	case "policy":
		c.applyPolicy(it.key)
	case "service":
		c.applyService(it.key)
	case "slice":
		c.applySlice(it.key)
	case "node":
		c.applyNode(it.key)
	}
}

// applyService brings a Service into the model. One that is not balanced
// here (headless, ExternalName, no cluster IP) is removed from it; one that
// cannot be used is rejected (counted, logged) and removed too: its
// ClusterIP traffic then goes to the host, where kube-proxy handles it.
func (c *Controller) applyService(key string) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	svc, err := c.svcLister.Services(ns).Get(name)
	applyNormalized(c, "service", key, svc, err, normalize.Service, c.inc.SetService, c.inc.DeleteService)
}

// applySlice brings an EndpointSlice into the model (see applyService).
func (c *Controller) applySlice(key string) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	sl, err := c.sliceLister.EndpointSlices(ns).Get(name)
	applyNormalized(c, "endpointslice", key, sl, err, normalize.EndpointSlice, c.inc.SetEndpointSlice, c.inc.DeleteEndpointSlice)
}

// applyNormalized brings the object a lister returned (obj, getErr) into
// the model: deleted when it is gone, not used here (normalized to nil) or
// unusable (rejected: counted, logged); set otherwise. A lister error other
// than not found is rejected and leaves the model as it is.
func applyNormalized[O, M any](c *Controller, kind, key string, obj O, getErr error, norm func(O) (*M, error), set func(*M), del func(key string)) {
	if apierrors.IsNotFound(getErr) {
		del(key)
		return
	}
	if getErr != nil {
		c.reject(kind, key, getErr)
		return
	}
	m, err := norm(obj)
	if err != nil {
		c.reject(kind, key, err)
		del(key)
		return
	}
	if m == nil {
		del(key)
		return
	}
	set(m)
}

// applyPolicy normalizes a policy. One that cannot be used (e.g. larger
// than the agent accepts) is rejected, logged and counted, and replaced by
// a fail-closed stand-in: its pod selector and policy types with no rules,
// so its pods are isolated and nothing is allowed. Never half-applied,
// never silently open, and the same whatever the agent saw before (a
// restart gives the same flows).
func (c *Controller) applyPolicy(key string) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	np, err := c.policyLister.NetworkPolicies(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.notePolicyRejected(key, nil)
		c.inc.DeletePolicy(key)
		return
	}
	if err != nil {
		c.reject("networkpolicy", key, err)
		return
	}
	p, err := normalize.NetworkPolicyV1(np)
	c.notePolicyRejected(key, err)
	if err != nil {
		c.reject("networkpolicy", key, fmt.Errorf("%w (its pods are isolated with no rule allowing anything until it is fixed)", err))
		p = failClosed(np)
	}
	c.inc.SetPolicy(p)
}

// failClosed is the stand-in for a policy that cannot be used.
func failClosed(np *networkingv1.NetworkPolicy) *model.Policy {
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		sel = labels.Everything()
	}
	p := &model.Policy{Namespace: np.Namespace, Name: np.Name, APIVersion: normalize.APIVersionV1, PodSelector: sel}
	// An unsupported policyTypes entry is why it was rejected; the valid
	// entries still isolate.
	p.AffectsIngress, p.AffectsEgress, _ = normalize.EffectivePolicyTypes(&np.Spec)
	return p
}

func (c *Controller) reject(kind, key string, err error) {
	c.metrics.Rejected.WithLabelValues(kind).Inc()
	c.log.WithFields(logrus.Fields{"kind": kind, "object": key}).WithError(err).Warn("object rejected")
}

// Status describes the controller for logs and tests.
type Status struct {
	Ready     bool
	Flows     int
	Pods      int
	Policies  int
	Conjuncts int
	// Nodes are the valid Nodes the overlay uses (not refused for a claim
	// another node holds; remote ones make tunnel flows).
	Nodes int
}

// Status returns a snapshot.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.inc.Cluster()
	return Status{Ready: c.Ready(), Flows: c.installed, Pods: len(cl.Pods), Policies: len(cl.Policies), Conjuncts: len(c.inc.Conjunctions()),
		Nodes: len(c.nodes.accepted)}
}

// Origins lists the origins of desired flows (cookie → description), sorted by cookie.
func (c *Controller) Origins() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.inc.Origins()
	var out []string
	for k, v := range o {
		out = append(out, fmt.Sprintf("%s %s", k, v))
	}
	sort.Strings(out)
	return out
}

// ErrNotReady is returned by readiness checks before the first sync.
var ErrNotReady = errors.New("first full sync not committed yet")

// CheckReady is a readiness probe.
func (c *Controller) CheckReady() error {
	if !c.Ready() {
		return ErrNotReady
	}
	return nil
}
