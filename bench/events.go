package bench

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
	"github.com/ovs-netpol/ovs-netpol/pkg/synth"
)

// BenchNode is the node whose flow set the benchmarks compile and install.
var BenchNode = synth.NodeName(0)

// NodeIP is BenchNode's address.
var NodeIP = netip.MustParseAddr("172.18.0.1")

// NodeConfig is the compiler configuration of BenchNode: gateway LOCAL, no
// uplink (pods of other nodes are reached through the host's routes, the
// agent's default), one node IP, and default bindings for its pods.
func NodeConfig(m *model.Cluster) compiler.Config {
	cfg := compiler.Config{Node: BenchNode, NodeIPs: []netip.Addr{NodeIP}}
	cfg.Bindings = compiler.DefaultBindings(m, BenchNode, nil)
	return cfg
}

// ApplySetup brings into an incremental compiler the part of an event that
// the benchmarks do not time, made and committed before it: for a Service
// add, the Service (without endpoints it changes no flow; the timed event
// is its EndpointSlice's creation). The caller Flushes.
func ApplySetup(in *compiler.Incremental, ev Event) error {
	if ev.Kind != ServiceAdd {
		return nil
	}
	s, err := normalize.Service(ev.Service)
	if err != nil || s == nil {
		return fmt.Errorf("service %s/%s: %v (%s)", ev.Service.Namespace, ev.Service.Name, err, normalize.ServiceSkip(ev.Service))
	}
	in.SetService(s)
	return nil
}

// ApplyEvent brings one event (after ApplySetup) into an incremental
// compiler the way the controller does (normalize, then Set or Delete);
// the caller Flushes.
func ApplyEvent(in *compiler.Incremental, ev Event) error {
	switch {
	case ev.Kind == NodeRemove:
		in.DeleteNode(ev.Node.Name)
	case ev.Node != nil:
		n, err := normalize.Node(ev.Node)
		if err != nil {
			return err
		}
		in.SetNode(n)
	case ev.Slice != nil:
		sl, err := normalize.EndpointSlice(ev.Slice)
		if err != nil || sl == nil {
			return fmt.Errorf("endpointslice %s/%s: %v (%s)", ev.Slice.Namespace, ev.Slice.Name, err, normalize.EndpointSliceSkip(ev.Slice))
		}
		in.SetEndpointSlice(sl)
	case ev.Pod != nil:
		p, err := normalize.Pod(ev.Pod)
		if err != nil {
			return err
		}
		in.SetPod(p)
	case ev.Namespace != nil:
		n, err := normalize.Namespace(ev.Namespace)
		if err != nil {
			return err
		}
		in.SetNamespace(n)
	case ev.Kind == PolicyDelete:
		in.DeletePolicy(ev.Policy.Namespace + "/" + ev.Policy.Name)
	default:
		p, err := normalize.NetworkPolicyV1(ev.Policy)
		if err != nil {
			return err
		}
		in.SetPolicy(p)
	}
	return nil
}

// EventKind is one kind of change the realization benchmarks time.
type EventKind string

const (
	PodAddRemote     EventKind = "pod add (other node)"
	PodAddLocal      EventKind = "pod add (this node)"
	PodRelabel       EventKind = "pod label change"
	NamespaceRelabel EventKind = "namespace label change"
	PolicyAdd        EventKind = "policy add"
	PolicyDelete     EventKind = "policy delete"
	// Services (clusters with Services only): a ready endpoint added to a
	// Service's EndpointSlice, one removed from it, and a new Service with
	// 3 endpoints (the Service, then its slice: the slice is timed).
	EndpointAdd    EventKind = "endpoint add"
	EndpointRemove EventKind = "endpoint remove"
	ServiceAdd     EventKind = "service add"
	// Nodes (the Geneve overlay, issue 13): a Node created with its pod
	// CIDR and InternalIP, one deleted.
	NodeAdd    EventKind = "node add"
	NodeRemove EventKind = "node remove"
)

// EventKinds are the policy event kinds, in report order.
var EventKinds = []EventKind{PodAddRemote, PodAddLocal, PodRelabel, NamespaceRelabel, PolicyAdd, PolicyDelete}

// ServiceEventKinds are the Service event kinds, in report order.
var ServiceEventKinds = []EventKind{EndpointAdd, EndpointRemove, ServiceAdd}

// Event is one change, as the object after it (for a delete: the object
// deleted). A Service event carries the Service and its slice after the
// change.
type Event struct {
	Kind      EventKind
	Pod       *corev1.Pod
	Namespace *corev1.Namespace
	Policy    *networkingv1.NetworkPolicy
	Service   *corev1.Service
	Slice     *discoveryv1.EndpointSlice
	Node      *corev1.Node
}

func (e Event) String() string {
	switch {
	case e.Slice != nil:
		return fmt.Sprintf("%s %s/%s (%d endpoints, %d ports)", e.Kind, e.Service.Namespace, e.Service.Name, len(e.Slice.Endpoints), len(e.Service.Spec.Ports))
	case e.Pod != nil:
		return fmt.Sprintf("%s %s/%s", e.Kind, e.Pod.Namespace, e.Pod.Name)
	case e.Namespace != nil:
		return fmt.Sprintf("%s %s", e.Kind, e.Namespace.Name)
	case e.Policy != nil:
		return fmt.Sprintf("%s %s/%s", e.Kind, e.Policy.Namespace, e.Policy.Name)
	case e.Node != nil:
		return fmt.Sprintf("%s %s", e.Kind, e.Node.Name)
	}
	return string(e.Kind)
}

// Script is a deterministic sequence of events against a synthetic cluster:
// perKind events of every kind, interleaved. Relabels flip a pod's tier
// (moving it between the templates' selectors) and a namespace's env
// (prod ↔ staging, which the cache-from-prod template selects on); a policy
// add selects a pod of node (a policy that selects none changes nothing
// there) and is followed later by the delete of the same policy, so the
// cluster returns to its size. Pods added on node get bindings in
// LocalBindings.
type Script struct {
	Kinds  []EventKind // in report order
	Events []Event
	// LocalBindings are the port bindings of the pods the script adds on
	// node (ports from 10000): the CNI has attached them before their IP is
	// reported, as in a real pod start.
	LocalBindings map[string]compiler.Binding
	// Relabelled are the pods (namespace/name) the script relabels.
	Relabelled map[string]bool
}

// NewScript writes the script of the policy event kinds (EventKinds) for
// cluster c (not modified) and node.
func NewScript(c *synth.Cluster, node string, perKind int, seed uint64) *Script {
	return NewScriptOf(c, node, perKind, seed, EventKinds)
}

// NewScriptOf is NewScript of the given kinds, in that order. The policy
// kinds' events do not depend on which Service kinds are also asked for,
// and conversely (each has its own generator).
func NewScriptOf(c *synth.Cluster, node string, perKind int, seed uint64, kinds []EventKind) *Script {
	rng := rand.New(rand.NewPCG(seed, 0xe7e7))
	s := &Script{Kinds: kinds, LocalBindings: map[string]compiler.Binding{}, Relabelled: map[string]bool{}}
	svcs := newServiceScript(c, seed)
	nodeIdx := synth.NodeIndex(node)
	pods := map[string]*corev1.Pod{} // current versions of relabelled pods
	var appPods []*corev1.Pod
	for _, p := range c.Pods {
		if p.Labels[synth.LabelTier] != "" {
			appPods = append(appPods, p)
		}
	}
	var localPods []*corev1.Pod // policies are added where they select one
	for _, p := range appPods {
		if p.Spec.NodeName == node {
			localPods = append(localPods, p)
		}
	}
	nss := map[string]*corev1.Namespace{}
	var pending []*networkingv1.NetworkPolicy // added, not yet deleted
	// A copy of the generator state for new pods, so c stays as it is.
	gen := synth.Generate(c.Scale, c.Seed)
	for i := 0; i < perKind; i++ {
		for _, k := range kinds {
			ev := Event{Kind: k}
			switch k {
			case EndpointAdd, EndpointRemove, ServiceAdd:
				ev = svcs.next(k)
			case PodAddRemote, PodAddLocal:
				n := nodeIdx
				if k == PodAddRemote {
					n = (nodeIdx + 1 + rng.IntN(c.Scale.Nodes-1)) % c.Scale.Nodes
				}
				ev.Pod = gen.NewPod(rng.IntN(c.AppNamespaces()), n)
				if k == PodAddLocal {
					mp, _ := normalize.Pod(ev.Pod)
					s.LocalBindings[mp.Key()] = compiler.Binding{OFPort: uint32(10000 + len(s.LocalBindings)), MAC: compiler.DefaultMAC(mp)}
				}
			case PodRelabel:
				orig := appPods[rng.IntN(len(appPods))]
				cur := pods[orig.Namespace+"/"+orig.Name]
				if cur == nil {
					cur = orig
				}
				next := cur.DeepCopy()
				next.Labels[synth.LabelTier] = synth.Tiers[(indexOf(synth.Tiers, cur.Labels[synth.LabelTier])+1+rng.IntN(len(synth.Tiers)-1))%len(synth.Tiers)]
				pods[orig.Namespace+"/"+orig.Name] = next
				s.Relabelled[orig.Namespace+"/"+orig.Name] = true
				ev.Pod = next
			case NamespaceRelabel:
				name := synth.AppNamespace(rng.IntN(c.AppNamespaces()))
				cur := nss[name]
				if cur == nil {
					for _, ns := range c.Namespaces {
						if ns.Name == name {
							cur = ns
						}
					}
				}
				next := cur.DeepCopy()
				if next.Labels[synth.LabelEnv] == "prod" {
					next.Labels[synth.LabelEnv] = "staging"
				} else {
					next.Labels[synth.LabelEnv] = "prod"
				}
				nss[name] = next
				ev.Namespace = next
			case PolicyAdd:
				ev.Policy = policyFor(c, localPods[rng.IntN(len(localPods))], rng, fmt.Sprintf("bench-%05d", i))
				pending = append(pending, ev.Policy)
			case PolicyDelete:
				ev.Policy, pending = pending[0], pending[1:]
			}
			s.Events = append(s.Events, ev)
		}
	}
	return s
}

// serviceScript writes the Service events of a script.
type serviceScript struct {
	c     *synth.Cluster
	gen   *synth.Cluster // a copy of c's generator state for new Services
	rng   *rand.Rand
	cur   map[int]*discoveryv1.EndpointSlice // current slices of the Services changed so far
	first int                                // c.Services[first:] are the application Services
}

func newServiceScript(c *synth.Cluster, seed uint64) *serviceScript {
	s := &serviceScript{c: c, rng: rand.New(rand.NewPCG(seed, 0x5e7)), cur: map[int]*discoveryv1.EndpointSlice{}}
	for s.first < len(c.Services) && synth.AppNamespaceIndex(c.Services[s.first].Namespace) < 0 {
		s.first++
	}
	return s
}

// next returns an event of kind k: an endpoint added to a random
// application Service (a pod its selector matches that is not an endpoint
// yet), an endpoint removed from one with 2 or more, or a new Service
// like a random one.
func (s *serviceScript) next(k EventKind) Event {
	if s.first >= len(s.c.Services) {
		panic("bench: no application Services for " + string(k))
	}
	ev := Event{Kind: k}
	if k == ServiceAdd {
		if s.gen == nil {
			s.gen = synth.Generate(s.c.Scale, s.c.Seed)
		}
		ev.Service, ev.Slice = s.gen.NewService(s.first + s.rng.IntN(len(s.c.Services)-s.first))
		return ev
	}
	for {
		i := s.first + s.rng.IntN(len(s.c.Services)-s.first)
		cur := s.cur[i]
		if cur == nil {
			cur = s.c.EndpointSlices[i]
		}
		next := cur.DeepCopy()
		if k == EndpointAdd {
			have := map[string]bool{}
			for _, e := range cur.Endpoints {
				have[e.Addresses[0]] = true
			}
			var free []*corev1.Pod
			for _, p := range s.c.SelectedPods(s.c.Services[i]) {
				if !have[p.Status.PodIP] {
					free = append(free, p)
				}
			}
			if len(free) == 0 {
				continue
			}
			next.Endpoints = append(next.Endpoints, synth.Endpoint(free[s.rng.IntN(len(free))]))
		} else {
			if len(cur.Endpoints) < 2 {
				continue
			}
			j := s.rng.IntN(len(cur.Endpoints))
			next.Endpoints = append(next.Endpoints[:j], next.Endpoints[j+1:]...)
		}
		s.cur[i] = next
		ev.Service, ev.Slice = s.c.Services[i], next
		return ev
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// policyFor returns a policy from a random template, in pod's namespace,
// that selects pod.
func policyFor(c *synth.Cluster, pod *corev1.Pod, rng *rand.Rand, name string) *networkingv1.NetworkPolicy {
	ns := synth.AppNamespaceIndex(pod.Namespace)
	for _, k := range rng.Perm(synth.Templates()) {
		np := c.NewPolicy(ns, k, name)
		p, err := normalize.NetworkPolicyV1(np)
		if err == nil && p.PodSelector.Matches(labels.Set(pod.Labels)) {
			return np
		}
	}
	panic("synth: no template selects " + pod.Name) // default-deny selects every pod
}
