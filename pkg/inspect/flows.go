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
	return flowsync.InstalledFlow{Table: f.Table, Priority: f.Priority, Cookie: f.Cookie, Match: f.Match, Actions: f.Actions}.String()
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
// without statistics). Errors quote the line with Go escapes.
func ParseLiveFlow(line string) (LiveFlow, error) {
	fs, _, err := flowsync.ParseFlowLine(line)
	if err != nil {
		return LiveFlow{}, err
	}
	f := LiveFlow{Table: fs.Table, Priority: fs.Priority, Cookie: fs.Cookie, Match: fs.Match, Actions: fs.Actions,
		Packets: fs.Packets, Bytes: fs.Bytes}
	for _, tok := range strings.Split(fs.Match, ",") {
		if v, ok := strings.CutPrefix(tok, "conj_id="); ok {
			id, err := strconv.ParseUint(v, 0, 32)
			if err != nil {
				return f, fmt.Errorf("bad conj_id in %s: %v", printable.String(line), err)
			}
			f.ConjID = uint32(id)
		}
	}
	if f.Conjunctions, err = conjunctionIDs(fs.Actions); err != nil {
		return f, fmt.Errorf("%v in %s", err, printable.String(line))
	}
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
