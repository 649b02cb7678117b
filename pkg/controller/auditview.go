package controller

import (
	"context"
	"net/netip"

	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// PodAt names the pod (namespace/name) that owns addr in the flows: of the
// active pods claiming it, the one that keeps it (see podips.go). The
// audit log names the pods of a connection with it.
func (c *Controller) PodAt(addr netip.Addr) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	claims := c.ips.claimants(addr)
	if len(claims) == 0 {
		return "", false
	}
	return claims[0].key, true
}

// ReinstallMetered adds again, in one bundle, every installed flow that
// names an OpenFlow meter (the audit log's packet-ins, meter_id=M), and
// returns how many. ovs-vswitchd binds a flow's controller(meter_id=M) to
// the meter when the flow is added: a flow added before its meter existed
// stays unmetered after the meter is created (verified on OVS 3.1,
// flowsync's TestFlowBeforeMeterIsUnmetered). Call it after creating
// meters that were missing (a new ovs-vswitchd, whose full sync may have
// come first). While a full sync is pending it does nothing: that sync
// adds the flows, after the meters.
func (c *Controller) ReinstallMetered(ctx context.Context) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.needFull || !c.Ready() {
		return 0, nil
	}
	var ch Change
	for _, f := range c.inc.Flows() {
		if metered(f) {
			ch.AddFlows = append(ch.AddFlows, f)
		}
	}
	ch, _ = c.withoutRefused(ch)
	if len(ch.AddFlows) == 0 {
		return 0, nil
	}
	if err := c.flows.Apply(ctx, ch); err != nil {
		c.needFull = true // what is installed is not known now
		return 0, err
	}
	return len(ch.AddFlows), nil
}

// metered reports whether a flow sends packets to the controller through a
// meter.
func metered(f openflow.Flow) bool {
	for _, a := range f.Actions.List() {
		if c, ok := a.(openflow.Controller); ok && c.MeterID != 0 {
			return true
		}
	}
	return false
}
