package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ovn-kubernetes/libovsdb/cache"
	libovsdb "github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/ovs-netpol/ovs-netpol/ovsdb-schema/vswitchd"
)

// bridgeProtocols are the OpenFlow versions a bridge of ours speaks. All of
// them: bundles need 1.4+, and tools that speak an older version by default
// (plain "ovs-ofctl dump-flows") keep working.
var bridgeProtocols = []string{
	vswitchd.BridgeProtocolsOpenflow10, vswitchd.BridgeProtocolsOpenflow11,
	vswitchd.BridgeProtocolsOpenflow12, vswitchd.BridgeProtocolsOpenflow13,
	vswitchd.BridgeProtocolsOpenflow14, vswitchd.BridgeProtocolsOpenflow15,
}

// EnsureBridge makes the bridge exist with the settings the agent needs, and
// fixes them if they drifted: fail_mode=secure (an empty or broken pipeline
// drops instead of acting as a learning switch), protocols OpenFlow10..15,
// the given datapath_type ("netdev" for the userspace datapath; "" is the
// kernel one), its internal port of the same name, and Bridge.flow_tables
// naming exactly the tables in tableNames (so "ovs-ofctl dump-flows --names"
// prints table=name). Table numbers must be below 255.
//
// When it changed anything it returns after ovs-vswitchd has applied the
// change (Open_vSwitch.cur_cfg), so OpenFlow connections to the bridge work
// then; if ovs-vswitchd is not running that wait ends with ctx. Install the
// flows after EnsureBridge: ovs-vswitchd clears the flow table when
// fail_mode changes, so repairing a drifted fail_mode loses them.
func (c *Client) EnsureBridge(ctx context.Context, name, datapathType string, tableNames map[uint8]string) error {
	if name == "" {
		return errors.New("ovsdb: EnsureBridge: empty bridge name")
	}
	if _, ok := tableNames[255]; ok {
		return errors.New("ovsdb: EnsureBridge: table 255 does not exist in OpenFlow")
	}
	cn := c.current()
	if br := bridgeByName(cn.cache, name); br != nil {
		if keep := withoutPrefixRenames(cn.cache, br, tableNames); keep != nil {
			// OVS 3.1 ignores a new table name that is a prefix of the
			// current one (oftable_set_name compares only as many bytes as
			// the new name has). Unname those tables first and let
			// ovs-vswitchd apply that; the second step names them.
			upd := &vswitchd.Bridge{FlowTables: keep}
			ops, err := cn.ovs.Where(&vswitchd.Bridge{UUID: br.UUID}).Update(upd, &upd.FlowTables)
			if err != nil {
				return err
			}
			if err := c.apply(ctx, cn, "unname tables of bridge "+name, ops, func(tc *cache.TableCache) (bool, error) {
				b := bridgeByName(tc, name)
				return b != nil && maps.Equal(b.FlowTables, keep), nil
			}); err != nil {
				return err
			}
			cn = c.current()
		}
	}
	ops, err := bridgeOps(cn, name, datapathType, tableNames)
	if err != nil || len(ops) == 0 {
		return err
	}
	return c.apply(ctx, cn, "ensure bridge "+name, ops, func(tc *cache.TableCache) (bool, error) {
		// Our own change is in the cache once the diff is empty.
		ops, err := bridgeOps(&conn{ovs: cn.ovs, cache: tc}, name, datapathType, tableNames)
		return len(ops) == 0, err
	})
}

// withoutPrefixRenames returns the bridge's flow_tables without the tables
// whose wanted name is a strict prefix of their current one, or nil if there
// are none.
func withoutPrefixRenames(tc *cache.TableCache, br *vswitchd.Bridge, tableNames map[uint8]string) map[int]string {
	fts := rows[vswitchd.FlowTable](tc, vswitchd.FlowTableTable)
	var keep map[int]string
	for n, want := range tableNames {
		ft := fts[br.FlowTables[int(n)]]
		if ft == nil || ft.Name == nil || *ft.Name == want || !strings.HasPrefix(*ft.Name, want) {
			continue
		}
		if keep == nil {
			keep = maps.Clone(br.FlowTables)
		}
		delete(keep, int(n))
	}
	return keep
}

// bridgeOps returns the operations that bring the bridge to the wanted
// state according to the cache; none if it is there already.
func bridgeOps(cn *conn, name, datapathType string, tableNames map[uint8]string) ([]libovsdb.Operation, error) {
	tc := cn.cache
	root := rootRow(tc) // Bridge is not a root table: it lives while Open_vSwitch.bridges refers to it
	if root == nil {
		return nil, errNoRoot
	}
	var ops []libovsdb.Operation
	add := func(o []libovsdb.Operation, err error) error {
		ops = append(ops, o...)
		return err
	}
	secure := vswitchd.BridgeFailModeSecure

	// Flow_Table rows: keep a referenced row that has the right name,
	// otherwise insert a new one (a referenced row may be shared with
	// another bridge, so it is not renamed in place).
	flowTables := map[int]string{}
	var newTables []*vswitchd.FlowTable
	var existing *vswitchd.Bridge
	if existing = bridgeByName(tc, name); existing != nil {
		fts := rows[vswitchd.FlowTable](tc, vswitchd.FlowTableTable)
		for n, tname := range tableNames {
			if u, ok := existing.FlowTables[int(n)]; ok && fts[u] != nil && fts[u].Name != nil && *fts[u].Name == tname {
				flowTables[int(n)] = u
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(tableNames)) {
		if _, ok := flowTables[int(n)]; ok {
			continue
		}
		ft := &vswitchd.FlowTable{UUID: fmt.Sprintf("new_table_%d", n), Name: new(string)}
		*ft.Name = tableNames[n]
		newTables = append(newTables, ft)
		flowTables[int(n)] = ft.UUID
	}
	for _, ft := range newTables {
		if err := add(cn.ovs.Create(ft)); err != nil {
			return nil, err
		}
	}

	if existing == nil {
		iface := &vswitchd.Interface{UUID: "new_iface", Name: name, Type: "internal"}
		port := &vswitchd.Port{UUID: "new_port", Name: name, Interfaces: []string{iface.UUID}}
		br := &vswitchd.Bridge{
			UUID:         "new_bridge",
			Name:         name,
			DatapathType: datapathType,
			FailMode:     &secure,
			Protocols:    bridgeProtocols,
			Ports:        []string{port.UUID},
			FlowTables:   flowTables,
		}
		if err := add(cn.ovs.Create(iface)); err != nil {
			return nil, err
		}
		if err := add(cn.ovs.Create(port)); err != nil {
			return nil, err
		}
		if err := add(cn.ovs.Create(br)); err != nil {
			return nil, err
		}
		return ops, add(insertBridgeOps(cn, root.UUID, br.UUID))
	}

	// An existing bridge: update what drifted.
	upd := &vswitchd.Bridge{
		DatapathType: datapathType,
		FailMode:     &secure,
		Protocols:    bridgeProtocols,
		FlowTables:   flowTables,
	}
	var fields []any
	if existing.DatapathType != datapathType {
		fields = append(fields, &upd.DatapathType)
	}
	if existing.FailMode == nil || *existing.FailMode != secure {
		fields = append(fields, &upd.FailMode)
	}
	if !sameSet(existing.Protocols, bridgeProtocols) {
		fields = append(fields, &upd.Protocols)
	}
	if !maps.Equal(existing.FlowTables, flowTables) {
		fields = append(fields, &upd.FlowTables)
	}
	if len(fields) > 0 {
		if err := add(cn.ovs.Where(&vswitchd.Bridge{UUID: existing.UUID}).Update(upd, fields...)); err != nil {
			return nil, err
		}
	}
	if p := portByName(tc, name); p == nil || !slices.Contains(existing.Ports, p.UUID) {
		// The bridge's own internal port is gone. (A port of that name on
		// another bridge makes the insert fail, which is right.)
		iface := &vswitchd.Interface{UUID: "new_iface", Name: name, Type: "internal"}
		port := &vswitchd.Port{UUID: "new_port", Name: name, Interfaces: []string{iface.UUID}}
		if err := add(cn.ovs.Create(iface)); err != nil {
			return nil, err
		}
		if err := add(cn.ovs.Create(port)); err != nil {
			return nil, err
		}
		if err := add(portsMutation(cn, existing.UUID, libovsdb.MutateOperationInsert, port.UUID)); err != nil {
			return nil, err
		}
	}
	return ops, nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// insertBridgeOps adds a bridge to Open_vSwitch.bridges.
func insertBridgeOps(cn *conn, rootUUID, bridgeUUID string) ([]libovsdb.Operation, error) {
	root := &vswitchd.OpenvSwitch{UUID: rootUUID}
	return cn.ovs.Where(root).Mutate(root, modelMutation(&root.Bridges, libovsdb.MutateOperationInsert, []string{bridgeUUID}))
}

// newPortOps creates iface (its UUID a named UUID), a port of the same name
// holding it, and adds the port to the bridge.
func newPortOps(cn *conn, bridgeUUID string, iface *vswitchd.Interface) ([]libovsdb.Operation, error) {
	port := &vswitchd.Port{UUID: "new_port", Name: iface.Name, Interfaces: []string{iface.UUID}}
	var ops []libovsdb.Operation
	for _, f := range []func() ([]libovsdb.Operation, error){
		func() ([]libovsdb.Operation, error) { return cn.ovs.Create(iface) },
		func() ([]libovsdb.Operation, error) { return cn.ovs.Create(port) },
		func() ([]libovsdb.Operation, error) {
			return portsMutation(cn, bridgeUUID, libovsdb.MutateOperationInsert, port.UUID)
		},
	} {
		o, err := f()
		if err != nil {
			return nil, err
		}
		ops = append(ops, o...)
	}
	return ops, nil
}

// portsMutation inserts a port into or deletes it from Bridge.ports.
func portsMutation(cn *conn, bridgeUUID string, m libovsdb.Mutator, portUUID string) ([]libovsdb.Operation, error) {
	br := &vswitchd.Bridge{UUID: bridgeUUID}
	return cn.ovs.Where(br).Mutate(br, modelMutation(&br.Ports, m, []string{portUUID}))
}
