package inspect

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// dualStack is a dual-stack pod (IPv4 listed first, as kubelet does) and
// an IPv6-only one.
const dualStack = `
apiVersion: v1
kind: Namespace
metadata: {name: ds}
---
apiVersion: v1
kind: Pod
metadata: {name: dual, namespace: ds, uid: uid-dual, labels: {app: dual}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.50, podIPs: [{ip: 10.244.1.50}, {ip: "fd00:10:244:1::50"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: six, namespace: ds, uid: uid-six, labels: {app: six}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: "fd00:10:244:1::51", podIPs: [{ip: "fd00:10:244:1::51"}]}
`

func dualStackExplainer(t *testing.T) *Explainer {
	t.Helper()
	e, _, err := NewExplainer(manifestObjects(t, dualStack), model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// A dual-stack pod reaches IPv6 peers with its IPv6 address, whichever of
// its addresses is listed first.
func TestExplainDualStackSourceToIPv6(t *testing.T) {
	e := dualStackExplainer(t)
	cases := []struct{ name, from, to, wantFrom, wantTo string }{
		{"to an IPv6-only pod", "ds/dual", "ds/six", "fd00:10:244:1::50", "fd00:10:244:1::51"},
		{"to an IPv6 external address", "ds/dual", "2001:db8::9", "fd00:10:244:1::50", "2001:db8::9"},
		{"from an IPv6-only pod", "ds/six", "ds/dual", "fd00:10:244:1::51", "fd00:10:244:1::50"},
		{"to an IPv4 external address", "ds/dual", "203.0.113.9", "10.244.1.50", "203.0.113.9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x, err := e.Explain(c.from, c.to, model.TCP, 80)
			if err != nil {
				t.Fatal(err)
			}
			if x.From.IP.String() != c.wantFrom || x.To.IP.String() != c.wantTo {
				t.Fatalf("explained %s -> %s, want %s -> %s", x.From.IP, x.To.IP, c.wantFrom, c.wantTo)
			}
		})
	}
}

// manifestObjects loads the objects of a manifest text, as from a file.
func manifestObjects(t *testing.T, text string) *manifest.Objects {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "objects.yaml"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, err := manifest.Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
