package k8stest_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/ovs-netpol/ovs-netpol/internal/k8stest"
)

func manifestsDir(t *testing.T) string {
	t.Helper()
	root, err := k8stest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "manifests")
}

// The deployment manifests are accepted by a real API server, and the agent's
// ServiceAccount gets exactly the permissions it needs.
func TestManifests(t *testing.T) {
	t.Parallel()
	c := k8stest.Shared(t)
	dir := manifestsDir(t)
	// Namespaced objects can only be dry-run into an existing namespace.
	if out, err := c.Kubectl("apply", "-f", filepath.Join(dir, "namespace.yaml")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	t.Run("ServerDryRun", func(t *testing.T) {
		out, err := c.Kubectl("apply", "--dry-run=server", "-k", dir)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, obj := range []string{
			"namespace/ovs-netpol",
			"serviceaccount/ovs-netpol-agent",
			"clusterrole.rbac.authorization.k8s.io/ovs-netpol-agent",
			"clusterrolebinding.rbac.authorization.k8s.io/ovs-netpol-agent",
			"daemonset.apps/ovs-netpol-agent",
		} {
			if !strings.Contains(out, obj+" ") || !strings.Contains(out, "(server dry run)") {
				t.Errorf("kubectl apply --dry-run=server -k: no %s in:\n%s", obj, out)
			}
		}
		if t.Failed() {
			return
		}
		// Dry run: nothing but the namespace exists.
		if _, err := c.Client.AppsV1().DaemonSets(k8stest.AgentNamespace).Get(context.Background(), "ovs-netpol-agent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("DaemonSet after a dry run: %v", err)
		}
	})

	t.Run("AgentRBACLeastPrivilege", func(t *testing.T) {
		if out, err := c.Kubectl("apply", "-f", filepath.Join(dir, "rbac.yaml")); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		agent, err := c.UserClient(k8stest.AgentUser)
		if err != nil {
			t.Fatal(err)
		}
		checkAgentCan(t, c, agent)
		checkAgentCannot(t, agent)
		checkExactPermissions(t, c)
	})
}

// checkAgentCan does, with the agent's own token, everything the agent does.
func checkAgentCan(t *testing.T, c *k8stest.Cluster, agent kubernetes.Interface) {
	t.Helper()
	ctx := ctxFor(t)
	node, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "rbac-node"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.10"}}
	if _, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	onNode := metav1.ListOptions{FieldSelector: "spec.nodeName=rbac-node"}
	ops := map[string]func() error{
		"list pods on its node": func() error { _, err := agent.CoreV1().Pods("").List(ctx, onNode); return err },
		"list and watch pods on its node": func() error {
			l, err := agent.CoreV1().Pods("").List(ctx, onNode)
			if err != nil {
				return err
			}
			return watchFrom(agent.CoreV1().Pods("").Watch(ctx, withRV(onNode, l.ResourceVersion)))
		},
		"list and watch namespaces": func() error {
			l, err := agent.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			return watchFrom(agent.CoreV1().Namespaces().Watch(ctx, withRV(metav1.ListOptions{}, l.ResourceVersion)))
		},
		"list and watch networkpolicies": func() error {
			l, err := agent.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			return watchFrom(agent.NetworkingV1().NetworkPolicies("").Watch(ctx, withRV(metav1.ListOptions{}, l.ResourceVersion)))
		},
		"list and watch services": func() error {
			l, err := agent.CoreV1().Services("").List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			return watchFrom(agent.CoreV1().Services("").Watch(ctx, withRV(metav1.ListOptions{}, l.ResourceVersion)))
		},
		"list and watch endpointslices": func() error {
			l, err := agent.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			return watchFrom(agent.DiscoveryV1().EndpointSlices("").Watch(ctx, withRV(metav1.ListOptions{}, l.ResourceVersion)))
		},
		"get its node's addresses": func() error {
			n, err := agent.CoreV1().Nodes().Get(ctx, "rbac-node", metav1.GetOptions{})
			if err == nil && (len(n.Status.Addresses) != 1 || n.Status.Addresses[0].Address != "192.168.1.10") {
				err = fmt.Errorf("addresses %v", n.Status.Addresses)
			}
			return err
		},
		"list and watch nodes": func() error {
			l, err := agent.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			return watchFrom(agent.CoreV1().Nodes().Watch(ctx, withRV(metav1.ListOptions{}, l.ResourceVersion)))
		},
		"create and patch a core event": func() error {
			// Events about cluster-scoped objects (nodes) live in "default".
			ev, err := agent.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{GenerateName: "ovs-netpol-agent-"},
				InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: "rbac-node", UID: node.UID},
				Reason:         "FlowsSynced", Message: "ok", Type: corev1.EventTypeNormal, Count: 1,
				Source: corev1.EventSource{Component: "ovs-netpol-agent", Host: "rbac-node"},
			}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			_, err = agent.CoreV1().Events(metav1.NamespaceDefault).Patch(ctx, ev.Name, types.StrategicMergePatchType,
				[]byte(`{"count":2}`), metav1.PatchOptions{})
			return err
		},
	}
	for name, op := range ops {
		if err := op(); err != nil {
			t.Errorf("the agent cannot %s: %v", name, err)
		}
	}
}

// withRV watches from a list's resourceVersion, as an informer does (measured:
// a watch without one returns only after ~3 s on this API server + etcd 3.4).
func withRV(o metav1.ListOptions, rv string) metav1.ListOptions {
	o.ResourceVersion = rv
	return o
}

func watchFrom(w watch.Interface, err error) error {
	if err == nil {
		w.Stop()
	}
	return err
}

// checkAgentCannot tries, with the agent's own token, what it must not do.
func checkAgentCannot(t *testing.T, agent kubernetes.Interface) {
	t.Helper()
	ctx := ctxFor(t)
	ops := map[string]func() error{
		"create pods": func() error {
			_, err := agent.CoreV1().Pods("default").Create(ctx, k8stest.NewPod("default", "evil", "rbac-node", nil), metav1.CreateOptions{})
			return err
		},
		"patch pods": func() error {
			_, err := agent.CoreV1().Pods("default").Patch(ctx, "x", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{})
			return err
		},
		"delete networkpolicies": func() error {
			return agent.NetworkingV1().NetworkPolicies("default").Delete(ctx, "x", metav1.DeleteOptions{})
		},
		"list secrets": func() error { _, err := agent.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); return err },
		"get a secret": func() error {
			_, err := agent.CoreV1().Secrets(k8stest.AgentNamespace).Get(ctx, "x", metav1.GetOptions{})
			return err
		},
		"list configmaps": func() error {
			_, err := agent.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
			return err
		},
		"update node status": func() error {
			_, err := agent.CoreV1().Nodes().Patch(ctx, "rbac-node", types.MergePatchType, []byte(`{"status":{}}`), metav1.PatchOptions{}, "status")
			return err
		},
		"create events.k8s.io events": func() error {
			_, err := agent.EventsV1().Events(metav1.NamespaceDefault).Create(ctx, &eventsv1.Event{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "ovs-netpol-agent-"},
				EventTime:  metav1.NowMicro(), ReportingController: "ovs-netpol.io/agent", ReportingInstance: "rbac-node",
				Action: "Sync", Reason: "FlowsSynced", Type: corev1.EventTypeNormal,
				Regarding: corev1.ObjectReference{Kind: "Node", Name: "rbac-node", UID: "x"},
			}, metav1.CreateOptions{})
			return err
		},
		"create namespaces": func() error {
			_, err := agent.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "evil"}}, metav1.CreateOptions{})
			return err
		},
	}
	for name, op := range ops {
		if err := op(); !apierrors.IsForbidden(err) {
			t.Errorf("the agent can %s (or another error): %v", name, err)
		}
	}
}

// checkExactPermissions asks the API server (SubjectAccessReview) about every
// resource and subresource it serves and every verb, cluster-wide, for the
// agent and for another ServiceAccount of its namespace: what the agent may
// do beyond that baseline (discovery, self reviews) must be exactly the
// ClusterRole's list.
func checkExactPermissions(t *testing.T, c *k8stest.Cluster) {
	t.Helper()
	ctx := ctxFor(t)
	want := []string{
		"endpointslices.discovery.k8s.io.get", "endpointslices.discovery.k8s.io.list", "endpointslices.discovery.k8s.io.watch",
		"events.create", "events.patch",
		"namespaces.get", "namespaces.list", "namespaces.watch",
		"networkpolicies.networking.k8s.io.get", "networkpolicies.networking.k8s.io.list", "networkpolicies.networking.k8s.io.watch",
		"nodes.get", "nodes.list", "nodes.watch",
		"pods.get", "pods.list", "pods.watch",
		"services.get", "services.list", "services.watch",
	}
	lists, err := c.Client.Discovery().ServerPreferredResources()
	if err != nil {
		t.Fatal(err)
	}
	type check struct{ group, resource, sub, verb string }
	var checks []check
	standard := []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	for _, l := range lists {
		gv, err := parseGroup(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			res, sub, _ := strings.Cut(r.Name, "/")
			verbs := slices.Clone(standard)
			for _, v := range r.Verbs {
				if !slices.Contains(verbs, v) {
					verbs = append(verbs, v)
				}
			}
			for _, v := range verbs {
				checks = append(checks, check{gv, res, sub, v})
			}
		}
	}
	if len(checks) < 500 {
		t.Fatalf("only %d resource/verb pairs from discovery", len(checks))
	}

	allowed := func(user string, ch check) (bool, error) {
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User:   user,
			Groups: append(slices.Clone(k8stest.AgentGroups), "system:authenticated"),
			ResourceAttributes: &authzv1.ResourceAttributes{
				Group: ch.group, Resource: ch.resource, Subresource: ch.sub, Verb: ch.verb,
			},
		}}
		res, err := c.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return res.Status.Allowed, nil
	}
	var (
		mu    sync.Mutex
		extra []string
		errs  []error
		wg    sync.WaitGroup
		work  = make(chan check)
	)
	baseline := "system:serviceaccount:" + k8stest.AgentNamespace + ":baseline"
	for range 8 {
		wg.Go(func() {
			for ch := range work {
				a, err := allowed(k8stest.AgentUser, ch)
				b := false
				if a && err == nil {
					b, err = allowed(baseline, ch)
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if a && !b {
					name := ch.resource
					if ch.sub != "" {
						name += "/" + ch.sub
					}
					if ch.group != "" {
						name += "." + ch.group
					}
					extra = append(extra, name+"."+ch.verb)
				}
				mu.Unlock()
			}
		})
	}
	for _, ch := range checks {
		work <- ch
	}
	close(work)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("SubjectAccessReview: %v", errs[0])
	}
	slices.Sort(extra)
	slices.Sort(want)
	if !slices.Equal(extra, want) {
		t.Fatalf("the agent's permissions beyond a plain ServiceAccount (%d resource/verb pairs checked):\n got %v\nwant %v", len(checks), extra, want)
	}
	t.Logf("%d resource/verb pairs checked: the agent has exactly %v", len(checks), want)
}

func parseGroup(groupVersion string) (string, error) {
	gv, err := schema.ParseGroupVersion(groupVersion)
	return gv.Group, err
}
