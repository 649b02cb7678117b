package manifest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

func TestClusterNodes(t *testing.T) {
	node := func(name, cidrs string) string {
		return fmt.Sprintf(`---
apiVersion: v1
kind: Node
metadata: {name: %s}
spec: %s
status: {addresses: [{type: InternalIP, address: 172.29.1.2}]}
`, name, cidrs)
	}
	for _, tc := range []struct {
		name, doc, want, wantErr string
	}{
		{"valid", node("n1", `{podCIDR: 10.91.1.0/24, podCIDRs: [10.91.1.0/24]}`), "n1 [172.29.1.2] [10.91.1.0/24]", ""},
		{"no podCIDR", node("n1", `{}`), "n1 [172.29.1.2] []", ""},
		{"host bits", node("n1", `{podCIDR: 10.91.1.1/24}`), "", "nodes.yaml: document 1 (Node n1): node n1: spec.podCIDRs[0]: 10.91.1.1/24 has host bits set"},
		{"twice", node("n1", `{}`) + node("n1", `{}`), "", "defined twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := Parse("nodes.yaml", []byte(tc.doc))
			var c *model.Cluster
			if err == nil {
				c, _, err = o.Cluster(model.ModeV1)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n := c.Nodes["n1"]
			if n == nil || fmt.Sprint(n.Name, " ", n.InternalIPs, " ", n.PodCIDRs) != tc.want {
				t.Errorf("node %+v, want %s", n, tc.want)
			}
		})
	}
}
