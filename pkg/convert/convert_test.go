package convert

import (
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/examples/seed"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

const seedConverted = `# from examples/seed.yaml: document 1; annotation net.beta.kubernetes.io/network-policy removed
apiVersion: v1
kind: Namespace
metadata:
  name: default
---
# replaces the DefaultDeny annotation of namespace default: isolates all its pods for ingress
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
  namespace: default
spec:
  podSelector: {}
  policyTypes:
  - Ingress
---
# converted from extensions/v1beta1 (examples/seed.yaml: document 2)
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          project: myproject
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - port: 6379
      protocol: TCP
  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Ingress
`

func parse(t *testing.T, name, data string) *manifest.Objects {
	t.Helper()
	o, err := manifest.Parse(name, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func cluster(t *testing.T, o *manifest.Objects, mode model.Mode) *model.Cluster {
	t.Helper()
	c, _, err := o.Cluster(mode)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSeed(t *testing.T) {
	in := parse(t, "examples/seed.yaml", seed.Document())
	out, warnings, err := Convert(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("unexpected warnings: %q", warnings)
	}
	if string(out) != seedConverted {
		t.Errorf("output:\n%s\nwant:\n%s", out, seedConverted)
	}

	// The output reads back, with no warnings, into networking.k8s.io/v1
	// objects only, whose rules are those of the v1beta1 policy, plus the
	// deny-all.
	back := parse(t, "converted.yaml", string(out))
	if len(back.Warnings) != 0 || len(back.PoliciesV1beta1) != 0 || len(back.PoliciesV1) != 2 || len(back.Namespaces) != 1 {
		t.Fatalf("read back: %d v1beta1, %d v1 policies, %d namespaces, warnings %q", len(back.PoliciesV1beta1), len(back.PoliciesV1), len(back.Namespaces), back.Warnings)
	}
	old := cluster(t, in, model.ModeV16)
	now := cluster(t, back, model.ModeV1)
	if len(now.Policies) != 2 {
		t.Fatalf("policies: %v", now.Policies)
	}
	key := "default/test-network-policy"
	if a, b := Fingerprint(old.Policies[key]), Fingerprint(now.Policies[key]); a != b {
		t.Errorf("rules changed:\n%s\nbecame\n%s", a, b)
	}
	if now.Policies[key].APIVersion != "networking.k8s.io/v1" {
		t.Errorf("apiVersion %s", now.Policies[key].APIVersion)
	}
	if got, want := Fingerprint(now.Policies["default/default-deny-ingress"]), "default/default-deny-ingress podSelector={} ingress=true egress=false"; got != want {
		t.Errorf("deny-all = %q, want %q", got, want)
	}
	if ns := now.Namespaces["default"]; ns.LegacyIsolation != model.LegacyNone {
		t.Errorf("annotation still there: %+v", ns)
	}

	// Every pod is isolated for ingress in both, for the same reason class.
	for _, labels := range []map[string]string{{"role": "db"}, {"role": "frontend"}, {}} {
		pod := &model.Pod{UID: "u", Namespace: "default", Name: "p", Labels: labels}
		oldIso, _ := old.Isolated(pod, model.Ingress)
		newIso, _ := now.Isolated(pod, model.Ingress)
		if !oldIso || !newIso {
			t.Errorf("pod %v: isolated v1.6=%v v1=%v, want both", labels, oldIso, newIso)
		}
		for _, d := range []model.Direction{model.Egress} {
			if iso, _ := now.Isolated(pod, d); iso {
				t.Errorf("pod %v isolated for egress under v1", labels)
			}
		}
	}
}

func TestConvert(t *testing.T) {
	const deny = `{"ingress":{"isolation":"DefaultDeny"}}`
	nsDoc := func(name, annotation string) string {
		s := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"" + name + "\"\n  labels: {team: a}\n"
		if annotation != "" {
			s += "  annotations:\n    other: keep\n    net.beta.kubernetes.io/network-policy: '" + annotation + "'\n"
		}
		return s
	}
	pol := func(apiVersion, ns, name, spec string) string {
		return "apiVersion: " + apiVersion + "\nkind: NetworkPolicy\nmetadata: {name: " + name + ", namespace: \"" + ns + "\"}\nspec: " + spec + "\n"
	}
	const beta, v1 = "extensions/v1beta1", "networking.k8s.io/v1"
	tests := []struct {
		name         string
		docs         []string
		wantOut      []string // substrings, in order
		notOut       []string
		wantWarnings []string // substrings, in order
		wantErr      string
	}{
		{
			name: "deny-all name taken",
			docs: []string{
				nsDoc("a", deny),
				pol(beta, "a", "default-deny-ingress", "{podSelector: {}}"),
				pol(v1, "a", "default-deny-ingress-2", "{podSelector: {}}"),
			},
			wantOut: []string{
				"name: a\n",
				"name: default-deny-ingress-3\n",
				"name: default-deny-ingress\n",
				"name: default-deny-ingress-2\n",
			},
			notOut:       []string{"net.beta.kubernetes.io/network-policy:"},
			wantWarnings: []string{"f.yaml: document 1 (Namespace a): a policy named default-deny-ingress already exists in namespace a, so the deny-all policy replacing the DefaultDeny annotation is named default-deny-ingress-3"},
		},
		{
			name: "other annotations and labels are kept",
			docs: []string{nsDoc("a", deny)},
			wantOut: []string{
				"metadata:\n  annotations:\n    other: keep\n  labels:\n    team: a\n  name: a\n",
			},
		},
		{
			name:    "malformed annotation",
			docs:    []string{nsDoc("a", deny), nsDoc("b", `{"ingress":{"isolation":"DefaultAllow"}}`)},
			wantErr: `f.yaml: document 2 (Namespace b): annotation net.beta.kubernetes.io/network-policy has unknown ingress isolation "DefaultAllow"`,
		},
		{
			name:    "annotation that is not JSON",
			docs:    []string{nsDoc("b", `DefaultDeny`)},
			wantErr: `convert refuses to guess`,
		},
		{
			name: "policies in namespaces that were not isolated start to isolate",
			docs: []string{
				nsDoc("open", ""),
				nsDoc("closed", deny),
				nsDoc("other", `{}`),
				pol(beta, "open", "p1", "{podSelector: {matchLabels: {a: b}}, ingress: [{from: [{podSelector: {}}]}]}"),
				pol(beta, "closed", "p2", "{podSelector: {}, ingress: [{}]}"),
				pol(v1, "undeclared", "p3", "{podSelector: {}}"),
				pol(beta, "other", "p4", "{podSelector: {}}"),
			},
			notOut: []string{"name: default-deny-ingress\n  namespace: open", "name: default-deny-ingress\n  namespace: other"},
			wantOut: []string{
				"name: other\n", "name: p1\n", "name: p2\n", "name: p3\n", "name: p4\n",
			},
			wantWarnings: []string{
				"f.yaml: document 4 (NetworkPolicy open/p1): namespace open is not annotated DefaultDeny, so under v1.6 this policy had no effect; under networking.k8s.io/v1 it isolates the pods it selects for ingress",
				"f.yaml: document 6 (NetworkPolicy undeclared/p3): namespace undeclared is not in the input, hence not annotated DefaultDeny, so under v1.6 this policy had no effect",
				"f.yaml: document 7 (NetworkPolicy other/p4): namespace other is not annotated DefaultDeny, so under v1.6 this policy had no effect; under networking.k8s.io/v1 it denies all ingress to the pods it selects",
			},
		},
		{
			name: "egress in a v1beta1 policy",
			docs: []string{
				nsDoc("a", deny),
				pol(beta, "a", "e", "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{protocol: udp, port: \"53\"}]}]}"),
			},
			wantOut:      []string{"  egress:\n  - ports:\n    - port: 53\n      protocol: UDP\n", "  policyTypes:\n  - Ingress\n  - Egress\n"},
			wantWarnings: []string{"f.yaml: document 2 (NetworkPolicy a/e): v1.6 had no egress rules; under networking.k8s.io/v1 this policy (policyTypes with Egress) also isolates the pods it selects for egress"},
		},
		{
			name: "v1beta1 with explicit policyTypes keeps them",
			docs: []string{
				nsDoc("a", deny),
				pol(beta, "a", "e", "{podSelector: {}, policyTypes: [Egress]}"),
			},
			wantOut: []string{"  policyTypes:\n  - Egress\n"},
			wantWarnings: []string{
				"(NetworkPolicy a/e): v1.6 had no egress rules",
				"(NetworkPolicy a/e): v1.6 used this policy as an ingress whitelist, but its policyTypes does not list Ingress",
			},
		},
		{
			name: "extensions/v1beta1 canonicalized",
			docs: []string{
				nsDoc("a", deny),
				pol(beta, "a", "p", "{podSelector: {}, ingress: [{ports: [{protocol: sctp, port: \"8080\"}, {port: http}, {port: 1, endPort: 5}]}]}"),
			},
			wantOut: []string{"# converted from extensions/v1beta1 (f.yaml: document 2)\n", "  - ports:\n    - port: 8080\n      protocol: SCTP\n    - port: http\n    - endPort: 5\n      port: 1\n  podSelector: {}\n"},
		},
		{
			name: "v1 passes through",
			docs: []string{
				nsDoc("a", deny),
				pol(v1, "a", "p", "{podSelector: {}, ingress: [{ports: [{protocol: SCTP, port: 8080}, {port: http}, {port: 1, endPort: 5}]}]}"),
			},
			wantOut: []string{"# from f.yaml: document 2\n", "  - ports:\n    - port: 8080\n      protocol: SCTP\n    - port: http\n    - endPort: 5\n      port: 1\n  podSelector: {}\n"},
			notOut:  []string{"      port: 1\n  podSelector: {}\n  policyTypes"},
		},
		{
			// Kubernetes 1.6 accepted host bits and meant the prefix; a
			// current API server refuses them.
			name: "extensions/v1beta1 CIDRs written masked and canonical",
			docs: []string{
				pol(beta, "a", "p", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.1/8, except: [10.1.2.3/16]}}, {ipBlock: {cidr: \"FD00:0::1/64\"}}]}]}"),
			},
			wantOut:      []string{"cidr: 10.0.0.0/8\n", "- 10.1.0.0/16\n", "cidr: fd00::/64\n"},
			notOut:       []string{"10.0.0.1/8", "10.1.2.3", "FD00"},
			wantWarnings: []string{"namespace a is not in the input"},
		},
		{
			name:    "v1 lower-case protocol refused",
			docs:    []string{pol(v1, "a", "p", "{podSelector: {}, ingress: [{ports: [{protocol: sctp}]}]}")},
			wantErr: `f.yaml:1: document 1 (NetworkPolicy a/p): invalid (the API server refuses it): spec.ingress[0].ports[0].protocol: Unsupported value: "sctp"`,
		},
		{
			name:    "v1 port number as a string refused",
			docs:    []string{pol(v1, "a", "p", "{podSelector: {}, ingress: [{ports: [{port: \"80\"}]}]}")},
			wantErr: `spec.ingress[0].ports[0].port: Invalid value: "80": must contain at least one letter`,
		},
		{
			name:    "v1 CIDR with host bits refused",
			docs:    []string{pol(v1, "a", "p", "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.1/24}}]}]}")},
			wantErr: `spec.egress[0].to[0].ipBlock.cidr: Invalid value: "10.0.0.1/24": must not have bits set beyond the prefix length`,
		},
		{
			name:    "IPv4-mapped IPv6 CIDR refused, even from extensions/v1beta1",
			docs:    []string{pol(beta, "a", "p", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: \"::ffff:10.0.0.0/104\"}}]}]}")},
			wantErr: `spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "::ffff:10.0.0.0/104": must not have an IPv4-mapped IPv6 address`,
		},
		{
			name: "namespaces YAML 1.1 would misread are quoted",
			docs: []string{nsDoc("y", deny), nsDoc("no", ""), nsDoc("123", "")},
			wantOut: []string{
				"  name: \"y\"\n",
				"  name: default-deny-ingress\n  namespace: \"y\"\n",
				"  name: \"no\"\n",
				"  name: \"123\"\n",
			},
		},
		{
			name: "kubectl get -o yaml noise is stripped",
			docs: []string{`apiVersion: v1
kind: Namespace
metadata:
  name: a
  uid: 0b4c1d6e-0000-0000-0000-000000000000
  resourceVersion: "42"
  creationTimestamp: "2017-03-28T10:00:00Z"
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"apiVersion":"v1"}'
    net.beta.kubernetes.io/network-policy: '{"ingress":{"isolation":"DefaultDeny"}}'
  managedFields:
  - manager: kubectl
    operation: Update
spec:
  finalizers: [kubernetes]
status:
  phase: Active
`, `apiVersion: extensions/v1beta1
kind: NetworkPolicy
metadata:
  name: p
  namespace: a
  generation: 3
  selfLink: /apis/extensions/v1beta1/namespaces/a/networkpolicies/p
spec:
  podSelector: {}
`},
			wantOut: []string{"metadata:\n  name: a\nspec:\n  finalizers:\n  - kubernetes\n---\n"},
			notOut:  []string{"uid", "resourceVersion", "creationTimestamp", "last-applied", "managedFields", "status", "phase", "generation", "selfLink", "annotations"},
		},
		{
			name: "pods and nodes are not emitted",
			docs: []string{
				"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}]}\n",
				"apiVersion: v1\nkind: Pod\nmetadata: {name: q}\nspec: {containers: [{name: c, image: i}]}\n",
				"apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n",
				nsDoc("a", ""),
			},
			notOut:       []string{"kind: Pod", "kind: Node"},
			wantWarnings: []string{"convert emits only Namespaces and NetworkPolicies: 2 Pods and 1 Node not emitted"},
		},
		{
			name:         "nothing",
			docs:         []string{"apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n"},
			wantWarnings: []string{"1 Node not emitted", "nothing to convert"},
		},
		{
			name:    "invalid policy",
			docs:    []string{pol(beta, "a", "p", "{podSelector: {}, ingress: [{ports: [{protocol: icmp}]}]}")},
			wantErr: `f.yaml:1: document 1 (NetworkPolicy a/p): invalid (the API server refuses it): spec.ingress[0].ports[0].protocol: Unsupported value: "icmp"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Validation errors come from reading the files, the rest from Convert.
			var out []byte
			var warnings []string
			in, err := manifest.Parse("f.yaml", []byte(strings.Join(tt.docs, "---\n")))
			if err == nil {
				out, warnings, err = Convert(in)
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
			rest := string(out)
			for _, w := range tt.wantOut {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks (in order) %q:\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
			for _, w := range tt.notOut {
				if strings.Contains(string(out), w) {
					t.Errorf("output contains %q:\n%s", w, out)
				}
			}
			if len(warnings) != len(tt.wantWarnings) {
				t.Fatalf("warnings = %q\nwant %q", warnings, tt.wantWarnings)
			}
			for i, w := range tt.wantWarnings {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %d = %q\nwant it to contain %q", i, warnings[i], w)
				}
			}

			// Whatever is emitted reads back cleanly, as v1 only, and means
			// the same as the input read in v1.6 mode (policy by policy).
			back, err := manifest.Parse("out.yaml", out)
			if err != nil {
				t.Fatalf("output does not read back: %v\n%s", err, out)
			}
			if len(back.Warnings) != 0 || len(back.PoliciesV1beta1) != 0 || len(back.Pods) != 0 || len(back.Nodes) != 0 {
				t.Errorf("read back: warnings %q, %d v1beta1 policies, %d pods, %d nodes", back.Warnings, len(back.PoliciesV1beta1), len(back.Pods), len(back.Nodes))
			}
			old := cluster(t, in, model.ModeV16)
			now := cluster(t, back, model.ModeV1)
			for key, p := range old.Policies {
				if a, b := Fingerprint(p), Fingerprint(now.Policies[key]); a != b {
					t.Errorf("%s changed:\n%s\nbecame\n%s", key, a, b)
				}
			}
			for _, ns := range now.Namespaces {
				if ns.LegacyIsolation != model.LegacyNone {
					t.Errorf("namespace %s still annotated", ns.Name)
				}
			}
			for name, ns := range old.Namespaces {
				if ns.LegacyIsolation != model.LegacyDefaultDeny {
					continue
				}
				pod := &model.Pod{UID: "probe", Namespace: name, Name: "probe"}
				if iso, _ := now.Isolated(pod, model.Ingress); !iso {
					t.Errorf("namespace %s: pods no longer isolated", name)
				}
			}
		})
	}
}

func TestConvertHandBuilt(t *testing.T) {
	// Objects without sources (not from Load) still convert, in slice order.
	in := parse(t, "f.yaml", seed.Document())
	in.Sources = nil
	out, _, err := Convert(in)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.NewReplacer(
		"# from examples/seed.yaml: document 1;", "# from input;",
		"(examples/seed.yaml: document 2)", "(input)",
	).Replace(seedConverted)
	if string(out) != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	if _, _, err := Convert(nil); err == nil {
		t.Error("nil objects accepted")
	}
}
