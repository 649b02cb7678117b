package manifest

import (
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// TestFileValidation: what the file path accepts and refuses beyond the
// API-server differential test (internal/k8stest): the Kubernetes 1.6 forms that
// extensions/v1beta1 manifests keep, the API server's defaults, kinds of
// other groups, and messages that stay on one line.
func TestFileValidation(t *testing.T) {
	const beta = "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: "
	const v1 = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: "
	for _, tc := range []struct {
		name, doc   string
		wantErr     string // "" accepted
		wantWarning string
	}{
		{name: "v1beta1 lower-case protocol and port string (1.6 forms)",
			doc: beta + "{podSelector: {}, ingress: [{ports: [{protocol: tcp, port: \"6379\"}]}]}"},
		{name: "v1beta1 CIDR with host bits (1.6 meant the prefix)",
			doc: beta + "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.1/8, except: [10.1.0.1/16]}}]}]}"},
		{name: "v1beta1 IPv4-mapped CIDR is still refused",
			doc:     beta + "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: \"::ffff:10.0.0.0/104\"}}]}]}",
			wantErr: `ipBlock.cidr: Invalid value: "::ffff:10.0.0.0/104": must not have an IPv4-mapped IPv6 address`},
		{name: "v1beta1 bad name refused",
			doc:     "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: \"p\\n#\", namespace: a}\nspec: {podSelector: {}}",
			wantErr: `metadata.name: Invalid value: "p\n#"`},
		{name: "v1 upper-case protocol and number", doc: v1 + "{podSelector: {}, ingress: [{ports: [{protocol: UDP, port: 53}]}]}"},
		{name: "podIP and podIPs[0] differ: podIP wins, as in the API server",
			doc:         "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}]}\nstatus: {podIP: 10.0.0.5, podIPs: [{ip: 10.0.0.6}, {ip: \"fd00::6\"}]}",
			wantWarning: "status.podIP 10.0.0.5 differs from status.podIPs[0] 10.0.0.6: like the API server, ovs-netpol keeps podIP alone"},
		{name: "another vendor's lower-case kind is skipped, not an error",
			doc:         "apiVersion: crd.projectcalico.org/v1\nkind: networkpolicy\nmetadata: {name: p, namespace: a}\nspec: {}",
			wantWarning: "skipped crd.projectcalico.org/v1 networkpolicy"},
		{name: "a core kind that is merely short is not a misspelling",
			doc:         "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: a}",
			wantWarning: "skipped v1 Secret"},
		{name: "misspelled core kind", doc: "apiVersion: v1\nkind: Namespce\nmetadata: {name: a}",
			wantErr: "unknown kind Namespce in v1: did you mean Namespace?"},
		{name: "control characters in a kind stay quoted in the warning",
			doc:         "apiVersion: v1\nkind: \"Pod\\n\"\nmetadata: {name: a}",
			wantWarning: `skipped v1 "Pod\n"`},
		{name: "too many problems are counted, not all listed",
			doc:     "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [" + strings.Repeat("{name: C, image: \" i\"},", 6) + "]}",
			wantErr: "; and 2 more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := Parse("f.yaml", []byte(tc.doc))
			if err == nil {
				_, _, err = o.Cluster(model.ModeV16)
			}
			if tc.wantErr == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v\nwant it to contain %q", err, tc.wantErr)
				}
				if strings.ContainsAny(err.Error(), "\n\r") {
					t.Errorf("error spans lines: %q", err)
				}
				return
			}
			got := strings.Join(o.Warnings, "\n")
			if tc.wantWarning == "" && got != "" || !strings.Contains(got, tc.wantWarning) {
				t.Errorf("warnings = %q, want %q", o.Warnings, tc.wantWarning)
			}
		})
	}
}
