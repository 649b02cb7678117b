package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/ovs-netpol/ovs-netpol/pkg/inspect"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

type verifyOptions struct {
	node     nodeOptions
	external []string
	pods     []string
	max      int
	workers  int
	timeout  time.Duration
}

func verifyCmd() *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check every connection of this node's pods: the model against the live bridge",
		Long: `For every pod attached to this node's bridge, traces every new connection
to and from every peer — every pod of the cluster, this node (its first
address the agent knows, per family) and an outside address (--external-ip,
default 203.0.113.77 and 2001:db8::77) — on every port the cluster's
policies name (both ends of a port range and the ports just outside it;
named ports resolved through the pods' container ports) plus one port no
policy names, for TCP and UDP, in each address family both ends have
(dual-stack pairs twice: the bridge has flows per family), through the
live flows (ofproto/trace), and compares each with the reference
evaluator's verdict for the part this node decides: both sides
between two pods of this node, the local pod's egress toward others, its
ingress from them (the other side is another node's to check). A
connection allowed by the model must be delivered to the destination's
port (the uplink for another node's pod when the agent has one, else the
gateway); a denied one must be dropped.

It also traces, from every local pod, a new connection to every Service
port with a cluster IP (TCP and UDP; in each family the pod and the
Service share), as clients reach Services. The bridge's select group picks
one backend by hash, so such a connection is judged by the model's verdict
for the backend the trace reached (read from the trace's ct(nat)): it must
be delivered to that backend's port (to the uplink or gateway for a
backend on another node, where this node decides the egress side only),
or dropped when the model denies that backend. A Service port without
endpoints goes on to the host (kube-proxy rejects it): the pod's egress
toward the cluster IP decides; internalTrafficPolicy Local without a local
endpoint must be dropped. Headless and ExternalName Services have no
cluster IP and are not checked.

It prints a legend of the endpoints, then one matrix per protocol/port
(IPv6 ones marked "IPv6"; rows: from, columns: to; "." allowed and delivered, "X" denied and
dropped, "!" the bridge disagrees with the model, blank: not decided on
this node), then one matrix per family with the Service ports as columns
(lettered as in their legend; the mark is the verdict for the backend the
bridge picked), then every mismatch with both verdicts, the traced packet and
the last flow it went through (with its origin). The exit status is 1 when
there is any mismatch: a flow deleted or changed by hand, a stale or
missing flow, an agent that has not caught up with the cluster yet (run it
again), or a bug.

The cluster is the live one (--kubeconfig, --context); the isolation mode,
ports and node addresses are the agent's (read from the bridge). Its cost
is one trace per cell, about 0.2-0.5 ms each (measured: 26,000 to 33,000
connections of 16 local and 48 other pods in 5-10 s), plus one per local
pod, Service port and family; --pod narrows the check to some pods,
--max-traces (which counts the Service connections too) refuses a run
bigger than a limit.

` + nodeFlagsHelp,
		Example: `  ovs-netpol verify
  ovs-netpol verify --ovs-rundir /run/openvswitch -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			return runVerify(ctx, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	addNodeFlags(cmd, &o.node)
	f := cmd.Flags()
	f.StringArrayVar(&o.external, "external-ip", nil, "outside address to probe with (repeatable, one per family; default 203.0.113.77, 2001:db8::77)")
	f.StringArrayVar(&o.pods, "pod", nil, "check only this local pod's connections, NAMESPACE/NAME or NAME with -n (repeatable)")
	f.IntVar(&o.max, "max-traces", 0, "refuse to run when more connections than this would be traced (0: no limit)")
	f.IntVar(&o.workers, "parallel", 4, "traces run at once")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up after this long")
	return cmd
}

func runVerify(ctx context.Context, o verifyOptions, stdout, stderr io.Writer) error {
	if err := o.node.checkOutput(); err != nil {
		return err
	}
	if o.workers < 1 || o.workers > 64 {
		return fmt.Errorf("--parallel %d: want 1-64", o.workers)
	}
	var ext []netip.Addr
	for _, s := range o.external {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			return fmt.Errorf("--external-ip %s: not an IP address", printable.String(s))
		}
		ext = append(ext, ip.Unmap())
	}
	var pods []string
	for _, p := range o.pods {
		pods = append(pods, qualify(p))
	}
	if o.max < 0 {
		return fmt.Errorf("--max-traces %d: want 0 (no limit) or more", o.max)
	}
	res, err := verifyNode(ctx, o.node.bridge(), inspect.VerifyOptions{ExternalIPs: ext, Workers: o.workers, Pods: pods, MaxTraces: o.max}, stderr)
	if err != nil {
		return err
	}
	if o.node.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		if _, err := io.WriteString(stdout, res.Matrix()+"\n"+res.Summary()); err != nil {
			return err
		}
	}
	if n := len(res.Mismatches) + len(res.ServiceMismatches); n > 0 {
		return fmt.Errorf("%d connection(s) where the bridge disagrees with the model", n)
	}
	return nil
}

// verifyNode loads the live cluster in the agent's isolation mode and the
// bridge's view, and verifies.
func verifyNode(ctx context.Context, b inspect.Bridge, opts inspect.VerifyOptions, stderr io.Writer) (*inspect.VerifyResult, error) {
	ac, err := b.AgentConfig(ctx)
	if err != nil {
		return nil, err
	}
	objs, e, warnings, err := loadModel(ctx, nil, ac.Mode)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	v, err := inspect.OpenNodeView(ctx, b, objs)
	if err != nil {
		return nil, err
	}
	return e.Verify(ctx, v, opts)
}
