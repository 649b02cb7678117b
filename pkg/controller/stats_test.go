package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

func ruleCookieOf(ns, name string, d model.Direction, i int) openflow.Cookie {
	return compiler.RuleCookie(compiler.RuleKey(&model.Policy{Namespace: ns, Name: name}, d, i))
}

// TestFlowTotals: counters of the bridge's flows, dump after dump, become
// monotonic totals per rule and per isolated pod.
func TestFlowTotals(t *testing.T) {
	rA := ruleLabels{"x", "p", "ingress", "0"}
	rB := ruleLabels{"x", "p", "egress", "0"}
	rC := ruleLabels{"y", "q", "ingress", "1"}
	ckA, ckB, ckC := ruleCookieOf("x", "p", model.Ingress, 0), ruleCookieOf("x", "p", model.Egress, 0), ruleCookieOf("y", "q", model.Ingress, 1)
	ckPod := compiler.PodCookie(&model.Pod{Namespace: "x", Name: "a"})
	podA := podLabels{namespace: "x", pod: "a"}
	view := func(conj map[uint32]ruleLabels) *statsView {
		v := &statsView{conj: conj, rules: map[openflow.Cookie]ruleLabels{ckA: rA, ckB: rB, ckC: rC},
			pods: map[openflow.Cookie]podLabels{ckPod: podA}, ruleSet: map[ruleLabels]bool{rA: true, rB: true, rC: true}}
		return v
	}
	full := view(map[uint32]ruleLabels{5: rA, 6: rB, 9: rC})
	conjFlow := func(table uint8, prio uint16, id uint32, ck openflow.Cookie, packets uint64) FlowCounter {
		return FlowCounter{Table: table, Priority: prio, Cookie: ck, Match: fmt.Sprintf("conj_id=%d", id), Packets: packets, Bytes: packets * 60}
	}
	c5 := func(p uint64) FlowCounter { return conjFlow(40, 30000, 5, ckA, p) }
	type step struct {
		flows  []FlowCounter
		view   *statsView // nil: full
		rules  map[ruleLabels]uint64
		pods   map[podLabels]uint64
		resets uint64
		tables map[uint8]int // checked when set
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"conj_id flows (any tier) and direct allows count for their rules; dimension flows and other tables do not", []step{
			{flows: []FlowCounter{
				c5(10),
				conjFlow(30, 29999, 6, ckB, 3), // tier 1
				{Table: 40, Priority: 30000, Cookie: ckA, Match: "ip,nw_src=10.1.1.2", Packets: 100}, // a dimension
				{Table: 20, Priority: 100, Cookie: openflow.NewCookie(openflow.KindPipeline, "p"), Match: "ct_state=+est+trk", Packets: 1000},
				{Table: 40, Priority: 30001, Cookie: ckC, Match: "ip,nw_dst=10.1.1.1", Packets: 7, Bytes: 7 * 60},
			}, rules: map[ruleLabels]uint64{rA: 10, rB: 3, rC: 7}, tables: map[uint8]int{20: 1, 30: 1, 40: 3}},
			{flows: []FlowCounter{c5(15), conjFlow(30, 29999, 6, ckB, 3), {Table: 40, Priority: 30001, Cookie: ckC, Match: "ip,nw_dst=10.1.1.1", Packets: 9, Bytes: 9 * 60}},
				rules: map[ruleLabels]uint64{rA: 15, rB: 3, rC: 9}},
		}},
		{"a flow deleted and added again (counters down) carries on from the total", []step{
			{flows: []FlowCounter{c5(10)}, rules: map[ruleLabels]uint64{rA: 10}},
			{flows: []FlowCounter{c5(4)}, rules: map[ruleLabels]uint64{rA: 14}, resets: 1},
			{flows: []FlowCounter{c5(6)}, rules: map[ruleLabels]uint64{rA: 16}, resets: 1},
		}},
		{"a flow gone for a dump and back counts from zero", []step{
			{flows: []FlowCounter{c5(10)}, rules: map[ruleLabels]uint64{rA: 10}},
			{flows: nil, rules: map[ruleLabels]uint64{rA: 10}},
			{flows: []FlowCounter{c5(3)}, rules: map[ruleLabels]uint64{rA: 13}},
		}},
		{"a conjunction ID handed to another rule (counters kept by the replacing add): new packets are the new rule's", []step{
			{flows: []FlowCounter{c5(10)}, rules: map[ruleLabels]uint64{rA: 10}},
			{flows: []FlowCounter{conjFlow(40, 30000, 5, ckC, 12)}, view: view(map[uint32]ruleLabels{5: rC}), rules: map[ruleLabels]uint64{rA: 10, rC: 2}},
		}},
		{"a conj_id flow the view does not know yet is counted whole once known", []step{
			{flows: []FlowCounter{conjFlow(40, 30000, 9, ckC, 5)}, view: view(map[uint32]ruleLabels{5: rA}), rules: map[ruleLabels]uint64{}},
			{flows: []FlowCounter{conjFlow(40, 30000, 9, ckC, 8)}, rules: map[ruleLabels]uint64{rC: 8}},
		}},
		{"an isolated pod's drops per direction (one flow per address)", []step{
			{flows: []FlowCounter{
				{Table: 30, Priority: 20000, Cookie: ckPod, Match: "in_port=10", Packets: 4},
				{Table: 40, Priority: 20000, Cookie: ckPod, Match: "ip,nw_dst=10.1.1.1", Packets: 1},
				{Table: 40, Priority: 20000, Cookie: ckPod, Match: "ipv6,ipv6_dst=fd00::1", Packets: 1},
				{Table: 40, Priority: 0, Cookie: openflow.NewCookie(openflow.KindPipeline, "p"), Match: "", Packets: 50}, // table default
			}, pods: map[podLabels]uint64{{"x", "a", "egress"}: 4, {"x", "a", "ingress"}: 2}},
		}},
		{"rules and pods gone from the model are forgotten", []step{
			{flows: []FlowCounter{c5(10), {Table: 30, Priority: 20000, Cookie: ckPod, Match: "in_port=10", Packets: 4}},
				rules: map[ruleLabels]uint64{rA: 10}, pods: map[podLabels]uint64{{"x", "a", "egress"}: 4}},
			{flows: nil, view: &statsView{conj: map[uint32]ruleLabels{}, rules: map[openflow.Cookie]ruleLabels{}, pods: map[openflow.Cookie]podLabels{},
				ruleSet: map[ruleLabels]bool{rB: true}}, rules: map[ruleLabels]uint64{}},
		}},
		{"a rule with a counted flow is reported from zero", []step{
			{flows: []FlowCounter{c5(0)}, rules: map[ruleLabels]uint64{rA: 0}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tot := newFlowTotals()
			for i, s := range tc.steps {
				v := s.view
				if v == nil {
					v = full
				}
				tables := tot.add(s.flows, v)
				got := map[ruleLabels]uint64{}
				for r, c := range tot.rules {
					got[r] = c.packets
					if c.bytes != c.packets*60 {
						t.Errorf("step %d: %v bytes %d, want %d", i, r, c.bytes, c.packets*60)
					}
				}
				if !maps.Equal(got, s.rules) && !(len(got) == 0 && s.rules == nil) {
					t.Fatalf("step %d: rule totals %v, want %v", i, got, s.rules)
				}
				gotPods := map[podLabels]uint64{}
				for p, c := range tot.pods {
					gotPods[p] = c.packets
				}
				if !maps.Equal(gotPods, s.pods) && !(len(gotPods) == 0 && s.pods == nil) {
					t.Fatalf("step %d: pod totals %v, want %v", i, gotPods, s.pods)
				}
				if tot.resets != s.resets {
					t.Fatalf("step %d: resets %d, want %d", i, tot.resets, s.resets)
				}
				if s.tables != nil && !maps.Equal(tables, s.tables) {
					t.Fatalf("step %d: flows per table %v, want %v", i, tables, s.tables)
				}
			}
		})
	}
}

func TestConjRuleKey(t *testing.T) {
	for in, want := range map[string]string{
		"x/p/ingress/0":                     "x/p/ingress/0",
		"x/p/egress/12/named:80/TCP":        "x/p/egress/12",
		"x/p/ingress/3/named:80/TCP,53/UDP": "x/p/ingress/3",
		"odd":                               "odd",
	} {
		if got := conjRuleKey(in); got != want {
			t.Errorf("conjRuleKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// gathered reads one metric family's samples as "label=value,...": value.
func gathered(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			out[strings.Join(ls, ",")] = sampleValue(m)
		}
	}
	return out
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return -1
}

// TestStatsCollectorOnCompiledFlows: the controller's attribution tables
// (conjunction IDs, rule and pod cookies) give every counted flow the
// compiler made to the right rule or pod: counters are made up per flow,
// and the expected totals follow from the cookies the compiler gives its
// rules' conj_id and direct-allow flows (rules with numeric and named
// ports, an ipBlock rule, a peer-less rule). Flows per table are those
// installed; one dump serves the scrapes within maxAge; a failed dump
// keeps the figures and is counted.
func TestStatsCollectorOnCompiledFlows(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tcp := corev1.ProtocolTCP
	portNum := func(p int32) networkingv1.NetworkPolicyPort {
		v := intstr.FromInt32(p)
		return networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &v}
	}
	portName := func(n string) networkingv1.NetworkPolicyPort {
		v := intstr.FromString(n)
		return networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &v}
	}
	podA := pod("x", "a", "a", "n1", "10.1.1.1", map[string]string{"pod": "a"})
	podA.Spec.Containers = []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: tcp}}}}
	podC := pod("x", "c", "c", "n1", "10.1.1.3", map[string]string{"pod": "c"})
	podC.Spec.Containers = []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9090, Protocol: tcp}}}}
	fromB := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}}}}
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}},
		podA, podC,
		pod("x", "b", "b", "n2", "10.1.1.2", map[string]string{"pod": "b"}),
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "web"}, Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{
				{From: fromB, Ports: []networkingv1.NetworkPolicyPort{portNum(80)}},
				{From: fromB, Ports: []networkingv1.NetworkPolicyPort{portName("http")}}, // two named resolutions
				{}, // allows everything to its targets: direct allows
			},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.0/24"}}}, Ports: []networkingv1.NetworkPolicyPort{portNum(443)}},
			},
		}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny-c"}, Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "c"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		}},
	)
	ports := &memPorts{b: map[string]compiler.Binding{
		"x/a": {OFPort: 10, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}},
		"x/c": {OFPort: 11, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 3}},
	}, ch: make(chan struct{}, 1)}
	flows := &memFlows{}
	c := New(client, ports, flows, Options{Compiler: compiler.Config{Node: "n1"}, Mode: model.ModeV1, CheckInterval: 50 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	eventually(t, "ready", c.Ready)
	eventually(t, "named port flows of both resolutions", func() bool { return flows.has("tp_dst=8080") && flows.has("tp_dst=9090") })

	// Made-up counters: flow i of the dump counted i+1 packets of 100 bytes.
	var mu sync.Mutex
	dumps := 0
	var fail error
	dump := func(context.Context) ([]FlowCounter, error) {
		mu.Lock()
		defer mu.Unlock()
		dumps++
		if fail != nil {
			return nil, fail
		}
		flows.mu.Lock()
		defer flows.mu.Unlock()
		var out []FlowCounter
		for _, f := range flows.flows {
			out = append(out, FlowCounter{Table: f.Table, Priority: f.Priority, Cookie: f.Cookie, Match: f.Match.String()})
		}
		// A total order: every dump numbers the flows alike.
		sort.Slice(out, func(i, j int) bool {
			a, b := out[i], out[j]
			if a.Table != b.Table {
				return a.Table < b.Table
			}
			if a.Priority != b.Priority {
				return a.Priority < b.Priority
			}
			return a.Match < b.Match
		})
		for i := range out {
			out[i].Packets, out[i].Bytes = uint64(i+1), uint64(100*(i+1))
		}
		return out, nil
	}
	// What the totals must be, from the compiler's cookies.
	rules := map[openflow.Cookie]string{}
	for _, r := range []struct {
		d model.Direction
		i int
	}{{model.Ingress, 0}, {model.Ingress, 1}, {model.Ingress, 2}, {model.Egress, 0}} {
		rules[ruleCookieOf("x", "web", r.d, r.i)] = fmt.Sprintf("direction=%s,namespace=x,policy=web,rule=%d", r.d, r.i)
	}
	pods := map[openflow.Cookie]string{
		compiler.PodCookie(&model.Pod{Namespace: "x", Name: "a"}): "namespace=x,pod=a",
		compiler.PodCookie(&model.Pod{Namespace: "x", Name: "c"}): "namespace=x,pod=c",
	}
	want := map[string]float64{}
	wantPods := map[string]float64{}
	tables := map[string]float64{}
	counted := 0
	all, _ := dump(ctx)
	for _, f := range all {
		tables[fmt.Sprintf("name=%s,table=%d", compiler.TableNames[f.Table], f.Table)]++
		if f.Table != 30 && f.Table != 40 {
			continue
		}
		dir := "ingress"
		if f.Table == 30 {
			dir = "egress"
		}
		switch {
		case strings.HasPrefix(f.Match, "conj_id=") || f.Priority == compiler.PrioRuleAllow:
			l, ok := rules[f.Cookie]
			if !ok {
				t.Fatalf("counted flow with an unknown cookie: %+v", f)
			}
			want[l] += float64(f.Packets)
			counted++
		case f.Priority == compiler.PrioIsolation:
			wantPods["direction="+dir+","+pods[f.Cookie]] += float64(f.Packets)
		}
	}
	for table, name := range compiler.TableNames {
		if k := fmt.Sprintf("name=%s,table=%d", name, table); tables[k] == 0 {
			tables[k] = 0
		}
	}

	reg := prometheus.NewRegistry()
	col := NewStatsCollector(c, dump, time.Hour, nil)
	reg.MustRegister(col)
	got := gathered(t, reg, "ovs_netpol_rule_allowed_packets_total")
	if !maps.Equal(got, want) || len(want) != 4 {
		t.Fatalf("allowed packets per rule:\n got %v\nwant %v (4 rules)", got, want)
	}
	if got := gathered(t, reg, "ovs_netpol_pod_denied_packets_total"); !maps.Equal(got, wantPods) || len(wantPods) != 4 {
		t.Fatalf("denied packets per pod:\n got %v\nwant %v (x/a and x/c, both directions)", got, wantPods)
	}
	if got := gathered(t, reg, "ovs_netpol_table_flows"); !maps.Equal(got, tables) {
		t.Fatalf("flows per table:\n got %v\nwant %v", got, tables)
	}
	if got := gathered(t, reg, "ovs_netpol_policies"); got[""] != 2 {
		t.Fatalf("ovs_netpol_policies %v, want 2", got)
	}
	if got := gathered(t, reg, "ovs_netpol_policy_rules"); got["direction=ingress"] != 3 || got["direction=egress"] != 1 {
		t.Fatalf("ovs_netpol_policy_rules %v, want ingress 3, egress 1", got)
	}
	t.Logf("%d counted flows (conj_id and direct allows) attributed to %d rules: %v", counted, len(want), got)

	// Within maxAge: no new dump.
	mu.Lock()
	before := dumps
	mu.Unlock()
	gathered(t, reg, "ovs_netpol_rule_allowed_packets_total")
	mu.Lock()
	if dumps != before {
		t.Fatalf("a scrape within maxAge dumped again (%d -> %d dumps)", before, dumps)
	}
	mu.Unlock()

	// A failed dump: the last figures, and the failure counted.
	col.maxAge = 0
	mu.Lock()
	fail = errors.New("ovs-vswitchd is gone")
	mu.Unlock()
	if got := gathered(t, reg, "ovs_netpol_rule_allowed_packets_total"); !maps.Equal(got, want) {
		t.Fatalf("after a failed dump: %v, want the last figures %v", got, want)
	}
	if got := gathered(t, reg, "ovs_netpol_flow_stats_errors_total"); got[""] < 1 {
		t.Fatalf("ovs_netpol_flow_stats_errors_total %v after a failed dump", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
