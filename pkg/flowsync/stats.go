package flowsync

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// FlowStats is one installed flow with OVS's counters, as dump-flows prints
// it: Match and Actions are OVS's text, attributes (if any) in Match (the
// counters are read, the flows are not compared with desired ones).
//
// OVS keeps a flow's counters when an "add" replaces it (same table,
// priority and match; see Add) and starts them from zero when the flow is
// deleted and added again. Its duration restarts in both cases, so it does
// not tell the two apart (checked on ovs-vswitchd 3.1).
type FlowStats struct {
	Table    uint8
	Priority uint16
	Cookie   openflow.Cookie
	Match    string
	Actions  string
	Packets  uint64
	Bytes    uint64
}

// DumpStats returns our installed flows (cookie magic byte, see Dump) with
// their packet and byte counters: one dump-flows request.
func (i *Installer) DumpStats(ctx context.Context) ([]FlowStats, error) {
	out, err := i.run(ctx, nil, "--no-names", "dump-flows", i.Bridge, ourCookie)
	if err != nil {
		return nil, err
	}
	return parseStatsDump(out)
}

// parseStatsDump parses dump-flows output with statistics; reply headers
// (not indented) are skipped.
func parseStatsDump(out []byte) ([]FlowStats, error) { return ParseDumpLines(out, ParseFlowStats) }

// ParseFlowStats parses one line of "ovs-ofctl dump-flows" output with
// statistics. Counters must be present (a line printed with --no-stats is
// an error: a flow without counters must not read as one that counted
// nothing). duration, idle_age and hard_age are dropped.
func ParseFlowStats(line string) (FlowStats, error) {
	f, counted, err := ParseFlowLine(line)
	if err == nil && !counted {
		err = fmt.Errorf("flow without n_packets and n_bytes: %q", line)
	}
	return f, err
}

// ConjID returns N of a flow matching "conj_id=N" (ok false for others).
func (f FlowStats) ConjID() (uint32, bool) {
	for _, tok := range strings.Split(f.Match, ",") {
		if v, ok := strings.CutPrefix(tok, "conj_id="); ok {
			id, err := strconv.ParseUint(v, 0, 32)
			return uint32(id), err == nil
		}
	}
	return 0, false
}
