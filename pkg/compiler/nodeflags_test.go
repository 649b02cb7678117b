package compiler_test

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
)

func TestNodeFlagsConfig(t *testing.T) {
	for _, tc := range []struct {
		flags   compiler.NodeFlags
		want    compiler.Config
		wantErr string
	}{
		{flags: compiler.NodeFlags{Node: "n1", CTZone: 7, GatewayPort: "LOCAL", NodeIPs: []string{"10.0.0.1", "fd00::1"}},
			want: compiler.Config{Node: "n1", CTZone: 7, GatewayPort: compiler.PortLocal,
				NodeIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}}},
		{flags: compiler.NodeFlags{Node: "n1", GatewayPort: "3", UplinkPort: "9"},
			want: compiler.Config{Node: "n1", GatewayPort: 3, UplinkPort: 9}},
		{flags: compiler.NodeFlags{GatewayPort: "99999"}, wantErr: "--gateway-port"},
		{flags: compiler.NodeFlags{GatewayPort: "LOCAL", UplinkPort: "x"}, wantErr: "--uplink-port"},
		{flags: compiler.NodeFlags{GatewayPort: "LOCAL", NodeIPs: []string{"abc"}}, wantErr: `--node-ip "abc"`},
		{flags: compiler.NodeFlags{GatewayPort: "LOCAL", HairpinIPs: []string{"169.254.9.9", "fd00::9"}},
			want: compiler.Config{GatewayPort: compiler.PortLocal, HairpinIPv4: netip.MustParseAddr("169.254.9.9"), HairpinIPv6: netip.MustParseAddr("fd00::9")}},
		{flags: compiler.NodeFlags{GatewayPort: "LOCAL", HairpinIPs: []string{"169.254.9.9", "169.254.9.8"}}, wantErr: "one address per family"},
		{flags: compiler.NodeFlags{GatewayPort: "LOCAL", HairpinIPs: []string{"224.0.0.1"}}, wantErr: `--hairpin-ip "224.0.0.1"`},
	} {
		got, err := tc.flags.Config()
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%+v: error %v, want one naming %s", tc.flags, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%+v: %v", tc.flags, err)
		case !reflect.DeepEqual(got, tc.want):
			t.Errorf("%+v: %+v, want %+v", tc.flags, got, tc.want)
		}
	}
}
