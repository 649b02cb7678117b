package manifest

import (
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/examples/seed"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

func TestClusterSeed(t *testing.T) {
	o, err := Parse("examples/seed.yaml", []byte(seed.Document()+`---
apiVersion: v1
kind: Pod
metadata: {name: db, labels: {role: db}}
spec:
  nodeName: n1
  containers: [{name: redis, image: redis, ports: [{name: redis, containerPort: 6379}]}]
status: {podIP: 10.0.0.5, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: other, uid: "1234", labels: {role: frontend}}
spec: {containers: [{name: web, image: nginx}]}
status: {podIPs: [{ip: 10.0.1.5}, {ip: "fd00::5"}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	c, warnings, err := o.Cluster(model.ModeV16)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("unexpected warnings %q", warnings)
	}
	if got := c.Namespaces["default"]; got == nil || got.LegacyIsolation != model.LegacyDefaultDeny {
		t.Errorf("namespace default = %+v", got)
	}
	if got := c.Namespaces["other"]; got == nil || got.LegacyIsolation != model.LegacyNone || got.Labels == nil {
		t.Errorf("implicit namespace other = %+v", got)
	}
	db := c.Pods["default/db"]
	if db == nil || db.Node != "n1" || !reflect.DeepEqual(db.IPs, []netip.Addr{netip.MustParseAddr("10.0.0.5")}) || db.Ports[0] != (model.ContainerPort{Name: "redis", Port: 6379, Protocol: model.TCP}) {
		t.Errorf("pod db = %+v", db)
	}
	if web := c.Pods["1234"]; web == nil || web.Key() != "other/web" || len(web.IPs) != 2 {
		t.Errorf("pod web = %+v", web)
	}
	p := c.Policies["default/test-network-policy"]
	if p == nil || p.APIVersion != "extensions/v1beta1" || !p.AffectsIngress || p.AffectsEgress || len(p.Ingress) != 1 {
		t.Fatalf("policy = %+v", p)
	}
	r := p.Ingress[0]
	if len(r.Peers) != 2 || len(r.Ports) != 1 || r.Ports[0] != (model.PortSpec{Protocol: model.TCP, Port: 6379}) {
		t.Errorf("rule = %+v", r)
	}
	frontend := &model.Pod{Namespace: "default", Labels: labels.Set{"role": "frontend"}}
	if c.PeerSelects(&r.Peers[1], "default", db) || !c.PeerSelects(&r.Peers[1], "default", frontend) {
		t.Errorf("podSelector peer selects wrongly")
	}
	if isolated, _ := c.Isolated(db, model.Ingress); !isolated {
		t.Error("db must be isolated in v1.6 mode")
	}
}

func TestClusterWarningsAndErrors(t *testing.T) {
	const pol = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s, namespace: %s}\nspec: %s\n"
	policy := func(name, ns, spec string) string {
		return strings.NewReplacer("%s, namespace: %s}", name+", namespace: "+ns+"}", "spec: %s", "spec: "+spec).Replace(pol)
	}
	annotated := func(name, value string) string {
		return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + name + "\n  annotations:\n    net.beta.kubernetes.io/network-policy: '" + value + "'\n"
	}
	tests := []struct {
		name         string
		mode         model.Mode
		docs         []string
		wantWarnings []string
		wantErr      string
	}{
		{
			name: "malformed annotation fails closed with a warning",
			mode: model.ModeV16,
			docs: []string{annotated("a", `{"ingress":{"isolation":"Deny"}}`)},
			wantWarnings: []string{
				`f.yaml: document 1 (Namespace a): namespace a: metadata.annotations[net.beta.kubernetes.io/network-policy]: annotation net.beta.kubernetes.io/network-policy has unknown ingress isolation "Deny"`,
			},
		},
		{
			name:         "legacy annotation in v1 mode",
			mode:         model.ModeV1,
			docs:         []string{annotated("a", `{"ingress":{"isolation":"DefaultDeny"}}`)},
			wantWarnings: []string{`f.yaml: document 1 (Namespace a): annotation net.beta.kubernetes.io/network-policy belongs to the Kubernetes 1.6 design`},
		},
		{
			name: "v1.6: policies without effect, egress ignored",
			mode: model.ModeV16,
			docs: []string{
				annotated("a", `{"ingress":{"isolation":"DefaultDeny"}}`),
				policy("p1", "a", "{podSelector: {}, egress: [{}]}"),
				policy("p2", "b", "{podSelector: {}}"),
				policy("p3", "a", "{podSelector: {}, policyTypes: [Egress]}"),
			},
			wantWarnings: []string{
				`f.yaml: document 2 (NetworkPolicy a/p1): v1.6 mode knows only ingress: the policy's egress part is ignored`,
				`f.yaml: document 4 (NetworkPolicy a/p3): v1.6 mode knows only ingress: the policy's egress part is ignored`,
				`f.yaml: document 4 (NetworkPolicy a/p3): v1.6 mode knows only ingress: the policy is used as an ingress whitelist although its policyTypes does not list Ingress`,
				`f.yaml: document 3 (NetworkPolicy b/p2): has no effect in v1.6 mode: namespace b is not annotated`,
			},
		},
		{
			name: "v1: none of that",
			mode: model.ModeV1,
			docs: []string{policy("p1", "a", "{podSelector: {}, egress: [{}]}"), policy("p2", "b", "{podSelector: {}}")},
		},
		{
			name:    "bad mode",
			mode:    "v2",
			wantErr: `unknown isolation mode "v2"`,
		},
		{
			name:    "bad pod IP",
			mode:    model.ModeV1,
			docs:    []string{"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: 10.0.0.256}\n"},
			wantErr: `f.yaml: document 1 (Pod default/p): status.podIP: invalid IP address "10.0.0.256"`,
		},
		{
			name: "same UID twice",
			mode: model.ModeV1,
			docs: []string{
				"apiVersion: v1\nkind: Pod\nmetadata: {name: p, uid: u1}\n",
				"apiVersion: v1\nkind: Pod\nmetadata: {name: q, uid: u1}\n",
			},
			wantErr: `f.yaml: document 2 (Pod default/q): metadata.uid u1 is also the UID of pod default/p`,
		},
		{
			name:    "bad selector",
			mode:    model.ModeV1,
			docs:    []string{policy("p", "a", "{podSelector: {matchExpressions: [{key: x, operator: Exists, values: [a]}]}}")},
			wantErr: `f.yaml: document 1 (NetworkPolicy a/p): spec.podSelector: `,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := Parse("f.yaml", []byte(strings.Join(tt.docs, "---\n")))
			if err != nil {
				t.Fatal(err)
			}
			_, warnings, err := o.Cluster(tt.mode)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v\nwant it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(warnings) != len(tt.wantWarnings) {
				t.Fatalf("warnings = %q\nwant %q", warnings, tt.wantWarnings)
			}
			for i, w := range tt.wantWarnings {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %d = %q\nwant it to contain %q", i, warnings[i], w)
				}
			}
		})
	}
}

func TestClusterDuplicatesByHand(t *testing.T) {
	// Objects assembled by hand (not through Load) are checked too.
	a, _ := Parse("a.yaml", []byte(ns("x")+"---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}}\n"))
	b, _ := Parse("b.yaml", []byte(ns("x")+"---\napiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}}\n"))
	merged := &Objects{
		Namespaces:      append(a.Namespaces, b.Namespaces...),
		PoliciesV1:      a.PoliciesV1,
		PoliciesV1beta1: b.PoliciesV1beta1,
		Sources:         a.Sources,
	}
	for k, v := range b.Sources {
		merged.Sources[k] = v
	}
	_, _, err := merged.Cluster(model.ModeV1)
	if want := "b.yaml: document 1 (Namespace x): defined twice: also at a.yaml: document 1 (Namespace x)"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
	merged.Namespaces = merged.Namespaces[:1]
	_, _, err = merged.Cluster(model.ModeV1)
	if want := "b.yaml: document 2 (NetworkPolicy x/p): defined twice: also at a.yaml: document 2 (NetworkPolicy x/p)"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
	merged.PoliciesV1beta1 = nil
	c, _, err := merged.Cluster(model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range c.Policies {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if !reflect.DeepEqual(keys, []string{"x/p"}) {
		t.Errorf("policies %v", keys)
	}
}
