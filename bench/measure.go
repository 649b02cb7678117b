// Package bench holds the cluster-scale benchmarks (see BENCHMARKS.md):
// compile time and memory, flow counts against the cross product, full
// install against raw ovs-ofctl, and realization latency through the real
// agent path. The benchmarks are in the _test files; this file has the
// measuring helpers they share. Run them all with `make bench`.
package bench

import (
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// FlowCounts compares a flow set with what a non-conjunctive implementation
// (one flow per target × peer × port, as OpenShift SDN installs) needs for
// the same policies.
type FlowCounts struct {
	Total       int // flows in the set
	Policy      int // flows with a rule cookie (conjunction parts, conj_id flows, direct allows)
	CrossPolicy int // the same rules as a cross product
}

// CrossTotal is Total with the policy flows replaced by their cross product.
func (c FlowCounts) CrossTotal() int { return c.Total - c.Policy + c.CrossPolicy }

// CountFlows derives FlowCounts from a compiled flow set: a conjunction
// with dimensions of sizes d1..dn costs d1·…·dn cross-product flows (its
// conj_id flow none); rule flows without a conjunction (direct allows) cost
// one each.
func CountFlows(flows []openflow.Flow) FlowCounts {
	var c FlowCounts
	for _, f := range flows {
		c.Total++
		if f.Cookie.Kind() == openflow.KindRule {
			c.Policy++
		}
	}
	for _, n := range RuleCrossProducts(flows) {
		c.CrossPolicy += n
	}
	return c
}

// RuleCrossProducts splits FlowCounts.CrossPolicy of flows by rule cookie:
// a conjunction (d1·…·dn) goes to the rule whose cookie its conj_id flow
// carries (a flow shared by conjunctions of several rules carries one
// cookie only; the conj_id flow is the conjunction's own), a direct allow
// to its own cookie. The values add up to CountFlows(flows).CrossPolicy.
func RuleCrossProducts(flows []openflow.Flow) map[openflow.Cookie]int {
	out := map[openflow.Cookie]int{}
	dims := map[uint32][]int{}
	owner := map[uint32]openflow.Cookie{}
	for _, f := range flows {
		if f.Cookie.Kind() != openflow.KindRule {
			continue
		}
		id, isConjID := f.Match.ConjID()
		switch {
		case f.IsConjunction():
			for _, c := range f.Actions.Conjunctions() {
				d := dims[c.ID]
				if d == nil {
					d = make([]int, c.N)
					dims[c.ID] = d
				}
				d[c.K-1]++
			}
		case isConjID:
			owner[id] = f.Cookie
		default:
			out[f.Cookie]++
		}
	}
	for id, d := range dims {
		p := 1
		for _, n := range d {
			p *= n
		}
		out[owner[id]] += p // cookie 0 if the conj_id flow were missing
	}
	return out
}

// HeapPeak samples the Go heap (bytes of allocated objects, live or not
// yet swept: runtime.MemStats.HeapAlloc, what Antrea's perf test reports)
// every few milliseconds until Stop.
type HeapPeak struct {
	stop chan struct{}
	done chan uint64
}

var heapMetric = "/memory/classes/heap/objects:bytes"

// HeapNow returns the current heap as HeapPeak measures it.
func HeapNow() uint64 {
	s := []metrics.Sample{{Name: heapMetric}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// StartHeapPeak starts sampling.
func StartHeapPeak() *HeapPeak {
	h := &HeapPeak{stop: make(chan struct{}), done: make(chan uint64, 1)}
	go func() {
		peak := HeapNow()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				h.done <- max(peak, HeapNow())
				return
			case <-t.C:
				peak = max(peak, HeapNow())
			}
		}
	}()
	return h
}

// Stop ends sampling and returns the peak in bytes.
func (h *HeapPeak) Stop() uint64 {
	close(h.stop)
	return <-h.done
}

// SettledHeap runs the garbage collector and returns the live heap.
func SettledHeap() uint64 {
	runtime.GC()
	runtime.GC()
	return HeapNow()
}

// Samples collects durations (safe for concurrent use).
type Samples struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one sample.
func (s *Samples) Add(d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

// Len is the number of samples.
func (s *Samples) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.d)
}

// Quantile returns the q-quantile (nearest rank) or 0 without samples.
func (s *Samples) Quantile(q float64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Quantile(s.d, q)
}

// Quantile returns the nearest-rank q-quantile of d (0 when empty).
func Quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Ms converts a duration to milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// MB converts bytes to MiB.
func MB(b uint64) float64 { return float64(b) / (1 << 20) }

// envInt reads an integer from the environment (def when unset or bad).
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// CPUTime is the CPU time (user + system) the process used so far.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
