package nodenet

import (
	"net/netip"
	"strings"
	"testing"
)

// TestUnderlayMTUOfAnAddressOnLoopback: a routed node's InternalIP often
// sits on lo or a dummy device as a host address (/32, /128; its links
// unnumbered or on other subnets): the device holding it says nothing of
// the underlay (lo: 65536), so the MTU is at most that of the devices of
// the host's default routes of its family, the smallest when there are
// several. Without one it is an error (set --mtu).
func TestUnderlayMTUOfAnAddressOnLoopback(t *testing.T) {
	name, path := newNetNS(t)
	h := Host{NetNS: path}
	run(t, "ip", "-n", name, "link", "add", "eth0", "mtu", "1500", "type", "veth", "peer", "name", "eth0p")
	run(t, "ip", "-n", name, "link", "add", "eth1", "mtu", "9000", "type", "veth", "peer", "name", "eth1p")
	for _, l := range []string{"eth0", "eth0p", "eth1", "eth1p"} {
		run(t, "ip", "-n", name, "link", "set", l, "up")
	}
	run(t, "ip", "-n", name, "addr", "add", "10.0.0.2/24", "dev", "eth0")
	run(t, "ip", "-n", name, "addr", "add", "10.0.1.2/24", "dev", "eth1")
	run(t, "ip", "-n", name, "route", "add", "default", "nexthop", "via", "10.0.0.1", "nexthop", "via", "10.0.1.1")
	run(t, "ip", "-n", name, "addr", "add", "172.29.1.2/32", "dev", "lo")
	run(t, "ip", "-n", name, "link", "add", "eth2", "mtu", "9000", "type", "veth", "peer", "name", "eth2p")
	run(t, "ip", "-n", name, "addr", "add", "172.29.1.3/32", "dev", "eth2")
	run(t, "ip", "-n", name, "addr", "add", "fd00:29:1::2/128", "dev", "lo")

	for _, tc := range []struct {
		ip      string
		mtu     int
		wantErr string
	}{
		{"172.29.1.2", 1500, ""}, // lo; ECMP default over eth0 (1500) and eth1 (9000)
		{"172.29.1.3", 1500, ""}, // a host address (/32) on a 9000-byte device, as on a dummy
		{"10.0.1.2", 9000, ""},   // an ordinary device: its own MTU
		{"fd00:29:1::2", 0, "no default route"},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			mtu, err := h.UnderlayMTU(netip.MustParseAddr(tc.ip))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("UnderlayMTU = %d, %v; want an error containing %q", mtu, err, tc.wantErr)
				}
				return
			}
			if err != nil || mtu != tc.mtu {
				t.Errorf("UnderlayMTU = %d, %v; want %d", mtu, err, tc.mtu)
			}
		})
	}
}
