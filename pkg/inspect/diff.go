package inspect

// What-if of a change before `kubectl apply`: the live objects with the
// changed ones applied (Overlay), the objects that differ (ObjectChanges),
// the connections that open or close (Connections, decided by
// pkg/evaluator before and after), and the flows and groups a node gains
// or loses (FlowDiff, from CompileNode before and after). Pure: no I/O.

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	extv1beta1 "k8s.io/api/extensions/v1beta1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ovs-netpol/ovs-netpol/pkg/evaluator"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// ---- applying the change to the live objects

// Overlay returns the live objects as they would be after `kubectl apply`
// of apply and `kubectl delete` of del (either may be nil), and warnings
// about what the what-if cannot know. An object is identified by kind,
// namespace and name (a NetworkPolicy of either API version is one
// object). What apply keeps of the live object, as the API server does:
//
//   - Pod: the live pod with the file's labels and annotations (a pod's
//     spec is immutable but for images; its status is the kubelet's); a new
//     pod is taken as written: without status.podIP it has no address yet
//     and no connections;
//   - Node: the live node with the file's labels;
//   - Service: the file's, keeping the live cluster IPs when the file has
//     none (the API server allocated them);
//   - Namespace, NetworkPolicy, EndpointSlice: the file's.
//
// Deleting an object that is not live is a warning, as is a new pod without
// an address.
func Overlay(live, apply, del *manifest.Objects) (*manifest.Objects, []string) {
	out := &manifest.Objects{Sources: map[runtime.Object]manifest.Source{}}
	for obj, src := range live.Sources {
		out.Sources[obj] = src
	}
	var warnings []string
	if apply == nil {
		apply = &manifest.Objects{}
	}
	gone := map[string]bool{}
	if del != nil {
		liveKeys := map[string]bool{}
		for _, obj := range objectsOf(live) {
			liveKeys[objectKey(obj)] = true
		}
		for _, obj := range objectsOf(del) {
			k := objectKey(obj)
			gone[k] = true
			if !liveKeys[k] {
				warnings = append(warnings, del.Where(obj)+": not in the cluster: nothing to delete")
			}
		}
	}
	applied := map[string]runtime.Object{}
	for _, obj := range objectsOf(apply) {
		applied[objectKey(obj)] = obj
		if src, ok := apply.Sources[obj]; ok {
			out.Sources[obj] = src
		}
	}
	used := map[string]bool{}
	// take returns what replaces the live object (nil: it is deleted).
	take := func(liveObj runtime.Object) runtime.Object {
		k := objectKey(liveObj)
		if gone[k] {
			return nil
		}
		newObj, ok := applied[k]
		if !ok {
			return liveObj
		}
		used[k] = true
		return merge(liveObj, newObj)
	}
	for _, o := range live.Namespaces {
		if n := take(o); n != nil {
			out.Namespaces = append(out.Namespaces, n.(*corev1.Namespace))
		}
	}
	for _, o := range live.Pods {
		if n := take(o); n != nil {
			out.Pods = append(out.Pods, n.(*corev1.Pod))
		}
	}
	for _, o := range live.Nodes {
		if n := take(o); n != nil {
			out.Nodes = append(out.Nodes, n.(*corev1.Node))
		}
	}
	addPolicy := func(n runtime.Object) {
		switch p := n.(type) {
		case *networkingv1.NetworkPolicy:
			out.PoliciesV1 = append(out.PoliciesV1, p)
		case *extv1beta1.NetworkPolicy:
			out.PoliciesV1beta1 = append(out.PoliciesV1beta1, p)
		}
	}
	for _, o := range live.PoliciesV1 {
		if n := take(o); n != nil {
			addPolicy(n)
		}
	}
	for _, o := range live.PoliciesV1beta1 {
		if n := take(o); n != nil {
			addPolicy(n)
		}
	}
	for _, o := range live.Services {
		if n := take(o); n != nil {
			out.Services = append(out.Services, n.(*corev1.Service))
		}
	}
	for _, o := range live.EndpointSlices {
		if n := take(o); n != nil {
			out.EndpointSlices = append(out.EndpointSlices, n.(*discoveryv1.EndpointSlice))
		}
	}
	// New objects, in the files' order.
	for _, obj := range objectsOf(apply) {
		k := objectKey(obj)
		if used[k] || gone[k] {
			continue
		}
		switch v := obj.(type) {
		case *corev1.Namespace:
			out.Namespaces = append(out.Namespaces, v)
		case *corev1.Pod:
			if v.Status.PodIP == "" && !v.Spec.HostNetwork {
				warnings = append(warnings, apply.Where(obj)+": a new pod has no address until it runs: its connections are not evaluated")
			}
			out.Pods = append(out.Pods, v)
		case *corev1.Node:
			out.Nodes = append(out.Nodes, v)
		case *networkingv1.NetworkPolicy, *extv1beta1.NetworkPolicy:
			addPolicy(v)
		case *corev1.Service:
			out.Services = append(out.Services, v)
		case *discoveryv1.EndpointSlice:
			out.EndpointSlices = append(out.EndpointSlices, v)
		}
	}
	return out, warnings
}

// merge is what the API server keeps of liveObj when newObj is applied
// over it (see Overlay).
func merge(liveObj, newObj runtime.Object) runtime.Object {
	switch l := liveObj.(type) {
	case *corev1.Pod:
		n := newObj.(*corev1.Pod)
		p := l.DeepCopy()
		p.Labels, p.Annotations = n.Labels, n.Annotations
		return p
	case *corev1.Node:
		n := newObj.(*corev1.Node)
		p := l.DeepCopy()
		p.Labels = n.Labels
		return p
	case *corev1.Service:
		n := newObj.(*corev1.Service).DeepCopy()
		if n.Spec.ClusterIP == "" && len(n.Spec.ClusterIPs) == 0 {
			n.Spec.ClusterIP, n.Spec.ClusterIPs = l.Spec.ClusterIP, l.Spec.ClusterIPs
			if len(n.Spec.IPFamilies) == 0 {
				n.Spec.IPFamilies = l.Spec.IPFamilies
			}
		}
		return n
	}
	return newObj
}

// objectsOf lists every object of o, kind by kind.
func objectsOf(o *manifest.Objects) []runtime.Object {
	var out []runtime.Object
	for _, v := range o.Namespaces {
		out = append(out, v)
	}
	for _, v := range o.Pods {
		out = append(out, v)
	}
	for _, v := range o.Nodes {
		out = append(out, v)
	}
	for _, v := range o.PoliciesV1 {
		out = append(out, v)
	}
	for _, v := range o.PoliciesV1beta1 {
		out = append(out, v)
	}
	for _, v := range o.Services {
		out = append(out, v)
	}
	for _, v := range o.EndpointSlices {
		out = append(out, v)
	}
	return out
}

// objectKey is "Kind/namespace/name": both NetworkPolicy versions are one
// resource.
func objectKey(obj runtime.Object) string {
	switch v := obj.(type) {
	case *corev1.Namespace:
		return "Namespace//" + v.Name
	case *corev1.Pod:
		return "Pod/" + v.Namespace + "/" + v.Name
	case *corev1.Node:
		return "Node//" + v.Name
	case *networkingv1.NetworkPolicy:
		return "NetworkPolicy/" + v.Namespace + "/" + v.Name
	case *extv1beta1.NetworkPolicy:
		return "NetworkPolicy/" + v.Namespace + "/" + v.Name
	case *corev1.Service:
		return "Service/" + v.Namespace + "/" + v.Name
	case *discoveryv1.EndpointSlice:
		return "EndpointSlice/" + v.Namespace + "/" + v.Name
	}
	return fmt.Sprintf("%T", obj)
}

// ---- what changed, in the model

// ChangeOp says how an object changes.
type ChangeOp string

const (
	Added   ChangeOp = "added"
	Changed ChangeOp = "changed"
	Deleted ChangeOp = "deleted"
)

// ObjectChange is one object that differs in what policy depends on.
type ObjectChange struct {
	Kind string   `json:"kind"` // NetworkPolicy, Pod, Namespace, Service, EndpointSlice
	Key  string   `json:"key"`  // namespace/name (name for a Namespace)
	Op   ChangeOp `json:"op"`
}

func (c ObjectChange) String() string {
	return fmt.Sprintf("%s %s %s", c.Kind, printable.String(c.Key), c.Op)
}

// ObjectChanges lists the objects of the model that differ between before
// and after, sorted by kind and key. Objects that differ only in what
// policy does not read (a Pod's image, a policy's annotations) are not
// listed.
func ObjectChanges(before, after *model.Cluster) []ObjectChange {
	var out []ObjectChange
	add := func(kind string, b, a map[string]string) {
		for k, bv := range b {
			av, ok := a[k]
			switch {
			case !ok:
				out = append(out, ObjectChange{kind, k, Deleted})
			case av != bv:
				out = append(out, ObjectChange{kind, k, Changed})
			}
		}
		for k := range a {
			if _, ok := b[k]; !ok {
				out = append(out, ObjectChange{kind, k, Added})
			}
		}
	}
	add("NetworkPolicy", policyTexts(before), policyTexts(after))
	add("Pod", podTexts(before), podTexts(after))
	add("Namespace", textsOf(before.Namespaces, namespaceText), textsOf(after.Namespaces, namespaceText))
	add("Service", textsOf(before.Services, func(s *model.Service) string { return fmt.Sprintf("%#v", *s) }),
		textsOf(after.Services, func(s *model.Service) string { return fmt.Sprintf("%#v", *s) }))
	add("EndpointSlice", textsOf(before.EndpointSlices, sliceText), textsOf(after.EndpointSlices, sliceText))
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return kindOrder(out[i].Kind) < kindOrder(out[j].Kind)
		}
		return out[i].Key < out[j].Key
	})
	return out
}

func kindOrder(kind string) int {
	return slices.Index([]string{"NetworkPolicy", "Namespace", "Pod", "Service", "EndpointSlice"}, kind)
}

func textsOf[V any](m map[string]V, text func(V) string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = text(v)
	}
	return out
}

func policyTexts(c *model.Cluster) map[string]string {
	return textsOf(c.Policies, policyText)
}

// podTexts keys pods by namespace/name (UIDs of a pod written in a file
// are made up).
func podTexts(c *model.Cluster) map[string]string {
	out := make(map[string]string, len(c.Pods))
	for _, p := range c.Pods {
		out[p.Key()] = podText(p)
	}
	return out
}

// policyText renders everything of a normalized policy that decisions
// depend on, canonically: equal texts decide alike.
func policyText(p *model.Policy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "select %q ingress=%t egress=%t", selectorText(p.PodSelector), p.AffectsIngress, p.AffectsEgress)
	for _, d := range []model.Direction{model.Ingress, model.Egress} {
		for i, r := range p.Rules(d) {
			fmt.Fprintf(&b, "\n%s %d:", d, i)
			for _, peer := range r.Peers {
				switch {
				case peer.IPBlock != nil:
					fmt.Fprintf(&b, " ipBlock(%s except %v)", peer.IPBlock.CIDR, peer.IPBlock.Except)
				default:
					fmt.Fprintf(&b, " pods(ns %q, pods %q)", selectorText(peer.NamespaceSelector), selectorText(peer.PodSelector))
				}
			}
			b.WriteString(" ports:")
			for _, ps := range r.Ports {
				b.WriteString(" " + ps.String())
			}
		}
	}
	return b.String()
}

func selectorText(s labels.Selector) string {
	if s == nil {
		return "<none>"
	}
	return "{" + s.String() + "}"
}

func podText(p *model.Pod) string {
	return fmt.Sprintf("uid=%s labels=%s node=%s ips=%v ports=%v phase=%s host=%t", p.UID, labels.Set(p.Labels).String(), p.Node, p.IPs, p.Ports, p.Phase, p.HostNetwork)
}

func namespaceText(n *model.Namespace) string {
	return fmt.Sprintf("labels=%s legacy=%d", labels.Set(n.Labels).String(), n.LegacyIsolation)
}

func sliceText(e *model.EndpointSlice) string { return fmt.Sprintf("%#v", *e) }

// ---- ports a change can matter on

// PortClass is a set of ports of one protocol that every policy of both
// states treats alike: one of them (Sample) decides for all. Other is the
// class of the ports no policy names (Ranges then lists them).
type PortClass struct {
	Protocol model.Protocol `json:"protocol"`
	// Ranges are inclusive [first, last] port ranges, sorted.
	Ranges [][2]int32 `json:"ranges"`
	Sample int32      `json:"sample"`
	Other  bool       `json:"other,omitempty"`
}

// String renders "TCP/80", "TCP/1000-2000", "UDP/53,5353" or "TCP/other".
func (p PortClass) String() string {
	if p.Other {
		return string(p.Protocol) + "/other"
	}
	parts := make([]string, len(p.Ranges))
	for i, r := range p.Ranges {
		parts[i] = strconv.Itoa(int(r[0]))
		if r[1] != r[0] {
			parts[i] += "-" + strconv.Itoa(int(r[1]))
		}
	}
	return string(p.Protocol) + "/" + strings.Join(parts, ",")
}

// Contains reports whether proto/port is in the class.
func (p PortClass) Contains(proto model.Protocol, port int32) bool {
	if proto != p.Protocol {
		return false
	}
	for _, r := range p.Ranges {
		if port >= r[0] && port <= r[1] {
			return true
		}
	}
	return false
}

// PortClasses partitions the ports of TCP, UDP and SCTP by the policies of
// the clusters given: each port, range and named port (resolved against
// every pod's container ports) a policy names bounds the classes, and the
// ports no policy names form each protocol's "other" class. A connection's
// verdict is the same for every port of a class, so checking Sample covers
// it.
func PortClasses(clusters ...*model.Cluster) []PortClass {
	type interval struct{ lo, hi int32 }
	byProto := map[model.Protocol][]interval{}
	for _, c := range clusters {
		for _, p := range c.Policies {
			for _, d := range []model.Direction{model.Ingress, model.Egress} {
				for _, r := range p.Rules(d) {
					for _, ps := range r.Ports {
						switch {
						case ps.Name != "":
							for _, n := range namedPortNumbers(c, ps) {
								byProto[ps.Protocol] = append(byProto[ps.Protocol], interval{n, n})
							}
						case ps.Port == 0: // every port of the protocol: no bound
						case ps.EndPort != 0:
							byProto[ps.Protocol] = append(byProto[ps.Protocol], interval{ps.Port, ps.EndPort})
						default:
							byProto[ps.Protocol] = append(byProto[ps.Protocol], interval{ps.Port, ps.Port})
						}
					}
				}
			}
		}
	}
	var out []PortClass
	for _, proto := range model.Protocols {
		ivs := byProto[proto]
		cuts := map[int32]bool{1: true, 65536: true}
		for _, iv := range ivs {
			cuts[iv.lo] = true
			cuts[iv.hi+1] = true
		}
		points := make([]int32, 0, len(cuts))
		for p := range cuts {
			points = append(points, p)
		}
		slices.Sort(points)
		// Segments between cuts: every port of one is covered by the same
		// intervals; segments covered alike form one class.
		classes := map[string]*PortClass{}
		var order []string
		for i := 0; i+1 < len(points); i++ {
			lo, hi := points[i], points[i+1]-1
			var sig []string
			for j, iv := range ivs {
				if iv.lo <= lo && hi <= iv.hi {
					sig = append(sig, strconv.Itoa(j))
				}
			}
			key := strings.Join(sig, ",")
			pc := classes[key]
			if pc == nil {
				pc = &PortClass{Protocol: proto, Sample: lo, Other: len(sig) == 0}
				classes[key] = pc
				order = append(order, key)
			}
			if n := len(pc.Ranges); n > 0 && pc.Ranges[n-1][1]+1 == lo {
				pc.Ranges[n-1][1] = hi
			} else {
				pc.Ranges = append(pc.Ranges, [2]int32{lo, hi})
			}
		}
		var named, other []PortClass
		for _, k := range order {
			if classes[k].Other {
				other = append(other, *classes[k])
			} else {
				named = append(named, *classes[k])
			}
		}
		out = append(out, named...)
		out = append(out, other...)
	}
	return out
}

// ---- connections that open or close

// Endpoint is one side of a connection in a diff: a pod (Name is
// namespace/name), a node's host (Name is the node), or an external
// address (Name is the address).
type Endpoint struct {
	Kind string     `json:"kind"` // pod, node, external
	Name string     `json:"name"`
	IP   netip.Addr `json:"ip"`
}

func (e Endpoint) String() string {
	switch e.Kind {
	case "pod":
		return printable.String(e.Name)
	case "node":
		return "node " + printable.String(e.Name)
	}
	return e.IP.String()
}

// ConnChange is one connection (new connections from From to To on a port
// class) that a change opens or closes.
type ConnChange struct {
	From  Endpoint  `json:"from"`
	To    Endpoint  `json:"to"`
	Ports PortClass `json:"ports"`
	// Opens: denied before, allowed after; else allowed before, denied after.
	Opens bool `json:"opens"`
	// Before and After are the evaluator's reasons (egress; ingress).
	Before string `json:"before"`
	After  string `json:"after"`
	// Causes are the changed policies (namespace/name) that select the side
	// whose decision changed; empty when the change comes from other
	// objects (pod or namespace labels, a deleted pod's policy peers, ...).
	Causes []string `json:"causes,omitempty"`
}

// ConnOptions are the endpoints besides pods.
type ConnOptions struct {
	// Nodes are node addresses by node name: each node's host as a source
	// to pods of other nodes (a pod's own node always reaches it), and as
	// a destination of pods' egress.
	Nodes map[string][]netip.Addr
	// External addresses are checked as sources to every pod and as
	// destinations of every pod's egress.
	External []netip.Addr
}

// Connections decides, with pkg/evaluator, every new connection between
// pods present (active, with addresses) in both states, and between them
// and the nodes and external addresses of opts, on every port class of
// PortClasses(before, after), before and after; it returns those whose
// verdict differs, sorted by cause, source, destination and port. Pods
// added or deleted by the change are not paired (their connections only
// begin or end with them).
func Connections(before, after *model.Cluster, opts ConnOptions) []ConnChange {
	classes := PortClasses(before, after)
	bPods, aPods := podsByKey(before), podsByKey(after)
	var keys []string
	for k, a := range aPods {
		if b, ok := bPods[k]; ok && len(a.IPs) > 0 && len(b.IPs) > 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	changedPolicies := map[string]bool{}
	for _, c := range ObjectChanges(before, after) {
		if c.Kind == "NetworkPolicy" {
			changedPolicies[c.Key] = true
		}
	}
	// A pair's verdict can change only if a changed policy selects its
	// source for egress or its destination for ingress in either state,
	// or one of its pods changed (labels, addresses, ports, its
	// namespace's labels or annotation): the policies selecting a pod and
	// the peers matching it depend on nothing else. Other pairs are not
	// evaluated (TestConnectionsMatchBruteForce).
	changedNS := map[string]bool{}
	bNS, aNS := textsOf(before.Namespaces, namespaceText), textsOf(after.Namespaces, namespaceText)
	for k, v := range aNS {
		if bNS[k] != v {
			changedNS[k] = true
		}
	}
	for k := range bNS {
		if _, ok := aNS[k]; !ok {
			changedNS[k] = true
		}
	}
	egressOK, ingressOK := map[string]bool{}, map[string]bool{}
	for _, k := range keys {
		changed := podText(bPods[k]) != podText(aPods[k]) || changedNS[aPods[k].Namespace]
		egressOK[k] = changed || len(causes(before, after, changedPolicies, model.Egress, bPods[k], aPods[k])) > 0
		ingressOK[k] = changed || len(causes(before, after, changedPolicies, model.Ingress, bPods[k], aPods[k])) > 0
	}

	var out []ConnChange
	check := func(from, to Endpoint, bSrc, bDst, aSrc, aDst evaluator.Endpoint, srcKey, dstKey string) {
		for _, pc := range classes {
			vb := evaluator.Allowed(before, bSrc, bDst, pc.Protocol, pc.Sample)
			va := evaluator.Allowed(after, aSrc, aDst, pc.Protocol, pc.Sample)
			if vb.Allowed == va.Allowed {
				continue
			}
			cc := ConnChange{From: from, To: to, Ports: pc, Opens: va.Allowed, Before: vb.String(), After: va.String()}
			set := map[string]bool{}
			if vb.Egress.Allowed != va.Egress.Allowed && srcKey != "" {
				for _, p := range causes(before, after, changedPolicies, model.Egress, bPods[srcKey], aPods[srcKey]) {
					set[p] = true
				}
			}
			if vb.Ingress.Allowed != va.Ingress.Allowed && dstKey != "" {
				for _, p := range causes(before, after, changedPolicies, model.Ingress, bPods[dstKey], aPods[dstKey]) {
					set[p] = true
				}
			}
			for p := range set {
				cc.Causes = append(cc.Causes, p)
			}
			sort.Strings(cc.Causes)
			out = append(out, cc)
		}
	}
	podEnd := func(k string, ip netip.Addr) Endpoint { return Endpoint{Kind: "pod", Name: k, IP: ip} }
	for _, sk := range keys {
		for _, dk := range keys {
			if !egressOK[sk] && !ingressOK[dk] {
				continue
			}
			bs, as, bd, ad := bPods[sk], aPods[sk], bPods[dk], aPods[dk]
			for _, dip := range ad.IPs {
				sip, ok := sameFamily(as.IPs, dip)
				bsip, ok1 := sameFamily(bs.IPs, dip)
				bdip, ok2 := sameFamily(bd.IPs, dip)
				if !ok || !ok1 || !ok2 {
					continue
				}
				check(podEnd(sk, sip), podEnd(dk, dip),
					evaluator.PodEndpoint(bs, bsip), evaluator.PodEndpoint(bd, bdip),
					evaluator.PodEndpoint(as, sip), evaluator.PodEndpoint(ad, dip), sk, dk)
			}
		}
	}
	// Nodes and external addresses: as sources to pods, and as
	// destinations of pods' egress.
	type host struct {
		end  Endpoint
		node string
	}
	var hosts []host
	nodeNames := make([]string, 0, len(opts.Nodes))
	for n := range opts.Nodes {
		nodeNames = append(nodeNames, n)
	}
	sort.Strings(nodeNames)
	for _, n := range nodeNames {
		for _, ip := range opts.Nodes[n] {
			hosts = append(hosts, host{Endpoint{Kind: "node", Name: n, IP: ip}, n})
		}
	}
	for _, ip := range opts.External {
		hosts = append(hosts, host{Endpoint{Kind: "external", Name: ip.String(), IP: ip}, ""})
	}
	for _, h := range hosts {
		src := evaluator.Endpoint{IP: h.end.IP, HostOf: h.node}
		for _, k := range keys {
			bp, ap := bPods[k], aPods[k]
			if h.node != "" && (ap.Node == h.node || bp.Node == h.node) {
				continue // a pod's own node always reaches it
			}
			bip, ok1 := sameFamily(bp.IPs, h.end.IP)
			aip, ok2 := sameFamily(ap.IPs, h.end.IP)
			if !ok1 || !ok2 {
				continue
			}
			if ingressOK[k] {
				check(h.end, podEnd(k, aip), src, evaluator.PodEndpoint(bp, bip), src, evaluator.PodEndpoint(ap, aip), "", k)
			}
			if egressOK[k] {
				dst := evaluator.Endpoint{IP: h.end.IP, HostOf: h.node}
				check(podEnd(k, aip), h.end, evaluator.PodEndpoint(bp, bip), dst, evaluator.PodEndpoint(ap, aip), dst, k, "")
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if ca, cb := strings.Join(a.Causes, ","), strings.Join(b.Causes, ","); ca != cb {
			return ca < cb
		}
		if a.From.String() != b.From.String() {
			return a.From.String() < b.From.String()
		}
		return a.To.String() < b.To.String()
	})
	return out
}

// causes are the changed policies that select pod for d in either state
// (b and a are the pod before and after; either may be nil).
func causes(before, after *model.Cluster, changed map[string]bool, d model.Direction, b, a *model.Pod) []string {
	var out []string
	for key := range changed {
		if p, ok := before.Policies[key]; ok && b != nil && before.PolicyAffects(p, d) && before.Selects(p, b) {
			out = append(out, key)
			continue
		}
		if p, ok := after.Policies[key]; ok && a != nil && after.PolicyAffects(p, d) && after.Selects(p, a) {
			out = append(out, key)
		}
	}
	sort.Strings(out)
	return out
}

// podsByKey are the active pods by namespace/name.
func podsByKey(c *model.Cluster) map[string]*model.Pod {
	out := map[string]*model.Pod{}
	for _, p := range c.SortedPods() {
		if p.Active() {
			out[p.Key()] = p
		}
	}
	return out
}

func sameFamily(ips []netip.Addr, like netip.Addr) (netip.Addr, bool) {
	for _, ip := range ips {
		if ip.Is4() == like.Is4() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// ---- flows and groups a node gains or loses

// FlowChange is one flow (as `ovs-ofctl dump-flows --no-names` prints it,
// up to the order of its match fields) a node gains or loses, with its
// origin (Node.CompiledOrigin in the state it belongs to).
type FlowChange struct {
	Added  bool          `json:"added"`
	Flow   openflow.Flow `json:"-"`
	Text   string        `json:"flow"`
	Origin string        `json:"origin"`
}

// GroupChange is one Service group a node gains or loses (a changed group
// is one lost and one gained).
type GroupChange struct {
	Added  bool   `json:"added"`
	Text   string `json:"group"`
	Origin string `json:"origin"`
}

// flowText is a compiled flow's identity with its cookie and actions: two
// flows OVS holds as one, installed alike, have the same.
type flowText struct {
	table    uint8
	priority uint16
	cookie   openflow.Cookie
	match    string // Match.Sorted
	actions  string
}

// FlowDiff compares the flows (their typed values render them as they read
// on the bridge) and groups of one node before and after. A flow whose
// actions change is one removed and one added. The result is sorted by
// origin, then removed before added, then by flow.
func FlowDiff(before, after *Node) ([]FlowChange, []GroupChange) {
	texts := func(n *Node) map[flowText]openflow.Flow {
		m := make(map[flowText]openflow.Flow, len(n.Result.Flows))
		for _, f := range n.Result.Flows {
			m[flowText{f.Table, f.Priority, f.Cookie, f.Match.Sorted(), f.ActionsText()}] = f
		}
		return m
	}
	bt, at := texts(before), texts(after)
	var flows []FlowChange
	for k, f := range bt {
		if _, ok := at[k]; !ok {
			flows = append(flows, FlowChange{Added: false, Flow: f, Text: f.String(), Origin: before.CompiledOrigin(f)})
		}
	}
	for k, f := range at {
		if _, ok := bt[k]; !ok {
			flows = append(flows, FlowChange{Added: true, Flow: f, Text: f.String(), Origin: after.CompiledOrigin(f)})
		}
	}
	sort.Slice(flows, func(i, j int) bool {
		a, b := flows[i], flows[j]
		if a.Origin != b.Origin {
			return a.Origin < b.Origin
		}
		if a.Added != b.Added {
			return !a.Added
		}
		return openflow.Less(a.Flow, b.Flow)
	})
	gtexts := func(n *Node) map[string]openflow.Group {
		m := map[string]openflow.Group{}
		for _, g := range n.Result.Groups {
			m[g.String()] = g
		}
		return m
	}
	bg, ag := gtexts(before), gtexts(after)
	var groups []GroupChange
	for s, g := range bg {
		if _, ok := ag[s]; !ok {
			groups = append(groups, GroupChange{Added: false, Text: s, Origin: printable.String(before.Result.Origins[g.Cookie])})
		}
	}
	for s, g := range ag {
		if _, ok := bg[s]; !ok {
			groups = append(groups, GroupChange{Added: true, Text: s, Origin: printable.String(after.Result.Origins[g.Cookie])})
		}
	}
	sort.Slice(groups, func(i, j int) bool {
		a, b := groups[i], groups[j]
		if a.Origin != b.Origin {
			return a.Origin < b.Origin
		}
		if a.Added != b.Added {
			return !a.Added
		}
		return a.Text < b.Text
	})
	return flows, groups
}
