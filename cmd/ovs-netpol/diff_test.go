package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// diffLive is a cluster of two nodes: x/a (app=web) on n1, x/b on n2, and
// the policy x/web admitting x/b to x/a on TCP 80.
func diffLive() []runtime.Object {
	pod := func(name, node, ip string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name, UID: types.UID("uid-" + name), Labels: labels},
			Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "i"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
		}
	}
	tcp := corev1.ProtocolTCP
	port80 := intstr.FromInt32(80)
	return []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{corev1.LabelMetadataName: "x"}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.1.0.2"}}}},
		pod("a", "n1", "10.0.0.1", map[string]string{"app": "web"}),
		pod("b", "n2", "10.0.0.2", map[string]string{"app": "db"}),
		&networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "web"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port80}},
				}},
			},
		},
	}
}

const (
	// webAlso81 widens x/web to TCP 81.
	webAlso81 = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{port: 80}, {port: 81}]
`
	webGone = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec: {podSelector: {}}
`
)

func TestRunDiff(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	widen := write("widen.yaml", webAlso81)
	gone := write("gone.yaml", webGone)
	noNamespace := write("nons.yaml", strings.Replace(webAlso81, "namespace: x", "", 1))
	badPort := write("bad.yaml", strings.Replace(webAlso81, "port: 81", "port: 70000", 1))
	noBridge := t.TempDir()

	cases := []struct {
		name      string
		o         diffOptions
		namespace string // -n
		contextNS string // the kubeconfig context's namespace
		explicit  bool   // --ovs-rundir given
		wantErr   string
		// check the JSON (or text) output
		wantJSON func(t *testing.T, rep diffReport)
		wantText []string
	}{
		{name: "bad -o", o: diffOptions{files: []string{widen}, output: "yaml"}, wantErr: "-o yaml: want text or json"},
		{name: "bad --external-ip", o: diffOptions{files: []string{widen}, external: []string{"10.0.0"}}, wantErr: "--external-ip 10.0.0: not an IP address"},
		{name: "a file kube-apiserver would refuse", o: diffOptions{files: []string{badPort}}, wantErr: "bad.yaml"},
		{name: "-n with an object in default", o: diffOptions{files: []string{noNamespace}}, namespace: "prod", wantErr: "is in namespace default while the namespace of -n or the kubeconfig context is prod"},
		{name: "the context's namespace with an object in default", o: diffOptions{files: []string{noNamespace}}, contextNS: "team-a", wantErr: "kubeconfig context is team-a"},
		{name: "an explicit run directory without OVSDB", o: diffOptions{files: []string{widen}}, explicit: true, wantErr: "db.sock"},
		{
			name: "widen: every node with pods, default bindings",
			o:    diffOptions{files: []string{widen}, output: "json"},
			wantJSON: func(t *testing.T, rep diffReport) {
				if len(rep.Connections) != 1 || rep.Connections[0].From.Name != "x/b" || rep.Connections[0].To.Name != "x/a" ||
					rep.Connections[0].Ports.String() != "TCP/81" || !rep.Connections[0].Opens || strings.Join(rep.Connections[0].Causes, ",") != "x/web" {
					t.Fatalf("connections: %+v", rep.Connections)
				}
				if len(rep.Nodes) != 2 || rep.Nodes[0].Node != "n1" || rep.Nodes[1].Node != "n2" || rep.Nodes[0].Bindings != "default" {
					t.Fatalf("nodes: %+v", rep.Nodes)
				}
				// n1 (x/a's node) gains the TCP 81 clause; n2 has no target of x/web.
				if len(rep.Nodes[0].Flows) == 0 || len(rep.Nodes[1].Flows) != 0 {
					t.Fatalf("flows: n1 %d, n2 %d", len(rep.Nodes[0].Flows), len(rep.Nodes[1].Flows))
				}
				for _, f := range rep.Nodes[0].Flows {
					if !f.Added || !strings.Contains(f.Origin, "policy x/web ingress rule 0") {
						t.Fatalf("flow %+v", f)
					}
				}
			},
		},
		{
			name: "--node and the text output",
			o:    diffOptions{files: []string{widen}, node: "n1", output: "text"},
			wantText: []string{
				"NetworkPolicy x/web changed",
				"Connections that open (1) or close (0), counted per pair and port class; new connections checked on TCP/80 TCP/81 TCP/other UDP/other SCTP/other:",
				"  by NetworkPolicy x/web:\n    opens  x/b -> x/a  TCP/81\n",
				"Flows of node n1 (ports numbered as compile numbers them): 1 added, 0 removed",
				"  # policy x/web ingress rule 0",
				"  + table=40,",
			},
		},
		{
			name: "--delete opens what the policy isolated, also from the other node and an external address",
			o:    diffOptions{files: []string{}, deletes: []string{gone}, node: "n1", external: []string{"192.0.2.1"}, output: "text"},
			wantText: []string{
				"NetworkPolicy x/web deleted",
				"    opens  192.0.2.1 -> x/a  TCP/80 TCP/other UDP/other SCTP/other\n",
				"    opens  node n2   -> x/a  TCP/80 TCP/other UDP/other SCTP/other\n",
				"    opens  x/b       -> x/a  TCP/other UDP/other SCTP/other\n",
				"0 added, ",
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// No kubeconfig file: -n alone names the namespace.
			cluster.namespace, cluster.kubeconfig = c.namespace, filepath.Join(dir, "no-kubeconfig")
			if c.contextNS != "" {
				cluster.kubeconfig = write("kubeconfig", `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: ctx, context: {cluster: c, user: u, namespace: `+c.contextNS+`}}]
current-context: ctx
`)
			}
			t.Cleanup(func() { cluster.namespace, cluster.kubeconfig = "", "" })
			o := c.o
			if o.output == "" {
				o.output = "json"
			}
			o.bridgeName, o.runDir = "br-int", noBridge
			client := fake.NewClientset(diffLive()...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			err := runDiff(ctx, o, func() (kubernetes.Interface, error) { return client, nil }, c.explicit, &stdout, &stderr)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one with %q", err, c.wantErr)
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.wantJSON != nil {
				if strings.Contains(stdout.String(), "null") {
					t.Fatalf("null in the JSON (empty lists are []):\n%s", stdout.String())
				}
				var rep diffReport
				if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
					t.Fatalf("%v\n%s", err, stdout.String())
				}
				c.wantJSON(t, rep)
			}
			t.Logf("output:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			for _, w := range c.wantText {
				if !strings.Contains(stdout.String(), w) {
					t.Fatalf("no %q in:\n%s", w, stdout.String())
				}
			}
		})
	}
}
