package integration

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kptr "k8s.io/utils/ptr"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// A Service and its EndpointSlice through the agent binary: its flow in
// table 25 and its group appear, a client allowed by the backends' policy
// reaches them through the cluster IP and another does not, an endpoint
// added changes the group in place. The Service stays for the restart
// scenarios (nothing to change for flows or groups).
func (e *env) testServices(t *testing.T) {
	const ns, vip = "svc", "10.96.70.10"
	e.namespace(t, ns, nil)
	sa := e.pod(t, podSpec{ns: ns, name: "sa", node: localNode, labels: map[string]string{"app": "web"}})
	sb := e.pod(t, podSpec{ns: ns, name: "sb", node: localNode, labels: map[string]string{"app": "web"}})
	sc := e.pod(t, podSpec{ns: ns, name: "sc", node: localNode, labels: map[string]string{"role": "client"}})
	sd := e.pod(t, podSpec{ns: ns, name: "sd", node: localNode, labels: map[string]string{"role": "other"}})
	e.createPolicy(t, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-from-clients"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"role": "client"})},
				Ports: []networkingv1.NetworkPolicyPort{tcpPort(8080)},
			}},
		},
	})
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: corev1.ServiceSpec{
		ClusterIP: vip, Selector: map[string]string{"app": "web"},
		Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
	}}
	if _, err := e.c.Client.CoreV1().Services(ns).Create(e.ctx(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice := func(eps ...endpoint) *discoveryv1.EndpointSlice {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: kptr.To("http"), Protocol: kptr.To(corev1.ProtocolTCP), Port: kptr.To(int32(8080))}},
		}
		for _, ep := range eps {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ep.IP},
				Conditions: discoveryv1.EndpointConditions{Ready: kptr.To(true)}, NodeName: kptr.To(localNode)})
		}
		return s
	}
	slices := e.c.Client.DiscoveryV1().EndpointSlices(ns)
	created, err := slices.Create(e.ctx(), slice(sa), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cookie := compiler.ServiceCookie(&model.Service{Namespace: ns, Name: "web"})
	flows := e.waitFlows(t, "Service web", cookie, flowSpec{count: 1, has: []string{"table=25,tcp,nw_dst=" + vip + ",tp_dst=80"}})
	group := strings.TrimPrefix(flows[0][strings.Index(flows[0], "actions=group:"):], "actions=group:")
	groupText := func() string {
		out, err := e.sw.Ofctl("-O", "OpenFlow15", "dump-groups", bridge)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "group_id="+group+",") {
				return l
			}
		}
		return ""
	}
	if g := groupText(); !strings.Contains(g, fmt.Sprintf("nat(dst=%s:8080)", sa.IP)) || strings.Count(g, "bucket=") != 1 {
		t.Errorf("group %s: %q, want one bucket to %s:8080", group, g, sa.IP)
	}
	// Through the cluster IP, policy judges sa (port 8080): sc allowed, sd not.
	viaSA := endpoint{Name: "web (sa)", IP: vip, OFPort: sa.OFPort}
	e.expect(t, allow(sc, viaSA, "tcp", 80), deny(sd, viaSA, "tcp", 80), allow(sc, sa, "tcp", 8080), deny(sd, sa, "tcp", 8080))

	// A second endpoint: the same group, two buckets.
	next := slice(sa, sb)
	next.ResourceVersion = created.ResourceVersion
	if _, err := slices.Update(e.ctx(), next, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15e9, "group with sa and sb", func() error {
		if g := groupText(); strings.Count(g, "bucket=") != 2 || !strings.Contains(g, sb.IP+":8080") {
			return fmt.Errorf("group %s: %q", group, g)
		}
		return nil
	})
}
