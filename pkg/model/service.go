package model

import (
	"cmp"
	"iter"
	"net/netip"
	"slices"
)

// Service is the part of a Service that in-bridge load balancing depends on:
// its cluster IPs and ports, session affinity and internal traffic policy.
// Headless and ExternalName Services are not Services here (normalize leaves
// them out): nothing is balanced for them. NodePort and LoadBalancer Services
// are balanced on their cluster IPs like ClusterIP ones; their node ports
// and load-balancer addresses stay with kube-proxy on the host.
type Service struct {
	Namespace string
	Name      string
	// ClusterIPs are the Service's virtual addresses, at most one per family
	// (spec.clusterIPs: primary family first).
	ClusterIPs []netip.Addr
	Ports      []ServicePort
	// AffinitySeconds > 0 is sessionAffinity ClientIP with that timeout: new
	// connections from one client address keep going to the endpoint the
	// last one went to, as long as the last one is more recent than this.
	AffinitySeconds int32
	// InternalLocal is internalTrafficPolicy Local: pods reach only the
	// endpoints on their own node (none: connections are dropped).
	InternalLocal bool
}

// Key is namespace/name.
func (s *Service) Key() string { return s.Namespace + "/" + s.Name }

// ServicePort is one entry of a Service's spec.ports. TargetPort is not
// here: the EndpointSlices carry each endpoint's resolved port (a named
// targetPort may resolve differently per pod, and the EndpointSlice
// controller puts such pods in different slices).
type ServicePort struct {
	Name     string
	Protocol Protocol
	Port     int32
}

// EndpointSlice is one discovery.k8s.io/v1 EndpointSlice of a Service
// (label kubernetes.io/service-name). FQDN slices are left out by normalize.
type EndpointSlice struct {
	Namespace string
	Name      string
	// Service is the name of the Service the slice belongs to (same namespace).
	Service string
	// IPv6 is the address type: false IPv4, true IPv6.
	IPv6      bool
	Ports     []EndpointPort
	Endpoints []Endpoint
}

// Key is namespace/name.
func (e *EndpointSlice) Key() string { return e.Namespace + "/" + e.Name }

// ServiceKey is the namespace/name of the Service the slice belongs to.
func (e *EndpointSlice) ServiceKey() string { return e.Namespace + "/" + e.Service }

// EndpointPort is one entry of a slice's ports: the port every endpoint of
// the slice serves the Service port of the same name and protocol on.
type EndpointPort struct {
	Name     string
	Protocol Protocol
	Port     int32
}

// Endpoint is one endpoint of a slice. Only its first address is used, as
// kube-proxy does.
type Endpoint struct {
	Address netip.Addr
	// Conditions, with the API's defaults applied (ready and serving unset
	// mean true, terminating unset means false).
	Ready, Serving, Terminating bool
	// Node is spec nodeName ("" when unknown).
	Node string
}

// Backend is one endpoint a Service port balances new connections to.
type Backend struct {
	Address netip.Addr
	Port    int32
	Node    string
}

// Compare orders backends by address, then port.
func (b Backend) Compare(o Backend) int {
	if c := b.Address.Compare(o.Address); c != 0 {
		return c
	}
	return cmp.Compare(b.Port, o.Port)
}

// Handling is what a node does with new connections from its pods to one
// Service port of one family.
type Handling int

const (
	// Balance: to one of the backends.
	Balance Handling = iota
	// NoEndpoints: the Service has no usable endpoint anywhere; kube-proxy
	// rejects such connections.
	NoEndpoints
	// NoLocalEndpoints: internalTrafficPolicy Local and no usable endpoint on
	// this node, though there are some elsewhere; kube-proxy drops them.
	NoLocalEndpoints
)

// Backends returns the endpoints that new connections from pods of node to
// Service port sp on the cluster IP of one family go to, chosen as
// kube-proxy chooses them (its CategorizeEndpoints, without topology hints):
//
//   - endpoints come from the Service's slices of that family whose ports
//     have sp's name and protocol; the slice's port number is the target;
//   - an address in several slices counts once (a terminating copy never
//     replaces another one);
//   - Cluster policy: the ready endpoints; if there are none, those that are
//     serving and terminating (the best effort not to drop connections);
//   - Local policy: the same choice among the endpoints on node; none there
//     while there are usable endpoints elsewhere is NoLocalEndpoints.
//
// slices must be the Service's slices (others are ignored). The result is
// sorted and its Handling is Balance exactly when it is not empty.
func Backends(svc *Service, sp ServicePort, ipv6 bool, slices_ []*EndpointSlice, node string) ([]Backend, Handling) {
	type ep struct {
		Backend
		ready, serving, terminating bool
	}
	seen := map[Backend]int{}
	var all []ep
	for e, port := range portEndpoints(svc, sp, ipv6, slices_) {
		cur := ep{Backend{e.Address, port, e.Node}, e.Ready, e.Serving, e.Terminating}
		id := Backend{Address: e.Address, Port: port}
		if i, ok := seen[id]; ok {
			if !e.Terminating {
				all[i] = cur
			}
			continue
		}
		seen[id] = len(all)
		all = append(all, cur)
	}
	choose := func(local bool) []Backend {
		var ready, fallback []Backend
		for _, e := range all {
			if local && (node == "" || e.Node != node) {
				continue
			}
			switch {
			case e.ready:
				ready = append(ready, e.Backend)
			case e.serving && e.terminating:
				fallback = append(fallback, e.Backend)
			}
		}
		out := ready
		if len(out) == 0 {
			out = fallback
		}
		slices.SortFunc(out, Backend.Compare)
		return out
	}
	if svc.InternalLocal {
		if out := choose(true); len(out) > 0 {
			return out, Balance
		}
		if len(choose(false)) > 0 {
			return nil, NoLocalEndpoints
		}
		return nil, NoEndpoints
	}
	if out := choose(false); len(out) > 0 {
		return out, Balance
	}
	return nil, NoEndpoints
}

// ServingBackends returns the endpoints (address and target port) that
// serve Service port sp of one family, ready or not, local or not: the
// endpoints whose existing UDP "connections" kube-proxy keeps when it
// reconciles conntrack. An entry to any other backend is deleted.
func ServingBackends(svc *Service, sp ServicePort, ipv6 bool, slices_ []*EndpointSlice) map[Backend]bool {
	out := map[Backend]bool{}
	for e, port := range portEndpoints(svc, sp, ipv6, slices_) {
		if e.Serving {
			out[Backend{Address: e.Address, Port: port}] = true
		}
	}
	return out
}

// portEndpoints yields the endpoints of Service port sp in one family, each
// with the target port its slice gives sp: the slices of svc of that family
// in slices_, their port of sp's name and protocol (port 0, unset, is
// skipped), and of those the endpoints with a valid address of the family,
// in slice order.
func portEndpoints(svc *Service, sp ServicePort, ipv6 bool, slices_ []*EndpointSlice) iter.Seq2[*Endpoint, int32] {
	return func(yield func(*Endpoint, int32) bool) {
		for _, sl := range slices_ {
			if sl.IPv6 != ipv6 || sl.Namespace != svc.Namespace || sl.Service != svc.Name {
				continue
			}
			for _, p := range sl.Ports {
				if p.Name != sp.Name || p.Protocol != sp.Protocol || p.Port == 0 {
					continue
				}
				for i := range sl.Endpoints {
					e := &sl.Endpoints[i]
					if e.Address.IsValid() && e.Address.Is6() == ipv6 && !yield(e, p.Port) {
						return
					}
				}
			}
		}
	}
}
