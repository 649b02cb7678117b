package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
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
	kubeconfig string
	output     string
}

// nodeFlagsHelp is the paragraph of Long help the node commands share.
const nodeFlagsHelp = `Run it on the node (as root, or as a user who may use the Open vSwitch
sockets): --ovs-rundir holds BRIDGE.mgmt and db.sock. The cluster is read
with --kubeconfig (default $KUBECONFIG, then ~/.kube/config if it exists);
the agent's settings (node name, isolation mode, ports, node IPs, conntrack
zone) are read from the bridge, where ovs-netpol-agent publishes them at
start (external_ids:ovs-netpol-config).`

// addNodeFlags registers --bridge, --ovs-rundir, --ovsdb, --kubeconfig and
// -o/--output on cmd.
func addNodeFlags(cmd *cobra.Command, o *nodeOptions) {
	f := cmd.Flags()
	f.StringVar(&o.bridgeName, "bridge", inspect.DefaultBridge, "the integration bridge")
	f.StringVar(&o.runDir, "ovs-rundir", inspect.DefaultRunDir, "Open vSwitch run directory (BRIDGE.mgmt, db.sock)")
	f.StringVar(&o.ovsdb, "ovsdb", "", "OVSDB endpoint (default unix:OVS-RUNDIR/db.sock)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, then ~/.kube/config if it exists)")
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

// kubeconfigPath resolves --kubeconfig: the flag, else $KUBECONFIG (which
// may list several files, merged as kubectl does: returned as is), else
// ~/.kube/config if it exists; "" when there is none.
func (o nodeOptions) kubeconfigPath() string {
	if o.kubeconfig != "" {
		return o.kubeconfig
	}
	if env := os.Getenv("KUBECONFIG"); env != "" {
		return env
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".kube", "config")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// errNoKubeconfig says that no kubeconfig was given or found.
var errNoKubeconfig = errors.New("no kubeconfig: pass --kubeconfig, set $KUBECONFIG or create ~/.kube/config")

// client returns a client of the cluster, or errNoKubeconfig.
func (o nodeOptions) client() (kubernetes.Interface, error) {
	path := o.kubeconfigPath()
	if path == "" {
		return nil, errNoKubeconfig
	}
	var cfg *rest.Config
	var err error
	if o.kubeconfig == "" && os.Getenv("KUBECONFIG") != "" {
		rules := clientcmd.NewDefaultClientConfigLoadingRules() // reads the $KUBECONFIG list
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
	}
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", printable.String(path), err)
	}
	cfg.UserAgent = "ovs-netpol"
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
