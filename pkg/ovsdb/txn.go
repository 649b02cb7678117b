package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ovn-kubernetes/libovsdb/cache"
	libovsdb "github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/ovs-netpol/ovs-netpol/ovsdb-schema/vswitchd"
)

// transact runs ops as one transaction and turns failed operations into an
// error: libovsdb's Transact reports those only in the results.
func (c *Client) transact(ctx context.Context, cn *conn, what string, ops []libovsdb.Operation) ([]libovsdb.OperationResult, error) {
	res, err := cn.ovs.Transact(ctx, ops...)
	if err != nil {
		return nil, fmt.Errorf("ovsdb: %s: %w", what, err)
	}
	opErrs, err := libovsdb.CheckOperationResults(res, ops)
	if err != nil {
		var msgs []string
		for _, e := range opErrs {
			op := e.Operation()
			msgs = append(msgs, fmt.Sprintf("%s %s: %v", op.Op, op.Table, e))
		}
		if len(msgs) == 0 { // the commit itself failed
			msgs = append(msgs, err.Error())
		}
		return nil, fmt.Errorf("ovsdb: %s: %s", what, strings.Join(msgs, "; "))
	}
	return res, nil
}

// apply runs ops in one transaction with nextCfgOps and waits until
// ovs-vswitchd has applied it and done reports true for the cache.
func (c *Client) apply(ctx context.Context, cn *conn, what string, ops []libovsdb.Operation, done func(*cache.TableCache) (bool, error)) error {
	cfgOps, err := nextCfgOps(cn)
	if err != nil {
		return err
	}
	res, err := c.transact(ctx, cn, what, append(ops, cfgOps...))
	if err != nil {
		return err
	}
	nextCfg, err := selectedNextCfg(res)
	if err != nil {
		return err
	}
	return c.waitFor(ctx, what, func(tc *cache.TableCache) (bool, error) {
		if !applied(tc, nextCfg) {
			return false, nil
		}
		return done(tc)
	})
}

// nextCfgOps increments Open_vSwitch.next_cfg and reads it back in the same
// transaction (as ovs-vsctl does): ovs-vswitchd copies it to cur_cfg once it
// has applied the transaction. The select's result is the last one.
func nextCfgOps(cn *conn) ([]libovsdb.Operation, error) {
	cached := rootRow(cn.cache)
	if cached == nil {
		return nil, errNoRoot
	}
	root := &vswitchd.OpenvSwitch{UUID: cached.UUID}
	ops, err := cn.ovs.Where(root).Mutate(root, modelMutation(&root.NextCfg, libovsdb.MutateOperationAdd, 1))
	if err != nil {
		return nil, err
	}
	return append(ops, libovsdb.Operation{
		Op:      libovsdb.OperationSelect,
		Table:   vswitchd.OpenvSwitchTable,
		Where:   []libovsdb.Condition{libovsdb.NewCondition("_uuid", libovsdb.ConditionEqual, libovsdb.UUID{GoUUID: root.UUID})},
		Columns: []string{"next_cfg"},
	}), nil
}

// selectedNextCfg reads next_cfg from the result of nextCfgOps' select.
func selectedNextCfg(res []libovsdb.OperationResult) (int, error) {
	if len(res) == 0 || len(res[len(res)-1].Rows) != 1 {
		return 0, fmt.Errorf("ovsdb: no next_cfg in the transaction result")
	}
	switch v := res[len(res)-1].Rows[0]["next_cfg"].(type) {
	case float64:
		return int(v), nil
	case int:
		return v, nil
	default:
		return 0, fmt.Errorf("ovsdb: next_cfg has type %T", v)
	}
}

var errNoRoot = errors.New("ovsdb: no Open_vSwitch row (database not initialized: run \"ovs-vsctl init\" or start ovs-vswitchd's service)")

// applied reports whether ovs-vswitchd has applied configuration nextCfg.
func applied(tc *cache.TableCache, nextCfg int) bool {
	root := rootRow(tc)
	return root != nil && root.CurCfg >= nextCfg
}
