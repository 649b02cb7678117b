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
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

type explainOptions struct {
	node      nodeOptions
	files     []string
	isolation string
	from, to  string
	port      int32
	protocol  string
	trace     string
	timeout   time.Duration
}

func explainCmd() *cobra.Command {
	var o explainOptions
	cmd := &cobra.Command{
		Use:   "explain --from NS/POD|IP --to NS/POD|IP|IP:PORT [--port 80] [--protocol TCP]",
		Short: "Say whether a new connection is allowed, by which policy rules, and what the bridge does with it",
		Long: `Decides a new connection from --from to --to on --protocol/--port with the
reference evaluator (the NetworkPolicy semantics, written without regard for
flows) and prints, for the source's egress and the destination's ingress,
the rule that allows it (policy and rule index), "not isolated", or, when
it is denied, the policies (or the namespace's legacy DefaultDeny
annotation) that isolate the pod.

Endpoints are NAMESPACE/POD (a name without a namespace takes -n, the
kubeconfig context's namespace, else default; a host-network pod is its
node) or an IP address: a pod's, a
node's (a Node InternalIP or the agent's --node-ip: traffic from the
destination pod's own node is always allowed), a Service's cluster IP (--to
only; --to CLUSTER-IP:PORT names the port too), or any other address
(outside the cluster). Through a Service the connection is decided for
every backend the Service would pick for the client (ready endpoints,
kube-proxy's choice; internalTrafficPolicy Local on the client's node),
since policy sees the backend's address and target port; the trace shows
the backend the bridge's load balancer picked for the traced packet. A Service port without endpoints is decided as the source's egress
toward the cluster IP (kube-proxy rejects it on the host).

The cluster comes from the live API server (--kubeconfig, --context), or,
with -f, from manifest files read exactly as "ovs-netpol compile" reads
them (same validation, --isolation). Live, the isolation mode is the
agent's (read from the bridge) when the bridge is reachable.

On a node (the bridge in --ovs-rundir is reachable, or --trace=always) and
when the source or the destination pod is attached to this node's bridge,
the same packet is also traced through the live flows with ofproto/trace:
from the source pod's port with its MAC and address when it is here, else
as the pipeline receives it (from the uplink for another node's pod, from
the gateway port for the node and outside addresses). Every traversed flow
is printed with its origin (pod, node, pipeline, policy rule and
conjunction, Service); an isolation drop also names what isolates the pod.
This node decides both sides when both pods are here, else only its own
pod's side (egress of a local source, ingress of a local destination).
When the bridge does not do what the model says (dropped instead of
delivered, delivered when denied, or delivered to the wrong port) both
verdicts are printed and the exit status is 1. Otherwise the exit status
is 0 whatever the verdict.

With -f the model comes from the files, so a trace is made only with
--trace=always (it compares the files with the live bridge).

` + nodeFlagsHelp,
		Example: `  ovs-netpol explain --from default/frontend --to default/db --port 6379
  ovs-netpol explain --from 10.244.2.20 --to default/db --port 6379 -o json
  ovs-netpol explain -f manifests/ --from default/frontend --to 10.96.0.10:6379`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			if ap, err := netip.ParseAddrPort(o.to); err == nil {
				// --to CLUSTER-IP:PORT (or any IP:PORT) names the port too.
				if cmd.Flags().Changed("port") && int32(ap.Port()) != o.port {
					return fmt.Errorf("--to %s and --port %d name different ports", o.to, o.port)
				}
				o.to, o.port = ap.Addr().String(), int32(ap.Port())
			}
			return runExplain(ctx, o, cmd.Flags().Changed("ovs-rundir"), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	addNodeFlags(cmd, &o.node)
	f.StringArrayVarP(&o.files, "filename", "f", nil, "manifest file or directory (repeatable; - for stdin): decide offline from these instead of the live cluster")
	f.StringVar(&o.isolation, "isolation", "v1", "policy semantics with -f (or when the bridge is not reachable): v1 or v1.6")
	f.StringVar(&o.from, "from", "", "source: NAMESPACE/POD or an IP address (required)")
	f.StringVar(&o.to, "to", "", "destination: NAMESPACE/POD, an IP address or IP:PORT (e.g. a Service's cluster IP and port) (required)")
	f.Int32Var(&o.port, "port", 80, "destination port (of the Service, when --to is a cluster IP)")
	f.StringVar(&o.protocol, "protocol", "TCP", "TCP, UDP or SCTP")
	f.StringVar(&o.trace, "trace", "auto", "trace on this node's bridge: auto (when reachable, not with -f), always, never")
	f.DurationVar(&o.timeout, "timeout", time.Minute, "give up after this long")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// endpointArg qualifies a pod name without a namespace; addresses stay.
func endpointArg(s string) string {
	if _, err := netip.ParseAddr(s); err == nil {
		return s
	}
	return qualify(s)
}

// loadModel reads the cluster from files (as compile does) or the API
// server. mode is the isolation mode to decide in.
func loadModel(ctx context.Context, files []string, mode model.Mode) (*manifest.Objects, *inspect.Explainer, []string, error) {
	var objs *manifest.Objects
	var err error
	if len(files) > 0 {
		if objs, err = manifest.Load(files); err != nil {
			return nil, nil, nil, err
		}
	} else {
		client, err := kubeClient()
		if err != nil {
			return nil, nil, nil, err
		}
		if objs, err = inspect.LoadCluster(ctx, client); err != nil {
			return nil, nil, nil, err
		}
	}
	e, warnings, err := inspect.NewExplainer(objs, mode)
	if err != nil {
		return nil, nil, nil, err
	}
	return objs, e, append(objs.Warnings, warnings...), nil
}

func runExplain(ctx context.Context, o explainOptions, rundirGiven bool, stdout, stderr io.Writer) error {
	if err := o.node.checkOutput(); err != nil {
		return err
	}
	proto, err := model.ParseProtocol(o.protocol)
	if err != nil {
		return fmt.Errorf("--protocol: %w", err)
	}
	if o.port < 1 || o.port > 65535 {
		return fmt.Errorf("--port %d: want 1-65535", o.port)
	}
	mode, err := model.ParseMode(o.isolation)
	if err != nil {
		return fmt.Errorf("--isolation: %w", err)
	}
	switch o.trace {
	case "auto", "always", "never":
	default:
		return fmt.Errorf("--trace %s: want auto, always or never", printable.String(o.trace))
	}
	wantTrace := o.trace == "always" || o.trace == "auto" && len(o.files) == 0
	// The agent's settings first: its isolation mode decides live.
	var ac *inspect.AgentConfig
	var bridgeErr error
	if wantTrace {
		a, err := o.node.bridge().AgentConfig(ctx)
		switch {
		case err == nil:
			ac = &a
			if len(o.files) == 0 {
				mode = a.Mode
			}
		case o.trace == "always" || rundirGiven:
			return fmt.Errorf("tracing on this node: %w", err)
		default:
			bridgeErr = err
		}
	}
	objs, e, warnings, err := loadModel(ctx, o.files, mode)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if ac != nil {
		e.AddNodeIPs(ac.Node, ac.NodeIPs)
	}
	x, err := e.Explain(endpointArg(o.from), endpointArg(o.to), proto, o.port)
	if err != nil {
		return err
	}
	if ac != nil {
		v, err := inspect.OpenNodeView(ctx, o.node.bridge(), objs)
		if err != nil {
			return err
		}
		if err := e.TraceOn(ctx, v, x); err != nil {
			return err
		}
	} else if bridgeErr != nil {
		x.Notes = append(x.Notes, "no trace: the bridge is not reachable here ("+bridgeErr.Error()+")")
	}
	if o.node.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(x); err != nil {
			return err
		}
	} else if err := inspect.WriteExplanation(stdout, x); err != nil {
		return err
	}
	if x.Mismatch != "" {
		return fmt.Errorf("the model and the bridge disagree: %s", x.Mismatch)
	}
	return nil
}
