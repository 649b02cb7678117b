package controller

import (
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
	ComputeSeconds  prometheus.Histogram
	SyncSeconds     prometheus.Histogram
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
			Help: "Objects that could not be used (malformed annotation, invalid or oversized policy, bad pod IP)."}, []string{"kind"}),
		RefusedOrigins: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ovs_netpol_refused_origins",
			Help: "Origins (policy rules, pods, Services, the node) whose flows OVS refused: left off the bridge (fail closed) and retried."}),
		BundleFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "ovs_netpol_bundle_failures_total",
			Help: "Bundles OVS refused as a whole (then applied origin by origin)."}),
		RefusedRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "ovs_netpol_refused_origin_retries_total",
			Help: "Retries of refused origins."}),
		DuplicatePodIPs: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ovs_netpol_duplicate_pod_ips",
			Help: "Addresses claimed by more than one active pod (the oldest pod keeps the address)."}),
		ComputeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ovs_netpol_compute_seconds", Help: "Time to apply a batch of events to the model and recompute its fragments.", Buckets: buckets}),
		SyncSeconds:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ovs_netpol_sync_seconds", Help: "Time from batch start to bundle committed.", Buckets: buckets}),
	}
	if reg != nil {
		reg.MustRegister(m.Events, m.Bundles, m.FlowMods, m.Flows, m.Groups, m.CTFlushes, m.SyncErrors, m.Rejected, m.ComputeSeconds, m.SyncSeconds,
			m.RefusedOrigins, m.BundleFailures, m.RefusedRetries, m.DuplicatePodIPs)
	}
	return m
}
