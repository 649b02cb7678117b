package normalize

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

func TestNamespace(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		want        model.LegacyIsolation
		wantWarning string
	}{
		{"no annotation", nil, model.LegacyNone, ""},
		{"other annotations", map[string]string{"a": "b"}, model.LegacyNone, ""},
		{"DefaultDeny", map[string]string{model.LegacyAnnotation: `{"ingress": {"isolation": "DefaultDeny"}}`}, model.LegacyDefaultDeny, ""},
		{"no isolation asked", map[string]string{model.LegacyAnnotation: `{}`}, model.LegacyNone, ""},
		{"not JSON", map[string]string{model.LegacyAnnotation: `DefaultDeny`}, model.LegacyMalformed, "namespace x: metadata.annotations[net.beta.kubernetes.io/network-policy]: annotation"},
		{"unknown isolation", map[string]string{model.LegacyAnnotation: `{"ingress":{"isolation":"defaultdeny"}}`}, model.LegacyMalformed, `unknown ingress isolation "defaultdeny"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"team": "a"}, Annotations: tt.annotations}}
			got, warning := Namespace(in)
			if got == nil {
				t.Fatal("nil namespace")
			}
			if tt.wantWarning == "" && warning != nil {
				t.Errorf("unexpected warning: %v", warning)
			}
			if tt.wantWarning != "" && (warning == nil || !strings.Contains(warning.Error(), tt.wantWarning)) {
				t.Errorf("warning = %v, want it to contain %q", warning, tt.wantWarning)
			}
			if got.Name != "x" || got.LegacyIsolation != tt.want || !reflect.DeepEqual(got.Labels, labels.Set{"team": "a"}) {
				t.Errorf("got %+v, want isolation %v", got, tt.want)
			}
			got.Labels["team"] = "b"
			if in.Labels["team"] != "a" {
				t.Error("labels alias the input")
			}
		})
	}
	if ns, _ := Namespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nolabels"}}); ns.Labels == nil {
		t.Error("labels must never be nil")
	}
	if _, err := Namespace(nil); err == nil {
		t.Error("nil namespace accepted")
	}
}

func TestPod(t *testing.T) {
	base := func() *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a", UID: "u-1", Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{
				NodeName:       "node1",
				InitContainers: []corev1.Container{{Name: "init", Ports: []corev1.ContainerPort{{Name: "init", ContainerPort: 1}}}},
				Containers: []corev1.Container{
					{Name: "c1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {ContainerPort: 53, Protocol: "UDP"}}},
					{Name: "c2", Ports: []corev1.ContainerPort{{Name: "sctp", ContainerPort: 9, Protocol: "sctp"}}},
				},
			},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}, {IP: "fd00::1"}}},
		}
	}
	wantPorts := []model.ContainerPort{{Name: "http", Port: 8080, Protocol: model.TCP}, {Port: 53, Protocol: model.UDP}, {Name: "sctp", Port: 9, Protocol: model.SCTP}}
	tests := []struct {
		name    string
		mutate  func(p *corev1.Pod)
		check   func(t *testing.T, p *model.Pod)
		wantErr string
	}{
		{name: "full", check: func(t *testing.T, p *model.Pod) {
			want := &model.Pod{
				UID: "u-1", Namespace: "ns", Name: "a", Labels: labels.Set{"app": "web"}, Node: "node1",
				IPs:   []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")},
				Ports: wantPorts, Phase: "Running",
			}
			if !reflect.DeepEqual(p, want) {
				t.Errorf("got  %+v\nwant %+v", p, want)
			}
		}},
		{name: "no UID, no namespace", mutate: func(p *corev1.Pod) { p.UID = ""; p.Namespace = "" }, check: func(t *testing.T, p *model.Pod) {
			if p.UID != "default/a" || p.Namespace != "default" {
				t.Errorf("UID %q namespace %q, want default/a and default", p.UID, p.Namespace)
			}
		}},
		{name: "podIP only", mutate: func(p *corev1.Pod) { p.Status.PodIPs = nil; p.Status.PodIP = "10.0.0.2" }, check: func(t *testing.T, p *model.Pod) {
			if !reflect.DeepEqual(p.IPs, []netip.Addr{netip.MustParseAddr("10.0.0.2")}) {
				t.Errorf("IPs = %v", p.IPs)
			}
		}},
		{name: "no IP yet", mutate: func(p *corev1.Pod) { p.Status = corev1.PodStatus{Phase: corev1.PodPending} }, check: func(t *testing.T, p *model.Pod) {
			if len(p.IPs) != 0 || p.Phase != "Pending" {
				t.Errorf("IPs = %v phase %s", p.IPs, p.Phase)
			}
		}},
		{name: "duplicate IPs collapse", mutate: func(p *corev1.Pod) { p.Status.PodIPs = []corev1.PodIP{{IP: "10.0.0.1"}, {IP: "10.0.0.1"}} }, check: func(t *testing.T, p *model.Pod) {
			if len(p.IPs) != 1 {
				t.Errorf("IPs = %v", p.IPs)
			}
		}},
		{name: "host network, finished", mutate: func(p *corev1.Pod) { p.Spec.HostNetwork = true; p.Status.Phase = corev1.PodSucceeded }, check: func(t *testing.T, p *model.Pod) {
			if !p.HostNetwork || p.Phase != model.PodSucceeded || p.Active() {
				t.Errorf("got %+v", p)
			}
		}},
		{name: "bad podIPs", mutate: func(p *corev1.Pod) { p.Status.PodIPs[1].IP = "10.0.0.300" }, wantErr: `status.podIPs[1].ip: invalid IP address "10.0.0.300"`},
		{name: "bad podIP", mutate: func(p *corev1.Pod) { p.Status.PodIPs = nil; p.Status.PodIP = "x" }, wantErr: `status.podIP: invalid IP address "x"`},
		{name: "zone", mutate: func(p *corev1.Pod) { p.Status.PodIPs = []corev1.PodIP{{IP: "fe80::1%eth0"}} }, wantErr: `zones are not allowed`},
		{name: "bad protocol", mutate: func(p *corev1.Pod) { p.Spec.Containers[1].Ports[0].Protocol = "ICMP" }, wantErr: `spec.containers[1].ports[0].protocol: unsupported protocol "ICMP"`},
		{name: "bad port", mutate: func(p *corev1.Pod) { p.Spec.Containers[0].Ports[1].ContainerPort = 0 }, wantErr: `spec.containers[0].ports[1].containerPort: 0 is not between 1 and 65535`},
		{name: "no name", mutate: func(p *corev1.Pod) { p.Name = "" }, wantErr: `metadata.name: required`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			if tt.mutate != nil {
				tt.mutate(in)
			}
			got, err := Pod(in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, got)
		})
	}
	if _, err := Pod(nil); err == nil {
		t.Error("nil pod accepted")
	}
}

func TestNodeInternalIPs(t *testing.T) {
	tests := []struct {
		addrs   []corev1.NodeAddress
		want    string
		wantErr string
	}{
		{nil, "[]", ""},
		{[]corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "n1"}, {Type: corev1.NodeInternalIP, Address: "192.168.0.1"}, {Type: corev1.NodeExternalIP, Address: "1.2.3.4"}, {Type: corev1.NodeInternalIP, Address: "fd00::1"}, {Type: corev1.NodeInternalIP, Address: "192.168.0.1"}}, "[192.168.0.1 fd00::1]", ""},
		{[]corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "n1"}, {Type: corev1.NodeInternalIP, Address: "bad"}}, "", `status.addresses[1].address: invalid IP address "bad"`},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			got, err := NodeInternalIPs(&corev1.Node{Status: corev1.NodeStatus{Addresses: tt.addrs}})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != tt.want {
				t.Errorf("got %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}
