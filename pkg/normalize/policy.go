package normalize

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	extv1beta1 "k8s.io/api/extensions/v1beta1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// API versions a NetworkPolicy can come from (model.Policy.APIVersion).
const (
	APIVersionV1      = "networking.k8s.io/v1"
	APIVersionV1beta1 = "extensions/v1beta1"
)

// Limits that reject an absurdly large policy as a whole, with a clear error,
// before it can blow up flow tables. They are far above anything a person
// writes; a generator gone wrong is the expected way to hit them.
const (
	// MaxRules is the most ingress plus egress rules one policy may have.
	MaxRules = 10000
	// MaxRulePeers is the most from/to peers one rule may have.
	MaxRulePeers = 10000
	// MaxRulePorts is the most ports one rule may have.
	MaxRulePorts = 1000
	// MaxIPBlockExcepts is the most except entries one ipBlock may have.
	MaxIPBlockExcepts = 1000
)

// NetworkPolicyV1 normalizes a networking.k8s.io/v1 NetworkPolicy.
//
//   - Effective policyTypes: spec.policyTypes when given; otherwise Ingress,
//     plus Egress when spec.egress has rules.
//   - A rule's from/to missing or empty: every peer; ports missing or empty:
//     every port of every protocol.
//   - A peer is exactly one of ipBlock, or namespaceSelector and/or
//     podSelector. namespaceSelector missing: the policy's own namespace
//     (model.Peer.NamespaceSelector nil); `namespaceSelector: {}`: every
//     namespace (labels.Everything()).
//   - ipBlock.cidr and except are masked to their prefix (10.0.0.1/8 is
//     10.0.0.0/8); every except must be of the same family and strictly
//     inside cidr.
//   - A port's protocol defaults to TCP and may be lower case; a numeric port
//     (also a string of digits like "80") is a port number, any other string
//     a named port; no port: every port of the protocol; endPort only with a
//     numeric port, endPort >= port (endPort == port is stored as a single
//     port).
//   - metadata.namespace missing: DefaultNamespace.
func NetworkPolicyV1(np *networkingv1.NetworkPolicy) (*model.Policy, error) {
	if np == nil {
		return nil, errors.New("nil NetworkPolicy")
	}
	return policy(np.Namespace, np.Name, APIVersionV1, &np.Spec)
}

// NetworkPolicyV1beta1 normalizes an extensions/v1beta1 NetworkPolicy exactly
// like NetworkPolicyV1 (the two specs have the same fields and, since
// Kubernetes 1.8, the same meaning); only APIVersion differs. Whether a policy
// takes effect in the 1.6 design (namespace annotation) is decided by the
// model, not here.
func NetworkPolicyV1beta1(np *extv1beta1.NetworkPolicy) (*model.Policy, error) {
	if np == nil {
		return nil, errors.New("nil NetworkPolicy")
	}
	v1, err := V1beta1ToV1(np)
	if err != nil {
		return nil, err
	}
	return policy(v1.Namespace, v1.Name, APIVersionV1beta1, &v1.Spec)
}

// V1beta1ToV1 re-types an extensions/v1beta1 NetworkPolicy as a
// networking.k8s.io/v1 one, field for field (a deep copy: metadata included,
// nothing normalized, protocols keep their case). The result's TypeMeta is
// networking.k8s.io/v1 NetworkPolicy. It fails only if np uses a field v1 does
// not have.
func V1beta1ToV1(np *extv1beta1.NetworkPolicy) (*networkingv1.NetworkPolicy, error) {
	if np == nil {
		return nil, errors.New("nil NetworkPolicy")
	}
	// The JSON forms of the two types are identical; going through JSON
	// carries every field over, including ones added later to both.
	data, err := json.Marshal(np)
	if err != nil {
		return nil, fmt.Errorf("re-encoding extensions/v1beta1 NetworkPolicy: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	out := &networkingv1.NetworkPolicy{}
	if err := dec.Decode(out); err != nil {
		return nil, fmt.Errorf("extensions/v1beta1 NetworkPolicy has no networking.k8s.io/v1 equivalent: %w", err)
	}
	out.APIVersion = APIVersionV1
	out.Kind = "NetworkPolicy"
	return out, nil
}

// EffectivePolicyTypes reports the directions a NetworkPolicy isolates the
// pods it selects in: spec.policyTypes when given; otherwise Ingress, plus
// Egress when spec.egress has rules (the API server's default, documented on
// NetworkPolicySpec.PolicyTypes). An entry other than Ingress or Egress is an
// error naming the first such entry; the directions the valid entries name are
// still returned, so that a caller standing in for a rejected policy can fail
// closed on them.
func EffectivePolicyTypes(spec *networkingv1.NetworkPolicySpec) (ingress, egress bool, err error) {
	if len(spec.PolicyTypes) == 0 {
		return true, len(spec.Egress) > 0, nil
	}
	for i, t := range spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		default:
			if err == nil {
				err = fmt.Errorf("spec.policyTypes[%d]: unsupported value %q (want %q or %q)", i, t, networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)
			}
		}
	}
	return ingress, egress, err
}

// PolicyTypes is the explicit spec.policyTypes that names the directions
// given, Ingress first.
func PolicyTypes(ingress, egress bool) []networkingv1.PolicyType {
	var types []networkingv1.PolicyType
	if ingress {
		types = append(types, networkingv1.PolicyTypeIngress)
	}
	if egress {
		types = append(types, networkingv1.PolicyTypeEgress)
	}
	return types
}

func policy(namespace, name, apiVersion string, spec *networkingv1.NetworkPolicySpec) (*model.Policy, error) {
	if name == "" {
		return nil, errors.New("metadata.name: required")
	}
	p := &model.Policy{
		Namespace:  namespaceOrDefault(namespace),
		Name:       name,
		APIVersion: apiVersion,
	}
	var err error
	if p.PodSelector, err = selector("spec.podSelector", &spec.PodSelector); err != nil {
		return nil, err
	}
	if p.AffectsIngress, p.AffectsEgress, err = EffectivePolicyTypes(spec); err != nil {
		return nil, err
	}
	if n := len(spec.Ingress) + len(spec.Egress); n > MaxRules {
		return nil, fmt.Errorf("spec: %d ingress and egress rules exceed the limit of %d per policy", n, MaxRules)
	}
	for i := range spec.Ingress {
		r, err := rule(fmt.Sprintf("spec.ingress[%d]", i), "from", spec.Ingress[i].From, spec.Ingress[i].Ports)
		if err != nil {
			return nil, err
		}
		p.Ingress = append(p.Ingress, r)
	}
	for i := range spec.Egress {
		r, err := rule(fmt.Sprintf("spec.egress[%d]", i), "to", spec.Egress[i].To, spec.Egress[i].Ports)
		if err != nil {
			return nil, err
		}
		p.Egress = append(p.Egress, r)
	}
	return p, nil
}

func rule(path, peerField string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) (model.Rule, error) {
	var r model.Rule
	if len(peers) > MaxRulePeers {
		return r, fmt.Errorf("%s.%s: %d peers exceed the limit of %d per rule", path, peerField, len(peers), MaxRulePeers)
	}
	if len(ports) > MaxRulePorts {
		return r, fmt.Errorf("%s.ports: %d ports exceed the limit of %d per rule", path, len(ports), MaxRulePorts)
	}
	for i := range peers {
		p, err := peer(fmt.Sprintf("%s.%s[%d]", path, peerField, i), &peers[i])
		if err != nil {
			return r, err
		}
		r.Peers = append(r.Peers, p)
	}
	for i := range ports {
		p, err := port(fmt.Sprintf("%s.ports[%d]", path, i), &ports[i])
		if err != nil {
			return r, err
		}
		r.Ports = append(r.Ports, p)
	}
	return r, nil
}

func peer(path string, in *networkingv1.NetworkPolicyPeer) (model.Peer, error) {
	var out model.Peer
	hasSelector := in.PodSelector != nil || in.NamespaceSelector != nil
	if in.IPBlock != nil {
		if hasSelector {
			return out, fmt.Errorf("%s: ipBlock cannot be combined with podSelector or namespaceSelector (use separate peers)", path)
		}
		b, err := ipBlock(path+".ipBlock", in.IPBlock)
		if err != nil {
			return out, err
		}
		out.IPBlock = b
		return out, nil
	}
	if !hasSelector {
		return out, fmt.Errorf("%s: a peer needs podSelector, namespaceSelector or ipBlock (to allow everything, leave out the whole from/to list)", path)
	}
	var err error
	if in.NamespaceSelector != nil {
		if out.NamespaceSelector, err = selector(path+".namespaceSelector", in.NamespaceSelector); err != nil {
			return out, err
		}
	}
	if in.PodSelector != nil {
		if out.PodSelector, err = selector(path+".podSelector", in.PodSelector); err != nil {
			return out, err
		}
	}
	return out, nil
}

// selector converts a non-nil label selector; {} matches everything.
func selector(path string, ls *metav1.LabelSelector) (labels.Selector, error) {
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func ipBlock(path string, in *networkingv1.IPBlock) (*model.IPBlock, error) {
	cidr, err := parsePrefix(in.CIDR)
	if err != nil {
		return nil, fmt.Errorf("%s.cidr: %w", path, err)
	}
	if len(in.Except) > MaxIPBlockExcepts {
		return nil, fmt.Errorf("%s.except: %d entries exceed the limit of %d", path, len(in.Except), MaxIPBlockExcepts)
	}
	out := &model.IPBlock{CIDR: cidr}
	for i, s := range in.Except {
		e, err := parsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s.except[%d]: %w", path, i, err)
		}
		if e.Addr().Is4() != cidr.Addr().Is4() {
			return nil, fmt.Errorf("%s.except[%d]: %s is not of the same IP family as cidr %s", path, i, e, cidr)
		}
		if e.Bits() <= cidr.Bits() || !cidr.Contains(e.Addr()) {
			return nil, fmt.Errorf("%s.except[%d]: %s is not strictly inside cidr %s", path, i, e, cidr)
		}
		out.Except = append(out.Except, e)
	}
	return out, nil
}

// parsePrefix parses a CIDR and clears its host bits (Kubernetes accepts
// 10.0.0.1/8 and means 10.0.0.0/8).
func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil || strings.TrimSpace(s) != s {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	return p.Masked(), nil
}

func port(path string, in *networkingv1.NetworkPolicyPort) (model.PortSpec, error) {
	var out model.PortSpec
	var proto string
	if in.Protocol != nil {
		proto = string(*in.Protocol)
	}
	var err error
	if out.Protocol, err = model.ParseProtocol(proto); err != nil {
		return out, fmt.Errorf("%s.protocol: %w", path, err)
	}
	if in.Port == nil {
		if in.EndPort != nil {
			return out, fmt.Errorf("%s.endPort: requires a numeric port", path)
		}
		return out, nil
	}
	num, name, err := PortValue(*in.Port)
	if err != nil {
		return out, fmt.Errorf("%s.port: %w", path, err)
	}
	if name != "" {
		if in.EndPort != nil {
			return out, fmt.Errorf("%s.endPort: cannot be used with the named port %q", path, name)
		}
		out.Name = name
		return out, nil
	}
	out.Port = num
	if in.EndPort != nil {
		end := *in.EndPort
		switch {
		case end > 65535:
			return out, fmt.Errorf("%s.endPort: %d is not between 1 and 65535", path, end)
		case end < num:
			return out, fmt.Errorf("%s.endPort: %d is less than port %d", path, end, num)
		case end > num:
			out.EndPort = end
		}
	}
	return out, nil
}

// PortValue interprets a NetworkPolicyPort's port: a number (an int, or a
// string of digits such as "80") returns num; anything else must be a valid
// port name (IANA_SVC_NAME) and returns name.
func PortValue(v intstr.IntOrString) (num int32, name string, err error) {
	s := v.StrVal
	if v.Type == intstr.Int {
		s = strconv.Itoa(int(v.IntVal))
	} else if s == "" {
		return 0, "", errors.New("empty port name")
	}
	if isDigits(s) || v.Type == intstr.Int {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			return 0, "", fmt.Errorf("%s is not between 1 and 65535", s)
		}
		return int32(n), "", nil
	}
	if errs := validation.IsValidPortName(s); len(errs) > 0 {
		return 0, "", fmt.Errorf("invalid port name %q: %s", s, strings.Join(errs, "; "))
	}
	return 0, s, nil
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
