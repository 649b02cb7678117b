package model

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"

	"k8s.io/apimachinery/pkg/labels"
)

// LegacyAnnotation is the Kubernetes 1.6 namespace isolation annotation.
const LegacyAnnotation = "net.beta.kubernetes.io/network-policy"

// LegacyIsolation is the state a namespace's LegacyAnnotation puts it in.
type LegacyIsolation int

const (
	// LegacyNone: no annotation, or one that does not ask for isolation.
	LegacyNone LegacyIsolation = iota
	// LegacyDefaultDeny: {"ingress":{"isolation":"DefaultDeny"}}.
	LegacyDefaultDeny
	// LegacyMalformed: the annotation is present but cannot be understood.
	// It isolates, like DefaultDeny: a typo must never open a namespace that
	// its owner meant to close (fail closed), and it is reported.
	LegacyMalformed
)

// Isolates reports whether the namespace's pods are ingress-isolated by the
// annotation.
func (l LegacyIsolation) Isolates() bool { return l != LegacyNone }

// ParseLegacyAnnotation interprets the annotation value. present is whether
// the annotation exists at all. A malformed value yields LegacyMalformed and
// an error that says why.
func ParseLegacyAnnotation(value string, present bool) (LegacyIsolation, error) {
	if !present {
		return LegacyNone, nil
	}
	var v struct {
		Ingress *struct {
			Isolation *string `json:"isolation"`
		} `json:"ingress"`
	}
	if err := json.Unmarshal([]byte(value), &v); err != nil {
		return LegacyMalformed, fmt.Errorf("annotation %s=%q is not valid JSON (%v); the namespace is treated as DefaultDeny (fail closed)", LegacyAnnotation, value, err)
	}
	if v.Ingress == nil || v.Ingress.Isolation == nil {
		return LegacyNone, nil
	}
	switch *v.Ingress.Isolation {
	case "DefaultDeny":
		return LegacyDefaultDeny, nil
	case "":
		return LegacyNone, nil
	}
	return LegacyMalformed, fmt.Errorf("annotation %s has unknown ingress isolation %q (only \"DefaultDeny\" exists); the namespace is treated as DefaultDeny (fail closed)", LegacyAnnotation, *v.Ingress.Isolation)
}

// Cluster is the whole normalized state one node decides on.
type Cluster struct {
	Mode       Mode
	Namespaces map[string]*Namespace
	// Pods by UID.
	Pods     map[string]*Pod
	Policies map[string]*Policy // by namespace/name
	// Services and EndpointSlices by namespace/name.
	Services       map[string]*Service
	EndpointSlices map[string]*EndpointSlice
	// Nodes by name (the overlay's tunnel endpoints and pod CIDRs).
	Nodes map[string]*Node
}

// NewCluster returns an empty cluster in mode.
func NewCluster(mode Mode) *Cluster {
	return &Cluster{
		Mode:       mode,
		Namespaces: map[string]*Namespace{},
		Pods:       map[string]*Pod{},
		Policies:   map[string]*Policy{},

		Services:       map[string]*Service{},
		EndpointSlices: map[string]*EndpointSlice{},
		Nodes:          map[string]*Node{},
	}
}

// AddNamespace, AddPod and AddPolicy insert or replace an object.
func (c *Cluster) AddNamespace(ns *Namespace) { c.Namespaces[ns.Name] = ns }
func (c *Cluster) AddPod(p *Pod)              { c.Pods[p.UID] = p }
func (c *Cluster) AddPolicy(p *Policy)        { c.Policies[p.Key()] = p }

// AddService and AddEndpointSlice insert or replace an object.
func (c *Cluster) AddService(s *Service)             { c.Services[s.Key()] = s }
func (c *Cluster) AddEndpointSlice(e *EndpointSlice) { c.EndpointSlices[e.Key()] = e }

// SortedPods returns the pods ordered by namespace/name then UID.
func (c *Cluster) SortedPods() []*Pod {
	out := make([]*Pod, 0, len(c.Pods))
	for _, p := range c.Pods {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key() != out[j].Key() {
			return out[i].Key() < out[j].Key()
		}
		return out[i].UID < out[j].UID
	})
	return out
}

// SortedPolicies returns the policies ordered by namespace/name.
func (c *Cluster) SortedPolicies() []*Policy {
	out := make([]*Policy, 0, len(c.Policies))
	for _, p := range c.Policies {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// namespaceLabels returns the labels of a namespace; a namespace that is not
// known has none (it can still be matched by an empty selector).
func (c *Cluster) namespaceLabels(name string) labels.Set {
	if ns, ok := c.Namespaces[name]; ok {
		return ns.Labels
	}
	return labels.Set{}
}

// legacyIsolated reports whether ns carries an isolating legacy annotation.
func (c *Cluster) legacyIsolated(ns string) bool {
	n, ok := c.Namespaces[ns]
	return ok && n.LegacyIsolation.Isolates()
}

// PolicyInEffect reports whether a policy takes part in decisions at all. In
// v1.6 mode, policies in namespaces without the annotation have no effect.
func (c *Cluster) PolicyInEffect(p *Policy) bool {
	return c.Mode != ModeV16 || c.legacyIsolated(p.Namespace)
}

// PolicyAffects reports whether, in the current mode, p isolates its targets
// for direction d (v1.6 knows only ingress).
func (c *Cluster) PolicyAffects(p *Policy, d Direction) bool {
	if !c.PolicyInEffect(p) {
		return false
	}
	if c.Mode == ModeV16 {
		return d == Ingress
	}
	return p.Affects(d)
}

// Selects reports whether policy p targets pod.
func (c *Cluster) Selects(p *Policy, pod *Pod) bool {
	return pod.Active() && pod.Namespace == p.Namespace && p.PodSelector.Matches(pod.Labels)
}

// Isolated reports whether pod is isolated for direction d, and why.
func (c *Cluster) Isolated(pod *Pod, d Direction) (bool, string) {
	return c.IsolatedAmong(pod, d, c.Policies)
}

// IsolatedAmong is Isolated deciding on policies only, keyed by
// namespace/name. policies must hold every policy of the pod's namespace
// (policies of other namespaces are ignored), so a caller that indexes
// policies by namespace passes the pod's namespace's entry instead of
// scanning them all.
func (c *Cluster) IsolatedAmong(pod *Pod, d Direction, policies map[string]*Policy) (bool, string) {
	if !pod.Active() {
		return false, ""
	}
	if d == Ingress && c.legacyIsolated(pod.Namespace) {
		ann := c.Namespaces[pod.Namespace].LegacyIsolation
		if ann == LegacyMalformed {
			return true, fmt.Sprintf("namespace %s has a malformed %s annotation (fail closed)", pod.Namespace, LegacyAnnotation)
		}
		return true, fmt.Sprintf("namespace %s is annotated DefaultDeny", pod.Namespace)
	}
	if c.Mode == ModeV16 {
		return false, ""
	}
	// The lexically first isolating policy names the reason, so the answer
	// does not depend on map order.
	first := ""
	for key, p := range policies {
		if p.Namespace == pod.Namespace && (first == "" || key < first) && c.PolicyAffects(p, d) && c.Selects(p, pod) {
			first = key
		}
	}
	if first != "" {
		return true, fmt.Sprintf("selected by policy %s with %s in policyTypes", first, d)
	}
	return false, ""
}

// PeerSelects reports whether a selector peer of a policy in namespace
// policyNS selects pod. IPBlock peers never select by identity.
func (c *Cluster) PeerSelects(peer *Peer, policyNS string, pod *Pod) bool {
	if peer.IPBlock != nil || !pod.Active() {
		return false
	}
	if peer.NamespaceSelector == nil {
		if pod.Namespace != policyNS {
			return false
		}
	} else if !peer.NamespaceSelector.Matches(c.namespaceLabels(pod.Namespace)) {
		return false
	}
	return peer.PodSelector == nil || peer.PodSelector.Matches(pod.Labels)
}

// PeerPods returns the active pods a selector peer selects, sorted.
func (c *Cluster) PeerPods(peer *Peer, policyNS string) []*Pod {
	var out []*Pod
	for _, pod := range c.SortedPods() {
		if c.PeerSelects(peer, policyNS, pod) {
			out = append(out, pod)
		}
	}
	return out
}

// PodByIP returns the active pod owning ip, if any.
func (c *Cluster) PodByIP(ip netip.Addr) *Pod {
	for _, pod := range c.SortedPods() {
		if pod.Active() && pod.HasIP(ip) {
			return pod
		}
	}
	return nil
}

// Targets returns the active pods policy p selects, sorted.
func (c *Cluster) Targets(p *Policy) []*Pod {
	var out []*Pod
	for _, pod := range c.SortedPods() {
		if c.Selects(p, pod) {
			out = append(out, pod)
		}
	}
	return out
}
