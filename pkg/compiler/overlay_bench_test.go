package compiler_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
	"github.com/ovs-netpol/ovs-netpol/pkg/synth"
)

// s1Overlay is scale S1 (10,000 pods on 100 nodes, 1,000 policies) with a
// Node per node: node n owns pod CIDR 10.n.0.0/16 (synth's address plan)
// and InternalIP 172.18.0.(n+1). It returns the model and the flow
// configuration of node-000 without overlay or uplink.
func s1Overlay(b *testing.B) (*model.Cluster, compiler.Config) {
	b.Helper()
	m, err := synth.Generate(synth.S1, synth.DefaultSeed).Model()
	if err != nil {
		b.Fatal(err)
	}
	for n := range synth.S1.Nodes {
		m.AddNode(s1Node(n))
	}
	local := synth.NodeName(0)
	cfg := compiler.Config{Node: local, NodeIPs: []netip.Addr{s1Node(0).InternalIPs[0]}}
	cfg.Bindings = compiler.DefaultBindings(m, local, nil, 9, 4096)
	return m, cfg
}

func s1Node(n int) *model.Node {
	return &model.Node{Name: synth.NodeName(n),
		InternalIPs: []netip.Addr{netip.AddrFrom4([4]byte{172, 18, 0, byte(n + 1)})},
		PodCIDRs:    []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n), 0, 0}), 16)}}
}

func s1Gateway() net.HardwareAddr { return model.GatewayMAC(s1Node(0)) }

// BenchmarkOverlayFlowsS1 compiles node-000 of S1 in the flat-L2 uplink
// mode (a flow per remote pod address, and one for its ARP) and with the
// Geneve overlay (flows per remote node): flows is the node's whole flow
// set; remote-flows those of origins the node has only in that mode (remote
// pods' or remote nodes' cookies), per remote node too; port-flows the
// other flows the mode adds (accepting the uplink, and dropping local pods'
// addresses from the uplink or tunnel as spoofed).
func BenchmarkOverlayFlowsS1(b *testing.B) {
	m, cfg := s1Overlay(b)
	base, err := compiler.Compile(m, cfg)
	if err != nil {
		b.Fatal(err)
	}
	modes := []struct {
		name string
		set  func(*compiler.Config)
	}{
		{"uplink", func(c *compiler.Config) { c.UplinkPort = 9 }},
		{"overlay", func(c *compiler.Config) {
			c.Overlay = compiler.Overlay{TunnelPort: 4096, GatewayMAC: s1Gateway()}
		}},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			c := cfg
			mode.set(&c)
			var res *compiler.Result
			for b.Loop() {
				r, err := compiler.Compile(m, c)
				if err != nil {
					b.Fatal(err)
				}
				res = r
			}
			known := map[openflow.Cookie]bool{}
			for _, f := range base.Flows {
				known[f.Cookie] = true
			}
			remote := 0
			for _, f := range res.Flows {
				if !known[f.Cookie] {
					remote++
				}
			}
			b.ReportMetric(float64(len(res.Flows)), "flows")
			b.ReportMetric(float64(remote), "remote-flows")
			b.ReportMetric(float64(remote)/float64(synth.S1.Nodes-1), "remote-flows/node")
			b.ReportMetric(float64(len(res.Flows)-len(base.Flows)-remote), "port-flows")
		})
	}
}

// BenchmarkOverlayNodeAddRemoveS1: the cost of one remote node's removal
// and its return on node-000's incremental compiler at S1 with the overlay
// (each op is one DeleteNode+Flush and one SetNode+Flush): remove-ns and
// add-ns per event, and the flows each changed.
func BenchmarkOverlayNodeAddRemoveS1(b *testing.B) {
	m, cfg := s1Overlay(b)
	cfg.Overlay = compiler.Overlay{TunnelPort: 4096, GatewayMAC: s1Gateway()}
	inc := compiler.NewIncremental(m, cfg)
	if _, err := inc.Flush(); err != nil {
		b.Fatal(err)
	}
	node := s1Node(50)
	var add, remove time.Duration
	var added, removed int
	for b.Loop() {
		t0 := time.Now()
		inc.DeleteNode(node.Name)
		ch, err := inc.Flush()
		remove += time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		removed = len(ch)
		t0 = time.Now()
		inc.SetNode(node)
		ch, err = inc.Flush()
		add += time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		added = len(ch)
	}
	b.ReportMetric(float64(remove.Nanoseconds())/float64(b.N), "remove-ns")
	b.ReportMetric(float64(add.Nanoseconds())/float64(b.N), "add-ns")
	b.ReportMetric(float64(removed), "remove-flows-changed")
	b.ReportMetric(float64(added), "add-flows-changed")
	b.ReportMetric(float64(inc.Len()), "flows")
}
