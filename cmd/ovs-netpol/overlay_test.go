package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
)

const overlayExample = "../../examples/overlay/cluster.yaml"

func compileOverlay(t *testing.T, o compileOptions) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	if o.files == nil {
		o.files = []string{overlayExample}
	}
	o.node, o.isolation, o.gateway, o.ctZone, o.comments = "node-1", "v1", "LOCAL", 64000, true
	err := runCompile(o, &out, &errOut)
	return out.String(), err
}

// TestOverlayGolden keeps flows/golden/overlay-node-1.flows equal to what
// compile prints for node-1 of the three-node overlay example.
func TestOverlayGolden(t *testing.T) {
	got, err := compileOverlay(t, compileOptions{tunnelPort: "4096"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("../../flows/golden", "overlay-node-1.flows")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/ovs-netpol -run Golden -update)", err)
	}
	if got != string(want) {
		t.Errorf("compile output differs from %s (run go test ./cmd/ovs-netpol -run Golden -update and review the diff)", path)
	}
	// The derived gateway MAC is the one given explicitly.
	explicit, err := compileOverlay(t, compileOptions{tunnelPort: "4096", gatewayMAC: "0a:58:0a:5b:01:01"})
	if err != nil || explicit != got {
		t.Errorf("--gateway-mac 0a:58:0a:5b:01:01 changes the output (%v)", err)
	}
}

func TestOverlayCompileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nspec: {podCIDR: 10.91.1.0/24, podCIDRs: [10.91.2.0/24]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noCIDR := filepath.Join(dir, "nocidr.yaml")
	if err := os.WriteFile(noCIDR, []byte("apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		o       compileOptions
		wantErr string
	}{
		{"tunnel and uplink", compileOptions{tunnelPort: "4096", uplink: "9"}, "exclude each other"},
		{"tunnel LOCAL", compileOptions{tunnelPort: "LOCAL"}, "--tunnel-port: invalid"},
		{"MAC without tunnel", compileOptions{gatewayMAC: "0a:58:0a:5b:01:01"}, "needs --tunnel-port"},
		{"bad podCIDRs", compileOptions{files: []string{bad}, tunnelPort: "4096"}, `bad.yaml: document 1 (Node node-1): node node-1: spec.podCIDR "10.91.1.0/24" must equal spec.podCIDRs[0] "10.91.2.0/24"`},
		{"no MAC to derive", compileOptions{files: []string{noCIDR}, tunnelPort: "4096"}, "--tunnel-port needs --gateway-mac"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := compileOverlay(t, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
			if out != "" {
				t.Errorf("flows printed despite the error")
			}
		})
	}
}

// TestOverlayGoldenOnOVS installs the golden overlay flows unchanged on a
// switch with a flow-based Geneve port and traces one packet each way.
func TestOverlayGoldenOnOVS(t *testing.T) {
	flows, err := os.ReadFile("../../flows/golden/overlay-node-1.flows")
	if err != nil {
		t.Fatal(err)
	}
	sw := ovstest.Start(t)
	if err := sw.AddBridge("br-int"); err != nil {
		t.Fatal(err)
	}
	if err := sw.AddInternalPort("br-int", "db", 10); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.Vsctl("add-port", "br-int", "gnv0", "--", "set", "interface", "gnv0", "type=geneve",
		"options:remote_ip=flow", "ofport_request=4096"); err != nil {
		t.Fatal(err)
	}
	if err := sw.InstallBundle("br-int", string(flows)); err != nil {
		t.Fatalf("ovs-ofctl bundle refused the golden overlay flows: %v", err)
	}
	for _, tc := range []struct{ flow, want string }{
		// api (node-2) → db:5432 through the tunnel: allowed.
		{"in_port=4096,tun_src=172.29.2.2,tun_dst=172.29.1.2,tcp,nw_src=10.91.2.20,nw_dst=10.91.1.10,tcp_src=40000,tcp_dst=5432", "db"},
		// web (node-3) → db:5432: not an api pod.
		{"in_port=4096,tun_src=172.29.3.2,tun_dst=172.29.1.2,tcp,nw_src=10.91.3.30,nw_dst=10.91.1.10,tcp_src=40000,tcp_dst=5432", "drop"},
		// web's IPv6 address → node-1's host (not isolated).
		{"in_port=4096,tun_src=172.29.3.2,tun_dst=172.29.1.2,tcp6,ipv6_src=fd00:91:3::30,ipv6_dst=fd00:29:1::2,tcp_src=40000,tcp_dst=22", "br-int"},
		// api's address from node-3's tunnel: spoofed.
		{"in_port=4096,tun_src=172.29.3.2,tun_dst=172.29.1.2,tcp,nw_src=10.91.2.20,nw_dst=10.91.1.10,tcp_src=40000,tcp_dst=5432", "drop"},
		// db has no IPv6 address: one from its port is spoofed.
		{"in_port=10,tcp6,dl_src=0a:58:0a:5b:01:0a,ipv6_src=fd00:91:1::10,ipv6_dst=fd00:91:3::30,tcp_src=40000,tcp_dst=80", "drop"},
		// db → web: into the tunnel to node-3.
		{"in_port=10,tcp,dl_src=0a:58:0a:5b:01:0a,nw_src=10.91.1.10,nw_dst=10.91.3.30,tcp_src=40000,tcp_dst=80", "tunnel 172.29.3.2"},
	} {
		tr, err := sw.Trace("br-int", tc.flow)
		if err != nil {
			t.Fatal(err)
		}
		got := "drop"
		switch {
		case strings.Contains(tr.Raw, "output:4096"):
			i := strings.LastIndex(tr.Raw, "set_field:")
			dst, _, _ := strings.Cut(tr.Raw[i+len("set_field:"):], "->tun_dst")
			got = "tunnel " + dst
		case !tr.Dropped:
			got = strings.Join(tr.OutputNames, ",")
		}
		if got != tc.want {
			t.Errorf("%s: %s, want %s\n%s", tc.flow, got, tc.want, tr.Raw)
		}
		t.Logf("%s → %s", tc.flow, got)
	}
}
