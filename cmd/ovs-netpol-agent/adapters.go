package main

import (
	"context"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
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

func (f ofctlFlows) Sync(ctx context.Context, desired []openflow.Flow) (int, int, error) {
	st, err := f.inst.Sync(ctx, desired)
	return st.Added + st.Replaced, st.Deleted, err
}

func (f ofctlFlows) Apply(ctx context.Context, add, del []openflow.Flow) error {
	mods := make([]flowsync.Mod, 0, len(add)+len(del))
	for _, fl := range del {
		mods = append(mods, flowsync.Mod{Op: flowsync.Delete, Flow: fl})
	}
	for _, fl := range add {
		mods = append(mods, flowsync.Mod{Op: flowsync.Add, Flow: fl})
	}
	return f.inst.Apply(ctx, mods)
}

func (f ofctlFlows) Count(ctx context.Context) (int, error) { return f.inst.FlowCount(ctx) }
