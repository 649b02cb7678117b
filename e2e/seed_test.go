package e2e

// TestSeed: the Kubernetes 1.6 documentation example (examples/seed) end to
// end, with real traffic, under the agent in --isolation v1.6 and in v1:
// the namespace annotated with the documentation's exact command, its
// extensions/v1beta1 policy converted by `ovs-netpol convert` and applied
// with `kubectl apply`.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The documentation's command, verbatim.
const seedAnnotateCommand = `kubectl annotate ns default "net.beta.kubernetes.io/network-policy={\"ingress\": {\"isolation\": \"DefaultDeny\"}}"`

var seedPods = []string{"default/db", "default/frontend", "default/backend", "myproject/client", "other/stranger"}

func (w *world) seedMatrix() *matrix {
	from := append(append([]string(nil), seedPods...), srcNode, srcExt)
	return newMatrix([]probeT{tcp6379, tcp80}, from, seedPods, true)
}

// shell runs a command line with KUBECONFIG set to the cluster's admin.
func (w *world) shell(t *testing.T, line string) string {
	t.Helper()
	cmd := exec.Command("bash", "-c", line)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+w.c.Kubeconfig, "PATH="+binDir+":"+os.Getenv("PATH"))
	cmd.Dir = repoDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	return string(out)
}

// convertAndApply converts the seed's files with the built CLI and applies
// the result with kubectl.
func (w *world) convertAndApply(t *testing.T, files ...string) {
	t.Helper()
	args := []string{"convert"}
	for _, f := range files {
		args = append(args, "-f", filepath.Join(repoDir, "examples", "seed", f))
	}
	out, err := exec.Command(binPath("ovs-netpol"), args...).Output()
	if err != nil {
		t.Fatalf("ovs-netpol %s: %v", strings.Join(args, " "), err)
	}
	conv := filepath.Join(w.dir, "converted.yaml")
	if err := os.WriteFile(conv, out, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("ovs-netpol %s | kubectl apply -f -:\n%s", strings.Join(args, " "), w.shell(t, "kubectl apply -f "+conv))
}

func (w *world) resetSeed(t *testing.T) {
	t.Helper()
	w.deletePolicies(t, "default")
	w.annotate(t, "default", "")
}

func TestSeed(t *testing.T) {
	w := newWorld(t, "seed", "10.61")
	n := w.addNode(t)
	w.ensureNamespace(t, "myproject", map[string]string{"project": "myproject"})
	w.ensureNamespace(t, "other", nil)
	w.resetSeed(t)
	t.Cleanup(func() { w.resetSeed(t) })
	serve := func(ns, name string, labels map[string]string, ports ...corev1.ContainerPort) {
		n.addPod(t, podSpec{ns: ns, name: name, labels: labels, ports: ports, tcp: []int{80, 81, 6379}})
	}
	serve("default", "db", map[string]string{"role": "db"},
		corev1.ContainerPort{Name: "redis", ContainerPort: 6379}, corev1.ContainerPort{Name: "http", ContainerPort: 80})
	serve("default", "frontend", map[string]string{"role": "frontend"})
	serve("default", "backend", map[string]string{"role": "backend"}, corev1.ContainerPort{ContainerPort: 80})
	serve("myproject", "client", map[string]string{"app": "client"})
	serve("other", "stranger", map[string]string{"role": "frontend"})

	isolated := func(m *matrix) { m.expect("all", "default/*", false) }
	final := func(m *matrix) {
		isolated(m)
		m.expect("default/frontend|myproject/client", "default/db", true, tcp6379)
	}
	step := func(t *testing.T, name string, do func(), want func(*matrix)) {
		t.Run(name, func(t *testing.T) {
			if do != nil {
				w.change(t, do)
			}
			m := w.seedMatrix()
			if want != nil {
				want(m)
			}
			w.check(t, m.always())
			t.Logf("matrix:\n%s", m.render())
		})
	}
	for _, mode := range []string{"v1.6", "v1"} {
		t.Run("isolation-"+mode, func(t *testing.T) {
			w.resetSeed(t)
			n.startAgent(t, mode)
			w.waitPodsRealized(t)
			step(t, "open", nil, nil)
			step(t, "annotated", func() { w.shell(t, seedAnnotateCommand) }, isolated)
			step(t, "converted-policy-applied", func() { w.convertAndApply(t, "policy.yaml") }, final)
			if mode == "v1.6" {
				// Without the annotation a v1.6 policy has no effect at all.
				step(t, "annotation-removed", func() { w.annotate(t, "default", "") }, nil)
			} else {
				// Under v1 the policy alone isolates the pods it selects.
				step(t, "annotation-removed", func() { w.annotate(t, "default", "") }, func(m *matrix) {
					m.expect("all", "default/db", false).expect("default/frontend|myproject/client", "default/db", true, tcp6379)
				})
				// The migration path: the annotation converted to a deny-all policy.
				step(t, "namespace-and-policy-converted", func() { w.convertAndApply(t, "namespace.yaml", "policy.yaml") }, final)
			}
			totals.scenarios.Add(1)
		})
	}
}
