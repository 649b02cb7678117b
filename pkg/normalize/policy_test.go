package normalize

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	extv1beta1 "k8s.io/api/extensions/v1beta1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/ovs-netpol/ovs-netpol/examples/seed"
)

// v1 decodes a networking.k8s.io/v1 spec written in YAML, so cases read like
// the manifests users write.
func v1(t *testing.T, specYAML string) *networkingv1.NetworkPolicy {
	t.Helper()
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	if err := yaml.UnmarshalStrict([]byte(specYAML), &np.Spec); err != nil {
		t.Fatalf("bad test spec: %v\n%s", err, specYAML)
	}
	return np
}

func TestNetworkPolicyV1(t *testing.T) {
	tests := []struct {
		name, spec string
		want       string // describe() output, without the first line's prefix "ns/p networking.k8s.io/v1 "
		wantErr    string
	}{
		{
			name: "seed rules, lower-case protocol",
			spec: `
podSelector: {matchLabels: {role: db}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {project: myproject}}
  - podSelector: {matchLabels: {role: frontend}}
  ports:
  - {protocol: tcp, port: 6379}`,
			want: `sel={role=db} ingress=true egress=false
ingress[0] peers=ns:{project=myproject},pod:nil ns:nil,pod:{role=frontend} ports=6379/TCP`,
		},
		{
			name: "empty podSelector selects all; no rules denies all ingress",
			spec: `podSelector: {}`,
			want: `sel={} ingress=true egress=false`,
		},
		{
			name: "egress rules imply Egress when policyTypes is missing",
			spec: `
podSelector: {}
egress: [{}]`,
			want: `sel={} ingress=true egress=true
egress[0] peers=* ports=*`,
		},
		{
			name: "explicit policyTypes win; empty ingress list",
			spec: `
podSelector: {}
policyTypes: [Egress]
ingress: []`,
			want: `sel={} ingress=false egress=true`,
		},
		{
			name: "explicit Ingress and Egress without rules",
			spec: `
podSelector: {}
policyTypes: [Ingress, Egress]`,
			want: `sel={} ingress=true egress=true`,
		},
		{
			name:    "unknown policyType",
			spec:    `{podSelector: {}, policyTypes: [ingress]}`,
			wantErr: `spec.policyTypes[0]: unsupported value "ingress"`,
		},
		{
			name: "rule without from and with empty from allows every peer",
			spec: `
podSelector: {}
ingress:
- ports: [{port: 80}]
- from: []`,
			want: `sel={} ingress=true egress=false
ingress[0] peers=* ports=80/TCP
ingress[1] peers=* ports=*`,
		},
		{
			name: "empty namespaceSelector is every namespace; both selectors are AND",
			spec: `
podSelector: {}
ingress:
- from:
  - namespaceSelector: {}
  - podSelector: {}
  - namespaceSelector: {matchLabels: {team: a}}
    podSelector: {matchExpressions: [{key: app, operator: In, values: [web, api]}]}`,
			want: `sel={} ingress=true egress=false
ingress[0] peers=ns:{},pod:nil ns:nil,pod:{} ns:{team=a},pod:{app in (api,web)} ports=*`,
		},
		{
			name: "ipBlock masked, excepts kept",
			spec: `
podSelector: {}
egress:
- to:
  - ipBlock: {cidr: 10.1.2.3/8, except: [10.1.0.0/16, 10.2.3.4/24]}
  - ipBlock: {cidr: "fd00::1/64"}`,
			want: `sel={} ingress=true egress=true
egress[0] peers=ip:10.0.0.0/8-10.1.0.0/16-10.2.3.0/24 ip:fd00::/64 ports=*`,
		},
		{
			name:    "ipBlock with a selector",
			spec:    `{podSelector: {}, ingress: [{from: [{podSelector: {}}, {ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}`,
			wantErr: `spec.ingress[0].from[1]: ipBlock cannot be combined with podSelector or namespaceSelector`,
		},
		{
			name:    "empty peer",
			spec:    `{podSelector: {}, egress: [{to: [{}]}]}`,
			wantErr: `spec.egress[0].to[0]: a peer needs podSelector, namespaceSelector or ipBlock`,
		},
		{
			name:    "bad cidr",
			spec:    `{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0}}]}]}`,
			wantErr: `spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR "10.0.0.0"`,
		},
		{
			name:    "except outside cidr",
			spec:    `{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]}`,
			wantErr: `spec.ingress[0].from[0].ipBlock.except[0]: 11.0.0.0/16 is not strictly inside cidr 10.0.0.0/8`,
		},
		{
			name:    "except equal to cidr",
			spec:    `{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}]}`,
			wantErr: `except[0]: 10.0.0.0/8 is not strictly inside cidr 10.0.0.0/8`,
		},
		{
			name:    "except of the other family",
			spec:    `{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0, except: ["::/64"]}}]}]}`,
			wantErr: `except[0]: ::/64 is not of the same IP family as cidr 0.0.0.0/0`,
		},
		{
			name:    "bad pod selector names its path",
			spec:    `{podSelector: {}, ingress: [{from: [{podSelector: {}}, {podSelector: {matchLabels: {"bad key!": x}}}]}]}`,
			wantErr: `spec.ingress[0].from[1].podSelector: `,
		},
		{
			name:    "bad policy podSelector",
			spec:    `{podSelector: {matchExpressions: [{key: a, operator: In}]}}`,
			wantErr: `spec.podSelector: `,
		},
		{
			name:    "bad operator",
			spec:    `{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}}]}]}`,
			wantErr: `spec.ingress[0].from[0].namespaceSelector: "Equals" is not a valid label selector operator`,
		},
		{
			name: "ports: default TCP, case, numbers in strings, named, ranges",
			spec: `
podSelector: {}
ingress:
- ports:
  - port: 80
  - {protocol: udp, port: "53"}
  - {protocol: SCTP}
  - {port: http}
  - {protocol: Udp, port: dns}
  - {port: 8000, endPort: 8080}
  - {port: 9000, endPort: 9000}`,
			want: `sel={} ingress=true egress=false
ingress[0] peers=* ports=80/TCP 53/UDP */SCTP http/TCP dns/UDP 8000-8080/TCP 9000/TCP`,
		},
		{
			name:    "unsupported protocol",
			spec:    `{podSelector: {}, ingress: [{ports: [{port: 1}, {protocol: icmp}]}]}`,
			wantErr: `spec.ingress[0].ports[1].protocol: unsupported protocol "icmp"`,
		},
		{
			name:    "port zero",
			spec:    `{podSelector: {}, ingress: [{ports: [{port: 0}]}]}`,
			wantErr: `spec.ingress[0].ports[0].port: 0 is not between 1 and 65535`,
		},
		{
			name:    "port too large as string",
			spec:    `{podSelector: {}, egress: [{ports: [{port: "70000"}]}]}`,
			wantErr: `spec.egress[0].ports[0].port: 70000 is not between 1 and 65535`,
		},
		{
			name:    "bad port name",
			spec:    `{podSelector: {}, ingress: [{ports: [{port: "http_alt"}]}]}`,
			wantErr: `spec.ingress[0].ports[0].port: invalid port name "http_alt"`,
		},
		{
			name:    "empty port name",
			spec:    `{podSelector: {}, ingress: [{ports: [{port: ""}]}]}`,
			wantErr: `spec.ingress[0].ports[0].port: empty port name`,
		},
		{
			name:    "endPort below port",
			spec:    `{podSelector: {}, ingress: [{ports: [{port: 80, endPort: 79}]}]}`,
			wantErr: `spec.ingress[0].ports[0].endPort: 79 is less than port 80`,
		},
		{
			name:    "endPort too large",
			spec:    `{podSelector: {}, ingress: [{ports: [{port: 80, endPort: 65536}]}]}`,
			wantErr: `spec.ingress[0].ports[0].endPort: 65536 is not between 1 and 65535`,
		},
		{
			name:    "endPort with a named port",
			spec:    `{podSelector: {}, ingress: [{ports: [{port: http, endPort: 90}]}]}`,
			wantErr: `spec.ingress[0].ports[0].endPort: cannot be used with the named port "http"`,
		},
		{
			name:    "endPort without port",
			spec:    `{podSelector: {}, ingress: [{ports: [{endPort: 90}]}]}`,
			wantErr: `spec.ingress[0].ports[0].endPort: requires a numeric port`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NetworkPolicyV1(v1(t, tt.spec))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if d, want := describe(got), "ns/p networking.k8s.io/v1 "+tt.want; d != want {
				t.Errorf("got\n%s\nwant\n%s", d, want)
			}
		})
	}
}

func TestNetworkPolicyV1Selectors(t *testing.T) {
	np := v1(t, `
podSelector: {}
ingress:
- from:
  - namespaceSelector: {}
  - podSelector: {matchLabels: {a: b}}`)
	p, err := NetworkPolicyV1(np)
	if err != nil {
		t.Fatal(err)
	}
	all := p.Ingress[0].Peers[0]
	if all.NamespaceSelector == nil || !all.NamespaceSelector.Matches(labels.Set{"any": "thing"}) || !all.NamespaceSelector.Matches(labels.Set{}) {
		t.Errorf("namespaceSelector {} must be non-nil and match every namespace, got %v", all.NamespaceSelector)
	}
	if all.PodSelector != nil {
		t.Errorf("missing podSelector must stay nil (all pods), got %v", all.PodSelector)
	}
	own := p.Ingress[0].Peers[1]
	if own.NamespaceSelector != nil {
		t.Errorf("missing namespaceSelector must stay nil (own namespace), got %v", own.NamespaceSelector)
	}
	if !p.PodSelector.Matches(labels.Set{}) {
		t.Errorf("podSelector {} must match every pod")
	}
}

func TestNetworkPolicyMetadata(t *testing.T) {
	np := v1(t, `podSelector: {}`)
	np.Namespace = ""
	p, err := NetworkPolicyV1(np)
	if err != nil {
		t.Fatal(err)
	}
	if p.Key() != "default/p" {
		t.Errorf("key = %s, want default/p", p.Key())
	}
	np.Name = ""
	if _, err := NetworkPolicyV1(np); err == nil || !strings.Contains(err.Error(), "metadata.name") {
		t.Errorf("error = %v, want metadata.name required", err)
	}
	if _, err := NetworkPolicyV1(nil); err == nil {
		t.Error("nil policy accepted")
	}
	if _, err := NetworkPolicyV1beta1(nil); err == nil {
		t.Error("nil v1beta1 policy accepted")
	}
}

func TestLimits(t *testing.T) {
	tcp := corev1.ProtocolTCP
	onePort := networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &intstr.IntOrString{IntVal: 80}}
	onePeer := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{}}
	tests := []struct {
		name    string
		spec    networkingv1.NetworkPolicySpec
		wantErr string
	}{
		{"rules at the limit", networkingv1.NetworkPolicySpec{
			Ingress: make([]networkingv1.NetworkPolicyIngressRule, MaxRules/2),
			Egress:  make([]networkingv1.NetworkPolicyEgressRule, MaxRules/2),
		}, ""},
		{"too many rules", networkingv1.NetworkPolicySpec{
			Ingress: make([]networkingv1.NetworkPolicyIngressRule, MaxRules/2),
			Egress:  make([]networkingv1.NetworkPolicyEgressRule, MaxRules/2+1),
		}, fmt.Sprintf("spec: %d ingress and egress rules exceed the limit of %d per policy", MaxRules+1, MaxRules)},
		{"peers at the limit", networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: repeat(onePeer, MaxRulePeers)}},
		}, ""},
		{"too many peers", networkingv1.NetworkPolicySpec{
			Egress: []networkingv1.NetworkPolicyEgressRule{{}, {To: repeat(onePeer, MaxRulePeers+1)}},
		}, fmt.Sprintf("spec.egress[1].to: %d peers exceed the limit", MaxRulePeers+1)},
		{"ports at the limit", networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: repeat(onePort, MaxRulePorts)}},
		}, ""},
		{"too many ports", networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: repeat(onePort, MaxRulePorts+1)}},
		}, fmt.Sprintf("spec.ingress[0].ports: %d ports exceed the limit", MaxRulePorts+1)},
		{"too many excepts", networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{
				CIDR: "10.0.0.0/8", Except: repeat("10.0.0.0/24", MaxIPBlockExcepts+1),
			}}}}},
		}, "spec.ingress[0].from[0].ipBlock.except: 1001 entries exceed the limit of 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "big"}, Spec: tt.spec}
			_, err := NetworkPolicyV1(np)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func repeat[T any](v T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestNetworkPolicyV1beta1(t *testing.T) {
	var old extv1beta1.NetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(seed.Policy), &old); err != nil {
		t.Fatal(err)
	}
	got, err := NetworkPolicyV1beta1(&old)
	if err != nil {
		t.Fatal(err)
	}
	want := `default/test-network-policy extensions/v1beta1 sel={role=db} ingress=true egress=false
ingress[0] peers=ns:{project=myproject},pod:nil ns:nil,pod:{role=frontend} ports=6379/TCP`
	if d := describe(got); d != want {
		t.Errorf("got\n%s\nwant\n%s", d, want)
	}

	// The same spec as networking.k8s.io/v1 normalizes to the same rules.
	conv, err := V1beta1ToV1(&old)
	if err != nil {
		t.Fatal(err)
	}
	if conv.APIVersion != "networking.k8s.io/v1" || conv.Kind != "NetworkPolicy" || conv.Name != old.Name || conv.Namespace != old.Namespace {
		t.Errorf("V1beta1ToV1 metadata: %+v %+v", conv.TypeMeta, conv.ObjectMeta)
	}
	if p := conv.Spec.Ingress[0].Ports[0].Protocol; p == nil || *p != "tcp" {
		t.Errorf("V1beta1ToV1 must copy verbatim, protocol = %v", p)
	}
	again, err := NetworkPolicyV1(conv)
	if err != nil {
		t.Fatal(err)
	}
	if d, w := describe(again), strings.Replace(want, "extensions/v1beta1", "networking.k8s.io/v1", 1); d != w {
		t.Errorf("v1 form normalizes to\n%s\nwant\n%s", d, w)
	}
	// V1beta1ToV1 does not alias the input.
	conv.Spec.PodSelector.MatchLabels["role"] = "changed"
	if old.Spec.PodSelector.MatchLabels["role"] != "db" {
		t.Error("V1beta1ToV1 aliases the input")
	}

	// Errors are the same as for v1.
	old.Spec.Ingress[0].From = append(old.Spec.Ingress[0].From, extv1beta1.NetworkPolicyPeer{})
	if _, err := NetworkPolicyV1beta1(&old); err == nil || !strings.Contains(err.Error(), "spec.ingress[0].from[2]: a peer needs") {
		t.Errorf("error = %v", err)
	}
}
