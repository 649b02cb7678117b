package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ovs-netpol/ovs-netpol/pkg/inspect"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// nodeOptions are the flags of the commands that look at a node's live
// bridge (pods, flows, explain, verify, diff): where its Open vSwitch is,
// how to reach the cluster, and the output format.
type nodeOptions struct {
	bridgeName string
	runDir     string
	ovsdb      string
	output     string
}

// nodeFlagsHelp is the paragraph of Long help the node commands share.
const nodeFlagsHelp = `Run it on the node (as root, or as a user who may use the Open vSwitch
sockets): --ovs-rundir holds BRIDGE.mgmt and db.sock. The cluster is read
with --kubeconfig and --context (default $KUBECONFIG, then ~/.kube/config
if it exists, as kubectl). The agent's settings (node name, isolation mode,
gateway and uplink ports, node IPs, conntrack zone) are read from the
bridge, where ovs-netpol-agent publishes them at start
(external_ids:ovs-netpol-config).`

// addNodeFlags registers --bridge, --ovs-rundir, --ovsdb and -o/--output on
// cmd (--kubeconfig and --context are the root command's).
func addNodeFlags(cmd *cobra.Command, o *nodeOptions) {
	f := cmd.Flags()
	f.StringVar(&o.bridgeName, "bridge", inspect.DefaultBridge, "the integration bridge")
	f.StringVar(&o.runDir, "ovs-rundir", inspect.DefaultRunDir, "Open vSwitch run directory (BRIDGE.mgmt, db.sock)")
	f.StringVar(&o.ovsdb, "ovsdb", "", "OVSDB endpoint (default unix:OVS-RUNDIR/db.sock)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
}

// checkOutput validates -o.
func (o nodeOptions) checkOutput() error {
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("-o %s: want text or json", printable.String(o.output))
	}
	return nil
}

// bridge is the live bridge the flags name.
func (o nodeOptions) bridge() inspect.Bridge {
	return inspect.Bridge{Name: o.bridgeName, RunDir: o.runDir, OVSDB: o.ovsdb}
}

// errNoKubeconfig says that no kubeconfig was given or found.
var errNoKubeconfig = errors.New("no kubeconfig: pass --kubeconfig, set $KUBECONFIG or create ~/.kube/config")

// client returns a client of the cluster (the root's --kubeconfig and
// --context), or errNoKubeconfig when there is no kubeconfig at all.
func (o nodeOptions) client() (kubernetes.Interface, error) {
	// restConfig wraps the error, and IsEmptyConfig does not unwrap.
	if _, err := clientConfig().ClientConfig(); clientcmd.IsEmptyConfig(err) {
		return nil, errNoKubeconfig
	}
	cfg, err := restConfig()
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 30 * time.Second
	return kubernetes.NewForConfig(cfg)
}

// nodeView is what the node commands know of the node: the agent's
// published settings, the pods attached to the bridge and, with a
// kubeconfig, the node's compiled view of the live cluster.
type nodeView struct {
	config inspect.AgentConfig
	ports  []inspect.Port
	// node is nil without a kubeconfig.
	node *inspect.Node
}

// loadNodeView reads the bridge's published settings and ports and, when
// withCluster and a kubeconfig is available, lists the cluster and compiles
// the node's view with them. Without a kubeconfig, node stays nil and the
// error is nil; with one, failing to read the cluster is an error.
func (o nodeOptions) loadNodeView(ctx context.Context, withCluster bool) (*nodeView, error) {
	br := o.bridge()
	ac, err := br.AgentConfig(ctx)
	if err != nil {
		return nil, err
	}
	ps, err := br.Ports(ctx)
	if err != nil {
		return nil, err
	}
	v := &nodeView{config: ac, ports: ps}
	if !withCluster {
		return v, nil
	}
	client, err := o.client()
	if errors.Is(err, errNoKubeconfig) {
		return v, nil
	}
	if err != nil {
		return nil, err
	}
	objs, err := inspect.LoadCluster(ctx, client)
	if err != nil {
		return nil, err
	}
	if v.node, err = inspect.CompileNode(objs, ac, inspect.BindingsOf(ps)); err != nil {
		return nil, err
	}
	return v, nil
}
