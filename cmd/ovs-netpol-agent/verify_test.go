package main

import (
	"context"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/inspect"
)

// TestVerifyListsNoNodes: the agent may get its own Node but not list
// Nodes (manifests/rbac.yaml); the periodic verify's cluster listing must
// work under that RBAC.
func TestVerifyListsNoNodes(t *testing.T) {
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "p", UID: "u1"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}},
	)
	listed := 0
	client.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		listed++
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", nil)
	})
	ctx := context.Background()
	if _, err := inspect.LoadCluster(ctx, client); err == nil {
		t.Fatal("the reactor does not forbid listing nodes")
	}
	objs, err := inspect.LoadCluster(ctx, noNodeList{client})
	if err != nil {
		t.Fatalf("listing for verify: %v", err)
	}
	if len(objs.Pods) != 1 || len(objs.Namespaces) != 1 || len(objs.Nodes) != 0 || listed != 1 {
		t.Fatalf("listed %d pods, %d namespaces, %d nodes (node lists attempted: %d)", len(objs.Pods), len(objs.Namespaces), len(objs.Nodes), listed)
	}
}

func TestVerifyMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newVerifyMetrics(reg)
	m.mismatches.Set(3)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{"ovs_netpol_verify_mismatches", "ovs_netpol_verify_last_run_timestamp_seconds", "ovs_netpol_verify_runs_total",
		"ovs_netpol_verify_last_duration_seconds", "ovs_netpol_verify_last_traces"} {
		if !slices.Contains(names, want) {
			t.Errorf("metric %s not registered (have %v)", want, names)
		}
	}
}

// A mismatch through a Service's cluster IP counts like one at a pod
// address (the metric and the log would otherwise miss it).
func TestVerifyTotalsCountServices(t *testing.T) {
	res := &inspect.VerifyResult{
		Traces: 10, Mismatches: []inspect.VerifyCell{{From: "a/x", To: "b/y"}},
		ServiceTraces: 4, ServiceMismatches: []inspect.VerifyCell{{From: "a/x", To: "Service b/s"}},
	}
	traces, mismatches := verifyTotals(res)
	if traces != 14 || len(mismatches) != 2 || mismatches[1].To != "Service b/s" {
		t.Fatalf("verifyTotals = %d, %+v; want 14 traces and both mismatches", traces, mismatches)
	}
	if traces, mismatches := verifyTotals(&inspect.VerifyResult{ServiceTraces: 3, ServiceMismatches: []inspect.VerifyCell{{}}}); traces != 3 || len(mismatches) != 1 {
		t.Fatalf("Service-only run: %d traces, %d mismatches; want 3, 1", traces, len(mismatches))
	}
}
