package normalize_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	extv1beta1 "k8s.io/api/extensions/v1beta1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
)

// FuzzNetworkPolicy decodes arbitrary JSON as a NetworkPolicy of both API
// versions and normalizes it. Properties: no panic; normalizing twice gives
// the same policy; the extensions/v1beta1 decoding of the same bytes gives
// the same answer as networking.k8s.io/v1 (same policy but for APIVersion,
// or an error for both); an accepted policy holds only masked CIDRs with
// exceptions inside them, ports in 1..65535 and ranges with endPort > port.
//
//	go test ./pkg/normalize -run '^$' -fuzz '^FuzzNetworkPolicy$' -fuzztime 30s
func FuzzNetworkPolicy(f *testing.F) {
	for _, s := range []string{
		`{"metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{}}}`,
		`{"metadata":{"name":"p"},"spec":{"podSelector":{"matchLabels":{"app":"web"}},"policyTypes":["Ingress","Egress"],` +
			`"ingress":[{"from":[{"podSelector":{"matchExpressions":[{"key":"tier","operator":"In","values":["a","b"]}]}},` +
			`{"namespaceSelector":{"matchLabels":{"team":"red"}},"podSelector":{}}],"ports":[{"port":80},{"protocol":"udp","port":"53"},{"port":"http"},{"port":80,"endPort":90}]}],` +
			`"egress":[{"to":[{"ipBlock":{"cidr":"10.0.0.0/8","except":["10.1.0.0/16"]}}]}]}}`,
		`{"metadata":{"name":"cidr"},"spec":{"podSelector":{},"ingress":[{"from":[{"ipBlock":{"cidr":"10.0.0.1/8","except":["10.1.0.0/16"]}},{"ipBlock":{"cidr":"fd00:0::1/64"}},{"ipBlock":{"cidr":"010.0.0.0/8"}}]}]}}`,
		`{"metadata":{"name":"ports"},"spec":{"podSelector":{},"ingress":[{"ports":[{"port":0},{"port":65536},{"port":80,"endPort":70},{"port":"http","endPort":90},{"protocol":"ICMP"}]}]}}`,
		`{"metadata":{"name":"sel"},"spec":{"podSelector":{"matchExpressions":[{"key":"a","operator":"Exists","values":["x"]},{"key":"","operator":"In"}]}}}`,
		`{"metadata":{"name":"types"},"spec":{"podSelector":{},"policyTypes":["Egress","Egress","ingress"]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v1 networkingv1.NetworkPolicy
		if json.Unmarshal(data, &v1) != nil {
			return
		}
		p1, err1 := normalize.NetworkPolicyV1(&v1)
		p2, err2 := normalize.NetworkPolicyV1(&v1)
		if fmt.Sprint(err1) != fmt.Sprint(err2) || !reflect.DeepEqual(p1, p2) {
			t.Fatalf("two normalizations differ:\n%#v %v\n%#v %v", p1, err1, p2, err2)
		}
		var beta extv1beta1.NetworkPolicy
		if json.Unmarshal(data, &beta) == nil {
			pb, errb := normalize.NetworkPolicyV1beta1(&beta)
			if (errb == nil) != (err1 == nil) {
				t.Fatalf("v1 error %v, v1beta1 error %v for the same spec", err1, errb)
			}
			if errb == nil {
				pb.APIVersion = p1.APIVersion
				if !reflect.DeepEqual(p1, pb) {
					t.Fatalf("v1 and v1beta1 give different policies:\n%#v\n%#v", p1, pb)
				}
			}
		}
		if err1 != nil {
			return
		}
		for _, d := range []model.Direction{model.Ingress, model.Egress} {
			for i, r := range p1.Rules(d) {
				for _, peer := range r.Peers {
					if b := peer.IPBlock; b != nil {
						if b.CIDR != b.CIDR.Masked() {
							t.Errorf("%s rule %d: CIDR %s is not masked", d, i, b.CIDR)
						}
						for _, e := range b.Except {
							if e != e.Masked() || !b.CIDR.Contains(e.Addr()) || e.Bits() < b.CIDR.Bits() {
								t.Errorf("%s rule %d: except %s is not a masked prefix inside %s", d, i, e, b.CIDR)
							}
						}
					}
				}
				for _, ps := range r.Ports {
					if ps.Port < 0 || ps.Port > 65535 || (ps.Port == 0 && ps.EndPort != 0) {
						t.Errorf("%s rule %d: port %d..%d out of range", d, i, ps.Port, ps.EndPort)
					}
					if ps.EndPort != 0 && (ps.EndPort <= ps.Port || ps.EndPort > 65535 || ps.Name != "") {
						t.Errorf("%s rule %d: bad range %d..%d (name %q)", d, i, ps.Port, ps.EndPort, ps.Name)
					}
					if _, err := model.ParseProtocol(string(ps.Protocol)); err != nil {
						t.Errorf("%s rule %d: protocol %q", d, i, ps.Protocol)
					}
				}
			}
		}
	})
}
