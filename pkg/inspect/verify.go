package inspect

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/evaluator"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// DefaultExternalIPs are the outside addresses verify probes with
// (documentation ranges: RFC 5737 TEST-NET-3, RFC 3849).
var DefaultExternalIPs = []netip.Addr{netip.MustParseAddr("203.0.113.77"), netip.MustParseAddr("2001:db8::77")}

// VerifyOptions tunes Verify.
type VerifyOptions struct {
	// ExternalIPs are the outside peers (default DefaultExternalIPs).
	ExternalIPs []netip.Addr
	// Workers is the number of parallel traces (default 4).
	Workers int
	// Pods, when set, limits the check to the connections of these local
	// pods (namespace/name); each must be attached to the bridge.
	Pods []string
	// MaxTraces, when positive, refuses a run that would trace more
	// connections (before tracing any).
	MaxTraces int
}

// Probe is one protocol and port verify checks.
type Probe struct {
	Protocol model.Protocol `json:"protocol"`
	Port     int32          `json:"port"`
}

func (p Probe) String() string { return fmt.Sprintf("%s/%d", p.Protocol, p.Port) }

// VerifyCell is one connection checked: the model against the bridge.
type VerifyCell struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Probe Probe  `json:"probe"`
	// Family is "IPv4" or "IPv6": two dual-stack ends are checked in both.
	Family string `json:"family"`
	// Enforces is the part of the decision this node makes.
	Enforces string `json:"enforces"`
	// Model is what the model says this node must do; Bridge what the
	// trace did.
	ModelAllowed bool   `json:"modelAllowed"`
	Model        string `json:"model"`
	Delivered    bool   `json:"delivered"`
	Bridge       string `json:"bridge"`
	// Mismatch says how they differ ("" when they agree).
	Mismatch string `json:"mismatch,omitempty"`
	// Packet and Decisive (the last traversed flow with its origin) are
	// kept for mismatches.
	Packet   string `json:"packet,omitempty"`
	Decisive string `json:"decisive,omitempty"`
	// Service (namespace/name) is set for a connection to its cluster IP
	// (To is then "NS/NAME PORT/PROTO"); Backend is the backend the
	// bridge's load balancer picked, whose verdict the cell compares.
	Service string `json:"service,omitempty"`
	Backend string `json:"backend,omitempty"`
}

// VerifyResult is a whole run.
type VerifyResult struct {
	Node string `json:"node"`
	// Endpoints are the matrix's rows and columns, in order.
	Endpoints  []string     `json:"endpoints"`
	Probes     []Probe      `json:"probes"`
	Cells      []VerifyCell `json:"cells"`
	Mismatches []VerifyCell `json:"mismatches"`
	Traces     int          `json:"traces"`
	// ServicePorts are the Service matrix's columns ("NS/NAME PORT/PROTO");
	// ServiceCells the connections from local pods to their cluster IPs,
	// not counted in Traces.
	ServicePorts      []string     `json:"servicePorts,omitempty"`
	ServiceCells      []VerifyCell `json:"serviceCells,omitempty"`
	ServiceMismatches []VerifyCell `json:"serviceMismatches,omitempty"`
	ServiceTraces     int          `json:"serviceTraces"`
	// ServiceDuration is the part of Duration spent on ServiceCells.
	ServiceDuration time.Duration  `json:"serviceDurationNanoseconds"`
	Duration        time.Duration  `json:"durationNanoseconds"`
	Skipped         map[string]int `json:"skipped,omitempty"`
}

// verifyPeer is a matrix row/column.
type verifyPeer struct {
	label string
	ep    evaluator.Endpoint // one address per family in ips
	ips   []netip.Addr
	local bool
}

// Verify traces, for every pod attached to the node's bridge, every
// connection to and from every peer — every pod of the cluster, the node
// itself and an outside address — on every port the policies name (named
// ports resolved through the pods' container ports) plus one they do not,
// for TCP and UDP, and compares each with the model's verdict for the part
// of it this node decides (both sides between two local pods, the local
// pod's egress toward others, its ingress from them).
func (e *Explainer) Verify(ctx context.Context, v *NodeView, opts VerifyOptions) (*VerifyResult, error) {
	start := time.Now()
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	ext := opts.ExternalIPs
	if len(ext) == 0 {
		ext = DefaultExternalIPs
	}
	e.AddNodeIPs(v.Config.Node, v.Config.NodeIPs)
	res := &VerifyResult{Node: v.Config.Node, Probes: VerifyProbes(e.Cluster), Skipped: map[string]int{}}

	var peers []verifyPeer
	for _, p := range e.Cluster.SortedPods() {
		if !p.Active() {
			continue
		}
		if len(p.IPs) == 0 {
			// Nothing to trace; said of this node's pods, whose
			// connections a run is expected to cover.
			if _, local := v.local(p); local {
				res.Skipped["pods of this node without an IP address"]++
			}
			continue
		}
		if v.unattached(p) {
			res.Skipped["pods of this node without a port on its bridge"]++
			continue
		}
		if why, _ := v.overlayProblem(p); why != "" {
			res.Skipped[why]++
			continue
		}
		_, local := v.local(p)
		peers = append(peers, verifyPeer{label: p.Key(), ep: evaluator.Endpoint{Pod: p}, ips: p.IPs, local: local})
	}
	if len(v.Config.NodeIPs) > 0 {
		peers = append(peers, verifyPeer{label: "node:" + v.Config.Node, ep: evaluator.Endpoint{HostOf: v.Config.Node}, ips: v.Config.NodeIPs})
	} else {
		res.Skipped["node peer: the agent knows no node address"]++
	}
	peers = append(peers, verifyPeer{label: "external", ips: ext})
	for _, p := range peers {
		res.Endpoints = append(res.Endpoints, p.label)
	}
	only := map[string]bool{}
	for _, key := range opts.Pods {
		found := false
		for _, p := range peers {
			found = found || p.local && p.label == key
		}
		if !found {
			return nil, fmt.Errorf("pod %s is not attached to node %s's bridge", printable.String(key), printable.String(v.Config.Node))
		}
		only[key] = true
	}
	checked := func(p verifyPeer) bool { return p.local && (len(only) == 0 || only[p.label]) }

	type job struct {
		src, dst verifyPeer
		sip, dip netip.Addr
		probe    Probe
		idx      int
	}
	// pairs visits the connections' ends and returns how many pairs have
	// no common address family.
	pairs := func(visit func(s, d verifyPeer, sip, dip netip.Addr)) (noFamily int) {
		for _, s := range peers {
			for _, d := range peers {
				if s.label == d.label || !checked(s) && !checked(d) {
					continue
				}
				fps := familyPairs(s.ips, d.ips)
				if len(fps) == 0 {
					noFamily++
				}
				for _, fp := range fps {
					visit(s, d, fp[0], fp[1])
				}
			}
		}
		return noFamily
	}
	// Counted before any job is made: the limit is there so that a big
	// cluster's run costs nothing but this count.
	total := 0
	if n := pairs(func(verifyPeer, verifyPeer, netip.Addr, netip.Addr) { total += len(res.Probes) }); n > 0 {
		res.Skipped["pairs without a common address family"] = n
	}
	var sources []verifyPeer
	for _, p := range peers {
		if checked(p) {
			sources = append(sources, p)
		}
	}
	svcJobs, svcPorts := serviceJobs(e.Cluster, sources)
	res.ServicePorts = svcPorts
	if opts.MaxTraces > 0 && total+len(svcJobs) > opts.MaxTraces {
		return nil, fmt.Errorf("verify would trace %d connections, more than the limit of %d (%d of them through Services): check fewer pods at a time", total+len(svcJobs), opts.MaxTraces, len(svcJobs))
	}
	jobs := make([]job, 0, total)
	pairs(func(s, d verifyPeer, sip, dip netip.Addr) {
		for _, pr := range res.Probes {
			jobs = append(jobs, job{src: s, dst: d, sip: sip, dip: dip, probe: pr, idx: len(jobs)})
		}
	})
	cells := make([]VerifyCell, len(jobs))
	errs := make([]error, len(jobs))
	ch := make(chan job)
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				src, dst := j.src.ep, j.dst.ep
				src.IP, dst.IP = j.sip, j.dip
				cells[j.idx], errs[j.idx] = e.verifyOne(ctx, v, src, dst, j.src.label, j.dst.label, j.probe)
			}
		}()
	}
	for _, j := range jobs {
		select {
		case ch <- j:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(ch)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("%s -> %s %s: %w", jobs[i].src.label, jobs[i].dst.label, jobs[i].probe, err)
		}
	}
	res.Cells = cells
	res.Traces = len(cells)
	for _, c := range cells {
		if c.Mismatch != "" {
			res.Mismatches = append(res.Mismatches, c)
		}
	}
	if err := e.verifyServices(ctx, v, svcJobs, opts.Workers, res); err != nil {
		return nil, err
	}
	res.Duration = time.Since(start)
	return res, nil
}

func (e *Explainer) verifyOne(ctx context.Context, v *NodeView, src, dst evaluator.Endpoint, from, to string, p Probe) (VerifyCell, error) {
	verdict := evaluator.Allowed(e.Cluster, src, dst, p.Protocol, p.Port)
	pr, ok := v.probeFor(src, dst, dst.IP, p.Protocol, p.Port, verdict)
	if !ok {
		return VerifyCell{}, fmt.Errorf("internal error: neither end is local")
	}
	t, err := v.Bridge.Trace(ctx, pr.packet)
	if err != nil {
		return VerifyCell{}, err
	}
	c := VerifyCell{From: from, To: to, Probe: p, Family: familyName(src.IP), Enforces: pr.enforces, ModelAllowed: pr.allowed,
		Model: modelWords(pr, verdict), Delivered: pr.sent(t), Bridge: pr.verdict(t), Mismatch: pr.judge(t)}
	if c.Mismatch != "" {
		c.Packet = pr.packet
		if s := t.Decisive(); s != nil {
			origin := "table miss"
			if !s.Miss {
				origin = v.Node.Origin(s.Flow())
			}
			c.Decisive = fmt.Sprintf("%s [%s]", s, origin)
		}
	}
	return c, nil
}

// modelWords is the model's verdict for the part this node enforces.
func modelWords(pr probe, v evaluator.Verdict) string {
	word := "denied"
	if pr.allowed {
		word = "allowed"
	}
	switch pr.enforces {
	case "egress":
		return fmt.Sprintf("%s (egress: %s)", word, v.Egress.Reason)
	case "ingress":
		return fmt.Sprintf("%s (ingress: %s)", word, v.Ingress.Reason)
	}
	return fmt.Sprintf("%s (egress: %s; ingress: %s)", word, v.Egress.Reason, v.Ingress.Reason)
}

// familyPairs returns a pair of addresses for each family both ends have,
// IPv4 first: the bridge has flows per family, so a dual-stack pair is
// checked in both.
func familyPairs(a, b []netip.Addr) [][2]netip.Addr {
	var out [][2]netip.Addr
	for _, v4 := range []bool{true, false} {
		var x, y netip.Addr
		for _, ip := range a {
			if ip.Is4() == v4 && !x.IsValid() {
				x = ip
			}
		}
		for _, ip := range b {
			if ip.Is4() == v4 && !y.IsValid() {
				y = ip
			}
		}
		if x.IsValid() && y.IsValid() {
			out = append(out, [2]netip.Addr{x, y})
		}
	}
	return out
}

// v6Suffix marks IPv6 matrices and mismatches (" IPv6"); IPv4, the only
// family of most clusters, is left unsaid.
func v6Suffix(family string) string {
	if family == "IPv6" {
		return " IPv6"
	}
	return ""
}

func familyName(ip netip.Addr) string {
	if ip.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// VerifyProbes are the probes verify checks: every port number the
// policies name (both ends of a range and the ports just outside it;
// named ports resolved through every
// pod's container ports), and one port no policy names, each for TCP and
// UDP.
func VerifyProbes(c *model.Cluster) []Probe {
	ports := map[int32]bool{}
	var ranges [][2]int32
	for _, p := range c.SortedPolicies() {
		for _, d := range []model.Direction{model.Ingress, model.Egress} {
			for _, r := range p.Rules(d) {
				for _, ps := range r.Ports {
					switch {
					case ps.Name != "":
						for _, n := range namedPortNumbers(c, ps) {
							ports[n] = true
						}
					case ps.Port == 0:
					case ps.EndPort != 0:
						// Both ends, and the ports just outside: a range
						// made of masked matches is most likely wrong at
						// its edges, too narrow or too wide.
						ports[ps.Port], ports[ps.EndPort] = true, true
						if ps.Port > 1 {
							ports[ps.Port-1] = true
						}
						if ps.EndPort < 65535 {
							ports[ps.EndPort+1] = true
						}
						ranges = append(ranges, [2]int32{ps.Port, ps.EndPort})
					default:
						ports[ps.Port] = true
					}
				}
			}
		}
	}
	unmentioned := int32(54321)
	for ; unmentioned < 65535; unmentioned++ {
		inRange := false
		for _, r := range ranges {
			if unmentioned >= r[0] && unmentioned <= r[1] {
				inRange = true
			}
		}
		if !ports[unmentioned] && !inRange {
			break
		}
	}
	ports[unmentioned] = true
	nums := make([]int32, 0, len(ports))
	for n := range ports {
		nums = append(nums, n)
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	var out []Probe
	for _, proto := range []model.Protocol{model.TCP, model.UDP} {
		for _, n := range nums {
			out = append(out, Probe{Protocol: proto, Port: n})
		}
	}
	return out
}

// namedPortNumbers returns the numbers the named port of ps resolves to
// through the container ports of the cluster's pods (one per pod that
// names it).
func namedPortNumbers(c *model.Cluster, ps model.PortSpec) []int32 {
	var out []int32
	for _, pod := range c.Pods {
		if n, ok := pod.ResolvePort(ps.Name, ps.Protocol); ok {
			out = append(out, n)
		}
	}
	return out
}

// Matrix renders one matrix per probe: rows are sources, columns
// destinations (numbered as in the legend), "." allowed, "X" denied, "!"
// the bridge disagrees with the model, blank not checked on this node
// (neither end here, or the same endpoint).
func (r *VerifyResult) Matrix() string {
	var b strings.Builder
	idx := map[string]int{}
	for i, e := range r.Endpoints {
		idx[e] = i
	}
	fmt.Fprintf(&b, "endpoints:\n")
	for i, e := range r.Endpoints {
		fmt.Fprintf(&b, "  %2d %s\n", i+1, printable.String(e))
	}
	// One matrix per probe and family (the families' verdicts may differ:
	// ipBlocks are of one family).
	type matrixKey struct {
		probe  Probe
		family string
	}
	byProbe := map[matrixKey]map[[2]int]byte{}
	families := map[string]bool{}
	for _, c := range r.Cells {
		families[c.Family] = true
		k := matrixKey{c.Probe, c.Family}
		m := byProbe[k]
		if m == nil {
			m = map[[2]int]byte{}
			byProbe[k] = m
		}
		mark := byte('X')
		switch {
		case c.Mismatch != "":
			mark = '!'
		case c.ModelAllowed:
			mark = '.'
		}
		m[[2]int{idx[c.From], idx[c.To]}] = mark
	}
	n := len(r.Endpoints)
	for _, family := range []string{"IPv4", "IPv6"} {
		if !families[family] {
			continue
		}
		for _, p := range r.Probes {
			fmt.Fprintf(&b, "\n%s%s (rows: from, columns: to)\n    ", p, v6Suffix(family))
			for j := range n {
				fmt.Fprintf(&b, "%d", (j+1)%10)
			}
			b.WriteByte('\n')
			for i := range n {
				fmt.Fprintf(&b, " %2d ", i+1)
				for j := range n {
					mark, ok := byProbe[matrixKey{p, family}][[2]int{i, j}]
					if !ok {
						mark = ' '
					}
					b.WriteByte(mark)
				}
				b.WriteByte('\n')
			}
		}
	}
	r.serviceMatrix(&b)
	return b.String()
}

// Summary is the last lines of a run: counts, then every mismatch with
// both verdicts.
func (r *VerifyResult) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: %d connections traced (%d endpoints, %d probes) in %v: %d mismatches\n",
		printable.String(r.Node), r.Traces, len(r.Endpoints), len(r.Probes), r.Duration.Round(time.Millisecond), len(r.Mismatches))
	if len(r.ServicePorts) > 0 {
		fmt.Fprintf(&b, "node %s: %d connections traced to cluster IPs (%d Service ports) in %v: %d mismatches\n",
			printable.String(r.Node), r.ServiceTraces, len(r.ServicePorts), r.ServiceDuration.Round(time.Millisecond), len(r.ServiceMismatches))
	}
	keys := make([]string, 0, len(r.Skipped))
	for k := range r.Skipped {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "not checked: %s (%d)\n", k, r.Skipped[k])
	}
	for _, c := range r.Mismatches {
		fmt.Fprintf(&b, "MISMATCH %s -> %s %s%s: model: %s; bridge: %s\n  %s\n  packet: %s\n  last flow: %s\n",
			printable.String(c.From), printable.String(c.To), c.Probe, v6Suffix(c.Family), printable.String(c.Model), c.Bridge, c.Mismatch, c.Packet, c.Decisive)
	}
	for _, c := range r.ServiceMismatches {
		fmt.Fprintf(&b, "MISMATCH %s -> Service %s%s: model: %s; bridge: %s\n  %s\n  packet: %s\n  last flow: %s\n",
			printable.String(c.From), printable.String(c.To), v6Suffix(c.Family), printable.String(c.Model), c.Bridge, printable.String(c.Mismatch), c.Packet, printable.String(c.Decisive))
	}
	return b.String()
}
