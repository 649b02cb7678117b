package normalize

import (
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// The effective policyTypes, the one rule normalize, the controller's
// fail-closed stand-in, convert and the test kits share.
func TestEffectivePolicyTypes(t *testing.T) {
	for _, tc := range []struct {
		name                string
		spec                string // a NetworkPolicySpec in YAML
		wantIngress, wantEg bool
		wantErr             string
	}{
		{name: "absent, no rules: Ingress", spec: `{podSelector: {}}`, wantIngress: true},
		{name: "absent, ingress rules only: Ingress", spec: `{podSelector: {}, ingress: [{}]}`, wantIngress: true},
		{name: "absent, empty egress list: Ingress", spec: `{podSelector: {}, egress: []}`, wantIngress: true},
		{name: "absent, egress rules: Ingress and Egress", spec: `{podSelector: {}, egress: [{}]}`, wantIngress: true, wantEg: true},
		{name: "empty list counts as absent", spec: `{podSelector: {}, policyTypes: [], egress: [{}]}`, wantIngress: true, wantEg: true},
		{name: "Ingress only, egress rules ignored", spec: `{podSelector: {}, policyTypes: [Ingress], egress: [{}]}`, wantIngress: true},
		{name: "Egress only, ingress rules ignored", spec: `{podSelector: {}, policyTypes: [Egress], ingress: [{}]}`, wantEg: true},
		{name: "both, no rules", spec: `{podSelector: {}, policyTypes: [Egress, Ingress]}`, wantIngress: true, wantEg: true},
		{name: "repeated entry", spec: `{podSelector: {}, policyTypes: [Egress, Egress]}`, wantEg: true},
		{
			name: "unsupported entry: error on the first, valid entries still count",
			spec: `{podSelector: {}, policyTypes: [ingress, Egress, Bogus]}`, wantEg: true,
			wantErr: `spec.policyTypes[0]: unsupported value "ingress" (want "Ingress" or "Egress")`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var spec networkingv1.NetworkPolicySpec
			if err := yaml.UnmarshalStrict([]byte(tc.spec), &spec); err != nil {
				t.Fatalf("decoding the case: %v", err)
			}
			ingress, egress, err := EffectivePolicyTypes(&spec)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if ingress != tc.wantIngress || egress != tc.wantEg || gotErr != tc.wantErr {
				t.Errorf("EffectivePolicyTypes(%s) = (ingress %v, egress %v, err %q), want (%v, %v, %q)",
					tc.spec, ingress, egress, gotErr, tc.wantIngress, tc.wantEg, tc.wantErr)
			}
		})
	}
}

func TestPolicyTypes(t *testing.T) {
	in, eg := networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress
	for _, tc := range []struct {
		ingress, egress bool
		want            []networkingv1.PolicyType
	}{
		{false, false, nil},
		{true, false, []networkingv1.PolicyType{in}},
		{false, true, []networkingv1.PolicyType{eg}},
		{true, true, []networkingv1.PolicyType{in, eg}},
	} {
		got := PolicyTypes(tc.ingress, tc.egress)
		if !slices.Equal(got, tc.want) {
			t.Errorf("PolicyTypes(%v, %v) = %v, want %v", tc.ingress, tc.egress, got, tc.want)
		}
		// Round trip: the explicit list means what it was made from.
		spec := networkingv1.NetworkPolicySpec{PolicyTypes: got}
		if ingress, egress, err := EffectivePolicyTypes(&spec); len(got) > 0 && (err != nil || ingress != tc.ingress || egress != tc.egress) {
			t.Errorf("EffectivePolicyTypes(PolicyTypes(%v, %v)) = %v, %v, %v", tc.ingress, tc.egress, ingress, egress, err)
		}
	}
}
