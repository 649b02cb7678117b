// Package normalize converts Kubernetes API objects (read from manifests or
// received from informers) into the pure policy model of package model.
//
// Every function here is pure: it reads its argument, never modifies it, and
// returns model values that share no maps or slices with it. Errors name the
// offending field by its path in the object (for example
// spec.ingress[0].from[1].podSelector) so that callers only need to prefix
// where the object came from.
package normalize

import (
	"errors"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// DefaultNamespace is the namespace of a namespaced object that names none
// (offline manifests often omit metadata.namespace).
const DefaultNamespace = "default"

// Namespace normalizes a Namespace. The returned namespace is usable whenever
// ns is non-nil, even when warning is not nil: warning reports a legacy
// isolation annotation that could not be understood, in which case the
// namespace is LegacyMalformed (it isolates: fail closed, see
// model.ParseLegacyAnnotation), or an audit annotation that could not be
// understood, which leaves auditing off (see model.ParseAuditAnnotation).
// Callers log or print the warning and go on.
func Namespace(ns *corev1.Namespace) (n *model.Namespace, warning error) {
	if ns == nil {
		return nil, errors.New("nil Namespace")
	}
	value, present := ns.Annotations[model.LegacyAnnotation]
	iso, err := model.ParseLegacyAnnotation(value, present)
	n = &model.Namespace{
		Name:            ns.Name,
		Labels:          copyLabels(ns.Labels),
		LegacyIsolation: iso,
	}
	var audit error
	n.Audit, audit = namespaceAudit(ns)
	if err != nil {
		err = fmt.Errorf("namespace %s: metadata.annotations[%s]: %w", printable.String(ns.Name), model.LegacyAnnotation, err)
		if audit != nil {
			err = fmt.Errorf("%w; %w", err, audit)
		}
		return n, err
	}
	return n, audit
}

// PodUID returns the key a pod is stored under: its UID, or, for pods that
// have none (offline manifests), the deterministic "namespace/name".
func PodUID(p *corev1.Pod) string {
	if p.UID != "" {
		return string(p.UID)
	}
	return namespaceOrDefault(p.Namespace) + "/" + p.Name
}

// Pod normalizes a Pod: labels, node, IPs (status.podIPs, or status.podIP
// when podIPs is empty), the container ports of regular containers (init
// containers' ports are ignored), phase and hostNetwork. A missing UID is
// replaced by "namespace/name" (see PodUID); a missing namespace is
// DefaultNamespace. An IP or a container port that cannot be parsed is an
// error: the pod is rejected rather than half understood.
func Pod(p *corev1.Pod) (*model.Pod, error) {
	if p == nil {
		return nil, errors.New("nil Pod")
	}
	if p.Name == "" {
		return nil, errors.New("metadata.name: required")
	}
	out := &model.Pod{
		UID:         PodUID(p),
		Namespace:   namespaceOrDefault(p.Namespace),
		Name:        p.Name,
		Labels:      copyLabels(p.Labels),
		Node:        p.Spec.NodeName,
		Phase:       string(p.Status.Phase),
		HostNetwork: p.Spec.HostNetwork,
	}
	add := func(path, s string) error {
		ip, err := parseAddr(s)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, have := range out.IPs {
			if have == ip {
				return nil
			}
		}
		out.IPs = append(out.IPs, ip)
		return nil
	}
	if len(p.Status.PodIPs) > 0 {
		for i, pip := range p.Status.PodIPs {
			if err := add(fmt.Sprintf("status.podIPs[%d].ip", i), pip.IP); err != nil {
				return nil, err
			}
		}
	} else if p.Status.PodIP != "" {
		if err := add("status.podIP", p.Status.PodIP); err != nil {
			return nil, err
		}
	}
	for i := range p.Spec.Containers {
		c := &p.Spec.Containers[i]
		for j, cp := range c.Ports {
			path := fmt.Sprintf("spec.containers[%d].ports[%d]", i, j)
			proto, err := model.ParseProtocol(string(cp.Protocol))
			if err != nil {
				return nil, fmt.Errorf("%s.protocol: %w", path, err)
			}
			if cp.ContainerPort < 1 || cp.ContainerPort > 65535 {
				return nil, fmt.Errorf("%s.containerPort: %d is not between 1 and 65535", path, cp.ContainerPort)
			}
			out.Ports = append(out.Ports, model.ContainerPort{Name: cp.Name, Port: cp.ContainerPort, Protocol: proto})
		}
	}
	return out, nil
}

// NodeInternalIPs returns a node's InternalIP addresses (status.addresses), in
// order, without duplicates.
func NodeInternalIPs(n *corev1.Node) ([]netip.Addr, error) {
	if n == nil {
		return nil, errors.New("nil Node")
	}
	var out []netip.Addr
	for i, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, err := parseAddr(a.Address)
		if err != nil {
			return nil, fmt.Errorf("status.addresses[%d].address: %w", i, err)
		}
		dup := false
		for _, have := range out {
			dup = dup || have == ip
		}
		if !dup {
			out = append(out, ip)
		}
	}
	return out, nil
}

func parseAddr(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q", s)
	}
	if ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q: zones are not allowed", s)
	}
	return ip, nil
}

func namespaceOrDefault(ns string) string {
	if ns == "" {
		return DefaultNamespace
	}
	return ns
}

// copyLabels returns a copy of m; never nil, so that selectors can match it.
func copyLabels(m map[string]string) labels.Set {
	out := make(labels.Set, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
