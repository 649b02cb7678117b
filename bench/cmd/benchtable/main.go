// Command benchtable runs the cluster-scale benchmarks of ./bench (go test
// -bench, against a real ovs-vswitchd and kube-apiserver) and prints the
// goals next to what was measured, as Markdown. `make bench` runs it.
//
// The benchmarks' own output goes to stderr as they run; the table goes to
// stdout (and to -o FILE). -events N sets the events per kind of the agent
// benchmarks (default 100); -only REGEXP runs a subset of the groups
// (compile, events, install, agent, services: the agent benchmark at S1
// plus 10,000 Services; overlay: the agent benchmark at S1 with Nodes, flat
// L2 vs the Geneve overlay).
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// group is one go test invocation.
type group struct {
	name, bench string
	benchtime   string
}

var groups = []group{
	{"compile", "^BenchmarkCompile", "3x"},
	{"events", "^BenchmarkEvents", "1x"},
	{"install", "^BenchmarkInstall", "9x"},
	{"agent", "^BenchmarkAgentS1$", "1x"},
	{"services", "^BenchmarkAgentS1Services$", "1x"},
	{"overlay", "^BenchmarkAgentS1Overlay$", "1x"},
}

// results maps benchmark name (without -GOMAXPROCS) → unit → value.
type results map[string]map[string]float64

func main() {
	out := flag.String("o", "", "also write the table to this file")
	events := flag.Int("events", 100, "events of each kind in the agent benchmark")
	only := flag.String("only", "", "run only the groups matching this regexp (compile, events, install, agent, services, overlay)")
	flag.Parse()
	sel := regexp.MustCompile(*only)

	machine := describeMachine()
	load0 := loadavg()
	start := time.Now()
	res := results{}
	for _, g := range groups {
		if !sel.MatchString(g.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "== %s: go test -bench %s -benchtime %s\n", g.name, g.bench, g.benchtime)
		if err := run(g, *events, res); err != nil {
			fmt.Fprintf(os.Stderr, "benchtable: %s: %v\n", g.name, err)
			os.Exit(1)
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Measured %s in %v. %s\n\nLoad average (1, 5, 15 min) before: %s; after: %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), time.Since(start).Round(time.Second), machine, load0, loadavg())
	table(&b, res)
	os.Stdout.Write(b.Bytes())
	if *out != "" {
		if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "benchtable:", err)
			os.Exit(1)
		}
	}
}

// run executes one group, teeing its output to stderr, and parses the
// benchmark result lines.
func run(g group, events int, res results) error {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", g.bench, "-benchtime", g.benchtime,
		"-timeout", "30m", "-count", "1", "./bench/")
	cmd.Env = append(os.Environ(), "BENCH_EVENTS="+strconv.Itoa(events))
	var buf bytes.Buffer
	cmd.Stdout = io.MultiWriter(os.Stderr, &buf)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return err
	}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		parseLine(sc.Text(), res)
	}
	return sc.Err()
}

// parseLine reads "BenchmarkX-2  1  123 ns/op  4.5 unit ...".
func parseLine(line string, res results) {
	f := strings.Fields(line)
	if len(f) < 3 || !strings.HasPrefix(f[0], "Benchmark") {
		return
	}
	name := f[0]
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		name = name[:i]
	}
	m := res[name]
	if m == nil {
		m = map[string]float64{}
		res[name] = m
	}
	for i := 2; i+1 < len(f); i += 2 {
		if v, err := strconv.ParseFloat(f[i], 64); err == nil {
			m[f[i+1]] = v
		}
	}
}

func (r results) get(bench, unit string) (float64, bool) {
	v, ok := r[bench][unit]
	return v, ok
}

// row is one line of the goal table.
type row struct {
	what, goal, measured string
	met                  string // "yes", "no", "" (informational)
}

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func table(w io.Writer, r results) {
	var rows []row
	add := func(what, goal, measured string, met string) { rows = append(rows, row{what, goal, measured, met}) }

	for _, s := range []string{"S1", "S2"} {
		bn := "BenchmarkInstall" + s
		if v, ok := r.get(bn, "ratio"); ok {
			raw, _ := r.get(bn, "raw-ms")
			sync, _ := r.get(bn, "sync-ms")
			apply, _ := r.get(bn, "apply-ms")
			n, _ := r.get(bn, "flows")
			rn, _ := r.get(bn, "raw-nonames-ms")
			add(fmt.Sprintf("full install, %s node (%.0f flows): flowsync Sync vs raw `ovs-ofctl --bundle add-flows`", s, n), "≤ 1.2×",
				fmt.Sprintf("%.2f× (%.0f ms vs %.0f ms; the bundle alone, Apply: %.0f ms = %.2f×; raw with --no-names, as flowsync runs it: %.0f ms, Sync %.2f× that)", v, sync, raw, apply, apply/raw, rn, sync/rn), verdict(v <= 1.2))
			rb, _ := r.get(bn, "rawbundle-ms")
			rbn, _ := r.get(bn, "rawbundle-nonames-ms")
			dg, _ := r.get(bn, "dumpgroups-ms")
			dump, _ := r.get(bn, "dump-ms")
			bc, _ := r.get(bn, "rawbundle-ofctl-cpu-ms")
			ac, _ := r.get(bn, "raw-ofctl-cpu-ms")
			add("· the same flows by raw `ovs-ofctl bundle` (\"flow add\" lines), the command flowsync runs for bundles with group changes", "",
				fmt.Sprintf("raw `bundle` %.0f ms = %.2f× raw `--bundle add-flows` (--no-names: %.0f vs %.0f ms = %.2f×; ovs-ofctl's own CPU %.0f vs %.0f ms); Sync %.2f× raw `bundle`, Apply %.2f× (--no-names: %.2f×, %.2f×); Sync's dumps on the empty bridge: flows %.1f ms, groups %.1f ms",
					rb, rb/raw, rbn, rn, rbn/rn, bc, ac, sync/rb, apply/rb, sync/rbn, apply/rbn, dump, dg), "")
		}
	}
	if v, ok := r.get("BenchmarkInstallS1Services", "bundle-ratio"); ok {
		bn := "BenchmarkInstallS1Services"
		rb, _ := r.get(bn, "rawbundle-ms")
		rbn, _ := r.get(bn, "rawbundle-nonames-ms")
		sync, _ := r.get(bn, "sync-ms")
		apply, _ := r.get(bn, "apply-ms")
		n, _ := r.get(bn, "flows")
		g, _ := r.get(bn, "groups")
		mb, _ := r.get(bn, "bundle-MB")
		add(fmt.Sprintf("full install, S1 + 10,000 Services node (%.0f flows, %.0f groups, %.1f MB of bundle text): flowsync SyncAll vs raw `ovs-ofctl bundle` of the same text", n, g, mb), "≤ 1.2×",
			fmt.Sprintf("%.2f× (%.0f ms vs %.0f ms; the bundle alone, ApplyBundle: %.0f ms = %.2f×; raw with --no-names, as flowsync runs it: %.0f ms, SyncAll %.2f× that)", v, sync, rb, apply, apply/rb, rbn, sync/rbn), verdict(v <= 1.2))
		sp, _ := r.get(bn, "rawsplit-nonames-ms")
		bc, _ := r.get(bn, "rawbundle-ofctl-cpu-ms")
		ac, _ := r.get(bn, "raw-ofctl-cpu-ms")
		dg, _ := r.get(bn, "dumpgroups-ms")
		add("· the same, not atomic: raw `bundle` of the groups alone, then raw `--bundle add-flows` of the flows alone (--no-names)", "",
			fmt.Sprintf("%.0f ms = %.2f× the raw `bundle` --no-names; ovs-ofctl's own CPU: `bundle` of everything %.0f ms, `--bundle add-flows` of the flows %.0f ms; SyncAll's group dump on the empty bridge %.1f ms", sp, sp/rbn, bc, ac, dg), "")
	}

	const a = "BenchmarkAgentS1"
	if floor, ok := r.get(a, "floor1-p50-ms"); ok {
		if fb, ok := r.get(a, "floor1-bundle-p50-ms"); ok {
			fbn, _ := r.get(a, "floor1-bundle-nonames-p50-ms")
			nn, _ := r.get(a, "floor1-nonames-p50-ms")
			add("one-flow raw `ovs-ofctl bundle` (\"flow add\"), same run, beside the floor", "", fmt.Sprintf("p50 %.1f ms = %.2f× the `--bundle add-flows` floor; with --no-names %.1f ms = %.2f×", fb, fb/floor, fbn, fbn/nn), "")
		}
		p50, _ := r.get(a, "event-p50-ms")
		p99, _ := r.get(a, "event-p99-ms")
		f99, _ := r.get(a, "floor1-p99-ms")
		big, _ := r.get(a, "floor1000-p50-ms")
		nn, _ := r.get(a, "floor1-nonames-p50-ms")
		add("one-flow raw bundle (the floor), same run", "", fmt.Sprintf("p50 %.1f ms, p99 %.1f ms (1,000 flows: %.1f ms); with --no-names, as flowsync runs ovs-ofctl: p50 %.1f ms", floor, f99, big, nn), "")
		add("event → bundle committed at S1, all kinds, p50", "≤ 1.3× floor", fmt.Sprintf("%.1f ms = %.2f×", p50, p50/floor), verdict(p50 <= 1.3*floor))
		add("event → bundle committed at S1, all kinds, p99", "≤ 2× floor", fmt.Sprintf("%.1f ms = %.2f× the floor's p50 (%.2f× its p99)", p99, p99/floor, p99/f99), verdict(p99 <= 2*floor))
		if nn > 0 {
			add("· the same against the --no-names floor (ovs-ofctl as flowsync runs it)", "", fmt.Sprintf("p50 %.2f×, p99 %.2f× (%.1f ms over it at p50)", p50/nn, p99/nn, p50-nn), "")
		}
		c50, _ := r.get(a, "compute-p50-ms")
		c99, _ := r.get(a, "compute-p99-ms")
		add("compute alone (apply + Flush) per event at S1", "< 2 ms", fmt.Sprintf("p50 %.2f ms, p99 %.2f ms", c50, c99), verdict(c50 < 2)+pIf(c99 >= 2, " (p50; p99 no)"))
		for _, k := range []string{"pod-add-other-node", "pod-add-this-node", "pod-label-change", "namespace-label-change", "policy-add", "policy-delete"} {
			n, _ := r.get(a, k+"-events")
			none, _ := r.get(a, k+"-no-bundle")
			l50, _ := r.get(a, k+"-p50-ms")
			l99, _ := r.get(a, k+"-p99-ms")
			over, _ := r.get(a, k+"-over-raw-p50-ms")
			k50, _ := r.get(a, k+"-compute-p50-ms")
			k99, _ := r.get(a, k+"-compute-p99-ms")
			mods, _ := r.get(a, k+"-mods")
			add(fmt.Sprintf("· %s (%.0f events, %.0f changed no flow here)", strings.ReplaceAll(k, "-", " "), n, none), "",
				fmt.Sprintf("p50 %.1f ms (%.2f× floor), p99 %.1f ms; %.1f ms over a raw bundle of as many flows; compute p50 %.2f / p99 %.2f ms; %.1f flow mods", l50, l50/floor, l99, over, k50, k99, mods), "")
		}
	}
	const sa = "BenchmarkAgentS1Services"
	if floor, ok := r.get(sa, "floor1-p50-ms"); ok {
		p50, _ := r.get(sa, "event-p50-ms")
		p99, _ := r.get(sa, "event-p99-ms")
		f99, _ := r.get(sa, "floor1-p99-ms")
		nn, _ := r.get(sa, "floor1-nonames-p50-ms")
		nn99, _ := r.get(sa, "floor1-nonames-p99-ms")
		af, _ := r.get(sa, "floor1-addflows-p50-ms")
		afn, _ := r.get(sa, "floor1-addflows-nonames-p50-ms")
		big, _ := r.get(sa, "floor1000-p50-ms")
		fl, _ := r.get(sa, "flows")
		gr, _ := r.get(sa, "groups")
		add(fmt.Sprintf("S1 + 10,000 Services in the agent (%.0f flows, %.0f groups on br-int): one-flow raw `ovs-ofctl bundle` (the floor of the Service rows), same run", fl, gr), "",
			fmt.Sprintf("p50 %.1f ms, p99 %.1f ms (1,000 flows: %.1f ms); with --no-names: p50 %.1f ms, p99 %.1f ms; `--bundle add-flows` in the same run: %.1f ms, --no-names %.1f ms", floor, f99, big, nn, nn99, af, afn), "")
		add("endpoint add / endpoint remove / Service add → bundle committed at S1 + 10,000 Services, p50", "≤ 1.3× floor", fmt.Sprintf("%.1f ms = %.2f×", p50, p50/floor), verdict(p50 <= 1.3*floor))
		add("the same, p99", "≤ 2× floor", fmt.Sprintf("%.1f ms = %.2f× the floor's p50 (%.2f× its p99)", p99, p99/floor, p99/f99), verdict(p99 <= 2*floor))
		if nn > 0 {
			add("· the same against the --no-names floor (ovs-ofctl as flowsync runs it)", "", fmt.Sprintf("p50 %.2f×, p99 %.2f× (%.1f ms over it at p50)", p50/nn, p99/nn, p50-nn), "")
		}
		prop, propOK := "", true
		for _, k := range []string{"endpoint-add", "endpoint-remove", "service-add"} {
			n, _ := r.get(sa, k+"-events")
			none, _ := r.get(sa, k+"-no-bundle")
			l50, _ := r.get(sa, k+"-p50-ms")
			l99, _ := r.get(sa, k+"-p99-ms")
			over, _ := r.get(sa, k+"-over-raw-p50-ms")
			k50, _ := r.get(sa, k+"-compute-p50-ms")
			k99, _ := r.get(sa, k+"-compute-p99-ms")
			mods, _ := r.get(sa, k+"-mods")
			pp, _ := r.get(sa, k+"-mods-per-port")
			mpp, _ := r.get(sa, k+"-max-mods-per-port")
			mx, _ := r.get(sa, k+"-max-mods")
			foreign, _ := r.get(sa, k+"-foreign-mods")
			mps, _ := r.get(sa, k+"-max-mods-per-size")
			add(fmt.Sprintf("· %s (%.0f events, %.0f changed nothing here)", strings.ReplaceAll(k, "-", " "), n, none), "",
				fmt.Sprintf("p50 %.1f ms (%.2f× floor), p99 %.1f ms (%.2f×); %.1f ms over a raw bundle of as many flows; compute p50 %.2f / p99 %.2f ms; %.2f flow/group mods (max %.0f)",
					l50, l50/floor, l99, l99/floor, over, k50, k99, mods, mx), "")
			if k != "service-add" {
				prop += fmt.Sprintf("%s: %.2f mods per Service port (max %.0f per port, %.2f per port × backend), %.0f of other origins; ", strings.ReplaceAll(k, "-", " "), pp, mpp, mps, foreign)
				propOK = propOK && foreign == 0 && mps <= 2
			}
		}
		add("flow mods per endpoint change: only that Service's, bounded by its size (ports × backends: a group mod per port; with session affinity its multipath flow and per-backend flows)", "0 others, ≤ 2 per port × backend",
			strings.TrimSuffix(prop, "; "), verdict(propOK))
		if fl, ok := r.get(sa, "ct-flushes"); ok && fl > 0 {
			ft, _ := r.get(sa, "ct-flush-ms")
			add("· UDP conntrack flushes after endpoint removals (after the commit, off the events' path)", "", fmt.Sprintf("%.0f flushes, %.1f ms each (one ovs-ofctl ct-flush)", fl, ft), "")
		}
	}
	if v, ok := r.get(sa, "agent-rss-MB"); ok {
		idle, _ := r.get(sa, "agent-idle-rss-MB")
		peak, _ := r.get(sa, "agent-peak-rss-MB")
		heap, _ := r.get(sa, "agent-heap-MB")
		add("· agent binary RSS at S1 + 10,000 Services, as deployed, after a 1,000-event burst", "", fmt.Sprintf("%.0f MB (idle after sync %.0f MB; Go heap %.0f MB; startup peak %.0f MB)", v, idle, heap, peak), "")
	}
	if v, ok := r.get(a, "burst-after-last-ms"); ok {
		sent, _ := r.get(a, "burst-sent-s")
		bundles, _ := r.get(a, "burst-bundles")
		mods, _ := r.get(a, "burst-mods")
		add("burst of 1,000 pod label changes: last committed after the last event", "≤ 1 s",
			fmt.Sprintf("%.0f ms (sent over %.2f s; %.0f bundles, %.0f flow mods)", v, sent, bundles, mods), verdict(v <= 1000))
	}

	overlayRows(r, add)

	for _, s := range []string{"S1", "S2", "S1TenNodes"} {
		b := "BenchmarkCompile" + s
		if x, ok := r.get(b, "x-fewer"); ok {
			if s == "S1TenNodes" {
				fl, _ := r.get(b, "flows")
				cr, _ := r.get(b, "cross-flows")
				xp, _ := r.get(b, "x-fewer-policy")
				add("· the same S1 cluster on 10 nodes (1,000 pods per node)", "", fmt.Sprintf("%.1f× (%.0f vs %.0f); policy flows alone %.1f×", x, fl, cr, xp), "")
				if xo, ok := r.get(b, "x-fewer-osdn"); ok {
					of, _ := r.get(b, "osdn-flows")
					xop, _ := r.get(b, "x-fewer-osdn-policy")
					add("· the same, vs OpenShift SDN's scheme", "", fmt.Sprintf("%.1f× (%.0f vs %.0f); policy flows alone %.1f×", xo, fl, of, xop), "")
				}
				continue
			}
			fl, _ := r.get(b, "flows")
			cr, _ := r.get(b, "cross-flows")
			xp, _ := r.get(b, "x-fewer-policy")
			pf, _ := r.get(b, "policy-flows")
			cp, _ := r.get(b, "cross-policy-flows")
			add(fmt.Sprintf("flows vs cross product, %s node", s), "≥ 20× fewer",
				fmt.Sprintf("%.1f× (%.0f vs %.0f); policy flows alone %.1f× (%.0f vs %.0f)", x, fl, cr, xp, pf, cp), verdict(x >= 20))
			if xo, ok := r.get(b, "x-fewer-osdn"); ok {
				of, _ := r.get(b, "osdn-flows")
				op, _ := r.get(b, "osdn-policy-flows")
				xop, _ := r.get(b, "x-fewer-osdn-policy")
				iso, _ := r.get(b, "osdn-isolation-flows")
				sub, _ := r.get(b, "osdn-substituted-flows")
				subr, _ := r.get(b, "osdn-substituted-rules")
				add(fmt.Sprintf("flows vs OpenShift SDN's scheme (its NetworkPolicy plugin's algorithm on the same objects: per in-use namespace, "+
					"each selected pod cluster-wide × peers × ports, plus its drop and default flows, our non-policy flows on both sides; "+
					"rules it cannot express — egress, ipBlock, named ports, port ranges, SCTP, ports without number — counted as their cross product above), %s node", s),
					"≥ 20× fewer",
					fmt.Sprintf("%.1f× (ours vs theirs: %.0f vs %.0f); policy flows alone %.1f× (%.0f vs %.0f); of theirs, %.0f drop/default flows and %.0f cross-product flows for %.0f rules it cannot express",
						xo, fl, of, xop, pf, op, iso, sub, subr), verdict(xo >= 20))
			}
		}
	}
	for _, s := range []string{"S1", "S2", "S1Services"} {
		b := "BenchmarkCompile" + s
		if ms, ok := r.get(b, "compile-ms"); ok {
			cpu, _ := r.get(b, "compile-cpu-ms")
			heap, _ := r.get(b, "peak-heap-MB")
			model, _ := r.get(b, "model-heap-MB")
			goal, met := "", ""
			if s == "S2" {
				goal, met = "≤ 2 s, ≤ 1 GB (Antrea: ~6 s, ~1.6 GB)", verdict(ms <= 2000 && heap <= 1024)
			}
			name := s
			if s == "S1Services" {
				fl, _ := r.get(b, "flows")
				g, _ := r.get(b, "groups")
				name = fmt.Sprintf("S1 + 10,000 Services (%.0f flows, %.0f groups)", fl, g)
			}
			add(fmt.Sprintf("compile one node's flow set, %s", name), goal,
				fmt.Sprintf("%.0f ms (CPU %.0f ms), peak heap %.0f MB (the model alone %.0f MB)", ms, cpu, heap, model), met)
		}
	}
	if v, ok := r.get(a, "agent-rss-MB"); ok {
		idle, _ := r.get(a, "agent-idle-rss-MB")
		peak, _ := r.get(a, "agent-peak-rss-MB")
		heap, _ := r.get(a, "agent-heap-MB")
		limit := "GOMEMLIMIT off"
		if l, _ := r.get(a, "agent-gomemlimit-MiB"); l > 0 {
			limit = fmt.Sprintf("GOMEMLIMIT=%.0fMiB", l)
		}
		add(fmt.Sprintf("agent binary steady-state RSS at S1 (after a 1,000-event burst), as deployed (%s, from manifests/daemonset.yaml)", limit), "≤ 100 MB",
			fmt.Sprintf("%.0f MB (idle after sync %.0f MB; Go heap %.0f MB; startup peak %.0f MB)", v, idle, heap, peak), verdict(v <= 100))
	}

	fmt.Fprintln(w, "| measure | goal | measured | met |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", r.what, r.goal, r.measured, r.met)
	}
	if len(r["BenchmarkEventsS1"]) > 0 {
		fmt.Fprintln(w, "\nCompute alone without I/O (BenchmarkEvents: apply + Flush on the incremental compiler), p50 / p99 µs and flows (and groups) changed per event:")
		fmt.Fprintln(w, "\n| event | S1 | S2 | S1 + 10,000 Services |\n|---|---|---|---|")
		for _, k := range []string{"pod-add-other-node", "pod-add-this-node", "pod-label-change", "namespace-label-change", "policy-add", "policy-delete",
			"endpoint-add", "endpoint-remove", "service-add"} {
			cell := func(s string) string {
				b := "BenchmarkEvents" + s
				p50, ok := r.get(b, k+"-p50-us")
				if !ok {
					return "–"
				}
				p99, _ := r.get(b, k+"-p99-us")
				fl, _ := r.get(b, k+"-flows")
				out := fmt.Sprintf("%.0f / %.0f µs, %.1f flows", p50, p99, fl)
				if g, ok := r.get(b, k+"-groups"); ok && g > 0 {
					out += fmt.Sprintf(", %.2f groups", g)
				}
				return out
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", strings.ReplaceAll(k, "-", " "), cell("S1"), cell("S2"), cell("S1Services"))
		}
	}
}

func pIf(c bool, s string) string {
	if c {
		return s
	}
	return ""
}

// describeMachine says what the numbers were measured on.
func describeMachine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %f kB", &kb)
		mem = fmt.Sprintf(", %.0f GiB RAM", kb/(1<<20))
	}
	ovs := "?"
	if o, err := exec.Command("ovs-vswitchd", "--version").Output(); err == nil {
		ovs = strings.TrimSpace(strings.SplitN(string(o), "\n", 2)[0])
	}
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("Machine: %s, %d CPUs%s, Linux %s, %s (userspace datapath), %s.", cpu, runtime.NumCPU(), mem, kernel, ovs, runtime.Version())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], ", ")
}

// overlayRows are BenchmarkAgentS1Overlay's: the node's flows and the
// events in the flat-L2 uplink mode and with the Geneve overlay.
func overlayRows(r results, add func(what, goal, measured, met string)) {
	const up, ov = "BenchmarkAgentS1Overlay/uplink", "BenchmarkAgentS1Overlay/overlay"
	uf, okU := r.get(up, "bridge-flows")
	of, okO := r.get(ov, "bridge-flows")
	if !okU || !okO {
		return
	}
	um, _ := r.get(up, "mode-flows")
	om, _ := r.get(ov, "mode-flows")
	add("flows on br-int at S1 with 100 Nodes, node-000: flat-L2 uplink mode vs Geneve overlay (agent path, installed)", "",
		fmt.Sprintf("uplink %.0f (%.0f of remote pods); overlay %.0f (%.0f of remote nodes) = %.2f× the uplink's", uf, um, of, om, of/uf), "")
	event := func(bench, k string) string {
		l50, _ := r.get(bench, k+"-p50-ms")
		l99, _ := r.get(bench, k+"-p99-ms")
		floor, _ := r.get(bench, "floor1-p50-ms")
		n, _ := r.get(bench, k+"-events")
		none, _ := r.get(bench, k+"-no-bundle")
		dist, _ := r.get(bench, k+"-disturbed")
		mods, _ := r.get(bench, k+"-mods")
		c50, _ := r.get(bench, k+"-compute-p50-ms")
		return fmt.Sprintf("p50 %.1f ms (%.2f× floor), p99 %.1f ms; compute p50 %.2f ms; %.2f flow mods; %.0f events, %.0f changed no flow, %.0f disturbed",
			l50, l50/floor, l99, c50, mods, n, none, dist)
	}
	add("· remote pod add → bundle committed, uplink mode", "", event(up, "pod-add-other-node"), "")
	add("· remote pod add → bundle committed, overlay", "", event(ov, "pod-add-other-node"), "")
	add("· node add (Node created with pod CIDR and InternalIP) → bundle committed, overlay", "", event(ov, "node-add"), "")
	add("· node remove (Node deleted) → bundle committed, overlay", "", event(ov, "node-remove"), "")
}
