package main

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
)

// Names that end a comment line in an ovs-ofctl bundle file and go on as a
// flow, each with its own line break (LF, CR, CR LF, U+2028, NEL) and a
// priority that gives it away when installed.
var hostileNames = []string{
	"a\ntable=0,priority=65535,actions=NORMAL\n#",
	"b\rflow add table=0,priority=65534,actions=NORMAL\r#",
	"c\r\nflow add table=0,priority=65533,actions=NORMAL\r\n#",
	"d\u2028flow add table=0,priority=65532,actions=NORMAL",
	"e\u0085flow add table=0,priority=65531,actions=NORMAL\x00",
}

// hostileCluster: pods, a namespace and policies with hostile names, built
// through package normalize as the agent builds them from informers (which
// checks no names: the API server did), so file validation is not what
// keeps the flows out.
func hostileCluster(t *testing.T) *model.Cluster {
	t.Helper()
	c := model.NewCluster(model.ModeV1)
	ns, _ := normalize.Namespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hostileNames[1]}})
	c.AddNamespace(ns)
	c.AddNamespace(&model.Namespace{Name: "default", Labels: map[string]string{}})
	for i, name := range hostileNames {
		namespace := "default"
		if i == 1 {
			namespace = hostileNames[1]
		}
		p, err := normalize.Pod(&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, UID: types.UID(fmt.Sprint("uid-", i)), Labels: map[string]string{"app": "x"}},
			Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c", Image: "i", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.244.1.%d", 10+i), PodIPs: []corev1.PodIP{{IP: fmt.Sprintf("10.244.1.%d", 10+i)}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		c.AddPod(p)
		http := intstrName("http")
		np, err := normalize.NetworkPolicyV1(&networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			Spec: networkingv1.NetworkPolicySpec{
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: &http}},
				}},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		c.AddPolicy(np)
	}
	return c
}

var (
	cookieRE   = regexp.MustCompile(`\bcookie=(0x[0-9a-f]+)`)
	tableRE    = regexp.MustCompile(`\btable=(\d+)`)
	priorityRE = regexp.MustCompile(`\bpriority=(\d+)`)
)

// flowKey is what identifies a flow in both the compiled and the dumped
// text: table (dump-flows leaves out table 0), priority and cookie.
func flowKey(line string) string {
	table := "0"
	if m := tableRE.FindStringSubmatch(line); m != nil {
		table = m[1]
	}
	p, c := priorityRE.FindStringSubmatch(line), cookieRE.FindStringSubmatch(line)
	if p == nil || c == nil {
		return "unparsed: " + line
	}
	return table + "/" + p[1] + "/" + c[1]
}

// TestHostileNamesStayInComments: compile output for hostile names has only
// '#' comment lines, "group add" and "flow add" lines, and a real OVS
// installs exactly the compiled flows from it (ovs-ofctl bundle reads the
// file line by line, as the agent's and users' installs do).
func TestHostileNamesStayInComments(t *testing.T) {
	c := hostileCluster(t)
	cfg, err := compiler.NodeFlags{Node: "node-1", CTZone: 64000, GatewayPort: "LOCAL"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Bindings = compiler.DefaultBindings(c, "node-1", nil, cfg.GatewayPort)
	res, err := compiler.Compile(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	text := res.Text(true)

	// ovs-ofctl splits lines at '\n'; a stray '\r' or other control
	// character is refused by this test as well.
	var compiled []string
	comments := 0
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "#"):
			comments++
		case strings.HasPrefix(line, "flow add "):
			compiled = append(compiled, flowKey(line))
		case strings.HasPrefix(line, "group add "):
		default:
			t.Errorf("line %d is neither a comment nor a group or flow: %q", i+1, line)
		}
		for _, r := range line {
			if r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 {
				t.Errorf("line %d holds control character %U: %q", i+1, r, line)
				break
			}
		}
	}
	for _, name := range hostileNames {
		if !strings.Contains(text, fmt.Sprintf("%q", name)[1:len(fmt.Sprintf("%q", name))-1]) {
			t.Errorf("the comments do not name %q (escaped)", name)
		}
	}

	sw := ovstest.Start(t)
	if err := sw.AddBridge("br-int"); err != nil {
		t.Fatal(err)
	}
	if err := sw.InstallBundle("br-int", text); err != nil {
		t.Fatalf("ovs-ofctl bundle refused the compile output: %v", err)
	}
	dumped, err := sw.DumpFlows("br-int", true)
	if err != nil {
		t.Fatal(err)
	}
	var installed []string
	for _, f := range dumped {
		installed = append(installed, flowKey(f))
		if strings.Contains(f, "priority=6553") {
			t.Errorf("an injected flow was installed: %s", f)
		}
	}
	sort.Strings(compiled)
	sort.Strings(installed)
	if strings.Join(compiled, "\n") != strings.Join(installed, "\n") {
		t.Errorf("installed flows differ from the compiled ones: %d compiled, %d installed\ncompiled: %q\ninstalled: %q", len(compiled), len(installed), compiled, installed)
	}
	t.Logf("%d comment lines, %d flows compiled, %d installed (table/priority/cookie identical)", comments, len(compiled), len(installed))
}

func intstrName(name string) intstr.IntOrString { return intstr.FromString(name) }
