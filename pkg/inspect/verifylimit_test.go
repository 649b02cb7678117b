package inspect

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// The agent's --verify-max-traces exists so that a periodic verify on a big
// cluster does not blow up: the refusal must come before the run's
// per-connection state is allocated, not after.
func TestVerifyRefusesBeforeAllocatingJobs(t *testing.T) {
	const remote, local = 2000, 16
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata: {name: big}\n")
	for i := range remote + local {
		node := "node-2"
		if i < local {
			node = "node-1"
		}
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p%d, namespace: big, uid: uid-%d}\n"+
			"spec: {nodeName: %s, containers: [{name: c, image: i}]}\nstatus: {phase: Running, podIP: 10.1.%d.%d}\n",
			i, i, node, i/250, i%250+1)
	}
	e, _, err := NewExplainer(manifestObjects(t, b.String()), model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(i byte) net.HardwareAddr { return net.HardwareAddr{0x0a, 0x58, 0, 0, 0, i} }
	v := &NodeView{Config: AgentConfig{Node: "node-1", Mode: model.ModeV1, GatewayPort: 2}, Bindings: map[string]compiler.Binding{}}
	for i := range local {
		v.Bindings[fmt.Sprintf("big/p%d", i)] = compiler.Binding{OFPort: uint32(10 + i), MAC: mac(byte(i + 1))}
	}
	// Ordered pairs of the n peers (pods and the outside) with a local end
	// (n(n-1) less the (n-local)(n-local-1) without one), on the
	// unmentioned port for TCP and UDP.
	n := remote + local + 1
	want := (n*(n-1) - (n-local)*(n-local-1)) * 2
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = e.Verify(context.Background(), v, VerifyOptions{MaxTraces: 10})
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("would trace %d connections", want)) {
		t.Fatalf("error %v, want a refusal of %d connections", err, want)
	}
	perTrace := float64(after.TotalAlloc-before.TotalAlloc) / float64(want)
	t.Logf("refusing %d connections allocated %d bytes (%.1f per connection)", want, after.TotalAlloc-before.TotalAlloc, perTrace)
	// The peers themselves cost some memory (a few hundred bytes each, for
	// 2017 peers); a job per connection costs hundreds of bytes each.
	if perTrace > 64 {
		t.Fatalf("refusing allocated %.1f bytes per connection it would trace: the jobs were built first", perTrace)
	}
}
