package synth

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Services (Scale.Services > 0). They are generated after everything else
// and from a generator of their own (seeded from the same seed), so a
// cluster with Services has exactly the namespaces, pods and policies of
// the same scale without them, and NewPod gives the same pods.
//
//   - kube-system/kube-dns (CoreDNS: dns UDP 53, dns-tcp TCP 53, metrics TCP
//     9153) on ServiceVIPs' tenth address, monitoring/prometheus (TCP 9090)
//     and ingress-nginx/ingress-nginx-controller (type LoadBalancer, http 80
//     and https 443): every pod of theirs is an endpoint;
//   - the rest are application Services, per deployment (namespace and app
//     label, e.g. ns-00012/api-b): one for every deployment, named after
//     it ("api-b"), then more in turns over the deployments of 3 pods or
//     more ("api-b-internal", "api-b-canary", ...). Each selects its
//     deployment (app=api-b) and has 3 ready endpoints, 3 consecutive pods
//     of the deployment (all of them if it has fewer), the next Service of
//     the deployment taking the next 3: with about 10 Services per
//     deployment at S1 every pod is an endpoint of about 3 Services. (The EndpointSlice
//     controller would list every pod the selector matches; the benchmark's
//     apiserver runs no controller, and the agent reads the slices only.)
//   - ports by tier, named target ports resolved per pod as the EndpointSlice
//     controller does: web http 80→http (8080); api http 80→http and grpc
//     9000→grpc (two ports); worker metrics 9091→metrics, and one worker
//     Service in three also statsd UDP 8125; cache redis 6379; db postgres
//     5432 and metrics 9187 (two ports);
//   - 3 % of web and api Services have sessionAffinity ClientIP (half with
//     the default timeout, half 3600 s); 2 % of all application Services
//     have internalTrafficPolicy Local;
//   - one cluster IP each (IPv4, SingleStack), drawn at random from
//     ServiceVIPs; one EndpointSlice each, named like the controller's
//     ("api-b-x7k2p") and labelled kubernetes.io/service-name and
//     endpointslice.kubernetes.io/managed-by.

// ServiceVIPs is the range cluster IPs are drawn from: the upper half of the
// benchmark apiserver's --service-cluster-ip-range 10.96.0.0/16
// (internal/k8stest). The lower half is left alone: the apiserver gives
// 10.96.0.1 to default/kubernetes, and node 96 (10.96.0.0/16 in PodCIDR)
// numbers its pods from 10.96.0.1 up.
var ServiceVIPs = netip.MustParsePrefix("10.96.128.0/17")

// ManagedBy is the endpointslice.kubernetes.io/managed-by value of the
// generated slices (the EndpointSlice controller's).
const ManagedBy = "endpointslice-controller.k8s.io"

// serviceSuffixes name a deployment's Services after the first.
var serviceSuffixes = []string{"internal", "canary", "public", "admin", "stable", "preview", "blue", "green", "grpc-lb", "debug"}

// svcPort is a Service port and how its target resolves.
type svcPort struct {
	name   string
	proto  corev1.Protocol
	port   int32
	target intstr.IntOrString // a container port name, or a number
}

// tierServicePorts are the ports of an application Service by tier; the
// second list is the worker Services' extra UDP port.
var tierServicePorts = map[string][]svcPort{
	"web":    {{"http", corev1.ProtocolTCP, 80, intstr.FromString("http")}},
	"api":    {{"http", corev1.ProtocolTCP, 80, intstr.FromString("http")}, {"grpc", corev1.ProtocolTCP, 9000, intstr.FromString("grpc")}},
	"worker": {{"metrics", corev1.ProtocolTCP, 9091, intstr.FromString("metrics")}},
	"cache":  {{"redis", corev1.ProtocolTCP, 6379, intstr.FromString("redis")}},
	"db":     {{"postgres", corev1.ProtocolTCP, 5432, intstr.FromString("postgres")}, {"metrics", corev1.ProtocolTCP, 9187, intstr.FromString("metrics")}},
}

var statsdPort = svcPort{"statsd", corev1.ProtocolUDP, 8125, intstr.FromInt32(8125)}

// deployment is the pods of one application deployment.
type deployment struct {
	ns, app, tier string
	pods          []*corev1.Pod
	services      int // generated so far
}

// services generates s.Services Services and their slices.
func (c *Cluster) services() {
	n := c.Scale.Services
	c.svcRng = rand.New(rand.NewPCG(c.Seed, 0x5e7f1ce5))
	c.usedVIPs = map[netip.Addr]bool{}
	byKey := map[string]*deployment{}
	infra := map[string][]*corev1.Pod{}
	for _, p := range c.Pods {
		if AppNamespaceIndex(p.Namespace) < 0 {
			infra[p.Namespace] = append(infra[p.Namespace], p)
			continue
		}
		key := p.Namespace + "/" + p.Labels[LabelApp]
		d := byKey[key]
		if d == nil {
			d = &deployment{ns: p.Namespace, app: p.Labels[LabelApp], tier: p.Labels[LabelTier]}
			byKey[key] = d
			c.deployments = append(c.deployments, d)
		}
		d.pods = append(d.pods, p)
	}
	dnsVIP := ServiceVIPs.Addr().Next()
	for range 9 {
		dnsVIP = dnsVIP.Next()
	}
	for _, s := range []struct {
		ns, name string
		typ      corev1.ServiceType
		sel      map[string]string
		vip      netip.Addr
		ports    []svcPort
	}{
		{KubeSystem, "kube-dns", corev1.ServiceTypeClusterIP, map[string]string{LabelK8sApp: "kube-dns"}, dnsVIP, []svcPort{
			{"dns", corev1.ProtocolUDP, 53, intstr.FromInt32(53)},
			{"dns-tcp", corev1.ProtocolTCP, 53, intstr.FromInt32(53)},
			{"metrics", corev1.ProtocolTCP, 9153, intstr.FromInt32(9153)}}},
		{Monitoring, "prometheus", corev1.ServiceTypeClusterIP, map[string]string{LabelApp: "prometheus"}, netip.Addr{}, []svcPort{
			{"web", corev1.ProtocolTCP, 9090, intstr.FromString("web")}}},
		{IngressNginx, "ingress-nginx-controller", corev1.ServiceTypeLoadBalancer, map[string]string{LabelIngress: "ingress-nginx"}, netip.Addr{}, []svcPort{
			{"http", corev1.ProtocolTCP, 80, intstr.FromString("http")},
			{"https", corev1.ProtocolTCP, 443, intstr.FromString("https")}}},
	} {
		if len(c.Services) == n {
			return
		}
		svc := c.service(s.ns, s.name, s.typ, s.sel, s.vip, s.ports)
		c.addService(svc, infra[s.ns])
	}
	if len(c.deployments) == 0 {
		return
	}
	// Every deployment gets its Service, then those with 3 pods or more
	// get more, in turns.
	for round := 0; len(c.Services) < n; round++ {
		added := false
		for _, d := range c.deployments {
			if len(c.Services) == n {
				break
			}
			if round > 0 && len(d.pods) < 3 {
				continue
			}
			c.addService(c.appService(d, c.serviceName(d)), c.nextEndpoints(d))
			added = true
		}
		if !added {
			panic("synth: no deployment of 3 pods for more Services")
		}
	}
}

// serviceName names deployment d's next Service.
func (c *Cluster) serviceName(d *deployment) string {
	k := d.services
	d.services++
	switch {
	case k == 0:
		return d.app
	case k <= len(serviceSuffixes):
		return d.app + "-" + serviceSuffixes[k-1]
	}
	return fmt.Sprintf("%s-%d", d.app, k)
}

// nextEndpoints returns the 3 pods of d after those the last Service took.
func (c *Cluster) nextEndpoints(d *deployment) []*corev1.Pod {
	if len(d.pods) <= 3 {
		return d.pods
	}
	start := 3 * (d.services - 1)
	out := make([]*corev1.Pod, 3)
	for i := range out {
		out[i] = d.pods[(start+i)%len(d.pods)]
	}
	return out
}

// appService builds an application Service for deployment d.
func (c *Cluster) appService(d *deployment, name string) *corev1.Service {
	ports := tierServicePorts[d.tier]
	statsd := d.tier == "worker" && c.svcRng.IntN(3) == 0
	if statsd {
		ports = append(ports[:len(ports):len(ports)], statsdPort)
	}
	svc := c.service(d.ns, name, corev1.ServiceTypeClusterIP, map[string]string{LabelApp: d.app}, netip.Addr{}, ports)
	if (d.tier == "web" || d.tier == "api") && c.svcRng.IntN(100) < 3 {
		svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		timeout := int32(corev1.DefaultClientIPServiceAffinitySeconds)
		if c.svcRng.IntN(2) == 0 {
			timeout = 3600
		}
		svc.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	}
	if c.svcRng.IntN(100) < 2 {
		svc.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
	}
	return svc
}

// service builds a Service as the apiserver stores it (defaults written
// out); an invalid vip draws a free one.
func (c *Cluster) service(ns, name string, typ corev1.ServiceType, sel map[string]string, vip netip.Addr, ports []svcPort) *corev1.Service {
	if !vip.IsValid() {
		vip = c.freeVIP()
	}
	c.usedVIPs[vip] = true
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: maps.Clone(sel)},
		Spec: corev1.ServiceSpec{
			Type:                  typ,
			Selector:              sel,
			ClusterIP:             vip.String(),
			ClusterIPs:            []string{vip.String()},
			IPFamilies:            []corev1.IPFamily{corev1.IPv4Protocol},
			IPFamilyPolicy:        ptr.To(corev1.IPFamilyPolicySingleStack),
			SessionAffinity:       corev1.ServiceAffinityNone,
			InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
		},
	}
	for _, p := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p.name, Protocol: p.proto, Port: p.port, TargetPort: p.target})
	}
	return svc
}

// freeVIP draws an unused address of ServiceVIPs (not its first or last).
func (c *Cluster) freeVIP() netip.Addr {
	base := ServiceVIPs.Addr().As4()
	size := 1 << (32 - ServiceVIPs.Bits())
	for {
		off := 1 + c.svcRng.IntN(size-2)
		a := base
		a[2] += byte(off >> 8)
		a[3] = byte(off)
		if ip := netip.AddrFrom4(a); !c.usedVIPs[ip] {
			return ip
		}
	}
}

// addService appends svc and its EndpointSlice, listing pods.
func (c *Cluster) addService(svc *corev1.Service, pods []*corev1.Pod) {
	c.Services = append(c.Services, svc)
	c.EndpointSlices = append(c.EndpointSlices, c.slice(svc, pods))
}

// slice builds the EndpointSlice of svc with pods as ready endpoints, its
// ports resolved on the first pod (the pods of a deployment declare the
// same ports).
func (c *Cluster) slice(svc *corev1.Service, pods []*corev1.Pod) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name + "-" + c.suffix(),
			Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: ManagedBy}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{},
	}
	for _, sp := range svc.Spec.Ports {
		port := sp.TargetPort.IntVal
		if sp.TargetPort.Type == intstr.String && len(pods) > 0 {
			port = containerPort(pods[0], sp.TargetPort.StrVal, sp.Protocol)
		}
		sl.Ports = append(sl.Ports, discoveryv1.EndpointPort{Name: ptr.To(sp.Name), Protocol: ptr.To(sp.Protocol), Port: ptr.To(port)})
	}
	for _, p := range pods {
		sl.Endpoints = append(sl.Endpoints, Endpoint(p))
	}
	return sl
}

// suffix is a 5-character name suffix as generateName makes them.
func (c *Cluster) suffix() string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789" // the apiserver's
	b := make([]byte, 5)
	for i := range b {
		b[i] = alphabet[c.svcRng.IntN(len(alphabet))]
	}
	return string(b)
}

func containerPort(p *corev1.Pod, name string, proto corev1.Protocol) int32 {
	for _, ct := range p.Spec.Containers {
		for _, cp := range ct.Ports {
			if cp.Name == name && cp.Protocol == proto {
				return cp.ContainerPort
			}
		}
	}
	return 0 // unresolved: the controller leaves such a pod out; never here
}

// Endpoint is pod p as a ready endpoint of a slice, as the EndpointSlice
// controller writes it.
func Endpoint(p *corev1.Pod) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{p.Status.PodIP},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
		NodeName:   ptr.To(p.Spec.NodeName),
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name},
	}
}

// SelectedPods returns the pods of c (in generation order) that Service
// svc's selector matches: the endpoints it may have.
func (c *Cluster) SelectedPods(svc *corev1.Service) []*corev1.Pod {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var out []*corev1.Pod
	for _, p := range c.Pods {
		if p.Namespace == svc.Namespace && len(svc.Spec.Selector) > 0 && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out
}

// NewService returns a new Service (not part of c.Services) like the
// application Service c.Services[i] (same deployment, ports, affinity and
// traffic policy), with a new name and a fresh cluster IP, and its slice
// with 3 of the deployment's pods drawn at random: the Service an event
// adds. Successive calls give distinct Services. It panics if c has no
// application Service.
func (c *Cluster) NewService(i int) (*corev1.Service, *discoveryv1.EndpointSlice) {
	if len(c.deployments) == 0 {
		panic("synth: no application Services")
	}
	base := c.Services[i%len(c.Services)]
	if AppNamespaceIndex(base.Namespace) < 0 {
		base = c.Services[len(c.Services)-1]
	}
	c.svcSeq++
	svc := base.DeepCopy()
	svc.Name = fmt.Sprintf("%s-new-%05d", base.Spec.Selector[LabelApp], c.svcSeq)
	vip := c.freeVIP()
	c.usedVIPs[vip] = true
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = vip.String(), []string{vip.String()}
	pods := c.SelectedPods(svc)
	c.svcRng.Shuffle(len(pods), func(a, b int) { pods[a], pods[b] = pods[b], pods[a] })
	pods = pods[:min(3, len(pods))]
	return svc, c.slice(svc, pods)
}
