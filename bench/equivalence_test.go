package bench

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/controller"
	"github.com/ovs-netpol/ovs-netpol/pkg/flowsync"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
	"github.com/ovs-netpol/ovs-netpol/pkg/synth"
)

// The optimizations of this issue change how things are computed, not what:
// these tests pin that for the parts no existing test covers byte for byte.

// TestModText: the bundle lines flowsync renders without fmt are the ones
// it rendered with it (openflow.Flow.String and the delete_strict form),
// as "ovs-ofctl bundle" reads them ("flow add", "flow delete_strict").
func TestModText(t *testing.T) {
	m, err := synth.Generate(synth.S1, synth.DefaultSeed).Model()
	if err != nil {
		t.Fatal(err)
	}
	res, err := compiler.Compile(m, NodeConfig(m))
	if err != nil {
		t.Fatal(err)
	}
	flows := append(res.Flows, openflow.Flow{Table: 255, Priority: math.MaxUint16, Cookie: math.MaxUint64})
	for _, f := range flows {
		if got, want := (flowsync.Mod{Op: flowsync.Add, Flow: f}).String(), "flow add "+f.String(); got != want {
			t.Fatalf("add: %q, want %q", got, want)
		}
		want := fmt.Sprintf("flow delete_strict table=%d,priority=%d,cookie=%s/%s", f.Table, f.Priority, openflow.Ours, openflow.OursMask)
		if m := f.Match.String(); m != "" {
			want += "," + m
		}
		if got := (flowsync.Mod{Op: flowsync.Delete, Flow: f}).String(); got != want {
			t.Fatalf("delete: %q, want %q", got, want)
		}
		installed := flowsync.Installed(f)
		if got := (flowsync.Mod{Op: flowsync.Delete, Installed: &installed}).String(); got != want {
			t.Fatalf("delete of the installed flow: %q, want %q", got, want)
		}
	}
	// A dumped flow's attributes stay out of its delete line.
	stale, err := flowsync.ParseFlow(" cookie=0x4e00000000000000, idle_timeout=5, priority=0,ip actions=drop")
	if err != nil || !stale.Stale {
		t.Fatalf("ParseFlow: %+v, %v", stale, err)
	}
	want := "flow delete_strict table=0,priority=0,cookie=0x4e00000000000000/0xff00000000000000,ip"
	if got := (flowsync.Mod{Op: flowsync.Delete, Installed: &stale}).String(); got != want {
		t.Fatalf("delete of a flow with an idle_timeout: %q, want %q", got, want)
	}
}

// TestTrimForCacheKeepsWhatNormalizeReads: the controller's informer
// transform must not change what the agent makes of a pod (the S1 pods,
// with the metadata and spec a real apiserver adds, and odd ones).
func TestTrimForCacheKeepsWhatNormalizeReads(t *testing.T) {
	pods := synth.Generate(synth.S1, synth.DefaultSeed).Pods
	odd := []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "host", Namespace: "x"}, Spec: corev1.PodSpec{HostNetwork: true, NodeName: "n"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "no-ip"}, Status: corev1.PodStatus{Phase: corev1.PodPending}},
		{ObjectMeta: metav1.ObjectMeta{Name: "old-ip", Namespace: "x"}, Status: corev1.PodStatus{PodIP: "10.1.1.1", Phase: corev1.PodSucceeded}},
		{ObjectMeta: metav1.ObjectMeta{Name: "bad-ip", Namespace: "x"}, Status: corev1.PodStatus{PodIP: "10.1.1"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "bad-port", Namespace: "x"}, Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "i", Ports: []corev1.ContainerPort{{Name: "init", ContainerPort: 1}}}},
			Containers:     []corev1.Container{{Name: "a"}, {Name: "b", Ports: []corev1.ContainerPort{{Name: "p", ContainerPort: 70000}}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "dual", Namespace: "x"}, Status: corev1.PodStatus{PodIP: "10.1.1.1",
			PodIPs: []corev1.PodIP{{IP: "10.1.1.1"}, {IP: "fd00::1"}}}},
	}
	for _, p := range append(pods, odd...) {
		full := p.DeepCopy()
		full.Annotations = map[string]string{"a": "b"}
		full.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate}}
		full.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "rs"}}
		full.Spec.Tolerations = []corev1.Toleration{{Key: "k"}}
		full.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		want, wantErr := normalize.Pod(full.DeepCopy())
		obj, err := controller.TrimForCache(full)
		if err != nil {
			t.Fatal(err)
		}
		cached := obj.(*controller.CachedPod)
		trimmed := cached.DeepCopyObject().(*controller.CachedPod).Pod()
		got, gotErr := normalize.Pod(trimmed)
		if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
			t.Fatalf("pod %s: trimmed normalizes to %+v (%v), full to %+v (%v)", p.Name, got, gotErr, want, wantErr)
		}
		if trimmed.ManagedFields != nil || trimmed.Annotations != nil || trimmed.Spec.Tolerations != nil {
			t.Fatalf("pod %s not trimmed", p.Name)
		}
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Annotations: map[string]string{"k": "v"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}}}}
	obj, _ := controller.TrimForCache(ns)
	if got := obj.(*corev1.Namespace); got.ManagedFields != nil || got.Annotations["k"] != "v" {
		t.Fatalf("namespace trimmed to %+v", got)
	}
}

// TestIncrementalEqualsFullSynth replays the benchmark script on a small
// synthetic cluster, in both isolation modes and with the namespaces'
// legacy annotation flipping, and checks after every event that the
// incremental compiler's flows equal a full compile of the same state and
// that Flush reported exactly the keys whose flow changed.
func TestIncrementalEqualsFullSynth(t *testing.T) {
	s := synth.Scale{Name: "small", Namespaces: 23, Pods: 600, Policies: 150, Nodes: 3}
	for _, mode := range []model.Mode{model.ModeV1, model.ModeV16} {
		c := synth.Generate(s, 3)
		m, err := c.Model()
		if err != nil {
			t.Fatal(err)
		}
		m.Mode = mode
		cfg := NodeConfig(m)
		script := NewScript(c, BenchNode, 15, 4)
		maps.Copy(cfg.Bindings, script.LocalBindings)
		inc := compiler.NewIncremental(m, cfg)
		if _, err := inc.Flush(); err != nil {
			t.Fatal(err)
		}
		prev := flowMap(inc.Flows())
		for i, ev := range script.Events {
			if ev.Namespace != nil && i%3 == 0 {
				ev.Namespace = ev.Namespace.DeepCopy()
				if ev.Namespace.Annotations == nil {
					ev.Namespace.Annotations = map[string]string{}
				}
				ev.Namespace.Annotations[model.LegacyAnnotation] = `{"ingress":{"isolation":"DefaultDeny"}}`
			}
			if err := ApplyEvent(inc, ev); err != nil {
				t.Fatal(err)
			}
			changed, err := inc.Flush()
			if err != nil {
				t.Fatal(err)
			}
			full, err := compiler.Compile(inc.Cluster(), inc.Config())
			if err != nil {
				t.Fatal(err)
			}
			got, want := flowMap(inc.Flows()), flowMap(full.Flows)
			if !maps.EqualFunc(got, want, openflow.Flow.Equal) {
				t.Fatalf("%s, event %d (%s): incremental flows differ from a full compile", mode, i, ev)
			}
			reported := map[openflow.Key]bool{}
			for _, k := range changed {
				reported[k] = true
			}
			for k := range mergeKeys(prev, got) {
				if !prev[k].Equal(got[k]) != reported[k] {
					t.Fatalf("%s, event %d (%s): key %v changed %v, reported %v", mode, i, ev, k, !prev[k].Equal(got[k]), reported[k])
				}
			}
			prev = got
		}
	}
}

// TestIncrementalEqualsFullSynthServices is the same with Services: the
// benchmark script of every kind, the Service ones included (endpoints
// added and removed, Services added), on a small cluster with Services;
// after every event the flows and groups equal a full compile's, and the
// Service events change only their Service's flows and groups, at most 2
// per port and backend (session affinity renumbers its backends' flows).
func TestIncrementalEqualsFullSynthServices(t *testing.T) {
	s := synth.Scale{Name: "small", Namespaces: 23, Pods: 600, Policies: 150, Nodes: 3, Services: 400}
	c := synth.Generate(s, 3)
	m, err := c.Model()
	if err != nil {
		t.Fatal(err)
	}
	cfg := NodeConfig(m)
	script := NewScriptOf(c, BenchNode, 15, 4, append(slices.Clone(EventKinds), ServiceEventKinds...))
	maps.Copy(cfg.Bindings, script.LocalBindings)
	inc := compiler.NewIncremental(m, cfg)
	if _, err := inc.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(inc.Groups()) < len(c.Services) {
		t.Fatalf("%d groups for %d Services", len(inc.Groups()), len(c.Services))
	}
	prev := flowMap(inc.Flows())
	for i, ev := range script.Events {
		if err := ApplySetup(inc, ev); err != nil {
			t.Fatal(err)
		}
		if _, err := inc.Flush(); err != nil {
			t.Fatal(err)
		}
		prev = flowMap(inc.Flows())
		if err := ApplyEvent(inc, ev); err != nil {
			t.Fatal(err)
		}
		if _, err := inc.Flush(); err != nil {
			t.Fatal(err)
		}
		full, err := compiler.Compile(inc.Cluster(), inc.Config())
		if err != nil {
			t.Fatal(err)
		}
		got := flowMap(inc.Flows())
		if !maps.EqualFunc(got, flowMap(full.Flows), openflow.Flow.Equal) {
			t.Fatalf("event %d (%s): incremental flows differ from a full compile", i, ev)
		}
		if !reflect.DeepEqual(inc.Groups(), full.Groups) {
			t.Fatalf("event %d (%s): incremental groups differ from a full compile", i, ev)
		}
		if ev.Service == nil {
			continue
		}
		own := compiler.ServiceCookie(&model.Service{Namespace: ev.Service.Namespace, Name: ev.Service.Name})
		changed := 0
		for k := range mergeKeys(prev, got) {
			if !prev[k].Equal(got[k]) {
				changed++
				if f, ok := got[k]; ok && f.Cookie != own || !ok && prev[k].Cookie != own {
					t.Fatalf("event %d (%s): flow %v of another origin changed", i, ev, k)
				}
			}
		}
		for _, id := range inc.GroupChanges() {
			if g, ok := inc.Group(id); ok && g.Cookie != own {
				t.Fatalf("event %d (%s): group %d of another origin changed", i, ev, id)
			}
		}
		if n := changed + len(inc.GroupChanges()); n == 0 && ev.Kind == ServiceAdd || n > 2*len(ev.Service.Spec.Ports)*(len(ev.Slice.Endpoints)+1) {
			t.Fatalf("event %d (%s): %d flows and groups changed", i, ev, n)
		}
	}
}

func flowMap(flows []openflow.Flow) map[openflow.Key]openflow.Flow {
	out := make(map[openflow.Key]openflow.Flow, len(flows))
	for _, f := range flows {
		out[f.Key()] = f
	}
	return out
}

func mergeKeys(a, b map[openflow.Key]openflow.Flow) map[openflow.Key]bool {
	out := map[openflow.Key]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
