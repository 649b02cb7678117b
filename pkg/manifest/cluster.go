package manifest

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// Cluster normalizes the objects into a model.Cluster for mode (see package
// normalize). Any object that cannot be normalized is an error naming where it
// was read, and so are two live pods (not Succeeded, Failed or host-network)
// with the same IP. Every namespace carries the label
// kubernetes.io/metadata.name=NAME, which the API server sets on every
// Namespace (overwriting whatever the manifest says), so that selectors on
// it select offline what they select in a cluster. Namespaces that pods or
// policies use without being declared are added with only that label and
// no annotation. Nodes bring their InternalIPs and pod CIDRs (the
// overlay's tunnel endpoints), checked as the API server checks them.
// Services and EndpointSlices that kube-proxy would not use (ExternalName
// and headless Services, Services without a cluster IP, FQDN slices, slices
// without a kubernetes.io/service-name label) are left out; a slice whose
// Service is not in the input is kept.
//
// The warnings (distinct from o.Warnings, which Load already reported) say
// what will surprise: a malformed legacy annotation (the namespace then fails
// closed), the legacy annotation in v1 mode, in v1.6 mode policies that
// have no effect or whose egress part is ignored, a Service left out for
// want of a cluster IP (manifests written for kubectl leave it to the API
// server) and an EndpointSlice left out for want of a Service name.
func (o *Objects) Cluster(mode model.Mode) (*model.Cluster, []string, error) {
	if mode != model.ModeV1 && mode != model.ModeV16 {
		return nil, nil, fmt.Errorf("unknown isolation mode %q", mode)
	}
	c := model.NewCluster(mode)
	var warnings []string
	warnf := func(obj runtime.Object, format string, args ...any) {
		warnings = append(warnings, o.Where(obj)+": "+fmt.Sprintf(format, args...))
	}
	declared := map[string]runtime.Object{}
	for _, ns := range o.Namespaces {
		n, warning := normalize.Namespace(withNameLabel(ns))
		if n == nil {
			return nil, nil, fmt.Errorf("%s: %v", o.Where(ns), warning)
		}
		if n.Name == "" {
			return nil, nil, fmt.Errorf("%s: metadata.name is required", o.Where(ns))
		}
		if prev, dup := declared[n.Name]; dup {
			return nil, nil, fmt.Errorf("%s: defined twice: also at %s", o.Where(ns), o.Where(prev))
		}
		declared[n.Name] = ns
		if warning != nil {
			warnf(ns, "%v", warning)
		}
		if _, has := ns.Annotations[model.LegacyAnnotation]; has && mode == model.ModeV1 {
			warnf(ns, "annotation %s belongs to the Kubernetes 1.6 design (--isolation %s); in v1 mode it isolates the namespace's ingress like a deny-all policy, which `ovs-netpol convert` writes out explicitly", model.LegacyAnnotation, model.ModeV16)
		}
		c.AddNamespace(n)
	}

	pods := map[string]runtime.Object{}
	byIP := map[netip.Addr]*corev1.Pod{}
	for _, p := range o.Pods {
		n, err := normalize.Pod(p)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", o.Where(p), err)
		}
		if prev, dup := pods[n.Key()]; dup {
			return nil, nil, fmt.Errorf("%s: defined twice: also at %s", o.Where(p), o.Where(prev))
		}
		pods[n.Key()] = p
		if prev, dup := c.Pods[n.UID]; dup {
			return nil, nil, fmt.Errorf("%s: metadata.uid %s is also the UID of pod %s", o.Where(p), printable.String(n.UID), prev.Key())
		}
		// A pod IP belongs to one live pod at a time (IPAM hands out each
		// address once; finished pods release theirs, host-network pods
		// use the node's): two owners would have one pod's flows replace
		// the other's.
		if n.Active() {
			for _, ip := range n.IPs {
				if prev, dup := byIP[ip]; dup {
					return nil, nil, fmt.Errorf("%s: pod IP %s is also the IP of pod %s/%s (%s), which is not finished either: two live pods cannot share an address", o.Where(p), ip, prev.Namespace, prev.Name, o.Where(prev))
				}
				byIP[ip] = p
			}
		}
		c.AddPod(n)
	}

	policies := map[string]runtime.Object{}
	addPolicy := func(obj runtime.Object, p *model.Policy, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", o.Where(obj), err)
		}
		if prev, dup := policies[p.Key()]; dup {
			return fmt.Errorf("%s: defined twice: also at %s", o.Where(obj), o.Where(prev))
		}
		policies[p.Key()] = obj
		c.AddPolicy(p)
		return nil
	}
	for _, np := range o.PoliciesV1 {
		p, err := normalize.NetworkPolicyV1(np)
		if err := addPolicy(np, p, err); err != nil {
			return nil, nil, err
		}
	}
	for _, np := range o.PoliciesV1beta1 {
		p, err := normalize.NetworkPolicyV1beta1(np)
		if err := addPolicy(np, p, err); err != nil {
			return nil, nil, err
		}
	}

	if err := o.services(c, warnf); err != nil {
		return nil, nil, err
	}

	for _, n := range o.Nodes { // Load refuses a name defined twice
		mn, err := normalize.Node(n)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", o.Where(n), err)
		}
		c.AddNode(mn)
	}

	implicit := func(ns string) {
		if _, ok := c.Namespaces[ns]; !ok {
			c.AddNamespace(&model.Namespace{Name: ns, Labels: labels.Set{corev1.LabelMetadataName: ns}})
		}
	}
	for _, p := range c.Pods {
		implicit(p.Namespace)
	}
	for _, p := range c.Policies {
		implicit(p.Namespace)
	}

	if mode == model.ModeV16 {
		for _, p := range c.SortedPolicies() {
			obj := policies[p.Key()]
			if !c.PolicyInEffect(p) {
				warnf(obj, "has no effect in v1.6 mode: namespace %s is not annotated %s={\"ingress\":{\"isolation\":\"DefaultDeny\"}}", p.Namespace, model.LegacyAnnotation)
				continue
			}
			if p.AffectsEgress {
				warnf(obj, "v1.6 mode knows only ingress: the policy's egress part is ignored")
			}
			if !p.AffectsIngress {
				warnf(obj, "v1.6 mode knows only ingress: the policy is used as an ingress whitelist although its policyTypes does not list Ingress")
			}
		}
	}
	return c, warnings, nil
}

// services normalizes o's Services and EndpointSlices into c.
func (o *Objects) services(c *model.Cluster, warnf func(runtime.Object, string, ...any)) error {
	key := func(namespace, name string) string {
		if namespace == "" {
			namespace = normalize.DefaultNamespace
		}
		return namespace + "/" + name
	}
	services := map[string]runtime.Object{}
	for _, s := range o.Services {
		n, err := normalize.Service(s)
		if err != nil {
			return fmt.Errorf("%s: %w", o.Where(s), err)
		}
		k := key(s.Namespace, s.Name)
		if prev, dup := services[k]; dup {
			return fmt.Errorf("%s: defined twice: also at %s", o.Where(s), o.Where(prev))
		}
		services[k] = s
		if n == nil {
			if skip := normalize.ServiceSkip(s); skip == normalize.SkipNoClusterIP {
				warnf(s, "not load balanced: %s", skip)
			}
			continue
		}
		c.AddService(n)
	}
	slices := map[string]runtime.Object{}
	for _, e := range o.EndpointSlices {
		n, err := normalize.EndpointSlice(e)
		if err != nil {
			return fmt.Errorf("%s: %w", o.Where(e), err)
		}
		k := key(e.Namespace, e.Name)
		if prev, dup := slices[k]; dup {
			return fmt.Errorf("%s: defined twice: also at %s", o.Where(e), o.Where(prev))
		}
		slices[k] = e
		if n == nil {
			if skip := normalize.EndpointSliceSkip(e); skip == normalize.SkipNoService {
				warnf(e, "ignored: %s", skip)
			}
			continue
		}
		c.AddEndpointSlice(n)
	}
	return nil
}

// withNameLabel returns ns with the label the API server gives every
// Namespace: kubernetes.io/metadata.name set to its name.
func withNameLabel(ns *corev1.Namespace) *corev1.Namespace {
	if ns == nil || ns.Name == "" || ns.Labels[corev1.LabelMetadataName] == ns.Name {
		return ns
	}
	out := ns.DeepCopy()
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[corev1.LabelMetadataName] = ns.Name
	return out
}
