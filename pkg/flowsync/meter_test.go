package flowsync

import (
	"context"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
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

// TestFlowBeforeMeterIsUnmetered records OVS 3.1's behaviour the agent
// works around (controller.ReinstallMetered): a flow whose
// controller(meter_id=M) was added before meter M existed is not metered,
// not even once M exists; adding the same flow again binds it to M, and
// modifying M keeps it bound.
func TestFlowBeforeMeterIsUnmetered(t *testing.T) {
	s := ovstest.Start(t)
	inst := newBridge(t, s, "br0")
	ctx := context.Background()
	flow := fl(0, 1, openflow.NewCookie(openflow.KindPod, "pod/a/b"), match(openflow.IP), openflow.Controller{Userdata: "\x01\x02", MeterID: 9})
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
