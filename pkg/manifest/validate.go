package manifest

import (
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	extv1beta1 "k8s.io/api/extensions/v1beta1"
	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// Validation of objects read from files, as kube-apiserver v1.37 validates
// them when they are created (after the defaults it applies on the way in:
// protocol TCP on ports, hostPort = containerPort for host-network pods).
// A cluster never stores what the API server refuses, so a file holding it
// describes no cluster: it is an error, not something to guess about.
//
// Checked: every object's metadata (name as the kind requires, namespace,
// labels, annotations, finalizers, owner references); Namespaces'
// spec.finalizers; Pods' containers and init containers (required, names,
// image, ports), nodeName, restartPolicy, dnsPolicy, host-network ports and
// status.podIP/podIPs; Nodes' InternalIP/ExternalIP addresses;
// NetworkPolicies entirely; Services' ports, selector, type, affinity and
// external IPs (package normalize checks cluster IPs and families);
// EndpointSlices' addressType, ports and endpoints. Pod fields that
// ovs-netpol never reads (volumes, resources, probes, security contexts,
// ...) are not checked.
//
// The agent does not come through here: objects a cluster already stores
// may predate today's stricter rules (the API server keeps accepting them
// on update), and the agent must keep enforcing them.
//
// extensions/v1beta1 NetworkPolicies were written for Kubernetes 1.6, whose
// API server accepted lower-case protocols, port numbers written as strings
// and CIDRs with host bits; they are accepted here in those forms only
// (`ovs-netpol convert` rewrites them as a current API server wants them).

// validateObject returns the problems of obj, each "field.path: message",
// with any value from the input quoted and shortened.
func validateObject(obj runtime.Object) []string {
	var errs field.ErrorList
	switch v := obj.(type) {
	case *corev1.Namespace:
		errs = validateNamespace(v)
	case *corev1.Node:
		errs = validateNode(v)
	case *corev1.Pod:
		errs = validatePod(v)
	case *networkingv1.NetworkPolicy:
		errs = validateNetworkPolicy(&v.ObjectMeta, &v.Spec, false)
	case *extv1beta1.NetworkPolicy:
		v1, err := normalize.V1beta1ToV1(v)
		if err != nil {
			return []string{err.Error()}
		}
		errs = validateNetworkPolicy(&v1.ObjectMeta, &v1.Spec, true)
	case *corev1.Service:
		errs = validateService(v)
	case *discoveryv1.EndpointSlice:
		errs = validateEndpointSlice(v)
	}
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, formatFieldError(e))
	}
	return out
}

// maxShown is the most bytes of an input value an error message repeats.
const maxShown = 64

// shorten cuts long input values for messages (a 5 MB label value is not
// repeated in full).
func shorten(s string) string {
	if len(s) <= maxShown {
		return s
	}
	cut := maxShown
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:cut], len(s))
}

// formatFieldError renders e like the API server does ("path: Invalid
// value: "x": detail"), with the path and the value made safe to print.
func formatFieldError(e *field.Error) string {
	path := printable.String(shorten(e.Field))
	var body string
	switch e.Type {
	case field.ErrorTypeInvalid, field.ErrorTypeNotSupported, field.ErrorTypeDuplicate, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
		switch v := reflect.ValueOf(e.BadValue); v.Kind() {
		case reflect.String: // also named string types (Protocol, ...)
			body = fmt.Sprintf("%s: %s", e.Type, strconv.Quote(shorten(v.String())))
		case reflect.Int, reflect.Int32, reflect.Int64, reflect.Bool:
			body = fmt.Sprintf("%s: %v", e.Type, v.Interface())
		default:
			body = e.Type.String()
		}
	default:
		body = e.Type.String()
	}
	if e.Detail != "" {
		body += ": " + printable.String(e.Detail)
	}
	return path + ": " + body
}

// objectMeta is the API server's metadata check on creation.
func objectMeta(m *metav1.ObjectMeta, namespaced bool, name apivalidation.ValidateNameFunc) field.ErrorList {
	path := field.NewPath("metadata")
	errs := apivalidation.ValidateObjectMeta(m, namespaced, name, path)
	for i, f := range m.Finalizers {
		errs = append(errs, kubeFinalizerName(f, path.Child("finalizers").Index(i))...)
	}
	return errs
}

// kubeFinalizerName: a finalizer without a "/" must be one Kubernetes
// defines.
func kubeFinalizerName(name string, path *field.Path) field.ErrorList {
	errs := apivalidation.ValidateFinalizerName(name, path)
	if !strings.Contains(name, "/") {
		switch name {
		case string(corev1.FinalizerKubernetes), metav1.FinalizerOrphanDependents, metav1.FinalizerDeleteDependents:
		default:
			errs = append(errs, field.Invalid(path, name, "name is neither a standard finalizer name nor is it fully qualified"))
		}
	}
	return errs
}

// clusterScoped returns m without a namespace: the API server clears it on
// cluster-scoped objects before validating them.
func clusterScoped(m *metav1.ObjectMeta) *metav1.ObjectMeta {
	out := *m
	out.Namespace = ""
	return &out
}

func validateNamespace(ns *corev1.Namespace) field.ErrorList {
	errs := objectMeta(clusterScoped(&ns.ObjectMeta), false, apivalidation.NameIsDNSLabel)
	for i, f := range ns.Spec.Finalizers {
		errs = append(errs, kubeFinalizerName(string(f), field.NewPath("spec", "finalizers").Index(i))...)
	}
	return errs
}

func validateNode(n *corev1.Node) field.ErrorList {
	errs := objectMeta(clusterScoped(&n.ObjectMeta), false, apivalidation.NameIsDNSSubdomain)
	for i, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			errs = append(errs, validation.IsValidIPForLegacyField(field.NewPath("status", "addresses").Index(i).Child("address"), a.Address, true, nil)...)
		}
	}
	return errs
}

var (
	protocols       = []string{string(corev1.ProtocolSCTP), string(corev1.ProtocolTCP), string(corev1.ProtocolUDP)}
	restartPolicies = []string{string(corev1.RestartPolicyAlways), string(corev1.RestartPolicyNever), string(corev1.RestartPolicyOnFailure)}
	dnsPolicies     = []string{string(corev1.DNSClusterFirst), string(corev1.DNSClusterFirstWithHostNet), string(corev1.DNSDefault), string(corev1.DNSNone)}
)

func oneOf(s string, allowed []string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}

// protocol checks a port's protocol; empty is the API server's default, TCP.
func protocol(p corev1.Protocol, path *field.Path) field.ErrorList {
	if p == "" || oneOf(string(p), protocols) {
		return nil
	}
	return field.ErrorList{field.NotSupported(path, p, protocols)}
}

func validatePod(p *corev1.Pod) field.ErrorList {
	errs := objectMeta(&p.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)
	spec := field.NewPath("spec")
	names := map[string]bool{}
	containers := func(list []corev1.Container, path *field.Path) {
		for i := range list {
			c := &list[i]
			cp := path.Index(i)
			switch {
			case c.Name == "":
				errs = append(errs, field.Required(cp.Child("name"), ""))
			case names[c.Name]:
				errs = append(errs, field.Duplicate(cp.Child("name"), c.Name))
			default:
				for _, msg := range validation.IsDNS1123Label(c.Name) {
					errs = append(errs, field.Invalid(cp.Child("name"), c.Name, msg))
				}
				names[c.Name] = true
			}
			if c.Image == "" {
				errs = append(errs, field.Required(cp.Child("image"), ""))
			} else if strings.TrimSpace(c.Image) != c.Image {
				errs = append(errs, field.Invalid(cp.Child("image"), c.Image, "must not have leading or trailing whitespace"))
			}
			portNames := map[string]bool{}
			for j, port := range c.Ports {
				pp := cp.Child("ports").Index(j)
				if port.Name != "" {
					if msgs := validation.IsValidPortName(port.Name); len(msgs) > 0 {
						for _, msg := range msgs {
							errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
						}
					} else if portNames[port.Name] {
						errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
					}
					portNames[port.Name] = true
				}
				if port.ContainerPort == 0 {
					errs = append(errs, field.Required(pp.Child("containerPort"), ""))
				} else {
					for _, msg := range validation.IsValidPortNum(int(port.ContainerPort)) {
						errs = append(errs, field.Invalid(pp.Child("containerPort"), port.ContainerPort, msg))
					}
				}
				if port.HostPort != 0 {
					for _, msg := range validation.IsValidPortNum(int(port.HostPort)) {
						errs = append(errs, field.Invalid(pp.Child("hostPort"), port.HostPort, msg))
					}
					// Host-network pods get hostPort = containerPort by default.
					if p.Spec.HostNetwork && port.HostPort != port.ContainerPort {
						errs = append(errs, field.Invalid(pp.Child("hostPort"), port.HostPort, "must match `containerPort` when `hostNetwork` is true"))
					}
				}
				errs = append(errs, protocol(port.Protocol, pp.Child("protocol"))...)
			}
		}
	}
	containers(p.Spec.Containers, spec.Child("containers"))
	if len(p.Spec.Containers) == 0 {
		errs = append(errs, field.Required(spec.Child("containers"), ""))
	}
	containers(p.Spec.InitContainers, spec.Child("initContainers"))
	if p.Spec.NodeName != "" {
		for _, msg := range apivalidation.NameIsDNSSubdomain(p.Spec.NodeName, false) {
			errs = append(errs, field.Invalid(spec.Child("nodeName"), p.Spec.NodeName, msg))
		}
	}
	if r := p.Spec.RestartPolicy; r != "" && !oneOf(string(r), restartPolicies) {
		errs = append(errs, field.NotSupported(spec.Child("restartPolicy"), r, restartPolicies))
	}
	if d := p.Spec.DNSPolicy; d != "" && !oneOf(string(d), dnsPolicies) {
		errs = append(errs, field.NotSupported(spec.Child("dnsPolicy"), d, dnsPolicies))
	}
	return append(errs, podIPs(&p.Status)...)
}

// applyDefaults applies to obj, in place, the API server's defaults that
// change what ovs-netpol reads, and says what they changed that a reader
// of the file would not expect. (Others are applied where they are read:
// protocol TCP in package normalize, the kubernetes.io/metadata.name label
// of Namespaces in Cluster.)
func applyDefaults(obj runtime.Object) []string {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil
	}
	// status.podIP and podIPs are kept in sync, podIP winning a conflict
	// (k8s.io/kubernetes pkg/apis/core/v1 SetDefaults_PodStatus).
	st := &p.Status
	switch {
	case st.PodIP != "" && len(st.PodIPs) == 0:
		st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	case st.PodIP == "" && len(st.PodIPs) > 0:
		st.PodIP = st.PodIPs[0].IP
	case st.PodIP != "" && st.PodIPs[0].IP != st.PodIP:
		was := st.PodIPs
		st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
		return []string{fmt.Sprintf("status.podIP %s differs from status.podIPs[0] %s: like the API server, ovs-netpol keeps podIP alone (podIPs %s is dropped)",
			printable.String(shorten(st.PodIP)), printable.String(shorten(was[0].IP)), printable.String(shorten(fmt.Sprint(was))))}
	}
	return nil
}

// podIPs is the API server's check of status.podIP and status.podIPs
// (defaulted: podIPs[0] is podIP; one address per family).
func podIPs(st *corev1.PodStatus) field.ErrorList {
	var errs field.ErrorList
	path := field.NewPath("status", "podIPs")
	var v4, v6 int
	for i, ip := range st.PodIPs {
		ipErrs := validation.IsValidIPForLegacyField(path.Index(i), ip.IP, true, nil)
		errs = append(errs, ipErrs...)
		if len(ipErrs) == 0 {
			if a, err := netip.ParseAddr(ip.IP); err == nil && a.Is4() {
				v4++
			} else {
				v6++
			}
		}
	}
	if len(st.PodIPs) > 2 || v4 > 1 || v6 > 1 {
		errs = append(errs, field.Invalid(path, fmt.Sprintf("%d addresses", len(st.PodIPs)), "may specify no more than one IP for each IP family"))
	}
	return errs
}

// validateNetworkPolicy checks a policy as networking.k8s.io/v1; legacy
// (extensions/v1beta1) lets through what a Kubernetes 1.6 server accepted
// and convert rewrites: lower-case protocols, port numbers as strings,
// CIDRs with host bits.
func validateNetworkPolicy(m *metav1.ObjectMeta, spec *networkingv1.NetworkPolicySpec, legacy bool) field.ErrorList {
	errs := objectMeta(m, true, apivalidation.NameIsDNSSubdomain)
	sp := field.NewPath("spec")
	errs = append(errs, metav1validation.ValidateLabelSelector(&spec.PodSelector, metav1validation.LabelSelectorValidationOptions{}, sp.Child("podSelector"))...)
	// rule validates one ingress or egress rule; peers is its from or to.
	rule := func(rp *field.Path, ports []networkingv1.NetworkPolicyPort, peersField string, peers []networkingv1.NetworkPolicyPeer) {
		for j := range ports {
			errs = append(errs, policyPort(&ports[j], rp.Child("ports").Index(j), legacy)...)
		}
		for j := range peers {
			errs = append(errs, policyPeer(&peers[j], rp.Child(peersField).Index(j), legacy)...)
		}
	}
	for i, r := range spec.Ingress {
		rule(sp.Child("ingress").Index(i), r.Ports, "from", r.From)
	}
	for i, r := range spec.Egress {
		rule(sp.Child("egress").Index(i), r.Ports, "to", r.To)
	}
	types := []string{string(networkingv1.PolicyTypeEgress), string(networkingv1.PolicyTypeIngress)}
	if len(spec.PolicyTypes) > 2 {
		return append(errs, field.Invalid(sp.Child("policyTypes"), fmt.Sprintf("%d types", len(spec.PolicyTypes)), "may not specify more than two policyTypes"))
	}
	for i, t := range spec.PolicyTypes {
		if !oneOf(string(t), types) {
			errs = append(errs, field.NotSupported(sp.Child("policyTypes").Index(i), t, types))
		}
	}
	return errs
}

func policyPort(p *networkingv1.NetworkPolicyPort, path *field.Path, legacy bool) field.ErrorList {
	var errs field.ErrorList
	if p.Protocol != nil {
		proto := *p.Protocol
		if legacy {
			proto = corev1.Protocol(strings.ToUpper(string(proto)))
		}
		if !oneOf(string(proto), protocols) {
			errs = append(errs, field.NotSupported(path.Child("protocol"), *p.Protocol, protocols))
		}
	}
	if p.Port == nil {
		if p.EndPort != nil {
			errs = append(errs, field.Invalid(path.Child("endPort"), *p.EndPort, "may not be specified when `port` is not specified"))
		}
		return errs
	}
	port := *p.Port
	if legacy && port.Type == intstr.String {
		if n, err := strconv.Atoi(port.StrVal); err == nil && strconv.Itoa(n) == port.StrVal {
			port = intstr.FromInt(n)
		}
	}
	if port.Type == intstr.Int {
		for _, msg := range validation.IsValidPortNum(int(port.IntVal)) {
			errs = append(errs, field.Invalid(path.Child("port"), port.IntVal, msg))
		}
		if p.EndPort != nil {
			if *p.EndPort < port.IntVal {
				errs = append(errs, field.Invalid(path.Child("endPort"), *p.EndPort, "must be greater than or equal to `port`"))
			}
			for _, msg := range validation.IsValidPortNum(int(*p.EndPort)) {
				errs = append(errs, field.Invalid(path.Child("endPort"), *p.EndPort, msg))
			}
		}
		return errs
	}
	if p.EndPort != nil {
		errs = append(errs, field.Invalid(path.Child("endPort"), *p.EndPort, "may not be specified when `port` is non-numeric"))
	}
	for _, msg := range validation.IsValidPortName(port.StrVal) {
		errs = append(errs, field.Invalid(path.Child("port"), port.StrVal, msg))
	}
	return errs
}

func policyPeer(p *networkingv1.NetworkPolicyPeer, path *field.Path, legacy bool) field.ErrorList {
	var errs field.ErrorList
	n := 0
	if p.PodSelector != nil {
		n++
		errs = append(errs, metav1validation.ValidateLabelSelector(p.PodSelector, metav1validation.LabelSelectorValidationOptions{}, path.Child("podSelector"))...)
	}
	if p.NamespaceSelector != nil {
		n++
		errs = append(errs, metav1validation.ValidateLabelSelector(p.NamespaceSelector, metav1validation.LabelSelectorValidationOptions{}, path.Child("namespaceSelector"))...)
	}
	if p.IPBlock != nil {
		n++
		errs = append(errs, ipBlock(p.IPBlock, path.Child("ipBlock"), legacy)...)
	}
	switch {
	case n == 0:
		errs = append(errs, field.Required(path, "must specify a peer"))
	case n > 1 && p.IPBlock != nil:
		errs = append(errs, field.Forbidden(path, "may not specify both ipBlock and another peer"))
	}
	return errs
}

// cidr checks a CIDR with the API server's strict rules (KEP-4858, on by
// default since v1.36): no leading zeros, no IPv4-mapped IPv6, no bits set
// beyond the prefix length (the last one waived for legacy policies).
func cidr(s string, path *field.Path, legacy bool) (netip.Prefix, field.ErrorList) {
	errs := validation.IsValidCIDRForLegacyField(path, s, true, nil)
	if len(errs) > 0 && legacy {
		if p, err := netip.ParsePrefix(s); err == nil && !p.Addr().Is4In6() && p.Masked() != p {
			errs = nil // host bits: 1.6 meant the masked prefix
		}
	}
	if len(errs) > 0 {
		return netip.Prefix{}, errs
	}
	p, err := netip.ParsePrefix(s)
	if err != nil { // accepted above, so only non-canonical IPv6 text
		return netip.Prefix{}, field.ErrorList{field.Invalid(path, s, "must be a valid CIDR value")}
	}
	return p.Masked(), nil
}

func ipBlock(b *networkingv1.IPBlock, path *field.Path, legacy bool) field.ErrorList {
	if b.CIDR == "" {
		return field.ErrorList{field.Required(path.Child("cidr"), "")}
	}
	outer, errs := cidr(b.CIDR, path.Child("cidr"), legacy)
	for i, e := range b.Except {
		ep := path.Child("except").Index(i)
		inner, eErrs := cidr(e, ep, legacy)
		errs = append(errs, eErrs...)
		if len(eErrs) > 0 || !outer.IsValid() {
			continue
		}
		if inner.Addr().Is4() != outer.Addr().Is4() || !outer.Contains(inner.Addr()) || inner.Bits() <= outer.Bits() {
			errs = append(errs, field.Invalid(ep, e, "must be a strict subset of `cidr`"))
		}
	}
	return errs
}

func validateService(s *corev1.Service) field.ErrorList {
	errs := objectMeta(&s.ObjectMeta, true, apivalidation.NameIsDNSLabel)
	sp := field.NewPath("spec")
	spec := &s.Spec
	headless := spec.ClusterIP == corev1.ClusterIPNone
	typ := spec.Type
	if typ == "" {
		typ = corev1.ServiceTypeClusterIP // the API server's default
	}
	types := []string{string(corev1.ServiceTypeClusterIP), string(corev1.ServiceTypeExternalName), string(corev1.ServiceTypeLoadBalancer), string(corev1.ServiceTypeNodePort)}
	if !oneOf(string(typ), types) {
		errs = append(errs, field.NotSupported(sp.Child("type"), typ, types))
	}
	if len(spec.Ports) == 0 && !headless && typ != corev1.ServiceTypeExternalName {
		errs = append(errs, field.Required(sp.Child("ports"), ""))
	}
	if typ == corev1.ServiceTypeExternalName {
		if name := strings.TrimSuffix(spec.ExternalName, "."); name == "" {
			errs = append(errs, field.Required(sp.Child("externalName"), ""))
		} else {
			for _, msg := range validation.IsDNS1123Subdomain(name) {
				errs = append(errs, field.Invalid(sp.Child("externalName"), spec.ExternalName, msg))
			}
		}
	}
	names := map[string]bool{}
	type protoPort struct {
		proto corev1.Protocol
		port  int32
	}
	seen := map[protoPort]bool{}
	for i := range spec.Ports {
		p := &spec.Ports[i]
		pp := sp.Child("ports").Index(i)
		switch {
		case p.Name == "" && len(spec.Ports) > 1:
			errs = append(errs, field.Required(pp.Child("name"), ""))
		case p.Name != "":
			for _, msg := range validation.IsDNS1123Label(p.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), p.Name, msg))
			}
			if names[p.Name] {
				errs = append(errs, field.Duplicate(pp.Child("name"), p.Name))
			}
			names[p.Name] = true
		}
		for _, msg := range validation.IsValidPortNum(int(p.Port)) {
			errs = append(errs, field.Invalid(pp.Child("port"), p.Port, msg))
		}
		errs = append(errs, protocol(p.Protocol, pp.Child("protocol"))...)
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if seen[protoPort{proto, p.Port}] {
			errs = append(errs, field.Duplicate(pp, fmt.Sprintf("%s/%d", proto, p.Port)))
		}
		seen[protoPort{proto, p.Port}] = true
		if tp := p.TargetPort; tp.Type == intstr.String {
			for _, msg := range validation.IsValidPortName(tp.StrVal) {
				errs = append(errs, field.Invalid(pp.Child("targetPort"), tp.StrVal, msg))
			}
		} else if tp.IntVal != 0 { // 0: defaulted to port
			for _, msg := range validation.IsValidPortNum(int(tp.IntVal)) {
				errs = append(errs, field.Invalid(pp.Child("targetPort"), tp.IntVal, msg))
			}
		}
		if p.AppProtocol != nil {
			for _, msg := range validation.IsQualifiedName(*p.AppProtocol) {
				errs = append(errs, field.Invalid(pp.Child("appProtocol"), *p.AppProtocol, msg))
			}
		}
		if p.NodePort != 0 && typ == corev1.ServiceTypeClusterIP {
			errs = append(errs, field.Forbidden(pp.Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
		}
	}
	if spec.Selector != nil {
		errs = append(errs, metav1validation.ValidateLabels(spec.Selector, sp.Child("selector"))...)
	}
	affinities := []string{string(corev1.ServiceAffinityClientIP), string(corev1.ServiceAffinityNone)}
	if a := spec.SessionAffinity; a != "" && !oneOf(string(a), affinities) {
		errs = append(errs, field.NotSupported(sp.Child("sessionAffinity"), a, affinities))
	}
	for i, ip := range spec.ExternalIPs {
		errs = append(errs, validation.IsValidIPForLegacyField(sp.Child("externalIPs").Index(i), ip, true, nil)...)
	}
	return errs
}

func validateEndpointSlice(e *discoveryv1.EndpointSlice) field.ErrorList {
	errs := objectMeta(&e.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)
	for i := range e.Endpoints {
		ep := &e.Endpoints[i]
		path := field.NewPath("endpoints").Index(i)
		if ep.Hostname != nil {
			for _, msg := range validation.IsDNS1123Label(*ep.Hostname) {
				errs = append(errs, field.Invalid(path.Child("hostname"), *ep.Hostname, msg))
			}
		}
		errs = append(errs, metav1validation.ValidateLabels(ep.DeprecatedTopology, path.Child("deprecatedTopology"))...)
	}
	for i, p := range e.Ports {
		if p.AppProtocol != nil {
			for _, msg := range validation.IsQualifiedName(*p.AppProtocol) {
				errs = append(errs, field.Invalid(field.NewPath("ports").Index(i).Child("appProtocol"), *p.AppProtocol, msg))
			}
		}
	}
	// addressType, port names and protocols, addresses, node names: normalize.EndpointSlice.
	return errs
}

// maxProblems is the most problems one error lists.
const maxProblems = 10

// InvalidError is an object of the input that the API server would refuse.
type InvalidError struct {
	Source   Source
	Object   string   // "Kind namespace/name", printable
	Problems []string // "field.path: message", printable
}

func (e *InvalidError) Error() string {
	shown := e.Problems
	more := ""
	if len(shown) > maxProblems {
		more = fmt.Sprintf("; and %d more", len(shown)-maxProblems)
		shown = shown[:maxProblems]
	}
	loc := printable.String(e.Source.File)
	if e.Source.Line > 0 {
		loc += ":" + strconv.Itoa(e.Source.Line)
	}
	loc += fmt.Sprintf(": document %d", e.Source.Doc)
	if e.Source.Item > 0 {
		loc += fmt.Sprintf(", item %d", e.Source.Item)
	}
	return fmt.Sprintf("%s (%s): invalid (the API server refuses it): %s%s", loc, e.Object, strings.Join(shown, "; "), more)
}

func invalidError(src Source, obj runtime.Object, problems []string) error {
	return &InvalidError{Source: src, Object: Describe(obj), Problems: problems}
}
