package main

import (
	"context"
	"errors"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/controller"
	"github.com/ovs-netpol/ovs-netpol/pkg/flowsync"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
	"github.com/ovs-netpol/ovs-netpol/pkg/ovsdb"
)

// ovsdbPorts turns the OVSDB adapter's pod ports into compiler bindings.
type ovsdbPorts struct {
	client *ovsdb.Client
	bridge string
	ch     <-chan struct{}
}

func (p *ovsdbPorts) Bindings() map[string]compiler.Binding {
	out := map[string]compiler.Binding{}
	for _, pp := range p.client.PodPorts(p.bridge) {
		if pp.MAC == nil {
			continue // a port without attached-mac cannot be port-secured
		}
		out[pp.Namespace+"/"+pp.Name] = compiler.Binding{OFPort: uint32(pp.OFPort), MAC: pp.MAC}
	}
	return out
}

func (p *ovsdbPorts) Changed() <-chan struct{} { return p.ch }

// ofctlFlows adapts the bundle installer to the controller.
type ofctlFlows struct{ inst *flowsync.Installer }

func (f ofctlFlows) Sync(ctx context.Context, flows []openflow.Flow, groups []openflow.Group) (int, int, error) {
	st, err := f.inst.SyncAll(ctx, flows, groups)
	return st.Added + st.Replaced + st.Groups, st.Deleted, err
}

func (f ofctlFlows) Apply(ctx context.Context, ch controller.Change) error {
	mods, groups := flowsync.Mods(ch.AddFlows, ch.DelFlows, ch.SetGroups, ch.DelGroups)
	return f.inst.ApplyBundle(ctx, mods, groups)
}

func (f ofctlFlows) FlushConntrack(ctx context.Context, fl []openflow.ConntrackFlush) error {
	return f.inst.FlushConntrack(ctx, fl)
}

func (f ofctlFlows) Count(ctx context.Context) (int, error) { return f.inst.FlowCount(ctx) }

// ApplyByOrigin applies a refused change origin by origin (only after Apply
// failed: the common path stays one bundle).
func (f ofctlFlows) ApplyByOrigin(ctx context.Context, ch controller.Change, cause error) ([]controller.Refusal, error) {
	mods, groups := flowsync.Mods(ch.AddFlows, ch.DelFlows, ch.SetGroups, ch.DelGroups)
	refused, err := f.inst.ApplyByOrigin(ctx, mods, groups, cause)
	return refusals(refused), err
}

// SyncByOrigin is Sync that installs every origin OVS accepts.
func (f ofctlFlows) SyncByOrigin(ctx context.Context, flows []openflow.Flow, groups []openflow.Group) (int, int, []controller.Refusal, error) {
	st, refused, err := f.inst.SyncByOrigin(ctx, flows, groups)
	return st.Added + st.Replaced + st.Groups, st.Deleted, refusals(refused), err
}

// refusals keeps OVS's own error text (not the ovs-ofctl command line) for
// the agent's reports.
func refusals(rs []flowsync.Refusal) []controller.Refusal {
	out := make([]controller.Refusal, len(rs))
	for i, r := range rs {
		out[i] = controller.Refusal{Cookie: r.Cookie, Err: errors.New(flowsync.OVSMessage(r.Err))}
	}
	return out
}
