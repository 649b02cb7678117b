package manifest

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/examples/seed"
)

// summary lists what was loaded as "Kind ns/name@doc[.item]" in input order.
func summary(o *Objects) []string {
	out := make([]string, len(o.Sources))
	for obj, src := range o.Sources {
		s := Describe(obj) + "@" + itoa(src.Doc)
		if src.Item > 0 {
			s += "." + itoa(src.Item)
		}
		if src.Seq >= len(out) || out[src.Seq] != "" {
			panic("bad Seq")
		}
		out[src.Seq] = s
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestParse(t *testing.T) {
	tests := []struct {
		name, file, data string
		want             []string // summary
		wantWarnings     []string // substrings, in order
		wantErr          string
	}{
		{
			name: "seed", file: "examples/seed.yaml", data: seed.Document(),
			want: []string{"Namespace default@1", "NetworkPolicy default/test-network-policy@2"},
		},
		{
			name: "comments, empty documents and separators with comments",
			file: "a.yaml",
			data: "# header comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---   # nothing here\n# only a comment\n--- # the third\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}]}\n---\n",
			want: []string{"Namespace a@1", "Pod default/p@4"},
		},
		{
			name: "JSON stream",
			file: "a.json",
			data: `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}
{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"p","namespace":"a"},"spec":{"podSelector":{}}}`,
			want: []string{"Namespace a@1", "NetworkPolicy a/p@2"},
		},
		{
			name: "JSON detected by content",
			file: "-",
			data: "\n  {\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"n1\"}}",
			want: []string{"Node n1@1"},
		},
		{
			name: "List and typed lists",
			file: "l.yaml",
			data: `apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: a}}
- {apiVersion: apps/v1, kind: Deployment, metadata: {name: d, namespace: a}}
- {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p, namespace: a}, spec: {podSelector: {}}}
---
apiVersion: extensions/v1beta1
kind: NetworkPolicyList
items:
- metadata: {name: old, namespace: a}
  spec: {podSelector: {}}
---
apiVersion: v1
kind: PodList
items: []
---
apiVersion: apps/v1
kind: DeploymentList
items: [{}, {}]
`,
			want:         []string{"Namespace a@1.1", "NetworkPolicy a/p@1.3", "NetworkPolicy a/old@2.1"},
			wantWarnings: []string{"l.yaml: document 1, item 2 (Deployment a/d): skipped apps/v1 Deployment", "l.yaml: document 4: skipped DeploymentList with 2 items"},
		},
		{
			name: "other kinds and other groups are skipped",
			file: "mixed.yaml",
			data: `apiVersion: v1
kind: ConfigMap
metadata: {name: s}
---
apiVersion: crd.projectcalico.org/v1
kind: NetworkPolicy
metadata: {name: calico, namespace: x}
spec: {selector: all()}
---
foo: bar
`,
			wantWarnings: []string{
				"mixed.yaml: document 1 (ConfigMap s): skipped v1 ConfigMap (ovs-netpol reads only Namespace, Pod, Node, NetworkPolicy, Service and EndpointSlice)",
				"mixed.yaml: document 2 (NetworkPolicy x/calico): skipped crd.projectcalico.org/v1 NetworkPolicy: not the Kubernetes NetworkPolicy",
				"mixed.yaml: document 3: skipped: not a Kubernetes object",
			},
		},
		{
			name: "Services and EndpointSlices, alone and in lists",
			file: "svc.yaml",
			data: `apiVersion: v1
kind: Service
metadata: {name: web, namespace: a}
spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: [10.244.1.5]}]
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: web}, spec: {clusterIP: None, ports: [{port: 80}]}}
- {apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: web-1, namespace: a}, addressType: IPv6}
- {apiVersion: v1, kind: Endpoints, metadata: {name: web, namespace: a}}
---
apiVersion: v1
kind: ServiceList
items:
- metadata: {name: db, namespace: a}
  spec: {ports: [{port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSliceList
items:
- {metadata: {name: db-1, namespace: a}, addressType: IPv4}
`,
			want: []string{
				"Service a/web@1", "EndpointSlice default/web-1@2", "Service default/web@3.1", "EndpointSlice a/web-1@3.2",
				"Service a/db@4.1", "EndpointSlice a/db-1@5.1",
			},
			wantWarnings: []string{"svc.yaml: document 3, item 3 (Endpoints a/web): skipped v1 Endpoints"},
		},
		{
			name: "Service and EndpointSlice as JSON",
			file: "svc.json",
			data: `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s","namespace":"a"},"spec":{"clusterIP":"10.96.0.1","ports":[{"port":53,"protocol":"UDP"}]}}
{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"s-x","namespace":"a","labels":{"kubernetes.io/service-name":"s"}},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"],"conditions":{"ready":false}}]}`,
			want: []string{"Service a/s@1", "EndpointSlice a/s-x@2"},
		},
		{
			name:         "EndpointSlice of another group",
			file:         "f.yaml",
			data:         "apiVersion: example.com/v1\nkind: EndpointSlice\nmetadata: {name: e}\n",
			wantWarnings: []string{"f.yaml: document 1 (EndpointSlice default/e): skipped example.com/v1 EndpointSlice: not the Kubernetes EndpointSlice (apiVersion discovery.k8s.io/v1)"},
		},
		{
			name: "namespace defaults to default",
			file: "d.yaml",
			data: "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}}\n",
			want: []string{"NetworkPolicy default/p@1"},
		},
		{
			name: "quoted y is a name",
			file: "y.yaml",
			data: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"y\"\n",
			want: []string{"Namespace y@1"},
		},
		{
			name: "unquoted y is a boolean", file: "y.yaml",
			data:    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"x\"\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: y\n",
			wantErr: `y.yaml: document 2 (Namespace): json: cannot unmarshal bool into Go struct field ObjectMeta.metadata.name of type string (YAML 1.1 reads unquoted y, n, yes, no, on, off`,
		},
		{
			name: "unquoted number label", file: "n.yaml",
			data:    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {version: 1}\n",
			wantErr: `n.yaml: document 1 (Pod default/p): json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string (YAML 1.1`,
		},
		{
			name: "unknown field", file: "f.yaml",
			data:    seed.Document() + "    - protocol: TCP\n      prot: 80\n",
			wantErr: `f.yaml: document 2 (NetworkPolicy default/test-network-policy): strict decoding error: unknown field "spec.ingress[0].ports[1].prot"`,
		},
		{
			name: "field names are case-sensitive", file: "f.yaml",
			data:    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {PodSelector: {}}\n",
			wantErr: `f.yaml: document 1 (NetworkPolicy default/p): strict decoding error: unknown field "spec.PodSelector"`,
		},
		{
			name: "duplicate keys, with the line in the file", file: "f.yaml",
			data:    "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n  name: c\n",
			wantErr: `f.yaml: document 2: yaml: unmarshal errors:; line 9: key "name" already set in map`,
		},
		{
			name: "YAML syntax error, with the line in the file", file: "f.yaml",
			data:    "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n   labels: x\n",
			wantErr: `f.yaml: document 2: yaml: line 9:`,
		},
		{
			name: "JSON syntax error", file: "f.json",
			data:    "{\"apiVersion\": \"v1\",\n \"kind\": }",
			wantErr: `f.json: line 2: invalid JSON`,
		},
		{
			name: "not an object", file: "f.yaml",
			data:    "- a\n- b\n",
			wantErr: `f.yaml: document 1: not a Kubernetes object: expected a mapping with apiVersion and kind, found ["a","b"]`,
		},
		{
			name: "unsupported version of a known kind", file: "f.yaml",
			data:    "apiVersion: networking.k8s.io/v2\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n",
			wantErr: `f.yaml: document 1 (NetworkPolicy x/p): unsupported apiVersion "networking.k8s.io/v2" for NetworkPolicy (want networking.k8s.io/v1 or extensions/v1beta1)`,
		},
		{
			name: "core kind in a group", file: "f.yaml",
			data:    "apiVersion: v2\nkind: Pod\nmetadata: {name: p}\n",
			wantErr: `f.yaml: document 1 (Pod default/p): unsupported apiVersion "v2" for Pod (want v1)`,
		},
		{
			name: "apiVersion missing", file: "f.yaml",
			data:    "kind: Namespace\nmetadata: {name: p}\n",
			wantErr: `f.yaml: document 1 (Namespace p): apiVersion is missing (want v1)`,
		},
		{
			name: "kind missing", file: "f.yaml",
			data:    "apiVersion: v1\nmetadata: {name: p}\n",
			wantErr: `f.yaml: document 1: kind is missing`,
		},
		{
			name: "name missing", file: "f.yaml",
			data:    "apiVersion: v1\nkind: Pod\nmetadata: {namespace: a}\n",
			wantErr: `f.yaml: document 1 (Pod a/): metadata.name is required`,
		},
		{
			name: "duplicates across versions", file: "f.yaml",
			data:    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}}\n---\napiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: default}\nspec: {podSelector: {}}\n",
			wantErr: `f.yaml: document 2 (NetworkPolicy default/p): defined twice: also at f.yaml: document 1 (NetworkPolicy default/p)`,
		},
		{
			name: "EndpointSlice v1beta1", file: "f.yaml",
			data:    "apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {name: e, namespace: x}\naddressType: IPv4\n",
			wantErr: `f.yaml: document 1 (EndpointSlice x/e): unsupported apiVersion "discovery.k8s.io/v1beta1" for EndpointSlice (want discovery.k8s.io/v1)`,
		},
		{
			name: "EndpointSlice fields are top-level", file: "f.yaml",
			data:    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\nspec: {addressType: IPv4}\n",
			wantErr: `f.yaml: document 1 (EndpointSlice default/e): strict decoding error: unknown field "spec"`,
		},
		{
			name: "unknown Service field", file: "f.yaml",
			data:    "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, targetport: 8080}]}\n",
			wantErr: `f.yaml: document 1 (Service default/s): strict decoding error: unknown field "spec.ports[0].targetport"`,
		},
		{
			name: "Service name missing", file: "f.yaml",
			data:    "apiVersion: v1\nkind: Service\nmetadata: {namespace: a}\n",
			wantErr: `f.yaml: document 1 (Service a/): metadata.name is required`,
		},
		{
			name: "Service defined twice", file: "f.yaml",
			data:    "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\n---\napiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Service, metadata: {name: s, namespace: default}, spec: {ports: [{port: 80}]}}]\n",
			wantErr: `f.yaml: document 3, item 1 (Service default/s): defined twice: also at f.yaml: document 1 (Service default/s)`,
		},
		{
			name: "EndpointSlice defined twice", file: "f.yaml",
			data:    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSliceList\nitems: [{metadata: {name: e}, addressType: IPv6}]\n",
			wantErr: `f.yaml: document 2, item 1 (EndpointSlice default/e): defined twice: also at f.yaml: document 1 (EndpointSlice default/e)`,
		},
		{
			name: "nested lists", file: "f.yaml",
			data:    "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: List, items: []}\n",
			wantErr: `f.yaml: document 1, item 1: a List inside a List is not supported`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := Parse(tt.file, []byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v\nwant it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got := summary(o); !reflect.DeepEqual(got, tt.want) && (len(got) != 0 || len(tt.want) != 0) {
				t.Errorf("objects = %q\nwant      %q", got, tt.want)
			}
			if len(o.Warnings) != len(tt.wantWarnings) {
				t.Fatalf("warnings = %q\nwant %q", o.Warnings, tt.wantWarnings)
			}
			for i, w := range tt.wantWarnings {
				if !strings.Contains(o.Warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, o.Warnings[i], w)
				}
			}
			// Every object has its type meta set.
			for obj := range o.Sources {
				if gvk := obj.GetObjectKind().GroupVersionKind(); gvk.Kind == "" || gvk.Version == "" {
					t.Errorf("%s: type meta not set: %v", Describe(obj), gvk)
				}
			}
		})
	}
}

func TestSeedIcmpError(t *testing.T) {
	_, err := Parse("examples/seed.yaml", []byte(strings.Replace(seed.Document(), "protocol: tcp", "protocol: icmp", 1)))
	want := `examples/seed.yaml:15: document 2 (NetworkPolicy default/test-network-policy): invalid (the API server refuses it): spec.ingress[0].ports[0].protocol: Unsupported value: "icmp": supported values: "SCTP", "TCP", "UDP"`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant    %s", err, want)
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func ns(name string) string {
	return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + name + "\n"
}

func TestLoad(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"b.yaml":            ns("b"),
		"a/z.yml":           ns("az"),
		"a/y.JSON":          `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"ay"}}`,
		"a/readme.md":       "not a manifest",
		".hidden/x.yaml":    ns("hidden"),
		"a/.x.yaml":         ns("hidden2"),
		"c/deep/d/e.yaml":   ns("deep"),
		"empty/.keep":       "",
		"extra/policy.txt":  "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: b}\nspec: {podSelector: {}}\n",
		"broken/bad.yaml":   "apiVersion: v1\nkind: Namespace\nmetadata: {name: [}\n",
		"dups/one.yaml":     ns("dup"),
		"dups/two/two.yaml": ns("dup"),
	})
	tests := []struct {
		name         string
		paths        []string
		want         []string
		wantWarnings []string
		wantErr      string
	}{
		{
			name:  "directory recursively, sorted, hidden and other extensions skipped",
			paths: []string{filepath.Join(dir, "a"), filepath.Join(dir, "b.yaml"), filepath.Join(dir, "c")},
			want:  []string{"Namespace ay@1", "Namespace az@1", "Namespace b@1", "Namespace deep@1"},
		},
		{
			name:  "explicit file of any extension; a file given twice is read once",
			paths: []string{filepath.Join(dir, "b.yaml"), filepath.Join(dir, "extra", "policy.txt"), filepath.Join(dir, "b.yaml"), dir + "/./b.yaml"},
			want:  []string{"Namespace b@1", "NetworkPolicy b/p@1"},
		},
		{
			name:         "empty directory",
			paths:        []string{filepath.Join(dir, "empty")},
			wantWarnings: []string{"empty: no *.yaml, *.yml or *.json files in this directory"},
		},
		{
			name:    "missing path",
			paths:   []string{filepath.Join(dir, "nope")},
			wantErr: "no such file or directory",
		},
		{
			name:    "error names the file",
			paths:   []string{filepath.Join(dir, "broken")},
			wantErr: filepath.Join(dir, "broken", "bad.yaml") + ": document 1: yaml: line ",
		},
		{
			name:    "duplicates across files",
			paths:   []string{filepath.Join(dir, "dups")},
			wantErr: filepath.Join(dir, "dups/two/two.yaml") + ": document 1 (Namespace dup): defined twice: also at " + filepath.Join(dir, "dups/one.yaml") + ": document 1 (Namespace dup)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := Load(tt.paths)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v\nwant it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			names := summary(o)
			if len(names) == 0 {
				names = nil
			}
			if !reflect.DeepEqual(names, tt.want) {
				t.Errorf("objects = %q\nwant      %q", names, tt.want)
			}
			if len(o.Warnings) != len(tt.wantWarnings) {
				t.Fatalf("warnings = %q, want %q", o.Warnings, tt.wantWarnings)
			}
			for i, w := range tt.wantWarnings {
				if !strings.Contains(o.Warnings[i], w) {
					t.Errorf("warning %q, want %q", o.Warnings[i], w)
				}
			}
		})
	}
}

func TestSplitYAML(t *testing.T) {
	tests := []struct {
		in   string
		want []string // "index:line:content"
	}{
		{"", nil},
		{"# only a comment\n", nil},
		{"a: 1", []string{"1:1:a: 1"}},
		{"---\na: 1\n", []string{"1:1:   \na: 1\n"}},
		{"\xef\xbb\xbfa: 1\n---\n", []string{"1:1:a: 1\n", "2:2:   \n"}},
		{"a: 1\n---\n---\nb: 2\n", []string{"1:1:a: 1\n", "2:2:   \n", "3:3:   \nb: 2\n"}},
		{"# c\n--- {a: 1}\n----\n", []string{"1:2:    {a: 1}\n----\n"}},
		{"a: |\n  ---\n  x\n", []string{"1:1:a: |\n  ---\n  x\n"}},
	}
	for _, tt := range tests {
		var got []string
		for _, d := range splitYAML([]byte(tt.in)) {
			got = append(got, itoa(d.index)+":"+itoa(d.line)+":"+string(d.data))
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitYAML(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLoadStdin(t *testing.T) {
	dir := writeFiles(t, map[string]string{"in.yaml": ns("from-stdin")})
	f, err := os.Open(filepath.Join(dir, "in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = saved }()
	o, err := Load([]string{"-", "-"})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Namespaces) != 1 || o.Where(o.Namespaces[0]) != "<stdin>: document 1 (Namespace from-stdin)" {
		t.Errorf("got %d namespaces, %q", len(o.Namespaces), o.Where(o.Namespaces[0]))
	}
	if got := (&Objects{}).Where(o.Namespaces[0]); got != "Namespace from-stdin" {
		t.Errorf("Where without source = %q", got)
	}
}

func TestReadKindsNamesEveryKind(t *testing.T) {
	for kind := range kinds {
		if !strings.Contains(readKinds, kind) {
			t.Errorf("readKinds %q does not name %s", readKinds, kind)
		}
	}
	if n := strings.Count(readKinds, ",") + 2; n != len(kinds) {
		t.Errorf("readKinds names %d kinds, the table has %d", n, len(kinds))
	}
}
