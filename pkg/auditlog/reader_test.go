package auditlog

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// syncBuffer is a bytes.Buffer safe for the writer and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSuffix(s.b.String(), "\n"), "\n")
}

type pods map[netip.Addr]string

func (p pods) PodAt(a netip.Addr) (string, bool) { n, ok := p[a]; return n, ok }

func userdata(n compiler.AuditNote) string {
	b := n.Bytes()
	h := make([]string, len(b))
	for i := range b {
		h[i] = hex.EncodeToString(b[i : i+1])
	}
	return strings.Join(h, ".")
}

// TestReaderOnOVS: on a real ovs-vswitchd, packets sent through audit flows
// (packet-out into tables 30 and 40) reach the reader as NXT_PACKET_IN2
// with the flow's table, cookie and userdata, and become lines naming the
// pods, addresses, ports, protocol, direction, verdict and policies; a
// packet-in from a flow that is not ours is counted, not logged.
func TestReaderOnOVS(t *testing.T) {
	s := ovstest.Start(t)
	if err := s.AddBridge("br0"); err != nil {
		t.Fatal(err)
	}
	denyNote := compiler.AuditNote{Verdict: "deny", Direction: model.Ingress, Reasons: []string{"shop/db-ingress", "shop/deny-all"}}
	allowNote := compiler.AuditNote{Verdict: "allow", Direction: model.Egress, Reasons: []string{"shop/web-egress#1"}}
	podCookie := openflow.NewCookie(openflow.KindPod, "pod/shop/db")
	ruleCookie := openflow.NewCookie(openflow.KindRule, "rule/shop/web-egress/egress/1")
	flows := fmt.Sprintf(`table=30,priority=20000,cookie=%s,udp6 actions=controller(userdata=%s),goto_table:40
table=40,priority=20000,cookie=%s,ip actions=controller(userdata=%s)
table=40,priority=20000,cookie=0x1234,tcp6 actions=controller(userdata=%s)
`, ruleCookie, userdata(allowNote), podCookie, userdata(denyNote), userdata(denyNote))
	if err := s.InstallFlows("br0", flows); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	m := NewMetrics(nil)
	at := time.Date(2026, 12, 6, 13, 0, 0, 0, time.UTC)
	l, err := New(Options{Node: "node-1", Out: out, Metrics: m, Now: func() time.Time { return at },
		Resolver: pods{netip.MustParseAddr("10.89.0.2"): "shop/web", netip.MustParseAddr("10.89.0.3"): "shop/db", netip.MustParseAddr("fd00:89::2"): "shop/web"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hellos := make(chan struct{}, 4)
	go l.Run(ctx)
	go Watch(ctx, filepath.Join(s.Dir, "br0.mgmt"), l, func() { hellos <- struct{}{} })
	select {
	case <-hellos:
	case <-time.After(10 * time.Second):
		t.Fatal("no hello from ovs-vswitchd")
	}
	// The setup is sent right after the hello; a barrier through
	// ovs-ofctl cannot tell us it was processed, so wait until a probe
	// packet-in arrives (bounded).
	a, b := netip.MustParseAddr("10.89.0.2"), netip.MustParseAddr("10.89.0.3")
	a6, ext6 := netip.MustParseAddr("fd00:89::2"), netip.MustParseAddr("2001:db8::9")
	packets := []struct {
		frame []byte
		want  string
	}{
		{frame(a, b, protoTCP, 40000, 5432, false, 0),
			"2026-12-06T13:00:00.000000Z node=node-1 direction=ingress src=10.89.0.2:40000 src_pod=shop/web dst=10.89.0.3:5432 dst_pod=shop/db protocol=TCP verdict=deny policies=shop/db-ingress,shop/deny-all"},
		{frame(a, b, protoUDP, 40001, 53, true, 0),
			"2026-12-06T13:00:00.000000Z node=node-1 direction=ingress src=10.89.0.2:40001 src_pod=shop/web dst=10.89.0.3:53 dst_pod=shop/db protocol=UDP verdict=deny policies=shop/db-ingress,shop/deny-all"},
		{frame(a, b, protoSCTP, 1, 2, false, 0),
			"2026-12-06T13:00:00.000000Z node=node-1 direction=ingress src=10.89.0.2:1 src_pod=shop/web dst=10.89.0.3:2 dst_pod=shop/db protocol=SCTP verdict=deny policies=shop/db-ingress,shop/deny-all"},
		{frame(a6, ext6, protoUDP, 7, 9, false, 0),
			"2026-12-06T13:00:00.000000Z node=node-1 direction=egress src=[fd00:89::2]:7 src_pod=shop/web dst=[2001:db8::9]:9 dst_pod=- protocol=UDP verdict=allow policies=shop/web-egress#1"},
		// Not ours (cookie 0x1234): counted as foreign.
		{frame(a6, ext6, protoTCP, 7, 9, false, 0), ""},
	}
	deadline := time.Now().Add(20 * time.Second)
	for i, p := range packets {
		table := 40
		if i == 3 {
			table = 30
		}
		before := len(nonEmpty(out.Lines())) + int(value(m.Dropped.WithLabelValues("foreign")))
		for {
			if _, err := s.Ofctl("-O", "OpenFlow15", "packet-out", "br0",
				fmt.Sprintf("in_port=controller packet=%x actions=resubmit(,%d)", p.frame, table)); err != nil {
				t.Fatal(err)
			}
			wait := time.Now().Add(500 * time.Millisecond)
			for time.Now().Before(wait) && len(nonEmpty(out.Lines()))+int(value(m.Dropped.WithLabelValues("foreign"))) == before {
				time.Sleep(5 * time.Millisecond)
			}
			if len(nonEmpty(out.Lines()))+int(value(m.Dropped.WithLabelValues("foreign"))) > before {
				break
			}
			if i > 0 || time.Now().After(deadline) {
				t.Fatalf("packet %d: no packet-in", i)
			}
		}
	}
	got := nonEmpty(out.Lines())
	var want []string
	for _, p := range packets {
		if p.want != "" {
			want = append(want, p.want)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if v := value(m.Dropped.WithLabelValues("foreign")); v != 1 {
		t.Errorf("foreign packet-ins %v, want 1", v)
	}
	if v := value(m.Lines.WithLabelValues("deny")); v != 3 {
		t.Errorf("deny lines %v, want 3", v)
	}
	for _, l := range got {
		t.Log(l)
	}
}

func nonEmpty(lines []string) []string {
	var out []string
	for _, l := range lines {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// value reads a counter.
func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
