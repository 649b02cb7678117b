package auditlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Resolver names the pod owning an address (namespace/name).
type Resolver interface {
	PodAt(addr netip.Addr) (string, bool)
}

// Metrics of the audit log.
type Metrics struct {
	// Lines counts lines written, by verdict.
	Lines *prometheus.CounterVec
	// Dropped counts packet-ins not logged, by reason: "queue" (the
	// writer fell behind), "rate" (over the logger's own bound: the
	// meters did not limit), "decode" (a packet or note that could not be
	// read), "foreign" (a packet-in from a flow that is not ours),
	// "write" (the file could not be written).
	Dropped *prometheus.CounterVec
	// Active is 1 while the audit flows are compiled (their meters set),
	// 0 when the log is off or its meters could not be created.
	Active prometheus.Gauge
}

// NewMetrics registers the metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Lines: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ovs_netpol_audit_lines_total",
			Help: "Audit log lines written, by verdict (deny, allow)."}, []string{"verdict"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ovs_netpol_audit_dropped_total",
			Help: "Audit packet-ins not logged, by reason (queue: the writer fell behind; rate: over the agent's own bound, the meters did not limit; decode: unreadable; foreign: not from our flows; write: the file failed)."}, []string{"reason"}),
		Active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ovs_netpol_audit_active",
			Help: "1 while the audit flows are on (--audit-log with its meters set), 0 otherwise."}),
	}
	for _, v := range []string{"deny", "allow"} {
		m.Lines.WithLabelValues(v)
	}
	for _, r := range []string{"queue", "rate", "decode", "foreign", "write"} {
		m.Dropped.WithLabelValues(r)
	}
	m.Register(reg)
	return m
}

// Register registers the metrics with reg (nil: nothing).
func (m *Metrics) Register(reg prometheus.Registerer) {
	if reg != nil {
		reg.MustRegister(m.Lines, m.Dropped, m.Active)
	}
}

// Options configure a Logger.
type Options struct {
	Node string
	// Out receives the lines; when nil, File is opened (rotated by size).
	Out  io.Writer
	File FileOptions
	// Resolver names the pods; nil names none.
	Resolver Resolver
	Metrics  *Metrics
	Log      logrus.FieldLogger
	// Queue bounds the packet-ins waiting for the writer (default 4096).
	Queue int
	// Now stamps the lines (default time.Now).
	Now func() time.Time
	// Rate and Burst bound the packet-ins queued, whatever the datapath's
	// meters do: a token bucket of Burst packet-ins refilled at Rate per
	// second (Rate 0: no bound of its own).
	Rate, Burst float64
	// Flood is called (at most once per FloodEvery, default 10 s) when the
	// bucket drops a packet-in: the meters are not limiting.
	Flood      func()
	FloodEvery time.Duration
}

// FileOptions are the rotated file's: rotated when it reaches MaxSizeMB,
// keeping MaxBackups old files (0: all) for at most MaxAgeDays (0: no
// limit), compressed when Compress.
type FileOptions struct {
	Path       string
	MaxSizeMB  int
	MaxBackups int
	MaxAgeDays int
	Compress   bool
}

type queued struct {
	at time.Time
	pi PacketIn
}

// Logger turns packet-ins into lines.
type Logger struct {
	o     Options
	out   io.Writer
	close func() error
	queue chan queued
	// writeErrors counts failed writes, to log only some.
	writeErrors int
	// The bucket of Options.Rate (touched by Handle only: one reader).
	tokens    float64
	filled    time.Time
	lastFlood time.Time
}

// New returns a Logger; Run writes.
func New(o Options) (*Logger, error) {
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if o.Queue <= 0 {
		o.Queue = 4096
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FloodEvery <= 0 {
		o.FloodEvery = 10 * time.Second
	}
	l := &Logger{o: o, queue: make(chan queued, o.Queue), close: func() error { return nil }, tokens: o.Burst}
	l.out = o.Out
	if l.out == nil {
		if o.File.Path == "" {
			return nil, errors.New("auditlog: no file")
		}
		// lumberjack takes whatever is at the path for an old log: it
		// renames a directory aside (with its contents) and makes the file
		// with the directory's mode.
		if st, err := os.Stat(o.File.Path); err == nil && !st.Mode().IsRegular() {
			return nil, fmt.Errorf("audit log %s: not a regular file (%s)", o.File.Path, st.Mode().Type())
		}
		lj := &lumberjack.Logger{Filename: o.File.Path, MaxSize: o.File.MaxSizeMB, MaxBackups: o.File.MaxBackups,
			MaxAge: o.File.MaxAgeDays, Compress: o.File.Compress}
		// Open now, so that a path that cannot be written is an error at
		// start and not a counter later.
		if _, err := lj.Write(nil); err != nil {
			return nil, fmt.Errorf("audit log %s: %w", o.File.Path, err)
		}
		l.out, l.close = lj, lj.Close
	}
	return l, nil
}

// SetResolver sets what names the pods; call it before Run.
func (l *Logger) SetResolver(r Resolver) { l.o.Resolver = r }

// maxQueuedPacket is how much of a packet is kept for its line: the
// Ethernet, VLAN, IP (IPv6 extension headers included, mostly) and
// transport headers.
const maxQueuedPacket = 1024

// Handle queues a packet-in for the writer; when the queue is full it is
// dropped and counted (the reader must never wait: the switch would). So
// is one over the logger's own rate (Options.Rate), which the meters should
// have dropped in the datapath: Flood says so.
func (l *Logger) Handle(pi PacketIn) {
	now := l.o.Now()
	if !l.admit(now) {
		l.o.Metrics.Dropped.WithLabelValues("rate").Inc()
		if l.o.Flood != nil && (l.lastFlood.IsZero() || now.Sub(l.lastFlood) >= l.o.FloodEvery) {
			l.lastFlood = now
			l.o.Flood()
		}
		return
	}
	// Keep what the line needs, not the message the packet-in came in
	// (up to 64 KiB each).
	pi.Packet = append([]byte(nil), pi.Packet[:min(len(pi.Packet), maxQueuedPacket)]...)
	pi.Userdata = append([]byte(nil), pi.Userdata...)
	select {
	case l.queue <- queued{now, pi}:
	default:
		l.o.Metrics.Dropped.WithLabelValues("queue").Inc()
	}
}

// admit takes a token from the bucket (always, without Options.Rate).
func (l *Logger) admit(now time.Time) bool {
	if l.o.Rate <= 0 {
		return true
	}
	if !l.filled.IsZero() {
		if d := now.Sub(l.filled).Seconds(); d > 0 {
			l.tokens = min(l.o.Burst, l.tokens+d*l.o.Rate)
		}
	}
	l.filled = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// BadMessage counts a packet-in that could not be decoded.
func (l *Logger) BadMessage(err error) {
	l.o.Metrics.Dropped.WithLabelValues("decode").Inc()
	l.o.Log.WithError(err).Debug("audit: undecodable message")
}

// Run writes the queued packet-ins until ctx ends, then closes the file.
func (l *Logger) Run(ctx context.Context) error {
	defer l.close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case q := <-l.queue:
			l.write(q)
		}
	}
}

// write logs one packet-in.
func (l *Logger) write(q queued) {
	r, reason, err := l.Record(q.at, q.pi)
	if err != nil {
		l.o.Metrics.Dropped.WithLabelValues(reason).Inc()
		l.o.Log.WithError(err).Debug("audit: packet-in not logged")
		return
	}
	if _, err := io.WriteString(l.out, r.String()+"\n"); err != nil {
		l.o.Metrics.Dropped.WithLabelValues("write").Inc()
		if l.writeErrors%1000 == 0 {
			l.o.Log.WithError(err).WithField("failed writes", l.writeErrors+1).Warn("audit log: write failed")
		}
		l.writeErrors++
		return
	}
	l.o.Metrics.Lines.WithLabelValues(r.Verdict).Inc()
}

// Endpoint is one side of a connection.
type Endpoint struct {
	Pod  string // namespace/name, "" when the address is no pod's
	Addr netip.Addr
	Port uint16 // 0: the protocol has no ports
}

// String is "ADDR:PORT" ("[ADDR]:PORT" for IPv6), or the address alone.
func (e Endpoint) String() string {
	if e.Port == 0 {
		return e.Addr.String()
	}
	return netip.AddrPortFrom(e.Addr, e.Port).String()
}

// Record is one line of the log.
type Record struct {
	Time      time.Time
	Node      string
	Direction model.Direction
	Src, Dst  Endpoint
	Protocol  string
	Verdict   string
	// Policies are the note's reasons (see compiler.AuditNote): the
	// isolating policies (deny), the allowing rule NS/NAME#INDEX or "-"
	// for a pod not isolated (allow).
	Policies []string
}

// String renders the line:
//
//	TIME node=N direction=D src=IP:PORT src_pod=NS/NAME dst=IP:PORT dst_pod=NS/NAME protocol=P verdict=V policies=A,B
//
// TIME is RFC 3339 in UTC with microseconds; a pod that is not known is
// "-"; every name read from input is made printable (see
// internal/printable), so a line is one line.
func (r Record) String() string {
	pod := func(s string) string {
		if s == "" {
			return "-"
		}
		return printable.String(s)
	}
	pol := make([]string, len(r.Policies))
	for i, p := range r.Policies {
		pol[i] = printable.String(p)
	}
	policies := strings.Join(pol, ",")
	if policies == "" {
		policies = "-"
	}
	return fmt.Sprintf("%s node=%s direction=%s src=%s src_pod=%s dst=%s dst_pod=%s protocol=%s verdict=%s policies=%s",
		r.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), printable.String(r.Node), printable.String(string(r.Direction)),
		r.Src, pod(r.Src.Pod), r.Dst, pod(r.Dst.Pod), r.Protocol, printable.String(r.Verdict), policies)
}

// Record decodes a packet-in received at t. On error, reason is the
// Dropped label to count it under.
func (l *Logger) Record(t time.Time, pi PacketIn) (r Record, reason string, err error) {
	if openflow.Cookie(pi.Cookie)&openflow.OursMask != openflow.Ours {
		return Record{}, "foreign", fmt.Errorf("packet-in from table %d cookie %#x: not our flow", pi.Table, pi.Cookie)
	}
	note, ok := compiler.ParseAuditNote(pi.Userdata)
	if !ok {
		return Record{}, "foreign", fmt.Errorf("packet-in from table %d cookie %#x: userdata %s is not an audit note", pi.Table, pi.Cookie, printable.String(string(pi.Userdata)))
	}
	want := model.Ingress
	if pi.Table == compiler.TableEgress {
		want = model.Egress
	} else if pi.Table != compiler.TableIngress {
		return Record{}, "decode", fmt.Errorf("audit packet-in from table %d (not 30 or 40)", pi.Table)
	}
	if note.Direction != want {
		return Record{}, "decode", fmt.Errorf("audit note says %s in table %d", note.Direction, pi.Table)
	}
	f, err := DecodePacket(pi.Packet)
	if err != nil {
		return Record{}, "decode", err
	}
	r = Record{Time: t, Node: l.o.Node, Direction: note.Direction, Protocol: ProtocolName(f.Protocol), Verdict: note.Verdict,
		Src: Endpoint{Addr: f.Src, Port: f.SrcPort}, Dst: Endpoint{Addr: f.Dst, Port: f.DstPort}, Policies: note.Reasons}
	if l.o.Resolver != nil {
		r.Src.Pod, _ = l.o.Resolver.PodAt(f.Src)
		r.Dst.Pod, _ = l.o.Resolver.PodAt(f.Dst)
	}
	return r, "", nil
}

// Watch reads packet-ins from the bridge's management socket into l until
// ctx ends, reconnecting after a lost connection; hello is called on each
// switch hello (a new ovs-vswitchd) before packet-ins are read.
func Watch(ctx context.Context, mgmt string, l *Logger, hello func()) {
	const retry = 200 * time.Millisecond
	for ctx.Err() == nil {
		err := Read(ctx, mgmt, hello, l.Handle, l.BadMessage)
		if ctx.Err() != nil {
			return
		}
		l.o.Log.WithError(err).Debug("audit: OpenFlow connection lost; reconnecting")
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
}
