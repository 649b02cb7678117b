package controller

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// FlowCounter is one of our installed flows with Open vSwitch's counters
// (the agent fills it from flowsync.Installer.DumpStats). Match is as OVS
// prints it: it only identifies the flow from one dump to the next.
type FlowCounter struct {
	Table    uint8
	Priority uint16
	Cookie   openflow.Cookie
	Match    string
	Packets  uint64
	Bytes    uint64
}

// FlowCounters dumps our installed flows with their counters.
type FlowCounters func(ctx context.Context) ([]FlowCounter, error)

// ruleLabels names one policy rule in metric labels.
type ruleLabels struct{ namespace, policy, direction, rule string }

// podLabels names one local pod and a direction in metric labels.
type podLabels struct{ namespace, pod, direction string }

// statsView is what the flow counters are attributed with, read from the
// controller at a scrape.
type statsView struct {
	conj     map[uint32]ruleLabels          // conjunction ID → its rule
	rules    map[openflow.Cookie]ruleLabels // a rule's cookie → the rule
	pods     map[openflow.Cookie]podLabels  // a local pod's cookie (direction unset)
	ruleSet  map[ruleLabels]bool            // every rule of the model
	policies int
	byDir    map[model.Direction]int // rules per direction
}

// statsView reads the attribution tables (Controller.mu held briefly).
func (c *Controller) statsView() *statsView {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.inc.Cluster()
	v := &statsView{conj: map[uint32]ruleLabels{}, rules: map[openflow.Cookie]ruleLabels{}, pods: map[openflow.Cookie]podLabels{},
		ruleSet: map[ruleLabels]bool{}, policies: len(cl.Policies), byDir: map[model.Direction]int{}}
	byKey := map[string]ruleLabels{}
	for _, pol := range cl.Policies {
		for _, d := range []model.Direction{model.Ingress, model.Egress} {
			for i := range pol.Rules(d) {
				key := compiler.RuleKey(pol, d, i)
				l := ruleLabels{pol.Namespace, pol.Name, string(d), strconv.Itoa(i)}
				byKey[key] = l
				v.rules[compiler.RuleCookie(key)] = l
				v.ruleSet[l] = true
				v.byDir[d]++
			}
		}
	}
	for id, key := range c.inc.Conjunctions() {
		if l, ok := byKey[conjRuleKey(key)]; ok {
			v.conj[id] = l
		}
	}
	// Only pods attached here have flows of their own (the drops).
	for key := range c.inc.Config().Bindings {
		if p := cl.Pods[c.podUIDs[key]]; p != nil && p.Node == c.opts.Compiler.Node {
			v.pods[compiler.PodCookie(p)] = podLabels{namespace: p.Namespace, pod: p.Name}
		}
	}
	return v
}

// conjRuleKey is the rule key of a conjunction key: "ns/name/direction/
// index", which a rule with named ports follows with "/named:PORTS" per
// resolution (see compiler.groupFlows). Names and namespaces hold no "/".
func conjRuleKey(key string) string {
	parts := strings.SplitN(key, "/", 5)
	if len(parts) < 4 {
		return key
	}
	return strings.Join(parts[:4], "/")
}

// flowID identifies an installed flow across dumps (OpenFlow's identity).
type flowID struct {
	table    uint8
	priority uint16
	match    string
}

type counts struct{ packets, bytes uint64 }

// flowTotals turns the counters of the bridge's flows, which restart when
// a flow is deleted and added again, into monotonic totals per rule and per
// isolated pod: each dump adds, per flow, what it counted since the
// previous dump (all of it for a flow not seen before or whose counters went
// down). A flow deleted and added again between two dumps that by the
// second has counted more than before is counted from its earlier value (a
// small undercount, never a double count: OVS's duration restarts also when
// an add replaces a flow and keeps its counters, so it cannot tell).
type flowTotals struct {
	last   map[flowID]counts
	rules  map[ruleLabels]counts
	pods   map[podLabels]counts
	resets uint64 // flows whose counters went down (deleted and added again)
}

func newFlowTotals() *flowTotals {
	return &flowTotals{last: map[flowID]counts{}, rules: map[ruleLabels]counts{}, pods: map[podLabels]counts{}}
}

// Priorities of the conj_id flows (conjunction tiers, see compiler/tiers.go).
const (
	conjPrioHigh = compiler.PrioRuleConj
	conjPrioLow  = compiler.PrioRuleConj - compiler.MaxConjunctionTiers + 1
)

// owner says whose counters a flow carries: a rule's (conj_id flows and
// direct allows of tables 30 and 40) or an isolated pod's (its drop flows
// of tables 30 and 40); ok false for any other flow.
func (v *statsView) owner(f FlowCounter) (rule ruleLabels, pod podLabels, isRule, ok bool) {
	if f.Table != compiler.TableEgress && f.Table != compiler.TableIngress {
		return rule, pod, false, false
	}
	switch {
	case f.Priority >= conjPrioLow && f.Priority <= conjPrioHigh:
		id, isConj := conjIDOf(f.Match)
		if !isConj {
			return rule, pod, false, false // a dimension flow: counts nothing useful
		}
		rule, ok = v.conj[id]
		return rule, pod, true, ok
	case f.Priority == compiler.PrioRuleAllow && f.Cookie.Kind() == openflow.KindRule:
		rule, ok = v.rules[f.Cookie]
		return rule, pod, true, ok
	case f.Priority == compiler.PrioIsolation && f.Cookie.Kind() == openflow.KindPod:
		pod, ok = v.pods[f.Cookie]
		pod.direction = string(model.Ingress)
		if f.Table == compiler.TableEgress {
			pod.direction = string(model.Egress)
		}
		return rule, pod, false, ok
	}
	return rule, pod, false, false
}

// conjIDOf reads N of a "conj_id=N" match.
func conjIDOf(match string) (uint32, bool) {
	for _, tok := range strings.Split(match, ",") {
		if v, ok := strings.CutPrefix(tok, "conj_id="); ok {
			id, err := strconv.ParseUint(v, 0, 32)
			return uint32(id), err == nil
		}
	}
	return 0, false
}

// add folds one dump into the totals and returns the flows per table.
// Rules and pods gone from the model (or no longer on this node) are
// forgotten; a rule or pod with a counted flow on the bridge is reported,
// from zero, even before its first packet.
func (t *flowTotals) add(flows []FlowCounter, v *statsView) map[uint8]int {
	tables := map[uint8]int{}
	next := make(map[flowID]counts, len(t.last))
	for _, f := range flows {
		tables[f.Table]++
		rule, pod, isRule, ok := v.owner(f)
		if !ok {
			// Not a counted flow, or one the view does not know yet (added
			// by a commit after the view was read): not remembered, so the
			// next dump counts all of it.
			continue
		}
		id := flowID{f.Table, f.Priority, f.Match}
		cur := counts{f.Packets, f.Bytes}
		next[id] = cur
		delta := cur
		if prev, seen := t.last[id]; seen {
			if cur.packets >= prev.packets && cur.bytes >= prev.bytes {
				delta = counts{cur.packets - prev.packets, cur.bytes - prev.bytes}
			} else {
				t.resets++
			}
		}
		if isRule {
			c := t.rules[rule]
			t.rules[rule] = counts{c.packets + delta.packets, c.bytes + delta.bytes}
		} else {
			c := t.pods[pod]
			t.pods[pod] = counts{c.packets + delta.packets, c.bytes + delta.bytes}
		}
	}
	t.last = next
	for r := range t.rules {
		if !v.ruleSet[r] {
			delete(t.rules, r)
		}
	}
	local := map[podLabels]bool{}
	for _, p := range v.pods {
		local[podLabels{p.namespace, p.pod, ""}] = true
	}
	for p := range t.pods {
		if !local[podLabels{p.namespace, p.pod, ""}] {
			delete(t.pods, p)
		}
	}
	return tables
}

// StatsCollector exposes, on a scrape, what the bridge's flow counters say
// in the terms of the policies: allowed packets and bytes per rule, denied
// packets per isolated pod and direction, flows per table, and the policies
// and rules in the model. One dump-flows serves all scrapes within maxAge.
type StatsCollector struct {
	c      *Controller
	dump   FlowCounters
	maxAge time.Duration
	log    logrus.FieldLogger

	mu      sync.Mutex
	totals  *flowTotals
	at      time.Time
	metrics []prometheus.Metric
	errors  prometheus.Counter
	seconds prometheus.Gauge
}

var (
	descRulePackets = prometheus.NewDesc("ovs_netpol_rule_allowed_packets_total",
		"Packets a NetworkPolicy rule allowed on this node, counted on its conj_id and direct-allow flows (table 30 egress, 40 ingress): the packets that open a connection (a TCP SYN and its retransmissions, a UDP flow's first packet); the rest of a connection passes as established (table 20) and is not counted. Monotonic across flows re-added; a flow shared by several rules counts for the rule whose cookie it carries.",
		[]string{"namespace", "policy", "direction", "rule"}, nil)
	descRuleBytes = prometheus.NewDesc("ovs_netpol_rule_allowed_bytes_total",
		"Bytes of the packets counted in ovs_netpol_rule_allowed_packets_total.",
		[]string{"namespace", "policy", "direction", "rule"}, nil)
	descPodDenied = prometheus.NewDesc("ovs_netpol_pod_denied_packets_total",
		"Packets dropped because an isolated local pod's policies allowed none of them (its isolation drop flows: table 30 for egress, 40 for ingress). Retransmissions of a refused connection count each time.",
		[]string{"namespace", "pod", "direction"}, nil)
	descPodDeniedBytes = prometheus.NewDesc("ovs_netpol_pod_denied_bytes_total",
		"Bytes of the packets counted in ovs_netpol_pod_denied_packets_total.",
		[]string{"namespace", "pod", "direction"}, nil)
	descTableFlows = prometheus.NewDesc("ovs_netpol_table_flows",
		"Flows of the agent installed on the bridge per table, as dumped from Open vSwitch at the scrape (at most a few seconds old).",
		[]string{"table", "name"}, nil)
	descPolicies = prometheus.NewDesc("ovs_netpol_policies",
		"NetworkPolicies in the agent's model (all namespaces; a rejected one counts as its fail-closed stand-in).", nil, nil)
	descPolicyRules = prometheus.NewDesc("ovs_netpol_policy_rules",
		"Rules of the NetworkPolicies in the agent's model, per direction.", []string{"direction"}, nil)
	descResets = prometheus.NewDesc("ovs_netpol_flow_counter_resets_total",
		"Counted flows whose Open vSwitch counters went down between two dumps (deleted and added again); the totals above carry on from their last value.", nil, nil)
)

// NewStatsCollector makes the collector; register it with the agent's
// registry. maxAge (e.g. 2 s) bounds how old a scrape's figures may be.
func NewStatsCollector(c *Controller, dump FlowCounters, maxAge time.Duration, log logrus.FieldLogger) *StatsCollector {
	if log == nil {
		log = logrus.StandardLogger()
	}
	return &StatsCollector{c: c, dump: dump, maxAge: maxAge, log: log, totals: newFlowTotals(),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "ovs_netpol_flow_stats_errors_total",
			Help: "Flow dumps for the per-rule and per-pod counters that failed (the scrape then shows the last figures)."}),
		seconds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ovs_netpol_flow_stats_dump_seconds",
			Help: "Time the last flow dump with counters took (ovs-ofctl dump-flows and parsing)."}),
	}
}

// Describe implements prometheus.Collector.
func (s *StatsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRulePackets, descRuleBytes, descPodDenied, descPodDeniedBytes, descTableFlows, descPolicies, descPolicyRules, descResets} {
		ch <- d
	}
	s.errors.Describe(ch)
	s.seconds.Describe(ch)
}

// Collect implements prometheus.Collector.
func (s *StatsCollector) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.metrics == nil || time.Since(s.at) >= s.maxAge {
		s.refresh()
	}
	for _, m := range s.metrics {
		ch <- m
	}
	ch <- s.errors
	ch <- s.seconds
}

// refresh dumps the flows and rebuilds the metrics (s.mu held).
func (s *StatsCollector) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	flows, err := s.dump(ctx)
	if err != nil {
		s.errors.Inc()
		s.log.WithError(err).Warn("dumping flow counters for metrics failed; the scrape shows the last figures")
		s.at = time.Now() // not retried by every scrape
		return
	}
	// Read after the dump: a flow a commit added meanwhile is known to it.
	v := s.c.statsView()
	tables := s.totals.add(flows, v)
	s.seconds.Set(time.Since(start).Seconds())
	s.at = time.Now()
	s.metrics = buildStatsMetrics(s.totals, tables, v)
}

// buildStatsMetrics renders the totals, table counts and model figures.
func buildStatsMetrics(t *flowTotals, tables map[uint8]int, v *statsView) []prometheus.Metric {
	var out []prometheus.Metric
	for r, c := range t.rules {
		out = append(out,
			prometheus.MustNewConstMetric(descRulePackets, prometheus.CounterValue, float64(c.packets), r.namespace, r.policy, r.direction, r.rule),
			prometheus.MustNewConstMetric(descRuleBytes, prometheus.CounterValue, float64(c.bytes), r.namespace, r.policy, r.direction, r.rule))
	}
	for p, c := range t.pods {
		out = append(out,
			prometheus.MustNewConstMetric(descPodDenied, prometheus.CounterValue, float64(c.packets), p.namespace, p.pod, p.direction),
			prometheus.MustNewConstMetric(descPodDeniedBytes, prometheus.CounterValue, float64(c.bytes), p.namespace, p.pod, p.direction))
	}
	seen := map[uint8]bool{}
	for table, name := range compiler.TableNames {
		seen[table] = true
		out = append(out, prometheus.MustNewConstMetric(descTableFlows, prometheus.GaugeValue, float64(tables[table]), strconv.Itoa(int(table)), name))
	}
	for table, n := range tables {
		if !seen[table] {
			out = append(out, prometheus.MustNewConstMetric(descTableFlows, prometheus.GaugeValue, float64(n), strconv.Itoa(int(table)), ""))
		}
	}
	out = append(out, prometheus.MustNewConstMetric(descPolicies, prometheus.GaugeValue, float64(v.policies)))
	for _, d := range []model.Direction{model.Ingress, model.Egress} {
		out = append(out, prometheus.MustNewConstMetric(descPolicyRules, prometheus.GaugeValue, float64(v.byDir[d]), string(d)))
	}
	out = append(out, prometheus.MustNewConstMetric(descResets, prometheus.CounterValue, float64(t.resets)))
	return out
}
