package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"

	"github.com/ovn-kubernetes/libovsdb/cache"
	libovsdb "github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/ovs-netpol/ovs-netpol/ovsdb-schema/vswitchd"
)

// External-ID keys on Interface rows that bind a port to a pod (see the
// package documentation).
const (
	KeyPodNamespace = "ovs-netpol.io/pod-namespace"
	KeyPodName      = "ovs-netpol.io/pod-name"
	KeyPodUID       = "ovs-netpol.io/pod-uid"
	KeyContainerID  = "ovs-netpol.io/container-id"
	KeyAttachedMAC  = "attached-mac" // the pod-side MAC (the Interface's own mac_in_use is the host end's)
)

// ourKeyPrefix marks the keys AddPodPort replaces as a whole on an existing
// Interface (with KeyAttachedMAC), so a stale pod-uid cannot survive.
const ourKeyPrefix = "ovs-netpol.io/"

// PodPort is a port of a bridge as the cache sees it. OFPort is the OpenFlow
// port number (0: not assigned yet, -1: ovs-vswitchd could not open the
// device); MAC is the pod-side MAC from attached-mac (nil if absent or
// invalid).
type PodPort struct {
	Interface                         string
	Namespace, Name, UID, ContainerID string
	OFPort                            int
	MAC                               net.HardwareAddr
}

func podPort(i *vswitchd.Interface) PodPort {
	p := PodPort{
		Interface:   i.Name,
		Namespace:   i.ExternalIDs[KeyPodNamespace],
		Name:        i.ExternalIDs[KeyPodName],
		UID:         i.ExternalIDs[KeyPodUID],
		ContainerID: i.ExternalIDs[KeyContainerID],
	}
	if i.Ofport != nil {
		p.OFPort = *i.Ofport
	}
	if mac, err := net.ParseMAC(i.ExternalIDs[KeyAttachedMAC]); err == nil {
		p.MAC = mac
	}
	return p
}

// bridgeInterfaces returns the interfaces of the bridge's ports, sorted by name.
func bridgeInterfaces(tc *cache.TableCache, bridge string) []*vswitchd.Interface {
	br := bridgeByName(tc, bridge)
	if br == nil {
		return nil
	}
	ports := rows[vswitchd.Port](tc, vswitchd.PortTable)
	ifaces := rows[vswitchd.Interface](tc, vswitchd.InterfaceTable)
	var out []*vswitchd.Interface
	for _, pu := range br.Ports {
		p := ports[pu]
		if p == nil {
			continue // the cache applies one update table by table
		}
		for _, iu := range p.Interfaces {
			if i := ifaces[iu]; i != nil {
				out = append(out, i)
			}
		}
	}
	slices.SortFunc(out, func(a, b *vswitchd.Interface) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// PodPorts returns the ports of the bridge whose Interface carries the pod
// namespace and name keys and has a valid ofport (> 0), sorted by interface
// name, from the cache (so possibly slightly behind the database, and the
// last known state while reconnecting).
func (c *Client) PodPorts(bridge string) []PodPort {
	var out []PodPort
	for _, i := range bridgeInterfaces(c.current().cache, bridge) {
		p := podPort(i)
		if p.Namespace != "" && p.Name != "" && p.OFPort > 0 {
			out = append(out, p)
		}
	}
	return out
}

// Port returns the port of the bridge whose Interface is named ifname,
// whether or not it belongs to a pod or has an ofport yet, from the cache.
func (c *Client) Port(bridge, ifname string) (PodPort, bool) {
	for _, i := range bridgeInterfaces(c.current().cache, bridge) {
		if i.Name == ifname {
			return podPort(i), true
		}
	}
	return PodPort{}, false
}

// AddPodPort adds the system device ifname (the host end of a pod's veth;
// it must exist in ovs-vswitchd's network namespace) to the bridge as an
// Interface of type "" with its own Port, external_ids ext (normally the
// Key* keys), in one transaction. If the Interface exists on that bridge
// already, its keys "ovs-netpol.io/*" and attached-mac are replaced by ext
// (other keys stay). It returns the ofport once ovs-vswitchd has assigned
// it, and an error with the Interface's error column if vswitchd could not
// open the device. The wait is bounded by ctx.
func (c *Client) AddPodPort(ctx context.Context, bridge, ifname string, ext map[string]string) (ofport int, err error) {
	if ifname == "" {
		return 0, errors.New("ovsdb: AddPodPort: empty interface name")
	}
	cn := c.current()
	tc := cn.cache
	br := bridgeByName(tc, bridge)
	if br == nil {
		return 0, fmt.Errorf("ovsdb: add port %s: bridge %q does not exist", ifname, bridge)
	}
	var ops []libovsdb.Operation
	want := maps.Clone(ext)
	if want == nil {
		want = map[string]string{}
	}
	if iface := interfaceByName(tc, ifname); iface != nil {
		var on string
		if p := portOfInterface(tc, iface.UUID); p != nil {
			if b := bridgeOfPort(tc, p.UUID); b != nil {
				on = b.Name
			}
		}
		if on != bridge {
			return 0, fmt.Errorf("ovsdb: add port %s to bridge %s: the interface exists on bridge %q", ifname, bridge, on)
		}
		for k, v := range iface.ExternalIDs {
			if _, ok := want[k]; !ok && !strings.HasPrefix(k, ourKeyPrefix) && k != KeyAttachedMAC {
				want[k] = v
			}
		}
		if !maps.Equal(iface.ExternalIDs, want) {
			upd := &vswitchd.Interface{ExternalIDs: want}
			o, err := cn.ovs.Where(&vswitchd.Interface{UUID: iface.UUID}).Update(upd, &upd.ExternalIDs)
			if err != nil {
				return 0, err
			}
			ops = append(ops, o...)
		} else if iface.Ofport != nil && *iface.Ofport > 0 {
			return *iface.Ofport, nil // nothing to do
		}
	} else {
		o, err := newPortOps(cn, br.UUID, &vswitchd.Interface{UUID: "new_iface", Name: ifname, ExternalIDs: want})
		if err != nil {
			return 0, err
		}
		ops = append(ops, o...)
	}
	// Also when nothing else changes (an existing port without a valid
	// ofport): a new next_cfg makes ovs-vswitchd try the device again, and
	// cur_cfg tells when it is done, so ofport -1 afterwards is an answer.
	err = c.apply(ctx, cn, "add port "+ifname+" to bridge "+bridge, ops, func(tc *cache.TableCache) (bool, error) {
		i := interfaceByName(tc, ifname)
		if i == nil || !maps.Equal(i.ExternalIDs, want) {
			return false, nil
		}
		port, done, refused := assignedOfport(i)
		if refused != nil {
			return false, fmt.Errorf("ovsdb: ovs-vswitchd cannot use %s as a port of %s: %w", ifname, bridge, refused)
		}
		ofport = port
		return done, nil
	})
	return ofport, err
}

// assignedOfport is ovs-vswitchd's answer for an interface it was asked to
// use (read once the transaction is applied): done with its OpenFlow port
// when it has one, done with its reason (the error column) when it could
// not use it (ofport -1), not done while it has not answered.
func assignedOfport(i *vswitchd.Interface) (ofport int, done bool, refused error) {
	switch {
	case i.Ofport != nil && *i.Ofport > 0:
		return *i.Ofport, true, nil
	case i.Ofport != nil && *i.Ofport < 0:
		msg := "unknown error"
		if i.Error != nil {
			msg = *i.Error
		}
		return 0, true, errors.New(msg)
	}
	return 0, false, nil
}

// DelPodPort removes the port named ifname from the bridge (its Port and
// Interface rows go with it). A port that does not exist, or is not on that
// bridge, is not an error. It returns once the cache no longer shows it.
func (c *Client) DelPodPort(ctx context.Context, bridge, ifname string) error {
	cn := c.current()
	br := bridgeByName(cn.cache, bridge)
	p := portByName(cn.cache, ifname)
	if br == nil || p == nil || !slices.Contains(br.Ports, p.UUID) {
		return nil
	}
	ops, err := portsMutation(cn, br.UUID, libovsdb.MutateOperationDelete, p.UUID)
	if err != nil {
		return err
	}
	if _, err := c.transact(ctx, cn, "delete port "+ifname+" from bridge "+bridge, ops); err != nil {
		return err
	}
	return c.waitFor(ctx, "port "+ifname+" to disappear", func(tc *cache.TableCache) (bool, error) {
		return portByName(tc, ifname) == nil, nil
	})
}
