package manifest

import (
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
status: {podIP: 10.0.1.5, podIPs: [{ip: 10.0.1.5}, {ip: "fd00::5"}]}
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
			docs:    []string{"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}]}\nstatus: {podIP: 10.0.0.256}\n"},
			wantErr: `f.yaml:1: document 1 (Pod default/p): invalid (the API server refuses it): status.podIPs[0]: Invalid value: "10.0.0.256": must be a valid IP address`,
		},
		{
			name: "same UID twice",
			mode: model.ModeV1,
			docs: []string{
				"apiVersion: v1\nkind: Pod\nmetadata: {name: p, uid: u1}\nspec: {containers: [{name: c, image: i}]}\n",
				"apiVersion: v1\nkind: Pod\nmetadata: {name: q, uid: u1}\nspec: {containers: [{name: c, image: i}]}\n",
			},
			wantErr: `f.yaml: document 2 (Pod default/q): metadata.uid u1 is also the UID of pod default/p`,
		},
		{
			name:    "bad selector",
			mode:    model.ModeV1,
			docs:    []string{policy("p", "a", "{podSelector: {matchExpressions: [{key: x, operator: Exists, values: [a]}]}}")},
			wantErr: `f.yaml:1: document 1 (NetworkPolicy a/p): invalid (the API server refuses it): spec.podSelector.matchExpressions[0].values: Forbidden: may not be specified when`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Validation errors come from Parse, the rest from Cluster.
			var warnings []string
			o, err := Parse("f.yaml", []byte(strings.Join(tt.docs, "---\n")))
			if err == nil {
				_, warnings, err = o.Cluster(tt.mode)
			}
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

func TestClusterServices(t *testing.T) {
	o, err := Parse("svc.yaml", []byte(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: a}
spec:
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00::a"]
  ports: [{name: http, port: 80, targetPort: http}]
  sessionAffinity: ClientIP
  internalTrafficPolicy: Local
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: a}
spec: {type: ExternalName, externalName: example.com}
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: a}
spec: {clusterIP: None}
---
apiVersion: v1
kind: Service
metadata: {name: noip, namespace: a}
spec: {ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSliceList
items:
- metadata: {name: web-1, namespace: a, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  ports: [{name: http, port: 8080}]
  endpoints:
  - {addresses: [10.244.1.5], nodeName: n1}
  - {addresses: [10.244.2.5], nodeName: n2, conditions: {ready: false}}
- metadata: {name: web-2, namespace: a, labels: {kubernetes.io/service-name: web}}
  addressType: IPv6
  ports: [{name: http, port: 8080}]
  endpoints: [{addresses: ["fd00:10:244:1::5"], nodeName: n1}]
- metadata: {name: gone-1, namespace: a, labels: {kubernetes.io/service-name: gone}}
  addressType: IPv4
- metadata: {name: headless-1, namespace: a, labels: {kubernetes.io/service-name: headless}}
  addressType: IPv4
- metadata: {name: fqdn, namespace: a, labels: {kubernetes.io/service-name: ext}}
  addressType: FQDN
  endpoints: [{addresses: [example.com]}]
- metadata: {name: custom, namespace: a}
  addressType: IPv4
  endpoints: [{addresses: [10.0.0.1]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	c, warnings, err := o.Cluster(model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	wantWarnings := []string{
		"svc.yaml: document 4 (Service a/noip): not load balanced: no spec.clusterIP (the API server allocates one when the Service is created; write it out to balance the Service)",
		"svc.yaml: document 5, item 6 (EndpointSlice a/custom): ignored: no label kubernetes.io/service-name naming a Service: kube-proxy ignores such slices",
	}
	if !reflect.DeepEqual(warnings, wantWarnings) {
		t.Errorf("warnings = %q\nwant       %q", warnings, wantWarnings)
	}
	var services, slices []string
	for k := range c.Services {
		services = append(services, k)
	}
	for k := range c.EndpointSlices {
		slices = append(slices, k)
	}
	sort.Strings(services)
	sort.Strings(slices)
	if want := []string{"a/web"}; !reflect.DeepEqual(services, want) {
		t.Errorf("services = %q, want %q", services, want)
	}
	if want := []string{"a/gone-1", "a/headless-1", "a/web-1", "a/web-2"}; !reflect.DeepEqual(slices, want) {
		t.Errorf("slices = %q, want %q", slices, want)
	}
	web := c.Services["a/web"]
	want := &model.Service{
		Namespace: "a", Name: "web",
		ClusterIPs:      []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00::a")},
		Ports:           []model.ServicePort{{Name: "http", Protocol: model.TCP, Port: 80}},
		AffinitySeconds: 10800, InternalLocal: true,
	}
	if !reflect.DeepEqual(web, want) {
		t.Fatalf("service = %+v\nwant      %+v", web, want)
	}
	var all []*model.EndpointSlice
	for _, k := range slices {
		all = append(all, c.EndpointSlices[k])
	}
	got, h := model.Backends(web, web.Ports[0], false, all, "n1")
	if wantB := []model.Backend{{Address: netip.MustParseAddr("10.244.1.5"), Port: 8080, Node: "n1"}}; h != model.Balance || !reflect.DeepEqual(got, wantB) {
		t.Errorf("IPv4 backends on n1 = %v %v, want %v", got, h, wantB)
	}
	if _, h := model.Backends(web, web.Ports[0], false, all, "n2"); h != model.NoLocalEndpoints {
		t.Errorf("IPv4 on n2: %v, want NoLocalEndpoints", h)
	}
	if got, _ := model.Backends(web, web.Ports[0], true, all, "n1"); len(got) != 1 || got[0].Address != netip.MustParseAddr("fd00:10:244:1::5") {
		t.Errorf("IPv6 backends on n1 = %v", got)
	}
	// Services and slices do not create namespaces.
	if len(c.Namespaces) != 0 {
		t.Errorf("namespaces = %v", c.Namespaces)
	}
}

func TestClusterServiceErrors(t *testing.T) {
	tests := []struct {
		name, doc, wantErr string
	}{
		{
			name:    "lower-case protocol",
			doc:     "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80, protocol: tcp}]}\n",
			wantErr: `f.yaml:1: document 1 (Service default/s): invalid (the API server refuses it): spec.ports[0].protocol: Unsupported value: "tcp"`,
		},
		{
			name:    "bad cluster IP",
			doc:     "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {clusterIP: 10.96.0.01, ports: [{port: 80}]}\n",
			wantErr: `f.yaml: document 1 (Service a/s): spec.clusterIP: invalid IP address "10.96.0.01"`,
		},
		{
			name:    "bad Service name",
			doc:     "apiVersion: v1\nkind: Service\nmetadata: {name: Web}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n",
			wantErr: `f.yaml:1: document 1 (Service default/Web): invalid (the API server refuses it): metadata.name: Invalid value: "Web": a lowercase RFC 1123 label`,
		},
		{
			name:    "IPv6 address in an IPv4 slice",
			doc:     "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e, labels: {kubernetes.io/service-name: s}}\naddressType: IPv4\nendpoints: [{addresses: [\"fd00::1\"]}]\n",
			wantErr: `f.yaml: document 1 (EndpointSlice default/e): endpoints[0].addresses[0]: fd00::1 is not an IPv4 address (addressType IPv4)`,
		},
		{
			name:    "slice without address type",
			doc:     "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: e, namespace: a}}\n",
			wantErr: `f.yaml: document 1, item 1 (EndpointSlice a/e): addressType: required`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := Parse("f.yaml", []byte(tt.doc))
			if err == nil {
				_, _, err = o.Cluster(model.ModeV1)
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestClusterServiceDuplicatesByHand(t *testing.T) {
	const svc = "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: x}\nspec: {clusterIP: None}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: x, labels: {kubernetes.io/service-name: s}}\naddressType: IPv4\n"
	a, errA := Parse("a.yaml", []byte(svc))
	b, errB := Parse("b.yaml", []byte(svc))
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	merged := &Objects{
		Services:       append(a.Services, b.Services...),
		EndpointSlices: append(a.EndpointSlices, b.EndpointSlices...),
		Sources:        a.Sources,
	}
	for k, v := range b.Sources {
		merged.Sources[k] = v
	}
	_, _, err := merged.Cluster(model.ModeV1)
	if want := "b.yaml: document 1 (Service x/s): defined twice: also at a.yaml: document 1 (Service x/s)"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
	merged.Services = merged.Services[:1]
	_, _, err = merged.Cluster(model.ModeV1)
	if want := "b.yaml: document 2 (EndpointSlice x/s): defined twice: also at a.yaml: document 2 (EndpointSlice x/s)"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
	merged.EndpointSlices = merged.EndpointSlices[:1]
	c, warnings, err := merged.Cluster(model.ModeV1)
	if err != nil || len(warnings) != 0 || len(c.Services) != 0 || len(c.EndpointSlices) != 1 {
		t.Errorf("got %v services, %v slices, warnings %q, error %v", c.Services, c.EndpointSlices, warnings, err)
	}
	// Objects built by hand may lack the namespace Load gives them.
	byHand := &Objects{Services: []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []corev1.ServicePort{{Port: 80}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "default"}, Spec: corev1.ServiceSpec{ClusterIP: "None"}},
	}}
	if _, _, err := byHand.Cluster(model.ModeV1); err == nil || !strings.Contains(err.Error(), "Service default/s: defined twice: also at Service /s") {
		t.Errorf("error = %v", err)
	}
}
