package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"

	"github.com/ovn-kubernetes/libovsdb/cache"
	libovsdb "github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/ovs-netpol/ovs-netpol/ovsdb-schema/vswitchd"
)

// KeyHWAddr is the Bridge other_config key that fixes the MAC of the
// bridge's LOCAL port (ovs-vswitchd otherwise picks one from its ports,
// which changes as ports come and go).
const KeyHWAddr = "hwaddr"

// Bounds of Interface.ofport_request in the OVS 3.1 schema.
const (
	minOFPortRequest = 1
	maxOFPortRequest = 65279
)

// EnsureTunnelPort makes the bridge have a port named name whose single
// Interface has type kind ("geneve", "vxlan", ...), exactly the given
// options, and ofport_request ofportRequest (0: none). It is idempotent: a
// port that is already like that is left alone (no transaction). A port of
// that name with another type, options or ofport_request on this bridge is
// changed in place; one on another bridge is an error. It returns the
// ofport ovs-vswitchd assigned, which may differ from ofportRequest when
// that number is taken, once the cache shows it; an Interface that
// ovs-vswitchd cannot create (ofport -1) is an error carrying its error
// column. The wait is bounded by ctx.
func (c *Client) EnsureTunnelPort(ctx context.Context, bridge, name, kind string, options map[string]string, ofportRequest int) (ofport int, err error) {
	switch {
	case name == "":
		return 0, errors.New("ovsdb: EnsureTunnelPort: empty port name")
	case kind == "":
		return 0, fmt.Errorf("ovsdb: EnsureTunnelPort %s: empty interface type", name)
	case ofportRequest != 0 && (ofportRequest < minOFPortRequest || ofportRequest > maxOFPortRequest):
		return 0, fmt.Errorf("ovsdb: EnsureTunnelPort %s: ofport_request %d is outside %d..%d", name, ofportRequest, minOFPortRequest, maxOFPortRequest)
	}
	want := maps.Clone(options)
	if want == nil {
		want = map[string]string{}
	}
	var wantReq *int
	if ofportRequest != 0 {
		wantReq = &ofportRequest
	}
	matches := func(i *vswitchd.Interface) bool {
		return i.Type == kind && maps.Equal(i.Options, want) && equalIntPtr(i.OfportRequest, wantReq)
	}

	cn := c.current()
	tc := cn.cache
	br := bridgeByName(tc, bridge)
	if br == nil {
		return 0, fmt.Errorf("ovsdb: tunnel port %s: bridge %q does not exist", name, bridge)
	}
	what := fmt.Sprintf("ensure %s port %s on bridge %s", kind, name, bridge)
	var ops []libovsdb.Operation
	if p := portByName(tc, name); p != nil {
		if on := bridgeOfPort(tc, p.UUID); on == nil || on.UUID != br.UUID {
			onName := ""
			if on != nil {
				onName = on.Name
			}
			return 0, fmt.Errorf("ovsdb: %s: the port exists on bridge %q", what, onName)
		}
		ifaces := rows[vswitchd.Interface](tc, vswitchd.InterfaceTable)
		if len(p.Interfaces) != 1 || ifaces[p.Interfaces[0]] == nil {
			return 0, fmt.Errorf("ovsdb: %s: the port has %d interfaces (a bond?), not one", what, len(p.Interfaces))
		}
		iface := ifaces[p.Interfaces[0]]
		if iface.Name != name {
			return 0, fmt.Errorf("ovsdb: %s: the port's interface is named %q", what, iface.Name)
		}
		if matches(iface) && iface.Ofport != nil && *iface.Ofport > 0 {
			return *iface.Ofport, nil
		}
		// In place: ovs-vswitchd rebuilds the interface's netdev when its
		// type changes, and renumbers it for a new ofport_request.
		upd := &vswitchd.Interface{Type: kind, Options: want, OfportRequest: wantReq}
		o, err := cn.ovs.Where(&vswitchd.Interface{UUID: iface.UUID}).Update(upd, &upd.Type, &upd.Options, &upd.OfportRequest)
		if err != nil {
			return 0, fmt.Errorf("ovsdb: %s: %w", what, err)
		}
		ops = append(ops, o...)
	} else {
		if i := interfaceByName(tc, name); i != nil {
			return 0, fmt.Errorf("ovsdb: %s: an interface of that name belongs to another port", what)
		}
		iface := &vswitchd.Interface{UUID: "new_iface", Name: name, Type: kind, Options: want, OfportRequest: wantReq}
		o, err := newPortOps(cn, br.UUID, iface)
		if err != nil {
			return 0, fmt.Errorf("ovsdb: %s: %w", what, err)
		}
		ops = append(ops, o...)
	}
	// Also when only the ofport is missing: a new next_cfg makes
	// ovs-vswitchd try again, and cur_cfg tells when its answer is in.
	err = c.apply(ctx, cn, what, ops, func(tc *cache.TableCache) (bool, error) {
		i := interfaceByName(tc, name)
		if i == nil || !matches(i) {
			return false, nil
		}
		port, done, refused := assignedOfport(i)
		if refused != nil {
			return false, fmt.Errorf("ovsdb: ovs-vswitchd cannot create %s port %s on %s: %w", kind, name, bridge, refused)
		}
		ofport = port
		return done, nil
	})
	return ofport, err
}

func equalIntPtr(a, b *int) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// SetBridgeHWAddr sets the bridge's other_config:hwaddr, the MAC of its
// LOCAL port (other keys stay), and returns once ovs-vswitchd has applied
// it. Nothing is written when the cache shows that value already. The MAC
// must be a unicast Ethernet address (ovs-vswitchd ignores others).
func (c *Client) SetBridgeHWAddr(ctx context.Context, bridge string, mac net.HardwareAddr) error {
	if len(mac) != 6 || mac[0]&1 != 0 || slices.Equal(mac, make(net.HardwareAddr, 6)) {
		return fmt.Errorf("ovsdb: set hwaddr of bridge %s: %q is not a unicast Ethernet address", bridge, mac.String())
	}
	value := mac.String()
	cn := c.current()
	br := bridgeByName(cn.cache, bridge)
	if br == nil {
		return fmt.Errorf("ovsdb: set hwaddr of bridge %s: the bridge does not exist", bridge)
	}
	if br.OtherConfig[KeyHWAddr] == value {
		return nil
	}
	row := &vswitchd.Bridge{UUID: br.UUID}
	// Delete then insert: "insert" keeps an existing key's value (RFC 7047 5.1).
	ops, err := cn.ovs.Where(row).Mutate(row,
		modelMutation(&row.OtherConfig, libovsdb.MutateOperationDelete, []string{KeyHWAddr}),
		modelMutation(&row.OtherConfig, libovsdb.MutateOperationInsert, map[string]string{KeyHWAddr: value}),
	)
	if err != nil {
		return fmt.Errorf("ovsdb: set hwaddr of bridge %s: %w", bridge, err)
	}
	return c.apply(ctx, cn, "set other_config:hwaddr of bridge "+bridge, ops, func(tc *cache.TableCache) (bool, error) {
		b := bridgeByName(tc, bridge)
		return b != nil && b.OtherConfig[KeyHWAddr] == value, nil
	})
}

// DeletePort removes the port named name from the bridge, whatever its
// kind (the agent uses it to remove its tunnel port when the overlay is
// turned off). A port that does not exist or is on another bridge is not an
// error.
func (c *Client) DeletePort(ctx context.Context, bridge, name string) error {
	return c.DelPodPort(ctx, bridge, name)
}

// SetMTURequest sets Interface.mtu_request of the interface named iface
// and returns once ovs-vswitchd has applied it. ovs-vswitchd otherwise
// gives an internal interface (the bridge's LOCAL port) the smallest MTU of
// the bridge's other ports whenever ports come and go, undoing an MTU set
// with ip link (verified on OVS 3.1: adding a 1500-byte veth raised LOCAL
// from 1450 to 1500). Nothing is written when the cache shows that value.
func (c *Client) SetMTURequest(ctx context.Context, iface string, mtu int) error {
	if mtu < 68 || mtu > 65535 {
		return fmt.Errorf("ovsdb: mtu_request of %s: %d is not a valid MTU", iface, mtu)
	}
	cn := c.current()
	i := interfaceByName(cn.cache, iface)
	if i == nil {
		return fmt.Errorf("ovsdb: mtu_request of %s: the interface does not exist", iface)
	}
	if i.MTURequest != nil && *i.MTURequest == mtu {
		return nil
	}
	upd := &vswitchd.Interface{MTURequest: &mtu}
	ops, err := cn.ovs.Where(&vswitchd.Interface{UUID: i.UUID}).Update(upd, &upd.MTURequest)
	if err != nil {
		return fmt.Errorf("ovsdb: mtu_request of %s: %w", iface, err)
	}
	return c.apply(ctx, cn, "set mtu_request of "+iface, ops, func(tc *cache.TableCache) (bool, error) {
		i := interfaceByName(tc, iface)
		return i != nil && i.MTURequest != nil && *i.MTURequest == mtu, nil
	})
}

// HasPort reports whether the bridge has a port named name (as the cache
// shows it).
func (c *Client) HasPort(bridge, name string) bool {
	cn := c.current()
	br := bridgeByName(cn.cache, bridge)
	p := portByName(cn.cache, name)
	return br != nil && p != nil && slices.Contains(br.Ports, p.UUID)
}

// ClearMTURequest removes Interface.mtu_request of the interface named
// iface (ovs-vswitchd then picks its MTU again) and returns once the cache
// shows it gone. Nothing is written when it has none.
func (c *Client) ClearMTURequest(ctx context.Context, iface string) error {
	cn := c.current()
	i := interfaceByName(cn.cache, iface)
	if i == nil {
		return fmt.Errorf("ovsdb: clear mtu_request of %s: the interface does not exist", iface)
	}
	if i.MTURequest == nil {
		return nil
	}
	upd := &vswitchd.Interface{MTURequest: nil}
	ops, err := cn.ovs.Where(&vswitchd.Interface{UUID: i.UUID}).Update(upd, &upd.MTURequest)
	if err != nil {
		return fmt.Errorf("ovsdb: clear mtu_request of %s: %w", iface, err)
	}
	return c.apply(ctx, cn, "clear mtu_request of "+iface, ops, func(tc *cache.TableCache) (bool, error) {
		i := interfaceByName(tc, iface)
		return i != nil && i.MTURequest == nil, nil
	})
}
