package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// TraceStep is one table a traced packet went through: the flow it matched,
// or a miss.
type TraceStep struct {
	// Pass is 0 for the packet as sent, n after its nth recirculation
	// (each ct(table=...) resumes the pipeline in a new pass).
	Pass  int   `json:"pass"`
	Table uint8 `json:"table"`
	// Match is the flow's match as ofproto/trace prints it ("" for a flow
	// that matches everything).
	Match    string          `json:"match"`
	Priority uint16          `json:"priority"`
	Cookie   openflow.Cookie `json:"cookie"`
	// Miss is "No match.": no flow of the table matched (the packet is
	// dropped there).
	Miss bool `json:"miss,omitempty"`
	// Actions are the OpenFlow actions executed, one per printed line
	// (explanatory "->" lines left out).
	Actions []string `json:"actions"`
}

// Drops reports whether this step ended the packet: a miss, a drop action,
// or a controller() action alone (an audited isolation drop: the packet goes
// to the agent's audit log and nowhere else).
func (s TraceStep) Drops() bool {
	if s.Miss {
		return true
	}
	return len(s.Actions) == 1 && (s.Actions[0] == "drop" || strings.HasPrefix(s.Actions[0], "controller("))
}

// ConjID is the conj_id=N the step's flow matches, 0 if none.
func (s TraceStep) ConjID() uint32 {
	for _, f := range strings.Split(s.Match, ",") {
		if v, ok := strings.CutPrefix(f, "conj_id="); ok {
			if n, err := strconv.ParseUint(v, 10, 32); err == nil {
				return uint32(n)
			}
		}
	}
	return 0
}

// Flow is the step as a LiveFlow, for annotation (Node.Origin). Counters
// are unknown here.
func (s TraceStep) Flow() LiveFlow {
	return LiveFlow{Table: s.Table, Priority: s.Priority, Cookie: s.Cookie, Match: s.Match,
		Actions: strings.Join(s.Actions, ","), ConjID: s.ConjID()}
}

// String renders the step as "table 40 priority 20000 cookie 0x...: MATCH -> ACTIONS".
func (s TraceStep) String() string {
	if s.Miss {
		return fmt.Sprintf("table %d: no flow matched (dropped)", s.Table)
	}
	m := printable.String(s.Match)
	if m == "" {
		m = "(any)"
	}
	return fmt.Sprintf("table %d priority %d cookie %s: %s -> %s", s.Table, s.Priority, s.Cookie, m, printable.String(strings.Join(s.Actions, ",")))
}

// TracePass is one pass of the pipeline.
type TracePass struct {
	// Flow is the packet's fields at the start of the pass ("Flow:" line):
	// after a Service's DNAT it holds the backend's address.
	Flow string
	// DatapathActions is what the datapath would do at the end of the pass.
	DatapathActions string
}

// Trace is ofproto/trace's answer for one packet, parsed.
type Trace struct {
	Packet string // the packet as given to ofproto/trace
	Raw    string // the whole output
	Steps  []TraceStep
	Passes []TracePass
	// Outputs are the OpenFlow ports the pipeline output the packet to, in
	// order ("10", "LOCAL", "IN_PORT", ...).
	Outputs []string
	// Delivered is true when some pass's datapath actions send the packet
	// out of a port; false means it was dropped.
	Delivered bool
	// TunnelDst is the tunnel destination the pipeline set last
	// (set_field:IP->tun_dst or ->tun_ipv6_dst), "" if none: where a
	// packet output to the overlay's tunnel port goes.
	TunnelDst string
	// Reports are ovs-vswitchd's own remarks on the translation (its ">>"
	// lines), such as "native tunnel routing failed": the underlay has no
	// route to a tunnel destination.
	Reports []string
}

// Verdict says in a few words what happened to the packet.
func (t *Trace) Verdict() string {
	if t.Delivered {
		// Outputs may be port names (anyone on the node can name a port).
		return "delivered to port " + printable.String(strings.Join(t.Outputs, ", "))
	}
	if s := t.Decisive(); s != nil {
		if s.Miss {
			return fmt.Sprintf("dropped in table %d (no flow matched)", s.Table)
		}
		return fmt.Sprintf("dropped in table %d by the flow at priority %d", s.Table, s.Priority)
	}
	return "dropped"
}

// Decisive is the step that decided a dropped packet's fate (the last one
// of the last pass: the drop flow or the table miss), or the last output
// step of a delivered one. Nil when the trace has no steps.
func (t *Trace) Decisive() *TraceStep {
	if len(t.Steps) == 0 {
		return nil
	}
	return &t.Steps[len(t.Steps)-1]
}

// FinalField returns a field of the last pass's "Flow:" line (e.g. nw_dst,
// tp_dst): the packet as the last pass saw it, after any NAT.
func (t *Trace) FinalField(name string) string {
	if len(t.Passes) == 0 {
		return ""
	}
	for _, f := range strings.Split(t.Passes[len(t.Passes)-1].Flow, ",") {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return ""
}

// stepLine is a traced table: " 0. MATCH, priority P, cookie 0x..." (cookie
// only when non-zero; MATCH absent for a catch-all flow), or "99. No match.".
// Nested steps (resubmit) are indented further.
var (
	stepLine = regexp.MustCompile(`^\s*(\d+)\. (.*)$`)
	stepFlow = regexp.MustCompile(`^(?:(.*), )?priority (\d+)(?:, cookie (0x[0-9a-fA-F]+))?$`)
)

// ParseTrace parses the output of "ovs-appctl ofproto/trace" (OVS 3.1).
// Only the traced bridge's steps are kept: a packet output to a tunnel
// port on the userspace datapath is followed, after encapsulation, through
// the underlay's bridge (a second bridge("...") section), whose flows are
// not ours.
func ParseTrace(packet, raw string) (*Trace, error) {
	t := &Trace{Packet: packet, Raw: raw}
	pass := -1
	var cur *TraceStep
	flush := func() {
		if cur != nil {
			t.Steps = append(t.Steps, *cur)
			cur = nil
		}
	}
	traced, foreign := "", false
	for _, line := range strings.Split(raw, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "Flow: "):
			flush()
			pass++
			foreign = false
			t.Passes = append(t.Passes, TracePass{Flow: strings.TrimPrefix(line, "Flow: ")})
			continue
		case strings.HasPrefix(line, "bridge("):
			flush()
			if traced == "" {
				traced = line
			}
			foreign = line != traced
			continue
		case strings.HasPrefix(line, "Datapath actions: "):
			flush()
			if pass < 0 {
				return nil, fmt.Errorf("ofproto/trace output has datapath actions before any \"Flow:\" line: %s", printable.String(raw))
			}
			t.Passes[pass].DatapathActions = strings.TrimSpace(strings.TrimPrefix(line, "Datapath actions: "))
			continue
		case strings.HasPrefix(line, "Final flow:"), strings.HasPrefix(line, "Megaflow:"), strings.HasPrefix(line, "==="):
			flush()
			continue
		}
		if foreign {
			continue
		}
		if r, ok := strings.CutPrefix(trimmed, ">> "); ok {
			t.Reports = append(t.Reports, r)
			continue
		}
		if m := stepLine.FindStringSubmatch(line); m != nil && pass >= 0 {
			table, err := strconv.ParseUint(m[1], 10, 8)
			if err != nil {
				return nil, fmt.Errorf("ofproto/trace: table %q: %v", m[1], err)
			}
			flush()
			cur = &TraceStep{Pass: pass, Table: uint8(table)}
			if m[2] == "No match." {
				cur.Miss = true
				continue
			}
			fm := stepFlow.FindStringSubmatch(m[2])
			if fm == nil {
				return nil, fmt.Errorf("ofproto/trace: cannot read the flow of step %q", trimmed)
			}
			cur.Match = fm[1]
			prio, err := strconv.ParseUint(fm[2], 10, 16)
			if err != nil {
				return nil, fmt.Errorf("ofproto/trace: priority of step %q: %v", trimmed, err)
			}
			cur.Priority = uint16(prio)
			if fm[3] != "" {
				c, err := strconv.ParseUint(fm[3][2:], 16, 64)
				if err != nil {
					return nil, fmt.Errorf("ofproto/trace: cookie of step %q: %v", trimmed, err)
				}
				cur.Cookie = openflow.Cookie(c)
			}
			continue
		}
		if cur == nil || trimmed == "" || strings.HasPrefix(trimmed, "->") {
			continue
		}
		if cur.Miss && trimmed == "drop" {
			continue
		}
		cur.Actions = append(cur.Actions, trimmed)
		if p, ok := outputPort(trimmed); ok {
			t.Outputs = append(t.Outputs, p)
		}
		if v, ok := strings.CutPrefix(trimmed, "set_field:"); ok {
			if ip, ok := strings.CutSuffix(v, "->tun_dst"); ok {
				t.TunnelDst = ip
			} else if ip, ok := strings.CutSuffix(v, "->tun_ipv6_dst"); ok {
				t.TunnelDst = ip
			}
		}
	}
	flush()
	if len(t.Passes) == 0 || t.Passes[len(t.Passes)-1].DatapathActions == "" {
		return nil, fmt.Errorf("ofproto/trace output has no \"Datapath actions\": %s", printable.String(raw))
	}
	for _, p := range t.Passes {
		if len(datapathOutputs(p.DatapathActions)) > 0 {
			t.Delivered = true
		}
	}
	return t, nil
}

// outputPort recognizes the OpenFlow output actions our pipeline uses, as
// ofproto/trace prints them: "output:10", "LOCAL", "IN_PORT".
func outputPort(action string) (string, bool) {
	switch {
	case strings.HasPrefix(action, "output:"):
		return strings.TrimPrefix(action, "output:"), true
	case action == "LOCAL", action == "IN_PORT":
		return action, true
	}
	return "", false
}

// datapathOutputs returns the datapath ports a datapath action list sends
// to: bare numbers at top level or inside clone(...). ct(), recirc(), set()
// and userspace() (a packet-in) send nowhere.
func datapathOutputs(actions string) []string {
	var out []string
	for _, a := range openflow.SplitTopLevel(actions) {
		if _, err := strconv.Atoi(a); err == nil {
			out = append(out, a)
		} else if inner, ok := strings.CutPrefix(a, "clone("); ok {
			out = append(out, datapathOutputs(strings.TrimSuffix(inner, ")"))...)
		}
	}
	return out
}

// Trace runs "ofproto/trace BRIDGE PACKET" in the bridge's ovs-vswitchd and
// parses the answer. PACKET is in ofproto/trace flow syntax, e.g.
// "in_port=5,tcp,dl_src=..,nw_src=..,nw_dst=..,tcp_src=40000,tcp_dst=80"
// (UDP ports are udp_src/udp_dst). Conntrack recirculations are followed
// with OVS's default state for them, trk|new: the packet is traced as the
// first packet of a new connection, which is what policy decides on.
func (b Bridge) Trace(ctx context.Context, packet string) (*Trace, error) {
	sock, err := VswitchdControlSocket(b.runDir())
	if err != nil {
		return nil, err
	}
	return TraceVia(ctx, sock, b.name(), packet)
}

// TraceVia is Trace through the control socket sock.
func TraceVia(ctx context.Context, sock, bridge, packet string) (*Trace, error) {
	out, err := unixctlCall(ctx, sock, "ofproto/trace", bridge, packet)
	if err != nil {
		return nil, err
	}
	return ParseTrace(packet, out)
}

// VswitchdControlSocket finds ovs-vswitchd's control socket in runDir: the
// default RUNDIR/ovs-vswitchd.PID.ctl (PID from ovs-vswitchd.pid), else the
// only ovs-vswitchd.*.ctl there, else RUNDIR/vswitchd.ctl (a daemon started
// with --unixctl=RUNDIR/vswitchd.ctl, as the project's test switches are).
func VswitchdControlSocket(runDir string) (string, error) {
	if pid, err := os.ReadFile(filepath.Join(runDir, "ovs-vswitchd.pid")); err == nil {
		p := filepath.Join(runDir, "ovs-vswitchd."+strings.TrimSpace(string(pid))+".ctl")
		if isSocket(p) {
			return p, nil
		}
	}
	matches, _ := filepath.Glob(filepath.Join(runDir, "ovs-vswitchd.*.ctl"))
	var socks []string
	for _, m := range matches {
		if isSocket(m) {
			socks = append(socks, m)
		}
	}
	if len(socks) == 1 {
		return socks[0], nil
	}
	if p := filepath.Join(runDir, "vswitchd.ctl"); isSocket(p) {
		return p, nil
	}
	if len(socks) > 1 {
		return "", fmt.Errorf("%s holds several ovs-vswitchd control sockets (%s) and no ovs-vswitchd.pid names the running one", runDir, strings.Join(socks, ", "))
	}
	return "", fmt.Errorf("no ovs-vswitchd control socket in %s (looked for ovs-vswitchd.PID.ctl and vswitchd.ctl): is ovs-vswitchd running with this run directory (--ovs-rundir)?", runDir)
}

func isSocket(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// maxUnixctlAnswer bounds a control socket's answer (ofproto/trace of our
// pipeline prints some 5 KiB; OVS's own resubmit limits keep a looping one
// far below this).
const maxUnixctlAnswer = 16 << 20

// unixctlCall runs one command over an OVS daemon's control socket, as
// ovs-appctl does (JSON-RPC 1.0: {"id","method","params"} answered by
// {"id","result","error"}), without starting a process per call: verify
// traces thousands of packets.
func unixctlCall(ctx context.Context, sock, method string, params ...string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return "", fmt.Errorf("ovs-vswitchd control socket: %w", err)
	}
	defer conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	if params == nil {
		params = []string{}
	}
	req, err := json.Marshal(map[string]any{"id": 0, "method": method, "params": params})
	if err != nil {
		return "", err
	}
	if _, err := conn.Write(req); err != nil {
		return "", fmt.Errorf("%s %s: %w", sock, method, err)
	}
	var reply struct {
		Result *string          `json:"result"`
		Error  *json.RawMessage `json:"error"`
	}
	// Bounded: a trace is a few kilobytes; an answer without end (a
	// broken or hostile daemon on the socket) must not fill our memory.
	lr := &io.LimitedReader{R: conn, N: maxUnixctlAnswer + 1}
	if err := json.NewDecoder(lr).Decode(&reply); err != nil {
		if lr.N <= 0 {
			return "", fmt.Errorf("%s %s: the answer is larger than %d bytes", sock, method, maxUnixctlAnswer)
		}
		return "", fmt.Errorf("%s %s: reading the answer: %w", sock, method, err)
	}
	if reply.Error != nil && string(*reply.Error) != "null" {
		var msg string
		if json.Unmarshal(*reply.Error, &msg) != nil {
			msg = string(*reply.Error)
		}
		return "", errors.New(method + " " + strings.Join(params, " ") + ": " + printable.String(strings.TrimSpace(msg)))
	}
	if reply.Result == nil {
		return "", nil
	}
	return *reply.Result, nil
}
