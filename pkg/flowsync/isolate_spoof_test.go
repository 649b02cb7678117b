package flowsync

import (
	"context"
	"fmt"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// TestRefusedPodAddressStaysUnspoofable (found by review): x/a admits x/s
// by a rule; OVS refuses x/s's flows (table 0 full). The refused pod's
// cookie is taken off the bridge, but the rule (another origin) still
// admits x/s's address as a peer. The table-0 drop of x/s's address from
// the gateway must survive: the compiler gives it the node's cookie
// (pkg/compiler TestSpoofDropsCarryTheNodeCookie). With the pod's cookie
// it went with the pod, and a packet from the host claiming x/s's address
// reached x/a.
func TestRefusedPodAddressStaysUnspoofable(t *testing.T) {
	sw := ovstest.Start(t)
	ctx := context.Background()
	node := openflow.NewCookie(openflow.KindNode, "node")
	podS := openflow.NewCookie(openflow.KindPod, "pod/x/s")
	base := []openflow.Flow{
		fl(0, 0, skeletonCookie, match()),
		fl(10, 100, skeletonCookie, match(openflow.IP), openflow.CT{HasTable: true, Table: 20, Zone: 64000, NAT: true}),
		fl(20, 10, skeletonCookie, match(openflow.CTState{Set: openflow.CTTracked}), openflow.Goto(25)),
		fl(25, 0, skeletonCookie, match(), openflow.Goto(30)),
		fl(30, 0, skeletonCookie, match(), openflow.Goto(40)),
		fl(40, 0, skeletonCookie, match(), openflow.Goto(50)),
		fl(50, 100, skeletonCookie, match(openflow.IP), openflow.CT{Commit: true, Zone: 64000}, openflow.Goto(60)),
		fl(60, 0, skeletonCookie, match(), openflow.Output(openflow.PortLocal)),
		fl(0, 105, node, match(openflow.IP, openflow.InPort(openflow.PortLocal), openflow.HostSrc(addr("192.168.0.1"))), openflow.SetReg{N: 0, Value: 1, Mask: 1}, openflow.Goto(10)),
		fl(0, 100, node, match(openflow.IP, openflow.InPort(openflow.PortLocal)), openflow.Goto(10)),
		fl(40, 65000, node, match(openflow.Reg{N: 0, Value: 1, Mask: 1}), openflow.Goto(50)),
		fl(0, 100, podACookie, match(openflow.IP, openflow.InPort(10), openflow.EthSrc{2, 0, 0, 0, 0, 1}, openflow.HostSrc(addr("10.1.1.1"))), openflow.Goto(10)),
		fl(0, 106, node, match(openflow.IP, openflow.InPort(openflow.PortLocal), openflow.HostSrc(addr("10.1.1.1")))),
		fl(40, 20000, podACookie, match(openflow.IP, openflow.HostDst(addr("10.1.1.1")))),
		fl(60, 100, podACookie, match(openflow.IP, openflow.HostDst(addr("10.1.1.1"))), openflow.Output(10)),
		fl(40, 30000, ruleCookie, match(openflow.ConjID(77), openflow.IP), openflow.Goto(50)),
		conjFlow(40, 30000, ruleCookie, match(openflow.IP, openflow.HostDst(addr("10.1.1.1"))), openflow.Conjunction{ID: 77, K: 1, N: 2}),
		conjFlow(40, 30000, ruleCookie, match(openflow.IP, openflow.HostSrc(addr("10.1.1.5"))), openflow.Conjunction{ID: 77, K: 2, N: 2}),
	}
	s := []openflow.Flow{
		fl(0, 100, podS, match(openflow.IP, openflow.InPort(12), openflow.EthSrc{2, 0, 0, 0, 0, 5}, openflow.HostSrc(addr("10.1.1.5"))), openflow.Goto(10)),
		fl(0, 106, node, match(openflow.IP, openflow.InPort(openflow.PortLocal), openflow.HostSrc(addr("10.1.1.5")))),
		fl(60, 100, podS, match(openflow.IP, openflow.HostDst(addr("10.1.1.5"))), openflow.Output(12)),
	}
	sV6 := append(append([]openflow.Flow{}, s...),
		fl(0, 100, podS, match(openflow.IPv6, openflow.InPort(12), openflow.EthSrc{2, 0, 0, 0, 0, 5}, openflow.HostSrc(addr("fd00::5"))), openflow.Goto(10)))
	for n, tc := range []struct {
		name          string
		before, after []openflow.Flow
	}{
		{name: "new-pod-refused", after: s},
		{name: "installed-pod-update-refused", before: s, after: sV6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bridge := fmt.Sprintf("brsp%d", n)
			inst := newBridge(t, sw, bridge)
			for name, port := range map[string]int{"pa": 10, "ps": 12} {
				if err := sw.AddInternalPort(bridge, fmt.Sprintf("%s%d", name, n), port); err != nil {
					t.Fatal(err)
				}
			}
			old := append(append([]openflow.Flow{}, base...), tc.before...)
			if err := inst.Apply(ctx, Diff(old, nil)); err != nil {
				t.Fatal(err)
			}
			limit := 0
			for _, f := range old {
				if f.Table == 0 {
					limit++
				}
			}
			if out, err := sw.Vsctl("--", "--id=@ft", "create", "Flow_Table", fmt.Sprintf("flow_limit=%d", limit), "overflow_policy=refuse",
				"--", "set", "Bridge", bridge, "flow_tables:0=@ft"); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			installed, err := inst.Dump(ctx)
			if err != nil {
				t.Fatal(err)
			}
			mods := Diff(append(append([]openflow.Flow{}, base...), tc.after...), installed)
			cause := inst.ApplyBundle(ctx, mods, nil)
			if cause == nil {
				t.Fatal("x/s's change was accepted: no refusal")
			}
			refused, err := inst.ApplyByOrigin(ctx, mods, nil, cause)
			if err != nil || len(refused) == 0 {
				t.Fatalf("refused %v, err %v; want a refusal", refusalText(refused), err)
			}
			tr, err := sw.Trace(bridge, "in_port=LOCAL,ip,nw_src=10.1.1.5,nw_dst=10.1.1.1,nw_proto=17", "trk,new")
			if err != nil {
				t.Fatal(err)
			}
			if !tr.Dropped {
				t.Fatalf("fail open: with %s refused, a gateway packet with x/s's source reached x/a (ports %v)", refusalText(refused), tr.OutputPorts)
			}
			t.Logf("refused: %s; spoofed packet dropped", refusalText(refused))
		})
	}
}
