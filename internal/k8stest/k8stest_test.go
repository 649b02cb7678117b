package k8stest_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovs-netpol/ovs-netpol/internal/k8stest"
)

func TestMain(m *testing.M) { os.Exit(k8stest.RunShared(m)) }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func createNamespace(t *testing.T, c *k8stest.Cluster, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"team": name}}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctxFor(t), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A pod created without a kubelet gets its status (phase, IPs) and is found
// by the field selector the agent's informer uses; kubectl sees the same.
func TestPodWithStatus(t *testing.T) {
	t.Parallel()
	c := k8stest.Shared(t)
	ctx := ctxFor(t)
	createNamespace(t, c, "pods")

	pod, err := c.CreatePod(ctx, k8stest.NewPod("pods", "a", "node-1", map[string]string{"app": "a"}), []string{"10.244.1.5"})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP != "10.244.1.5" || len(pod.Status.PodIPs) != 1 {
		t.Fatalf("status after CreatePod: %+v", pod.Status)
	}
	if _, err := c.CreatePod(ctx, k8stest.NewPod("pods", "b", "node-2", nil), []string{"10.244.2.7", "fd00:10:244:2::7"}); err != nil {
		t.Fatal(err)
	}

	list, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != "a" || list.Items[0].Status.PodIP != "10.244.1.5" ||
		list.Items[0].Labels["app"] != "a" {
		t.Fatalf("pods on node-1: %+v", list.Items)
	}

	out, err := c.Kubectl("get", "pods", "-n", "pods", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.phase}/{.status.podIPs[*].ip}{"\n"}{end}`)
	if err != nil {
		t.Fatal(err)
	}
	if want := "a=Running/10.244.1.5\nb=Running/10.244.2.7 fd00:10:244:2::7\n"; out != want {
		t.Fatalf("kubectl get pods:\n%s\nwant:\n%s", out, want)
	}

	if err := c.DeletePod(ctx, "pods", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Pods("pods").Get(ctx, "a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pod a after DeletePod: %v, want NotFound", err)
	}
}

// Start gives an independent cluster (own etcd, ports, directory) next to the
// shared one; it reports the real version; impersonating kubeconfigs are
// subject to RBAC.
func TestStartIndependent(t *testing.T) {
	t.Parallel()
	own := k8stest.Start(t)
	shared := k8stest.Shared(t)
	if own.Server == shared.Server || own.Dir == shared.Dir {
		t.Fatalf("clusters share %s / %s", own.Server, own.Dir)
	}
	ctx := ctxFor(t)
	createNamespace(t, own, "only-here")
	if _, err := shared.Client.CoreV1().Namespaces().Get(ctx, "only-here", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("namespace of one cluster seen in the other: %v", err)
	}

	out, err := own.Kubectl("version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		ServerVersion struct{ GitVersion string } `json:"serverVersion"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.ServerVersion.GitVersion != k8stest.KubeVersion {
		t.Fatalf("server version %q (%v), want %s:\n%s", v.ServerVersion.GitVersion, err, k8stest.KubeVersion, out)
	}

	jane, err := own.UserKubeconfig("jane", "devs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := own.KubectlAs(jane, "get", "pods", "-n", "only-here"); err == nil || !strings.Contains(err.Error(), `"jane" cannot list resource "pods"`) {
		t.Fatalf("kubectl as jane: %v, want forbidden", err)
	}
	if out, err := own.KubectlAs(jane, "auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"); err != nil ||
		!strings.Contains(out, "devs") || !strings.Contains(out, "system:authenticated") {
		t.Fatalf("kubectl auth whoami as jane: %q, %v", out, err)
	}
}
