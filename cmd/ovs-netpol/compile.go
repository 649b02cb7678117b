package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"sort"

	"github.com/spf13/cobra"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

type compileOptions struct {
	files      []string
	node       string
	isolation  string
	ports      string
	gateway    string
	uplink     string
	nodeIPs    []string
	hairpinIPs []string
	ctZone     uint16
	comments   bool
	tunnelPort string
	gatewayMAC string
}

func compileCmd() *cobra.Command {
	var o compileOptions
	cmd := &cobra.Command{
		Use:   "compile -f PATH [-f PATH ...] --node NODE",
		Short: "Print the flows and groups of one node's br-int for the given manifests",
		Long: `Reads Namespaces, Pods, Nodes, NetworkPolicies (networking.k8s.io/v1 or
extensions/v1beta1), Services and EndpointSlices from YAML/JSON files or
directories and prints the complete flow set of NODE's br-int, with the
Services' load-balancing groups, in the form

  ovs-ofctl -O OpenFlow15 bundle br-int -

accepts unchanged ("group add ..." lines, then "flow add ..." lines). Each
group of flows is preceded by a comment naming its origin (pipeline, node,
pod, policy rule or Service).

Every object is checked as kube-apiserver v1.37 checks it on creation (names,
labels, ports, protocols, strict IPs and CIDRs, ...): what a cluster would
refuse is an error naming the file, line, document and field. Namespaces get
the label kubernetes.io/metadata.name=NAME, as the API server gives them.
Two live pods with one IP, and a --node that names no Node object and no
pod's spec.nodeName, are errors.

Pods of NODE are bound to bridge ports by --ports lines "NAMESPACE/NAME OFPORT
MAC" (each must name a pod of NODE in the input; distinct ports and unicast,
non-zero, distinct MACs; the gateway and uplink ports are distinct and bind
no pod); a pod without a line gets, in namespace/name order, the lowest free port
from 10 up and the MAC 0a:58 followed by its IPv4 address (or a hash of its
UID without IPv4). Node addresses come from --node-ip and from NODE's Node
object (InternalIP); traffic from the gateway port with one of them as source
is node-local (always allowed). Without any, all gateway traffic is.

With --tunnel-port, NODE reaches the other nodes through a flow-based Geneve
port (the overlay; exclusive with --uplink-port, the flat-L2 mode): every
other Node object with an InternalIP and spec.podCIDR(s) gets flows sending
its pod CIDRs and addresses to the tunnel (tun_dst = its InternalIP) and
admitting them from it. --gateway-mac is NODE's gateway MAC; by default the
one the agent sets, derived from NODE's podCIDR (0a:58 and its first
address). Node objects' pod CIDRs are checked as the API server checks them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCompile(o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "filename", "f", nil, "manifest file or directory (repeatable; - for stdin)")
	f.StringVar(&o.node, "node", "", "node whose br-int is compiled (required)")
	f.StringVar(&o.isolation, "isolation", "v1", "policy semantics: v1 or v1.6")
	f.StringVar(&o.ports, "ports", "", "file of port bindings: NAMESPACE/NAME OFPORT MAC per line")
	f.StringVar(&o.gateway, "gateway-port", "LOCAL", "OpenFlow port to the node's host")
	f.StringVar(&o.uplink, "uplink-port", "", "OpenFlow port to other nodes (optional)")
	f.StringArrayVar(&o.nodeIPs, "node-ip", nil, "an address of the node (repeatable)")
	f.StringArrayVar(&o.hairpinIPs, "hairpin-ip", nil, "source address of a pod's connections to itself through a Service, one per family (default 169.254.123.253, fd69::fffd)")
	f.Uint16Var(&o.ctZone, "ct-zone", compiler.DefaultCTZone, "conntrack zone")
	f.BoolVar(&o.comments, "comments", true, "precede flow groups with '# origin' comments")
	f.StringVar(&o.tunnelPort, "tunnel-port", "", "OpenFlow port of the flow-based Geneve port to other nodes (the overlay; optional)")
	f.StringVar(&o.gatewayMAC, "gateway-mac", "", "the node's gateway MAC, with --tunnel-port (default: derived from the node's podCIDR)")
	_ = cmd.MarkFlagRequired("filename")
	_ = cmd.MarkFlagRequired("node")
	return cmd
}

// runCompile writes flows to stdout only when everything succeeded.
func runCompile(o compileOptions, stdout, stderr io.Writer) error {
	mode, err := model.ParseMode(o.isolation)
	if err != nil {
		return err
	}
	objs, err := manifest.Load(o.files)
	if err != nil {
		return err
	}
	cluster, warnings, err := objs.Cluster(mode)
	if err != nil {
		return err
	}
	for _, w := range append(objs.Warnings, warnings...) {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if o.tunnelPort != "" && o.gatewayMAC == "" {
		// The agent's rule: the MAC follows from the node's own Node.
		if n := cluster.Nodes[o.node]; n != nil && len(n.PodCIDRs) > 0 {
			o.gatewayMAC = model.GatewayMAC(n).String()
		}
	}
	cfg, err := compiler.NodeFlags{Node: o.node, CTZone: o.ctZone, GatewayPort: o.gateway,
		UplinkPort: o.uplink, NodeIPs: o.nodeIPs, HairpinIPs: o.hairpinIPs,
		TunnelPort: o.tunnelPort, GatewayMAC: o.gatewayMAC}.Config()
	if err != nil {
		return err
	}
	if cfg.UplinkPort != 0 && cfg.UplinkPort == cfg.GatewayPort {
		return fmt.Errorf("--gateway-port and --uplink-port are both port %s: node traffic and other nodes' traffic need ports of their own", compiler.PortName(cfg.GatewayPort))
	}
	if err := checkNode(objs, cluster, o.node); err != nil {
		return err
	}
	for _, n := range objs.Nodes {
		if n.Name != o.node {
			continue
		}
		ips, err := normalize.NodeInternalIPs(n)
		if err != nil {
			return fmt.Errorf("%s: %w", objs.Where(n), err)
		}
		cfg.NodeIPs = append(cfg.NodeIPs, ips...)
	}
	if len(cfg.NodeIPs) == 0 {
		fmt.Fprintf(stderr, "warning: no address known for node %s (--node-ip or a Node object): all traffic from the gateway port is treated as node-local\n", printable.String(o.node))
	}
	explicit := map[string]compiler.Binding{}
	if o.ports != "" {
		fh, err := os.Open(o.ports)
		if err != nil {
			return err
		}
		explicit, err = compiler.ParseBindings(fh, o.ports)
		fh.Close()
		if err != nil {
			return err
		}
	}
	reserved := []uint32{cfg.GatewayPort}
	if cfg.UplinkPort != 0 {
		reserved = append(reserved, cfg.UplinkPort)
	}
	if cfg.Overlay.TunnelPort != 0 {
		reserved = append(reserved, cfg.Overlay.TunnelPort)
	}
	for _, key := range sortedKeys(explicit) {
		b := explicit[key]
		for _, r := range reserved {
			if b.OFPort == r {
				return fmt.Errorf("%s: pod %s is bound to port %s, which is the gateway, uplink or tunnel port", o.ports, printable.String(key), compiler.PortName(r))
			}
		}
	}
	finished, err := checkBindings(o.ports, cluster, o.node, explicit)
	if err != nil {
		return err
	}
	for _, key := range finished {
		// Its port stays reserved: the pod's interface may still be there.
		fmt.Fprintf(stderr, "warning: %s: pod %s is finished or uses the host network: it gets no flows (its port %d stays reserved)\n", o.ports, key, explicit[key].OFPort)
		reserved = append(reserved, explicit[key].OFPort)
	}
	cfg.Bindings = compiler.DefaultBindings(cluster, o.node, explicit, reserved...)
	if err := checkMACs(cfg.Bindings); err != nil {
		return err
	}
	local := 0
	for _, p := range cluster.Pods {
		if p.Node == o.node {
			local++
		}
	}
	if local == 0 {
		fmt.Fprintf(stderr, "warning: no pod of the input runs on node %q\n", o.node)
	}
	res, err := compiler.Compile(cluster, cfg)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, res.Text(o.comments))
	return err
}

// checkNode: --node must name a node the input knows, as a Node object or
// as the node some pod is scheduled on; a typo would otherwise compile an
// empty node without complaint.
func checkNode(objs *manifest.Objects, cluster *model.Cluster, node string) error {
	for _, n := range objs.Nodes {
		if n.Name == node {
			return nil
		}
	}
	for _, p := range cluster.Pods {
		if p.Node == node {
			return nil
		}
	}
	return fmt.Errorf("--node %s: no Node object of that name and no pod scheduled on it (spec.nodeName) in the input", printable.String(node))
}

// checkBindings checks that every --ports line names a pod of node in the
// input: a line for a pod that is not there would be ignored and its port
// handed to another pod. It returns the pods of node that are bound but get
// no flows (finished or host-network), sorted.
func checkBindings(file string, cluster *model.Cluster, node string, explicit map[string]compiler.Binding) ([]string, error) {
	byKey := map[string]*model.Pod{}
	for _, p := range cluster.Pods {
		byKey[p.Key()] = p
	}
	var finished []string
	for _, key := range sortedKeys(explicit) {
		b := explicit[key]
		p := byKey[key]
		switch {
		case p == nil:
			return nil, fmt.Errorf("%s: pod %s (port %d) is not in the input", file, printable.String(key), b.OFPort)
		case p.Node != node:
			where := "is not scheduled on any node"
			if p.Node != "" {
				where = "runs on node " + p.Node
			}
			return nil, fmt.Errorf("%s: pod %s (port %d) %s, not on %s", file, key, b.OFPort, where, printable.String(node))
		case !p.Active():
			finished = append(finished, key)
		}
		mac := b.MAC
		switch {
		case len(mac) != 6:
			return nil, fmt.Errorf("%s: pod %s: %s is not an Ethernet MAC address", file, key, mac)
		case mac[0]&1 != 0:
			return nil, fmt.Errorf("%s: pod %s: MAC %s is a multicast or broadcast address: a pod's interface needs a unicast MAC", file, key, mac)
		case bytes.Equal(mac, make(net.HardwareAddr, 6)):
			return nil, fmt.Errorf("%s: pod %s: MAC %s is the zero address: a pod's interface needs a unicast MAC", file, key, mac)
		}
	}
	return finished, nil
}

// checkMACs: each pod's port security matches its own MAC, so two pods of
// one bridge with the same MAC would answer for each other.
func checkMACs(bindings map[string]compiler.Binding) error {
	seen := map[string]string{}
	for _, key := range sortedKeys(bindings) {
		mac := bindings[key].MAC.String()
		if other, dup := seen[mac]; dup {
			return fmt.Errorf("pods %s and %s both have the MAC %s (check --ports)", other, key, mac)
		}
		seen[mac] = key
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
