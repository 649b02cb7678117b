package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
)

var update = flag.Bool("update", false, "rewrite the golden flow files in flows/golden")

// compileSeed runs `ovs-netpol compile` on the seed example as a user would.
func compileSeed(t *testing.T, isolation string, files ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	o := compileOptions{files: files, node: "node-1", isolation: isolation, ports: "../../examples/seed/ports.txt",
		gateway: "LOCAL", ctZone: 64000, comments: true}
	if err := runCompile(o, &out, &errOut); err != nil {
		t.Fatalf("compile: %v\nstderr: %s", err, errOut.String())
	}
	return out.String()
}

var seedFiles = []string{"../../examples/seed/namespace.yaml", "../../examples/seed/policy.yaml", "../../examples/seed/pods.yaml"}

// serviceFile is the db Service of the seed (and its EndpointSlice).
const serviceFile = "../../examples/seed/service.yaml"

// TestSeedGolden keeps flows/golden/*.flows equal to what compile prints.
func TestSeedGolden(t *testing.T) {
	for _, c := range []struct{ iso, name string }{{"v1.6", "seed-v1.6"}, {"v1", "seed-v1"}, {"v1", "seed-v1-service"}} {
		files := seedFiles
		if strings.HasSuffix(c.name, "-service") {
			files = append(append([]string(nil), seedFiles...), serviceFile)
		}
		iso := c.iso
		got := compileSeed(t, iso, files...)
		path := filepath.Join("../../flows/golden", c.name+".flows")
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./cmd/ovs-netpol -update)", err)
		}
		if got != string(want) {
			t.Errorf("compile output for %s differs from %s (run go test ./cmd/ovs-netpol -run Golden -update and review the diff)", c.name, path)
		}
	}
}

type seedProbe struct {
	name    string
	inPort  string // OpenFlow port the packet enters by
	src     string
	dst     string
	proto   string
	port    int
	allowed bool
}

// Node-1 runs db (port 10), frontend (11) and backend (12). Pods of node-2
// (client in myproject, stranger in other) and outside addresses reach
// node-1 through its gateway port, routed by the host; the node itself
// (172.18.0.1) does too.
var seedProbes = []seedProbe{
	{"frontend -> db:6379/TCP", "11", "10.244.1.11", "10.244.1.10", "tcp", 6379, true},
	{"myproject/client -> db:6379/TCP", "LOCAL", "10.244.2.20", "10.244.1.10", "tcp", 6379, true},
	{"frontend -> db:80/TCP", "11", "10.244.1.11", "10.244.1.10", "tcp", 80, false},
	{"myproject/client -> db:80/TCP", "LOCAL", "10.244.2.20", "10.244.1.10", "tcp", 80, false},
	{"frontend -> db:6379/UDP", "11", "10.244.1.11", "10.244.1.10", "udp", 6379, false},
	{"backend -> db:6379/TCP", "12", "10.244.1.12", "10.244.1.10", "tcp", 6379, false},
	{"other/stranger (role=frontend, wrong namespace) -> db:6379/TCP", "LOCAL", "10.244.2.21", "10.244.1.10", "tcp", 6379, false},
	{"external -> db:6379/TCP", "LOCAL", "192.0.2.1", "10.244.1.10", "tcp", 6379, false},
	{"db -> backend:80/TCP (default isolated by the annotation)", "10", "10.244.1.10", "10.244.1.12", "tcp", 80, false},
	{"frontend -> backend:80/TCP", "11", "10.244.1.11", "10.244.1.12", "tcp", 80, false},
	{"myproject/client -> frontend:80/TCP", "LOCAL", "10.244.2.20", "10.244.1.11", "tcp", 80, false},
	{"node-1 -> db:80/TCP (node-local)", "LOCAL", "172.18.0.1", "10.244.1.10", "tcp", 80, true},
	{"node-1 -> backend:80/TCP (node-local)", "LOCAL", "172.18.0.1", "10.244.1.12", "tcp", 80, true},
	{"db -> external (egress not isolated)", "10", "10.244.1.10", "192.0.2.1", "tcp", 443, true},
}

// seedServiceIP is db's cluster IP (examples/seed/service.yaml).
const seedServiceIP = "10.96.0.10"

var seedPorts = map[string]struct {
	port int
	mac  string
}{
	"10.244.1.10": {10, "0a:58:0a:f4:01:0a"},
	"10.244.1.11": {11, "0a:58:0a:f4:01:0b"},
	"10.244.1.12": {12, "0a:58:0a:f4:01:0c"},
}

// TestSeedOnOVS loads the compile output, unchanged, into a real br-int with
// `ovs-ofctl -O OpenFlow15 --bundle add-flows` and checks the seed's verdicts
// with ofproto/trace, in both isolation modes.
func TestSeedOnOVS(t *testing.T) {
	sw := ovstest.Start(t)
	if err := sw.AddBridge("br-int"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		name string
		port int
	}{{"db", 10}, {"frontend", 11}, {"backend", 12}} {
		if err := sw.AddInternalPort("br-int", p.name, p.port); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, flows string, probes []seedProbe) {
		t.Helper()
		if err := sw.InstallBundle("br-int", flows); err != nil {
			t.Fatalf("ovs-ofctl bundle refused the compile output: %v", err)
		}
		for _, p := range probes {
			srcMAC := "02:00:00:00:00:01"
			if sp, ok := seedPorts[p.src]; ok {
				srcMAC = sp.mac
			}
			flow := fmt.Sprintf("in_port=%s,%s,dl_src=%s,dl_dst=0a:58:00:00:00:01,nw_src=%s,nw_dst=%s,%s_src=40000,%s_dst=%d",
				p.inPort, p.proto, srcMAC, p.src, p.dst, p.proto, p.proto, p.port)
			res, err := sw.Trace("br-int", flow, "trk,new")
			if err != nil {
				t.Fatal(err)
			}
			want := "LOCAL"
			if dp, ok := seedPorts[p.dst]; ok {
				want = fmt.Sprint(dp.port)
			}
			if p.dst == seedServiceIP {
				want = "10" // balanced to db
			}
			got := !res.Dropped
			if got && (len(res.OutputPorts) != 1 || fmt.Sprint(res.OutputPorts[0]) != strings.Replace(want, "LOCAL", "65534", 1)) {
				t.Errorf("%s: delivered to %v, want port %s", p.name, res.OutputNames, want)
				continue
			}
			if got != p.allowed {
				t.Errorf("%s: allowed=%v, want %v\n%s", p.name, got, p.allowed, res.Raw)
			}
		}
	}
	for _, iso := range []string{"v1.6", "v1"} {
		t.Run(iso, func(t *testing.T) { check(t, compileSeed(t, iso, seedFiles...), seedProbes) })
	}
	// Through db's Service: the bridge balances to db, and the policy judges
	// db (its pod IP and port), not the cluster IP.
	for _, iso := range []string{"v1.6", "v1"} {
		t.Run(iso+" through the Service", func(t *testing.T) {
			check(t, compileSeed(t, iso, append(append([]string(nil), seedFiles...), serviceFile)...), []seedProbe{
				{"frontend -> db Service:6379/TCP", "11", "10.244.1.11", seedServiceIP, "tcp", 6379, true},
				{"backend -> db Service:6379/TCP", "12", "10.244.1.12", seedServiceIP, "tcp", 6379, false},
				{"db -> db Service:6379/TCP (hairpin)", "10", "10.244.1.10", seedServiceIP, "tcp", 6379, true},
			})
		})
	}
	// Without the annotation, v1.6 policies have no effect: all open.
	t.Run("v1.6 without annotation", func(t *testing.T) {
		var open []seedProbe
		for _, p := range seedProbes {
			p.allowed = true
			open = append(open, p)
		}
		check(t, compileSeed(t, "v1.6", seedFiles[1:]...), open)
	})
}
