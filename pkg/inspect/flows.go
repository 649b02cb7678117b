package inspect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/flowsync"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// LiveFlow is one flow of `ovs-ofctl dump-flows` with its counters.
type LiveFlow struct {
	Table    uint8
	Priority uint16
	Cookie   openflow.Cookie
	// Match is the match as OVS prints it (with --no-names: port and table
	// numbers), without table, priority, cookie and statistics. Flow
	// attributes we never set but OVS may print (idle_timeout, hard_timeout
	// of learned flows, flags such as send_flow_rem) stay in it.
	Match   string
	Actions string
	Packets uint64
	Bytes   uint64
	// ConjID is the conj_id=N the flow matches, 0 if none.
	ConjID uint32
	// Conjunctions are the IDs of its conjunction(ID,k/n) actions, in
	// action order.
	Conjunctions []uint32
}

// String renders the flow as ovs-ofctl add-flows accepts it (no counters).
func (f LiveFlow) String() string {
	return openflow.Flow{Table: f.Table, Priority: f.Priority, Cookie: f.Cookie, Match: f.Match, Actions: f.Actions}.String()
}

// Flows dumps every flow of the bridge (ours and any other), in the order
// ovs-ofctl prints them, through `ovs-ofctl -O OpenFlow15 --no-names
// dump-flows` with OVS_RUNDIR set to the run directory, as the agent's
// installer does.
func (b Bridge) Flows(ctx context.Context) ([]LiveFlow, error) {
	out, err := b.ofctl(ctx, "--no-names", "dump-flows", b.name())
	if err != nil {
		return nil, err
	}
	return ParseDump(out)
}

// ofctl runs ovs-ofctl -O OpenFlow15 on the bridge's run directory.
func (b Bridge) ofctl(ctx context.Context, args ...string) ([]byte, error) {
	path, err := exec.LookPath("ovs-ofctl")
	if err != nil {
		const fallback = "/usr/bin/ovs-ofctl"
		if _, serr := os.Stat(fallback); serr != nil {
			return nil, errors.New("ovs-ofctl not found on PATH or in /usr/bin")
		}
		path = fallback
	}
	args = append([]string{"-O", "OpenFlow15"}, args...)
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "OVS_RUNDIR="+b.runDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "..."
		}
		return nil, fmt.Errorf("ovs-ofctl %s (OVS_RUNDIR=%s): %v: %s", strings.Join(args, " "),
			printable.String(b.runDir()), err, printable.String(msg))
	}
	return stdout.Bytes(), nil
}

// ParseDump parses the output of `ovs-ofctl dump-flows` (reply headers,
// which are not indented, are skipped).
func ParseDump(out []byte) ([]LiveFlow, error) { return flowsync.ParseDumpLines(out, ParseLiveFlow) }

// ParseLiveFlow parses one flow line of `ovs-ofctl dump-flows` (with or
// without statistics). Errors quote the line through printable.
func ParseLiveFlow(line string) (LiveFlow, error) {
	f := LiveFlow{Priority: 32768} // OpenFlow's default, which OVS does not print
	head, actions, ok := strings.Cut(strings.TrimSpace(line), "actions=")
	if !ok {
		return f, fmt.Errorf("no actions in %s", printable.String(line))
	}
	f.Actions = actions
	var match []string
	// The part before actions= is comma- (and, after the statistics,
	// space-) separated; no field OVS prints there holds a comma.
	for _, tok := range strings.FieldsFunc(head, func(r rune) bool { return r == ',' || r == ' ' }) {
		name, val, _ := strings.Cut(tok, "=")
		var err error
		switch name {
		case "cookie":
			var c uint64
			c, err = strconv.ParseUint(val, 0, 64)
			f.Cookie = openflow.Cookie(c)
		case "table":
			var t uint64
			t, err = strconv.ParseUint(val, 10, 8)
			f.Table = uint8(t)
		case "priority":
			var p uint64
			p, err = strconv.ParseUint(val, 10, 16)
			f.Priority = uint16(p)
		case "n_packets":
			f.Packets, err = strconv.ParseUint(val, 10, 64)
		case "n_bytes":
			f.Bytes, err = strconv.ParseUint(val, 10, 64)
		case "duration", "idle_age", "hard_age":
		case "conj_id":
			var id uint64
			id, err = strconv.ParseUint(val, 0, 32)
			f.ConjID = uint32(id)
			match = append(match, tok)
		default:
			match = append(match, tok)
		}
		if err != nil {
			return f, fmt.Errorf("bad %s in %s: %v", printable.String(name), printable.String(line), err)
		}
	}
	f.Match = strings.Join(match, ",")
	ids, err := conjunctionIDs(actions)
	if err != nil {
		return f, fmt.Errorf("%v in %s", err, printable.String(line))
	}
	f.Conjunctions = ids
	return f, nil
}

// conjunctionIDs returns the IDs of the conjunction(ID,k/n) actions of an
// action list as OVS prints it.
func conjunctionIDs(actions string) ([]uint32, error) {
	var ids []uint32
	const prefix = "conjunction("
	for rest := actions; ; {
		i := strings.Index(rest, prefix)
		if i < 0 {
			return ids, nil
		}
		// Only a whole action: at the start or after a comma.
		if i > 0 && rest[i-1] != ',' {
			rest = rest[i+len(prefix):]
			continue
		}
		rest = rest[i+len(prefix):]
		args, after, ok := strings.Cut(rest, ")")
		if !ok {
			return nil, errors.New("unterminated conjunction action")
		}
		idText, clause, ok := strings.Cut(args, ",")
		if !ok || !strings.Contains(clause, "/") {
			return nil, fmt.Errorf("conjunction action (%s) is not (ID,k/n)", printable.String(args))
		}
		id, err := strconv.ParseUint(strings.TrimSpace(idText), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("conjunction ID %s: %v", printable.String(idText), err)
		}
		ids = append(ids, uint32(id))
		rest = after
	}
}
