package flowsync

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Origins of the refusal tests: each a cookie and its flows (and groups).
var (
	skeletonCookie = openflow.NewCookie(openflow.KindPipeline, "pipeline")
	podACookie     = openflow.NewCookie(openflow.KindPod, "pod/x/a")
	podBCookie     = openflow.NewCookie(openflow.KindPod, "pod/x/b")
	ruleCookie     = openflow.NewCookie(openflow.KindRule, "rule/x/web/ingress/0")
	svcCookie      = openflow.NewCookie(openflow.KindService, "service/x/db")
)

// hugeActions is an action list over OpenFlow's 64 KiB message limit:
// ovs-ofctl refuses it ("input too big").
func hugeActions() []openflow.Action {
	var out []openflow.Action
	for range 5000 {
		out = append(out, openflow.SetReg{N: 1, Value: 1, Mask: 0xffffffff})
	}
	return append(out, openflow.Goto(50))
}

// gotoTable is the action list that continues in table t.
func gotoTable(t uint8) []openflow.Action { return []openflow.Action{openflow.Goto(t)} }

// baseOrigins are origins OVS accepts: a skeleton flow, two pods, a
// Service with its group.
func baseOrigins() ([]openflow.Flow, []openflow.Group) {
	gid := openflow.GroupIDOurs | 7
	return []openflow.Flow{
			fl(0, 0, skeletonCookie, match()),
			fl(40, 0, skeletonCookie, match(), openflow.Goto(50)),
			fl(0, 100, podACookie, match(openflow.IP, openflow.InPort(10), openflow.EthSrc{2, 0, 0, 0, 0, 0x0a}, openflow.HostSrc(addr("10.1.1.10"))), openflow.Goto(10)),
			fl(40, 20000, podACookie, match(openflow.IP, openflow.HostDst(addr("10.1.1.10")))),
			fl(0, 100, podBCookie, match(openflow.IP, openflow.InPort(11), openflow.EthSrc{2, 0, 0, 0, 0, 0x0b}, openflow.HostSrc(addr("10.1.1.11"))), openflow.Goto(10)),
			fl(25, 100, svcCookie, match(openflow.TCP, openflow.HostDst(addr("10.96.0.10")), openflow.PortDst(5432)), openflow.ToGroup(gid)),
		}, []openflow.Group{{ID: gid, Cookie: svcCookie, Fields: "ip_src,ip_dst,tcp_src,tcp_dst",
			Buckets: []openflow.Bucket{{ID: 0, Actions: []openflow.Action{openflow.CT{Commit: true, HasTable: true, Table: 26, Zone: 64000,
				NATDst: netip.AddrPortFrom(addr("10.1.1.11"), 5432)}}}}}}
}

// ruleFlows is the rule origin: n peer flows in table 40 and its conj_id
// flow; bad makes one of them refused (see TestApplyByOriginOnOVS).
func ruleFlows(n int, actions []openflow.Action) []openflow.Flow {
	var out []openflow.Flow
	for i := 0; i < n; i++ {
		out = append(out, conjFlow(40, 30000, ruleCookie, match(openflow.IP, openflow.HostSrc(netip.AddrFrom4([4]byte{10, 2, byte(i / 250), byte(i%250 + 1)}))),
			openflow.Conjunction{ID: 77, K: 1, N: 2}))
	}
	out = append(out, conjFlow(40, 30000, ruleCookie, match(openflow.IP, openflow.HostDst(addr("10.1.1.10"))), openflow.Conjunction{ID: 77, K: 2, N: 2}))
	return append(out, fl(40, 30000, ruleCookie, match(openflow.ConjID(77), openflow.IP), actions...))
}

// cookiesOnBridge counts the bridge's flows by cookie.
func cookiesOnBridge(t *testing.T, inst *Installer) map[openflow.Cookie]int {
	t.Helper()
	flows, err := inst.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[openflow.Cookie]int{}
	for _, f := range flows {
		out[f.Cookie]++
	}
	return out
}

// TestApplyByOriginOnOVS: a bundle refused as a whole, by ovs-ofctl or by
// ovs-vswitchd, is applied origin by origin on a real switch: every origin
// the switch accepts is installed, the refused one is reported with OVS's
// error and left off the bridge (also the flows it had before), and a
// refused skeleton leaves everything as it was.
func TestApplyByOriginOnOVS(t *testing.T) {
	sw := ovstest.Start(t)
	ctx := context.Background()
	cases := []struct {
		name string
		// setup prepares the bridge (e.g. a table limit) before the change.
		setup func(t *testing.T, bridge string)
		// before is a version of the rule origin installed first; its flows
		// must be gone afterwards when the new version is refused.
		before []openflow.Flow
		rule   []openflow.Flow
		// skeleton adds a refused skeleton flow to the change.
		skeleton  bool
		wantInErr string
	}{
		{name: "action-list-over-64KiB-refused-by-ovs-ofctl", rule: ruleFlows(3, hugeActions()), wantInErr: "input too big"},
		{name: "goto-to-an-earlier-table", rule: ruleFlows(3, gotoTable(10)), wantInErr: "OFPBIC_BAD_TABLE_ID"},
		{name: "table-full-refused-by-ovs-vswitchd",
			setup: func(t *testing.T, bridge string) {
				// Table 40 holds at most 10 flows; the change brings 4 of
				// the other origins' and 42 of the rule's.
				if out, err := sw.Vsctl("--", "--id=@ft", "create", "Flow_Table", "flow_limit=10", "overflow_policy=refuse",
					"--", "set", "Bridge", bridge, "flow_tables:40=@ft"); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
			},
			rule: ruleFlows(40, gotoTable(50)), wantInErr: "OFPFMFC_TABLE_FULL"},
		{name: "update-refused-removes-the-old-version",
			before: append(ruleFlows(2, gotoTable(50)),
				// A key the refused version would take over from a pod.
				conjFlow(40, 30000, podBCookie, match(openflow.IP, openflow.HostSrc(addr("10.9.9.9"))), openflow.Conjunction{ID: 77, K: 1, N: 2})),
			rule:      append(ruleFlows(2, hugeActions()), conjFlow(40, 30000, ruleCookie, match(openflow.IP, openflow.HostSrc(addr("10.9.9.9"))), openflow.Conjunction{ID: 77, K: 1, N: 2})),
			wantInErr: "input too big"},
		{name: "refused-skeleton-applies-nothing", rule: ruleFlows(2, gotoTable(50)), skeleton: true, wantInErr: "OFPBIC_BAD_TABLE_ID"},
	}
	for n, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bridge := fmt.Sprintf("br%d", n)
			inst := newBridge(t, sw, bridge)
			if tc.setup != nil {
				tc.setup(t, bridge)
			}
			if tc.before != nil {
				if err := inst.Apply(ctx, Diff(tc.before, nil)); err != nil {
					t.Fatal(err)
				}
			}
			flows, groups := baseOrigins()
			if tc.skeleton {
				flows = append(flows, fl(60, 5, skeletonCookie, match(openflow.IP), openflow.Goto(0)))
			}
			flows = append(flows, tc.rule...)
			mods, gmods := Mods(flows, nil, groups, nil)
			cause := inst.ApplyBundle(ctx, mods, gmods)
			if cause == nil {
				t.Fatal("the whole bundle was accepted: the test's refused origin is not refused")
			}
			refused, err := inst.ApplyByOrigin(ctx, mods, gmods, cause)
			t.Logf("whole bundle: %v; refused origins: %v; err: %v", firstLine(cause), refusalText(refused), err)
			on := cookiesOnBridge(t, inst)
			if tc.skeleton {
				if !errors.Is(err, ErrPipelineRefused) || len(refused) != 1 || refused[0].Cookie != skeletonCookie {
					t.Fatalf("refused skeleton: got %v, %v; want only the skeleton and ErrPipelineRefused", refusalText(refused), err)
				}
				if len(on) != 0 {
					t.Fatalf("a refused skeleton left flows installed: %v", on)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(refused) != 1 || refused[0].Cookie != ruleCookie || !strings.Contains(refused[0].Err.Error(), tc.wantInErr) {
				t.Fatalf("refused = %v; want the rule %s refused with %q", refusalText(refused), ruleCookie, tc.wantInErr)
			}
			want := map[openflow.Cookie]int{skeletonCookie: 2, podACookie: 2, podBCookie: 1, svcCookie: 1}
			for c, n := range want {
				if on[c] != n {
					t.Errorf("origin %s: %d flows installed, want %d (all: %v)", c, on[c], n, on)
				}
			}
			if on[ruleCookie] != 0 || len(on) != len(want) {
				t.Errorf("refused rule left flows installed: %v", on)
			}
			g, err := inst.DumpGroups(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(g) != 1 {
				t.Errorf("the Service's group is not installed: %v", g)
			}
		})
	}
}

// TestSyncByOriginOnOVS: a full sync (onto an empty switch, and onto one
// holding an older state) installs every accepted origin and reports the
// refused one; once its flows are fixed, the next sync installs it.
func TestSyncByOriginOnOVS(t *testing.T) {
	sw := ovstest.Start(t)
	ctx := context.Background()
	for n, older := range []bool{false, true} {
		t.Run(fmt.Sprintf("older-state-%v", older), func(t *testing.T) {
			inst := newBridge(t, sw, fmt.Sprintf("brs%d", n))
			flows, groups := baseOrigins()
			if older {
				if _, err := inst.SyncAll(ctx, append(flows[:2:2], ruleFlows(1, gotoTable(50))...), nil); err != nil {
					t.Fatal(err)
				}
			}
			desired := append(append([]openflow.Flow(nil), flows...), ruleFlows(2, hugeActions())...)
			if _, err := inst.SyncAll(ctx, desired, groups); err == nil {
				t.Fatal("SyncAll accepted a refused flow")
			}
			st, refused, err := inst.SyncByOrigin(ctx, desired, groups)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("sync: %v, refused %v", st, refusalText(refused))
			if len(refused) != 1 || refused[0].Cookie != ruleCookie {
				t.Fatalf("refused = %v, want the rule only", refusalText(refused))
			}
			on := cookiesOnBridge(t, inst)
			if on[ruleCookie] != 0 || on[podACookie] != 2 || on[svcCookie] != 1 {
				t.Fatalf("installed by origin: %v", on)
			}
			fixed := append(append([]openflow.Flow(nil), flows...), ruleFlows(2, gotoTable(50))...)
			if _, refused, err = inst.SyncByOrigin(ctx, fixed, groups); err != nil || len(refused) != 0 {
				t.Fatalf("fixed sync: refused %v, err %v", refusalText(refused), err)
			}
			if on := cookiesOnBridge(t, inst); on[ruleCookie] != 4 {
				t.Fatalf("fixed rule not installed: %v", on)
			}
		})
	}
}

// TestBisectCost: the refused parts are found with about 2·k·log2(n)
// bundles, every other part applied once.
func TestBisectCost(t *testing.T) {
	for _, tc := range []struct {
		parts   int
		refused []int
	}{{1, []int{0}}, {2, []int{1}}, {1000, []int{7}}, {1000, []int{3, 500, 999}}, {16, nil}} {
		t.Run(fmt.Sprintf("%d-parts-%d-refused", tc.parts, len(tc.refused)), func(t *testing.T) {
			bad := map[openflow.Cookie]bool{}
			var parts []part
			for i := 0; i < tc.parts; i++ {
				c := openflow.NewCookie(openflow.KindRule, fmt.Sprint(i))
				parts = append(parts, part{cookie: c})
				for _, r := range tc.refused {
					if r == i {
						bad[c] = true
					}
				}
			}
			applied := map[openflow.Cookie]int{}
			bundles := 0
			apply := func(ps []part) error {
				bundles++
				for _, p := range ps {
					if bad[p.cookie] {
						return fmt.Errorf("refused %s", p.cookie)
					}
				}
				for _, p := range ps {
					applied[p.cookie]++
				}
				return nil
			}
			got := bisect(context.Background(), parts, false, apply)
			t.Logf("%d parts, %d refused: %d bundles", tc.parts, len(tc.refused), bundles)
			if len(got) != len(bad) {
				t.Fatalf("refused %v, want %d", refusalText(got), len(bad))
			}
			for _, r := range got {
				if !bad[r.Cookie] || r.Err.Error() != "refused "+r.Cookie.String() {
					t.Fatalf("wrong refusal %v", r)
				}
			}
			for _, p := range parts {
				if want := map[bool]int{true: 0, false: 1}[bad[p.cookie]]; applied[p.cookie] != want {
					t.Fatalf("part %s applied %d times, want %d", p.cookie, applied[p.cookie], want)
				}
			}
		})
	}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func refusalText(rs []Refusal) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Cookie.String()+": "+firstLine(r.Err))
	}
	return "[" + strings.Join(out, "; ") + "]"
}

// TestSyncByOriginCommonPathCost measures (and logs: no timed assertion)
// a full install of 20,000 flows of 2,000 origins onto an empty bridge
// through SyncAll and through SyncByOrigin: without a refusal both run the
// same dump, diff and bundle.
func TestSyncByOriginCommonPathCost(t *testing.T) {
	sw := ovstest.Start(t)
	ctx := context.Background()
	var desired []openflow.Flow
	for i := 0; i < 20000; i++ {
		c := openflow.NewCookie(openflow.KindRule, fmt.Sprint(i/10))
		desired = append(desired, fl(40, 100, c, match(openflow.IP, openflow.HostSrc(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))), openflow.Goto(50)))
	}
	times := map[string][]time.Duration{}
	for round := 0; round < 3; round++ {
		for _, byOrigin := range []bool{false, true} {
			name := map[bool]string{false: "SyncAll", true: "SyncByOrigin"}[byOrigin]
			inst := newBridge(t, sw, fmt.Sprintf("brc%d%v", round, byOrigin))
			start := time.Now()
			var err error
			if byOrigin {
				var refused []Refusal
				_, refused, err = inst.SyncByOrigin(ctx, desired, nil)
				if len(refused) > 0 {
					t.Fatalf("refused: %v", refusalText(refused))
				}
			} else {
				_, err = inst.SyncAll(ctx, desired, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			times[name] = append(times[name], time.Since(start).Round(time.Millisecond))
			if n, err := inst.FlowCount(ctx); err != nil || n != len(desired) {
				t.Fatalf("%s installed %d flows (%v), want %d", name, n, err, len(desired))
			}
		}
	}
	t.Logf("full install of %d flows onto an empty bridge: SyncAll %v, SyncByOrigin %v", len(desired), times["SyncAll"], times["SyncByOrigin"])

	// The fallback's cost: one of the 2,001 origins refused.
	inst := newBridge(t, sw, "brc-refused")
	start := time.Now()
	_, refused, err := inst.SyncByOrigin(ctx, append(desired, ruleFlows(1, hugeActions())...), nil)
	if err != nil || len(refused) != 1 {
		t.Fatalf("refused %v, err %v", refusalText(refused), err)
	}
	n, err := inst.FlowCount(ctx)
	if err != nil || n != len(desired) {
		t.Fatalf("%d flows installed (%v), want %d", n, err, len(desired))
	}
	t.Logf("full install with 1 of %d origins refused: %v, %d flows installed", 2001, time.Since(start).Round(time.Millisecond), n)
}
