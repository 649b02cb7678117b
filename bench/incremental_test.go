package bench

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/synth"
)

// benchEvents times the compute of single events (apply + Flush, as the
// controller's compute metric) on one node's incremental compiler, without
// any I/O. Reports per kind the median and 99th percentile in microseconds
// and the mean number of changed flows (and groups). A Service add's
// Service is applied and flushed first, untimed (ApplySetup).
func benchEvents(b *testing.B, s synth.Scale, perKind int, kinds []EventKind) {
	c := synth.Generate(s, synth.DefaultSeed)
	m, err := c.Model()
	if err != nil {
		b.Fatal(err)
	}
	cfg := NodeConfig(m)
	script := NewScriptOf(c, BenchNode, perKind, 2, kinds)
	maps.Copy(cfg.Bindings, script.LocalBindings)
	type acc struct {
		d                  []time.Duration
		n, changed, groups int
	}
	stats := map[EventKind]*acc{}
	for b.Loop() {
		inc := compiler.NewIncremental(m, cfg)
		if _, err := inc.Flush(); err != nil {
			b.Fatal(err)
		}
		for _, ev := range script.Events {
			if err := ApplySetup(inc, ev); err != nil {
				b.Fatal(err)
			}
			if _, err := inc.Flush(); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			if err := ApplyEvent(inc, ev); err != nil {
				b.Fatal(err)
			}
			changed, err := inc.Flush()
			d := time.Since(t0)
			if err != nil {
				b.Fatal(err)
			}
			a := stats[ev.Kind]
			if a == nil {
				a = &acc{}
				stats[ev.Kind] = a
			}
			a.d = append(a.d, d)
			a.n++
			a.changed += len(changed)
			a.groups += len(inc.GroupChanges())
		}
		// The compiler owns m now: regenerate for the next round.
		b.StopTimer()
		if m, err = c.Model(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	for _, k := range kinds {
		a := stats[k]
		name := metricName(k)
		b.ReportMetric(float64(Quantile(a.d, 0.5).Microseconds()), name+"-p50-us")
		b.ReportMetric(float64(Quantile(a.d, 0.99).Microseconds()), name+"-p99-us")
		b.ReportMetric(float64(a.changed)/float64(a.n), name+"-flows")
		if len(c.Services) > 0 {
			b.ReportMetric(float64(a.groups)/float64(a.n), name+"-groups")
		}
	}
}

// metricName turns "pod add (other node)" into "pod-add-other-node".
func metricName(k EventKind) string {
	out := make([]byte, 0, len(k))
	dash := false
	for _, r := range []byte(k) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && len(out) > 0 {
				out = append(out, '-')
			}
			out = append(out, r)
			dash = false
		} else {
			dash = true
		}
	}
	return string(out)
}

func BenchmarkEventsS1(b *testing.B) {
	benchEvents(b, synth.S1, envInt("BENCH_EVENTS", 50), EventKinds)
}
func BenchmarkEventsS2(b *testing.B) {
	benchEvents(b, synth.S2, envInt("BENCH_EVENTS", 10), EventKinds)
}

// BenchmarkEventsS1Services: every event kind, the policy ones and the
// Service ones, on S1 plus 10,000 Services.
func BenchmarkEventsS1Services(b *testing.B) {
	benchEvents(b, synth.S1Services, envInt("BENCH_EVENTS", 50), append(slices.Clone(EventKinds), ServiceEventKinds...))
}
