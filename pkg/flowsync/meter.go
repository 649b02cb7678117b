package flowsync

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Meter is an OpenFlow meter that lets through at most Rate packets per
// second, with bursts of Burst packets, and drops the rest (in the
// datapath). The audit log's packet-ins go through such meters
// (controller(...,meter_id=ID)).
type Meter struct {
	ID    uint32
	Rate  uint32 // packets per second, > 0
	Burst uint32 // packets; 0: no burst allowance
}

// spec is the meter as ovs-ofctl add-meter / mod-meter take it.
func (m Meter) spec() string {
	s := fmt.Sprintf("meter=%d,pktps,", m.ID)
	if m.Burst > 0 {
		s += "burst,"
	}
	s += fmt.Sprintf("band=type=drop,rate=%d", m.Rate)
	if m.Burst > 0 {
		s += fmt.Sprintf(",burst_size=%d", m.Burst)
	}
	return s
}

// fields is the meter as dump-meters prints it, as a set of tokens
// ("pktps", "burst", "type=drop", "rate=R", "burst_size=B").
func (m Meter) fields() string {
	f := []string{"pktps"}
	if m.Burst > 0 {
		f = append(f, "burst")
	}
	f = append(f, "bands=", "type=drop", "rate="+strconv.FormatUint(uint64(m.Rate), 10))
	if m.Burst > 0 {
		f = append(f, "burst_size="+strconv.FormatUint(uint64(m.Burst), 10))
	}
	return strings.Join(f, " ")
}

// EnsureMeters makes the bridge's meters with these IDs exactly as given:
// missing ones are added, others modified; meters with other IDs are left
// alone. It reports how many it added and modified. Meters are not flows:
// a bundle cannot carry them (ovs-ofctl bundle: "Unsupported bundle message
// type: meter", OVS 3.1), so they go one ovs-ofctl call each, and must be
// in place before flows that name them (OVS accepts a flow naming a meter
// that does not exist). ovs-vswitchd forgets them when it restarts, like
// flows: call again after a restart.
func (i *Installer) EnsureMeters(ctx context.Context, meters []Meter) (added, modified int, err error) {
	for _, m := range meters {
		if m.ID == 0 || m.Rate == 0 {
			return added, modified, fmt.Errorf("flowsync: meter %d with rate %d: the ID and the rate must be positive", m.ID, m.Rate)
		}
	}
	out, err := i.run(ctx, nil, "dump-meters", i.Bridge)
	if err != nil {
		return 0, 0, err
	}
	have := parseMeters(string(out))
	for _, m := range meters {
		got, ok := have[m.ID]
		switch {
		case !ok:
			if _, err := i.run(ctx, nil, "add-meter", i.Bridge, m.spec()); err != nil {
				return added, modified, err
			}
			added++
		case got != m.fields():
			if _, err := i.run(ctx, nil, "mod-meter", i.Bridge, m.spec()); err != nil {
				return added, modified, err
			}
			modified++
		}
	}
	return added, modified, nil
}

// parseMeters reads "ovs-ofctl dump-meters" output:
//
//	OFPST_METER_CONFIG reply (OF1.5) (xid=0x2):
//	meter=5 pktps burst bands=
//	type=drop rate=50 burst_size=10
//
// into each meter's tokens after "meter=ID", space separated.
func parseMeters(out string) map[uint32]string {
	meters := map[uint32]string{}
	var id uint32
	var cur []string
	in := false
	flush := func() {
		if in {
			meters[id] = strings.Join(cur, " ")
		}
	}
	for _, tok := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(tok, "meter="); ok {
			flush()
			n, err := strconv.ParseUint(v, 10, 32)
			in, id, cur = err == nil, uint32(n), nil
			continue
		}
		if in {
			cur = append(cur, tok)
		}
	}
	flush()
	return meters
}
