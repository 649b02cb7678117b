package compiler_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/internal/netpoltest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

var auditMeters = compiler.AuditConfig{DenyMeter: compiler.DefaultAuditDenyMeter, AllowMeter: compiler.DefaultAuditAllowMeter}

// TestAuditIncrementalEqualsFull: random events, audit annotations of the
// namespaces changing among them, keep the incremental flow set equal to a
// full compile of the same state (and the changed keys reported).
func TestAuditIncrementalEqualsFull(t *testing.T) {
	audited := 0
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 12))
		f := netpoltest.NewFixture(netpoltest.Options{Nodes: 2, DualStack: seed%3 == 0})
		netpoltest.Randomize(rng, f)
		for _, ns := range f.Cluster.Namespaces {
			ns.Audit = model.AuditMode(rng.IntN(4))
		}
		cfg := compiler.Config{Node: "node-1", UplinkPort: 9, NodeIPs: []netip.Addr{netpoltest.NodeIP(1)}, Audit: auditMeters}
		if seed%5 == 0 {
			cfg.Audit.All = model.AuditDeny
		}
		cfg.Bindings = compiler.DefaultBindings(f.Cluster, "node-1", nil, 9)
		inc := compiler.NewIncremental(copyCluster(f.Cluster), cfg)
		flushEqualsFull(t, inc, fmt.Sprintf("seed %d initial", seed))
		prev := byKey(inc.Flows())
		for step := 0; step < 30; step++ {
			var desc string
			if rng.IntN(3) == 0 {
				ns := *inc.Cluster().Namespaces[netpoltest.NamespaceNames[rng.IntN(3)]]
				ns.Audit = model.AuditMode(rng.IntN(4))
				inc.SetNamespace(&ns)
				desc = fmt.Sprintf("namespace %s audit %s", ns.Name, ns.Audit)
			} else {
				desc = randomEvent(rng, f, inc)
			}
			changed, err := inc.Flush()
			if err != nil {
				t.Fatalf("seed %d step %d (%s): %v", seed, step, desc, err)
			}
			full, err := compiler.Compile(inc.Cluster(), inc.Config())
			if err != nil {
				t.Fatal(err)
			}
			got, want := byKey(inc.Flows()), byKey(full.Flows)
			for k, w := range want {
				if g, ok := got[k]; !ok || !g.Equal(w) {
					t.Fatalf("seed %d step %d (%s): incremental has %v, full compile %v", seed, step, desc, g, w)
				}
			}
			for k, g := range got {
				if _, ok := want[k]; !ok {
					t.Fatalf("seed %d step %d (%s): incremental has extra flow %v", seed, step, desc, g)
				}
				if _, ok := packetIn(g); ok {
					audited++
				}
			}
			reported := map[openflow.Key]bool{}
			for _, k := range changed {
				reported[k] = true
			}
			for k, g := range got {
				if p, ok := prev[k]; (!ok || !p.Equal(g)) && !reported[k] {
					t.Fatalf("seed %d step %d (%s): flow %v changed but Flush did not report it", seed, step, desc, g)
				}
			}
			for k := range prev {
				if _, ok := got[k]; !ok && !reported[k] {
					t.Fatalf("seed %d step %d (%s): flow %v removed but not reported", seed, step, desc, prev[k])
				}
			}
			prev = got
		}
	}
	// The test means something only if audit flows were there to compare.
	if audited == 0 {
		t.Fatal("no audit flow in any step")
	}
	t.Logf("%d audit flows compared over 20 seeds × 30 steps", audited)
}

// TestAuditOffIsIdentical: without meters an annotation changes nothing,
// and with meters so does a cluster without audited namespaces: the flow
// set is byte-identical to the one without auditing.
func TestAuditOffIsIdentical(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 3))
		f := netpoltest.NewFixture(netpoltest.Options{Nodes: 2})
		netpoltest.Randomize(rng, f)
		// Policies, so that there are isolation drops and rule allows that
		// auditing would change.
		for _, p := range netpoltest.RandomPolicies(rng, f, 6) {
			f.Cluster.AddPolicy(p)
		}
		cfg := compiler.Config{Node: "node-1", UplinkPort: 9}
		cfg.Bindings = compiler.DefaultBindings(f.Cluster, "node-1", nil, 9)
		base, err := compiler.Compile(f.Cluster, cfg)
		if err != nil {
			t.Fatal(err)
		}
		metered := cfg
		metered.Audit = auditMeters
		annotated := copyCluster(f.Cluster)
		for _, ns := range annotated.Namespaces {
			ns.Audit = model.AuditDeny | model.AuditAllow
		}
		for _, tc := range []struct {
			name string
			c    *model.Cluster
			cfg  compiler.Config
		}{
			{"annotated, no meters", annotated, cfg},
			{"meters, no annotation", f.Cluster, metered},
		} {
			res, err := compiler.Compile(tc.c, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := res.Text(true), base.Text(true); got != want {
				t.Errorf("seed %d %s: the flow set differs from the one without auditing", seed, tc.name)
			}
		}
		// The control: annotated and metered, deny and allow flows change.
		res, err := compiler.Compile(annotated, metered)
		if err != nil {
			t.Fatal(err)
		}
		notes := auditNotes(t, res.Flows)
		kinds := map[string]int{}
		for _, n := range notes {
			kinds[strings.Fields(n)[0]]++
		}
		if kinds["deny"] == 0 || kinds["allow"] == 0 {
			t.Fatalf("seed %d: audited and metered, the fixture has %v audit flows: the comparison above proves nothing", seed, kinds)
		}
	}
}

// auditCluster: namespace "shop" (annotated as given) with pods web and db
// on node-1; policy db-ingress isolates db for ingress and allows web on
// TCP 5432; policy default-deny-egress isolates every pod for egress.
func auditCluster(mode model.AuditMode) *model.Cluster {
	c := model.NewCluster(model.ModeV1)
	c.AddNamespace(&model.Namespace{Name: "shop", Labels: labels.Set{"kubernetes.io/metadata.name": "shop"}, Audit: mode})
	c.AddNamespace(&model.Namespace{Name: "other", Labels: labels.Set{"kubernetes.io/metadata.name": "other"}})
	for i, name := range []string{"web", "db"} {
		c.AddPod(&model.Pod{UID: name, Namespace: "shop", Name: name, Node: "node-1", Labels: labels.Set{"app": name},
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 89, 0, byte(2 + i)})}})
	}
	c.AddPod(&model.Pod{UID: "o", Namespace: "other", Name: "o", Node: "node-1", IPs: []netip.Addr{netip.MustParseAddr("10.89.1.2")}})
	c.AddPolicy(&model.Policy{Namespace: "shop", Name: "db-ingress", PodSelector: labels.SelectorFromSet(labels.Set{"app": "db"}),
		AffectsIngress: true, Ingress: []model.Rule{{
			Peers: []model.Peer{{PodSelector: labels.SelectorFromSet(labels.Set{"app": "web"})}},
			Ports: []model.PortSpec{{Protocol: model.TCP, Port: 5432}}}}})
	c.AddPolicy(&model.Policy{Namespace: "shop", Name: "default-deny-egress", PodSelector: labels.Everything(), AffectsEgress: true})
	c.AddPolicy(&model.Policy{Namespace: "other", Name: "deny-in", PodSelector: labels.Everything(), AffectsIngress: true})
	return c
}

// auditNotes returns the flows with a packet-in action, by table and
// match, with their decoded notes and what follows the packet-in.
func auditNotes(t *testing.T, flows []openflow.Flow) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range flows {
		c, ok := packetIn(f)
		if !ok {
			if slices.ContainsFunc(f.Actions.List(), isController) {
				t.Fatalf("unexpected controller action in %v", f)
			}
			continue
		}
		note, ok := compiler.ParseAuditNote([]byte(c.Userdata))
		if !ok {
			t.Fatalf("%v: userdata %q is not an audit note", f, c.Userdata)
		}
		next := ""
		if l := f.Actions.List(); len(l) > 1 {
			next = openflow.ActionsText(l[1:])
		}
		out[fmt.Sprintf("%d/%d/%s", f.Table, f.Priority, f.Match)] = fmt.Sprintf("%s %s %s meter=%d then=%s",
			note.Verdict, note.Direction, strings.Join(note.Reasons, ","), c.MeterID, next)
	}
	return out
}

// packetIn returns a flow's leading controller action, if it has one.
func packetIn(f openflow.Flow) (openflow.Controller, bool) {
	l := f.Actions.List()
	if len(l) == 0 {
		return openflow.Controller{}, false
	}
	c, ok := l[0].(openflow.Controller)
	return c, ok
}

func isController(a openflow.Action) bool {
	_, ok := a.(openflow.Controller)
	return ok
}

// TestAuditFlows: which flows get a packet-in, with which note and meter,
// for each annotation value; the other namespace's pod is never audited.
func TestAuditFlows(t *testing.T) {
	deny := fmt.Sprint(compiler.DefaultAuditDenyMeter)
	allow := fmt.Sprint(compiler.DefaultAuditAllowMeter)
	denyFlows := map[string]string{
		"30/20000/in_port=12":          "deny egress shop/default-deny-egress meter=" + deny + " then=",
		"30/20000/in_port=11":          "deny egress shop/default-deny-egress meter=" + deny + " then=",
		"40/20000/ip,nw_dst=10.89.0.3": "deny ingress shop/db-ingress meter=" + deny + " then=",
	}
	allowFlows := map[string]string{
		// web is not isolated for ingress (ports: other/o 10, shop/db 11, shop/web 12).
		"40/1/ip,nw_dst=10.89.0.2": "allow ingress - meter=" + allow + " then=goto_table:50",
		// db-ingress rule 0's conj_id flow.
		"40/30000/conj_id=CONJ": "allow ingress shop/db-ingress#0 meter=" + allow + " then=goto_table:50",
	}
	for _, tc := range []struct {
		mode model.AuditMode
		all  model.AuditMode
		want []map[string]string
	}{
		{0, 0, nil},
		{model.AuditDeny, 0, []map[string]string{denyFlows}},
		{model.AuditAllow, 0, []map[string]string{allowFlows}},
		{model.AuditDeny | model.AuditAllow, 0, []map[string]string{denyFlows, allowFlows}},
		{0, model.AuditDeny, []map[string]string{denyFlows, {"40/20000/ip,nw_dst=10.89.1.2": "deny ingress other/deny-in meter=" + deny + " then="}}},
	} {
		t.Run(fmt.Sprintf("%s+all=%s", tc.mode, tc.all), func(t *testing.T) {
			c := auditCluster(tc.mode)
			cfg := compiler.Config{Node: "node-1", Audit: auditMeters}
			cfg.Audit.All = tc.all
			cfg.Bindings = compiler.DefaultBindings(c, "node-1", nil)
			res, err := compiler.Compile(c, cfg)
			if err != nil {
				t.Fatal(err)
			}
			conj := ""
			for id, key := range res.Conjunctions {
				if key == "shop/db-ingress/ingress/0" {
					conj = fmt.Sprint(id)
				}
			}
			want := map[string]string{}
			for _, m := range tc.want {
				for k, v := range m {
					want[strings.Replace(k, "CONJ", conj, 1)] = v
				}
			}
			got := auditNotes(t, res.Flows)
			for k, w := range want {
				if got[k] != w {
					t.Errorf("flow %s: got %q, want %q", k, got[k], w)
				}
			}
			for k, g := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("unexpected audit flow %s: %q", k, g)
				}
			}
		})
	}
}

// TestAuditNoteRoundTrip: notes decode to what was encoded; other userdata
// is not taken for a note.
func TestAuditNoteRoundTrip(t *testing.T) {
	for _, n := range []compiler.AuditNote{
		{Verdict: "deny", Direction: model.Ingress, Reasons: []string{"a/p1", "a/p2"}},
		{Verdict: "allow", Direction: model.Egress, Reasons: []string{"a/p#3"}},
		{Verdict: "allow", Direction: model.Ingress, Reasons: []string{"-"}},
	} {
		got, ok := compiler.ParseAuditNote(n.Bytes())
		if !ok || fmt.Sprint(got) != fmt.Sprint(n) {
			t.Errorf("%v: decoded %v, %v", n, got, ok)
		}
	}
	for _, bad := range []string{"", "ovsnp-audit1", "ovsnp-audit1 deny", "ovsnp-audit1 maybe ingress x", "ovsnp-audit1 deny sideways x", "other deny ingress x", "\x01\x02"} {
		if n, ok := compiler.ParseAuditNote([]byte(bad)); ok {
			t.Errorf("%q decoded as %v", bad, n)
		}
	}
}

// TestAuditManyPolicies: a pod isolated by more policies than a note
// lists names the first ones and counts the rest.
func TestAuditManyPolicies(t *testing.T) {
	c := auditCluster(model.AuditDeny)
	for i := range 20 {
		c.AddPolicy(&model.Policy{Namespace: "shop", Name: fmt.Sprintf("extra-%02d", i), PodSelector: labels.Everything(), AffectsIngress: true})
	}
	cfg := compiler.Config{Node: "node-1", Audit: auditMeters}
	cfg.Bindings = compiler.DefaultBindings(c, "node-1", nil)
	res, err := compiler.Compile(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := auditNotes(t, res.Flows)["40/20000/ip,nw_dst=10.89.0.3"]
	// 21 policies isolate db: db-ingress and extra-00..19; 16 are named.
	want := "deny ingress shop/db-ingress,shop/extra-00,shop/extra-01,shop/extra-02,shop/extra-03,shop/extra-04,shop/extra-05,shop/extra-06,shop/extra-07,shop/extra-08,shop/extra-09,shop/extra-10,shop/extra-11,shop/extra-12,shop/extra-13,shop/extra-14,+5 meter=" + fmt.Sprint(compiler.DefaultAuditDenyMeter) + " then="
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestAuditKeepsVerdicts: with every namespace audited for deny and allow,
// each flow is the flow without auditing but for a leading packet-in
// (controller(...) in place of a drop, or before the same goto), plus
// priority-1 flows of not-isolated pods that do what their table's default
// does after the packet-in: no verdict changes, nothing goes elsewhere.
func TestAuditKeepsVerdicts(t *testing.T) {
	// strip removes a flow's leading packet-in.
	strip := func(f openflow.Flow) (openflow.Flow, bool) {
		if _, ok := packetIn(f); !ok {
			return f, false
		}
		f.Actions = openflow.Do(f.Actions.List()[1:]...)
		return f, true
	}
	audited, extra := 0, 0
	for seed := int64(1); seed <= 10; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 99))
		f := netpoltest.NewFixture(netpoltest.Options{Nodes: 2, DualStack: seed%2 == 0})
		netpoltest.Randomize(rng, f)
		for _, p := range netpoltest.RandomPolicies(rng, f, 6) {
			f.Cluster.AddPolicy(p)
		}
		cfg := compiler.Config{Node: "node-1", UplinkPort: 9, NodeIPs: []netip.Addr{netpoltest.NodeIP(1)}}
		cfg.Bindings = compiler.DefaultBindings(f.Cluster, "node-1", nil, 9)
		off, err := compiler.Compile(f.Cluster, cfg)
		if err != nil {
			t.Fatal(err)
		}
		on := cfg
		on.Audit = auditMeters
		on.Audit.All = model.AuditDeny | model.AuditAllow
		res, err := compiler.Compile(f.Cluster, on)
		if err != nil {
			t.Fatal(err)
		}
		want := byKey(off.Flows)
		defaults := map[uint8]openflow.Flow{}
		for _, w := range off.Flows {
			if w.Priority == compiler.PrioDefault {
				defaults[w.Table] = w
			}
		}
		seen := 0
		for _, g := range res.Flows {
			rest, isAudit := strip(g)
			if slices.ContainsFunc(rest.Actions.List(), isController) {
				t.Fatalf("seed %d: packet-in not first in %v", seed, g)
			}
			if isAudit {
				audited++
			}
			w, ok := want[g.Key()]
			if !ok {
				if !isAudit || g.Priority != compiler.PrioAuditDefault || !rest.SameActions(defaults[g.Table]) {
					t.Fatalf("seed %d: flow %v is not in the compile without auditing", seed, g)
				}
				extra++
				continue
			}
			seen++
			if !rest.SameActions(w) || g.Cookie != w.Cookie {
				t.Fatalf("seed %d: %v without its packet-in is not %v", seed, g, w)
			}
		}
		if seen != len(want) {
			t.Fatalf("seed %d: %d of %d flows without auditing kept", seed, seen, len(want))
		}
	}
	if audited-extra == 0 || extra == 0 {
		t.Fatalf("%d audit flows, %d of them not-isolated ones: not every kind compared", audited, extra)
	}
	t.Logf("%d audit flows (%d of not-isolated pods) compared over 10 seeds", audited, extra)
}
