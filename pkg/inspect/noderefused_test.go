package inspect

import (
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// TestCompileNodeLeavesOutConflictingNodes: a Node whose pod CIDR or
// InternalIP another node holds is left out of an overlay node's compile,
// with a warning, as the agent refuses it (pkg/controller, model.RefusedNodes):
// flows/explain/verify must judge the flows the agent installs.
func TestCompileNodeLeavesOutConflictingNodes(t *testing.T) {
	nodes := `
apiVersion: v1
kind: Node
metadata: {name: node-1, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {podCIDR: 10.91.1.0/24, podCIDRs: [10.91.1.0/24]}
status: {addresses: [{type: InternalIP, address: 172.29.1.2}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2, creationTimestamp: "2026-01-01T00:01:00Z"}
spec: {podCIDR: 10.91.2.0/24, podCIDRs: [10.91.2.0/24]}
status: {addresses: [{type: InternalIP, address: 172.29.2.2}]}
---
`
	tests := []struct {
		name, node, warning string
	}{
		{"another node's pod CIDR", `
apiVersion: v1
kind: Node
metadata: {name: evil, creationTimestamp: "2026-01-01T00:02:00Z"}
spec: {podCIDR: 10.91.2.0/24, podCIDRs: [10.91.2.0/24]}
status: {addresses: [{type: InternalIP, address: 172.29.9.2}]}
`, "its 10.91.2.0/24 overlaps 10.91.2.0/24 of node node-2"},
		{"an InternalIP in another node's pod CIDR", `
apiVersion: v1
kind: Node
metadata: {name: evil, creationTimestamp: "2026-01-01T00:02:00Z"}
spec: {podCIDR: 10.91.9.0/24, podCIDRs: [10.91.9.0/24]}
status: {addresses: [{type: InternalIP, address: 172.29.9.2}, {type: InternalIP, address: 10.91.2.20}]}
`, "its 10.91.2.20/32 overlaps 10.91.2.0/24 of node node-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := manifest.Parse("cluster.yaml", []byte(nodes+tt.node))
			if err != nil {
				t.Fatal(err)
			}
			ac := AgentConfig{Node: "node-1", Mode: model.ModeV1, GatewayPort: compiler.PortLocal,
				TunnelPort: 4096, GatewayMAC: "0a:58:0a:5b:01:01"}
			n, err := CompileNode(objs, ac, nil)
			if err != nil {
				t.Fatal(err)
			}
			has := func(name string) bool {
				for _, f := range n.Result.Flows {
					if f.Cookie == compiler.NodeCookie(name) {
						return true
					}
				}
				return false
			}
			if !has("node-2") || has("evil") {
				t.Errorf("tunnel flows: node-2 %v (want true), evil %v (want false)", has("node-2"), has("evil"))
			}
			if w := strings.Join(n.Warnings, "\n"); !strings.Contains(w, "node evil: "+tt.warning) {
				t.Errorf("warnings %q, want one with %q", w, tt.warning)
			}
		})
	}
}
