package controller

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
)

// TestTrimServiceAndSliceKeepsTheModel: what TrimForCache drops of a
// Service and an EndpointSlice is nothing normalize reads.
func TestTrimServiceAndSliceKeepsTheModel(t *testing.T) {
	svc := func() *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "web", Labels: map[string]string{"app": "web"},
				Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.96.0.9", ClusterIPs: []string{"10.96.0.9", "fd00::9"},
				IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}, IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyRequireDualStack),
				Selector: map[string]string{"app": "web"}, ExternalIPs: []string{"192.0.2.1"}, LoadBalancerSourceRanges: []string{"0.0.0.0/0"},
				Ports:           []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("web"), NodePort: 30080}},
				SessionAffinity: corev1.ServiceAffinityClientIP, SessionAffinityConfig: &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(int32(30))}},
				InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyLocal)},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.0.2.2"}}}},
		}
	}
	slice := func() *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "web-1", Annotations: map[string]string{"a": "b"},
				Labels: map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(int32(8080))}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.1.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)},
				NodeName: ptr.To("n1"), Hostname: ptr.To("web-0"), Zone: ptr.To("z1"),
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "x", Name: "web-0"},
				Hints:     &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "z1"}}}}},
		}
	}
	want, err := normalize.Service(svc())
	if err != nil || want == nil {
		t.Fatal(want, err)
	}
	trimmed, _ := TrimForCache(svc())
	got, err := normalize.Service(trimmed.(*corev1.Service))
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("trimmed Service: %+v, %v; want %+v", got, err, want)
	}
	if s := trimmed.(*corev1.Service); s.Annotations != nil || s.ManagedFields != nil || s.Spec.Selector != nil {
		t.Errorf("not trimmed: %+v", s.ObjectMeta)
	}
	wantSl, err := normalize.EndpointSlice(slice())
	if err != nil || wantSl == nil {
		t.Fatal(wantSl, err)
	}
	trimmedSl, _ := TrimForCache(slice())
	gotSl, err := normalize.EndpointSlice(trimmedSl.(*discoveryv1.EndpointSlice))
	if err != nil || !reflect.DeepEqual(gotSl, wantSl) {
		t.Errorf("trimmed EndpointSlice: %+v, %v; want %+v", gotSl, err, wantSl)
	}
	if e := trimmedSl.(*discoveryv1.EndpointSlice).Endpoints[0]; e.TargetRef != nil || e.Hints != nil {
		t.Errorf("endpoint not trimmed: %+v", e)
	}
}
