package e2e

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// The audit test's namespaces (their Pod objects stay in the shared
// cluster: no other world may use them).
const (
	auditShop  = "audit-shop"  // annotated deny
	auditOpen  = "audit-open"  // annotated deny,allow
	auditQuiet = "audit-quiet" // not annotated
	auditBad   = "audit-bad"   // annotated with a value that is not understood
)

// auditNamespace creates (or updates) a namespace with the audit
// annotation value (none when empty).
func auditNamespace(t *testing.T, w *world, name, value string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"ns": name}}}
	if value != "" {
		ns.Annotations = map[string]string{model.AuditAnnotation: value}
	}
	cl := w.c.Client.CoreV1().Namespaces()
	if _, err := cl.Create(w.ctx(), ns, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		old, err := cl.Get(w.ctx(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		old.Annotations = ns.Annotations
		if _, err := cl.Update(w.ctx(), old, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
}

// auditLine is one parsed line: its time and its key=value fields.
type auditLine struct {
	text   string
	time   time.Time
	fields map[string]string
}

func readAuditLog(t *testing.T, path string) []auditLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), " ")
		ts, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil {
			t.Fatalf("audit line %q: time: %v", sc.Text(), err)
		}
		l := auditLine{text: sc.Text(), time: ts, fields: map[string]string{}}
		for _, p := range parts[1:] {
			k, v, ok := strings.Cut(p, "=")
			if !ok {
				t.Fatalf("audit line %q: field %q", sc.Text(), p)
			}
			l.fields[k] = v
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitAuditLines waits until the file has stopped growing for 500 ms (at
// most 15 s) and returns its lines.
func waitAuditLines(t *testing.T, path string) []auditLine {
	t.Helper()
	last, since := -1, time.Now()
	for start := time.Now(); time.Since(start) < 15*time.Second; time.Sleep(50 * time.Millisecond) {
		n := len(readAuditLog(t, path))
		if n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > 500*time.Millisecond {
			break
		}
	}
	return readAuditLog(t, path)
}

// labelledMetric reads a metric with labels (e.g.
// `ovs_netpol_audit_lines_total{verdict="deny"}`) from the agent.
func (a *agent) labelledMetric(t *testing.T, series string) float64 {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0 // a labelled series not yet seen
}

// TestAudit runs the agent with --audit-log on a node of its own (subnet
// 10.89) and checks the audit log against real traffic: denied TCP and UDP
// connections of an annotated namespace are logged with both pods, their
// addresses and ports, the protocol, the direction, the verdict and the
// isolating policy; allowed ones of a namespace annotated deny,allow with
// the rule that allowed them (or "-" where the pod is not isolated); a
// namespace without the annotation, and one with a value that is not
// understood (a counted rejection), log nothing; a flood from one pod gives
// no more lines than the meter lets through: --audit-rate × its duration +
// --audit-burst.
func TestAudit(t *testing.T) {
	const rate, burst = 20, 40
	w := newWorld(t, "audit", "10.89")
	n := w.addNode(t)
	logPath := filepath.Join(t.TempDir(), "audit.log")
	a := n.startAgent(t, "v1", "--audit-log="+logPath, fmt.Sprintf("--audit-rate=%d", rate), fmt.Sprintf("--audit-burst=%d", burst))
	rejectedBefore := a.labelledMetric(t, `ovs_netpol_rejected_objects_total{kind="namespace"}`)
	auditNamespace(t, w, auditShop, "deny")
	auditNamespace(t, w, auditOpen, "deny,allow")
	auditNamespace(t, w, auditQuiet, "")
	auditNamespace(t, w, auditBad, "everything")
	for _, p := range []struct{ ns, name string }{
		{auditShop, "web"}, {auditShop, "db"}, {auditShop, "cache"},
		{auditOpen, "client"}, {auditOpen, "server"},
		{auditQuiet, "q1"}, {auditQuiet, "q2"},
		{auditBad, "b1"}, {auditBad, "b2"},
	} {
		n.addPod(t, podSpec{ns: p.ns, name: p.name, labels: map[string]string{"app": p.name}})
	}
	w.waitPodsRealized(t)
	podOf := func(ns, name string) *pod { return w.pod(ns + "/" + name) }
	web, db, cache := podOf(auditShop, "web"), podOf(auditShop, "db"), podOf(auditShop, "cache")
	client, server := podOf(auditOpen, "client"), podOf(auditOpen, "server")
	q1, q2, b1, b2 := podOf(auditQuiet, "q1"), podOf(auditQuiet, "q2"), podOf(auditBad, "b1"), podOf(auditBad, "b2")
	denyAll := "podSelector: {}\npolicyTypes: [Ingress]"
	w.change(t, func() {
		w.kubectlApply(t,
			// db admits web on TCP 80 only.
			np(auditShop, "db-ingress", "podSelector:\n  matchLabels: {app: db}\ningress:\n- from:\n  - podSelector:\n      matchLabels: {app: web}\n  ports:\n  - {protocol: TCP, port: 80}"),
			// web may reach db only.
			np(auditShop, "web-egress", "podSelector:\n  matchLabels: {app: web}\npolicyTypes: [Egress]\negress:\n- to:\n  - podSelector:\n      matchLabels: {app: db}"),
			np(auditOpen, "server-ingress", "podSelector:\n  matchLabels: {app: server}\ningress:\n- from:\n  - podSelector:\n      matchLabels: {app: client}\n  ports:\n  - {protocol: TCP, port: 80}"),
			np(auditQuiet, "deny-all", denyAll),
			np(auditBad, "deny-all", denyAll))
	})
	snap := w.flowSnapshot(t)[0]
	if c := strings.Count(snap, "controller(userdata="); c == 0 {
		t.Fatalf("no audit flow on the bridge:\n%s", snap)
	} else {
		t.Logf("%d audit flows on the bridge", c)
	}
	if v := a.labelledMetric(t, `ovs_netpol_rejected_objects_total{kind="namespace"}`); v <= rejectedBefore {
		t.Errorf("the bad annotation of %s was not counted as a rejected namespace (%v before, %v after)", auditBad, rejectedBefore, v)
	}

	// K denied probes each of TCP and UDP (db admits web on TCP 80 only:
	// ingress deny), of web to cache (web's egress: deny), and of the
	// namespaces that log nothing; each with a source port of its own.
	type probeCase struct {
		from, to     *pod
		proto        string
		port, sport  int
		ok           bool
		dir, verdict string
		policies     string
		wantLogged   bool
	}
	const k = 3
	var cases []probeCase
	for i := range k {
		cases = append(cases,
			probeCase{from: web, to: db, proto: "tcp", port: 81, sport: 41000 + i, dir: "ingress", verdict: "deny", policies: auditShop + "/db-ingress", wantLogged: true},
			probeCase{from: web, to: db, proto: "udp", port: 80, sport: 41100 + i, dir: "ingress", verdict: "deny", policies: auditShop + "/db-ingress", wantLogged: true},
			probeCase{from: web, to: cache, proto: "tcp", port: 80, sport: 41200 + i, dir: "egress", verdict: "deny", policies: auditShop + "/web-egress", wantLogged: true},
			probeCase{from: q1, to: q2, proto: "tcp", port: 80, sport: 41300 + i},
			probeCase{from: b1, to: b2, proto: "udp", port: 80, sport: 41400 + i},
		)
	}
	// Allowed: client to server TCP 80 (server-ingress rule 0; client is
	// not isolated for egress), and web to db TCP 80 (audit-shop logs
	// denials only).
	cases = append(cases,
		probeCase{from: client, to: server, proto: "tcp", port: 80, sport: 41500, ok: true, dir: "ingress", verdict: "allow", policies: auditOpen + "/server-ingress#0", wantLogged: true},
		probeCase{from: client, to: server, proto: "tcp", port: 80, sport: 41500, ok: true, dir: "egress", verdict: "allow", policies: "-", wantLogged: true},
		probeCase{from: web, to: db, proto: "tcp", port: 80, sport: 41600, ok: true},
	)
	probed := map[string]bool{}
	for _, c := range cases {
		key := fmt.Sprintf("%s:%d", c.proto, c.sport)
		if probed[key] {
			continue // the second expectation of one probe
		}
		probed[key] = true
		out, err := agnhost(c.from.netns, "probe", "--timeout", "1s", fmt.Sprintf("0=%s:%s:%d:%d", c.proto, c.to.ip, c.port, c.sport))
		totals.probes.Add(1)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(out, " ok "); got != c.ok {
			t.Fatalf("%s -> %s %s/%d from port %d: %q, want ok=%v", c.from.key(), c.to.key(), c.proto, c.port, c.sport, out, c.ok)
		}
	}
	lines := waitAuditLines(t, logPath)
	t.Logf("%d lines after %d probes", len(lines), len(probed))
	// One line of each kind, for the record.
	shown := map[string]bool{}
	for _, l := range lines {
		kind := l.fields["direction"] + " " + l.fields["verdict"]
		if !shown[kind] && kind != "egress allow" {
			shown[kind] = true
			t.Logf("audit log: %s", l.text)
		}
	}
	for _, c := range cases {
		src := fmt.Sprintf("%s:%d", c.from.ip, c.sport)
		var mine []auditLine
		for _, l := range lines {
			if l.fields["src"] == src && (c.dir == "" || l.fields["direction"] == c.dir) {
				mine = append(mine, l)
			}
		}
		what := fmt.Sprintf("%s %s -> %s %s/%d from port %d", c.verdict, c.from.key(), c.to.key(), c.proto, c.port, c.sport)
		if !c.wantLogged {
			if len(mine) > 0 {
				t.Errorf("%s: logged, but its namespaces are not audited: %s", what, mine[0].text)
			}
			continue
		}
		if len(mine) == 0 {
			t.Errorf("%s (%s): no line", what, c.dir)
			continue
		}
		want := map[string]string{"node": n.name, "direction": c.dir, "src": src, "src_pod": c.from.key(),
			"dst": fmt.Sprintf("%s:%d", c.to.ip, c.port), "dst_pod": c.to.key(), "protocol": strings.ToUpper(c.proto),
			"verdict": c.verdict, "policies": c.policies}
		for _, l := range mine {
			for k, v := range want {
				if l.fields[k] != v {
					t.Errorf("%s: %s=%q, want %q: %s", what, k, l.fields[k], v, l.text)
				}
			}
		}
	}
	for _, l := range lines {
		for _, ns := range []string{auditQuiet, auditBad} {
			if strings.Contains(l.text, ns+"/") {
				t.Errorf("a line names %s, which is not audited: %s", ns, l.text)
			}
		}
	}

	// A flood: new UDP "connections" (fresh source ports) from web to db
	// port 81, one every millisecond for two seconds, each denied.
	floodCheck(t, a, web, db, logPath, 50000, rate, burst, true)

	// A new ovs-vswitchd has no meters; the agent's full sync may add the
	// audit flows before the meters are back, and OVS would leave such
	// flows unmetered: the agent adds them again. A flood after the
	// restart is bounded the same way.
	if err := n.sw.RestartVswitchd(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	for !strings.Contains(w.flowSnapshot(t)[0], "controller(userdata=") {
		if time.Since(restarted) > 30*time.Second {
			t.Fatal("the audit flows are not back 30 s after ovs-vswitchd restarted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.waitPodsRealized(t)
	t.Logf("audit flows back %v after the ovs-vswitchd restart", time.Since(restarted).Round(time.Millisecond))
	if b, err := os.ReadFile(a.log); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "audit meters set") || strings.Contains(l, "audit flows added again") {
				t.Logf("agent: %s", l)
			}
		}
	}
	floodCheck(t, a, web, db, logPath, 55000, rate, burst, false)
}

// floodCheck floods from -> to UDP 81 (denied) with a new source port
// (from base up) every millisecond for 2 s and checks that the lines it
// gave are at most the deny meter's burst + rate × the flood's duration.
// With accounting, every packet the meter let through so far must be a
// line or a counted drop (the meter's counters start with ovs-vswitchd).
func floodCheck(t *testing.T, a *agent, from, to *pod, logPath string, base, rate, burst int, accounting bool) {
	t.Helper()
	start := time.Now()
	out, err := agnhost(from.netns, "loop", "--interval", "1ms", "--timeout", "100ms", "--duration", "2s",
		"--sport-base", strconv.Itoa(base), fmt.Sprintf("udp:%s:81", to.ip))
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	attempts := 0
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && (f[1] == "ok" || f[1] == "fail") {
			attempts++
			if f[1] == "ok" {
				t.Fatalf("a flood datagram %s -> %s udp/81 passed: %q", from.key(), to.key(), l)
			}
		}
	}
	lines := waitAuditLines(t, logPath)
	flood := 0
	for _, l := range lines {
		sport := l.fields["src"][strings.LastIndex(l.fields["src"], ":")+1:]
		if p, err := strconv.Atoi(sport); err == nil && p >= base && p < base+attempts && l.fields["src_pod"] == from.key() {
			flood++
		}
	}
	bound := burst + int(math.Ceil(float64(rate)*elapsed.Seconds()))
	meters, _ := a.n.sw.Ofctl("-O", "OpenFlow15", "meter-stats", bridge)
	t.Logf("flood: %d denied datagrams in %v (%.0f/s) gave %d lines; the meter's bound is %d (burst %d + %d/s × %.2f s); lines total %v deny, %v allow; dropped %v (queue), %v (decode); meter stats:\n%s",
		attempts, elapsed.Round(time.Millisecond), float64(attempts)/elapsed.Seconds(), flood, bound, burst, rate, elapsed.Seconds(),
		a.labelledMetric(t, `ovs_netpol_audit_lines_total{verdict="deny"}`), a.labelledMetric(t, `ovs_netpol_audit_lines_total{verdict="allow"}`),
		a.labelledMetric(t, `ovs_netpol_audit_dropped_total{reason="queue"}`), a.labelledMetric(t, `ovs_netpol_audit_dropped_total{reason="decode"}`), meters)
	if accounting {
		// Every packet the deny meter let through became a line or a
		// counted drop: nothing is lost unseen between the datapath and
		// the file.
		passed := meterPassed(t, meters, 0x4e0001)
		accounted := a.labelledMetric(t, `ovs_netpol_audit_lines_total{verdict="deny"}`)
		for _, r := range []string{"queue", "rate", "decode", "foreign", "write"} {
			accounted += a.labelledMetric(t, `ovs_netpol_audit_dropped_total{reason="`+r+`"}`)
		}
		if float64(passed) != accounted {
			t.Errorf("the deny meter passed %d packet-ins; deny lines and drops count %v", passed, accounted)
		}
	}
	if attempts < 4*bound {
		t.Fatalf("the flood sent %d datagrams, not enough over the bound %d to test the meter", attempts, bound)
	}
	if flood == 0 || flood > bound {
		t.Errorf("the flood gave %d lines, want 1 to %d (the meter's burst + rate × duration)", flood, bound)
	}
}

// meterPassed reads from ovs-ofctl meter-stats how many packets meter id
// let through: packet_in_count minus its drop band's packet_count.
func meterPassed(t *testing.T, stats string, id uint32) int {
	t.Helper()
	in, dropped := -1, -1
	mine := false
	for _, tok := range strings.Fields(stats) {
		switch {
		case strings.HasPrefix(tok, "meter:"):
			mine = tok == fmt.Sprintf("meter:%d", id)
		case mine && strings.HasPrefix(tok, "packet_in_count:"):
			in, _ = strconv.Atoi(strings.TrimPrefix(tok, "packet_in_count:"))
		case mine && strings.HasPrefix(tok, "packet_count:"):
			dropped, _ = strconv.Atoi(strings.TrimPrefix(tok, "packet_count:"))
		}
	}
	if in < 0 || dropped < 0 {
		t.Fatalf("meter %d not in the meter stats:\n%s", id, stats)
	}
	return in - dropped
}
