package controller

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the agent's Prometheus metrics.
type Metrics struct {
	Events     prometheus.Counter
	Bundles    prometheus.Counter
	FlowMods   prometheus.Counter
	Flows      prometheus.Gauge
	Groups     prometheus.Gauge
	CTFlushes  prometheus.Counter
	SyncErrors prometheus.Counter
	Rejected   *prometheus.CounterVec
	// RefusedOrigins, BundleFailures, RefusedRetries: origins whose flows
	// OVS refused (see refused.go).
	RefusedOrigins prometheus.Gauge
	BundleFailures prometheus.Counter
	RefusedRetries prometheus.Counter
	// DuplicatePodIPs counts addresses claimed by more than one active pod.
	DuplicatePodIPs prometheus.Gauge
	// InvalidNodes counts the Nodes that failed validation and are treated
	// as absent (each rejection is also in Rejected, kind "node").
	InvalidNodes prometheus.Gauge
	// ConflictingNodes counts the valid Nodes refused for a pod CIDR or
	// InternalIP that this node or an older node holds (treated as absent).
	ConflictingNodes prometheus.Gauge
	ComputeSeconds   prometheus.Histogram
	SyncSeconds      prometheus.Histogram
	// BundleSeconds is how long Open vSwitch took to take one incremental
	// bundle; RealizationLag is from an object event's arrival to the
	// commit that realized it (see arrivals).
	BundleSeconds  prometheus.Histogram
	RealizationLag prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, e.g. in tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5}
	m := &Metrics{
		Events:   prometheus.NewCounter(prometheus.CounterOpts{Name: "ovs_netpol_events_total", Help: "Queued object events processed."}),
		Bundles:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ovs_netpol_bundles_total", Help: "Incremental bundles committed to the bridge."}),
		FlowMods: prometheus.NewCounter(prometheus.CounterOpts{Name: "ovs_netpol_flow_mods_total", Help: "Flow adds and deletes committed."}),
		Flows:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "ovs_netpol_flows", Help: "Flows installed by the agent."}),
		Groups:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "ovs_netpol_groups", Help: "Groups (Service load balancers) installed by the agent."}),
		CTFlushes: prometheus.NewCounter(prometheus.CounterOpts{Name: "ovs_netpol_conntrack_flushes_total",
			Help: "Conntrack flushes of UDP connections to Service backends that stopped serving."}),
		SyncErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "ovs_netpol_sync_errors_total", Help: "Failed syncs (retried)."}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ovs_netpol_rejected_objects_total",
			Help: "Objects that could not be used (malformed annotation, invalid or oversized policy, bad pod IP, invalid node podCIDR)."}, []string{"kind"}),
		RefusedOrigins: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ovs_netpol_refused_origins",
			Help: "Origins (policy rules, pods, Services, the node) whose flows OVS refused: left off the bridge (fail closed) and retried."}),
		BundleFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "ovs_netpol_bundle_failures_total",
			Help: "Bundles OVS refused as a whole (then applied origin by origin)."}),
		RefusedRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "ovs_netpol_refused_origin_retries_total",
			Help: "Retries of refused origins."}),
		DuplicatePodIPs: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ovs_netpol_duplicate_pod_ips",
			Help: "Addresses claimed by more than one active pod (the oldest pod keeps the address)."}),
		InvalidNodes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ovs_netpol_invalid_nodes",
			Help: "Nodes whose podCIDRs or addresses failed validation: treated as absent (no tunnel flows, no host routes) until fixed."}),
		ConflictingNodes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ovs_netpol_conflicting_nodes",
			Help: "Nodes whose pod CIDRs or InternalIPs overlap those of this node or of an older node: treated as absent (no tunnel flows, no host routes) until fixed."}),
		ComputeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ovs_netpol_compute_seconds", Help: "Time to apply a batch of events to the model and recompute its fragments.", Buckets: buckets}),
		SyncSeconds:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ovs_netpol_sync_seconds", Help: "Time from batch start to bundle committed.", Buckets: buckets}),
		BundleSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ovs_netpol_bundle_seconds",
			Help: "Time to commit one incremental bundle to the bridge (ovs-ofctl run, OVS's atomic commit included; full syncs are in ovs_netpol_sync_seconds only).", Buckets: buckets}),
		RealizationLag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ovs_netpol_realization_lag_seconds",
			Help:    "Time from an object event's arrival (informer handler) to the end of the commit that realized it, queueing and batching included. Events received before the first full sync are not counted (start-up).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}),
	}
	if reg != nil {
		reg.MustRegister(m.Events, m.Bundles, m.FlowMods, m.Flows, m.Groups, m.CTFlushes, m.SyncErrors, m.Rejected, m.ComputeSeconds, m.SyncSeconds,
			m.RefusedOrigins, m.BundleFailures, m.RefusedRetries, m.DuplicatePodIPs, m.InvalidNodes, m.ConflictingNodes, m.BundleSeconds, m.RealizationLag)
	}
	return m
}

// arrivals remembers when each queued object event first arrived (the
// informer handler ran), for the realization lag. The queue coalesces
// repeated events of one object: the earliest arrival counts, since the
// commit that realizes the object realizes all of them.
type arrivals struct {
	mu sync.Mutex
	at map[item]time.Time
}

// note records an object event's arrival (kinds of API objects only).
func (a *arrivals) note(it item, now time.Time) {
	switch it.kind {
	case "ns", "pod", "policy", "service", "slice", "node":
	default:
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.at == nil {
		a.at = map[item]time.Time{}
	}
	if _, ok := a.at[it]; !ok {
		a.at[it] = now
	}
}

// take removes and returns the arrivals of a batch about to be processed:
// an event arriving during the processing is noted anew (the batch read
// the object before it).
func (a *arrivals) take(batch []item) map[item]time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out map[item]time.Time
	for _, it := range batch {
		if t, ok := a.at[it]; ok {
			if out == nil {
				out = map[item]time.Time{}
			}
			out[it] = t
			delete(a.at, it)
		}
	}
	return out
}

// giveBack returns the arrivals of a batch that failed (it is retried):
// the earlier arrival of an item wins.
func (a *arrivals) giveBack(taken map[item]time.Time) {
	if len(taken) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.at == nil {
		a.at = map[item]time.Time{}
	}
	for it, t := range taken {
		if cur, ok := a.at[it]; !ok || t.Before(cur) {
			a.at[it] = t
		}
	}
}

// realized observes the realization lag of a batch's events after its
// commit (err nil), or gives their arrivals back for the retry.
func (c *Controller) realized(taken map[item]time.Time, err error, now time.Time) {
	if err != nil {
		c.arrivals.giveBack(taken)
		return
	}
	for _, t := range taken {
		c.metrics.RealizationLag.Observe(now.Sub(t).Seconds())
	}
}

// noteArrival is the informer handlers' hook: events before the first full
// sync are the start-up listing, not counted.
func (c *Controller) noteArrival(it item) {
	if c.Ready() {
		c.arrivals.note(it, time.Now())
	}
}

// applyTimed is Flows.Apply timed into BundleSeconds.
func (c *Controller) applyTimed(ctx context.Context, ch Change) error {
	start := time.Now()
	err := c.flows.Apply(ctx, ch)
	c.metrics.BundleSeconds.Observe(time.Since(start).Seconds())
	return err
}
