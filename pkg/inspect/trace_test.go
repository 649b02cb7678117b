package inspect

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// The testdata/trace-*.txt files are real ofproto/trace output of
// ovs-vswitchd 3.1 with flows/golden/seed-v1-service.flows installed (ports
// 10 db, 11 frontend, 12 backend).
func TestParseTrace(t *testing.T) {
	cases := []struct {
		file       string
		delivered  bool
		outputs    []string
		passes     int
		lastTable  uint8
		lastPrio   uint16
		lastCookie openflow.Cookie
		lastMiss   bool
		conjID     uint32 // of the table-40 step, if any
		finalDst   string // nw_dst of the last pass
	}{
		{file: "trace-allowed.txt", delivered: true, outputs: []string{"10"}, passes: 2,
			lastTable: 60, lastPrio: 100, lastCookie: 0x4e02cd15f7cf0099, conjID: 152097546, finalDst: "10.244.1.10"},
		{file: "trace-denied.txt", delivered: false, passes: 2,
			lastTable: 40, lastPrio: 20000, lastCookie: 0x4e02cd15f7cf0099, finalDst: "10.244.1.10"},
		{file: "trace-local.txt", delivered: true, outputs: []string{"LOCAL"}, passes: 2,
			lastTable: 60, lastPrio: 0, lastCookie: 0x4e0111fd413aeee3, finalDst: "8.8.8.8"},
		{file: "trace-spoof.txt", delivered: false, passes: 1,
			lastTable: 0, lastPrio: 0, lastCookie: 0x4e0111fd413aeee3, finalDst: "8.8.8.8"},
		// Through a Service: a group bucket DNATs, a third pass decides on
		// the backend's address.
		{file: "trace-service.txt", delivered: true, outputs: []string{"10"}, passes: 3,
			lastTable: 60, lastPrio: 100, lastCookie: 0x4e02cd15f7cf0099, conjID: 152097546, finalDst: "10.244.1.10"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			tr, err := ParseTrace("packet", string(raw))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Delivered != c.delivered || !slices.Equal(tr.Outputs, c.outputs) || len(tr.Passes) != c.passes {
				t.Fatalf("delivered %v outputs %q passes %d, want %v %q %d", tr.Delivered, tr.Outputs, len(tr.Passes), c.delivered, c.outputs, c.passes)
			}
			last := tr.Decisive()
			if last.Table != c.lastTable || last.Priority != c.lastPrio || last.Cookie != c.lastCookie || last.Miss != c.lastMiss {
				t.Fatalf("decisive step %s, want table %d priority %d cookie %s", last, c.lastTable, c.lastPrio, c.lastCookie)
			}
			if last.Drops() == c.delivered {
				t.Fatalf("decisive step %s: Drops() %v for a delivered=%v trace", last, last.Drops(), c.delivered)
			}
			var conj uint32
			for _, s := range tr.Steps {
				if s.Table == 40 && s.ConjID() != 0 {
					conj = s.ConjID()
				}
				if s.Pass < 0 || s.Pass >= len(tr.Passes) {
					t.Fatalf("step %s in pass %d of %d", s, s.Pass, len(tr.Passes))
				}
			}
			if conj != c.conjID {
				t.Fatalf("conj_id of table 40: %d, want %d", conj, c.conjID)
			}
			if got := tr.FinalField("nw_dst"); got != c.finalDst {
				t.Fatalf("final nw_dst %q, want %q", got, c.finalDst)
			}
			// Every step of the first pass starts at table 0; the thaw
			// lines of later passes are not steps.
			if tr.Steps[0].Table != 0 || tr.Steps[0].Pass != 0 {
				t.Fatalf("first step %s (pass %d)", tr.Steps[0], tr.Steps[0].Pass)
			}
			for _, s := range tr.Steps {
				for _, a := range s.Actions {
					if strings.HasPrefix(a, "->") || a == "thaw" || strings.HasPrefix(a, "Resuming") {
						t.Fatalf("step %s kept a comment line %q as an action", s, a)
					}
				}
			}
		})
	}
}

func TestParseTraceMissAndErrors(t *testing.T) {
	miss := `Flow: udp,in_port=12,vlan_tci=0x0000,nw_src=10.244.1.12,nw_dst=8.8.8.8,tp_src=1,tp_dst=53

bridge("br-int")
----------------
 0. udp,in_port=12, priority 200
    goto_table:99
99. No match.
    drop

Final flow: unchanged
Megaflow: recirc_id=0,eth,udp,in_port=12,nw_frag=no
Datapath actions: drop
`
	tr, err := ParseTrace("p", miss)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Delivered || len(tr.Steps) != 2 || !tr.Steps[1].Miss || tr.Steps[1].Table != 99 || len(tr.Steps[1].Actions) != 0 {
		t.Fatalf("miss trace parsed as %+v", tr.Steps)
	}
	if tr.Steps[0].Cookie != 0 || tr.Steps[0].Match != "udp,in_port=12" || tr.Steps[0].Priority != 200 {
		t.Fatalf("cookie-less step parsed as %+v", tr.Steps[0])
	}
	if !strings.Contains(tr.Verdict(), "table 99") {
		t.Fatalf("verdict %q does not name the table", tr.Verdict())
	}
	for _, bad := range []string{"", "Flow: x\n", "Flow: x\n 0. what is this\nDatapath actions: drop\n"} {
		if _, err := ParseTrace("p", bad); err == nil {
			t.Fatalf("ParseTrace(%q) gave no error", bad)
		}
	}
}

func TestDatapathOutputs(t *testing.T) {
	cases := map[string][]string{
		"drop":                                   nil,
		"ct(zone=64000,nat),recirc(0x1)":         nil,
		"ct(commit,zone=64000,mark=0/0x2),2":     {"2"},
		"set(eth(dst=0a:58:0a:f4:01:0a)),2,3":    {"2", "3"},
		"clone(ct(commit),4),userspace(pid=0,x)": {"4"},
	}
	for in, want := range cases {
		if got := datapathOutputs(in); !slices.Equal(got, want) {
			t.Errorf("datapathOutputs(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestBridgeTraceOnOVS traces through a real ovs-vswitchd holding the seed's
// golden flows: the control socket is found in the run directory, the
// allowed connection is delivered to the db's port through the rule's
// conj_id flow, the denied one is dropped by db's isolation flow, and a
// bad packet is an error naming it.
func TestBridgeTraceOnOVS(t *testing.T) {
	sw := ovstest.Start(t)
	if err := sw.AddBridge("br-int"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		name string
		port int
	}{{"db", 10}, {"frontend", 11}, {"backend", 12}} {
		if err := sw.AddInternalPort("br-int", p.name, p.port); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile("../../flows/golden/seed-v1-service.flows")
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.InstallBundle("br-int", string(golden)); err != nil {
		t.Fatal(err)
	}
	sock, err := VswitchdControlSocket(sw.Dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control socket %s", sock)
	b := Bridge{Name: "br-int", RunDir: sw.Dir}
	ctx := context.Background()
	cases := []struct {
		name, packet string
		delivered    bool
		outputs      []string
		lastTable    uint8
	}{
		{"frontend to db 6379 (allowed by the rule)", "in_port=11,tcp,dl_src=0a:58:0a:f4:01:0b,nw_src=10.244.1.11,nw_dst=10.244.1.10,tcp_src=40000,tcp_dst=6379", true, []string{"10"}, 60},
		{"backend to db 6379 (db isolated)", "in_port=12,tcp,dl_src=0a:58:0a:f4:01:0c,nw_src=10.244.1.12,nw_dst=10.244.1.10,tcp_src=40000,tcp_dst=6379", false, nil, 40},
		{"frontend to the db Service", "in_port=11,tcp,dl_src=0a:58:0a:f4:01:0b,nw_src=10.244.1.11,nw_dst=10.96.0.10,tcp_src=40000,tcp_dst=6379", true, []string{"10"}, 60},
		{"node to db (node-local)", "in_port=LOCAL,udp,nw_src=172.18.0.1,nw_dst=10.244.1.10,udp_src=40000,udp_dst=53", true, []string{"10"}, 60},
	}
	for _, c := range cases {
		start := time.Now()
		tr, err := b.Trace(ctx, c.packet)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		t.Logf("%s: %s (%d steps, %d passes, %v)", c.name, tr.Verdict(), len(tr.Steps), len(tr.Passes), time.Since(start).Round(time.Microsecond))
		if tr.Delivered != c.delivered || !slices.Equal(tr.Outputs, c.outputs) || tr.Decisive().Table != c.lastTable {
			t.Fatalf("%s: delivered %v to %q, last table %d; want %v %q %d\n%s", c.name, tr.Delivered, tr.Outputs, tr.Decisive().Table, c.delivered, c.outputs, c.lastTable, tr.Raw)
		}
	}
	if _, err := b.Trace(ctx, "in_port=11,udp,tp_dst=5"); err == nil || !strings.Contains(err.Error(), "prerequisites") {
		t.Fatalf("a packet ofproto/trace refuses: error %v", err)
	}
	if _, err := (Bridge{RunDir: t.TempDir()}).Trace(ctx, "in_port=1"); err == nil || !strings.Contains(err.Error(), "control socket") {
		t.Fatalf("an empty run directory: error %v", err)
	}
}

func TestTraceStepDrops(t *testing.T) {
	tests := []struct {
		name string
		step TraceStep
		want bool
	}{
		{"drop", TraceStep{Actions: []string{"drop"}}, true},
		{"miss", TraceStep{Miss: true}, true},
		{"audited isolation drop", TraceStep{Actions: []string{"controller(userdata=6f.76,meter_id=5111809)"}}, true},
		{"audited allow goes on", TraceStep{Actions: []string{"controller(userdata=6f.76,meter_id=5111810)", "goto_table:50"}}, false},
		{"goto", TraceStep{Actions: []string{"goto_table:40"}}, false},
		{"output", TraceStep{Actions: []string{"output:3"}}, false},
	}
	for _, tc := range tests {
		if got := tc.step.Drops(); got != tc.want {
			t.Errorf("%s: Drops() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A packet sent into a flow-based Geneve tunnel, traced by ovs-vswitchd 3.1
// on an overlay node (TestOverlayExplainOnOVS's setup): with an underlay
// route, the trace follows the encapsulated packet into the underlay's
// bridge (not our flows: left out) and the datapath pushes the tunnel
// header; without one, the datapath drops it and says why. Either way the
// pipeline's decision was to send it to node-3 (judged as sent); the
// verdict tells the two apart.
func TestParseTraceTunnel(t *testing.T) {
	node3 := &model.Node{Name: "node-3", InternalIPs: []netip.Addr{netip.MustParseAddr("172.29.3.2")},
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.91.3.0/24")}}
	cases := []struct {
		file      string
		delivered bool
		reports   []string
		verdict   string
	}{
		{"trace-tunnel.txt", true, nil, "sent into the tunnel (port 4096, tun_dst 172.29.3.2)"},
		{"trace-tunnel-noroute.txt", false, []string{"native tunnel routing failed"},
			"sent into the tunnel (port 4096, tun_dst 172.29.3.2), which the datapath could not encapsulate (native tunnel routing failed: check the underlay's route to the endpoint)"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			tr, err := ParseTrace("packet", string(raw))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Delivered != c.delivered || !slices.Equal(tr.Outputs, []string{"4096"}) || tr.TunnelDst != "172.29.3.2" || !slices.Equal(tr.Reports, c.reports) {
				t.Fatalf("delivered %v outputs %q tun_dst %q reports %q, want %v [4096] 172.29.3.2 %q",
					tr.Delivered, tr.Outputs, tr.TunnelDst, tr.Reports, c.delivered, c.reports)
			}
			last := tr.Decisive()
			if last.Table != 60 || last.Cookie != 0x4e04f8748ea2b6ba {
				t.Fatalf("decisive step %s: want node-3's table 60 flow, not the underlay bridge's", last)
			}
			for _, s := range tr.Steps {
				if slices.Contains(s.Actions, "NORMAL") || strings.HasPrefix(strings.Join(s.Actions, ","), ">>") {
					t.Fatalf("step %s is the underlay bridge's or a report", s)
				}
			}
			allowed := probe{allowed: true, enforces: "egress", expect: "4096", tunnelPort: "4096", tunnelTo: node3}
			if m := allowed.judge(tr); m != "" {
				t.Errorf("allowed to node-3: mismatch %q", m)
			}
			if got := allowed.verdict(tr); got != c.verdict {
				t.Errorf("verdict %q, want %q", got, c.verdict)
			}
			denied := probe{allowed: false, enforces: "egress", tunnelPort: "4096"}
			if m := denied.judge(tr); !strings.HasPrefix(m, "the model denies it (egress here) but the bridge sent into the tunnel") {
				t.Errorf("denied but tunneled: mismatch %q", m)
			}
			elsewhere := probe{allowed: true, enforces: "egress", expect: "4096", tunnelPort: "4096",
				tunnelTo: &model.Node{Name: "node-2", InternalIPs: []netip.Addr{netip.MustParseAddr("172.29.2.2")}}}
			if m := elsewhere.judge(tr); !strings.Contains(m, "node node-2's tunnel endpoint is 172.29.2.2") {
				t.Errorf("sent to the wrong node: mismatch %q", m)
			}
		})
	}
}
