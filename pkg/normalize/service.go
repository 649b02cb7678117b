package normalize

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// Limits on Services and EndpointSlices. The slice limits are the API
// server's (v1.37, pkg/apis/discovery/validation); the API server sets no
// limit on a Service's ports, and MaxServicePorts is the slice one: the
// EndpointSlice controller copies every Service port into each slice, so a
// Service with more ports could never have endpoints.
const (
	MaxServicePorts      = 20000
	MaxSlicePorts        = 20000
	MaxSliceEndpoints    = 1000
	MaxEndpointAddresses = 100
	// MaxAffinityTimeout and DefaultAffinityTimeout are the bound and the
	// default of sessionAffinityConfig.clientIP.timeoutSeconds, in seconds.
	MaxAffinityTimeout     = 86400
	DefaultAffinityTimeout = corev1.DefaultClientIPServiceAffinitySeconds
)

// Skip says why Service or EndpointSlice leaves a valid object out of the
// model: nothing is load balanced for it, exactly as kube-proxy ignores it.
type Skip int

const (
	// NotSkipped: the object is part of the model.
	NotSkipped Skip = iota
	// SkipExternalName: a Service of type ExternalName (a DNS alias).
	SkipExternalName
	// SkipHeadless: a Service with spec.clusterIP None.
	SkipHeadless
	// SkipNoClusterIP: a Service without spec.clusterIP. The API server
	// allocates one on creation, so only manifests written for kubectl
	// have none.
	SkipNoClusterIP
	// SkipFQDN: an EndpointSlice of addressType FQDN.
	SkipFQDN
	// SkipNoService: an EndpointSlice without the label
	// kubernetes.io/service-name, or whose value no Service can have as a
	// name.
	SkipNoService
)

func (s Skip) String() string {
	switch s {
	case NotSkipped:
		return "not skipped"
	case SkipExternalName:
		return "type ExternalName: a DNS alias, nothing to balance"
	case SkipHeadless:
		return "headless (spec.clusterIP None): nothing to balance"
	case SkipNoClusterIP:
		return "no spec.clusterIP (the API server allocates one when the Service is created; write it out to balance the Service)"
	case SkipFQDN:
		return "addressType FQDN: kube-proxy ignores such slices"
	case SkipNoService:
		return "no label " + discoveryv1.LabelServiceName + " naming a Service: kube-proxy ignores such slices"
	}
	return fmt.Sprintf("Skip(%d)", int(s))
}

// ServiceSkip tells whether Service leaves s out, and why. It looks at
// spec.type and spec.clusterIP only, as kube-proxy does: s may be invalid.
func ServiceSkip(s *corev1.Service) Skip {
	switch {
	case s.Spec.Type == corev1.ServiceTypeExternalName:
		return SkipExternalName
	case s.Spec.ClusterIP == corev1.ClusterIPNone:
		return SkipHeadless
	case s.Spec.ClusterIP == "":
		return SkipNoClusterIP
	}
	return NotSkipped
}

// EndpointSliceSkip tells whether EndpointSlice leaves e out, and why. It
// looks at addressType and the label kubernetes.io/service-name only: e may
// be invalid.
func EndpointSliceSkip(e *discoveryv1.EndpointSlice) Skip {
	if e.AddressType == discoveryv1.AddressTypeFQDN {
		return SkipFQDN
	}
	name := e.Labels[discoveryv1.LabelServiceName]
	if name == "" || len(validation.IsDNS1123Label(name)) > 0 {
		return SkipNoService
	}
	return NotSkipped
}

// Service normalizes a Service for in-bridge load balancing.
//
// It returns (nil, nil) when s is valid but not load balanced:
// ServiceSkip(s) says why (ExternalName, headless, no cluster IP). An
// ExternalName Service is only checked for its metadata; any other Service
// is checked entirely, skipped or not.
//
// Read: metadata.namespace (missing: DefaultNamespace) and name; spec.type,
// clusterIP, clusterIPs, ipFamilies, ipFamilyPolicy, ports (name, protocol,
// port, targetPort), sessionAffinity, sessionAffinityConfig and
// internalTrafficPolicy. The API server's defaults apply: protocol TCP,
// sessionAffinity None, ClientIP affinity timeout 10800 s,
// internalTrafficPolicy Cluster, clusterIPs [clusterIP] when only clusterIP
// is given. Everything read is validated as kube-apiserver v1.37 validates
// it (names, ports, protocols — case matters: tcp is an error —, cluster
// IPs and their families, affinity timeout); the errors name the field.
// The name is a DNS-1123 label (v1.37 made RelaxedServiceNameValidation GA:
// "1web" is valid; older servers wanted a DNS-1035 label).
//
// Cluster IPs are accepted in the forms the API server accepts for them:
// any textual form netip parses (IPv6 need not be in canonical form),
// without zone, not IPv4-mapped IPv6; IPv4 with leading zeros is refused.
// Only the parsed addresses are kept.
func Service(s *corev1.Service) (*model.Service, error) {
	if s == nil {
		return nil, errors.New("nil Service")
	}
	namespace, err := objectMeta(s.Namespace, s.Name, validation.IsDNS1123Label, "Service")
	if err != nil {
		return nil, err
	}
	spec := &s.Spec
	if spec.Type == corev1.ServiceTypeExternalName {
		return nil, nil
	}
	switch spec.Type {
	case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
	default:
		return nil, fmt.Errorf("spec.type: unsupported value %q (want ClusterIP, NodePort, LoadBalancer or ExternalName)", spec.Type)
	}
	ips, headless, err := clusterIPs(spec)
	if err != nil {
		return nil, err
	}
	if headless && (spec.Type == corev1.ServiceTypeNodePort || spec.Type == corev1.ServiceTypeLoadBalancer) {
		return nil, fmt.Errorf("spec.clusterIP: None is not allowed for %s Services", spec.Type)
	}
	out := &model.Service{Namespace: namespace, Name: s.Name, ClusterIPs: ips}
	if out.Ports, err = servicePorts(spec.Ports, headless); err != nil {
		return nil, err
	}
	if out.AffinitySeconds, err = affinity(spec); err != nil {
		return nil, err
	}
	if p := spec.InternalTrafficPolicy; p != nil {
		switch *p {
		case corev1.ServiceInternalTrafficPolicyCluster:
		case corev1.ServiceInternalTrafficPolicyLocal:
			out.InternalLocal = true
		default:
			return nil, fmt.Errorf("spec.internalTrafficPolicy: unsupported value %q (want Cluster or Local)", *p)
		}
	}
	if ServiceSkip(s) != NotSkipped {
		return nil, nil
	}
	return out, nil
}

// objectMeta checks a namespaced object's name (with isName) and namespace
// and returns the namespace, DefaultNamespace when missing.
func objectMeta(namespace, name string, isName func(string) []string, kind string) (string, error) {
	if name == "" {
		return "", errors.New("metadata.name: required")
	}
	if errs := isName(name); len(errs) > 0 {
		return "", fmt.Errorf("metadata.name: invalid %s name %q: %s", kind, name, strings.Join(errs, "; "))
	}
	if namespace == "" {
		return DefaultNamespace, nil
	}
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return "", fmt.Errorf("metadata.namespace: invalid namespace name %q: %s", namespace, strings.Join(errs, "; "))
	}
	return namespace, nil
}

// clusterIPs reads spec.clusterIP and spec.clusterIPs as the API server
// checks them on creation.
func clusterIPs(spec *corev1.ServiceSpec) (ips []netip.Addr, headless bool, err error) {
	list, path := spec.ClusterIPs, func(i int) string { return fmt.Sprintf("spec.clusterIPs[%d]", i) }
	switch {
	case spec.ClusterIP == "" && len(list) > 0:
		return nil, false, errors.New("spec.clusterIPs: must be empty when spec.clusterIP is not set")
	case spec.ClusterIP == "":
		return nil, false, ipFamilies(spec, nil)
	case len(list) == 0:
		list, path = []string{spec.ClusterIP}, func(int) string { return "spec.clusterIP" }
	case list[0] != spec.ClusterIP:
		return nil, false, fmt.Errorf("spec.clusterIPs[0]: %q must be spec.clusterIP %q", list[0], spec.ClusterIP)
	}
	if len(list) > 2 {
		return nil, false, fmt.Errorf("spec.clusterIPs: %d addresses; at most 2 (one per IP family)", len(list))
	}
	for i, s := range list {
		if s == corev1.ClusterIPNone {
			if i > 0 || len(list) > 1 {
				return nil, false, fmt.Errorf("%s: None must be the first and only value", path(i))
			}
			headless = true
			continue
		}
		ip, err := apiAddr(s, false)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", path(i), err)
		}
		for _, have := range ips {
			if have.Is4() == ip.Is4() {
				return nil, false, fmt.Errorf("%s: %s and %s are of the same IP family: at most one cluster IP per family", path(i), have, ip)
			}
		}
		ips = append(ips, ip)
	}
	return ips, headless, ipFamilies(spec, ips)
}

// ipFamilies checks spec.ipFamilies and spec.ipFamilyPolicy, and that ips
// are of the families listed, in order.
func ipFamilies(spec *corev1.ServiceSpec, ips []netip.Addr) error {
	for i, f := range spec.IPFamilies {
		if f != corev1.IPv4Protocol && f != corev1.IPv6Protocol {
			return fmt.Errorf("spec.ipFamilies[%d]: unsupported value %q (want IPv4 or IPv6)", i, f)
		}
		for j := range i {
			if spec.IPFamilies[j] == f {
				return fmt.Errorf("spec.ipFamilies[%d]: %s is also spec.ipFamilies[%d]", i, f, j)
			}
		}
	}
	for i, ip := range ips {
		if i < len(spec.IPFamilies) && ip.Is4() != (spec.IPFamilies[i] == corev1.IPv4Protocol) {
			return fmt.Errorf("spec.clusterIPs[%d]: %s is not an %s address as spec.ipFamilies[%d] says", i, ip, spec.IPFamilies[i], i)
		}
	}
	if p := spec.IPFamilyPolicy; p != nil {
		switch *p {
		case corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack:
		default:
			return fmt.Errorf("spec.ipFamilyPolicy: unsupported value %q (want SingleStack, PreferDualStack or RequireDualStack)", *p)
		}
	}
	return nil
}

func servicePorts(ports []corev1.ServicePort, headless bool) ([]model.ServicePort, error) {
	if len(ports) == 0 {
		if headless {
			return nil, nil
		}
		return nil, errors.New("spec.ports: required")
	}
	if len(ports) > MaxServicePorts {
		return nil, fmt.Errorf("spec.ports: %d ports exceed the limit of %d per Service", len(ports), MaxServicePorts)
	}
	out := make([]model.ServicePort, 0, len(ports))
	names := map[string]int{}
	type portKey struct {
		proto model.Protocol
		port  int32
	}
	seen := map[portKey]int{}
	for i := range ports {
		p := &ports[i]
		path := fmt.Sprintf("spec.ports[%d]", i)
		switch {
		case p.Name == "" && len(ports) > 1:
			return nil, fmt.Errorf("%s.name: required when the Service has more than one port", path)
		case p.Name != "":
			if errs := validation.IsDNS1123Label(p.Name); len(errs) > 0 {
				return nil, fmt.Errorf("%s.name: invalid port name %q: %s", path, p.Name, strings.Join(errs, "; "))
			}
			if j, dup := names[p.Name]; dup {
				return nil, fmt.Errorf("%s.name: %q is also the name of spec.ports[%d]", path, p.Name, j)
			}
			names[p.Name] = i
		}
		if p.Port < 1 || p.Port > 65535 {
			return nil, fmt.Errorf("%s.port: %d is not between 1 and 65535", path, p.Port)
		}
		proto, err := apiProtocol(string(p.Protocol))
		if err != nil {
			return nil, fmt.Errorf("%s.protocol: %w", path, err)
		}
		if err := targetPort(p.TargetPort); err != nil {
			return nil, fmt.Errorf("%s.targetPort: %w", path, err)
		}
		key := portKey{proto, p.Port}
		if j, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s: %d/%s is also spec.ports[%d]", path, p.Port, proto, j)
		}
		seen[key] = i
		out = append(out, model.ServicePort{Name: p.Name, Protocol: proto, Port: p.Port})
	}
	return out, nil
}

// targetPort checks a Service port's targetPort (not part of the model) as
// the API server does after defaulting 0 and "" to the port.
func targetPort(v intstr.IntOrString) error {
	if v.Type == intstr.Int {
		if v.IntVal != 0 && (v.IntVal < 1 || v.IntVal > 65535) {
			return fmt.Errorf("%d is not between 1 and 65535", v.IntVal)
		}
		return nil
	}
	if v.StrVal == "" {
		return nil
	}
	if errs := validation.IsValidPortName(v.StrVal); len(errs) > 0 {
		return fmt.Errorf("invalid port name %q: %s", v.StrVal, strings.Join(errs, "; "))
	}
	return nil
}

func affinity(spec *corev1.ServiceSpec) (int32, error) {
	switch spec.SessionAffinity {
	case "", corev1.ServiceAffinityNone:
		// The API server drops sessionAffinityConfig here.
		return 0, nil
	case corev1.ServiceAffinityClientIP:
	default:
		return 0, fmt.Errorf("spec.sessionAffinity: unsupported value %q (want None or ClientIP)", spec.SessionAffinity)
	}
	c := spec.SessionAffinityConfig
	if c == nil || c.ClientIP == nil || c.ClientIP.TimeoutSeconds == nil {
		return DefaultAffinityTimeout, nil
	}
	t := *c.ClientIP.TimeoutSeconds
	if t < 1 || t > MaxAffinityTimeout {
		return 0, fmt.Errorf("spec.sessionAffinityConfig.clientIP.timeoutSeconds: %d is not between 1 and %d", t, MaxAffinityTimeout)
	}
	return t, nil
}

// apiProtocol reads a protocol of the v1 API: exactly TCP, UDP or SCTP
// (case-sensitive, unlike model.ParseProtocol), empty meaning TCP.
func apiProtocol(s string) (model.Protocol, error) {
	switch model.Protocol(s) {
	case "":
		return model.TCP, nil
	case model.TCP, model.UDP, model.SCTP:
		return model.Protocol(s), nil
	}
	return "", errProtocol(s)
}

func errProtocol[S ~string](s S) error {
	return fmt.Errorf("unsupported protocol %q (want TCP, UDP or SCTP, in capitals)", s)
}

// apiAddr parses an IP address as the API server does with
// StrictIPCIDRValidation (v1.37's default): netip's forms (so no IPv4
// leading zeros), no zone, no IPv4-mapped IPv6. canonical also requires the
// canonical text (as for new fields such as IPv6 EndpointSlice addresses).
func apiAddr(s string, canonical bool) (netip.Addr, error) {
	ip, err := parseAddr(s)
	if err != nil {
		return ip, err
	}
	if ip.Is4In6() {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q: IPv4-mapped IPv6 addresses are not allowed", s)
	}
	if canonical && ip.String() != s {
		return netip.Addr{}, fmt.Errorf("IP address %q is not in canonical form (%q)", s, ip.String())
	}
	return ip, nil
}

// EndpointSlice normalizes a discovery.k8s.io/v1 EndpointSlice as kube-proxy
// reads it.
//
// It returns (nil, nil) when e is valid but ignored: EndpointSliceSkip(e)
// says why (addressType FQDN, no kubernetes.io/service-name label). An FQDN
// slice is checked for its metadata, address type and ports only; any other
// slice is checked entirely, skipped or not.
//
//   - The Service is the value of the label kubernetes.io/service-name, in
//     the slice's namespace (missing: DefaultNamespace).
//   - Ports get the API server's defaults (name "", protocol TCP); a port
//     without a number or with 0 is left out, as kube-proxy does.
//   - Of an endpoint, only the first address is used, as kube-proxy does
//     (every address is checked); conditions unset mean ready, serving, not
//     terminating; nodeName unset is "".
//
// Checked as kube-apiserver v1.37 does: the slice name (DNS-1123
// subdomain) and namespace, addressType, at most MaxSlicePorts ports with
// DNS-1123 label names, unique, and protocols TCP, UDP or SCTP
// (case-sensitive), at most MaxSliceEndpoints endpoints of 1 to
// MaxEndpointAddresses addresses of the slice's family (IPv6 in canonical
// form; no unspecified, loopback, link-local or link-local multicast
// address), nodeName a DNS-1123 subdomain. The API server does not check
// port numbers; here a number outside 0..65535 is an error.
func EndpointSlice(e *discoveryv1.EndpointSlice) (*model.EndpointSlice, error) {
	if e == nil {
		return nil, errors.New("nil EndpointSlice")
	}
	namespace, err := objectMeta(e.Namespace, e.Name, validation.IsDNS1123Subdomain, "EndpointSlice")
	if err != nil {
		return nil, err
	}
	out := &model.EndpointSlice{Namespace: namespace, Name: e.Name, Service: e.Labels[discoveryv1.LabelServiceName]}
	switch e.AddressType {
	case discoveryv1.AddressTypeIPv4:
	case discoveryv1.AddressTypeIPv6:
		out.IPv6 = true
	case discoveryv1.AddressTypeFQDN:
	case "":
		return nil, errors.New("addressType: required")
	default:
		return nil, fmt.Errorf("addressType: unsupported value %q (want IPv4, IPv6 or FQDN)", e.AddressType)
	}
	if out.Ports, err = slicePorts(e.Ports); err != nil {
		return nil, err
	}
	if e.AddressType != discoveryv1.AddressTypeFQDN {
		if out.Endpoints, err = endpoints(e.Endpoints, out.IPv6); err != nil {
			return nil, err
		}
	}
	if EndpointSliceSkip(e) != NotSkipped {
		return nil, nil
	}
	return out, nil
}

func slicePorts(ports []discoveryv1.EndpointPort) ([]model.EndpointPort, error) {
	if len(ports) > MaxSlicePorts {
		return nil, fmt.Errorf("ports: %d ports exceed the limit of %d per slice", len(ports), MaxSlicePorts)
	}
	var out []model.EndpointPort
	names := map[string]int{}
	for i := range ports {
		p := &ports[i]
		path := fmt.Sprintf("ports[%d]", i)
		var name string
		if p.Name != nil {
			name = *p.Name
		}
		if name != "" {
			if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
				return nil, fmt.Errorf("%s.name: invalid port name %q: %s", path, name, strings.Join(errs, "; "))
			}
		}
		if j, dup := names[name]; dup {
			return nil, fmt.Errorf("%s.name: %q is also the name of ports[%d] (names must be unique)", path, name, j)
		}
		names[name] = i
		proto := model.TCP // the API server's default for a missing protocol
		if p.Protocol != nil {
			// Set but empty is not defaulted: the API server refuses it.
			if proto = model.Protocol(*p.Protocol); proto != model.TCP && proto != model.UDP && proto != model.SCTP {
				return nil, fmt.Errorf("%s.protocol: %w", path, errProtocol(*p.Protocol))
			}
		}
		if p.Port == nil || *p.Port == 0 {
			continue // kube-proxy: "Ignoring invalid endpoint port"
		}
		if *p.Port < 0 || *p.Port > 65535 {
			return nil, fmt.Errorf("%s.port: %d is not between 1 and 65535", path, *p.Port)
		}
		out = append(out, model.EndpointPort{Name: name, Protocol: proto, Port: *p.Port})
	}
	return out, nil
}

func endpoints(eps []discoveryv1.Endpoint, ipv6 bool) ([]model.Endpoint, error) {
	if len(eps) > MaxSliceEndpoints {
		return nil, fmt.Errorf("endpoints: %d endpoints exceed the limit of %d per slice", len(eps), MaxSliceEndpoints)
	}
	var out []model.Endpoint
	for i := range eps {
		ep := &eps[i]
		path := fmt.Sprintf("endpoints[%d]", i)
		switch n := len(ep.Addresses); {
		case n == 0:
			return nil, fmt.Errorf("%s.addresses: required (at least one address)", path)
		case n > MaxEndpointAddresses:
			return nil, fmt.Errorf("%s.addresses: %d addresses exceed the limit of %d", path, n, MaxEndpointAddresses)
		}
		var first netip.Addr
		for j, s := range ep.Addresses {
			ip, err := endpointAddr(s, ipv6)
			if err != nil {
				return nil, fmt.Errorf("%s.addresses[%d]: %w", path, j, err)
			}
			if j == 0 {
				first = ip
			}
		}
		m := model.Endpoint{
			Address:     first,
			Ready:       ep.Conditions.Ready == nil || *ep.Conditions.Ready,
			Serving:     ep.Conditions.Serving == nil || *ep.Conditions.Serving,
			Terminating: ep.Conditions.Terminating != nil && *ep.Conditions.Terminating,
		}
		if ep.NodeName != nil {
			if errs := validation.IsDNS1123Subdomain(*ep.NodeName); len(errs) > 0 {
				return nil, fmt.Errorf("%s.nodeName: invalid node name %q: %s", path, *ep.NodeName, strings.Join(errs, "; "))
			}
			m.Node = *ep.NodeName
		}
		out = append(out, m)
	}
	return out, nil
}

// endpointAddr checks an address of an IPv4 or IPv6 slice as the API server
// does (IPv4: the legacy strict rules; IPv6: canonical form; both:
// ValidateEndpointIP).
func endpointAddr(s string, ipv6 bool) (netip.Addr, error) {
	ip, err := apiAddr(s, ipv6)
	if err != nil {
		return ip, err
	}
	family := "IPv4"
	if ipv6 {
		family = "IPv6"
	}
	switch {
	case ip.Is6() != ipv6:
		return netip.Addr{}, fmt.Errorf("%s is not an %s address (addressType %s)", s, family, family)
	case ip.IsUnspecified():
		return netip.Addr{}, fmt.Errorf("%s: the unspecified address is not allowed", s)
	case ip.IsLoopback():
		return netip.Addr{}, fmt.Errorf("%s: loopback addresses (127.0.0.0/8, ::1/128) are not allowed", s)
	case ip.IsLinkLocalUnicast():
		return netip.Addr{}, fmt.Errorf("%s: link-local addresses (169.254.0.0/16, fe80::/10) are not allowed", s)
	case ip.IsLinkLocalMulticast():
		return netip.Addr{}, fmt.Errorf("%s: link-local multicast addresses (224.0.0.0/24, ff02::/16) are not allowed", s)
	}
	return ip, nil
}
