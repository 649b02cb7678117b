package flowsync

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/internal/netpoltest"
	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// TestEnsureMetersOnOVS: meters are added once, left alone when they are
// as wanted, modified when the rate or burst changes; other meters stay.
func TestEnsureMetersOnOVS(t *testing.T) {
	s := ovstest.Start(t)
	inst := newBridge(t, s, "br0")
	ctx := context.Background()
	if _, err := s.Ofctl("-O", "OpenFlow15", "add-meter", "br0", "meter=7,pktps,band=type=drop,rate=1"); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name          string
		meters        []Meter
		added, modded int
	}{
		{"first", []Meter{{ID: 0x4e0001, Rate: 100, Burst: 20}, {ID: 0x4e0002, Rate: 50}}, 2, 0},
		{"again", []Meter{{ID: 0x4e0001, Rate: 100, Burst: 20}, {ID: 0x4e0002, Rate: 50}}, 0, 0},
		{"new rate", []Meter{{ID: 0x4e0001, Rate: 10, Burst: 20}, {ID: 0x4e0002, Rate: 50}}, 0, 1},
		{"burst added", []Meter{{ID: 0x4e0001, Rate: 10, Burst: 20}, {ID: 0x4e0002, Rate: 50, Burst: 5}}, 0, 1},
	}
	for _, st := range steps {
		added, modded, err := inst.EnsureMeters(ctx, st.meters)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if added != st.added || modded != st.modded {
			t.Errorf("%s: added %d, modified %d; want %d, %d", st.name, added, modded, st.added, st.modded)
		}
	}
	out, err := s.Ofctl("-O", "OpenFlow15", "dump-meters", "br0")
	if err != nil {
		t.Fatal(err)
	}
	got := parseMeters(out)
	want := map[uint32]string{
		7:        "pktps bands= type=drop rate=1",
		0x4e0001: "pktps burst bands= type=drop rate=10 burst_size=20",
		0x4e0002: "pktps burst bands= type=drop rate=50 burst_size=5",
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("meter %d: %q, want %q (dump: %s)", id, got[id], w, out)
		}
	}
	if _, _, err := inst.EnsureMeters(ctx, []Meter{{ID: 3, Rate: 0}}); err == nil {
		t.Error("a meter of rate 0 was accepted")
	}
}

// TestAuditFlowsRoundTrip: the compiler's audit flows (packet-ins with
// userdata and a meter) are written as OVS prints them, so a second full
// sync finds every flow unchanged.
func TestAuditFlowsRoundTrip(t *testing.T) {
	s := ovstest.Start(t)
	inst := newBridge(t, s, "br0")
	ctx := context.Background()
	if _, _, err := inst.EnsureMeters(ctx, []Meter{{ID: compiler.DefaultAuditDenyMeter, Rate: 100, Burst: 20}, {ID: compiler.DefaultAuditAllowMeter, Rate: 100}}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(4, 12))
	f := netpoltest.NewFixture(netpoltest.Options{DualStack: true})
	netpoltest.Randomize(rng, f)
	// Policies: isolation drops and rule allows become packet-ins too.
	for _, p := range netpoltest.RandomPolicies(rng, f, 8) {
		f.Cluster.AddPolicy(p)
	}
	// The largest note: a namespace name of 63 characters and more
	// policies of 253 characters than a note names isolate a pod.
	long := strings.Repeat("n", 63)
	f.Cluster.AddNamespace(&model.Namespace{Name: long, Labels: map[string]string{"kubernetes.io/metadata.name": long}})
	f.Cluster.AddPod(&model.Pod{UID: "long-pod", Namespace: long, Name: "p", Node: "node-1",
		IPs: []netip.Addr{netip.MustParseAddr("10.89.200.2"), netip.MustParseAddr("fd00:89::200:2")}})
	for i := range 20 {
		f.Cluster.AddPolicy(&model.Policy{Namespace: long, Name: fmt.Sprintf("%02d", i) + strings.Repeat("p", 251),
			PodSelector: labels.Everything(), AffectsIngress: true, AffectsEgress: true})
	}
	for _, ns := range f.Cluster.Namespaces {
		ns.Audit = model.AuditDeny | model.AuditAllow
	}
	cfg := compiler.Config{Node: "node-1", Audit: compiler.AuditConfig{DenyMeter: compiler.DefaultAuditDenyMeter, AllowMeter: compiler.DefaultAuditAllowMeter}}
	cfg.Bindings = compiler.DefaultBindings(f.Cluster, "node-1", nil)
	res, err := compiler.Compile(f.Cluster, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	longest := 0
	for _, fl := range res.Flows {
		if strings.HasPrefix(fl.Actions, "controller(") {
			switch {
			case !strings.Contains(fl.Actions, "goto_table"):
				kinds["deny"]++
			case fl.Priority == compiler.PrioAuditDefault:
				kinds["not isolated"]++
			default:
				kinds["rule"]++
			}
			longest = max(longest, len(fl.Actions))
		}
	}
	if kinds["deny"] == 0 || kinds["not isolated"] == 0 || kinds["rule"] == 0 {
		t.Fatalf("audit flows compiled: %v; want every kind", kinds)
	}
	audit := kinds["deny"] + kinds["not isolated"] + kinds["rule"]
	if _, err := inst.SyncAll(ctx, res.Flows, res.Groups); err != nil {
		t.Fatal(err)
	}
	st, err := inst.SyncAll(ctx, res.Flows, res.Groups)
	if err != nil {
		t.Fatal(err)
	}
	if st.Added+st.Replaced+st.Deleted != 0 || st.Unchanged != len(res.Flows) {
		t.Errorf("second sync of %d flows (%d with packet-ins): %v", len(res.Flows), audit, st)
	}
	t.Logf("%d flows, %d of them audit packet-ins (%v; the longest action %d characters, about %d bytes of userdata), unchanged on the second sync",
		len(res.Flows), audit, kinds, longest, longest/3)
}

// TestFlowBeforeMeterIsUnmetered records OVS 3.1's behaviour the agent
// works around (controller.ReinstallMetered): a flow whose
// controller(meter_id=M) was added before meter M existed is not metered,
// not even once M exists; adding the same flow again binds it to M, and
// modifying M keeps it bound.
func TestFlowBeforeMeterIsUnmetered(t *testing.T) {
	s := ovstest.Start(t)
	inst := newBridge(t, s, "br0")
	ctx := context.Background()
	flow := openflow.Flow{Table: 0, Priority: 1, Cookie: openflow.NewCookie(openflow.KindPod, "pod/a/b"), Match: "ip", Actions: "controller(userdata=01.02,meter_id=9)"}
	datapath := func() string {
		t.Helper()
		out, err := s.Appctl("ofproto/trace", "br0", "in_port=LOCAL,udp,nw_src=10.0.0.1,nw_dst=10.0.0.2")
		if err != nil {
			t.Fatal(err)
		}
		_, actions, _ := strings.Cut(out, "Datapath actions: ")
		return strings.TrimSpace(actions)
	}
	if err := inst.Apply(ctx, []Mod{{Op: Add, Flow: flow}}); err != nil {
		t.Fatal(err)
	}
	before := datapath()
	if _, _, err := inst.EnsureMeters(ctx, []Meter{{ID: 9, Rate: 10}}); err != nil {
		t.Fatal(err)
	}
	after := datapath()
	if err := inst.Apply(ctx, []Mod{{Op: Add, Flow: flow}}); err != nil {
		t.Fatal(err)
	}
	readded := datapath()
	t.Logf("added before the meter: %s\nmeter created: %s\nflow added again: %s", before, after, readded)
	if strings.Contains(before, "meter(") || strings.Contains(after, "meter(") {
		t.Errorf("the flow added before its meter is metered (OVS changed: controller.ReinstallMetered may go)")
	}
	if !strings.Contains(readded, "meter(") {
		t.Errorf("the flow added again is not metered: %s", readded)
	}
	// A meter modified in place (the agent restarted with another
	// --audit-rate) keeps its flows.
	if _, modified, err := inst.EnsureMeters(ctx, []Meter{{ID: 9, Rate: 1000, Burst: 5}}); err != nil || modified != 1 {
		t.Fatalf("modified %d, %v", modified, err)
	}
	if got := datapath(); !strings.Contains(got, "meter(") {
		t.Errorf("the flow is not metered after its meter was modified: %s", got)
	}
}
