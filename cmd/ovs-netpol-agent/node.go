package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/nodenet"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
	"github.com/ovs-netpol/ovs-netpol/pkg/ovsdb"
)

// Values of --tunnel.
const (
	tunnelGeneve = "geneve"
	tunnelNone   = "none"
)

// tunnelOFPortRequest is the OpenFlow port asked for the Geneve port: far
// above the numbers OVS gives pods (the lowest free ones), so it stays put.
// The compiler uses whatever ovs-vswitchd assigned.
const tunnelOFPortRequest = 4096

// Timing of the start-up wait and of the host route resync. Variables so
// that tests can shorten them.
var (
	nodePollInterval   = 500 * time.Millisecond
	nodeWaitLogEvery   = 10 * time.Second
	routeResyncEvery   = 30 * time.Second
	nodeRequestTimeout = 10 * time.Second
)

// checkNodeFlags validates the overlay's flags before anything is touched.
func checkNodeFlags(o options) error {
	switch o.tunnel {
	case tunnelGeneve:
		if o.uplinkPort != "" {
			return errors.New("--uplink-port is the flat-L2 mode: it needs --tunnel=none")
		}
		if o.tunnelPortName == "" || len(o.tunnelPortName) > 15 {
			return fmt.Errorf("--tunnel-port-name %q: 1 to 15 characters", o.tunnelPortName)
		}
	case tunnelNone:
	default:
		return fmt.Errorf("--tunnel %q: geneve or none", o.tunnel)
	}
	if o.mtu != 0 && (o.mtu < 1280 || o.mtu > 65535) {
		return fmt.Errorf("--mtu %d: 0 (from the underlay) or 1280..65535", o.mtu)
	}
	return nil
}

// nodeSetup is what the node's start-up produced for the rest of the agent.
type nodeSetup struct {
	routes *routeSyncer // nil with --tunnel=none
	fields logrus.Fields
}

// setupNode prepares the node's networking for the mode of --tunnel and
// fills cfg.Overlay and cfg.NodeIPs (unless --node-ip was given).
//
// geneve: wait for the Node's pod CIDR(s) and InternalIP; then the bridge's
// LOCAL MAC (other_config:hwaddr), its MTU (mtu_request, and the device's),
// the gateway addresses, the Geneve port, the CNI configuration (unless
// --cni-conf-dir is ""). Host routes to the other nodes follow the
// controller's NodesChanged (routeSyncer).
//
// none (flat L2 through --uplink-port, as before the overlay): no wait, no
// host networking; a tunnel port, the LOCAL mtu_request and host routes left
// by an earlier geneve run are removed (the gateway addresses and MAC stay:
// the operator's to configure in that mode). The CNI configuration is written only when
// --cni-conf-dir was given explicitly and the Node has a pod CIDR already
// (its gateway address on LOCAL is then the operator's to configure).
func setupNode(ctx context.Context, o options, client kubernetes.Interface, db *ovsdb.Client, endpoint string, cfg *compiler.Config, reg prometheus.Registerer, log logrus.FieldLogger) (*nodeSetup, error) {
	host := nodenet.Host{NetNS: o.hostNetNS}
	if o.tunnel == tunnelNone {
		return setupFlat(ctx, o, client, db, endpoint, cfg, host, log)
	}
	self, err := waitForNode(ctx, client, o.nodeName, log)
	if err != nil {
		return nil, err
	}
	mac := model.GatewayMAC(self)
	var gws []netip.Prefix
	for _, p := range self.PodCIDRs {
		if gw := p.Addr().Next(); p.Contains(gw) {
			gws = append(gws, netip.PrefixFrom(gw, p.Bits()))
		}
	}
	mtu, underlay := o.mtu, 0
	if mtu == 0 {
		if underlay, err = host.UnderlayMTU(self.TunnelIP()); err != nil {
			return nil, fmt.Errorf("the MTU of the underlay (of the interface holding InternalIP %s): %w (or set --mtu)", self.TunnelIP(), err)
		}
		if mtu, err = nodenet.PodMTU(underlay, self.TunnelIP()); err != nil {
			return nil, fmt.Errorf("%w (or set --mtu)", err)
		}
	}
	if err := db.SetBridgeHWAddr(ctx, o.bridge, mac); err != nil {
		return nil, err
	}
	if err := db.SetMTURequest(ctx, o.bridge, mtu); err != nil {
		return nil, err
	}
	if err := host.ConfigureGateway(o.bridge, gws, mtu); err != nil {
		return nil, err
	}
	ofport, err := db.EnsureTunnelPort(ctx, o.bridge, o.tunnelPortName, "geneve", map[string]string{"remote_ip": "flow", "local_ip": "flow"}, tunnelOFPortRequest)
	if err != nil {
		return nil, err
	}
	cfg.Overlay = compiler.Overlay{TunnelPort: uint32(ofport), GatewayMAC: mac}
	if len(o.nodeIPs) == 0 {
		// Host traffic to local pods leaves with the gateway address as
		// source (connected route): node-local like the InternalIPs.
		cfg.NodeIPs = append(slices.Clone(self.InternalIPs), self.GatewayIPs()...)
	}
	fields := logrus.Fields{"tunnel": o.tunnel, "tunnel_port": ofport, "tunnel_ip": self.TunnelIP().String(),
		"gateway_mac": mac.String(), "gateways": gws, "mtu": mtu, "underlay_mtu": underlay, "pod_cidrs": self.PodCIDRs}
	if o.cniConfDir != "" {
		path, err := nodenet.WriteCNIConfig(o.cniConfDir, cniConfig(o, endpoint, self.PodCIDRs, mtu))
		if err != nil {
			return nil, err
		}
		fields["cni_config"] = path
	}
	rs := newRouteSyncer(o.bridge, o.nodeName, host.SyncRoutes, reg, log.WithField("component", "routes"))
	return &nodeSetup{routes: rs, fields: fields}, nil
}

func cniConfig(o options, endpoint string, cidrs []netip.Prefix, mtu int) nodenet.CNIConfig {
	return nodenet.CNIConfig{FileName: o.cniConfName, PodCIDRs: cidrs, MTU: mtu,
		Bridge: o.bridge, OVSDB: endpoint, DatapathType: o.datapathType}
}

func setupFlat(ctx context.Context, o options, client kubernetes.Interface, db *ovsdb.Client, endpoint string, cfg *compiler.Config, host nodenet.Host, log logrus.FieldLogger) (*nodeSetup, error) {
	if db.HasPort(o.bridge, o.tunnelPortName) {
		// An earlier geneve run pinned LOCAL's MTU to the overlay's
		// (mtu_request): flat-L2 pods get the kernel's default, and the
		// datapath drops a frame larger than the port it goes to. Cleared
		// before the port goes, so that a run that stops in between
		// clears it next time.
		if err := db.ClearMTURequest(ctx, o.bridge); err != nil {
			return nil, fmt.Errorf("removing the LOCAL MTU of an earlier --tunnel=geneve run: %w", err)
		}
		log.WithField("port", o.tunnelPortName).Info("removing the tunnel port and LOCAL MTU of an earlier --tunnel=geneve run")
	}
	if err := db.DeletePort(ctx, o.bridge, o.tunnelPortName); err != nil {
		return nil, fmt.Errorf("removing the tunnel port %s of an earlier --tunnel=geneve run: %w", o.tunnelPortName, err)
	}
	var nf netlink.LinkNotFoundError
	if err := host.SyncRoutes(o.bridge, nil); err != nil && !errors.As(err, &nf) {
		log.WithError(err).Warn("cannot remove the host routes of an earlier --tunnel=geneve run")
	}
	fields := logrus.Fields{"tunnel": o.tunnel}
	if len(cfg.NodeIPs) == 0 {
		cfg.NodeIPs = nodeIPs(ctx, client, o.nodeName, log)
	}
	if o.cniConfDirSet && o.cniConfDir != "" {
		self := readNode(ctx, client, o.nodeName, log)
		if self == nil || len(self.PodCIDRs) == 0 {
			log.WithField("dir", o.cniConfDir).Warn("--cni-conf-dir given but the Node has no pod CIDR: no CNI configuration written")
			return &nodeSetup{fields: fields}, nil
		}
		path, err := nodenet.WriteCNIConfig(o.cniConfDir, cniConfig(o, endpoint, self.PodCIDRs, o.mtu))
		if err != nil {
			return nil, err
		}
		fields["cni_config"] = path
	}
	return &nodeSetup{fields: fields}, nil
}

// readNode reads and validates the Node once (nil, logged, when it cannot).
func readNode(ctx context.Context, client kubernetes.Interface, name string, log logrus.FieldLogger) *model.Node {
	ctx, cancel := context.WithTimeout(ctx, nodeRequestTimeout)
	defer cancel()
	n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		log.WithError(err).Warn("cannot read the Node object")
		return nil
	}
	m, err := normalize.Node(n)
	if err != nil {
		log.WithError(err).Warn("the Node object is invalid")
		return nil
	}
	return m
}

// waitForNode polls the Node until it is valid and has a pod CIDR and an
// InternalIP (the tunnel endpoint) that the overlay can use
// (model.ClaimProblem). It logs why it waits when the reason
// changes and every nodeWaitLogEvery.
func waitForNode(ctx context.Context, client kubernetes.Interface, name string, log logrus.FieldLogger) (*model.Node, error) {
	var lastWhy string
	var lastLog time.Time
	start := time.Now()
	for {
		why := ""
		rctx, cancel := context.WithTimeout(ctx, nodeRequestTimeout)
		n, err := client.CoreV1().Nodes().Get(rctx, name, metav1.GetOptions{})
		cancel()
		var m *model.Node
		switch {
		case err != nil:
			why = "cannot read the Node object: " + err.Error()
		default:
			if m, err = normalize.Node(n); err != nil {
				why = "the Node object is invalid: " + err.Error()
			} else if len(m.PodCIDRs) == 0 {
				why = "the Node has no spec.podCIDR yet (allocated by kube-controller-manager --allocate-node-cidrs, or set by whoever registers the node)"
			} else if !m.TunnelIP().IsValid() {
				why = "the Node has no InternalIP address yet (the Geneve tunnel endpoint)"
			} else if p := model.ClaimProblem(m); p != "" {
				// Every other node refuses such a node (model.RefusedNodes).
				why = "the Node's pod CIDRs or InternalIPs cannot be used: " + p
			}
		}
		if why == "" {
			if !lastLog.IsZero() {
				log.WithField("waited", time.Since(start).Round(time.Millisecond).String()).Info("the Node has its pod CIDR and InternalIP")
			}
			return m, nil
		}
		if why != lastWhy || time.Since(lastLog) >= nodeWaitLogEvery {
			log.WithField("node", name).WithField("waited", time.Since(start).Round(time.Second).String()).Info("waiting before configuring the overlay: " + why)
			lastWhy, lastLog = why, time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for Node %s (%s): %w", name, why, ctx.Err())
		case <-time.After(nodePollInterval):
		}
	}
}

// routeSyncer keeps the host routes to the other nodes' pod CIDRs equal to
// the controller's valid Nodes, one sync at a time: on every change and
// every routeResyncEvery (which repairs routes removed behind its back and
// retries failed ones).
type routeSyncer struct {
	bridge, self string
	sync         func(bridge string, remotes []*model.Node) error
	log          logrus.FieldLogger
	errs         prometheus.Counter
	syncs        prometheus.Counter

	mu     sync.Mutex
	nodes  []*model.Node
	have   bool
	kick   chan struct{}
	synced chan struct{} // tests: a value after every sync
}

func newRouteSyncer(bridge, self string, sync func(string, []*model.Node) error, reg prometheus.Registerer, log logrus.FieldLogger) *routeSyncer {
	rs := &routeSyncer{
		bridge: bridge, self: self, sync: sync, log: log, kick: make(chan struct{}, 1),
		errs: prometheus.NewCounter(prometheus.CounterOpts{Name: "ovs_netpol_host_route_sync_errors_total",
			Help: "Syncs of the host routes and neighbour entries to other nodes' pod CIDRs that failed in part or in whole (the log says why)."}),
		syncs: prometheus.NewCounter(prometheus.CounterOpts{Name: "ovs_netpol_host_route_syncs_total",
			Help: "Syncs of the host routes and neighbour entries to other nodes' pod CIDRs."}),
	}
	if reg != nil {
		reg.MustRegister(rs.errs, rs.syncs)
	}
	return rs
}

// nodesChanged is the controller's NodesChanged: it only records the nodes
// and wakes run, so the controller's worker never waits for netlink.
func (rs *routeSyncer) nodesChanged(nodes []*model.Node) {
	rs.mu.Lock()
	rs.nodes, rs.have = nodes, true
	rs.mu.Unlock()
	select {
	case rs.kick <- struct{}{}:
	default: // a sync is pending: it will read the newest nodes
	}
}

func (rs *routeSyncer) run(ctx context.Context) {
	t := time.NewTicker(routeResyncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rs.kick:
		case <-t.C:
		}
		rs.mu.Lock()
		nodes, have := rs.nodes, rs.have
		rs.mu.Unlock()
		if !have {
			continue // the controller has not reported the nodes yet
		}
		remotes := make([]*model.Node, 0, len(nodes))
		for _, n := range nodes {
			if n.Name != rs.self {
				remotes = append(remotes, n)
			}
		}
		start := time.Now()
		err := rs.sync(rs.bridge, remotes)
		rs.syncs.Inc()
		entry := rs.log.WithFields(logrus.Fields{"remote_nodes": len(remotes), "took": time.Since(start).Round(time.Microsecond).String()})
		if err != nil {
			rs.errs.Inc()
			entry.WithError(err).Warn("host routes to other nodes' pods: not all in place (retried on the next Node change and every 30s)")
		} else {
			entry.Debug("host routes to other nodes' pods in place")
		}
		if rs.synced != nil {
			rs.synced <- struct{}{}
		}
	}
}
