package flowsync

import (
	"context"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

func TestParseFlowStats(t *testing.T) {
	cases := []struct {
		name    string
		line    string
		want    FlowStats
		conjID  uint32
		isConj  bool
		wantErr string
	}{
		{
			name: "conj_id flow",
			line: " cookie=0x4e03000000000001, duration=5.656s, table=30, n_packets=3, n_bytes=126, idle_age=1, priority=30000,conj_id=5 actions=goto_table:40",
			want: FlowStats{Table: 30, Priority: 30000, Cookie: 0x4e03000000000001, Match: "conj_id=5", Actions: "goto_table:40", Packets: 3, Bytes: 126},
			// decimal as OVS prints it
			conjID: 5, isConj: true,
		},
		{
			name: "isolation drop with large counters",
			line: " cookie=0x4e02abcdef012345, duration=100.5s, table=40, n_packets=18446744073709551615, n_bytes=99999999999, idle_age=0, hard_age=3, priority=20000,ip,nw_dst=10.88.1.10 actions=drop",
			want: FlowStats{Table: 40, Priority: 20000, Cookie: 0x4e02abcdef012345, Match: "ip,nw_dst=10.88.1.10", Actions: "drop", Packets: 1<<64 - 1, Bytes: 99999999999},
		},
		{
			name: "default priority, actions with commas",
			line: " cookie=0x4e01000000000000, duration=1s, table=0, n_packets=0, n_bytes=0, idle_age=1, arp actions=ct(commit,zone=64000),goto_table:60",
			want: FlowStats{Table: 0, Priority: 32768, Cookie: 0x4e01000000000000, Match: "arp", Actions: "ct(commit,zone=64000),goto_table:60"},
		},
		{
			name:    "no counters (--no-stats) is refused",
			line:    " cookie=0x4e01000000000000, table=0, priority=0 actions=drop",
			wantErr: "without n_packets",
		},
		{
			name:    "no actions",
			line:    " cookie=0x1, table=0, n_packets=1, n_bytes=1, priority=0",
			wantErr: "without actions",
		},
		{
			name:    "bad counter",
			line:    " cookie=0x1, table=0, n_packets=x, n_bytes=1, priority=0 actions=drop",
			wantErr: "bad n_packets",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFlowStats(tc.line)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
			id, ok := got.ConjID()
			if ok != tc.isConj || id != tc.conjID {
				t.Fatalf("ConjID() = %d, %v; want %d, %v", id, ok, tc.conjID, tc.isConj)
			}
		})
	}
}

// TestDumpStatsOnOVS reads counters of a real ovs-vswitchd: packets sent
// through the pipeline (packet-out) are counted on the conj_id flow of the
// conjunction they complete (its dimension flows count nothing); an "add"
// replacing the flow keeps its counters, a delete and add starts them from
// zero; foreign flows are not dumped.
func TestDumpStatsOnOVS(t *testing.T) {
	s := ovstest.Start(t)
	in := newBridge(t, s, "br-stats")
	ctx := context.Background()
	rule := openflow.NewCookie(openflow.KindRule, "rule/ns/p/ingress/0")
	flows := strings.Join([]string{
		"table=0,priority=10,cookie=" + openflow.Ours.String() + ",ip actions=goto_table:40",
		"table=40,priority=30000,cookie=" + rule.String() + ",ip,nw_src=10.88.1.10 actions=conjunction(7,1/2)",
		"table=40,priority=30000,cookie=" + rule.String() + ",udp,tp_dst=2000 actions=conjunction(7,2/2)",
		"table=40,priority=30000,cookie=" + rule.String() + ",conj_id=7 actions=drop",
		"table=40,priority=0,cookie=0x1 actions=drop", // not ours
	}, "\n")
	if err := s.AddFlows("br-stats", flows); err != nil {
		t.Fatal(err)
	}
	// Ethernet + IPv4 (10.88.1.10 -> 10.88.1.11, UDP) + UDP 1000 -> 2000.
	pkt := "00000000000200000000000108004500001c0000000040110000" + "0a58010a" + "0a58010b" + "03e807d000080000"
	send := func(n int) {
		for range n {
			if _, err := s.Ofctl("-O", "OpenFlow15", "packet-out", "br-stats", "in_port=controller packet="+pkt+" actions=resubmit(,0)"); err != nil {
				t.Fatal(err)
			}
		}
	}
	conj := func() FlowStats {
		t.Helper()
		got, err := in.DumpStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out FlowStats
		found := 0
		for _, f := range got {
			if !f.Cookie.IsOurs() {
				t.Fatalf("foreign flow dumped: %+v", f)
			}
			if id, ok := f.ConjID(); ok && id == 7 {
				out = f
				found++
			} else if f.Table == 40 && f.Packets != 0 {
				t.Errorf("dimension flow counted packets: %+v", f)
			}
		}
		if found != 1 {
			t.Fatalf("%d conj_id=7 flows in %+v", found, got)
		}
		return out
	}
	send(3)
	if f := conj(); f.Packets != 3 || f.Bytes != 3*42 || f.Table != 40 || f.Priority != 30000 || f.Cookie != rule {
		t.Fatalf("after 3 packets: %+v", f)
	}
	// An add replacing the flow (other cookie) keeps the counters.
	other := openflow.NewCookie(openflow.KindRule, "rule/ns/q/ingress/0")
	if err := in.Apply(ctx, []Mod{{Op: Add, Flow: fl(40, 30000, other, match(openflow.ConjID(7)))}}); err != nil {
		t.Fatal(err)
	}
	send(1)
	if f := conj(); f.Packets != 4 || f.Cookie != other {
		t.Fatalf("after a replacing add and 1 packet: %+v (want 4 packets, kept)", f)
	}
	// Deleted and added again in one bundle: from zero.
	f := fl(40, 30000, other, match(openflow.ConjID(7)))
	if err := in.Apply(ctx, []Mod{{Op: Delete, Flow: f}, {Op: Add, Flow: f}}); err != nil {
		t.Fatal(err)
	}
	send(2)
	if f := conj(); f.Packets != 2 {
		t.Fatalf("after delete, add and 2 packets: %+v (want 2: a re-added flow counts from zero)", f)
	}
}
