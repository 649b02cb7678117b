package netpoltest

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// Services of the fixture, as upstream's netpol e2e makes them: one
// Service per pod ("s-POD" in the pod's namespace) whose ports are the
// standard probes (serve-80-tcp ... serve-81-sctp, each to the same port of
// the pod), so every matrix can be probed through cluster IPs as well as
// pod IPs.

// PodServiceName is the name of pod's Service.
func PodServiceName(pod string) string { return "s-" + pod }

// ServiceIP is the cluster IP of the Service of pod ns/name for family 4
// or 6: 10.96.N.P / fd00:96::N:P, N and P the namespace's and pod's
// positions in the fixture.
func ServiceIP(ns, pod string, fam int) netip.Addr {
	ni, pi := slices.Index(NamespaceNames, ns)+1, slices.Index(PodNames, pod)+1
	if fam == 6 {
		return netip.MustParseAddr(fmt.Sprintf("fd00:96::%d:%d", ni, pi))
	}
	return netip.AddrFrom4([4]byte{10, 96, byte(ni), byte(pi)})
}

// SyncPodServices gives every active pod of the fixture its Service and
// EndpointSlices (one per family the pod has; the endpoint ready), as the
// pods are now, and removes those of pods that are gone.
func SyncPodServices(f *Fixture) {
	for key, svc := range f.Cluster.Services {
		if strings.HasPrefix(svc.Name, "s-") {
			delete(f.Cluster.Services, key)
		}
	}
	for key, sl := range f.Cluster.EndpointSlices {
		if strings.HasPrefix(sl.Service, "s-") {
			delete(f.Cluster.EndpointSlices, key)
		}
	}
	for _, p := range f.Cluster.SortedPods() {
		if !p.Active() || !slices.Contains(NamespaceNames, p.Namespace) || !slices.Contains(PodNames, p.Name) {
			continue
		}
		svc := &model.Service{Namespace: p.Namespace, Name: PodServiceName(p.Name)}
		var ports []model.EndpointPort
		for _, pr := range StandardProbes {
			name := fmt.Sprintf("serve-%d-%s", pr.Port, strings.ToLower(string(pr.Protocol)))
			svc.Ports = append(svc.Ports, model.ServicePort{Name: name, Protocol: pr.Protocol, Port: pr.Port})
			ports = append(ports, model.EndpointPort{Name: name, Protocol: pr.Protocol, Port: pr.Port})
		}
		for _, fam := range []int{4, 6} {
			ip, ok := PodIP(p, fam)
			if !ok {
				continue
			}
			svc.ClusterIPs = append(svc.ClusterIPs, ServiceIP(p.Namespace, p.Name, fam))
			f.Cluster.AddEndpointSlice(&model.EndpointSlice{
				Namespace: p.Namespace, Name: fmt.Sprintf("%s-ipv%d", svc.Name, fam), Service: svc.Name, IPv6: fam == 6,
				Ports:     ports,
				Endpoints: []model.Endpoint{{Address: ip, Ready: true, Serving: true, Node: p.Node}},
			})
		}
		f.Cluster.AddService(svc)
	}
}

// SampleServices adds Services of every kind the load balancer handles,
// over the fixture's pods (dual-stack pods give dual-stack Services):
//
//   - x/web: TCP 80 (targetPort 81), UDP 53 (to 80), SCTP 9 (to 80);
//     backends x/a, x/b, y/c (y/c's endpoint terminating and not ready:
//     unused while others are ready);
//   - y/sticky: sessionAffinity ClientIP (30 s), TCP 80 to y/a, y/b;
//   - y/long: sessionAffinity ClientIP with the API's longest timeout
//     (86400 s, capped to OpenFlow's 65535);
//   - z/local: internalTrafficPolicy Local, TCP 80 to z/a only;
//   - z/draining: only terminating-but-serving endpoints (z/b, z/c);
//   - x/empty: no endpoints.
func SampleServices(f *Fixture) {
	dual := len(f.Pods["x/a"].IPs) > 1
	vips := func(n byte) []netip.Addr {
		out := []netip.Addr{netip.AddrFrom4([4]byte{10, 96, 100, n})}
		if dual {
			out = append(out, netip.MustParseAddr(fmt.Sprintf("fd00:96::100:%d", n)))
		}
		return out
	}
	type ep struct {
		pod                         string
		ready, serving, terminating bool
	}
	add := func(ns, name string, vip byte, ports []model.ServicePort, targets []int32, eps []ep, mod func(*model.Service)) {
		svc := &model.Service{Namespace: ns, Name: name, ClusterIPs: vips(vip), Ports: ports}
		if mod != nil {
			mod(svc)
		}
		f.Cluster.AddService(svc)
		if len(eps) == 0 {
			return
		}
		var eports []model.EndpointPort
		for i, sp := range ports {
			eports = append(eports, model.EndpointPort{Name: sp.Name, Protocol: sp.Protocol, Port: targets[i]})
		}
		for _, fam := range []int{4, 6} {
			sl := &model.EndpointSlice{Namespace: ns, Name: fmt.Sprintf("%s-%d", name, fam), Service: name, IPv6: fam == 6, Ports: eports}
			for _, e := range eps {
				p := f.Pods[e.pod]
				if ip, ok := PodIP(p, fam); ok {
					sl.Endpoints = append(sl.Endpoints, model.Endpoint{Address: ip, Ready: e.ready, Serving: e.serving, Terminating: e.terminating, Node: p.Node})
				}
			}
			if len(sl.Endpoints) > 0 {
				f.Cluster.AddEndpointSlice(sl)
			}
		}
	}
	ready := func(pods ...string) []ep {
		var out []ep
		for _, p := range pods {
			out = append(out, ep{p, true, true, false})
		}
		return out
	}
	tcp80 := []model.ServicePort{{Name: "http", Protocol: model.TCP, Port: 80}}
	add("x", "web", 1, []model.ServicePort{
		{Name: "http", Protocol: model.TCP, Port: 80},
		{Name: "dns", Protocol: model.UDP, Port: 53},
		{Name: "sctp", Protocol: model.SCTP, Port: 9},
	}, []int32{81, 80, 80}, append(ready("x/a", "x/b"), ep{"y/c", false, false, true}), nil)
	add("y", "sticky", 2, tcp80, []int32{80}, ready("y/a", "y/b"), func(s *model.Service) { s.AffinitySeconds = 30 })
	add("y", "long", 3, tcp80, []int32{80}, ready("y/a"), func(s *model.Service) { s.AffinitySeconds = 86400 })
	add("z", "local", 4, tcp80, []int32{80}, ready("z/a"), func(s *model.Service) { s.InternalLocal = true })
	add("z", "draining", 5, tcp80, []int32{80}, []ep{{"z/b", false, true, true}, {"z/c", false, true, true}}, nil)
	add("x", "empty", 6, tcp80, []int32{80}, nil, nil)
}
