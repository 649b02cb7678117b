package ovsdb

import (
	"context"
	"fmt"

	libovsdb "github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/ovs-netpol/ovs-netpol/ovsdb-schema/vswitchd"
)

// KeyAgentConfig is the Bridge external_ids key under which the agent
// publishes, as JSON, the settings it compiles the bridge's flows with, so
// that tools on the node (ovs-netpol flows, explain, verify) compile exactly
// what the agent compiles.
const KeyAgentConfig = "ovs-netpol-config"

// SetBridgeExternalID sets one key of the bridge's external_ids (other keys
// stay) in one transaction. Bridge.external_ids is not monitored, so the
// cache does not show it: BridgeExternalID reads it from the server.
func (c *Client) SetBridgeExternalID(ctx context.Context, bridge, key, value string) error {
	cn := c.current()
	br := bridgeByName(cn.cache, bridge)
	if br == nil {
		return fmt.Errorf("ovsdb: set external_ids:%s of bridge %s: the bridge does not exist", key, bridge)
	}
	row := &vswitchd.Bridge{UUID: br.UUID}
	// Delete then insert in one mutate: "insert" into a map column leaves
	// an existing key's value unchanged (RFC 7047 5.1).
	ops, err := cn.ovs.Where(row).Mutate(row,
		modelMutation(&row.ExternalIDs, libovsdb.MutateOperationDelete, []string{key}),
		modelMutation(&row.ExternalIDs, libovsdb.MutateOperationInsert, map[string]string{key: value}),
	)
	if err != nil {
		return fmt.Errorf("ovsdb: set external_ids:%s of bridge %s: %w", key, bridge, err)
	}
	_, err = c.transact(ctx, cn, "set external_ids:"+key+" of bridge "+bridge, ops)
	return err
}

// BridgeExternalID reads one key of the bridge's external_ids from the
// server (ok false when the key is absent). A missing bridge is an error.
func (c *Client) BridgeExternalID(ctx context.Context, bridge, key string) (value string, ok bool, err error) {
	cn := c.current()
	op := libovsdb.Operation{
		Op:      libovsdb.OperationSelect,
		Table:   vswitchd.BridgeTable,
		Where:   []libovsdb.Condition{libovsdb.NewCondition("name", libovsdb.ConditionEqual, bridge)},
		Columns: []string{"external_ids"},
	}
	what := "read external_ids of bridge " + bridge
	res, err := c.transact(ctx, cn, what, []libovsdb.Operation{op})
	if err != nil {
		return "", false, err
	}
	if len(res) != 1 || len(res[0].Rows) == 0 {
		return "", false, fmt.Errorf("ovsdb: %s: the bridge does not exist", what)
	}
	m, isMap := res[0].Rows[0]["external_ids"].(libovsdb.OvsMap)
	if !isMap {
		return "", false, fmt.Errorf("ovsdb: %s: unexpected column value %T", what, res[0].Rows[0]["external_ids"])
	}
	for k, v := range m.GoMap {
		if ks, _ := k.(string); ks == key {
			vs, isString := v.(string)
			if !isString {
				return "", false, fmt.Errorf("ovsdb: %s: key %s holds a %T", what, key, v)
			}
			return vs, true, nil
		}
	}
	return "", false, nil
}

// HasBridge reports whether the cache knows a bridge of that name.
func (c *Client) HasBridge(name string) bool {
	return bridgeByName(c.current().cache, name) != nil
}
