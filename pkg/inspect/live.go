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
	"k8s.io/apimachinery/pkg/runtime/schema"
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
	var err error
	if o.Namespaces, err = listAll(ctx, "namespaces", corev1.SchemeGroupVersion.WithKind("Namespace"),
		core.Namespaces().List, func(l *corev1.NamespaceList) []corev1.Namespace { return l.Items }); err != nil {
		return nil, err
	}
	if o.Pods, err = listAll(ctx, "pods", corev1.SchemeGroupVersion.WithKind("Pod"),
		core.Pods("").List, func(l *corev1.PodList) []corev1.Pod { return l.Items }); err != nil {
		return nil, err
	}
	if o.Nodes, err = listAll(ctx, "nodes", corev1.SchemeGroupVersion.WithKind("Node"),
		core.Nodes().List, func(l *corev1.NodeList) []corev1.Node { return l.Items }); err != nil {
		return nil, err
	}
	if o.PoliciesV1, err = listAll(ctx, "networkpolicies", networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy"),
		netv1.NetworkPolicies("").List, func(l *networkingv1.NetworkPolicyList) []networkingv1.NetworkPolicy { return l.Items }); err != nil {
		return nil, err
	}
	if o.Services, err = listAll(ctx, "services", corev1.SchemeGroupVersion.WithKind("Service"),
		core.Services("").List, func(l *corev1.ServiceList) []corev1.Service { return l.Items }); err != nil {
		return nil, err
	}
	if o.EndpointSlices, err = listAll(ctx, "endpointslices", discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"),
		disc.EndpointSlices("").List, func(l *discoveryv1.EndpointSliceList) []discoveryv1.EndpointSlice { return l.Items }); err != nil {
		return nil, err
	}
	return o, nil
}

// listAll reads every object of one kind, listPageSize per request, and
// returns them with apiVersion and kind set (a list's items have neither).
func listAll[T any, PT interface {
	*T
	SetGroupVersionKind(schema.GroupVersionKind)
}, L interface{ GetContinue() string }](ctx context.Context, what string, gvk schema.GroupVersionKind,
	list func(context.Context, metav1.ListOptions) (L, error), items func(L) []T) ([]PT, error) {
	var out []PT
	opts := metav1.ListOptions{Limit: listPageSize}
	for {
		l, err := list(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", what, err)
		}
		page := items(l)
		for i := range page {
			obj := PT(&page[i])
			obj.SetGroupVersionKind(gvk)
			out = append(out, obj)
		}
		if l.GetContinue() == "" {
			return out, nil
		}
		opts.Continue = l.GetContinue()
	}
}
