package controller

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
)

// TrimForCache is the informers' transform: before an object is cached it
// drops what the agent never reads (at 10k pods the full objects were most
// of the agent's memory).
//
//   - A Pod becomes a CachedPod: only what normalize.Pod reads.
//   - A Service and an EndpointSlice lose what normalize.Service and
//     normalize.EndpointSlice do not read (annotations such as kubectl's
//     last-applied configuration, status, selectors, endpoints' targetRef,
//     hostname, zone and hints): with 10k Services they were a third of
//     the agent's heap.
//   - A Node keeps its name, creation time, spec.podCIDR(s) and
//     status.addresses: what normalize.Node reads. The rest (images, conditions, the kubelet's
//     heartbeats, labels) is most of a Node and changes every few seconds.
//   - Any other object loses metadata.managedFields (the field ownership
//     the apiserver tracks for server-side apply); namespaces keep their
//     annotations (the v1.6 isolation annotation), policies their spec.
//
// Anything else (a tombstone) passes as it is.
func TrimForCache(obj any) (any, error) {
	switch v := obj.(type) {
	case *corev1.Pod:
		return NewCachedPod(v), nil
	case *corev1.Node:
		return trimNode(v), nil
	case *corev1.Service:
		v.Annotations, v.Labels, v.Status = nil, nil, corev1.ServiceStatus{}
		v.Spec.Selector, v.Spec.ExternalIPs, v.Spec.LoadBalancerSourceRanges = nil, nil, nil
	case *discoveryv1.EndpointSlice:
		v.Annotations = nil
		if name, ok := v.Labels[discoveryv1.LabelServiceName]; ok {
			v.Labels = map[string]string{discoveryv1.LabelServiceName: name}
		} else {
			v.Labels = nil
		}
		for i := range v.Endpoints {
			e := &v.Endpoints[i]
			e.TargetRef, e.Hostname, e.Zone, e.Hints, e.DeprecatedTopology = nil, nil, nil, nil, nil
		}
	}
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// trimNode keeps what normalize.Node reads (and what the informer needs).
func trimNode(n *corev1.Node) *corev1.Node {
	return &corev1.Node{
		TypeMeta: n.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion,
			CreationTimestamp: n.CreationTimestamp, DeletionTimestamp: n.DeletionTimestamp},
		Spec:   corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
		Status: corev1.NodeStatus{Addresses: n.Status.Addresses},
	}
}

// CachedPod is what the pod informer keeps of a Pod: what normalize.Pod
// reads (name, namespace, UID, labels, spec.nodeName, spec.hostNetwork,
// the containers' ports, status.phase, status.podIP and podIPs) and the
// resourceVersion the informer works with: under a third of a corev1.Pod. Keep
// it in step with normalize.Pod.
type CachedPod struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	NodeName    string
	HostNetwork bool
	Phase       corev1.PodPhase
	PodIP       string
	PodIPs      []corev1.PodIP
	// Ports are the containers' ports, by container.
	Ports [][]corev1.ContainerPort
}

// NewCachedPod keeps what the agent reads of p (sharing its maps and slices).
func NewCachedPod(p *corev1.Pod) *CachedPod {
	c := &CachedPod{
		TypeMeta: p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID,
			ResourceVersion: p.ResourceVersion, Labels: p.Labels,
			// Which of two pods claiming one address keeps it (podips.go).
			CreationTimestamp: p.CreationTimestamp,
		},
		NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork,
		Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs,
	}
	if len(p.Spec.Containers) > 0 {
		c.Ports = make([][]corev1.ContainerPort, len(p.Spec.Containers))
		for i := range p.Spec.Containers {
			c.Ports[i] = p.Spec.Containers[i].Ports
		}
	}
	return c
}

// Pod rebuilds a Pod carrying what was kept, for normalize.Pod.
func (c *CachedPod) Pod() *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   c.TypeMeta,
		ObjectMeta: c.ObjectMeta,
		Spec:       corev1.PodSpec{NodeName: c.NodeName, HostNetwork: c.HostNetwork},
		Status:     corev1.PodStatus{Phase: c.Phase, PodIP: c.PodIP, PodIPs: c.PodIPs},
	}
	if len(c.Ports) > 0 {
		p.Spec.Containers = make([]corev1.Container, len(c.Ports))
		for i, ports := range c.Ports {
			p.Spec.Containers[i].Ports = ports
		}
	}
	return p
}

// DeepCopyObject implements runtime.Object.
func (c *CachedPod) DeepCopyObject() runtime.Object {
	out := *c
	c.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.PodIPs = append([]corev1.PodIP(nil), c.PodIPs...)
	out.Ports = make([][]corev1.ContainerPort, len(c.Ports))
	for i, ports := range c.Ports {
		out.Ports[i] = append([]corev1.ContainerPort(nil), ports...)
	}
	return &out
}

// podStore reads CachedPods from the pod informer's store, as a lister
// would read Pods.
type podStore struct{ indexer cache.Indexer }

// Get returns the pod with key namespace/name, or a NotFound error.
func (s podStore) Get(key string) (*corev1.Pod, error) {
	obj, exists, err := s.indexer.GetByKey(key)
	if err != nil {
		return nil, err
	}
	if !exists {
		_, name, _ := cache.SplitMetaNamespaceKey(key)
		return nil, apierrors.NewNotFound(corev1.Resource("pod"), name)
	}
	return obj.(*CachedPod).Pod(), nil
}
