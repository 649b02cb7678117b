// Package inspect gives read-only views of a live cluster and a live bridge,
// for the CLI (ovs-netpol pods, flows, explain, verify, diff) and the agent:
// the cluster as the agent sees it (LoadCluster), what the agent published
// on its bridge (Bridge.AgentConfig), the pods attached to the bridge
// (Bridge.Ports), the installed flows with their counters (Bridge.Flows),
// and the node's compiled view that names every flow's origin
// (CompileNode, Node.Origin). Nothing here writes to the cluster or the
// switch. Text read from the cluster or the switch reaches output only
// through internal/printable.
package inspect

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
)

// listPageSize bounds one list request, as kubectl's chunking does: a big
// cluster is read in pages instead of one huge response.
const listPageSize = 500

// LoadCluster lists Namespaces, Pods, Nodes, networking.k8s.io/v1
// NetworkPolicies, Services and discovery.k8s.io/v1 EndpointSlices (all
// namespaces) into manifest.Objects, as the agent sees them. Objects come
// with apiVersion and kind set, like objects read from files. The API
// server validated and defaulted them already (the label
// kubernetes.io/metadata.name on Namespaces included), so they are not
// validated again; Objects.Cluster normalizes them as it does file input.
// The lists are not one snapshot: an object changed while they are read may
// be seen in either state.
func LoadCluster(ctx context.Context, client kubernetes.Interface) (*manifest.Objects, error) {
	o := &manifest.Objects{Sources: map[runtime.Object]manifest.Source{}}
	core, netv1, disc := client.CoreV1(), client.NetworkingV1(), client.DiscoveryV1()
	steps := []struct {
		what string
		list func(metav1.ListOptions) (metav1.ListInterface, error)
		take func(metav1.ListInterface)
	}{
		{"namespaces",
			func(opts metav1.ListOptions) (metav1.ListInterface, error) { return core.Namespaces().List(ctx, opts) },
			func(l metav1.ListInterface) {
				for i := range l.(*corev1.NamespaceList).Items {
					obj := &l.(*corev1.NamespaceList).Items[i]
					obj.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
					o.Namespaces = append(o.Namespaces, obj)
				}
			}},
		{"pods",
			func(opts metav1.ListOptions) (metav1.ListInterface, error) { return core.Pods("").List(ctx, opts) },
			func(l metav1.ListInterface) {
				for i := range l.(*corev1.PodList).Items {
					obj := &l.(*corev1.PodList).Items[i]
					obj.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
					o.Pods = append(o.Pods, obj)
				}
			}},
		{"nodes",
			func(opts metav1.ListOptions) (metav1.ListInterface, error) { return core.Nodes().List(ctx, opts) },
			func(l metav1.ListInterface) {
				for i := range l.(*corev1.NodeList).Items {
					obj := &l.(*corev1.NodeList).Items[i]
					obj.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
					o.Nodes = append(o.Nodes, obj)
				}
			}},
		{"networkpolicies",
			func(opts metav1.ListOptions) (metav1.ListInterface, error) {
				return netv1.NetworkPolicies("").List(ctx, opts)
			},
			func(l metav1.ListInterface) {
				for i := range l.(*networkingv1.NetworkPolicyList).Items {
					obj := &l.(*networkingv1.NetworkPolicyList).Items[i]
					obj.SetGroupVersionKind(networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy"))
					o.PoliciesV1 = append(o.PoliciesV1, obj)
				}
			}},
		{"services",
			func(opts metav1.ListOptions) (metav1.ListInterface, error) { return core.Services("").List(ctx, opts) },
			func(l metav1.ListInterface) {
				for i := range l.(*corev1.ServiceList).Items {
					obj := &l.(*corev1.ServiceList).Items[i]
					obj.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Service"))
					o.Services = append(o.Services, obj)
				}
			}},
		{"endpointslices",
			func(opts metav1.ListOptions) (metav1.ListInterface, error) {
				return disc.EndpointSlices("").List(ctx, opts)
			},
			func(l metav1.ListInterface) {
				for i := range l.(*discoveryv1.EndpointSliceList).Items {
					obj := &l.(*discoveryv1.EndpointSliceList).Items[i]
					obj.SetGroupVersionKind(discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"))
					o.EndpointSlices = append(o.EndpointSlices, obj)
				}
			}},
	}
	for _, s := range steps {
		opts := metav1.ListOptions{Limit: listPageSize}
		for {
			l, err := s.list(opts)
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", s.what, err)
			}
			s.take(l)
			if l.GetContinue() == "" {
				break
			}
			opts.Continue = l.GetContinue()
		}
	}
	return o, nil
}
