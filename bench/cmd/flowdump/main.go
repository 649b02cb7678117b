// Command flowdump prints what the compiler makes of a synthetic cluster:
// the digest and size of one node's flow set, then of the flow set after
// each event of the benchmark script. Two versions of the compiler that
// print the same lines produce the same flows; use it to check that an
// optimization changed nothing:
//
//	go run ./bench/cmd/flowdump -scale S1 -events 50 > after.txt
//
// -flows FILE also writes the initial flow set as ovs-ofctl text (with
// Services: the "ovs-ofctl bundle" text of groups and flows). At S1+Services
// the script also has the Service events, and every line also gives the
// groups' count and digest.
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
	scale := flag.String("scale", "S1", "S1, S2 or S1+Services")
	seed := flag.Uint64("seed", synth.DefaultSeed, "generator seed")
	events := flag.Int("events", 20, "events of each kind to replay")
	flowsFile := flag.String("flows", "", "write the initial flow set here")
	flag.Parse()
	var s synth.Scale
	switch *scale {
	case "S1":
		s = synth.S1
	case "S2":
		s = synth.S2
	case "S1+Services", "S1Services":
		s = synth.S1Services
	default:
		fmt.Fprintln(os.Stderr, "flowdump: -scale: S1, S2 or S1+Services")
		os.Exit(2)
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
	kinds := bench.EventKinds
	if s.Services > 0 {
		kinds = append(kinds[:len(kinds):len(kinds)], bench.ServiceEventKinds...)
	}
	script := bench.NewScriptOf(c, bench.BenchNode, events, 2, kinds)
	maps.Copy(cfg.Bindings, script.LocalBindings)
	t0 := time.Now()
	in := compiler.NewIncremental(m, cfg)
	if _, err := in.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "compiled %d flows in %v\n", in.Len(), time.Since(t0))
	text := openflow.Text(in.Flows())
	if flowsFile != "" {
		out := text
		if s.Services > 0 {
			out = (&compiler.Result{Flows: in.Flows(), Groups: in.Groups()}).Text(false)
		}
		if err := os.WriteFile(flowsFile, []byte(out), 0o644); err != nil {
			return err
		}
	}
	groups := func() string {
		if s.Services == 0 {
			return ""
		}
		h := sha256.New()
		for _, g := range in.Groups() {
			fmt.Fprintln(h, g.String())
		}
		return fmt.Sprintf(", %d groups %x", len(in.Groups()), h.Sum(nil))
	}
	fmt.Printf("initial %d %x%s\n", in.Len(), sha256.Sum256([]byte(text)), groups())
	for i, ev := range script.Events {
		if err := bench.ApplySetup(in, ev); err != nil {
			return err
		}
		if _, err := in.Flush(); err != nil {
			return err
		}
		if err := bench.ApplyEvent(in, ev); err != nil {
			return err
		}
		changed, err := in.Flush()
		if err != nil {
			return err
		}
		fmt.Printf("%d %s: %d flows, %d changed keys reported, %x%s\n", i, ev, in.Len(), len(changed), sha256.Sum256([]byte(openflow.Text(in.Flows()))), groups())
	}
	return nil
}
