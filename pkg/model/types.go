// Package model is the pure, normalized form of the cluster state that policy
// decisions are made on: namespaces, pods and network policies, whichever API
// version they came from. It does no I/O.
package model

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Mode selects which NetworkPolicy semantics apply.
type Mode string

const (
	// ModeV1 is networking.k8s.io/v1: per-pod isolation by policyTypes.
	ModeV1 Mode = "v1"
	// ModeV16 is the Kubernetes 1.6 beta design: only namespaces annotated
	// with DefaultDeny are isolated, for ingress only.
	ModeV16 Mode = "v1.6"
)

// ParseMode accepts the --isolation flag values.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeV1, "":
		return ModeV1, nil
	case ModeV16:
		return ModeV16, nil
	}
	return "", fmt.Errorf("unknown isolation mode %q (want v1 or v1.6)", s)
}

// Protocol is a NetworkPolicy transport protocol.
type Protocol string

const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// Protocols lists the protocols NetworkPolicy can name, in a fixed order.
var Protocols = []Protocol{TCP, UDP, SCTP}

// ParseProtocol normalizes a protocol name; old manifests use lower case.
// An empty protocol means TCP.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToUpper(s) {
	case "", "TCP":
		return TCP, nil
	case "UDP":
		return UDP, nil
	case "SCTP":
		return SCTP, nil
	}
	return "", fmt.Errorf("unsupported protocol %q (want TCP, UDP or SCTP)", s)
}

// Namespace is the part of a Namespace that policy depends on.
type Namespace struct {
	Name   string
	Labels labels.Set
	// LegacyIsolation is the parsed net.beta.kubernetes.io/network-policy
	// annotation (see ParseLegacyAnnotation).
	LegacyIsolation LegacyIsolation
	// Audit is the parsed AuditAnnotation (see ParseAuditAnnotation).
	Audit AuditMode
}

// ContainerPort is a port a pod's container declares; named ports resolve
// against these.
type ContainerPort struct {
	Name     string
	Port     int32
	Protocol Protocol
}

// PodPhase values that matter to policy.
const (
	PodSucceeded = "Succeeded"
	PodFailed    = "Failed"
)

// Pod is the part of a Pod that policy depends on. Pods are keyed by UID.
type Pod struct {
	UID         string
	Namespace   string
	Name        string
	Labels      labels.Set
	Node        string
	IPs         []netip.Addr
	Ports       []ContainerPort
	Phase       string
	HostNetwork bool
}

// Key is namespace/name, the form users and --ports files name pods by.
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// Active reports whether the pod takes part in policy at all: host-network
// pods are never selected, and finished pods no longer own their IPs.
func (p *Pod) Active() bool {
	return !p.HostNetwork && p.Phase != PodSucceeded && p.Phase != PodFailed
}

// HasIP reports whether ip is one of the pod's addresses.
func (p *Pod) HasIP(ip netip.Addr) bool {
	for _, a := range p.IPs {
		if a == ip {
			return true
		}
	}
	return false
}

// ResolvePort resolves a named port against the pod's container ports,
// protocol included. ok is false when the pod has no such port.
func (p *Pod) ResolvePort(name string, proto Protocol) (port int32, ok bool) {
	for _, cp := range p.Ports {
		if cp.Name == name && cp.Protocol == proto {
			return cp.Port, true
		}
	}
	return 0, false
}

// Direction of a policy rule.
type Direction string

const (
	Ingress Direction = "ingress"
	Egress  Direction = "egress"
)

// Policy is a NetworkPolicy normalized from either API version.
type Policy struct {
	Namespace string
	Name      string
	// APIVersion records where it came from (for messages and convert).
	APIVersion  string
	PodSelector labels.Selector
	// AffectsIngress/AffectsEgress are the effective policyTypes.
	AffectsIngress bool
	AffectsEgress  bool
	Ingress        []Rule
	Egress         []Rule
}

// Key is namespace/name.
func (p *Policy) Key() string { return p.Namespace + "/" + p.Name }

// Rules returns the rules of one direction.
func (p *Policy) Rules(d Direction) []Rule {
	if d == Ingress {
		return p.Ingress
	}
	return p.Egress
}

// Affects reports whether the policy isolates its targets for d.
func (p *Policy) Affects(d Direction) bool {
	if d == Ingress {
		return p.AffectsIngress
	}
	return p.AffectsEgress
}

// Rule is one ingress or egress rule. An empty Peers list means every peer,
// external addresses included; an empty Ports list means every port of every
// protocol.
type Rule struct {
	Peers []Peer
	Ports []PortSpec
}

// AllPeers reports whether the rule is unconstrained in peers.
func (r *Rule) AllPeers() bool { return len(r.Peers) == 0 }

// AllPorts reports whether the rule is unconstrained in ports.
func (r *Rule) AllPorts() bool { return len(r.Ports) == 0 }

// Peer is one entry of from/to: either an IPBlock, or pods chosen by a
// namespace selector and/or a pod selector (both given means AND).
type Peer struct {
	// NamespaceSelector nil: the policy's own namespace.
	NamespaceSelector labels.Selector
	// PodSelector nil: every pod of the selected namespaces.
	PodSelector labels.Selector
	IPBlock     *IPBlock
}

// IPBlock is a CIDR minus exceptions.
type IPBlock struct {
	CIDR   netip.Prefix
	Except []netip.Prefix
}

// Contains reports whether ip is in the block and in none of its exceptions.
func (b *IPBlock) Contains(ip netip.Addr) bool {
	if !b.CIDR.Contains(ip) {
		return false
	}
	for _, e := range b.Except {
		if e.Contains(ip) {
			return false
		}
	}
	return true
}

// PortSpec is one entry of a rule's ports.
type PortSpec struct {
	Protocol Protocol
	// Port 0 and Name "" mean every port of Protocol.
	Port int32
	// EndPort, when non-zero, makes Port..EndPort an inclusive range.
	EndPort int32
	// Name is a named port, resolved per destination pod.
	Name string
}

// String renders the spec as a user would write it.
func (s PortSpec) String() string {
	switch {
	case s.Name != "":
		return fmt.Sprintf("%s/%s", s.Name, s.Protocol)
	case s.Port == 0:
		return fmt.Sprintf("*/%s", s.Protocol)
	case s.EndPort != 0:
		return fmt.Sprintf("%d-%d/%s", s.Port, s.EndPort, s.Protocol)
	}
	return fmt.Sprintf("%d/%s", s.Port, s.Protocol)
}

// Matches reports whether proto/port is allowed by the spec for a destination
// pod dst (nil for a destination that is not a pod: named ports never match it).
func (s PortSpec) Matches(proto Protocol, port int32, dst *Pod) bool {
	if proto != s.Protocol {
		return false
	}
	switch {
	case s.Name != "":
		if dst == nil {
			return false
		}
		p, ok := dst.ResolvePort(s.Name, s.Protocol)
		return ok && p == port
	case s.Port == 0:
		return true
	case s.EndPort != 0:
		return port >= s.Port && port <= s.EndPort
	}
	return port == s.Port
}
