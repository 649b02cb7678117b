package inspect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/evaluator"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// Explainer answers "may A open a connection to B" from the model (the
// reference evaluator) and, on a node, from the live bridge (ofproto/trace).
type Explainer struct {
	Cluster *model.Cluster
	// NodeIPs maps every node address (Node InternalIPs) to its node.
	NodeIPs map[netip.Addr]string
}

// NewExplainer normalizes objs in mode. The warnings are those of
// Objects.Cluster, and of Nodes left out as the agent leaves them out
// (CompileNode).
func NewExplainer(objs *manifest.Objects, mode model.Mode) (*Explainer, []string, error) {
	valid, nodeWarnings := withoutInvalidNodes(objs)
	c, warnings, err := valid.Cluster(mode)
	if err != nil {
		return nil, nil, err
	}
	e := &Explainer{Cluster: c, NodeIPs: map[netip.Addr]string{}}
	for _, n := range objs.Nodes {
		ips, err := normalize.NodeInternalIPs(n)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", objs.Where(n), err)
		}
		for _, ip := range ips {
			e.NodeIPs[ip] = n.Name
		}
	}
	// A node's gateway address (the first of its pod CIDR, on its bridge's
	// LOCAL port) is its host too: the source of its host's connections to
	// other nodes' pods.
	for _, name := range slices.Sorted(maps.Keys(c.Nodes)) {
		for _, gw := range c.Nodes[name].GatewayIPs() {
			if _, known := e.NodeIPs[gw]; !known {
				e.NodeIPs[gw] = name
			}
		}
	}
	return e, append(nodeWarnings, warnings...), nil
}

// AddNodeIPs records addresses of node (the agent's --node-ip, which the
// bridge treats as node-local whether or not the Node object lists them).
func (e *Explainer) AddNodeIPs(node string, ips []netip.Addr) {
	for _, ip := range ips {
		if _, known := e.NodeIPs[ip]; !known {
			e.NodeIPs[ip] = node
		}
	}
}

// EndpointInfo is one end of an explained connection.
type EndpointInfo struct {
	// Kind is "pod", "node", "external" or "service".
	Kind string     `json:"kind"`
	Pod  string     `json:"pod,omitempty"` // namespace/name
	Node string     `json:"node,omitempty"`
	IP   netip.Addr `json:"ip"`
	// Service is namespace/name for a Service's cluster IP.
	Service string `json:"service,omitempty"`
}

func (e EndpointInfo) String() string {
	switch e.Kind {
	case "pod":
		on := ""
		if e.Node != "" {
			on = " on node " + printable.String(e.Node)
		}
		return fmt.Sprintf("pod %s (%s)%s", printable.String(e.Pod), e.IP, on)
	case "node":
		return fmt.Sprintf("node %s (%s)", printable.String(e.Node), e.IP)
	case "service":
		return fmt.Sprintf("Service %s (cluster IP %s)", printable.String(e.Service), e.IP)
	}
	return fmt.Sprintf("external address %s", e.IP)
}

// DirectionInfo is the model's decision for one direction.
type DirectionInfo struct {
	Direction model.Direction `json:"direction"`
	// Pod is the pod whose policies decide ("" when that side is no pod).
	Pod      string `json:"pod,omitempty"`
	Allowed  bool   `json:"allowed"`
	Isolated bool   `json:"isolated"`
	// Policy and Rule name the rule that allowed (Rule is meaningful only
	// when Policy is set).
	Policy string `json:"policy,omitempty"`
	Rule   int    `json:"rule"`
	// IsolatedBy lists what isolates the pod for this direction: the
	// policies selecting it with this direction in policyTypes, or the
	// namespace's legacy annotation.
	IsolatedBy []string `json:"isolatedBy,omitempty"`
	Reason     string   `json:"reason"`
}

// Path is the model's verdict for one destination (a Service has one per
// backend).
type Path struct {
	To      EndpointInfo  `json:"to"`
	Port    int32         `json:"port"`
	Allowed bool          `json:"allowed"`
	Egress  DirectionInfo `json:"egress"`
	Ingress DirectionInfo `json:"ingress"`
}

// ServiceInfo says how a Service's cluster IP and port is handled.
type ServiceInfo struct {
	Service string `json:"service"`
	Port    int32  `json:"port"`
	// Handling is "balanced", "no endpoints" or "no local endpoints".
	Handling string `json:"handling"`
}

// TracedStep is a step of the trace with the origin of its flow.
type TracedStep struct {
	TraceStep
	Origin string `json:"origin"`
}

// TraceInfo is the trace of the same packet on this node's bridge.
type TraceInfo struct {
	Node    string `json:"node"`
	Bridge  string `json:"bridge"`
	Packet  string `json:"packet"`
	Verdict string `json:"verdict"`
	// Delivered is whether the bridge sent the packet on; Outputs where to.
	Delivered bool     `json:"delivered"`
	Outputs   []string `json:"outputs,omitempty"`
	// Enforces is what this node decides: "egress and ingress" (both ends
	// here), "egress" (the source is here) or "ingress".
	Enforces string `json:"enforces"`
	// Expected is what the model says this node must do, in the words of
	// Verdict; Agrees is whether the trace did it.
	Expected string       `json:"expected"`
	Agrees   bool         `json:"agrees"`
	Steps    []TracedStep `json:"steps"`
	// Backend is the backend the bridge's load balancer picked (Services).
	Backend string `json:"backend,omitempty"`
	// TunnelFrom is the node a packet from the overlay's tunnel comes
	// from (its egress was decided there); TunnelTo the node the model
	// expects it sent to through the tunnel (its ingress is decided there).
	TunnelFrom *TunnelEnd `json:"tunnelFrom,omitempty"`
	TunnelTo   *TunnelEnd `json:"tunnelTo,omitempty"`
}

// Explanation is the whole answer.
type Explanation struct {
	From     EndpointInfo   `json:"from"`
	To       EndpointInfo   `json:"to"`
	Protocol model.Protocol `json:"protocol"`
	Port     int32          `json:"port"`
	Service  *ServiceInfo   `json:"service,omitempty"`
	// Allowed is the model's verdict: for a Service, whether every backend
	// is allowed (Paths has each).
	Allowed bool       `json:"allowed"`
	Paths   []Path     `json:"paths"`
	Trace   *TraceInfo `json:"trace,omitempty"`
	// Notes say what the explanation could not cover.
	Notes []string `json:"notes,omitempty"`
	// Mismatch is set when the trace disagrees with the model.
	Mismatch string `json:"mismatch,omitempty"`
}

// Resolve turns "NS/POD" or an address into an endpoint: an address is a
// pod's (active pods), a node's (InternalIP), a Service's cluster IP, or
// external.
func (e *Explainer) Resolve(s string) (evaluator.Endpoint, EndpointInfo, error) {
	if ns, name, ok := strings.Cut(s, "/"); ok {
		for _, p := range e.Cluster.SortedPods() {
			if p.Namespace != ns || p.Name != name {
				continue
			}
			if p.HostNetwork && p.Phase != model.PodSucceeded && p.Phase != model.PodFailed && len(p.IPs) > 0 && p.Node != "" {
				// Its connections are its node's (policy cannot select it,
				// its peers' policies see the node).
				return evaluator.Endpoint{IP: p.IPs[0], HostOf: p.Node}, EndpointInfo{Kind: "node", Node: p.Node, IP: p.IPs[0]}, nil
			}
			if !p.Active() {
				return evaluator.Endpoint{}, EndpointInfo{}, fmt.Errorf("pod %s is finished or uses the host network (without an address or node yet): it takes no part in NetworkPolicy", printable.String(s))
			}
			if len(p.IPs) == 0 {
				return evaluator.Endpoint{}, EndpointInfo{}, fmt.Errorf("pod %s has no IP address yet", printable.String(s))
			}
			return evaluator.PodEndpoint(p, p.IPs[0]), EndpointInfo{Kind: "pod", Pod: p.Key(), Node: p.Node, IP: p.IPs[0]}, nil
		}
		return evaluator.Endpoint{}, EndpointInfo{}, fmt.Errorf("no pod %s in the cluster", printable.String(s))
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return evaluator.Endpoint{}, EndpointInfo{}, fmt.Errorf("%s is neither NAMESPACE/POD nor an IP address", printable.String(s))
	}
	ip = ip.Unmap()
	if p := e.Cluster.PodByIP(ip); p != nil {
		return evaluator.PodEndpoint(p, ip), EndpointInfo{Kind: "pod", Pod: p.Key(), Node: p.Node, IP: ip}, nil
	}
	if n, ok := e.NodeIPs[ip]; ok {
		return evaluator.Endpoint{IP: ip, HostOf: n}, EndpointInfo{Kind: "node", Node: n, IP: ip}, nil
	}
	if svc := e.serviceOf(ip); svc != nil {
		return evaluator.Endpoint{IP: ip}, EndpointInfo{Kind: "service", Service: svc.Key(), IP: ip}, nil
	}
	return evaluator.Endpoint{IP: ip}, EndpointInfo{Kind: "external", IP: ip}, nil
}

func (e *Explainer) serviceOf(ip netip.Addr) *model.Service {
	keys := make([]string, 0, len(e.Cluster.Services))
	for k := range e.Cluster.Services {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, a := range e.Cluster.Services[k].ClusterIPs {
			if a == ip {
				return e.Cluster.Services[k]
			}
		}
	}
	return nil
}

// matchFamily returns dst's address of src's family (pods may be dual-stack).
func matchFamily(ep evaluator.Endpoint, info EndpointInfo, family netip.Addr) (evaluator.Endpoint, EndpointInfo, bool) {
	if ep.IP.Is4() == family.Is4() {
		return ep, info, true
	}
	if ep.Pod == nil {
		return ep, info, false
	}
	for _, a := range ep.Pod.IPs {
		if a.Is4() == family.Is4() {
			ep.IP, info.IP = a, a
			return ep, info, true
		}
	}
	return ep, info, false
}

// Explain decides a new connection from → to on proto/port with the model.
func (e *Explainer) Explain(from, to string, proto model.Protocol, port int32) (*Explanation, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("port %d: want 1-65535", port)
	}
	if from == to {
		return nil, errors.New("--from and --to are the same endpoint: a pod may always reach itself")
	}
	src, srcInfo, err := e.Resolve(from)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	if srcInfo.Kind == "service" {
		return nil, fmt.Errorf("--from %s is a Service's cluster IP: connections come from pods, nodes or outside", src.IP)
	}
	dst, dstInfo, err := e.Resolve(to)
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	// Either end may be a dual-stack pod: the destination takes the
	// source's family if it has it, else the source the destination's.
	if d, di, ok := matchFamily(dst, dstInfo, src.IP); ok {
		dst, dstInfo = d, di
	} else if s, si, ok := matchFamily(src, srcInfo, dst.IP); ok {
		src, srcInfo = s, si
	} else {
		return nil, fmt.Errorf("%s has no address of the family of %s", dstInfo, srcInfo)
	}
	x := &Explanation{From: srcInfo, To: dstInfo, Protocol: proto, Port: port}
	if dstInfo.Kind != "service" {
		x.Paths = []Path{e.path(src, dst, dstInfo, proto, port)}
		x.Allowed = x.Paths[0].Allowed
		return x, nil
	}
	svc := e.Cluster.Services[dstInfo.Service]
	var sp *model.ServicePort
	for i := range svc.Ports {
		if svc.Ports[i].Port == port && svc.Ports[i].Protocol == proto {
			sp = &svc.Ports[i]
		}
	}
	if sp == nil {
		// Not balanced: the bridge treats it as any other address.
		x.Notes = append(x.Notes, fmt.Sprintf("Service %s has no port %d/%s: the cluster IP is not balanced for it (the connection goes to the host like one to an external address)", printable.String(svc.Key()), port, proto))
		x.Paths = []Path{e.path(src, evaluator.Endpoint{IP: dst.IP}, EndpointInfo{Kind: "external", IP: dst.IP}, proto, port)}
		x.Allowed = x.Paths[0].Allowed
		return x, nil
	}
	var slices []*model.EndpointSlice
	for _, sl := range e.Cluster.EndpointSlices {
		if sl.ServiceKey() == svc.Key() {
			slices = append(slices, sl)
		}
	}
	node := srcInfo.Node // balanced on the client's node
	backends, handling := model.Backends(svc, *sp, dst.IP.Is6(), slices, node)
	x.Service = &ServiceInfo{Service: svc.Key(), Port: port}
	switch handling {
	case model.Balance:
		x.Service.Handling = "balanced"
	case model.NoEndpoints:
		x.Service.Handling = "no endpoints"
		x.Notes = append(x.Notes, "the Service has no usable endpoint: its connections go on to the host, where kube-proxy rejects them; the model below is the source's egress policy toward the cluster IP")
		x.Paths = []Path{e.path(src, evaluator.Endpoint{IP: dst.IP}, EndpointInfo{Kind: "external", IP: dst.IP}, proto, port)}
		x.Allowed = false
		return x, nil
	case model.NoLocalEndpoints:
		x.Service.Handling = "no local endpoints"
		x.Notes = append(x.Notes, "internalTrafficPolicy Local and no usable endpoint on the client's node: the connection is dropped (as kube-proxy drops it)")
		x.Allowed = false
		return x, nil
	}
	x.Allowed = true
	for _, b := range backends {
		bep, binfo, err := e.Resolve(b.Address.String())
		if err != nil {
			return nil, fmt.Errorf("backend %s: %w", b.Address, err)
		}
		p := e.path(src, bep, binfo, proto, b.Port)
		x.Paths = append(x.Paths, p)
		x.Allowed = x.Allowed && p.Allowed
	}
	return x, nil
}

func (e *Explainer) path(src, dst evaluator.Endpoint, dstInfo EndpointInfo, proto model.Protocol, port int32) Path {
	v := evaluator.Allowed(e.Cluster, src, dst, proto, port)
	return Path{To: dstInfo, Port: port, Allowed: v.Allowed,
		Egress:  e.direction(model.Egress, src.Pod, v.Egress),
		Ingress: e.direction(model.Ingress, dst.Pod, v.Ingress)}
}

func (e *Explainer) direction(d model.Direction, pod *model.Pod, dec evaluator.Decision) DirectionInfo {
	di := DirectionInfo{Direction: d, Allowed: dec.Allowed, Isolated: dec.Isolated, Policy: dec.Policy, Rule: dec.Rule, Reason: dec.Reason}
	if pod == nil {
		return di
	}
	di.Pod = pod.Key()
	if dec.Isolated {
		di.IsolatedBy = e.IsolatedBy(pod, d)
	}
	return di
}

// IsolatedBy lists what isolates pod for d: every policy selecting it that
// affects d, or the namespace's legacy annotation.
func (e *Explainer) IsolatedBy(pod *model.Pod, d model.Direction) []string {
	c := e.Cluster
	var out []string
	if d == model.Ingress {
		if ns, ok := c.Namespaces[pod.Namespace]; ok && ns.LegacyIsolation.Isolates() {
			_, why := c.Isolated(pod, d)
			out = append(out, why)
		}
	}
	for _, p := range c.SortedPolicies() {
		if c.PolicyAffects(p, d) && c.Selects(p, pod) {
			out = append(out, "policy "+p.Key())
		}
	}
	return out
}

// NodeView is what tracing on one node needs: its live bridge, the
// configuration its agent published, its pods' ports and the compiled view
// that names each flow's origin.
type NodeView struct {
	Bridge   Bridge
	Config   AgentConfig
	Bindings map[string]compiler.Binding
	Node     *Node
}

// OpenNodeView reads the bridge's agent configuration and ports and
// compiles objs as that agent does.
func OpenNodeView(ctx context.Context, b Bridge, objs *manifest.Objects) (*NodeView, error) {
	ac, err := b.AgentConfig(ctx)
	if err != nil {
		return nil, err
	}
	bindings, err := b.Bindings(ctx)
	if err != nil {
		return nil, err
	}
	n, err := CompileNode(objs, ac, bindings)
	if err != nil {
		return nil, fmt.Errorf("compiling node %s's view: %w", printable.String(ac.Node), err)
	}
	return &NodeView{Bridge: b, Config: ac, Bindings: bindings, Node: n}, nil
}

// local reports the binding of a pod attached to this node's bridge.
func (v *NodeView) local(p *model.Pod) (compiler.Binding, bool) {
	if p == nil || p.Node != v.Config.Node {
		return compiler.Binding{}, false
	}
	b, ok := v.Bindings[p.Key()]
	return b, ok
}

// unattached reports whether p is a pod of this node without a port on its
// bridge (not set up yet, or its port lost): it has no flows here, so what
// the bridge does with its traffic says nothing about policy.
func (v *NodeView) unattached(p *model.Pod) bool {
	if p == nil || p.Node != v.Config.Node {
		return false
	}
	_, ok := v.Bindings[p.Key()]
	return !ok
}

// isNodeIP reports whether ip is one the agent treats as this node's own.
func (v *NodeView) isNodeIP(ip netip.Addr) bool {
	for _, a := range v.Config.NodeIPs {
		if a == ip {
			return true
		}
	}
	return false
}

// probe is one packet to trace and what the model says this node must do
// with it.
type probe struct {
	packet   string
	enforces string
	allowed  bool   // the model's verdict for the part this node enforces
	expect   string // the OpenFlow port it must leave by when allowed
	// tunnelPort is the overlay's tunnel port ("" without an overlay);
	// tunnelFrom the node a packet from the tunnel comes from, tunnelTo
	// the node the model expects it sent to (expect is then tunnelPort).
	tunnelPort           string
	tunnelFrom, tunnelTo *model.Node
}

// protoFields renders the transport part of a trace packet. ofproto/trace
// wants udp_dst/sctp_dst for UDP and SCTP (tp_dst is TCP's alias only).
func protoFields(proto model.Protocol, ip6 bool, port int32) string {
	name := strings.ToLower(string(proto))
	p := name
	if ip6 {
		p += "6"
	}
	return fmt.Sprintf("%s,%s_src=40000,%s_dst=%d", p, name, name, port)
}

func ipFields(src, dst netip.Addr) string {
	if src.Is6() {
		return fmt.Sprintf("ipv6_src=%s,ipv6_dst=%s", src, dst)
	}
	return fmt.Sprintf("nw_src=%s,nw_dst=%s", src, dst)
}

// probeFor builds the packet of a new connection src → dstIP:port as this
// node's bridge receives it, and the model's expectation for the part of
// the decision this node makes (dst is the endpoint policy decides on:
// the backend for a Service). ok is false when neither end is on this node.
func (v *NodeView) probeFor(src, dst evaluator.Endpoint, dstIP netip.Addr, proto model.Protocol, port int32, verdict evaluator.Verdict) (probe, bool) {
	sb, srcLocal := v.local(src.Pod)
	db, dstLocal := v.local(dst.Pod)
	if !srcLocal && !dstLocal {
		return probe{}, false
	}
	var pr probe
	var head string
	if v.Config.TunnelPort != 0 {
		pr.tunnelPort = compiler.PortName(v.Config.TunnelPort)
	}
	switch {
	case srcLocal:
		head = fmt.Sprintf("in_port=%s,dl_src=%s", compiler.PortName(sb.OFPort), sb.MAC)
	case v.Config.TunnelPort != 0 && src.Pod != nil:
		// A pod of another node: it comes through the tunnel from its
		// node (callers leave out pods of nodes without one).
		if pr.tunnelFrom = v.remoteNode(src.Pod.Node); pr.tunnelFrom == nil {
			return probe{}, false
		}
		head = v.tunnelHead(pr.tunnelFrom)
	case v.Config.TunnelPort != 0 && v.tunnelNodeOf(src.IP) != nil:
		// Another node's host (its InternalIP, its gateway address) or
		// any address of its pod CIDR.
		pr.tunnelFrom = v.tunnelNodeOf(src.IP)
		head = v.tunnelHead(pr.tunnelFrom)
	case src.Pod != nil && v.Config.UplinkPort != 0:
		// A pod of another node: its packets come over the uplink.
		head = fmt.Sprintf("in_port=%s", compiler.PortName(v.Config.UplinkPort))
	case src.Pod == nil && !v.isNodeIP(src.IP) && len(v.Config.NodeIPs) == 0 && v.Config.UplinkPort != 0:
		// Without node addresses every packet from the gateway counts as
		// node-local: outside traffic is traced from the uplink instead.
		head = fmt.Sprintf("in_port=%s", compiler.PortName(v.Config.UplinkPort))
	default:
		head = fmt.Sprintf("in_port=%s", compiler.PortName(v.Config.GatewayPort))
	}
	if dstLocal {
		head += fmt.Sprintf(",dl_dst=%s", db.MAC)
	}
	pr.packet = fmt.Sprintf("%s,%s,%s", head, protoFields(proto, src.IP.Is6(), port), ipFields(src.IP, dstIP))
	switch {
	case srcLocal && dstLocal:
		pr.enforces, pr.allowed = "egress and ingress", verdict.Allowed
	case srcLocal:
		pr.enforces, pr.allowed = "egress", verdict.Egress.Allowed
	default:
		pr.enforces, pr.allowed = "ingress", verdict.Ingress.Allowed
	}
	switch {
	case dstLocal && srcLocal && sb.OFPort == db.OFPort:
		pr.expect = "IN_PORT" // hairpin: back out of its own port
	case dstLocal:
		pr.expect = compiler.PortName(db.OFPort)
	case v.tunnelNodeOf(dstIP) != nil:
		// Another node's pod CIDR or address: into the tunnel to it.
		pr.tunnelTo = v.tunnelNodeOf(dstIP)
		pr.expect = pr.tunnelPort
	case dst.Pod != nil && dst.Pod.Node != v.Config.Node && v.Config.UplinkPort != 0:
		pr.expect = compiler.PortName(v.Config.UplinkPort)
	default:
		pr.expect = compiler.PortName(v.Config.GatewayPort)
	}
	return pr, true
}

// judge compares a trace with the model's expectation: "" when they agree,
// otherwise what differs.
func (pr probe) judge(t *Trace) string {
	switch {
	case pr.allowed && !pr.sent(t):
		return fmt.Sprintf("the model allows it (%s here) but the bridge %s", pr.enforces, pr.verdict(t))
	case !pr.allowed && pr.sent(t):
		return fmt.Sprintf("the model denies it (%s here) but the bridge %s", pr.enforces, pr.verdict(t))
	case pr.allowed && (len(t.Outputs) != 1 || t.Outputs[0] != pr.expect):
		return fmt.Sprintf("the model allows it and the bridge %s, but it should leave by port %s only", pr.verdict(t), pr.expect)
	case pr.allowed:
		return pr.judgeTunnel(t)
	}
	return ""
}

func (pr probe) expected() string {
	if pr.allowed && pr.tunnelTo != nil {
		name := printable.String(pr.tunnelTo.Name)
		return fmt.Sprintf("delivered to port %s, the tunnel to node %s (tun_dst %s): its ingress is decided on node %s",
			pr.expect, name, pr.tunnelTo.TunnelIP(), name)
	}
	if pr.allowed {
		return "delivered to port " + pr.expect
	}
	return "dropped"
}

// TraceOn traces x's connection on the node's bridge, annotates every
// traversed flow with its origin and sets x.Mismatch when the bridge does
// not do what the model says. It leaves x.Trace nil (with a note) when
// neither end is on this node.
func (e *Explainer) TraceOn(ctx context.Context, v *NodeView, x *Explanation) error {
	src, _, err := e.Resolve(x.From.IP.String())
	if err != nil {
		return err
	}
	if x.From.Kind == "node" {
		// A host-network pod's node, whose address the Node object may
		// not list.
		src = evaluator.Endpoint{IP: x.From.IP, HostOf: x.From.Node}
	}
	dstIP := x.To.IP
	if x.Service != nil && x.Service.Handling == "no local endpoints" {
		return e.traceNoLocal(ctx, v, x, src)
	}
	// The packet is the one the client sends (to the cluster IP for a
	// Service); the model's expectation comes from the path that matches
	// where the bridge sent it (the backend its balancer picked).
	pathFor := func(ip netip.Addr) *Path {
		for i := range x.Paths {
			if x.Paths[i].To.IP == ip {
				return &x.Paths[i]
			}
		}
		return nil
	}
	first := &x.Paths[0]
	dst, _, err := e.Resolve(first.To.IP.String())
	if err != nil {
		return err
	}
	// A Service port without endpoints is not balanced: its single path
	// is the source's egress toward the cluster IP.
	balanced := x.Service != nil && x.Service.Handling == "balanced"
	if balanced {
		// Whether the node is involved does not depend on the backend for
		// the source side; for the destination side each backend may
		// differ, so decide after the trace.
		dst = evaluator.Endpoint{IP: dstIP}
		if _, srcLocal := v.local(src.Pod); !srcLocal {
			x.Notes = append(x.Notes, fmt.Sprintf("the client is not on node %s: Services are balanced on the client's node, so this node's bridge is not traced", printable.String(v.Config.Node)))
			return nil
		}
	}
	for _, p := range []*model.Pod{src.Pod, dst.Pod} {
		if v.unattached(p) {
			x.Notes = append(x.Notes, fmt.Sprintf("pod %s runs on node %s but has no port on its bridge (not set up yet?): nothing to trace", printable.String(p.Key()), printable.String(v.Config.Node)))
			return nil
		}
		if _, why := v.overlayProblem(p); why != "" {
			x.Notes = append(x.Notes, why)
			return nil
		}
	}
	verdict := evaluator.Allowed(e.Cluster, src, dst, x.Protocol, first.Port)
	pr, ok := v.probeFor(src, dst, dstIP, x.Protocol, x.Port, verdict)
	if !ok {
		x.Notes = append(x.Notes, fmt.Sprintf("neither %s nor %s is attached to node %s's bridge: nothing to trace here", x.From, x.To, printable.String(v.Config.Node)))
		return nil
	}
	t, err := v.Bridge.Trace(ctx, pr.packet)
	if err != nil {
		return fmt.Errorf("tracing on node %s: %w", printable.String(v.Config.Node), err)
	}
	ti := &TraceInfo{Node: v.Config.Node, Bridge: v.Bridge.name(), Packet: pr.packet, Verdict: pr.verdict(t),
		Delivered: pr.sent(t), Outputs: t.Outputs, TunnelFrom: tunnelEnd(pr.tunnelFrom)}
	if balanced {
		// The verdict to compare with is the picked backend's.
		addr, err := netip.ParseAddr(t.FinalField(ipDstField(dstIP)))
		p := pathFor(addr)
		if err != nil || p == nil {
			ti.Backend = t.FinalField(ipDstField(dstIP))
			x.Mismatch = fmt.Sprintf("the bridge sent the connection to %s, which is not a backend the model picks for %s port %d", printable.String(ti.Backend), printable.String(x.Service.Service), x.Port)
			ti.Steps = e.annotate(v, t, src, nil)
			ti.Enforces, ti.Expected = pr.enforces, "one of the backends"
			x.Trace = ti
			return nil
		}
		ti.Backend = fmt.Sprintf("%s port %d", p.To, p.Port)
		bdst, _, err := e.Resolve(p.To.IP.String())
		if err != nil {
			return err
		}
		if _, why := v.overlayProblem(bdst.Pod); why != "" {
			x.Notes = append(x.Notes, "the bridge's load balancer picked "+ti.Backend+": "+why)
			return nil
		}
		bv := evaluator.Allowed(e.Cluster, src, bdst, x.Protocol, p.Port)
		if pr, ok = v.probeFor(src, bdst, p.To.IP, x.Protocol, p.Port, bv); !ok {
			return fmt.Errorf("internal error: no probe for a local client")
		}
		dst = bdst
	}
	ti.Enforces, ti.Expected = pr.enforces, pr.expected()
	if pr.allowed {
		// Where the model expects it to go (a denied packet goes nowhere).
		ti.TunnelTo = tunnelEnd(pr.tunnelTo)
	}
	ti.Steps = e.annotate(v, t, src, dst.Pod)
	if m := pr.judge(t); m != "" {
		x.Mismatch = m
	} else {
		ti.Agrees = true
	}
	x.Trace = ti
	return nil
}

func ipDstField(ip netip.Addr) string {
	if ip.Is6() {
		return "ipv6_dst"
	}
	return "nw_dst"
}

// traceNoLocal traces a connection to a Service port that has no endpoint
// on the client's node under internalTrafficPolicy Local: the bridge must
// drop it.
func (e *Explainer) traceNoLocal(ctx context.Context, v *NodeView, x *Explanation, src evaluator.Endpoint) error {
	sb, ok := v.local(src.Pod)
	if !ok {
		x.Notes = append(x.Notes, fmt.Sprintf("the client is not on node %s: nothing to trace here", printable.String(v.Config.Node)))
		return nil
	}
	pkt := fmt.Sprintf("in_port=%s,dl_src=%s,%s,%s", compiler.PortName(sb.OFPort), sb.MAC, protoFields(x.Protocol, src.IP.Is6(), x.Port), ipFields(src.IP, x.To.IP))
	t, err := v.Bridge.Trace(ctx, pkt)
	if err != nil {
		return fmt.Errorf("tracing on node %s: %w", printable.String(v.Config.Node), err)
	}
	ti := &TraceInfo{Node: v.Config.Node, Bridge: v.Bridge.name(), Packet: pkt, Verdict: t.Verdict(), Delivered: t.Delivered,
		Outputs: t.Outputs, Enforces: "the Service's load balancing", Expected: "dropped", Agrees: !t.Delivered,
		Steps: e.annotate(v, t, src, nil)}
	if t.Delivered {
		x.Mismatch = "the model drops it (no local endpoint) but the bridge " + t.Verdict()
	}
	x.Trace = ti
	return nil
}

// annotate names each traversed flow's origin; an isolation drop in the
// egress or ingress table also says what isolates which pod.
func (e *Explainer) annotate(v *NodeView, t *Trace, src evaluator.Endpoint, dstPod *model.Pod) []TracedStep {
	out := make([]TracedStep, 0, len(t.Steps))
	for _, s := range t.Steps {
		ts := TracedStep{TraceStep: s}
		if s.Miss {
			ts.Origin = "table miss"
		} else {
			ts.Origin = v.Node.Origin(s.Flow())
		}
		if s.Drops() && s.Priority == compiler.PrioIsolation {
			var pod *model.Pod
			var d model.Direction
			switch s.Table {
			case compiler.TableEgress:
				pod, d = src.Pod, model.Egress
			case compiler.TableIngress:
				pod, d = dstPod, model.Ingress
			}
			if pod != nil {
				by := e.IsolatedBy(pod, d)
				if len(by) == 0 {
					by = []string{"nothing in the model (stale flow?)"}
				}
				ts.Origin += fmt.Sprintf(" — isolation of pod %s for %s (isolated by %s): no rule allowed the connection", printable.String(pod.Key()), d, printable.String(strings.Join(by, ", ")))
			}
		}
		out = append(out, ts)
	}
	return out
}

// WriteExplanation renders x for people.
func WriteExplanation(w io.Writer, x *Explanation) error {
	var b strings.Builder
	fmt.Fprintf(&b, "connection: %s port %d\n  from %s\n  to   %s\n", x.Protocol, x.Port, x.From, x.To)
	if x.Service != nil {
		fmt.Fprintf(&b, "Service %s port %d: %s", printable.String(x.Service.Service), x.Service.Port, x.Service.Handling)
		if x.Service.Handling == "balanced" {
			fmt.Fprintf(&b, " over %d backend(s), each decided below", len(x.Paths))
		}
		b.WriteByte('\n')
	}
	verdict := "DENIED"
	if x.Allowed {
		verdict = "ALLOWED"
	}
	fmt.Fprintf(&b, "model verdict: %s\n", verdict)
	for _, p := range x.Paths {
		word := "denied"
		if p.Allowed {
			word = "allowed"
		}
		switch {
		case x.Service != nil && x.Service.Handling == "balanced":
			fmt.Fprintf(&b, "  backend %s port %d: %s\n", p.To, p.Port, word)
		case x.Service != nil:
			fmt.Fprintf(&b, "  toward the cluster IP itself (no backend), as far as this node's policy goes: %s\n", word)
		}
		for _, d := range []DirectionInfo{p.Egress, p.Ingress} {
			fmt.Fprintf(&b, "    %-7s %s\n", d.Direction+":", directionWords(d))
		}
	}
	for _, n := range x.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	if t := x.Trace; t != nil {
		fmt.Fprintf(&b, "trace on node %s (bridge %s), which decides %s here:\n", printable.String(t.Node), printable.String(t.Bridge), t.Enforces)
		fmt.Fprintf(&b, "  packet: %s\n", t.Packet)
		if t.Backend != "" {
			fmt.Fprintf(&b, "  the bridge's load balancer picked %s\n", t.Backend)
		}
		if f := t.TunnelFrom; f != nil {
			fmt.Fprintf(&b, "  the packet arrives through the tunnel from node %s (tun_src %s): its egress was decided on node %s\n",
				printable.String(f.Node), f.Endpoint, printable.String(f.Node))
		}
		if to := t.TunnelTo; to != nil {
			fmt.Fprintf(&b, "  the packet leaves through the tunnel to node %s (tun_dst %s): its ingress is decided on node %s, not traced here\n",
				printable.String(to.Node), to.Endpoint, printable.String(to.Node))
		}
		for _, s := range t.Steps {
			fmt.Fprintf(&b, "  %s\n      origin: %s\n", s.TraceStep, s.Origin)
		}
		agree := "agrees with the model"
		if !t.Agrees {
			agree = "DISAGREES with the model"
		}
		fmt.Fprintf(&b, "  bridge: %s; model: %s: %s\n", t.Verdict, t.Expected, agree)
	}
	if x.Mismatch != "" {
		fmt.Fprintf(&b, "MISMATCH between the model and the bridge: %s\n", x.Mismatch)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func directionWords(d DirectionInfo) string {
	switch {
	case d.Pod == "":
		return printable.String(d.Reason)
	case !d.Isolated:
		return fmt.Sprintf("pod %s is not isolated for %s", printable.String(d.Pod), d.Direction)
	case d.Allowed && d.Policy != "":
		return fmt.Sprintf("allowed by policy %s %s rule %d (pod %s is isolated by %s)", printable.String(d.Policy), d.Direction, d.Rule,
			printable.String(d.Pod), printable.String(strings.Join(d.IsolatedBy, ", ")))
	case d.Allowed:
		return printable.String(d.Reason)
	}
	return fmt.Sprintf("DENIED: pod %s is isolated for %s by %s and no rule allows this connection", printable.String(d.Pod), d.Direction,
		printable.String(strings.Join(d.IsolatedBy, ", ")))
}
