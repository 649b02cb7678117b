package manifest_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
)

// FuzzParse decodes arbitrary bytes as a manifest file (YAML, or JSON when
// it starts with "{"), normalizes what loads in both isolation modes and
// compiles it for every node a pod runs on (at most 3) and for a node with
// no pod, as `ovs-netpol compile` does. Nothing may panic, and the text
// compile prints must be only what ovs-ofctl is meant to read: '#' comment
// lines, "group add" lines (one per group) and "flow add" lines (one per
// flow). A name holding a line break that reached the output raw would
// start a line of the input's choosing (the injection of issue 10).
//
// The seed corpus is testdata/fuzz/FuzzParse (the examples and the hostile
// inputs of issue 10) plus a 5 MB label value added here (plain `go test`
// only), to keep the committed files small.
//
//	go test ./pkg/manifest -run '^$' -fuzz '^FuzzParse$' -fuzztime 60s
func FuzzParse(f *testing.F) {
	examples, err := filepath.Glob("../../examples/seed/*.yaml")
	if err != nil || len(examples) == 0 {
		f.Fatalf("no example manifests: %v", err)
	}
	var all []string
	for _, p := range examples {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		all = append(all, string(b))
	}
	f.Add([]byte(strings.Join(all, "\n---\n")))
	// Only as a seed of plain `go test`: one run of it takes over a second,
	// so mutations of it would slow the fuzzing workers down.
	if fl := flag.Lookup("test.fuzz"); fl == nil || fl.Value.String() == "" {
		f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\n  labels:\n    app: " + strings.Repeat("v", 5<<20) +
			"\nspec:\n  nodeName: node-1\n  containers: [{name: c, image: i}]\nstatus:\n  podIP: 10.0.0.1\n"))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := manifest.Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		for _, mode := range []model.Mode{model.ModeV1, model.ModeV16} {
			c, _, err := objs.Cluster(mode)
			if err != nil {
				continue
			}
			for _, node := range fuzzNodes(c) {
				text, res, err := compileLikeCLI(objs, c, node)
				if err != nil {
					continue
				}
				if msg := checkCompileText(text, len(res.Flows), len(res.Groups)); msg != "" {
					t.Fatalf("mode %s, node %q: %s", mode, node, msg)
				}
			}
		}
	})
}

// fuzzNodes are the nodes pods run on (sorted, at most 3) and one without
// pods.
func fuzzNodes(c *model.Cluster) []string {
	seen := map[string]bool{}
	for _, p := range c.Pods {
		seen[p.Node] = true
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	if len(out) > 3 {
		out = out[:3]
	}
	return append(out, "fuzz-empty-node")
}

// compileLikeCLI compiles node's flows as runCompile does (its Node
// object's addresses, default bindings, comments on).
func compileLikeCLI(objs *manifest.Objects, c *model.Cluster, node string) (string, *compiler.Result, error) {
	cfg, err := compiler.NodeFlags{Node: node, CTZone: compiler.DefaultCTZone, GatewayPort: "LOCAL", UplinkPort: "100"}.Config()
	if err != nil {
		return "", nil, err
	}
	for _, n := range objs.Nodes {
		if n.Name == node {
			ips, err := normalize.NodeInternalIPs(n)
			if err != nil {
				return "", nil, err
			}
			cfg.NodeIPs = append(cfg.NodeIPs, ips...)
		}
	}
	cfg.Bindings = compiler.DefaultBindings(c, node, nil, cfg.GatewayPort, cfg.UplinkPort)
	res, err := compiler.Compile(c, cfg)
	if err != nil {
		return "", nil, err
	}
	return res.Text(true), res, nil
}

// checkCompileText returns what is wrong with compile's output, "" when
// every line is a comment, a group or a flow, with as many group and flow
// lines as the result has groups and flows.
func checkCompileText(text string, flows, groups int) string {
	if text != "" && !strings.HasSuffix(text, "\n") {
		return "output does not end with a line break"
	}
	nf, ng := 0, 0
	for i, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if text == "" {
			break
		}
		switch {
		case strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "flow add "):
			nf++
		case strings.HasPrefix(l, "group add "):
			ng++
		default:
			return fmt.Sprintf("line %d is neither a comment, a group nor a flow: %q", i+1, l)
		}
		if strings.ContainsRune(l, '\r') {
			return fmt.Sprintf("line %d holds a carriage return: %q", i+1, l)
		}
	}
	if nf != flows || ng != groups {
		return fmt.Sprintf("%d flow lines and %d group lines for %d flows and %d groups", nf, ng, flows, groups)
	}
	return ""
}

// TestCheckCompileText: the fuzz property rejects what an injection
// produces and accepts compile's own output.
func TestCheckCompileText(t *testing.T) {
	for _, c := range []struct {
		name          string
		text          string
		flows, groups int
		ok            bool
	}{
		{"empty", "", 0, 0, true},
		{"comment, group and flow", "# cookie 0x1: pod a\ngroup add group_id=1,type=select\nflow add table=0,actions=drop\n", 1, 1, true},
		{"injected flow line in a comment", "# cookie 0x1: pod a\ntable=0,priority=65535,actions=NORMAL\n#\nflow add table=0,actions=drop\n", 1, 0, false},
		{"injected flow add line", "# pod a\nflow add table=0,priority=65535,actions=NORMAL\nflow add table=0,actions=drop\n", 1, 0, false},
		{"no final line break", "flow add table=0,actions=drop", 1, 0, false},
		{"carriage return", "# pod a\rflow add x\nflow add table=0,actions=drop\n", 1, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			msg := checkCompileText(c.text, c.flows, c.groups)
			if (msg == "") != c.ok {
				t.Errorf("checkCompileText = %q, want ok=%v", msg, c.ok)
			}
		})
	}
}
