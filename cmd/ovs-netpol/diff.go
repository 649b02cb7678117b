package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/inspect"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

type diffOptions struct {
	files      []string
	deletes    []string
	node       string
	bridgeName string
	runDir     string
	ovsdb      string
	isolation  string
	external   []string
	output     string
	timeout    time.Duration
}

func diffCmd() *cobra.Command {
	var o diffOptions
	cmd := &cobra.Command{
		Use:   "diff -f CHANGED.yaml [--delete OLD.yaml] [--node NODE] [-o text|json]",
		Short: "What applying manifests would change: connections opened or closed, and a node's flows added or removed",
		Long: `Before ` + "`kubectl apply -f CHANGED.yaml`" + `: reads the live cluster (--kubeconfig,
--context), applies the objects of the files to it in memory (the kinds
compile reads: Namespace, Pod, Node, NetworkPolicy, Service, EndpointSlice;
each replaces the live object of its kind, namespace and name or is added),
removes the objects of the --delete files (as ` + "`kubectl delete -f`" + `), and
prints what would change. The files are validated as compile validates them
(as kube-apiserver would); objects without metadata.namespace are in
"default": when -n or the kubeconfig context names another namespace,
which kubectl apply would put them in, diff refuses them (write
metadata.namespace). Of a live Pod or Node only the labels (and a Pod's
annotations) are taken from the file, as the rest is immutable or the
kubelet's; a Service without a clusterIP keeps the live one.

1. Objects: the NetworkPolicies, Namespaces, Pods, Services and
   EndpointSlices that change in what policy reads.

2. Connections that open or close: every new connection between two pods
   present in both states, from every Node's InternalIPs to the pods of
   other nodes (a pod's own node always reaches it) and from pods to them,
   and from/to each --external-ip, decided by the policy evaluator before
   and after, on every port class: the ports, ranges and named ports the
   policies of either state name, and per protocol (TCP, UDP, SCTP) the
   "other" ports no policy names. Grouped by the changed policies that
   select the side whose decision changed ("other changes" when labels of
   pods or namespaces made it).

3. Flows and groups added or removed on a node, from compiling the node
   before and after exactly as the agent does, each under its origin
   (policy rule, pod, node, Service, pipeline; conjunctions named by rule),
   in the form ` + "`ovs-ofctl --no-names dump-flows`" + ` prints them. The node: --node, else
   the node of the local bridge (--ovs-rundir/--bridge) when the agent has
   published its settings there, else every node that has pods. With the
   local bridge, the agent's settings and the pods' real ports and MACs are
   used; otherwise ports are numbered as compile numbers them (10 up, in
   namespace/name order, MAC from the IP), the gateway is LOCAL and the node
   addresses are its Node's InternalIPs, so port numbers may differ from
   the node's.

Nothing is written to the cluster or the switch. Exit status 0 whatever
changes (1 on an error).

Examples:
  ovs-netpol diff -f new-policy.yaml
  kubectl ovs-netpol diff -f team-a/ --delete old-deny.yaml --external-ip 192.0.2.10 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			bridgeExplicit := cmd.Flags().Changed("ovs-rundir") || cmd.Flags().Changed("ovsdb")
			return runDiff(ctx, o, kubeClient, bridgeExplicit, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "filename", "f", nil, "manifests to apply: file or directory (repeatable; - for stdin)")
	f.StringArrayVar(&o.deletes, "delete", nil, "manifests of objects to delete: file or directory (repeatable)")
	f.StringVar(&o.node, "node", "", "node whose flows are compared (default: the local bridge's node, else every node with pods)")
	f.StringVar(&o.bridgeName, "bridge", inspect.DefaultBridge, "the local integration bridge")
	f.StringVar(&o.runDir, "ovs-rundir", inspect.DefaultRunDir, "Open vSwitch run directory of the local bridge (used when its db.sock exists)")
	f.StringVar(&o.ovsdb, "ovsdb", "", "OVSDB endpoint (default unix:OVS-RUNDIR/db.sock)")
	f.StringVar(&o.isolation, "isolation", "v1", "policy semantics without the local bridge's agent settings: v1 or v1.6")
	f.StringArrayVar(&o.external, "external-ip", nil, "an address outside the cluster to check connections from and to (repeatable)")
	f.StringVarP(&o.output, "output", "o", "text", "text or json")
	f.DurationVar(&o.timeout, "timeout", time.Minute, "bound on reading the cluster and the bridge")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// diffReport is the -o json output.
type diffReport struct {
	Warnings    []string               `json:"warnings"`
	Objects     []inspect.ObjectChange `json:"objects"`
	Ports       []inspect.PortClass    `json:"portClasses"`
	Connections []inspect.ConnChange   `json:"connections"`
	Nodes       []nodeDiff             `json:"nodes"`
}

type nodeDiff struct {
	Node string `json:"node"`
	// Bindings: "bridge" (the local bridge's ports) or "default" (numbered
	// as compile numbers them).
	Bindings string                `json:"bindings"`
	Flows    []inspect.FlowChange  `json:"flows"`
	Groups   []inspect.GroupChange `json:"groups"`
}

// runDiff connects with newClient once the files have been read and
// checked; the bridge's errors are fatal only when bridgeExplicit.
func runDiff(ctx context.Context, o diffOptions, newClient func() (kubernetes.Interface, error), bridgeExplicit bool, stdout, stderr io.Writer) error {
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("-o %s: want text or json", printable.String(o.output))
	}
	var external []netip.Addr
	for _, s := range o.external {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			return fmt.Errorf("--external-ip %s: not an IP address", printable.String(s))
		}
		external = append(external, ip.Unmap())
	}
	apply, err := manifest.Load(o.files)
	if err != nil {
		return err
	}
	var del *manifest.Objects
	if len(o.deletes) > 0 {
		if del, err = manifest.Load(o.deletes); err != nil {
			return err
		}
	}
	rep := diffReport{Warnings: append([]string{}, apply.Warnings...)}
	if del != nil {
		rep.Warnings = append(rep.Warnings, del.Warnings...)
	}
	// kubectl apply puts objects without a namespace in -n's or the
	// context's namespace; manifest.Load already put them in "default",
	// and an explicit "default" cannot be told apart: refuse both.
	if ns := namespace(); ns != normalize.DefaultNamespace {
		for _, objs := range []*manifest.Objects{apply, del} {
			if objs == nil {
				continue
			}
			for _, obj := range objectsIn(objs) {
				if obj.ns == normalize.DefaultNamespace {
					return fmt.Errorf("%s is in namespace default while the namespace of -n or the kubeconfig context is %s, where kubectl apply would put an object written without one: write metadata.namespace", objs.Where(obj.obj), printable.String(ns))
				}
			}
		}
	}

	client, err := newClient()
	if err != nil {
		return err
	}
	live, err := inspect.LoadCluster(ctx, client)
	if err != nil {
		return err
	}
	after, warnings := inspect.Overlay(live, apply, del)
	rep.Warnings = append(rep.Warnings, warnings...)

	// The local bridge: its agent's settings and the pods' real ports.
	var (
		ac       inspect.AgentConfig
		bindings map[string]compiler.Binding
		onBridge bool
	)
	br := inspect.Bridge{Name: o.bridgeName, RunDir: o.runDir, OVSDB: o.ovsdb}
	if _, statErr := os.Stat(filepath.Join(o.runDir, "db.sock")); bridgeExplicit || statErr == nil {
		if ac, err = br.AgentConfig(ctx); err == nil {
			bindings, err = br.Bindings(ctx)
		}
		switch {
		case err != nil && bridgeExplicit:
			return err
		case err != nil:
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("local bridge not used: %v", err))
		case o.node != "" && o.node != ac.Node:
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("local bridge not used: it is node %s's, not %s's", printable.String(ac.Node), printable.String(o.node)))
		default:
			onBridge = true
		}
	}
	mode := ac.Mode
	if !onBridge {
		if mode, err = model.ParseMode(o.isolation); err != nil {
			return err
		}
	}
	beforeC, w1, err := live.Cluster(mode)
	if err != nil {
		return fmt.Errorf("the live cluster: %w", err)
	}
	afterC, w2, err := after.Cluster(mode)
	if err != nil {
		return fmt.Errorf("the cluster after the change: %w", err)
	}
	rep.Warnings = append(rep.Warnings, newWarnings(w1, w2)...)

	rep.Objects = inspect.ObjectChanges(beforeC, afterC)
	rep.Ports = inspect.PortClasses(beforeC, afterC)
	nodeIPs := map[string][]netip.Addr{}
	for _, n := range after.Nodes {
		if ips, err := normalize.NodeInternalIPs(n); err == nil && len(ips) > 0 {
			nodeIPs[n.Name] = ips
		}
	}
	rep.Connections = inspect.Connections(beforeC, afterC, inspect.ConnOptions{Nodes: nodeIPs, External: external})

	var nodes []string
	switch {
	case onBridge:
		nodes = []string{ac.Node}
	case o.node != "":
		nodes = []string{o.node}
	default:
		seen := map[string]bool{}
		for _, c := range []*model.Cluster{beforeC, afterC} {
			for _, p := range c.Pods {
				if p.Active() && p.Node != "" && !seen[p.Node] {
					seen[p.Node] = true
					nodes = append(nodes, p.Node)
				}
			}
		}
		sort.Strings(nodes)
	}
	for _, node := range nodes {
		nd := nodeDiff{Node: node, Bindings: "bridge"}
		nac, bb, ab := ac, bindings, bindings
		if !onBridge {
			nd.Bindings = "default"
			if nac, err = defaultAgentConfig(node, mode, after); err != nil {
				return err
			}
			reserved := []uint32{nac.GatewayPort}
			bb = compiler.DefaultBindings(beforeC, node, nil, reserved...)
			// Pods keep their ports; pods the change adds get free ones.
			ab = compiler.DefaultBindings(afterC, node, bb, reserved...)
		}
		bn, err := inspect.CompileNode(live, nac, bb)
		if err != nil {
			return fmt.Errorf("node %s before: %w", printable.String(node), err)
		}
		an, err := inspect.CompileNode(after, nac, ab)
		if err != nil {
			return fmt.Errorf("node %s after: %w", printable.String(node), err)
		}
		nd.Flows, nd.Groups = inspect.FlowDiff(bn, an)
		rep.Nodes = append(rep.Nodes, nd)
	}

	if o.output == "json" {
		// Lists are [] rather than null when empty, for jq and friends.
		rep.Objects = nonNil(rep.Objects)
		rep.Connections = nonNil(rep.Connections)
		for i := range rep.Nodes {
			rep.Nodes[i].Flows = nonNil(rep.Nodes[i].Flows)
			rep.Nodes[i].Groups = nonNil(rep.Nodes[i].Groups)
		}
		rep.Nodes = nonNil(rep.Nodes)
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	_, err = io.WriteString(stdout, diffText(rep))
	return err
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// newWarnings are the warnings of the state after the change that the live
// state did not already have.
func newWarnings(before, after []string) []string {
	had := map[string]bool{}
	for _, w := range before {
		had[w] = true
	}
	var out []string
	for _, w := range after {
		if !had[w] {
			out = append(out, w)
		}
	}
	return out
}

// defaultAgentConfig is what compile assumes of a node without its agent's
// settings: gateway LOCAL, no uplink, the default conntrack zone, the Node
// object's InternalIPs.
func defaultAgentConfig(node string, mode model.Mode, objs *manifest.Objects) (inspect.AgentConfig, error) {
	cfg, err := compiler.NodeFlags{Node: node, CTZone: compiler.DefaultCTZone, GatewayPort: "LOCAL"}.Config()
	if err != nil {
		return inspect.AgentConfig{}, err
	}
	for _, n := range objs.Nodes {
		if n.Name == node {
			ips, err := normalize.NodeInternalIPs(n)
			if err != nil {
				return inspect.AgentConfig{}, fmt.Errorf("%s: %w", objs.Where(n), err)
			}
			cfg.NodeIPs = ips
		}
	}
	return inspect.NewAgentConfig(cfg, mode), nil
}

// nsObject is a namespaced object of the input with its namespace.
type nsObject struct {
	ns  string
	obj runtime.Object
}

// objectsIn lists the namespaced objects of o.
func objectsIn(o *manifest.Objects) []nsObject {
	var out []nsObject
	for _, v := range o.Pods {
		out = append(out, nsObject{v.Namespace, v})
	}
	for _, v := range o.PoliciesV1 {
		out = append(out, nsObject{v.Namespace, v})
	}
	for _, v := range o.PoliciesV1beta1 {
		out = append(out, nsObject{v.Namespace, v})
	}
	for _, v := range o.Services {
		out = append(out, nsObject{v.Namespace, v})
	}
	for _, v := range o.EndpointSlices {
		out = append(out, nsObject{v.Namespace, v})
	}
	return out
}

// connRow is one line of the text output: a pair, a direction of change and
// the port classes it applies to.
type connRow struct {
	from, to string
	opens    bool
	ports    []string
}

// diffText renders the report for people.
func diffText(rep diffReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Objects that change (%d):\n", len(rep.Objects))
	if len(rep.Objects) == 0 {
		b.WriteString("  none\n")
	}
	for _, c := range rep.Objects {
		fmt.Fprintf(&b, "  %s\n", c)
	}

	ports := make([]string, len(rep.Ports))
	for i, p := range rep.Ports {
		ports[i] = p.String()
	}
	opens, closes := 0, 0
	for _, c := range rep.Connections {
		if c.Opens {
			opens++
		} else {
			closes++
		}
	}
	fmt.Fprintf(&b, "\nConnections that open (%d) or close (%d), counted per pair and port class; new connections checked on %s:\n", opens, closes, strings.Join(ports, " "))
	if len(rep.Connections) == 0 {
		b.WriteString("  none\n")
	}
	// Rows per cause group, each pair's port classes on one line.
	var groupOrder []string
	groups := map[string][]*connRow{}
	rowOf := map[string]*connRow{}
	for _, c := range rep.Connections {
		g := "other changes (labels of pods or namespaces, pods added or deleted)"
		if len(c.Causes) > 0 {
			names := make([]string, len(c.Causes))
			for i, p := range c.Causes {
				names[i] = "NetworkPolicy " + printable.String(p)
			}
			g = strings.Join(names, ", ")
		}
		if _, ok := groups[g]; !ok {
			groupOrder = append(groupOrder, g)
		}
		k := fmt.Sprintf("%s\x00%s\x00%s\x00%t", g, c.From, c.To, c.Opens)
		r := rowOf[k]
		if r == nil {
			r = &connRow{from: c.From.String(), to: c.To.String(), opens: c.Opens}
			rowOf[k] = r
			groups[g] = append(groups[g], r)
		}
		r.ports = append(r.ports, c.Ports.String())
	}
	for _, g := range groupOrder {
		fmt.Fprintf(&b, "  by %s:\n", g)
		rows := groups[g]
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].opens && !rows[j].opens })
		wf := 0
		for _, r := range rows {
			wf = max(wf, len(r.from))
		}
		for _, r := range rows {
			word := "closes"
			if r.opens {
				word = "opens "
			}
			fmt.Fprintf(&b, "    %s %-*s -> %s  %s\n", word, wf, r.from, r.to, strings.Join(r.ports, " "))
		}
	}

	for _, nd := range rep.Nodes {
		added, removed := 0, 0
		for _, f := range nd.Flows {
			if f.Added {
				added++
			} else {
				removed++
			}
		}
		how := "the local bridge's ports and the agent's settings"
		if nd.Bindings == "default" {
			how = "ports numbered as compile numbers them"
		}
		fmt.Fprintf(&b, "\nFlows of node %s (%s): %d added, %d removed\n", printable.String(nd.Node), how, added, removed)
		last := ""
		for _, f := range nd.Flows {
			if f.Origin != last || last == "" {
				fmt.Fprintf(&b, "  # %s\n", f.Origin)
				last = f.Origin
			}
			sign := "-"
			if f.Added {
				sign = "+"
			}
			fmt.Fprintf(&b, "  %s %s\n", sign, f.Text)
		}
		if len(nd.Groups) > 0 {
			fmt.Fprintf(&b, "Groups of node %s:\n", printable.String(nd.Node))
			for _, g := range nd.Groups {
				sign := "-"
				if g.Added {
					sign = "+"
				}
				fmt.Fprintf(&b, "  %s group %s  # %s\n", sign, g.Text, g.Origin)
			}
		}
	}
	return b.String()
}
