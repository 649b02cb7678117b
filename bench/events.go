package bench

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
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

// ApplyEvent brings one event into an incremental compiler the way the
// controller does (normalize, then Set or Delete); the caller Flushes.
func ApplyEvent(in *compiler.Incremental, ev Event) error {
	switch {
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
)

// EventKinds in report order.
var EventKinds = []EventKind{PodAddRemote, PodAddLocal, PodRelabel, NamespaceRelabel, PolicyAdd, PolicyDelete}

// Event is one change, as the object after it (for a delete: the object
// deleted).
type Event struct {
	Kind      EventKind
	Pod       *corev1.Pod
	Namespace *corev1.Namespace
	Policy    *networkingv1.NetworkPolicy
}

func (e Event) String() string {
	switch {
	case e.Pod != nil:
		return fmt.Sprintf("%s %s/%s", e.Kind, e.Pod.Namespace, e.Pod.Name)
	case e.Namespace != nil:
		return fmt.Sprintf("%s %s", e.Kind, e.Namespace.Name)
	case e.Policy != nil:
		return fmt.Sprintf("%s %s/%s", e.Kind, e.Policy.Namespace, e.Policy.Name)
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
	Events []Event
	// LocalBindings are the port bindings of the pods the script adds on
	// node (ports from 10000): the CNI has attached them before their IP is
	// reported, as in a real pod start.
	LocalBindings map[string]compiler.Binding
	// Relabelled are the pods (namespace/name) the script relabels.
	Relabelled map[string]bool
}

// NewScript writes the script for cluster c (not modified) and node.
func NewScript(c *synth.Cluster, node string, perKind int, seed uint64) *Script {
	rng := rand.New(rand.NewPCG(seed, 0xe7e7))
	s := &Script{LocalBindings: map[string]compiler.Binding{}, Relabelled: map[string]bool{}}
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
		for _, k := range EventKinds {
			ev := Event{Kind: k}
			switch k {
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
