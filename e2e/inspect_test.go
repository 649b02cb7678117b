package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// inspectNS is TestInspect's namespace (its Pod objects stay in the shared
// cluster: no other world may use it).
const inspectNS = "inspect"

// ovsNetpol runs the BUILT CLI with env (added to the test's) and returns
// stdout and stderr.
func ovsNetpol(t *testing.T, env []string, args ...string) (string, string) {
	t.Helper()
	cmd := exec.Command(binPath("ovs-netpol"), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("ovs-netpol %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	t.Logf("ovs-netpol %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return stdout.String(), stderr.String()
}

// inspectFlow and inspectPod are the JSON rows of `flows` and `pods`.
type inspectFlow struct {
	Table        uint8    `json:"table"`
	TableName    string   `json:"tableName"`
	Priority     uint16   `json:"priority"`
	Cookie       string   `json:"cookie"`
	Match        string   `json:"match"`
	Actions      string   `json:"actions"`
	Packets      uint64   `json:"packets"`
	Bytes        uint64   `json:"bytes"`
	ConjID       uint32   `json:"conjID"`
	Conjunctions []uint32 `json:"conjunctions"`
	Origin       string   `json:"origin"`
}

type inspectPod struct {
	Namespace, Name, UID, Interface, MAC, Node string
	OFPort                                     int
	IPs, Notes                                 []string
}

// TestInspect runs `ovs-netpol pods` and `ovs-netpol flows` (the built
// binary, on the node's run directory, with a kubeconfig) against a live
// agent: pods lists each attached pod with the OpenFlow port, MAC and IP the
// CNI plugin gave it; flows --policy lists that policy's rule flows, each
// annotated with its rule, and not the flows of another policy; the conj_id
// flow's packet counter grows by exactly the number of real connections the
// rule allowed, and not with a denied one; without a kubeconfig flows
// prints cookie kinds and says so.
func TestInspect(t *testing.T) {
	w := newWorld(t, "insp", "10.85")
	n := w.addNode(t)
	n.startAgent(t, "v1")
	w.ensureNamespace(t, inspectNS, map[string]string{"ns": inspectNS})
	names := []string{"client", "server", "other"}
	for _, name := range names {
		n.addPod(t, podSpec{ns: inspectNS, name: name, labels: map[string]string{"app": name}})
	}
	w.waitPodsRealized(t)
	client, server, other := w.pod(inspectNS+"/client"), w.pod(inspectNS+"/server"), w.pod(inspectNS+"/other")
	w.change(t, func() {
		w.kubectlApply(t,
			np(inspectNS, "allow-client", "podSelector:\n  matchLabels: {app: server}\ningress:\n- from:\n  - podSelector:\n      matchLabels: {app: client}\n  ports:\n  - {protocol: TCP, port: 80}"),
			np(inspectNS, "allow-other", "podSelector:\n  matchLabels: {app: other}\ningress:\n- from:\n  - podSelector:\n      matchLabels: {app: client}\n  ports:\n  - {protocol: TCP, port: 81}"))
	})
	node := []string{"--ovs-rundir", n.sw.Dir, "--kubeconfig", w.c.Kubeconfig}

	// pods: every attached pod with its port, MAC and IP.
	out, _ := ovsNetpol(t, nil, append([]string{"pods", "-o", "json"}, node...)...)
	var rows []inspectPod
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("pods -o json: %v\n%s", err, out)
	}
	if len(rows) != len(names) {
		t.Fatalf("pods lists %d pods, want %d:\n%s", len(rows), len(names), out)
	}
	for _, r := range rows {
		p := w.pod(r.Namespace + "/" + r.Name)
		if r.OFPort != p.ofport || r.MAC != p.mac || r.Interface != p.hostVeth || r.UID != p.uid ||
			len(r.IPs) != 1 || r.IPs[0] != p.ip || r.Node != n.name || len(r.Notes) != 0 {
			t.Errorf("pods row %+v; want port %d, MAC %s, interface %s, UID %s, IP %s, node %s, no notes",
				r, p.ofport, p.mac, p.hostVeth, p.uid, p.ip, n.name)
		}
	}
	text, _ := ovsNetpol(t, nil, append([]string{"ports"}, node...)...)
	for _, p := range []*pod{client, server, other} {
		line := ""
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, p.key()+" ") {
				line = l
			}
		}
		if f := strings.Fields(line); len(f) < 5 || f[1] != strconv.Itoa(p.ofport) || f[2] != p.hostVeth || f[3] != p.mac || f[4] != p.ip {
			t.Errorf("pods (text): %s's line is %q, want port %d, interface %s, MAC %s, IP %s:\n%s", p.key(), line, p.ofport, p.hostVeth, p.mac, p.ip, text)
		}
	}
	t.Logf("pods:\n%s", text)

	policyFlows := func(policy string) []inspectFlow {
		t.Helper()
		out, _ := ovsNetpol(t, nil, append([]string{"flows", "--policy", inspectNS + "/" + policy, "-o", "json"}, node...)...)
		var fs []inspectFlow
		if err := json.Unmarshal([]byte(out), &fs); err != nil {
			t.Fatalf("flows -o json: %v\n%s", err, out)
		}
		return fs
	}
	// conjOf checks that every flow is annotated with the policy's rule and
	// returns its conj_id flow.
	conjOf := func(policy string, fs []inspectFlow) inspectFlow {
		t.Helper()
		want := "policy " + inspectNS + "/" + policy + " ingress rule 0"
		var conj []inspectFlow
		for _, f := range fs {
			if !strings.Contains(f.Origin, want) {
				t.Errorf("flows --policy %s lists a flow not annotated %q: %+v", policy, want, f)
			}
			if f.ConjID != 0 {
				conj = append(conj, f)
			}
		}
		if len(conj) != 1 {
			t.Fatalf("flows --policy %s: %d conj_id flows, want 1: %+v", policy, len(conj), fs)
		}
		return conj[0]
	}
	allow, others := policyFlows("allow-client"), policyFlows("allow-other")
	conj, otherConj := conjOf("allow-client", allow), conjOf("allow-other", others)
	t.Logf("flows --policy %s/allow-client: %d flows, conj_id %d in table %d (%s): %s", inspectNS, len(allow), conj.ConjID, conj.Table, conj.TableName, conj.Origin)
	if conj.Table != 40 || conj.TableName != "ingress" {
		t.Errorf("conj_id flow of an ingress rule in table %d %s, want 40 ingress", conj.Table, conj.TableName)
	}
	// The other policy's own flows are not listed for this one. (A flow
	// both rules share, here the client's address as a peer of both
	// conjunctions, serves both and is listed for each.)
	id := func(f inspectFlow) string { return fmt.Sprintf("%d/%d/%s/%s", f.Table, f.Priority, f.Cookie, f.Match) }
	listed := map[string]bool{}
	for _, f := range allow {
		listed[id(f)] = true
	}
	otherOnly, shared := 0, 0
	for _, f := range others {
		servesAllow := f.ConjID == conj.ConjID || f.Cookie == conj.Cookie || slices.Contains(f.Conjunctions, conj.ConjID)
		switch {
		case servesAllow:
			shared++
			if !listed[id(f)] {
				t.Errorf("flows --policy allow-client omits a flow it shares with allow-other: %+v", f)
			}
		default:
			otherOnly++
			if listed[id(f)] {
				t.Errorf("flows --policy allow-client lists a flow of allow-other only: %+v", f)
			}
		}
	}
	t.Logf("allow-other: %d flows of its own (not listed for allow-client), %d shared with allow-client (listed for both)", otherOnly, shared)
	if otherOnly < 3 { // its conj_id flow, its target's address, its port
		t.Errorf("allow-other has %d flows of its own, want at least 3: %+v", otherOnly, others)
	}

	probe := func(from, to *pod, port int) bool {
		t.Helper()
		out, err := agnhost(from.netns, "probe", "--timeout", "1s", fmt.Sprintf("0=tcp:%s:%d", to.ip, port))
		totals.probes.Add(1)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(out, " ok ")
	}
	const connections = 4
	before := conj.Packets
	for i := range connections {
		if !probe(client, server, 80) {
			t.Fatalf("connection %d client -> server:80 (allowed by allow-client) failed", i)
		}
	}
	if probe(other, server, 80) {
		t.Fatal("other -> server:80 passed; allow-client admits only the client")
	}
	after := conjOf("allow-client", policyFlows("allow-client"))
	otherAfter := conjOf("allow-other", policyFlows("allow-other"))
	t.Logf("conj_id %d of allow-client: n_packets %d -> %d after %d allowed TCP connections and 1 denied; allow-other's conj_id %d: %d -> %d",
		conj.ConjID, before, after.Packets, connections, otherConj.ConjID, otherConj.Packets, otherAfter.Packets)
	if after.Packets-before != connections {
		t.Errorf("allow-client's conj_id flow counted %d packets, want %d (one per new connection)", after.Packets-before, connections)
	}
	if otherAfter.Packets != otherConj.Packets {
		t.Errorf("allow-other's conj_id flow counted %d packets; no connection to its pod was made", otherAfter.Packets-otherConj.Packets)
	}

	// Text output: grouped by table, annotated.
	text, _ = ovsNetpol(t, nil, append([]string{"flows", "--policy", inspectNS + "/allow-client", "--table", "ingress"}, node...)...)
	if !strings.Contains(text, "table 40 ingress (") || !strings.Contains(text, "policy "+inspectNS+"/allow-client ingress rule 0; conj_id") {
		t.Errorf("flows (text) lacks the table header or the annotated conj_id flow:\n%s", text)
	}
	t.Logf("flows --policy %s/allow-client --table ingress:\n%s", inspectNS, text)

	// --pod: the server's own flows and those matching its address or port.
	out, _ = ovsNetpol(t, nil, append([]string{"flows", "--pod", inspectNS + "/server", "-o", "json"}, node...)...)
	var podFlows []inspectFlow
	if err := json.Unmarshal([]byte(out), &podFlows); err != nil {
		t.Fatal(err)
	}
	own := 0
	for _, f := range podFlows {
		if f.Origin == "pod "+inspectNS+"/server" {
			own++
		} else if !strings.Contains(f.Match, server.ip) && !strings.Contains(f.Match, fmt.Sprintf("in_port=%d", server.ofport)) &&
			!strings.Contains(f.Actions, fmt.Sprintf("output:%d", server.ofport)) {
			t.Errorf("flows --pod lists a flow that is neither the server's nor matches its address or port: %+v", f)
		}
	}
	if own == 0 {
		t.Errorf("flows --pod %s/server lists none of the pod's own flows: %+v", inspectNS, podFlows)
	}

	// Every flow on the bridge is explained by the CLI's own compile of the
	// node (the agent's published settings, OVSDB's ports, the cluster).
	out, _ = ovsNetpol(t, nil, append([]string{"flows", "-o", "json"}, node...)...)
	var all []inspectFlow
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, f := range all {
		kind, _, _ := strings.Cut(f.Origin, " ")
		kinds[kind]++
		if strings.HasPrefix(f.Origin, "unknown") {
			t.Errorf("flow without a known origin: %+v", f)
		}
	}
	t.Logf("flows: %d on the bridge, by origin kind %v", len(all), kinds)

	// Without a kubeconfig: cookie kinds only, said on stderr.
	home := t.TempDir()
	text, stderr := ovsNetpol(t, []string{"KUBECONFIG=", "HOME=" + home}, "flows", "--ovs-rundir", n.sw.Dir, "--table", "ingress")
	if !strings.Contains(stderr, "no kubeconfig") || !strings.Contains(text, ": rule") || strings.Contains(text, "allow-client") {
		t.Errorf("flows without a kubeconfig: want cookie kinds and a note on stderr; stdout:\n%s\nstderr:\n%s", text, stderr)
	}
	out, stderr = ovsNetpol(t, []string{"KUBECONFIG=", "HOME=" + home}, "pods", "-o", "json", "--ovs-rundir", n.sw.Dir)
	var bare []inspectPod
	if err := json.Unmarshal([]byte(out), &bare); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "no kubeconfig") || len(bare) != len(names) {
		t.Errorf("pods without a kubeconfig: %d rows (want %d) and stderr %q (want a note)", len(bare), len(names), stderr)
	}
	for _, r := range bare {
		if p := w.pod(r.Namespace + "/" + r.Name); r.OFPort != p.ofport || r.MAC != p.mac || len(r.IPs) != 0 {
			t.Errorf("pods without a kubeconfig: %+v; want port %d, MAC %s and no IPs", r, p.ofport, p.mac)
		}
	}
	totals.scenarios.Add(1)
}
