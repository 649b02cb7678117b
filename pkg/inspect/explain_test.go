package inspect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// extraPolicies add an egress policy to the seed: frontend may reach db on
// 6379 and 203.0.113.0/24 on UDP 53 (except .128/25), nothing else; and two
// Services: "empty" without endpoints, "far" (internalTrafficPolicy Local)
// with its only endpoint on node-2; and a pod of node-1 that the tests on
// OVS leave without a port ("late").
const extraPolicies = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: frontend-egress
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: frontend
  policyTypes: [Egress]
  egress:
  - to:
    - podSelector:
        matchLabels:
          role: db
    ports:
    - port: 6379
  - to:
    - ipBlock:
        cidr: 203.0.113.0/24
        except: [203.0.113.128/25]
    ports:
    - protocol: UDP
      port: 53
---
apiVersion: v1
kind: Pod
metadata: {name: late, namespace: default, uid: uid-late, labels: {role: late}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.13, podIPs: [{ip: 10.244.1.13}]}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: default}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: far, namespace: default}
spec:
  clusterIP: 10.96.0.21
  internalTrafficPolicy: Local
  ports: [{name: http, port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: far-1
  namespace: default
  labels: {kubernetes.io/service-name: far}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints:
- addresses: ["10.244.2.20"]
  conditions: {ready: true}
  nodeName: node-2
`

// seedObjects loads examples/seed plus extraPolicies.
func seedObjects(t *testing.T) *manifest.Objects {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"namespace.yaml", "pods.yaml", "policy.yaml", "service.yaml"} {
		b, err := os.ReadFile(filepath.Join("../../examples/seed", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "extra.yaml"), []byte(extraPolicies), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, err := manifest.Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestExplainModel(t *testing.T) {
	e, _, err := NewExplainer(seedObjects(t), model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, from, to string
		proto          model.Protocol
		port           int32
		allowed        bool
		// what the egress and ingress decisions must say
		egressPolicy, ingressPolicy string
		egressRule, ingressRule     int
		egressIsolatedBy            string
		ingressIsolatedBy           string
		service                     string
		paths                       int
	}{
		{name: "frontend to db on 6379: both sides allow", from: "default/frontend", to: "default/db", proto: model.TCP, port: 6379, allowed: true,
			egressPolicy: "default/frontend-egress", egressRule: 0, ingressPolicy: "default/test-network-policy", ingressRule: 0, paths: 1},
		{name: "backend to db: db isolated", from: "default/backend", to: "10.244.1.10", proto: model.TCP, port: 6379,
			ingressIsolatedBy: "namespace default is annotated DefaultDeny,policy default/test-network-policy", paths: 1},
		{name: "frontend to db on 80: both isolate", from: "default/frontend", to: "default/db", proto: model.TCP, port: 80,
			egressIsolatedBy: "policy default/frontend-egress", ingressIsolatedBy: "namespace default is annotated DefaultDeny,policy default/test-network-policy", paths: 1},
		{name: "client of myproject to db", from: "myproject/client", to: "default/db", proto: model.TCP, port: 6379, allowed: true,
			ingressPolicy: "default/test-network-policy", paths: 1},
		{name: "frontend to the outside on UDP 53 (ipBlock)", from: "default/frontend", to: "203.0.113.5", proto: model.UDP, port: 53, allowed: true,
			egressPolicy: "default/frontend-egress", egressRule: 1, paths: 1},
		{name: "frontend to an excepted address", from: "default/frontend", to: "203.0.113.200", proto: model.UDP, port: 53,
			egressIsolatedBy: "policy default/frontend-egress", paths: 1},
		{name: "node-1 to db: node-local", from: "172.18.0.1", to: "default/db", proto: model.TCP, port: 80, allowed: true, paths: 1},
		{name: "frontend to the db Service: one backend, allowed", from: "default/frontend", to: "10.96.0.10", proto: model.TCP, port: 6379, allowed: true,
			egressPolicy: "default/frontend-egress", ingressPolicy: "default/test-network-policy", service: "default/db", paths: 1},
		{name: "backend to the db Service: its backend denies", from: "default/backend", to: "10.96.0.10", proto: model.TCP, port: 6379,
			ingressIsolatedBy: "namespace default is annotated DefaultDeny,policy default/test-network-policy", service: "default/db", paths: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x, err := e.Explain(c.from, c.to, c.proto, c.port)
			if err != nil {
				t.Fatal(err)
			}
			if x.Allowed != c.allowed || len(x.Paths) != c.paths {
				t.Fatalf("allowed %v with %d paths, want %v, %d: %+v", x.Allowed, len(x.Paths), c.allowed, c.paths, x.Paths)
			}
			if (x.Service != nil) != (c.service != "") || x.Service != nil && x.Service.Service != c.service {
				t.Fatalf("service %+v, want %q", x.Service, c.service)
			}
			p := x.Paths[0]
			if p.Egress.Policy != c.egressPolicy || p.Ingress.Policy != c.ingressPolicy ||
				c.egressPolicy != "" && p.Egress.Rule != c.egressRule || c.ingressPolicy != "" && p.Ingress.Rule != c.ingressRule {
				t.Fatalf("deciding rules: egress %s rule %d, ingress %s rule %d", p.Egress.Policy, p.Egress.Rule, p.Ingress.Policy, p.Ingress.Rule)
			}
			if got := strings.Join(p.Egress.IsolatedBy, ","); got != c.egressIsolatedBy && !p.Egress.Allowed {
				t.Fatalf("egress isolated by %q, want %q", got, c.egressIsolatedBy)
			}
			if got := strings.Join(p.Ingress.IsolatedBy, ","); got != c.ingressIsolatedBy && !p.Ingress.Allowed {
				t.Fatalf("ingress isolated by %q, want %q", got, c.ingressIsolatedBy)
			}
		})
	}
}

func TestExplainRefusesBadEndpoints(t *testing.T) {
	e, _, err := NewExplainer(seedObjects(t), model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ from, to, want string }{
		{"default/nope", "default/db", "no pod default/nope"},
		{"default/db", "not-an-address", "neither NAMESPACE/POD nor an IP"},
		{"10.96.0.10", "default/db", "Service's cluster IP"},
		{"default/db", "default/db", "same endpoint"},
		{"default/db", "fe80::1%eth0", "neither NAMESPACE/POD nor an IP"},
		{"default/db", "2001:db8::1", "no address of the family"},
		{"default/db\n", "default/frontend", `"default/db\n"`},
	}
	for _, c := range cases {
		_, err := e.Explain(c.from, c.to, model.TCP, 80)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Explain(%q, %q): error %v, want one containing %q", c.from, c.to, err, c.want)
		}
	}
	if _, err := e.Explain("default/frontend", "default/db", model.TCP, 0); err == nil {
		t.Error("port 0 accepted")
	}
}

func TestVerifyProbes(t *testing.T) {
	e, _, err := NewExplainer(seedObjects(t), model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range VerifyProbes(e.Cluster) {
		got = append(got, p.String())
	}
	want := "TCP/53 TCP/6379 TCP/54321 UDP/53 UDP/6379 UDP/54321"
	if strings.Join(got, " ") != want {
		t.Fatalf("probes %q, want %q", got, want)
	}
}

// A port range is probed at both ends and just outside them: a range the
// bridge matches one port too wide or too narrow is caught.
func TestVerifyProbesOfARange(t *testing.T) {
	c := &model.Cluster{Policies: map[string]*model.Policy{"a/r": {Namespace: "a", Name: "r", Ingress: []model.Rule{
		{Ports: []model.PortSpec{{Protocol: model.TCP, Port: 8080, EndPort: 8090}}},
		{Ports: []model.PortSpec{{Protocol: model.UDP, Port: 1, EndPort: 10}}},
	}}}}
	var got []string
	for _, p := range VerifyProbes(c) {
		got = append(got, p.String())
	}
	want := "TCP/1 TCP/10 TCP/11 TCP/8079 TCP/8080 TCP/8090 TCP/8091 TCP/54321 UDP/1 UDP/10 UDP/11 UDP/8079 UDP/8080 UDP/8090 UDP/8091 UDP/54321"
	if strings.Join(got, " ") != want {
		t.Fatalf("probes %q, want %q", got, want)
	}
}

// A host-network pod's connections are its node's: explain answers for the
// node instead of refusing the pod.
func TestExplainFromHostNetworkPod(t *testing.T) {
	objs := seedObjects(t)
	more := manifestObjects(t, `
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: kube-system, uid: uid-agent}
spec: {nodeName: node-1, hostNetwork: true, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 172.18.0.1, podIPs: [{ip: 172.18.0.1}]}
`)
	objs.Pods = append(objs.Pods, more.Pods...)
	e, _, err := NewExplainer(objs, model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	x, err := e.Explain("kube-system/agent", "default/db", model.TCP, 80)
	if err != nil {
		t.Fatal(err)
	}
	if x.From.Kind != "node" || x.From.Node != "node-1" || x.From.IP.String() != "172.18.0.1" || !x.Allowed {
		t.Fatalf("from %+v, allowed %v: want node-1's host (172.18.0.1), allowed as node-local", x.From, x.Allowed)
	}
}
