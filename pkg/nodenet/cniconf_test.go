package nodenet

import (
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend/allocator"

	"github.com/ovs-netpol/ovs-netpol/pkg/cni"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestRenderCNIConfigGolden(t *testing.T) {
	tests := []struct {
		golden string
		conf   CNIConfig
	}{
		{"ipv4.conflist", CNIConfig{PodCIDRs: prefixes("10.91.1.0/24"), MTU: 1450,
			Bridge: "br-int", OVSDB: "unix:/var/run/openvswitch/db.sock", DatapathType: "system"}},
		{"dualstack.conflist", CNIConfig{PodCIDRs: prefixes("10.91.2.0/24", "fd00:91:2::/64"), MTU: 1430,
			Bridge: "br-int", OVSDB: "unix:/tmp/x/db.sock", DatapathType: "netdev", HostNetNS: "/var/run/netns/node2",
			DataDir: "/tmp/x/ipam", NetworkName: "e2e"}},
		{"ipv6-defaults.conflist", CNIConfig{PodCIDRs: prefixes("fd00:91:3::/64")}},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			got, err := RenderCNIConfig(tc.conf)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("rendered:\n%s\nwant (%s):\n%s", got, path, want)
			}
			checkReadable(t, got, tc.conf)
		})
	}
}

// checkReadable parses the file as a runtime (libcni), our plugin (pkg/cni)
// and host-local do.
func checkReadable(t *testing.T, data []byte, conf CNIConfig) {
	t.Helper()
	list, err := libcni.ConfListFromBytes(data)
	if err != nil {
		t.Fatalf("libcni: %v", err)
	}
	if len(list.Plugins) != 1 || list.Plugins[0].Network.Type != "ovs-netpol-cni" {
		t.Fatalf("libcni plugins: %+v", list.Plugins)
	}
	// A runtime hands the plugin its object with the list's name and version.
	pluginBytes, err := libcni.InjectConf(list.Plugins[0], map[string]any{"cniVersion": list.CNIVersion, "name": list.Name})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := cni.LoadConf(pluginBytes.Bytes)
	if err != nil {
		t.Fatalf("pkg/cni: %v", err)
	}
	if nc.MTU != conf.MTU || (conf.Bridge != "" && nc.Bridge != conf.Bridge) || nc.HostNetNS != conf.HostNetNS {
		t.Errorf("pkg/cni read %+v", nc)
	}
	ipam, _, err := allocator.LoadIPAMConfig(pluginBytes.Bytes, "")
	if err != nil {
		t.Fatalf("host-local: %v", err)
	}
	if len(ipam.Ranges) != len(conf.PodCIDRs) {
		t.Fatalf("host-local ranges %+v", ipam.Ranges)
	}
	for i, p := range conf.PodCIDRs {
		r := ipam.Ranges[i][0]
		if (*net.IPNet)(&r.Subnet).String() != p.String() || r.Gateway.String() != p.Addr().Next().String() {
			t.Errorf("host-local range %d: subnet %s gateway %s, want %s and its first address", i, (*net.IPNet)(&r.Subnet).String(), r.Gateway, p)
		}
	}
	if len(ipam.Routes) != len(conf.PodCIDRs) {
		t.Errorf("host-local routes %+v", ipam.Routes)
	}
}

func TestRenderCNIConfigRejects(t *testing.T) {
	tests := []struct {
		name string
		conf CNIConfig
		want string
	}{
		{"no CIDR", CNIConfig{}, "one pod CIDR per family"},
		{"three CIDRs", CNIConfig{PodCIDRs: prefixes("10.0.0.0/24", "fd00::/64", "10.1.0.0/24")}, "one pod CIDR per family"},
		{"two IPv4", CNIConfig{PodCIDRs: prefixes("10.0.0.0/24", "10.1.0.0/24")}, "two IPv4"},
		{"two IPv6", CNIConfig{PodCIDRs: prefixes("fd00::/64", "fd01::/64")}, "two IPv6"},
		{"not masked", CNIConfig{PodCIDRs: prefixes("10.0.0.5/24")}, "not a masked prefix"},
		{"no room for a gateway", CNIConfig{PodCIDRs: prefixes("10.0.0.5/32")}, "not a masked prefix"},
		{"zero prefix", CNIConfig{PodCIDRs: []netip.Prefix{{}}}, "not a masked prefix"},
		{"mapped IPv4", CNIConfig{PodCIDRs: prefixes("::ffff:10.0.0.0/120")}, "not a masked prefix"},
		{"MTU too small", CNIConfig{PodCIDRs: prefixes("10.0.0.0/24"), MTU: 576}, "MTU 576"},
		{"bad network name", CNIConfig{PodCIDRs: prefixes("10.0.0.0/24"), NetworkName: `a"b`}, "network name"},
		{"relative dataDir", CNIConfig{PodCIDRs: prefixes("10.0.0.0/24"), DataDir: "ipam"}, "not an absolute path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RenderCNIConfig(tc.conf)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("%s has mode %v, want 0644", path, st.Mode().Perm())
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func TestWriteCNIConfig(t *testing.T) {
	dir := t.TempDir()
	conf := CNIConfig{PodCIDRs: prefixes("10.91.1.0/24"), MTU: 1450}
	path, err := WriteCNIConfig(dir, conf)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, DefaultCNIConfName) {
		t.Errorf("path %s", path)
	}
	want, _ := RenderCNIConfig(conf)
	if got, _ := os.ReadFile(path); string(got) != string(want) {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
	first := inode(t, path)

	// The same configuration again: the file is not rewritten (a runtime
	// watching the directory sees no change); a wrong mode is fixed.
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteCNIConfig(dir, conf); err != nil {
		t.Fatal(err)
	}
	if inode(t, path) != first {
		t.Error("identical configuration rewritten")
	}

	// Another configuration replaces the file by a rename (a new inode),
	// never by writing into the file a runtime may be reading.
	conf.MTU = 1400
	if _, err := WriteCNIConfig(dir, conf); err != nil {
		t.Fatal(err)
	}
	if inode(t, path) == first {
		t.Error("changed configuration written in place, not renamed over")
	}
	if got, _ := os.ReadFile(path); !strings.Contains(string(got), `"mtu": 1400`) {
		t.Errorf("file after change:\n%s", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries (temporary files left?): %v", len(entries), entries)
	}

	custom := conf
	custom.FileName = "05-other.conflist"
	if p, err := WriteCNIConfig(dir, custom); err != nil || p != filepath.Join(dir, "05-other.conflist") {
		t.Errorf("custom name: %s, %v", p, err)
	}

	for _, tc := range []struct {
		name, dir, file, want string
	}{
		{"no directory", "", "", "no directory"},
		{"missing directory", filepath.Join(dir, "nosuch"), "", "no such file or directory"},
		{"not .conflist", dir, "10-x.conf", "ending in .conflist"},
		{"path in name", dir, "../x.conflist", "ending in .conflist"},
		{"hidden name", dir, ".x.conflist", "ending in .conflist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := conf
			c.FileName = tc.file
			if _, err := WriteCNIConfig(tc.dir, c); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// A bad configuration writes nothing.
	if _, err := WriteCNIConfig(dir, CNIConfig{FileName: "20-bad.conflist"}); err == nil {
		t.Error("configuration without pod CIDR written")
	}
	if _, err := os.Stat(filepath.Join(dir, "20-bad.conflist")); !os.IsNotExist(err) {
		t.Errorf("bad configuration left a file: %v", err)
	}
}
