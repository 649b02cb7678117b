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
		flow(0, 0, skeletonCookie, "", "drop"),
		flow(10, 100, skeletonCookie, "ip", "ct(table=20,zone=64000,nat)"),
		flow(20, 10, skeletonCookie, "ct_state=+trk", "goto_table:25"),
		flow(25, 0, skeletonCookie, "", "goto_table:30"),
		flow(30, 0, skeletonCookie, "", "goto_table:40"),
		flow(40, 0, skeletonCookie, "", "goto_table:50"),
		flow(50, 100, skeletonCookie, "ip", "ct(commit,zone=64000),goto_table:60"),
		flow(60, 0, skeletonCookie, "", "LOCAL"),
		flow(0, 105, node, "ip,in_port=LOCAL,nw_src=192.168.0.1", "set_field:0x1/0x1->reg0,goto_table:10"),
		flow(0, 100, node, "ip,in_port=LOCAL", "goto_table:10"),
		flow(40, 65000, node, "reg0=0x1/0x1", "goto_table:50"),
		flow(0, 100, podACookie, "ip,in_port=10,dl_src=02:00:00:00:00:01,nw_src=10.1.1.1", "goto_table:10"),
		flow(0, 106, node, "ip,in_port=LOCAL,nw_src=10.1.1.1", "drop"),
		flow(40, 20000, podACookie, "ip,nw_dst=10.1.1.1", "drop"),
		flow(60, 100, podACookie, "ip,nw_dst=10.1.1.1", "output:10"),
		flow(40, 30000, ruleCookie, "conj_id=77,ip", "goto_table:50"),
		flow(40, 30000, ruleCookie, "ip,nw_dst=10.1.1.1", "conjunction(77,1/2)"),
		flow(40, 30000, ruleCookie, "ip,nw_src=10.1.1.5", "conjunction(77,2/2)"),
	}
	s := []openflow.Flow{
		flow(0, 100, podS, "ip,in_port=12,dl_src=02:00:00:00:00:05,nw_src=10.1.1.5", "goto_table:10"),
		flow(0, 106, node, "ip,in_port=LOCAL,nw_src=10.1.1.5", "drop"),
		flow(60, 100, podS, "ip,nw_dst=10.1.1.5", "output:12"),
	}
	sV6 := append(append([]openflow.Flow{}, s...),
		flow(0, 100, podS, "ipv6,in_port=12,dl_src=02:00:00:00:00:05,ipv6_src=fd00::5", "goto_table:10"))
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
			mods := Diff(append(append([]openflow.Flow{}, base...), tc.after...), old)
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
