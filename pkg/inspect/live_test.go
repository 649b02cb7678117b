package inspect

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// TestLoadCluster lists every kind the agent watches from a (fake) API
// server into Objects with apiVersion and kind set, as files give them, and
// the result normalizes and compiles. The namespace comes without the
// kubernetes.io/metadata.name label (the fake server does not set it) and a
// policy selecting on it still selects it, as Cluster adds the label.
func TestLoadCluster(t *testing.T) {
	port := int32(80)
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web", UID: "u1", Labels: map[string]string{"app": "web"}},
			Spec:   corev1.PodSpec{NodeName: "n1"},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.85.0.5", PodIPs: []corev1.PodIP{{IP: "10.85.0.5"}}}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "from-a"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "a"}}}}}},
			}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", ClusterIPs: []string{"10.96.0.20"}, Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.85.0.5"}}},
			Ports:       []discoveryv1.EndpointPort{{Port: &port}}},
	)
	objs, err := LoadCluster(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	counts := []struct {
		kind string
		got  int
	}{{"Namespace", len(objs.Namespaces)}, {"Node", len(objs.Nodes)}, {"Pod", len(objs.Pods)}, {"NetworkPolicy", len(objs.PoliciesV1)},
		{"Service", len(objs.Services)}, {"EndpointSlice", len(objs.EndpointSlices)}}
	for _, c := range counts {
		if c.got != 1 {
			t.Errorf("%d %s objects, want 1", c.got, c.kind)
		}
	}
	for _, gvk := range []struct{ got, want string }{
		{objs.Namespaces[0].APIVersion + " " + objs.Namespaces[0].Kind, "v1 Namespace"},
		{objs.Pods[0].APIVersion + " " + objs.Pods[0].Kind, "v1 Pod"},
		{objs.PoliciesV1[0].APIVersion + " " + objs.PoliciesV1[0].Kind, "networking.k8s.io/v1 NetworkPolicy"},
		{objs.EndpointSlices[0].APIVersion + " " + objs.EndpointSlices[0].Kind, "discovery.k8s.io/v1 EndpointSlice"},
	} {
		if gvk.got != gvk.want {
			t.Errorf("type meta %q, want %q", gvk.got, gvk.want)
		}
	}
	if w := objs.Where(objs.Pods[0]); w != "Pod a/web" {
		t.Errorf("Where: %q", w)
	}
	n, err := CompileNode(objs, AgentConfig{Node: "n1", Mode: model.ModeV1, GatewayPort: 0xfffe}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Cluster.Services) != 1 || len(n.Cluster.Policies) != 1 {
		t.Fatalf("compiled view: %d services, %d policies", len(n.Cluster.Services), len(n.Cluster.Policies))
	}
	web := n.Cluster.Pods["u1"]
	pol := n.Cluster.Policies["a/from-a"]
	if web == nil || pol == nil {
		t.Fatalf("pod or policy missing: %v %v", n.Cluster.Pods, n.Cluster.Policies)
	}
	if sel := n.Cluster.PeerPods(&pol.Ingress[0].Peers[0], pol.Namespace); len(sel) != 1 || sel[0] != web {
		t.Errorf("the policy's namespaceSelector on kubernetes.io/metadata.name selects %v, want the pod a/web", sel)
	}
}

// TestLoadClusterOverlay: Nodes listed from the API reach the compiled view
// through normalize.Node, as the agent's informer brings them: a remote
// node's tunnel flows are compiled with the published overlay and named as
// the compiler names them; a node whose podCIDR normalize.Node refuses (the
// API server accepts host bits) is left out with a warning, not an error.
func TestLoadClusterOverlay(t *testing.T) {
	nodeObj := func(name, cidr, ip string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:   corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
	}
	client := fake.NewClientset(nodeObj("n1", "10.91.1.0/24", "172.29.1.2"), nodeObj("n2", "10.91.2.0/24", "172.29.2.2"),
		nodeObj("n3", "10.91.3.1/24", "172.29.3.2"))
	objs, err := LoadCluster(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	ac := AgentConfig{Node: "n1", Mode: model.ModeV1, GatewayPort: 0xfffe, TunnelPort: 4096, GatewayMAC: "0a:58:0a:5b:01:01"}
	if err := ac.validate(); err != nil {
		t.Fatal(err)
	}
	n, err := CompileNode(objs, ac, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Cluster.Nodes) != 2 || n.Cluster.Nodes["n1"] == nil || n.Cluster.Nodes["n2"] == nil {
		t.Fatalf("compiled view's nodes: %v", n.Cluster.Nodes)
	}
	if !strings.Contains(strings.Join(n.Warnings, "\n"), "node n3") {
		t.Errorf("no warning about n3: %q", n.Warnings)
	}
	var tunnel []string
	for _, f := range n.Result.Flows {
		if o := n.CompiledOrigin(f); strings.HasPrefix(o, "remote node") {
			tunnel = append(tunnel, f.String()+" ["+o+"]")
		}
	}
	t.Logf("tunnel flows:\n%s", strings.Join(tunnel, "\n"))
	if len(tunnel) != 4 || !strings.Contains(strings.Join(tunnel, "\n"), "nw_dst=10.91.2.0/24 actions=set_field:172.29.1.2->tun_src,set_field:172.29.2.2->tun_dst,output:4096 [remote node n2]") {
		t.Errorf("%d tunnel flows, want n2's 4 (pod CIDR and InternalIP, in and out)", len(tunnel))
	}
}
