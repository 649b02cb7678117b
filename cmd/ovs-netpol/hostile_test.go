package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A node, and two running pods of node-1 with different addresses.
const hostileBase = `apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 172.18.0.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: default}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.5}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: default}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.6, podIPs: [{ip: 10.244.1.6}]}
`

func policyDoc(name, spec string) string {
	return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name + ", namespace: default}\nspec: " + spec + "\n"
}

func podDoc(name, node, ip, phase string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + ", namespace: default}\nspec: {nodeName: " + node +
		", containers: [{name: c, image: i}]}\nstatus: {phase: " + phase + ", podIP: " + ip + ", podIPs: [{ip: " + ip + "}]}\n"
}

// TestCompileRefusesHostileInput: every input of issue 10 that compile used
// to accept (flows injected through names, a policy silently not enforced,
// a pod's flows silently replaced, ...) is now an error naming the problem.
func TestCompileRefusesHostileInput(t *testing.T) {
	for _, tc := range []struct {
		name    string
		docs    []string // appended to hostileBase
		ports   string   // --ports file content
		flags   func(*compileOptions)
		wantErr string
	}{
		{name: "pod name with a flow in it",
			docs:    []string{"apiVersion: v1\nkind: Pod\nmetadata:\n  name: \"a\\ntable=0,priority=65535,actions=NORMAL\\n#\"\n  namespace: default\nspec: {nodeName: node-1, containers: [{name: c, image: i}]}\n"},
			wantErr: `document 4 ("Pod default/a\ntable=0,priority=65535,actions=NORMAL\n#"): invalid (the API server refuses it): metadata.name: Invalid value: "a\ntable=0,priority=65535,actions=NORMAL\n#": a lowercase RFC 1123 subdomain`},
		{name: "policy name with a flow in it",
			docs:    []string{"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: \"p\\nflow add table=0,priority=65535,actions=NORMAL\\n#\"\n  namespace: default\nspec: {podSelector: {}}\n"},
			wantErr: `metadata.name: Invalid value: "p\nflow add table=0,priority=65535,actions=NORMAL\n#"`},
		{name: "namespace name with a carriage return",
			docs:    []string{"apiVersion: v1\nkind: Namespace\nmetadata: {name: \"x\\ry\"}\n"},
			wantErr: `metadata.name: Invalid value: "x\ry": a lowercase RFC 1123 label`},
		{name: "label key with a line break",
			docs:    []string{"apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {\"a\\nb\": c}}\n"},
			wantErr: `metadata.labels: Invalid value: "a\nb": name part must consist of alphanumeric characters`},
		{name: "5 MB label value",
			docs:    []string{"apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {a: " + strings.Repeat("v", 5<<20) + "}}\n"},
			wantErr: `metadata.labels: Invalid value: "` + strings.Repeat("v", 64) + `... (5242880 bytes)": must be no more than 63 bytes`},
		{name: "64-character policy name is fine but 254 is not",
			docs:    []string{policyDoc(strings.Repeat("p", 254), "{podSelector: {}}")},
			wantErr: `metadata.name: Invalid value: "` + strings.Repeat("p", 64) + `... (254 bytes)": must be no more than 253 characters`},
		{name: "misspelled kind: policy not enforced",
			docs:    []string{"apiVersion: networking.k8s.io/v1\nkind: networkpolicy\nmetadata: {name: p, namespace: default}\nspec: {podSelector: {}}\n"},
			wantErr: `document 4 (networkpolicy default/p): unknown kind networkpolicy in networking.k8s.io/v1: did you mean NetworkPolicy?`},
		{name: "misspelled kind: typo",
			docs:    []string{"apiVersion: networking.k8s.io/v1\nkind: NetworkPolcy\nmetadata: {name: p, namespace: default}\nspec: {podSelector: {}}\n"},
			wantErr: `did you mean NetworkPolicy?`},
		{name: "misspelled list kind",
			docs:    []string{"apiVersion: v1\nkind: podList\nitems: []\n"},
			wantErr: `unknown kind podList in v1: did you mean PodList?`},
		{name: "lower-case protocol in v1",
			docs:    []string{policyDoc("p", "{podSelector: {}, ingress: [{ports: [{protocol: tcp, port: 80}]}]}")},
			wantErr: `spec.ingress[0].ports[0].protocol: Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"`},
		{name: "port number as a string in v1",
			docs:    []string{policyDoc("p", "{podSelector: {}, ingress: [{ports: [{port: \"80\"}]}]}")},
			wantErr: `spec.ingress[0].ports[0].port: Invalid value: "80": must contain at least one letter (a-z)`},
		{name: "CIDR with host bits",
			docs:    []string{policyDoc("p", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.1/24}}]}]}")},
			wantErr: `spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.1/24": must not have bits set beyond the prefix length`},
		{name: "IPv4-mapped IPv6 CIDR",
			docs:    []string{policyDoc("p", "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: \"::ffff:10.0.0.0/104\"}}]}]}")},
			wantErr: `spec.egress[0].to[0].ipBlock.cidr: Invalid value: "::ffff:10.0.0.0/104": must not have an IPv4-mapped IPv6 address`},
		{name: "CIDR with leading zeros",
			docs:    []string{policyDoc("p", "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 010.0.0.0/8}}]}]}")},
			wantErr: `"010.0.0.0/8": must not have leading 0s`},
		{name: "endPort below port",
			docs:    []string{policyDoc("p", "{podSelector: {}, ingress: [{ports: [{port: 90, endPort: 80}]}]}")},
			wantErr: `spec.ingress[0].ports[0].endPort: Invalid value: 80: must be greater than or equal to` + " `port`"},
		{name: "16-character named port",
			docs:    []string{policyDoc("p", "{podSelector: {}, ingress: [{ports: [{port: abcdefghijklmnop}]}]}")},
			wantErr: `spec.ingress[0].ports[0].port: Invalid value: "abcdefghijklmnop": must be no more than 15 characters`},
		{name: "pod IP with leading zeros",
			docs:    []string{podDoc("c", "node-1", "10.244.1.07", "Running")},
			wantErr: `status.podIPs[0]: Invalid value: "10.244.1.07": must not have leading 0s`},
		{name: "duplicate pod IP among running pods",
			docs:    []string{podDoc("c", "node-2", "10.244.1.5", "Running")},
			wantErr: `(Pod default/c): pod IP 10.244.1.5 is also the IP of pod default/a`},
		{name: "duplicate pod IP of a pending pod",
			docs:    []string{podDoc("c", "node-1", "10.244.1.6", "Pending")},
			wantErr: `pod IP 10.244.1.6 is also the IP of pod default/b`},
		{name: "--ports line naming no pod",
			ports:   "default/a 10 0a:58:0a:f4:01:05\ndefault/gone 11 0a:58:0a:f4:01:09\n",
			wantErr: `ports.txt: pod default/gone (port 11) is not in the input`},
		{name: "--ports line naming a pod of another node",
			docs:    []string{podDoc("c", "node-2", "10.244.2.5", "Running")},
			ports:   "default/c 11 0a:58:0a:f4:02:05\n",
			wantErr: `ports.txt: pod default/c (port 11) runs on node node-2, not on node-1`},
		{name: "broadcast MAC", ports: "default/a 10 ff:ff:ff:ff:ff:ff\n",
			wantErr: `ports.txt: pod default/a: MAC ff:ff:ff:ff:ff:ff is a multicast or broadcast address`},
		{name: "multicast MAC", ports: "default/a 10 01:00:5e:00:00:01\n",
			wantErr: `MAC 01:00:5e:00:00:01 is a multicast or broadcast address`},
		{name: "zero MAC", ports: "default/a 10 00:00:00:00:00:00\n",
			wantErr: `MAC 00:00:00:00:00:00 is the zero address`},
		{name: "two pods with one MAC", ports: "default/a 10 0a:58:0a:f4:01:06\n",
			wantErr: `pods default/a and default/b both have the MAC 0a:58:0a:f4:01:06`},
		{name: "gateway and uplink on one port",
			flags:   func(o *compileOptions) { o.gateway, o.uplink = "7", "7" },
			wantErr: `--gateway-port and --uplink-port are both port 7`},
		{name: "--node naming nothing",
			flags:   func(o *compileOptions) { o.node = "node-9" },
			wantErr: `--node node-9: no Node object of that name and no pod scheduled on it (spec.nodeName) in the input`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "in.yaml")
			if err := os.WriteFile(in, []byte(strings.Join(append([]string{hostileBase}, tc.docs...), "---\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			o := compileOptions{files: []string{in}, node: "node-1", isolation: "v1", gateway: "LOCAL", ctZone: 64000, comments: true}
			if tc.ports != "" {
				o.ports = filepath.Join(dir, "ports.txt")
				if err := os.WriteFile(o.ports, []byte(tc.ports), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.flags != nil {
				tc.flags(&o)
			}
			var out, errOut bytes.Buffer
			err := runCompile(o, &out, &errOut)
			if err == nil {
				t.Fatalf("compile accepted it; output has %d lines", strings.Count(out.String(), "\n"))
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.wantErr) {
				t.Fatalf("error = %.600s\nwant it to contain %q", msg, tc.wantErr)
			}
			if strings.ContainsAny(msg, "\n\r") || len(msg) > 4096 {
				t.Errorf("error message is %d bytes or spans lines: %.300q", len(msg), msg)
			}
			if out.Len() != 0 {
				t.Errorf("output despite the error: %.200s", out.String())
			}
			t.Logf("error: %.300s", msg)
		})
	}
}

// TestCompileAcceptsEdgeInput: what the API server accepts is accepted,
// with its defaults: the edges of each rule, and a finished pod's address
// reused by a running one.
func TestCompileAcceptsEdgeInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		docs  []string
		ports string
		want  string // in the output
		not   string // not in the output
	}{
		{name: "63-character label value and 253-character policy name",
			docs: []string{policyDoc(strings.Repeat("p", 253), "{podSelector: {matchLabels: {a: "+strings.Repeat("v", 63)+"}}}")}},
		{name: "port 65535, endPort 65535, 15-character named port, SCTP",
			docs: []string{policyDoc("p", "{podSelector: {}, ingress: [{ports: [{port: 65535, endPort: 65535}, {port: abcdefghijklmno}, {protocol: SCTP, port: 1}]}]}")}},
		{name: "IP of a finished pod reused", docs: []string{podDoc("old", "node-1", "10.244.1.5", "Succeeded"), podDoc("older", "node-2", "10.244.1.6", "Failed")},
			want: "nw_src=10.244.1.5"},
		{name: "finished pod bound in --ports keeps its port", docs: []string{podDoc("old", "node-1", "10.244.1.9", "Failed")},
			ports: "default/old 10 0a:58:0a:f4:01:09\n", want: "in_port=12,", not: "in_port=10,"},
		{name: "node known only from a pod", docs: nil, want: "in_port=10,"},
		{name: "namespaceSelector on kubernetes.io/metadata.name selects the namespace",
			docs: []string{policyDoc("p", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}}]}]}")},
			want: "ip,nw_src=10.244.1.6 actions=conjunction("},
		{name: "... also for a namespace only pods name",
			docs: []string{podDoc("c", "node-2", "10.244.2.5", "Running"), "apiVersion: v1\nkind: Pod\nmetadata: {name: d, namespace: implicit}\nspec: {nodeName: node-2, containers: [{name: c, image: i}]}\nstatus: {phase: Running, podIP: 10.244.2.6, podIPs: [{ip: 10.244.2.6}]}\n",
				policyDoc("p", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: implicit}}}]}]}")},
			want: "ip,nw_src=10.244.2.6 actions=conjunction("},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "in.yaml")
			if err := os.WriteFile(in, []byte(strings.Join(append([]string{hostileBase}, tc.docs...), "---\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			o := compileOptions{files: []string{in}, node: "node-1", isolation: "v1", gateway: "LOCAL", ctZone: 64000, comments: true}
			if tc.ports != "" {
				o.ports = filepath.Join(dir, "ports.txt")
				if err := os.WriteFile(o.ports, []byte(tc.ports), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var out, errOut bytes.Buffer
			if err := runCompile(o, &out, &errOut); err != nil {
				t.Fatalf("compile: %v\nstderr: %s", err, errOut.String())
			}
			if tc.want != "" && !strings.Contains(out.String(), tc.want) {
				t.Errorf("output lacks %q", tc.want)
			}
			if tc.not != "" && strings.Contains(out.String(), tc.not) {
				t.Errorf("output has %q", tc.not)
			}
		})
	}
}
