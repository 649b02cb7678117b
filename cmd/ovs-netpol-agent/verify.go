package main

import (
	"context"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/ovs-netpol/ovs-netpol/pkg/inspect"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// verifyInterval is --verify-interval. It is registered on pflag's global
// set, which cobra merges into the command's flags, so that the periodic
// verify needs no more than its start call in main.go.
var verifyInterval = pflag.Duration("verify-interval", 0,
	"run ovs-netpol verify's check on this node's bridge this often and export the result as metrics (0: never); each run lists the cluster and traces every local pod × peer × policy port")

// verifyMaxTraces is --verify-max-traces: a periodic run that would trace
// more connections is skipped (counted as an error): ovs-vswitchd answers
// some 3,000-5,000 traces a second here, on the cores it forwards with.
var verifyMaxTraces = pflag.Int("verify-max-traces", 50000,
	"skip a periodic verify that would trace more connections than this (0: no limit)")

// verifyConfirmDelay: a run that finds mismatches is repeated once after
// this pause and the repeat is what counts, so a change the agent was still
// installing during the first run is not reported.
const verifyConfirmDelay = 2 * time.Second

type verifyMetrics struct {
	mismatches prometheus.Gauge
	lastRun    prometheus.Gauge
	duration   prometheus.Gauge
	traces     prometheus.Gauge
	runs       *prometheus.CounterVec
}

func newVerifyMetrics(reg prometheus.Registerer) *verifyMetrics {
	m := &verifyMetrics{
		mismatches: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ovs_netpol_verify_mismatches",
			Help: "Connections where the last periodic verify found the bridge disagreeing with the policy model (0 when all agree)."}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ovs_netpol_verify_last_run_timestamp_seconds",
			Help: "Unix time at which the last periodic verify finished (successfully or not)."}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ovs_netpol_verify_last_duration_seconds",
			Help: "How long the last periodic verify took (listing the cluster, compiling, tracing)."}),
		traces: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ovs_netpol_verify_last_traces",
			Help: "Connections traced by the last periodic verify."}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ovs_netpol_verify_runs_total",
			Help: "Periodic verify runs by result: agree, mismatch, error."}, []string{"result"}),
	}
	reg.MustRegister(m.mismatches, m.lastRun, m.duration, m.traces, m.runs)
	for _, r := range []string{"agree", "mismatch", "error"} {
		m.runs.WithLabelValues(r)
	}
	return m
}

// startVerifier runs verify every --verify-interval (when set) once the
// agent is ready, in the background.
func startVerifier(ctx context.Context, client kubernetes.Interface, b inspect.Bridge, ready func() bool, reg prometheus.Registerer, log logrus.FieldLogger) {
	if *verifyInterval <= 0 {
		return
	}
	m := newVerifyMetrics(reg)
	log = log.WithField("component", "verify")
	log.WithField("interval", verifyInterval.String()).Info("periodic verify enabled")
	go func() {
		t := time.NewTicker(*verifyInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if !ready() {
				continue
			}
			verifyOnce(ctx, client, b, m, log)
		}
	}()
}

func verifyOnce(ctx context.Context, client kubernetes.Interface, b inspect.Bridge, m *verifyMetrics, log logrus.FieldLogger) {
	start := time.Now()
	res, err := verifyBridge(ctx, client, b)
	if err == nil && len(res.Mismatches)+len(res.ServiceMismatches) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(verifyConfirmDelay):
		}
		res, err = verifyBridge(ctx, client, b)
	}
	m.lastRun.SetToCurrentTime()
	m.duration.Set(time.Since(start).Seconds())
	if err != nil {
		if ctx.Err() == nil {
			m.runs.WithLabelValues("error").Inc()
			log.WithError(err).Warn("periodic verify failed")
		}
		return
	}
	traces, mismatches := verifyTotals(res)
	m.mismatches.Set(float64(len(mismatches)))
	m.traces.Set(float64(traces))
	fields := logrus.Fields{"traces": traces, "mismatches": len(mismatches), "duration": time.Since(start).Round(time.Millisecond).String()}
	if len(mismatches) == 0 {
		m.runs.WithLabelValues("agree").Inc()
		log.WithFields(fields).Info("periodic verify: the bridge agrees with the model")
		return
	}
	m.runs.WithLabelValues("mismatch").Inc()
	log.WithFields(fields).Warn("periodic verify: the bridge disagrees with the model (run `ovs-netpol verify` on this node for the matrix)")
	const shown = 10
	for i, c := range mismatches {
		if i == shown {
			log.Warnf("... and %d more", len(mismatches)-shown)
			break
		}
		log.WithFields(logrus.Fields{"from": printable.String(c.From), "to": printable.String(c.To), "probe": c.Probe.String(),
			"model": printable.String(c.Model), "bridge": c.Bridge, "last_flow": c.Decisive}).Warn("verify mismatch")
	}
}

// verifyTotals counts a run's connections and mismatches at pod addresses
// and through Services' cluster IPs alike.
func verifyTotals(res *inspect.VerifyResult) (traces int, mismatches []inspect.VerifyCell) {
	return res.Traces + res.ServiceTraces, slices.Concat(res.Mismatches, res.ServiceMismatches)
}

func verifyBridge(ctx context.Context, client kubernetes.Interface, b inspect.Bridge) (*inspect.VerifyResult, error) {
	ac, err := b.AgentConfig(ctx)
	if err != nil {
		return nil, err
	}
	objs, err := inspect.LoadCluster(ctx, noNodeList{client})
	if err != nil {
		return nil, err
	}
	e, _, err := inspect.NewExplainer(objs, ac.Mode)
	if err != nil {
		return nil, err
	}
	v, err := inspect.OpenNodeView(ctx, b, objs)
	if err != nil {
		return nil, err
	}
	return e.Verify(ctx, v, inspect.VerifyOptions{MaxTraces: *verifyMaxTraces})
}

// noNodeList lists no Nodes: the agent may only get its own Node (RBAC),
// and verify needs no other node's addresses (its own come from the
// configuration it published).
type noNodeList struct{ kubernetes.Interface }

func (c noNodeList) CoreV1() typedcorev1.CoreV1Interface { return noNodeCore{c.Interface.CoreV1()} }

type noNodeCore struct{ typedcorev1.CoreV1Interface }

func (c noNodeCore) Nodes() typedcorev1.NodeInterface { return emptyNodes{c.CoreV1Interface.Nodes()} }

type emptyNodes struct{ typedcorev1.NodeInterface }

func (emptyNodes) List(context.Context, metav1.ListOptions) (*corev1.NodeList, error) {
	return &corev1.NodeList{}, nil
}
