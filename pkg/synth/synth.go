// Package synth generates deterministic synthetic clusters for benchmarks:
// namespaces with labels, pods with label distributions spread over nodes,
// and NetworkPolicies mixing the shapes real clusters use (default deny,
// pod and namespace selectors, combined peers, ipBlock with except, named
// ports, port ranges, egress).
//
// Everything is a pure function of the Scale and the seed. The generator
// produces API objects (what the agent reads from a real apiserver); Model
// normalizes them with pkg/normalize, exactly as the agent does, so the
// compile benchmarks and the agent path see the same policy.
//
// Shape of a cluster (see BENCHMARKS.md):
//
//   - three infrastructure namespaces: kube-system (CoreDNS, k8s-app=kube-dns),
//     monitoring (Prometheus) and ingress-nginx (the ingress controller);
//   - application namespaces "ns-NNNNN" labelled team (10 namespaces per
//     team), env (prod 50 %, staging 30 %, dev 20 %) and, as the apiserver
//     does, kubernetes.io/metadata.name;
//   - application pods in tiers web, api, worker, cache, db (weights 25, 30,
//     25, 10, 10 %), labelled app, tier, version, pod-template-hash, with the
//     tier's named container ports; every pod lands on a random node;
//   - per application namespace an equal share of the policies: always a
//     default deny of ingress, then templates drawn without repetition
//     (templates below);
//   - with Scale.Services (S1Services), Services and their EndpointSlices:
//     kube-dns, Prometheus, the ingress controller, then per-deployment
//     application Services of 3 ready endpoints each (services.go), drawn
//     from a generator of their own so that everything else is as without
//     them.
package synth

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
)

// Scale is the size of a synthetic cluster.
type Scale struct {
	Name       string
	Namespaces int // including the three infrastructure namespaces
	Pods       int
	Policies   int
	Nodes      int
	// Services and their EndpointSlices (services.go); 0 for S1 and S2,
	// whose objects are exactly as before Services existed.
	Services int
}

// The benchmark scales. S2 is the scale of Antrea's published controller
// performance test (TestInitXLargeScaleWithSmallNamespaces).
var (
	S1 = Scale{Name: "S1", Namespaces: 100, Pods: 10000, Policies: 1000, Nodes: 100}
	S2 = Scale{Name: "S2", Namespaces: 25000, Pods: 100000, Policies: 75000, Nodes: 100}
	// S1Services is S1 plus 10,000 Services of 3 ready endpoints each
	// (issue 9's Services benchmark): the same namespaces, pods and
	// policies as S1.
	S1Services = Scale{Name: "S1+Services", Namespaces: 100, Pods: 10000, Policies: 1000, Nodes: 100, Services: 10000}
)

// DefaultSeed is the seed the benchmarks use.
const DefaultSeed = 1

// Label keys.
const (
	LabelName     = "kubernetes.io/metadata.name" // set by the apiserver on every namespace
	LabelTeam     = "team"
	LabelEnv      = "env"
	LabelApp      = "app"
	LabelTier     = "tier"
	LabelVersion  = "version"
	LabelHash     = "pod-template-hash"
	LabelK8sApp   = "k8s-app"
	LabelIngress  = "app.kubernetes.io/name"
	NamespacesPer = 10 // namespaces per team
)

// Infrastructure namespaces.
const (
	KubeSystem   = "kube-system"
	Monitoring   = "monitoring"
	IngressNginx = "ingress-nginx"
)

// Tiers of application pods, with their share of the pods.
var Tiers = []string{"web", "api", "worker", "cache", "db"}

var tierWeights = []int{25, 30, 25, 10, 10}

// tierPorts are the named container ports of each tier.
var tierPorts = map[string][]corev1.ContainerPort{
	"web":    {{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}, {Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}},
	"api":    {{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}, {Name: "grpc", ContainerPort: 9000, Protocol: corev1.ProtocolTCP}, {Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}},
	"worker": {{Name: "metrics", ContainerPort: 9091, Protocol: corev1.ProtocolTCP}},
	"cache":  {{Name: "redis", ContainerPort: 6379, Protocol: corev1.ProtocolTCP}},
	"db":     {{Name: "postgres", ContainerPort: 5432, Protocol: corev1.ProtocolTCP}, {Name: "metrics", ContainerPort: 9187, Protocol: corev1.ProtocolTCP}},
}

// Cluster is a generated cluster: API objects in a deterministic order
// (namespaces, then pods by namespace, then policies by namespace, then
// Services, each with its EndpointSlice at the same index).
type Cluster struct {
	Scale Scale
	Seed  uint64

	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	Policies   []*networkingv1.NetworkPolicy
	// Services and EndpointSlices (Scale.Services of each): slice i is
	// Service i's.
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice

	rng     *rand.Rand
	nextIP  []int          // per node: pods placed so far (the next host number)
	nsIndex map[string]int // application namespace name → index
	seq     int            // for names of pods added after generation

	// Services have their own generator (services.go).
	svcRng      *rand.Rand
	usedVIPs    map[netip.Addr]bool
	deployments []*deployment
	svcSeq      int
}

// NodeName names node i (0-based).
func NodeName(i int) string { return fmt.Sprintf("node-%03d", i) }

// NodeIndex returns the index of a node name made by NodeName (-1 if not).
func NodeIndex(name string) int {
	var i int
	if _, err := fmt.Sscanf(name, "node-%03d", &i); err != nil {
		return -1
	}
	return i
}

// AppNamespace names application namespace i (0-based).
func AppNamespace(i int) string { return fmt.Sprintf("ns-%05d", i) }

// AppNamespaceIndex is the index of an AppNamespace name (-1 if not one).
func AppNamespaceIndex(name string) int {
	var i int
	if _, err := fmt.Sscanf(name, "ns-%05d", &i); err != nil {
		return -1
	}
	return i
}

// Team is the team label value of application namespace i.
func Team(i int) string { return fmt.Sprintf("team-%04d", i/NamespacesPer) }

// PodCIDR is the cluster's pod network; node n owns 10.n.0.0/16.
var PodCIDR = netip.MustParsePrefix("10.0.0.0/8")

// Generate builds the cluster of scale s from seed.
func Generate(s Scale, seed uint64) *Cluster {
	if s.Nodes < 1 || s.Nodes > 256 {
		panic("synth: 1..256 nodes")
	}
	c := &Cluster{
		Scale: s, Seed: seed,
		rng:     rand.New(rand.NewPCG(seed, 0x5eed)),
		nextIP:  make([]int, s.Nodes),
		nsIndex: map[string]int{},
	}
	apps := s.Namespaces - 3
	if apps < 1 {
		panic("synth: need at least 4 namespaces")
	}
	c.infrastructure()
	for i := 0; i < apps; i++ {
		c.Namespaces = append(c.Namespaces, c.appNamespace(i))
	}
	// Pods: what the infrastructure did not take, spread evenly.
	remaining := s.Pods - len(c.Pods)
	for i := 0; i < apps; i++ {
		n := remaining / apps
		if i < remaining%apps {
			n++
		}
		for k := 0; k < n; k++ {
			c.Pods = append(c.Pods, c.appPod(AppNamespace(i), c.pickTier(), k))
		}
	}
	for i := 0; i < apps; i++ {
		n := s.Policies / apps
		if i < s.Policies%apps {
			n++
		}
		c.Policies = append(c.Policies, c.namespacePolicies(i, n)...)
	}
	if s.Services > 0 {
		c.services()
	}
	return c
}

// infrastructure adds kube-system, monitoring and ingress-nginx with their
// pods. CoreDNS and the ingress controller scale with the cluster.
func (c *Cluster) infrastructure() {
	dns := max(2, c.Scale.Pods/5000)
	ingress := max(2, c.Scale.Pods/10000)
	for _, ns := range []string{KubeSystem, Monitoring, IngressNginx} {
		c.Namespaces = append(c.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: ns, Labels: map[string]string{LabelName: ns}}})
	}
	for k := 0; k < dns; k++ {
		c.Pods = append(c.Pods, c.pod(KubeSystem, fmt.Sprintf("coredns-%05d", k),
			map[string]string{LabelK8sApp: "kube-dns", LabelHash: "5d78c9869d"},
			[]corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
				{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
				{Name: "metrics", ContainerPort: 9153, Protocol: corev1.ProtocolTCP}}))
	}
	for k := 0; k < 2; k++ {
		c.Pods = append(c.Pods, c.pod(Monitoring, fmt.Sprintf("prometheus-%d", k),
			map[string]string{LabelApp: "prometheus"},
			[]corev1.ContainerPort{{Name: "web", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}}))
	}
	for k := 0; k < ingress; k++ {
		c.Pods = append(c.Pods, c.pod(IngressNginx, fmt.Sprintf("ingress-nginx-controller-%05d", k),
			map[string]string{LabelIngress: "ingress-nginx", LabelHash: "7c6974c4d8"},
			[]corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP},
				{Name: "https", ContainerPort: 443, Protocol: corev1.ProtocolTCP}}))
	}
}

func (c *Cluster) appNamespace(i int) *corev1.Namespace {
	name := AppNamespace(i)
	c.nsIndex[name] = i
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		LabelName: name,
		LabelTeam: Team(i),
		LabelEnv:  c.pickEnv(),
	}}}
}

func (c *Cluster) pickEnv() string {
	switch r := c.rng.IntN(10); {
	case r < 5:
		return "prod"
	case r < 8:
		return "staging"
	}
	return "dev"
}

func (c *Cluster) pickTier() string {
	r := c.rng.IntN(100)
	for i, w := range tierWeights {
		if r < w {
			return Tiers[i]
		}
		r -= w
	}
	return Tiers[len(Tiers)-1]
}

// appPod is replica k of a tier in namespace ns. Two deployments per tier
// ("api-a", "api-b") share the tier label.
func (c *Cluster) appPod(ns, tier string, k int) *corev1.Pod {
	variant := "a"
	if c.rng.IntN(2) == 1 {
		variant = "b"
	}
	app := tier + "-" + variant
	version := "v1"
	if c.rng.IntN(5) == 0 {
		version = "v2"
	}
	labels := map[string]string{
		LabelApp: app, LabelTier: tier, LabelVersion: version,
		LabelHash: templateHash(ns, app, version),
	}
	return c.pod(ns, fmt.Sprintf("%s-%s-%05d", app, labels[LabelHash], k), labels, tierPorts[tier])
}

func templateHash(parts ...string) string {
	h := fnv.New32a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return fmt.Sprintf("%08x", h.Sum32())[:8]
}

// pod places a running pod on a random node with the node's next address.
func (c *Cluster) pod(ns, name string, labels map[string]string, ports []corev1.ContainerPort) *corev1.Pod {
	node := c.rng.IntN(c.Scale.Nodes)
	ip := c.nextAddr(node)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels,
			UID: types.UID(fmt.Sprintf("%08x-0000-4000-8000-%012x", c.Seed&0xffffffff, len(c.Pods)+c.seq<<32))},
		Spec: corev1.PodSpec{
			NodeName:   NodeName(node),
			Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10", Ports: ports}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String(), PodIPs: []corev1.PodIP{{IP: ip.String()}}},
	}
}

// nextAddr allocates node n's next pod address: 10.n.H/254.(H%254+1).
func (c *Cluster) nextAddr(n int) netip.Addr {
	h := c.nextIP[n]
	c.nextIP[n]++
	if h >= 254*256 {
		panic("synth: node address space exhausted")
	}
	return netip.AddrFrom4([4]byte{10, byte(n), byte(h / 254), byte(h%254 + 1)})
}

// NewPod returns a new application pod (not yet part of c.Pods) of a random
// tier in application namespace i on node, with a fresh address: the pod
// an event adds. Successive calls give distinct pods.
func (c *Cluster) NewPod(i int, node int) *corev1.Pod {
	c.seq++
	tier := c.pickTier()
	p := c.appPod(AppNamespace(i), tier, 0)
	p.Name = fmt.Sprintf("%s-new-%05d", p.Labels[LabelApp], c.seq)
	p.UID = types.UID(fmt.Sprintf("%08x-0000-4000-9000-%012x", c.Seed&0xffffffff, c.seq))
	ip := c.nextAddr(node)
	p.Spec.NodeName = NodeName(node)
	p.Status.PodIP = ip.String()
	p.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	return p
}

// AppNamespaces is the number of application namespaces.
func (c *Cluster) AppNamespaces() int { return c.Scale.Namespaces - 3 }

// Rand is the cluster's generator, for callers that derive events from the
// same seed.
func (c *Cluster) Rand() *rand.Rand { return c.rng }

// Model normalizes the API objects into a model cluster (mode v1), as the
// agent does. It fails only if the generator produced an object the agent
// would reject (a bug).
func (c *Cluster) Model() (*model.Cluster, error) {
	m := model.NewCluster(model.ModeV1)
	for _, ns := range c.Namespaces {
		n, err := normalize.Namespace(ns)
		if err != nil {
			return nil, err
		}
		m.AddNamespace(n)
	}
	for _, p := range c.Pods {
		mp, err := normalize.Pod(p)
		if err != nil {
			return nil, fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		m.AddPod(mp)
	}
	for _, np := range c.Policies {
		p, err := normalize.NetworkPolicyV1(np)
		if err != nil {
			return nil, fmt.Errorf("policy %s/%s: %w", np.Namespace, np.Name, err)
		}
		m.AddPolicy(p)
	}
	for _, svc := range c.Services {
		s, err := normalize.Service(svc)
		if err != nil || s == nil {
			return nil, fmt.Errorf("service %s/%s: %v (%s)", svc.Namespace, svc.Name, err, normalize.ServiceSkip(svc))
		}
		m.AddService(s)
	}
	for _, sl := range c.EndpointSlices {
		e, err := normalize.EndpointSlice(sl)
		if err != nil || e == nil {
			return nil, fmt.Errorf("endpointslice %s/%s: %v (%s)", sl.Namespace, sl.Name, err, normalize.EndpointSliceSkip(sl))
		}
		m.AddEndpointSlice(e)
	}
	return m, nil
}
