package auditlog

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

func denyPacketIn(sport uint16) PacketIn {
	return PacketIn{
		Table:    compiler.TableIngress,
		Cookie:   uint64(openflow.NewCookie(openflow.KindPod, "pod/shop/db")),
		Userdata: compiler.AuditNote{Verdict: "deny", Direction: model.Ingress, Reasons: []string{"shop/db-ingress"}}.Bytes(),
		Packet:   frame(netip.MustParseAddr("10.89.0.2"), netip.MustParseAddr("10.89.0.3"), protoTCP, sport, 5432, false, 0),
	}
}

// TestRecordRejects: packet-ins that cannot be logged are counted under
// the right reason.
func TestRecordRejects(t *testing.T) {
	l, err := New(Options{Node: "n", Out: &syncBuffer{}})
	if err != nil {
		t.Fatal(err)
	}
	good := denyPacketIn(1)
	for _, tc := range []struct {
		name   string
		edit   func(*PacketIn)
		reason string
	}{
		{"not our cookie", func(p *PacketIn) { p.Cookie = 0x1234 }, "foreign"},
		{"not a note", func(p *PacketIn) { p.Userdata = []byte("hello") }, "foreign"},
		{"wrong table", func(p *PacketIn) { p.Table = 20 }, "decode"},
		{"direction and table disagree", func(p *PacketIn) { p.Table = compiler.TableEgress }, "decode"},
		{"not IP", func(p *PacketIn) { p.Packet = p.Packet[:13] }, "decode"},
	} {
		p := good
		tc.edit(&p)
		if _, reason, err := l.Record(time.Now(), p); err == nil || reason != tc.reason {
			t.Errorf("%s: reason %q, error %v; want %q", tc.name, reason, err, tc.reason)
		}
	}
	if _, _, err := l.Record(time.Now(), good); err != nil {
		t.Errorf("good packet-in: %v", err)
	}
}

// TestLineIsOneLine: names holding control characters are quoted, so a
// line stays one line.
func TestLineIsOneLine(t *testing.T) {
	r := Record{Time: time.Unix(0, 0), Node: "n\nforged", Direction: model.Ingress, Protocol: "TCP", Verdict: "deny",
		Src: Endpoint{Pod: "a/b\r", Addr: netip.MustParseAddr("10.0.0.1"), Port: 1}, Dst: Endpoint{Addr: netip.MustParseAddr("10.0.0.2")},
		Policies: []string{"x/y\n2026 node=evil"}}
	line := r.String()
	if strings.ContainsAny(line, "\r\n") {
		t.Errorf("line holds a line break: %q", line)
	}
	want := `1970-01-01T00:00:00.000000Z node="n\nforged" direction=ingress src=10.0.0.1:1 src_pod="a/b\r" dst=10.0.0.2 dst_pod=- protocol=TCP verdict=deny policies="x/y\n2026 node=evil"`
	if line != want {
		t.Errorf("got  %s\nwant %s", line, want)
	}
}

// TestQueueOverflow: a writer that falls behind costs counted drops, never
// a blocked reader.
func TestQueueOverflow(t *testing.T) {
	m := NewMetrics(nil)
	l, err := New(Options{Node: "n", Out: &syncBuffer{}, Queue: 3, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		l.Handle(denyPacketIn(uint16(i)))
	}
	if v := value(m.Dropped.WithLabelValues("queue")); v != 7 {
		t.Errorf("queue drops %v, want 7", v)
	}
}

// TestRotation: the file is rotated by size and old files are pruned to
// MaxBackups.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	m := NewMetrics(nil)
	l, err := New(Options{Node: "node-1", File: FileOptions{Path: path, MaxSizeMB: 1, MaxBackups: 2}, Metrics: m, Queue: 100000})
	if err != nil {
		t.Fatal(err)
	}
	// About 200 bytes a line: 20,000 lines are about 4 MB, 4 files' worth.
	const n = 20000
	for i := range n {
		l.Handle(denyPacketIn(uint16(i)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	for value(m.Lines.WithLabelValues("deny")) < n {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	files, err := filepath.Glob(filepath.Join(dir, "audit*.log"))
	if err != nil {
		t.Fatal(err)
	}
	// Pruning runs in lumberjack's goroutine after a rotation: wait for it
	// (bounded).
	for i := 0; len(files) > 3 && i < 200; i++ {
		time.Sleep(10 * time.Millisecond)
		files, _ = filepath.Glob(filepath.Join(dir, "audit*.log"))
	}
	if len(files) != 3 {
		t.Errorf("files %v: want the current one and 2 backups", files)
	}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, over 1 MB", f, st.Size())
		}
		t.Logf("%s: %d bytes", filepath.Base(f), st.Size())
	}
}

// TestUnwritablePath: a log file that cannot be opened is an error at
// start, naming the path (a NUL byte only the kernel refuses; a directory
// that is a file, even for root).
func TestUnwritablePath(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "x\x00"), filepath.Join(notDir, "audit.log"), dir} {
		_, err := New(Options{File: FileOptions{Path: path, MaxSizeMB: 1}})
		if err == nil || !strings.Contains(err.Error(), "audit log") {
			t.Errorf("%q: error %v", path, err)
		}
	}
}

// TestUnmeteredFloodIsBounded: when the datapath's meters do not limit the
// packet-ins (deleted by hand, or a flow added before its meter), the
// logger still queues no more than its own bucket lets through (Burst +
// Rate per second), counts the rest as "rate" drops, and reports the flood
// (at most once per FloodEvery) so that the agent can set the meters again.
func TestUnmeteredFloodIsBounded(t *testing.T) {
	m := NewMetrics(nil)
	start := time.Unix(1000, 0)
	now := start
	floods := 0
	l, err := New(Options{Node: "n", Out: &syncBuffer{}, Queue: 100000, Metrics: m, Rate: 10, Burst: 20,
		Now: func() time.Time { return now }, Flood: func() { floods++ }})
	if err != nil {
		t.Fatal(err)
	}
	// 5,000 packet-ins in 1 s, then 5,000 more over the next 19 s.
	for i := range 10000 {
		if i < 5000 {
			now = start.Add(time.Duration(i) * 200 * time.Microsecond)
		} else {
			now = start.Add(time.Second + time.Duration(i-5000)*3800*time.Microsecond)
		}
		l.Handle(denyPacketIn(uint16(i)))
	}
	elapsed := now.Sub(start).Seconds()
	queued := len(l.queue)
	bound := 20 + int(10*elapsed) + 1
	if queued > bound {
		t.Errorf("%d packet-ins queued in %.1f s, over the bound %d", queued, elapsed, bound)
	}
	if queued < bound-2 {
		t.Errorf("%d packet-ins queued in %.1f s: the bucket let through less than its bound %d", queued, elapsed, bound)
	}
	if d := int(value(m.Dropped.WithLabelValues("rate"))); d != 10000-queued {
		t.Errorf("rate drops %d, want %d", d, 10000-queued)
	}
	if floods != 2 {
		t.Errorf("flood reported %d times over %.0f s, want 2 (once per 10 s)", floods, elapsed)
	}
	t.Logf("10,000 packet-ins over %.1f s: %d queued, %d rate drops, %d flood reports", elapsed, queued, 10000-queued, floods)
}

// TestNoLimitByDefault: without Rate the logger queues everything (the
// meters are the limit).
func TestNoLimitByDefault(t *testing.T) {
	l, err := New(Options{Node: "n", Out: &syncBuffer{}, Queue: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		l.Handle(denyPacketIn(uint16(i)))
	}
	if len(l.queue) != 500 {
		t.Errorf("%d of 500 queued", len(l.queue))
	}
}

// TestLogFileMode: the file (and its directory, created when missing) is
// made at start; the file is readable by its owner only, as are the files
// rotation makes.
func TestLogFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "audit.log")
	m := NewMetrics(nil)
	l, err := New(Options{Node: "n", File: FileOptions{Path: path, MaxSizeMB: 1, MaxBackups: 1}, Metrics: m, Queue: 20000})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("not created at start: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	const n = 8000 // about 1.6 MB: one rotation
	for i := range n {
		l.Handle(denyPacketIn(uint16(i)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	for value(m.Lines.WithLabelValues("deny")) < n {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "audit*.log"))
	if len(files) < 2 {
		t.Fatalf("files %v: no rotation", files)
	}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(f), st.Mode().Perm())
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestWriteErrorsCounted: a file that cannot be written costs counted
// drops; the writer goes on (a later line is written once it can be).
func TestWriteErrorsCounted(t *testing.T) {
	m := NewMetrics(nil)
	l, err := New(Options{Node: "n", Out: failingWriter{}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		l.write(queued{time.Now(), denyPacketIn(uint16(i))})
	}
	if v := value(m.Dropped.WithLabelValues("write")); v != 5 {
		t.Errorf("write drops %v, want 5", v)
	}
	out := &syncBuffer{}
	l.out = out
	l.write(queued{time.Now(), denyPacketIn(9)})
	if got := nonEmpty(out.Lines()); len(got) != 1 || value(m.Lines.WithLabelValues("deny")) != 1 {
		t.Errorf("after the errors: lines %q, counted %v", got, value(m.Lines.WithLabelValues("deny")))
	}
}

// TestQueuedPacketInsAreSmall: a queued packet-in keeps only the head of
// its packet (what the line needs) and its note, not the whole message:
// a full queue behind a stalled writer holds Queue × about 6 KiB at most,
// not Queue × 64 KiB (256 MiB for 4,096: over the daemonset's limit).
func TestQueuedPacketInsAreSmall(t *testing.T) {
	l, err := New(Options{Node: "n", Out: &syncBuffer{}, Queue: 4})
	if err != nil {
		t.Fatal(err)
	}
	pi := denyPacketIn(1)
	msg := make([]byte, 65000) // the message the reader read
	n := copy(msg, pi.Packet)
	copy(msg[n:], pi.Userdata)
	big := pi
	big.Packet = msg[:60000]
	big.Userdata = msg[n : n+len(pi.Userdata)]
	l.Handle(big)
	q := <-l.queue
	if cap(q.pi.Packet) > maxQueuedPacket || cap(q.pi.Userdata) > len(pi.Userdata)+64 {
		t.Errorf("queued packet of capacity %d (bound %d), userdata %d", cap(q.pi.Packet), maxQueuedPacket, cap(q.pi.Userdata))
	}
	// The line is the same as from the whole packet.
	r1, _, err1 := l.Record(q.at, q.pi)
	r2, _, err2 := l.Record(q.at, big)
	if err1 != nil || err2 != nil || r1.String() != r2.String() {
		t.Errorf("kept: %v %v; whole: %v %v", r1, err1, r2, err2)
	}
}
