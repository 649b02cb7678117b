package normalize

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

func ptr[T any](v T) *T { return &v }

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestService(t *testing.T) {
	// base is a Service as a manifest written by hand has it: no defaults.
	base := func() *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
			Spec: corev1.ServiceSpec{
				ClusterIP: "10.96.0.10",
				Ports:     []corev1.ServicePort{{Port: 80}},
			},
		}
	}
	tests := []struct {
		name     string
		mutate   func(s *corev1.Service)
		want     *model.Service // nil with wantSkip or wantErr
		wantSkip Skip
		wantErr  string
	}{
		{
			name: "defaults",
			want: &model.Service{Namespace: "ns", Name: "web", ClusterIPs: addrs("10.96.0.10"), Ports: []model.ServicePort{{Protocol: model.TCP, Port: 80}}},
		},
		{
			name:   "no namespace",
			mutate: func(s *corev1.Service) { s.Namespace = "" },
			want:   &model.Service{Namespace: "default", Name: "web", ClusterIPs: addrs("10.96.0.10"), Ports: []model.ServicePort{{Protocol: model.TCP, Port: 80}}},
		},
		{
			name: "as the API server stores it: dual-stack, named ports, every field set",
			mutate: func(s *corev1.Service) {
				s.Spec = corev1.ServiceSpec{
					Type:           corev1.ServiceTypeNodePort,
					ClusterIP:      "fd00:10:96::a",
					ClusterIPs:     []string{"fd00:10:96::a", "10.96.0.10"},
					IPFamilies:     []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol},
					IPFamilyPolicy: ptr(corev1.IPFamilyPolicyRequireDualStack),
					Ports: []corev1.ServicePort{
						{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("web"), NodePort: 30080},
						{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(5353), NodePort: 30053},
						{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt32(53), NodePort: 30054},
						{Name: "sctp", Protocol: corev1.ProtocolSCTP, Port: 80, TargetPort: intstr.FromInt32(80), NodePort: 30055},
					},
					SessionAffinity:       corev1.ServiceAffinityClientIP,
					SessionAffinityConfig: &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr[int32](60)}},
					InternalTrafficPolicy: ptr(corev1.ServiceInternalTrafficPolicyLocal),
					ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
				}
			},
			want: &model.Service{
				Namespace: "ns", Name: "web", ClusterIPs: addrs("fd00:10:96::a", "10.96.0.10"),
				Ports: []model.ServicePort{
					{Name: "http", Protocol: model.TCP, Port: 80}, {Name: "dns", Protocol: model.UDP, Port: 53},
					{Name: "dns-tcp", Protocol: model.TCP, Port: 53}, {Name: "sctp", Protocol: model.SCTP, Port: 80},
				},
				AffinitySeconds: 60, InternalLocal: true,
			},
		},
		{
			name: "ClientIP affinity without timeout gets the API server's default",
			mutate: func(s *corev1.Service) {
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
				s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{}}
			},
			want: &model.Service{Namespace: "ns", Name: "web", ClusterIPs: addrs("10.96.0.10"), Ports: []model.ServicePort{{Protocol: model.TCP, Port: 80}}, AffinitySeconds: 10800},
		},
		{
			name:   "ClientIP affinity without config",
			mutate: func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP },
			want:   &model.Service{Namespace: "ns", Name: "web", ClusterIPs: addrs("10.96.0.10"), Ports: []model.ServicePort{{Protocol: model.TCP, Port: 80}}, AffinitySeconds: 10800},
		},
		{
			name: "None affinity ignores a config (the API server drops it)",
			mutate: func(s *corev1.Service) {
				s.Spec.SessionAffinity = corev1.ServiceAffinityNone
				s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr[int32](0)}}
			},
			want: &model.Service{Namespace: "ns", Name: "web", ClusterIPs: addrs("10.96.0.10"), Ports: []model.ServicePort{{Protocol: model.TCP, Port: 80}}},
		},
		{
			name: "largest affinity timeout, Cluster policy, LoadBalancer",
			mutate: func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeLoadBalancer
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
				s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr[int32](86400)}}
				s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyCluster)
			},
			want: &model.Service{Namespace: "ns", Name: "web", ClusterIPs: addrs("10.96.0.10"), Ports: []model.ServicePort{{Protocol: model.TCP, Port: 80}}, AffinitySeconds: 86400},
		},
		{
			name:   "non-canonical IPv6 cluster IP (accepted by the API server) is kept parsed",
			mutate: func(s *corev1.Service) { s.Spec.ClusterIP = "FD00:0:0::0A" },
			want:   &model.Service{Namespace: "ns", Name: "web", ClusterIPs: addrs("fd00::a"), Ports: []model.ServicePort{{Protocol: model.TCP, Port: 80}}},
		},
		{
			name:   "name starting with a digit (DNS-1123 label, v1.37)",
			mutate: func(s *corev1.Service) { s.Name = "1web" },
			want:   &model.Service{Namespace: "ns", Name: "1web", ClusterIPs: addrs("10.96.0.10"), Ports: []model.ServicePort{{Protocol: model.TCP, Port: 80}}},
		},

		// Skipped.
		{
			name: "ExternalName, even with a spec we would refuse",
			mutate: func(s *corev1.Service) {
				s.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com", Ports: []corev1.ServicePort{{Port: 0, Protocol: "tcp"}}}
			},
			wantSkip: SkipExternalName,
		},
		{
			name:     "headless without ports",
			mutate:   func(s *corev1.Service) { s.Spec.ClusterIP = "None"; s.Spec.Ports = nil },
			wantSkip: SkipHeadless,
		},
		{
			name:     "headless with clusterIPs",
			mutate:   func(s *corev1.Service) { s.Spec.ClusterIP = "None"; s.Spec.ClusterIPs = []string{"None"} },
			wantSkip: SkipHeadless,
		},
		{
			name:     "no cluster IP yet",
			mutate:   func(s *corev1.Service) { s.Spec.ClusterIP = "" },
			wantSkip: SkipNoClusterIP,
		},
		{
			name:    "skipped but invalid: headless with a bad port",
			mutate:  func(s *corev1.Service) { s.Spec.ClusterIP = "None"; s.Spec.Ports[0].Protocol = "tcp" },
			wantErr: `spec.ports[0].protocol: unsupported protocol "tcp" (want TCP, UDP or SCTP, in capitals)`,
		},
		{
			name:     "skipped but invalid: no cluster IP and no ports",
			mutate:   func(s *corev1.Service) { s.Spec.ClusterIP = ""; s.Spec.Ports = nil },
			wantSkip: SkipNoClusterIP, wantErr: "spec.ports: required",
		},

		// Metadata.
		{name: "no name", mutate: func(s *corev1.Service) { s.Name = "" }, wantErr: "metadata.name: required"},
		{name: "upper-case name", mutate: func(s *corev1.Service) { s.Name = "Web" }, wantErr: `metadata.name: invalid Service name "Web": a lowercase RFC 1123 label`},
		{name: "dotted name", mutate: func(s *corev1.Service) { s.Name = "web.x" }, wantErr: `metadata.name: invalid Service name "web.x"`},
		{name: "name too long", mutate: func(s *corev1.Service) { s.Name = strings.Repeat("a", 64) }, wantErr: `must be no more than 63 characters`},
		{name: "bad namespace", mutate: func(s *corev1.Service) { s.Namespace = "a/b" }, wantErr: `metadata.namespace: invalid namespace name "a/b"`},

		// Type.
		{name: "unknown type", mutate: func(s *corev1.Service) { s.Spec.Type = "clusterIP" }, wantErr: `spec.type: unsupported value "clusterIP"`},
		{name: "headless NodePort", mutate: func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort; s.Spec.ClusterIP = "None" }, wantErr: `spec.clusterIP: None is not allowed for NodePort Services`},

		// Cluster IPs.
		{name: "bad cluster IP", mutate: func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.256" }, wantErr: `spec.clusterIP: invalid IP address "10.96.0.256"`},
		{name: "leading zeros", mutate: func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.010" }, wantErr: `spec.clusterIP: invalid IP address "10.96.0.010"`},
		{name: "IPv4-mapped IPv6", mutate: func(s *corev1.Service) { s.Spec.ClusterIP = "::ffff:10.96.0.10" }, wantErr: `spec.clusterIP: invalid IP address "::ffff:10.96.0.10": IPv4-mapped IPv6 addresses are not allowed`},
		{name: "zone", mutate: func(s *corev1.Service) { s.Spec.ClusterIP = "fd00::a%eth0" }, wantErr: `spec.clusterIP: invalid IP address "fd00::a%eth0": zones are not allowed`},
		{name: "CIDR", mutate: func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.10/32" }, wantErr: `spec.clusterIP: invalid IP address "10.96.0.10/32"`},
		{
			name:    "clusterIPs without clusterIP",
			mutate:  func(s *corev1.Service) { s.Spec.ClusterIP = ""; s.Spec.ClusterIPs = []string{"10.96.0.10"} },
			wantErr: `spec.clusterIPs: must be empty when spec.clusterIP is not set`,
		},
		{
			name:    "clusterIPs[0] differs",
			mutate:  func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"10.96.0.11"} },
			wantErr: `spec.clusterIPs[0]: "10.96.0.11" must be spec.clusterIP "10.96.0.10"`,
		},
		{
			name:    "bad second cluster IP",
			mutate:  func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"10.96.0.10", "fd00::g"} },
			wantErr: `spec.clusterIPs[1]: invalid IP address "fd00::g"`,
		},
		{
			name:    "two of one family",
			mutate:  func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"10.96.0.10", "10.96.0.11"} },
			wantErr: `spec.clusterIPs[1]: 10.96.0.10 and 10.96.0.11 are of the same IP family: at most one cluster IP per family`,
		},
		{
			name:    "three",
			mutate:  func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"10.96.0.10", "fd00::a", "fd00::b"} },
			wantErr: `spec.clusterIPs: 3 addresses; at most 2 (one per IP family)`,
		},
		{
			name:    "None and an address",
			mutate:  func(s *corev1.Service) { s.Spec.ClusterIP = "None"; s.Spec.ClusterIPs = []string{"None", "fd00::a"} },
			wantErr: `spec.clusterIPs[0]: None must be the first and only value`,
		},
		{
			name:    "None second",
			mutate:  func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"10.96.0.10", "None"} },
			wantErr: `spec.clusterIPs[1]: None must be the first and only value`,
		},
		{
			name:    "family mismatch",
			mutate:  func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} },
			wantErr: `spec.clusterIPs[0]: 10.96.0.10 is not an IPv6 address as spec.ipFamilies[0] says`,
		},
		{
			name:    "unknown family",
			mutate:  func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{"ipv4"} },
			wantErr: `spec.ipFamilies[0]: unsupported value "ipv4" (want IPv4 or IPv6)`,
		},
		{
			name: "duplicate family",
			mutate: func(s *corev1.Service) {
				s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv4Protocol}
			},
			wantErr: `spec.ipFamilies[1]: IPv4 is also spec.ipFamilies[0]`,
		},
		{
			name:    "unknown family policy",
			mutate:  func(s *corev1.Service) { s.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicy("DualStack")) },
			wantErr: `spec.ipFamilyPolicy: unsupported value "DualStack"`,
		},

		// Ports.
		{name: "no ports", mutate: func(s *corev1.Service) { s.Spec.Ports = nil }, wantErr: `spec.ports: required`},
		{name: "port 0", mutate: func(s *corev1.Service) { s.Spec.Ports[0].Port = 0 }, wantErr: `spec.ports[0].port: 0 is not between 1 and 65535`},
		{name: "port 65536", mutate: func(s *corev1.Service) { s.Spec.Ports[0].Port = 65536 }, wantErr: `spec.ports[0].port: 65536 is not between 1 and 65535`},
		{name: "lower-case protocol", mutate: func(s *corev1.Service) { s.Spec.Ports[0].Protocol = "udp" }, wantErr: `spec.ports[0].protocol: unsupported protocol "udp"`},
		{name: "ICMP", mutate: func(s *corev1.Service) { s.Spec.Ports[0].Protocol = "ICMP" }, wantErr: `spec.ports[0].protocol: unsupported protocol "ICMP"`},
		{
			name: "unnamed among several",
			mutate: func(s *corev1.Service) {
				s.Spec.Ports = []corev1.ServicePort{{Name: "a", Port: 80}, {Port: 81}}
			},
			wantErr: `spec.ports[1].name: required when the Service has more than one port`,
		},
		{
			name:    "bad port name",
			mutate:  func(s *corev1.Service) { s.Spec.Ports[0].Name = "HTTP" },
			wantErr: `spec.ports[0].name: invalid port name "HTTP"`,
		},
		{
			name: "duplicate port name",
			mutate: func(s *corev1.Service) {
				s.Spec.Ports = []corev1.ServicePort{{Name: "a", Port: 80}, {Name: "a", Port: 81}}
			},
			wantErr: `spec.ports[1].name: "a" is also the name of spec.ports[0]`,
		},
		{
			name: "duplicate port and protocol (TCP by default)",
			mutate: func(s *corev1.Service) {
				s.Spec.Ports = []corev1.ServicePort{{Name: "a", Port: 80, Protocol: corev1.ProtocolTCP}, {Name: "b", Port: 80, Protocol: corev1.ProtocolUDP}, {Name: "c", Port: 80}}
			},
			wantErr: `spec.ports[2]: 80/TCP is also spec.ports[0]`,
		},
		{name: "target port out of range", mutate: func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(70000) }, wantErr: `spec.ports[0].targetPort: 70000 is not between 1 and 65535`},
		{name: "target port digits as a string", mutate: func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("8080") }, wantErr: `spec.ports[0].targetPort: invalid port name "8080"`},
		{
			name: "too many ports",
			mutate: func(s *corev1.Service) {
				s.Spec.Ports = make([]corev1.ServicePort, MaxServicePorts+1)
			},
			wantErr: `spec.ports: 20001 ports exceed the limit of 20000 per Service`,
		},

		// Affinity and traffic policy.
		{name: "unknown affinity", mutate: func(s *corev1.Service) { s.Spec.SessionAffinity = "clientIP" }, wantErr: `spec.sessionAffinity: unsupported value "clientIP" (want None or ClientIP)`},
		{
			name: "affinity timeout 0",
			mutate: func(s *corev1.Service) {
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
				s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr[int32](0)}}
			},
			wantErr: `spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 is not between 1 and 86400`,
		},
		{
			name: "affinity timeout too long",
			mutate: func(s *corev1.Service) {
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
				s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr[int32](86401)}}
			},
			wantErr: `spec.sessionAffinityConfig.clientIP.timeoutSeconds: 86401 is not between 1 and 86400`,
		},
		{name: "unknown traffic policy", mutate: func(s *corev1.Service) {
			s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicy("local"))
		}, wantErr: `spec.internalTrafficPolicy: unsupported value "local" (want Cluster or Local)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			if tt.mutate != nil {
				tt.mutate(in)
			}
			before := in.DeepCopy()
			got, err := Service(in)
			if !reflect.DeepEqual(in, before) {
				t.Error("the input was modified")
			}
			// Invalid objects may be skipped or not: wantSkip is checked when given.
			if skip := ServiceSkip(in); skip != tt.wantSkip && (tt.wantErr == "" || tt.wantSkip != NotSkipped) {
				t.Errorf("ServiceSkip = %v, want %v", skip, tt.wantSkip)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v\nwant it to contain %q", err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("a service with an error: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if _, err := Service(nil); err == nil {
		t.Error("nil Service accepted")
	}
}

func TestEndpointSlice(t *testing.T) {
	// base is a slice as the EndpointSlice controller writes it, minus
	// what kube-proxy does not read.
	base := func() *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "ns", Name: "web-abc12",
				Labels: map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{
				{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr[int32](8080)},
				{Name: ptr("dns"), Protocol: ptr(corev1.ProtocolUDP), Port: ptr[int32](53)},
			},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.244.1.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)}, NodeName: ptr("node-1")},
				{Addresses: []string{"10.244.2.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}, NodeName: ptr("node-2")},
			},
		}
	}
	full := func() *model.EndpointSlice {
		return &model.EndpointSlice{
			Namespace: "ns", Name: "web-abc12", Service: "web",
			Ports: []model.EndpointPort{{Name: "http", Protocol: model.TCP, Port: 8080}, {Name: "dns", Protocol: model.UDP, Port: 53}},
			Endpoints: []model.Endpoint{
				{Address: netip.MustParseAddr("10.244.1.5"), Ready: true, Serving: true, Node: "node-1"},
				{Address: netip.MustParseAddr("10.244.2.7"), Serving: true, Terminating: true, Node: "node-2"},
			},
		}
	}
	tests := []struct {
		name     string
		mutate   func(e *discoveryv1.EndpointSlice)
		want     func(m *model.EndpointSlice) // changes to full(); nil: full()
		wantSkip Skip
		wantErr  string
	}{
		{name: "as the controller writes it"},
		{
			name: "defaults: port name and protocol, conditions, node, namespace",
			mutate: func(e *discoveryv1.EndpointSlice) {
				e.Namespace = ""
				e.Ports = []discoveryv1.EndpointPort{{Port: ptr[int32](80)}}
				e.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.5"}}}
			},
			want: func(m *model.EndpointSlice) {
				m.Namespace = "default"
				m.Ports = []model.EndpointPort{{Protocol: model.TCP, Port: 80}}
				m.Endpoints = []model.Endpoint{{Address: netip.MustParseAddr("10.244.1.5"), Ready: true, Serving: true}}
			},
		},
		{
			name: "conditions as set",
			mutate: func(e *discoveryv1.EndpointSlice) {
				e.Endpoints = []discoveryv1.Endpoint{
					{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}},
					{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Serving: ptr(false)}},
					{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Terminating: ptr(true)}},
				}
			},
			want: func(m *model.EndpointSlice) {
				m.Endpoints = []model.Endpoint{
					{Address: netip.MustParseAddr("10.0.0.1"), Serving: true},
					{Address: netip.MustParseAddr("10.0.0.2"), Ready: true},
					{Address: netip.MustParseAddr("10.0.0.3"), Ready: true, Serving: true, Terminating: true},
				}
			},
		},
		{
			name: "ports without a number are left out, as kube-proxy does",
			mutate: func(e *discoveryv1.EndpointSlice) {
				e.Ports = append(e.Ports, discoveryv1.EndpointPort{Name: ptr("a")}, discoveryv1.EndpointPort{Name: ptr("b"), Port: ptr[int32](0)}, discoveryv1.EndpointPort{Name: ptr("sctp"), Protocol: ptr(corev1.ProtocolSCTP), Port: ptr[int32](65535)})
			},
			want: func(m *model.EndpointSlice) {
				m.Ports = append(m.Ports, model.EndpointPort{Name: "sctp", Protocol: model.SCTP, Port: 65535})
			},
		},
		{
			name:   "no ports, no endpoints",
			mutate: func(e *discoveryv1.EndpointSlice) { e.Ports = nil; e.Endpoints = nil },
			want:   func(m *model.EndpointSlice) { m.Ports = nil; m.Endpoints = nil },
		},
		{
			name: "first address only; every address checked",
			mutate: func(e *discoveryv1.EndpointSlice) {
				e.Endpoints = e.Endpoints[:1]
				e.Endpoints[0].Addresses = []string{"10.244.1.5", "10.244.1.6"}
			},
			want: func(m *model.EndpointSlice) { m.Endpoints = m.Endpoints[:1] },
		},
		{
			name: "IPv6",
			mutate: func(e *discoveryv1.EndpointSlice) {
				e.AddressType = discoveryv1.AddressTypeIPv6
				e.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"fd00:10:244:1::5"}, NodeName: ptr("node-1")}}
			},
			want: func(m *model.EndpointSlice) {
				m.IPv6 = true
				m.Endpoints = []model.Endpoint{{Address: netip.MustParseAddr("fd00:10:244:1::5"), Ready: true, Serving: true, Node: "node-1"}}
			},
		},

		// Skipped.
		{
			name:     "no service-name label",
			mutate:   func(e *discoveryv1.EndpointSlice) { delete(e.Labels, discoveryv1.LabelServiceName) },
			wantSkip: SkipNoService,
		},
		{
			name:     "empty service-name label",
			mutate:   func(e *discoveryv1.EndpointSlice) { e.Labels[discoveryv1.LabelServiceName] = "" },
			wantSkip: SkipNoService,
		},
		{
			name:     "service-name no Service can have",
			mutate:   func(e *discoveryv1.EndpointSlice) { e.Labels[discoveryv1.LabelServiceName] = "Web_1" },
			wantSkip: SkipNoService,
		},
		{
			name: "FQDN, addresses not checked",
			mutate: func(e *discoveryv1.EndpointSlice) {
				e.AddressType = discoveryv1.AddressTypeFQDN
				e.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"example.com"}}}
			},
			wantSkip: SkipFQDN,
		},
		{
			name: "skipped but invalid: FQDN with a bad port",
			mutate: func(e *discoveryv1.EndpointSlice) {
				e.AddressType = discoveryv1.AddressTypeFQDN
				e.Ports[0].Protocol = ptr(corev1.Protocol("tcp"))
			},
			wantSkip: SkipFQDN, wantErr: `ports[0].protocol: unsupported protocol "tcp"`,
		},
		{
			name: "skipped but invalid: no label, bad address",
			mutate: func(e *discoveryv1.EndpointSlice) {
				e.Labels = nil
				e.Endpoints[1].Addresses[0] = "10.244.2"
			},
			wantSkip: SkipNoService, wantErr: `endpoints[1].addresses[0]: invalid IP address "10.244.2"`,
		},

		// Metadata and address type.
		{name: "no name", mutate: func(e *discoveryv1.EndpointSlice) { e.Name = "" }, wantErr: "metadata.name: required"},
		{name: "bad name", mutate: func(e *discoveryv1.EndpointSlice) { e.Name = "web_1" }, wantErr: `metadata.name: invalid EndpointSlice name "web_1": a lowercase RFC 1123 subdomain`},
		{name: "bad namespace", mutate: func(e *discoveryv1.EndpointSlice) { e.Namespace = "a.b" }, wantErr: `metadata.namespace: invalid namespace name "a.b"`},
		{name: "no address type", mutate: func(e *discoveryv1.EndpointSlice) { e.AddressType = "" }, wantErr: `addressType: required`},
		{name: "unknown address type", mutate: func(e *discoveryv1.EndpointSlice) { e.AddressType = "ipv4" }, wantErr: `addressType: unsupported value "ipv4" (want IPv4, IPv6 or FQDN)`},

		// Ports.
		{name: "bad port name", mutate: func(e *discoveryv1.EndpointSlice) { e.Ports[1].Name = ptr("DNS") }, wantErr: `ports[1].name: invalid port name "DNS"`},
		{name: "duplicate port name", mutate: func(e *discoveryv1.EndpointSlice) { e.Ports[1].Name = ptr("http") }, wantErr: `ports[1].name: "http" is also the name of ports[0]`},
		{
			name:    "two unnamed ports",
			mutate:  func(e *discoveryv1.EndpointSlice) { e.Ports[0].Name = nil; e.Ports[1].Name = ptr("") },
			wantErr: `ports[1].name: "" is also the name of ports[0]`,
		},
		{name: "lower-case protocol", mutate: func(e *discoveryv1.EndpointSlice) { e.Ports[1].Protocol = ptr(corev1.Protocol("udp")) }, wantErr: `ports[1].protocol: unsupported protocol "udp"`},
		{name: "empty protocol", mutate: func(e *discoveryv1.EndpointSlice) { e.Ports[1].Protocol = ptr(corev1.Protocol("")) }, wantErr: `ports[1].protocol: unsupported protocol ""`},
		{name: "negative port", mutate: func(e *discoveryv1.EndpointSlice) { e.Ports[1].Port = ptr[int32](-1) }, wantErr: `ports[1].port: -1 is not between 1 and 65535`},
		{name: "port 65536", mutate: func(e *discoveryv1.EndpointSlice) { e.Ports[1].Port = ptr[int32](65536) }, wantErr: `ports[1].port: 65536 is not between 1 and 65535`},
		{
			name: "too many ports",
			mutate: func(e *discoveryv1.EndpointSlice) {
				e.Ports = make([]discoveryv1.EndpointPort, MaxSlicePorts+1)
			},
			wantErr: `ports: 20001 ports exceed the limit of 20000 per slice`,
		},

		// Endpoints.
		{
			name:    "too many endpoints",
			mutate:  func(e *discoveryv1.EndpointSlice) { e.Endpoints = make([]discoveryv1.Endpoint, MaxSliceEndpoints+1) },
			wantErr: `endpoints: 1001 endpoints exceed the limit of 1000 per slice`,
		},
		{name: "no address", mutate: func(e *discoveryv1.EndpointSlice) { e.Endpoints[1].Addresses = nil }, wantErr: `endpoints[1].addresses: required`},
		{
			name:    "too many addresses",
			mutate:  func(e *discoveryv1.EndpointSlice) { e.Endpoints[1].Addresses = make([]string, MaxEndpointAddresses+1) },
			wantErr: `endpoints[1].addresses: 101 addresses exceed the limit of 100`,
		},
		{name: "IPv6 in an IPv4 slice", mutate: func(e *discoveryv1.EndpointSlice) { e.Endpoints[1].Addresses = []string{"fd00::1"} }, wantErr: `endpoints[1].addresses[0]: fd00::1 is not an IPv4 address (addressType IPv4)`},
		{
			name:    "IPv4 in an IPv6 slice",
			mutate:  func(e *discoveryv1.EndpointSlice) { e.AddressType = discoveryv1.AddressTypeIPv6 },
			wantErr: `endpoints[0].addresses[0]: 10.244.1.5 is not an IPv6 address (addressType IPv6)`,
		},
		{
			name:    "bad second address",
			mutate:  func(e *discoveryv1.EndpointSlice) { e.Endpoints[0].Addresses = []string{"10.244.1.5", "10.244.1.x"} },
			wantErr: `endpoints[0].addresses[1]: invalid IP address "10.244.1.x"`,
		},
		{name: "leading zeros", mutate: func(e *discoveryv1.EndpointSlice) { e.Endpoints[0].Addresses = []string{"10.244.1.05"} }, wantErr: `endpoints[0].addresses[0]: invalid IP address "10.244.1.05"`},
		{name: "IPv4-mapped", mutate: func(e *discoveryv1.EndpointSlice) { e.Endpoints[0].Addresses = []string{"::ffff:10.244.1.5"} }, wantErr: `IPv4-mapped IPv6 addresses are not allowed`},
		{
			name: "non-canonical IPv6",
			mutate: func(e *discoveryv1.EndpointSlice) {
				e.AddressType = discoveryv1.AddressTypeIPv6
				e.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"FD00:0:0::5"}}}
			},
			wantErr: `endpoints[0].addresses[0]: IP address "FD00:0:0::5" is not in canonical form ("fd00::5")`,
		},
		{name: "unspecified", mutate: func(e *discoveryv1.EndpointSlice) { e.Endpoints[0].Addresses = []string{"0.0.0.0"} }, wantErr: `endpoints[0].addresses[0]: 0.0.0.0: the unspecified address is not allowed`},
		{name: "loopback", mutate: func(e *discoveryv1.EndpointSlice) { e.Endpoints[0].Addresses = []string{"127.0.0.2"} }, wantErr: `127.0.0.2: loopback addresses`},
		{name: "link-local", mutate: func(e *discoveryv1.EndpointSlice) { e.Endpoints[0].Addresses = []string{"169.254.169.254"} }, wantErr: `169.254.169.254: link-local addresses`},
		{name: "link-local multicast", mutate: func(e *discoveryv1.EndpointSlice) { e.Endpoints[0].Addresses = []string{"224.0.0.251"} }, wantErr: `224.0.0.251: link-local multicast addresses`},
		{
			name: "IPv6 loopback",
			mutate: func(e *discoveryv1.EndpointSlice) {
				e.AddressType = discoveryv1.AddressTypeIPv6
				e.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"::1"}}}
			},
			wantErr: `::1: loopback addresses`,
		},
		{name: "bad node name", mutate: func(e *discoveryv1.EndpointSlice) { e.Endpoints[1].NodeName = ptr("Node 2") }, wantErr: `endpoints[1].nodeName: invalid node name "Node 2"`},
		{name: "empty node name", mutate: func(e *discoveryv1.EndpointSlice) { e.Endpoints[1].NodeName = ptr("") }, wantErr: `endpoints[1].nodeName: invalid node name ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			if tt.mutate != nil {
				tt.mutate(in)
			}
			before := in.DeepCopy()
			got, err := EndpointSlice(in)
			if !reflect.DeepEqual(in, before) {
				t.Error("the input was modified")
			}
			// Invalid objects may be skipped or not: wantSkip is checked when given.
			if skip := EndpointSliceSkip(in); skip != tt.wantSkip && (tt.wantErr == "" || tt.wantSkip != NotSkipped) {
				t.Errorf("EndpointSliceSkip = %v, want %v", skip, tt.wantSkip)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v\nwant it to contain %q", err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("a slice with an error: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want *model.EndpointSlice
			if tt.wantSkip == NotSkipped {
				want = full()
				if tt.want != nil {
					tt.want(want)
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
	if _, err := EndpointSlice(nil); err == nil {
		t.Error("nil EndpointSlice accepted")
	}
}

// TestServiceBackends checks that normalized objects feed model.Backends as
// kube-proxy would pick endpoints.
func TestServiceBackends(t *testing.T) {
	svc, err := Service(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
		Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00::a"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	slice, err := EndpointSlice(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr[int32](8080)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.5"}, NodeName: ptr("n1")},
			{Addresses: []string{"10.244.2.5"}, NodeName: ptr("n2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, h := model.Backends(svc, svc.Ports[0], false, []*model.EndpointSlice{slice}, "n2")
	if want := []model.Backend{{Address: netip.MustParseAddr("10.244.1.5"), Port: 8080, Node: "n1"}}; h != model.Balance || !reflect.DeepEqual(got, want) {
		t.Errorf("IPv4: %v %v, want %v", got, h, want)
	}
	if _, h := model.Backends(svc, svc.Ports[0], true, []*model.EndpointSlice{slice}, "n2"); h != model.NoEndpoints {
		t.Errorf("IPv6: %v, want NoEndpoints", h)
	}
}

func TestSkipString(t *testing.T) {
	seen := map[string]bool{}
	for s := NotSkipped; s <= SkipNoService; s++ {
		str := s.String()
		if strings.HasPrefix(str, "Skip(") || seen[str] {
			t.Errorf("%d: %q", int(s), str)
		}
		seen[str] = true
	}
	if got := Skip(99).String(); got != "Skip(99)" {
		t.Errorf("Skip(99) = %q", got)
	}
}
