package ovsdb

import (
	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/model"
	libovsdb "github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/ovs-netpol/ovs-netpol/ovsdb-schema/vswitchd"
)

// Cache lookups. Rows come from RowsShallow: shared with the cache and
// read-only, which is all we do with them.

func rows[T any](tc *cache.TableCache, table string) map[string]*T {
	out := map[string]*T{}
	rc := tc.Table(table)
	if rc == nil {
		return out
	}
	for uuid, m := range rc.RowsShallow() {
		if r, ok := m.(*T); ok {
			out[uuid] = r
		}
	}
	return out
}

// rootRow returns the single Open_vSwitch row, or nil before "ovs-vsctl init".
func rootRow(tc *cache.TableCache) *vswitchd.OpenvSwitch {
	for _, r := range rows[vswitchd.OpenvSwitch](tc, vswitchd.OpenvSwitchTable) {
		return r
	}
	return nil
}

func bridgeByName(tc *cache.TableCache, name string) *vswitchd.Bridge {
	for _, b := range rows[vswitchd.Bridge](tc, vswitchd.BridgeTable) {
		if b.Name == name {
			return b
		}
	}
	return nil
}

func portByName(tc *cache.TableCache, name string) *vswitchd.Port {
	for _, p := range rows[vswitchd.Port](tc, vswitchd.PortTable) {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func interfaceByName(tc *cache.TableCache, name string) *vswitchd.Interface {
	for _, i := range rows[vswitchd.Interface](tc, vswitchd.InterfaceTable) {
		if i.Name == name {
			return i
		}
	}
	return nil
}

// bridgeOfPort returns the bridge whose ports include the port, or nil.
func bridgeOfPort(tc *cache.TableCache, portUUID string) *vswitchd.Bridge {
	for _, b := range rows[vswitchd.Bridge](tc, vswitchd.BridgeTable) {
		for _, p := range b.Ports {
			if p == portUUID {
				return b
			}
		}
	}
	return nil
}

// portOfInterface returns the port whose interfaces include the interface.
func portOfInterface(tc *cache.TableCache, ifaceUUID string) *vswitchd.Port {
	for _, p := range rows[vswitchd.Port](tc, vswitchd.PortTable) {
		for _, i := range p.Interfaces {
			if i == ifaceUUID {
				return p
			}
		}
	}
	return nil
}

func modelMutation(field any, m libovsdb.Mutator, value any) model.Mutation {
	return model.Mutation{Field: field, Mutator: m, Value: value}
}
