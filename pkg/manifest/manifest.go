// Package manifest reads Kubernetes manifests from files: the offline input of
// the CLI (compile, convert, diff, explain -f).
//
// Files hold YAML (several documents separated by "---" lines) or JSON (one
// or more values). A document is a Namespace, Pod, Node or Service (v1), a
// NetworkPolicy (networking.k8s.io/v1, or extensions/v1beta1 as written for
// Kubernetes 1.6), an EndpointSlice (discovery.k8s.io/v1), or a List of
// those (kind: List, or a typed list such as NetworkPolicyList, as `kubectl
// get -o yaml` prints). Other kinds are skipped with a warning, because
// people pass whole directories that also hold Deployments and ConfigMaps;
// so is a known kind name in another API group (Calico's
// crd.projectcalico.org NetworkPolicy). An apiVersion of a known kind's own
// group that ovs-netpol does not read (networking.k8s.io/v2,
// discovery.k8s.io/v1beta1) is an error.
//
// Decoding is strict and behaves like kubectl's: unknown or misspelled fields
// (field names are case-sensitive) and duplicate keys are errors.
//
// YAML 1.1 caveat: like kubectl (sigs.k8s.io/yaml), the YAML reader follows
// YAML 1.1, in which unquoted y, n, yes, no, on, off, true and false are
// booleans and unquoted digits are numbers. `name: y` or a label `version: 1`
// is therefore an error ("cannot unmarshal bool into ... of type string");
// such values must be quoted: `name: "y"`. (sigs.k8s.io/yaml.UnmarshalStrict is
// not used on purpose: it would silently turn `name: y` into the name "true",
// and it matches field names case-insensitively.)
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	extv1beta1 "k8s.io/api/extensions/v1beta1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/yaml"

	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// Source is where an object was read.
type Source struct {
	File string
	// Doc is the 1-based document (YAML) or value (JSON) index in File.
	Doc int
	// Item is the 1-based index in the items of a List document, 0 when the
	// object is the document itself.
	Item int
	// Line is the line of File the document starts on.
	Line int
	// Seq is the object's position among all objects loaded together
	// (0-based): sorting by Seq restores input order across kinds.
	Seq int
}

// String renders the location as "FILE: document N[, item M]".
func (s Source) String() string {
	out := fmt.Sprintf("%s: document %d", printable.String(s.File), s.Doc)
	if s.Item > 0 {
		out += fmt.Sprintf(", item %d", s.Item)
	}
	return out
}

// Objects are the objects read from manifests, by kind, each in input order.
// Namespaced objects without metadata.namespace have been given
// normalize.DefaultNamespace, and every object has apiVersion and kind set.
type Objects struct {
	Namespaces      []*corev1.Namespace
	Pods            []*corev1.Pod
	Nodes           []*corev1.Node
	PoliciesV1      []*networkingv1.NetworkPolicy
	PoliciesV1beta1 []*extv1beta1.NetworkPolicy
	Services        []*corev1.Service
	EndpointSlices  []*discoveryv1.EndpointSlice
	// Warnings are about documents that were skipped (kinds ovs-netpol does
	// not use) and directories without manifests.
	Warnings []string
	// Sources tells where each object above (keyed by its pointer) was read.
	// Objects built by hand may have none.
	Sources map[runtime.Object]Source
}

// Where names an object for messages: "FILE: document N (Kind ns/name)", or
// just "Kind ns/name" when its source is not known.
func (o *Objects) Where(obj runtime.Object) string {
	desc := Describe(obj)
	if src, ok := o.Sources[obj]; ok {
		return src.String() + " (" + desc + ")"
	}
	return desc
}

// Describe names an object as "Kind namespace/name" (or "Kind name" for
// cluster-scoped kinds).
func Describe(obj runtime.Object) string {
	return printable.String(describe(obj))
}

func describe(obj runtime.Object) string {
	switch v := obj.(type) {
	case *corev1.Namespace:
		return "Namespace " + v.Name
	case *corev1.Node:
		return "Node " + v.Name
	case *corev1.Pod:
		return "Pod " + v.Namespace + "/" + v.Name
	case *networkingv1.NetworkPolicy:
		return "NetworkPolicy " + v.Namespace + "/" + v.Name
	case *extv1beta1.NetworkPolicy:
		return "NetworkPolicy " + v.Namespace + "/" + v.Name
	case *corev1.Service:
		return "Service " + v.Namespace + "/" + v.Name
	case *discoveryv1.EndpointSlice:
		return "EndpointSlice " + v.Namespace + "/" + v.Name
	}
	return fmt.Sprintf("%T", obj)
}

// Load reads manifests from files and directories. A directory contributes
// every *.yaml, *.yml and *.json file below it (recursively, in lexical
// order of the walk, skipping names that start with a dot); a file named
// explicitly is read whatever its extension; "-" is standard input. A file
// named twice is read once. Objects with the same kind, namespace and name
// are an error, wherever they come from.
func Load(paths []string) (*Objects, error) {
	l := newLoader()
	seen := map[string]bool{}
	readOnce := func(name string) error {
		key := name
		if abs, err := filepath.Abs(name); err == nil {
			key = abs
		}
		if seen[key] {
			return nil
		}
		seen[key] = true
		data, err := os.ReadFile(name)
		if err != nil {
			return errors.New(oneLine(err.Error())) // file names from a directory walk
		}
		return l.file(name, data)
	}
	for _, p := range paths {
		if p == "-" {
			if seen["-"] {
				continue
			}
			seen["-"] = true
			data, err := io.ReadAll(os.Stdin)
			if err != nil {
				return nil, fmt.Errorf("reading standard input: %w", err)
			}
			if err := l.file("<stdin>", data); err != nil {
				return nil, err
			}
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			if err := readOnce(p); err != nil {
				return nil, err
			}
			continue
		}
		found := 0
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return errors.New(oneLine(err.Error()))
			}
			if path != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() || !isManifestName(path) {
				return nil
			}
			found++
			return readOnce(path)
		})
		if err != nil {
			return nil, err
		}
		if found == 0 {
			l.objs.Warnings = append(l.objs.Warnings, fmt.Sprintf("%s: no *.yaml, *.yml or *.json files in this directory", p))
		}
	}
	return l.objs, nil
}

// Parse reads the contents of one file; name is used in messages and to
// choose JSON (".json", or content starting with "{") over YAML.
func Parse(name string, data []byte) (*Objects, error) {
	l := newLoader()
	if err := l.file(name, data); err != nil {
		return nil, err
	}
	return l.objs, nil
}

func isManifestName(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// kindInfo describes a kind ovs-netpol reads.
type kindInfo struct {
	// groups are the API groups in which this kind name means the
	// Kubernetes object we know; the same kind name in another group (for
	// example Calico's crd.projectcalico.org NetworkPolicy) is a different
	// resource and is skipped.
	groups     []string
	versions   map[string]func() runtime.Object // apiVersion → new object
	want       string                           // supported apiVersions, for messages
	namespaced bool
}

var kinds = map[string]kindInfo{
	"Namespace": {groups: []string{""}, want: "v1",
		versions: map[string]func() runtime.Object{"v1": func() runtime.Object { return &corev1.Namespace{} }}},
	"Pod": {groups: []string{""}, want: "v1", namespaced: true,
		versions: map[string]func() runtime.Object{"v1": func() runtime.Object { return &corev1.Pod{} }}},
	"Node": {groups: []string{""}, want: "v1",
		versions: map[string]func() runtime.Object{"v1": func() runtime.Object { return &corev1.Node{} }}},
	"NetworkPolicy": {groups: []string{"networking.k8s.io", "extensions"}, namespaced: true,
		want: normalize.APIVersionV1 + " or " + normalize.APIVersionV1beta1,
		versions: map[string]func() runtime.Object{
			normalize.APIVersionV1:      func() runtime.Object { return &networkingv1.NetworkPolicy{} },
			normalize.APIVersionV1beta1: func() runtime.Object { return &extv1beta1.NetworkPolicy{} },
		}},
	"Service": {groups: []string{""}, want: "v1", namespaced: true,
		versions: map[string]func() runtime.Object{"v1": func() runtime.Object { return &corev1.Service{} }}},
	"EndpointSlice": {groups: []string{"discovery.k8s.io"}, want: "discovery.k8s.io/v1", namespaced: true,
		versions: map[string]func() runtime.Object{"discovery.k8s.io/v1": func() runtime.Object { return &discoveryv1.EndpointSlice{} }}},
}

// readKinds lists the kinds of the kinds table for messages.
const readKinds = "Namespace, Pod, Node, NetworkPolicy, Service and EndpointSlice"

// decoder decodes JSON into the typed objects strictly, case-sensitively and
// exactly as kubectl and the API server do.
var decoder = func() *kjson.Serializer {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, networkingv1.AddToScheme, extv1beta1.AddToScheme, discoveryv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Strict: true})
}()

type loader struct {
	objs *Objects
	// byKey finds earlier objects with the same identity.
	byKey map[string]runtime.Object
}

func newLoader() *loader {
	return &loader{
		objs:  &Objects{Sources: map[runtime.Object]Source{}},
		byKey: map[string]runtime.Object{},
	}
}

func (l *loader) file(name string, data []byte) error {
	var docs []document
	trimmed := bytes.TrimLeft(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), " \t\r\n")
	if strings.EqualFold(filepath.Ext(name), ".json") || bytes.HasPrefix(trimmed, []byte("{")) {
		var err error
		if docs, err = splitJSON(data); err != nil {
			return fmt.Errorf("%s: %s", printable.String(name), oneLine(err.Error()))
		}
	} else {
		docs = splitYAML(data)
	}
	for _, d := range docs {
		src := Source{File: name, Doc: d.index, Line: d.line}
		raw := d.data
		if !d.json {
			if blank(raw) {
				continue
			}
			var err error
			if raw, err = yaml.YAMLToJSONStrict(raw); err != nil {
				return fmt.Errorf("%s: %s", src, oneLine(fileLines(err, d.line)))
			}
		}
		if err := l.document(src, raw, !d.json); err != nil {
			return err
		}
	}
	return nil
}

// head is what is read of a document before its kind is known.
type head struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

func (l *loader) document(src Source, raw []byte, fromYAML bool) error {
	raw = bytes.TrimSpace(raw)
	if bytes.Equal(raw, []byte("null")) {
		return nil // an empty document
	}
	fields, err := objectFields(raw)
	if err != nil {
		return fmt.Errorf("%s: %v", src, err)
	}
	h := readHead(fields)
	if _, isList := fields["items"]; isList && strings.HasSuffix(h.Kind, "List") {
		return l.list(src, h, fields["items"], fromYAML)
	}
	return l.object(src, h, raw, fromYAML)
}

// objectFields checks that raw is a JSON object and returns its fields.
func objectFields(raw []byte) (map[string][]byte, error) {
	var m map[string]jsonRaw
	if err := jsonUnmarshal(raw, &m); err != nil || m == nil {
		return nil, fmt.Errorf("not a Kubernetes object: expected a mapping with apiVersion and kind, found %s", abbreviate(raw))
	}
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out, nil
}

// readHead extracts apiVersion, kind and metadata names as far as they are
// strings; the strict decode reports anything else.
func readHead(fields map[string][]byte) head {
	var h head
	_ = jsonUnmarshal(fields["apiVersion"], &h.APIVersion)
	_ = jsonUnmarshal(fields["kind"], &h.Kind)
	if md, ok := fields["metadata"]; ok {
		var m map[string]jsonRaw
		if jsonUnmarshal(md, &m) == nil {
			_ = jsonUnmarshal(m["name"], &h.Metadata.Name)
			_ = jsonUnmarshal(m["namespace"], &h.Metadata.Namespace)
		}
	}
	// The head only names the document in messages and finds its kind:
	// text that could break a message line is quoted here once (a quoted
	// kind or apiVersion matches nothing ovs-netpol reads).
	h.APIVersion, h.Kind = printable.String(h.APIVersion), printable.String(h.Kind)
	h.Metadata.Name, h.Metadata.Namespace = printable.String(h.Metadata.Name), printable.String(h.Metadata.Namespace)
	return h
}

func (l *loader) list(src Source, h head, itemsRaw []byte, fromYAML bool) error {
	where := fmt.Sprintf("%s (%s)", src, h.Kind)
	var items []jsonRaw
	if err := jsonUnmarshal(itemsRaw, &items); err != nil {
		return fmt.Errorf("%s: items: not a list", where)
	}
	// A typed list (PodList, NetworkPolicyList, ...) gives its items'
	// apiVersion and kind when they leave them out.
	itemKind := strings.TrimSuffix(h.Kind, "List")
	if h.Kind == "List" {
		itemKind = ""
	} else if _, known := kinds[itemKind]; !known {
		if want, near := nearKind(itemKind, h.APIVersion); near {
			return fmt.Errorf("%s: unknown kind %s in %s: did you mean %sList? (kinds are case-sensitive; a misspelled kind would leave the objects out)", where, printable.String(h.Kind), printable.String(h.APIVersion), want)
		}
		l.warnf("%s: skipped %s with %d items (ovs-netpol reads only %s)", src, h.Kind, len(items), readKinds)
		return nil
	}
	for i, item := range items {
		isrc := src
		isrc.Item = i + 1
		fields, err := objectFields(bytes.TrimSpace(item))
		if err != nil {
			return fmt.Errorf("%s: %v", isrc, err)
		}
		ih := readHead(fields)
		if _, nested := fields["items"]; nested && strings.HasSuffix(ih.Kind, "List") {
			return fmt.Errorf("%s: a %s inside a %s is not supported", isrc, ih.Kind, h.Kind)
		}
		if itemKind != "" {
			if ih.Kind == "" {
				ih.Kind = itemKind
			}
			if ih.APIVersion == "" {
				ih.APIVersion = h.APIVersion
			}
		}
		if err := l.object(isrc, ih, item, fromYAML); err != nil {
			return err
		}
	}
	return nil
}

func (l *loader) object(src Source, h head, raw []byte, fromYAML bool) error {
	info, known := kinds[h.Kind]
	if known && info.namespaced && h.Metadata.Namespace == "" {
		h.Metadata.Namespace = normalize.DefaultNamespace
	}
	where := fmt.Sprintf("%s (%s)", src, describeHead(h, info.namespaced))
	switch {
	case h.Kind == "" && h.APIVersion == "":
		l.warnf("%s: skipped: not a Kubernetes object (no apiVersion and kind)", src)
		return nil
	case h.Kind == "":
		return fmt.Errorf("%s: kind is missing", src)
	case !known:
		if want, near := nearKind(h.Kind, h.APIVersion); near {
			return fmt.Errorf("%s: unknown kind %s in %s: did you mean %s? (kinds are case-sensitive; a misspelled kind would leave the object out)", where, printable.String(h.Kind), printable.String(h.APIVersion), want)
		}
		l.warnf("%s: skipped %s (ovs-netpol reads only %s)", where, strings.TrimSpace(h.APIVersion+" "+h.Kind), readKinds)
		return nil
	case h.APIVersion == "":
		return fmt.Errorf("%s: apiVersion is missing (want %s)", where, info.want)
	}
	newObj, ok := info.versions[h.APIVersion]
	if !ok {
		gv, err := schema.ParseGroupVersion(h.APIVersion)
		if err != nil {
			return fmt.Errorf("%s: invalid apiVersion %q", where, h.APIVersion)
		}
		for _, g := range info.groups {
			if gv.Group == g {
				return fmt.Errorf("%s: unsupported apiVersion %q for %s (want %s)", where, h.APIVersion, h.Kind, info.want)
			}
		}
		l.warnf("%s: skipped %s %s: not the Kubernetes %s (apiVersion %s)", where, h.APIVersion, h.Kind, h.Kind, info.want)
		return nil
	}
	obj := newObj()
	if _, _, err := decoder.Decode(raw, nil, obj); err != nil {
		return fmt.Errorf("%s: %s", where, oneLine(decodeMessage(err, fromYAML)))
	}
	return l.add(src, where, h, obj)
}

// add completes a decoded object (type meta, default namespace), checks it
// has a name and is not a duplicate, and records it.
func (l *loader) add(src Source, where string, h head, obj runtime.Object) error {
	gvk := schema.FromAPIVersionAndKind(h.APIVersion, h.Kind)
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	var name, key string
	// namespaced defaults a missing namespace to DefaultNamespace and
	// returns the object's name and key. Both NetworkPolicy versions key as
	// NetworkPolicy: one name may not be defined in both.
	namespaced := func(m metav1.Object, kind string) (string, string) {
		if m.GetNamespace() == "" {
			m.SetNamespace(normalize.DefaultNamespace)
		}
		return m.GetName(), kind + "/" + m.GetNamespace() + "/" + m.GetName()
	}
	switch v := obj.(type) {
	case *corev1.Namespace:
		name, key = v.Name, "Namespace/"+v.Name
		l.objs.Namespaces = append(l.objs.Namespaces, v)
	case *corev1.Node:
		name, key = v.Name, "Node/"+v.Name
		l.objs.Nodes = append(l.objs.Nodes, v)
	case *corev1.Pod:
		name, key = namespaced(v, "Pod")
		l.objs.Pods = append(l.objs.Pods, v)
	case *networkingv1.NetworkPolicy:
		name, key = namespaced(v, "NetworkPolicy")
		l.objs.PoliciesV1 = append(l.objs.PoliciesV1, v)
	case *extv1beta1.NetworkPolicy:
		name, key = namespaced(v, "NetworkPolicy")
		l.objs.PoliciesV1beta1 = append(l.objs.PoliciesV1beta1, v)
	case *corev1.Service:
		name, key = namespaced(v, "Service")
		l.objs.Services = append(l.objs.Services, v)
	case *discoveryv1.EndpointSlice:
		name, key = namespaced(v, "EndpointSlice")
		l.objs.EndpointSlices = append(l.objs.EndpointSlices, v)
	default:
		return fmt.Errorf("%s: internal error: unexpected %T", where, obj)
	}
	if name == "" {
		return fmt.Errorf("%s: metadata.name is required", where)
	}
	for _, w := range applyDefaults(obj) {
		l.warnf("%s: %s", where, w)
	}
	if problems := validateObject(obj); len(problems) > 0 {
		return invalidError(src, obj, problems)
	}
	src.Seq = len(l.objs.Sources)
	l.objs.Sources[obj] = src
	if prev, dup := l.byKey[key]; dup {
		return fmt.Errorf("%s: defined twice: also at %s", where, l.objs.Where(prev))
	}
	l.byKey[key] = obj
	return nil
}

func (l *loader) warnf(format string, args ...any) {
	l.objs.Warnings = append(l.objs.Warnings, fmt.Sprintf(format, args...))
}

func describeHead(h head, namespaced bool) string {
	name := h.Metadata.Name
	if namespaced || h.Metadata.Namespace != "" {
		name = h.Metadata.Namespace + "/" + name
	}
	if h.Kind == "" {
		return name
	}
	if name == "" || name == "/" {
		return printable.String(h.Kind)
	}
	return printable.String(h.Kind + " " + name)
}

// decodeMessage explains the YAML 1.1 pitfalls behind the most common
// decoding errors.
func decodeMessage(err error, fromYAML bool) string {
	msg := err.Error()
	if fromYAML && (strings.Contains(msg, "cannot unmarshal bool into") || strings.Contains(msg, "cannot unmarshal number into")) {
		msg += ` (YAML 1.1 reads unquoted y, n, yes, no, on, off, true and false as booleans and unquoted digits as numbers: quote the value, e.g. name: "y")`
	}
	return msg
}

func abbreviate(raw []byte) string {
	s := string(raw)
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return printable.String(s)
}

// nearKind tells whether kind, in apiVersion, looks like a misspelling of a
// kind ovs-netpol reads (same letters in another case, or one or two typos
// away) in one of that kind's own API groups, and returns the kind meant.
// Other vendors' groups are not judged: their kinds are theirs.
func nearKind(kind, apiVersion string) (string, bool) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil || kind == "" {
		return "", false
	}
	for name, info := range kinds {
		inGroup := false
		for _, g := range info.groups {
			inGroup = inGroup || g == gv.Group
		}
		if !inGroup {
			continue
		}
		typos := 1
		if len(name) >= 8 {
			typos = 2
		}
		if strings.EqualFold(kind, name) || editDistance(strings.ToLower(kind), strings.ToLower(name)) <= typos {
			return name, true
		}
	}
	return "", false
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// oneLine renders a parser's message, which may span lines and quote the
// input, as one printable line: its lines joined with "; ".
func oneLine(msg string) string {
	lines := strings.Split(msg, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return printable.String(strings.Join(lines, "; "))
}
