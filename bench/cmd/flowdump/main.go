// Command flowdump prints what the compiler makes of a synthetic cluster:
// the digest and size of one node's flow set, then of the flow set after
// each event of the benchmark script. Two versions of the compiler that
// print the same lines produce the same flows; use it to check that an
// optimization changed nothing:
//
//	go run ./bench/cmd/flowdump -scale S1 -events 50 > after.txt
//
// -flows FILE also writes the initial flow set as ovs-ofctl text.
package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"maps"
	"os"
	"time"

	"github.com/ovs-netpol/ovs-netpol/bench"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
	"github.com/ovs-netpol/ovs-netpol/pkg/synth"
)

func main() {
	scale := flag.String("scale", "S1", "S1 or S2")
	seed := flag.Uint64("seed", synth.DefaultSeed, "generator seed")
	events := flag.Int("events", 20, "events of each kind to replay")
	flowsFile := flag.String("flows", "", "write the initial flow set here")
	flag.Parse()
	s := synth.S1
	if *scale == "S2" {
		s = synth.S2
	}
	if err := run(s, *seed, *events, *flowsFile); err != nil {
		fmt.Fprintln(os.Stderr, "flowdump:", err)
		os.Exit(1)
	}
}

func run(s synth.Scale, seed uint64, events int, flowsFile string) error {
	c := synth.Generate(s, seed)
	m, err := c.Model()
	if err != nil {
		return err
	}
	cfg := bench.NodeConfig(m)
	script := bench.NewScript(c, bench.BenchNode, events, 2)
	maps.Copy(cfg.Bindings, script.LocalBindings)
	t0 := time.Now()
	in := compiler.NewIncremental(m, cfg)
	if _, err := in.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "compiled %d flows in %v\n", in.Len(), time.Since(t0))
	text := openflow.Text(in.Flows())
	if flowsFile != "" {
		if err := os.WriteFile(flowsFile, []byte(text), 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("initial %d %x\n", in.Len(), sha256.Sum256([]byte(text)))
	for i, ev := range script.Events {
		if err := bench.ApplyEvent(in, ev); err != nil {
			return err
		}
		changed, err := in.Flush()
		if err != nil {
			return err
		}
		fmt.Printf("%d %s: %d flows, %d changed keys reported, %x\n", i, ev, in.Len(), len(changed), sha256.Sum256([]byte(openflow.Text(in.Flows()))))
	}
	return nil
}
