// Command ovs-netpol-agent runs on every node: it keeps the node's br-int
// flows equal to the compiled NetworkPolicy, incrementally and atomically.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/controller"
	"github.com/ovs-netpol/ovs-netpol/pkg/flowsync"
	"github.com/ovs-netpol/ovs-netpol/pkg/inspect"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/nodenet"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
	"github.com/ovs-netpol/ovs-netpol/pkg/ovsdb"

	"github.com/ovs-netpol/ovs-netpol/internal/version"
)

type options struct {
	kubeconfig   string
	nodeName     string
	bridge       string
	ovsRunDir    string
	ovsdb        string
	isolation    string
	datapathType string
	metricsAddr  string
	gatewayPort  string
	uplinkPort   string
	nodeIPs      []string
	hairpinIPs   []string
	ctZone       uint16
	logLevel     string
	logFormat    string

	// The overlay (node.go).
	tunnel         string
	tunnelPortName string
	cniConfDir     string
	cniConfDirSet  bool // given on the command line (--tunnel=none writes only then)
	cniConfName    string
	mtu            int
	hostNetNS      string
}

func main() {
	var o options
	cmd := &cobra.Command{
		Use:           "ovs-netpol-agent",
		Short:         "Enforce Kubernetes NetworkPolicy on this node's Open vSwitch bridge",
		Version:       version.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.cniConfDirSet = cmd.Flags().Changed("cni-conf-dir")
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return run(ctx, o)
		},
	}
	cmd.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	f.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	f.StringVar(&o.bridge, "bridge", "br-int", "the integration bridge")
	f.StringVar(&o.ovsRunDir, "ovs-rundir", "/var/run/openvswitch", "Open vSwitch run directory (BRIDGE.mgmt sockets)")
	f.StringVar(&o.ovsdb, "ovsdb", "", "OVSDB endpoint (default unix:OVS-RUNDIR/db.sock)")
	f.StringVar(&o.isolation, "isolation", "v1", "policy semantics: v1 or v1.6")
	f.StringVar(&o.datapathType, "datapath-type", "system", "bridge datapath type (system, or netdev for userspace)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "127.0.0.1:9310", "address of /metrics, /healthz and /readyz")
	f.StringVar(&o.gatewayPort, "gateway-port", "LOCAL", "OpenFlow port to the node's host network")
	f.StringVar(&o.uplinkPort, "uplink-port", "", "OpenFlow port to other nodes in the flat-L2 mode (needs --tunnel=none)")
	f.StringVar(&o.tunnel, "tunnel", tunnelGeneve, "how other nodes' pods are reached: geneve (a flow-based Geneve port; host routes and CNI configuration from the Node's podCIDR) or none (flat L2 through --uplink-port, host networking left alone)")
	f.StringVar(&o.tunnelPortName, "tunnel-port-name", "ovs-netpol-gnv0", "name of the Geneve port on the bridge")
	f.StringVar(&o.cniConfDir, "cni-conf-dir", "/etc/cni/net.d", `directory the CNI configuration is written to ("" = do not write; with --tunnel=none only when given)`)
	f.StringVar(&o.cniConfName, "cni-conf-name", nodenet.DefaultCNIConfName, "file name of the CNI configuration (.conflist)")
	f.IntVar(&o.mtu, "mtu", 0, "MTU of the gateway and pods (0: the underlay's MTU minus the Geneve overhead, 50 bytes over IPv4, 70 over IPv6)")
	f.StringVar(&o.hostNetNS, "host-netns", "", "network namespace (path) of the bridge's LOCAL device and host routes (default: the agent's own; tests)")
	f.StringArrayVar(&o.nodeIPs, "node-ip", nil, "an address of this node (repeatable; default: the Node's InternalIPs)")
	f.StringArrayVar(&o.hairpinIPs, "hairpin-ip", nil, "source address of a pod's connections to itself through a Service, one per family (default 169.254.123.253, fd69::fffd)")
	f.Uint16Var(&o.ctZone, "ct-zone", compiler.DefaultCTZone, "conntrack zone")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	addAuditFlags(f)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ovs-netpol-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	log := logrus.New()
	if o.logFormat == "json" {
		log.SetFormatter(&logrus.JSONFormatter{})
	}
	lvl, err := logrus.ParseLevel(o.logLevel)
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log.SetLevel(lvl)
	if o.nodeName == "" {
		return errors.New("--node-name (or $NODE_NAME) is required")
	}
	mode, err := model.ParseMode(o.isolation)
	if err != nil {
		return err
	}
	if err := checkNodeFlags(o); err != nil {
		return err
	}
	cfg, err := compiler.NodeFlags{Node: o.nodeName, CTZone: o.ctZone, GatewayPort: o.gatewayPort,
		UplinkPort: o.uplinkPort, NodeIPs: o.nodeIPs, HairpinIPs: o.hairpinIPs}.Config()
	if err != nil {
		return err
	}

	// The health server answers from the start: the overlay waits for the
	// Node's pod CIDR, which may take a while, and the liveness probe must
	// not restart the agent for that (/readyz says what it waits for).
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var running atomic.Pointer[controller.Controller]
	srv := &http.Server{Addr: o.metricsAddr, ReadHeaderTimeout: 5 * time.Second, Handler: httpHandler(reg, func() error {
		if c := running.Load(); c != nil {
			return c.CheckReady()
		}
		return errors.New("starting: waiting for the Node, OVSDB and the bridge")
	})}
	ln, err := net.Listen("tcp", o.metricsAddr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("metrics server stopped")
		}
	}()
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()

	restCfg, err := kubeConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	restCfg.UserAgent = "ovs-netpol-agent/" + o.nodeName
	restCfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return waitForAPIServer{next: rt, interval: 500 * time.Millisecond}
	})
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}

	endpoint := o.ovsdb
	if endpoint == "" {
		endpoint = "unix:" + filepath.Join(o.ovsRunDir, "db.sock")
	}
	log.WithField("ovsdb", endpoint).Info("connecting to OVSDB")
	db, err := ovsdb.Connect(ctx, endpoint, log.WithField("component", "ovsdb"))
	if err != nil {
		return fmt.Errorf("OVSDB %s: %w", endpoint, err)
	}
	defer db.Close()
	if err := db.EnsureBridge(ctx, o.bridge, o.datapathType, compiler.TableNames); err != nil {
		return fmt.Errorf("bridge %s: %w", o.bridge, err)
	}
	node, err := setupNode(ctx, o, client, db, endpoint, &cfg, reg, log.WithField("component", "node"))
	if err != nil {
		return err
	}
	startAudit, err := setupAudit(ctx, o.nodeName, o.bridge, o.ovsRunDir, &cfg, log)
	if err != nil {
		return err
	}
	// What the agent compiles with, for the node's tools (ovs-netpol flows, explain, verify).
	if err := inspect.PublishAgentConfig(ctx, db, o.bridge, inspect.NewAgentConfig(cfg, mode)); err != nil {
		log.WithError(err).Warn("cannot publish the agent's configuration on the bridge: ovs-netpol flows/explain/verify will not work on this node")
	}

	metrics := controller.NewMetrics(reg)
	ports := &ovsdbPorts{client: db, bridge: o.bridge, ch: db.Subscribe()}
	flows := ofctlFlows{inst: &flowsync.Installer{Bridge: o.bridge, RunDir: o.ovsRunDir, Log: log.WithField("component", "flowsync")}}
	copts := controller.Options{Compiler: cfg, Mode: mode, Log: log.WithField("component", "controller"), Metrics: metrics}
	if node.routes != nil {
		copts.NodesChanged = node.routes.nodesChanged
		go node.routes.run(ctx)
	}
	ctrl := controller.New(client, ports, flows, copts)
	registerFlowStats(reg, ctrl, flows.inst, log)
	startAudit(ctx, ctrl, reg)
	startVerifier(ctx, client, inspect.Bridge{Name: o.bridge, RunDir: o.ovsRunDir, OVSDB: endpoint}, ctrl.Ready, reg, log)
	running.Store(ctrl)

	log.WithFields(node.fields).WithFields(logrus.Fields{"node": o.nodeName, "bridge": o.bridge, "isolation": mode, "metrics": ln.Addr().String(), "node_ips": cfg.NodeIPs}).Info("ovs-netpol-agent starting")
	go watchVswitchd(ctx, filepath.Join(o.ovsRunDir, o.bridge+".mgmt"), ctrl.SwitchRestarted, log.WithField("component", "vswitchd"))
	err = ctrl.Run(ctx)
	log.Info("stopped; flows stay on the bridge")
	return err
}

// httpHandler serves /metrics, /healthz (the process answers) and /readyz
// (ready reports nil).
func httpHandler(reg *prometheus.Registry, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

func kubeConfig(path string) (*rest.Config, error) {
	if path != "" {
		return clientcmd.BuildConfigFromFlags("", path)
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no --kubeconfig and not in a cluster: %w", err)
	}
	return cfg, nil
}

// nodeIPs reads the node's InternalIP addresses; without them all gateway
// traffic counts as node-local (see flows/README.md).
func nodeIPs(ctx context.Context, client kubernetes.Interface, node string, log logrus.FieldLogger) []netip.Addr {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		log.WithError(err).Warn("cannot read the Node object: all traffic from the gateway port is treated as node-local (set --node-ip)")
		return nil
	}
	ips, err := normalize.NodeInternalIPs(n)
	if err != nil || len(ips) == 0 {
		log.WithError(err).Warn("node has no usable InternalIP: all traffic from the gateway port is treated as node-local (set --node-ip)")
		return nil
	}
	return ips
}
