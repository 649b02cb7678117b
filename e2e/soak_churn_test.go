package e2e

// The churn machinery of TestChurnSoak (soak_test.go): the objects it owns,
// the random events it applies, and what it measures about the agent (log
// lines, metrics, RSS).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// Label vocabulary of the soak: pods carry app and tier, namespaces team and
// env; selectors also use values nobody carries ("none").
var (
	soakApps  = []string{"web", "db", "cache"}
	soakTiers = []string{"front", "back"}
	soakTeams = []string{"red", "blue"}
	soakEnvs  = []string{"prod", "dev"}
)

// soakState is what the churn created or changed, so that the end of the
// run can bring the cluster back to the initial object set.
type soakState struct {
	w          *world
	rng        *rand.Rand
	namespaces []string
	local      *node
	remoteNode string

	// Initial objects and their original labels / specs.
	initPodLabels map[string]map[string]string // ns/name -> labels
	initNSLabels  map[string]map[string]string
	initPolicies  map[string]networkingv1.NetworkPolicySpec // ns/name

	// Objects created by the churn (deleted at the end).
	remotePods   map[string]string // ns/name -> IP
	freeRemoteIP []string
	localPods    map[string]*pod
	policies     map[string]bool // ns/name of every policy that exists now

	seq    int
	counts map[string]int // events applied by kind
}

func soakCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func soakPick[T any](rng *rand.Rand, list []T) T { return list[rng.IntN(len(list))] }

// randomPodLabels keeps "pod" (the Services select it) and draws the rest.
func (s *soakState) randomPodLabels(name string) map[string]string {
	l := map[string]string{"pod": name}
	if s.rng.IntN(5) != 0 {
		l["app"] = soakPick(s.rng, soakApps)
	}
	if s.rng.IntN(3) != 0 {
		l["tier"] = soakPick(s.rng, soakTiers)
	}
	return l
}

func (s *soakState) randomNSLabels() map[string]string {
	l := map[string]string{}
	if s.rng.IntN(4) != 0 {
		l["team"] = soakPick(s.rng, soakTeams)
	}
	if s.rng.IntN(3) != 0 {
		l["env"] = soakPick(s.rng, soakEnvs)
	}
	return l
}

// ---- random NetworkPolicies (networking.k8s.io/v1, valid for the apiserver)

func (s *soakState) randomSelector(allowEmpty bool) *metav1.LabelSelector {
	switch r := s.rng.IntN(6); {
	case r == 0 && allowEmpty:
		return &metav1.LabelSelector{}
	case r <= 2:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": soakPick(s.rng, append(soakApps, "none"))}}
	case r == 3:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{soakPick(s.rng, soakTiers)}}}}
	case r == 4:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{soakPick(s.rng, soakApps)}}}}
	default:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "tier", Operator: metav1.LabelSelectorOpExists}}}
	}
}

func (s *soakState) randomNSSelector() *metav1.LabelSelector {
	switch s.rng.IntN(4) {
	case 0:
		return &metav1.LabelSelector{}
	case 1:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"team": soakPick(s.rng, soakTeams)}}
	case 2:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"env": soakPick(s.rng, soakEnvs)}}
	default:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": soakPick(s.rng, s.namespaces)}}
	}
}

// randomIPBlock overlaps the local pods (.1.x), the remote pods (.2.x) and
// the node address (.1.1).
func (s *soakState) randomIPBlock() *networkingv1.IPBlock {
	n := s.w.net16
	switch s.rng.IntN(5) {
	case 0:
		return &networkingv1.IPBlock{CIDR: n + ".0.0/16"}
	case 1:
		return &networkingv1.IPBlock{CIDR: n + ".1.0/24", Except: []string{n + ".1.0/28"}}
	case 2:
		return &networkingv1.IPBlock{CIDR: n + ".2.0/24"}
	case 3:
		return &networkingv1.IPBlock{CIDR: n + ".1.8/29"}
	default:
		return &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{n + ".2.0/25"}}
	}
}

func (s *soakState) randomPeer() networkingv1.NetworkPolicyPeer {
	switch s.rng.IntN(4) {
	case 0:
		return networkingv1.NetworkPolicyPeer{PodSelector: s.randomSelector(true)}
	case 1:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: s.randomNSSelector()}
	case 2:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: s.randomNSSelector(), PodSelector: s.randomSelector(true)}
	default:
		return networkingv1.NetworkPolicyPeer{IPBlock: s.randomIPBlock()}
	}
}

func (s *soakState) randomPorts() []networkingv1.NetworkPolicyPort {
	tcp, udp, sctp := corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP
	var out []networkingv1.NetworkPolicyPort
	for i := s.rng.IntN(3); i > 0; i-- {
		switch s.rng.IntN(6) {
		case 0:
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: ptr.To(intstr.FromInt32(80))})
		case 1:
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &udp, Port: ptr.To(intstr.FromInt32(80))})
		case 2:
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: ptr.To(intstr.FromString("serve-81-tcp"))})
		case 3:
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: ptr.To(intstr.FromInt32(80)), EndPort: ptr.To(int32(81))})
		case 4:
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &sctp, Port: ptr.To(intstr.FromInt32(81))})
		default:
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &udp})
		}
	}
	return out
}

func (s *soakState) randomPolicySpec() networkingv1.NetworkPolicySpec {
	spec := networkingv1.NetworkPolicySpec{PodSelector: *s.randomSelector(true)}
	ingress, egress := true, false
	switch s.rng.IntN(4) {
	case 0:
		ingress, egress = false, true
	case 1:
		egress = true
	}
	if ingress {
		spec.PolicyTypes = append(spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		for i := s.rng.IntN(3); i > 0; i-- {
			r := networkingv1.NetworkPolicyIngressRule{Ports: s.randomPorts()}
			for j := s.rng.IntN(3); j > 0; j-- {
				r.From = append(r.From, s.randomPeer())
			}
			spec.Ingress = append(spec.Ingress, r)
		}
	}
	if egress {
		spec.PolicyTypes = append(spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		for i := s.rng.IntN(3); i > 0; i-- {
			r := networkingv1.NetworkPolicyEgressRule{Ports: s.randomPorts()}
			for j := s.rng.IntN(3); j > 0; j-- {
				r.To = append(r.To, s.randomPeer())
			}
			spec.Egress = append(spec.Egress, r)
		}
	}
	return spec
}

// ---- events

// remotePodObject is a pod of the other node: only API objects (no
// namespace, no switch), as a remote node's kubelet would publish them.
func (s *soakState) remotePodObject(ns, name, ip string, labels map[string]string) *corev1.Pod {
	no := false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: s.remoteNode, AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "agnhost", Image: "netpol-agnhost", Ports: standardPorts()}}},
	}
}

func (s *soakState) createRemotePod(ns, name string, labels map[string]string) error {
	if len(s.freeRemoteIP) == 0 {
		return nil
	}
	ip := s.freeRemoteIP[0]
	ctx, cancel := soakCtx()
	defer cancel()
	pods := s.w.c.Client.CoreV1().Pods(ns)
	created, err := pods.Create(ctx, s.remotePodObject(ns, name, ip, labels), metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating remote pod %s/%s: %w", ns, name, err)
	}
	s.freeRemoteIP = s.freeRemoteIP[1:]
	s.remotePods[ns+"/"+name] = ip
	created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	if _, err := pods.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("status of remote pod %s/%s: %w", ns, name, err)
	}
	return nil
}

func (s *soakState) deleteRemotePod(key string) error {
	ns, name, _ := strings.Cut(key, "/")
	ctx, cancel := soakCtx()
	defer cancel()
	zero := int64(0)
	if err := s.w.c.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		return fmt.Errorf("deleting remote pod %s: %w", key, err)
	}
	s.freeRemoteIP = append(s.freeRemoteIP, s.remotePods[key])
	delete(s.remotePods, key)
	return nil
}

func (s *soakState) setPodLabels(key string, labels map[string]string) error {
	ns, name, _ := strings.Cut(key, "/")
	ctx, cancel := soakCtx()
	defer cancel()
	pods := s.w.c.Client.CoreV1().Pods(ns)
	p, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("relabelling pod %s: %w", key, err)
	}
	p.Labels = labels
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("relabelling pod %s: %w", key, err)
	}
	return nil
}

// setNSLabels replaces a namespace's labels, keeping the apiserver's
// kubernetes.io/metadata.name.
func (s *soakState) setNSLabels(name string, labels map[string]string) error {
	ctx, cancel := soakCtx()
	defer cancel()
	cl := s.w.c.Client.CoreV1().Namespaces()
	ns, err := cl.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("relabelling namespace %s: %w", name, err)
	}
	l := map[string]string{"kubernetes.io/metadata.name": name}
	for k, v := range labels {
		l[k] = v
	}
	ns.Labels = l
	if _, err := cl.Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("relabelling namespace %s: %w", name, err)
	}
	return nil
}

// putPolicy creates the policy or replaces its spec.
func (s *soakState) putPolicy(key string, spec networkingv1.NetworkPolicySpec) error {
	ns, name, _ := strings.Cut(key, "/")
	ctx, cancel := soakCtx()
	defer cancel()
	cl := s.w.c.Client.NetworkingV1().NetworkPolicies(ns)
	old, err := cl.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = cl.Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}, metav1.CreateOptions{})
	case err == nil:
		old.Spec = spec
		_, err = cl.Update(ctx, old, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("policy %s: %w", key, err)
	}
	s.policies[key] = true
	return nil
}

func (s *soakState) deletePolicy(key string) error {
	ns, name, _ := strings.Cut(key, "/")
	ctx, cancel := soakCtx()
	defer cancel()
	if err := s.w.c.Client.NetworkingV1().NetworkPolicies(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("deleting policy %s: %w", key, err)
	}
	delete(s.policies, key)
	return nil
}

// Caps on what the churn creates, so that the load stays steady.
const (
	soakMaxRemote   = 60
	soakMaxLocal    = 3
	soakMaxPolicies = 24
)

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// allPodKeys are the pods a relabel may pick: initial and created.
func (s *soakState) allPodKeys() []string {
	keys := sortedKeys(s.initPodLabels)
	keys = append(keys, sortedKeys(s.remotePods)...)
	return append(keys, sortedKeys(s.localPods)...)
}

// step applies one random event; it returns its kind. Keys are sorted
// before a random pick so that a seed replays the same choices.
func (s *soakState) step() (string, error) {
	s.seq++
	r := s.rng.IntN(100)
	switch {
	case r < 22: // remote pod created (deleted instead at the cap)
		if len(s.remotePods) < soakMaxRemote {
			ns := soakPick(s.rng, s.namespaces)
			name := fmt.Sprintf("r%d", s.seq)
			return "remote pod create", s.createRemotePod(ns, name, s.randomPodLabels(name))
		}
		fallthrough
	case r < 38:
		if len(s.remotePods) == 0 {
			return s.step()
		}
		return "remote pod delete", s.deleteRemotePod(soakPick(s.rng, sortedKeys(s.remotePods)))
	case r < 42: // a local pod (CNI, namespace, server): costly, so rarer
		if len(s.localPods) < soakMaxLocal {
			ns := soakPick(s.rng, s.namespaces)
			name := fmt.Sprintf("c%d", s.seq)
			p := s.local.addPod(s.w.t, podSpec{ns: ns, name: name, labels: s.randomPodLabels(name), ports: standardPorts()})
			s.localPods[p.key()] = p
			return "local pod create", nil
		}
		key := soakPick(s.rng, sortedKeys(s.localPods))
		s.w.deletePod(s.w.t, s.localPods[key])
		delete(s.localPods, key)
		return "local pod delete", nil
	case r < 62:
		key := soakPick(s.rng, s.allPodKeys())
		_, name, _ := strings.Cut(key, "/")
		return "pod relabel", s.setPodLabels(key, s.randomPodLabels(name))
	case r < 67:
		return "namespace relabel", s.setNSLabels(soakPick(s.rng, s.namespaces), s.randomNSLabels())
	case r < 80:
		if len(s.policies) < soakMaxPolicies {
			key := fmt.Sprintf("%s/p%d", soakPick(s.rng, s.namespaces), s.seq)
			return "policy create", s.putPolicy(key, s.randomPolicySpec())
		}
		fallthrough
	case r < 93:
		if len(s.policies) == 0 {
			return s.step()
		}
		return "policy update", s.putPolicy(soakPick(s.rng, sortedKeys(s.policies)), s.randomPolicySpec())
	default:
		if len(s.policies) == 0 {
			return s.step()
		}
		return "policy delete", s.deletePolicy(soakPick(s.rng, sortedKeys(s.policies)))
	}
}

// restore brings the cluster back to the initial object set: created pods
// and policies deleted, initial labels and policy specs put back.
func (s *soakState) restore() error {
	for _, key := range sortedKeys(s.localPods) {
		s.w.deletePod(s.w.t, s.localPods[key])
		delete(s.localPods, key)
	}
	for _, key := range sortedKeys(s.remotePods) {
		if _, initial := s.initPodLabels[key]; initial {
			continue
		}
		if err := s.deleteRemotePod(key); err != nil {
			return err
		}
	}
	for _, key := range sortedKeys(s.policies) {
		if _, initial := s.initPolicies[key]; !initial {
			if err := s.deletePolicy(key); err != nil {
				return err
			}
		}
	}
	for _, key := range sortedKeys(s.initPolicies) {
		if err := s.putPolicy(key, s.initPolicies[key]); err != nil {
			return err
		}
	}
	for _, key := range sortedKeys(s.initPodLabels) {
		if err := s.setPodLabels(key, s.initPodLabels[key]); err != nil {
			return err
		}
	}
	for _, ns := range sortedKeys(s.initNSLabels) {
		if err := s.setNSLabels(ns, s.initNSLabels[ns]); err != nil {
			return err
		}
	}
	return nil
}

// currentCluster reads the soak namespaces and their pods and policies from
// the apiserver and normalizes them the way `ovs-netpol compile` normalizes
// manifests: the state the evaluator judges. Other namespaces are left out:
// earlier tests' Pod objects stay in the shared cluster (no kubelet), some
// with addresses reused since (two live pods with one IP are an error), and
// nothing outside the soak namespaces changes a verdict between soak pods
// (policies apply to pods of their own namespace; a peer selector matches
// the connection's own pod).
func currentCluster(w *world, namespaces []string) (*model.Cluster, error) {
	ctx, cancel := soakCtx()
	defer cancel()
	cs := w.c.Client
	objs := &manifest.Objects{}
	for _, name := range namespaces {
		ns, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		objs.Namespaces = append(objs.Namespaces, ns)
		pods, err := cs.CoreV1().Pods(name).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for i := range pods.Items {
			objs.Pods = append(objs.Pods, &pods.Items[i])
		}
		pols, err := cs.NetworkingV1().NetworkPolicies(name).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for i := range pols.Items {
			objs.PoliciesV1 = append(objs.PoliciesV1, &pols.Items[i])
		}
	}
	c, _, err := objs.Cluster(model.ModeV1)
	return c, err
}

// ---- the agent, observed

// agentMetrics reads the agent's counters (name{labels} -> value).
func agentMetrics(a *agent) (map[string]float64, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("agent metrics: %w", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "ovs_netpol_") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err == nil {
			out[l[:i]] = v
		}
	}
	return out, sc.Err()
}

// sumPrefix adds the metrics whose name starts with prefix (every label set).
func sumPrefix(m map[string]float64, prefix string) float64 {
	var s float64
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			s += v
		}
	}
	return s
}

// logProblems returns the agent log's warning, error and fatal lines from
// byte offset from on (logrus text or JSON format).
func logProblems(path string, from int64) ([]string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, from, err
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return nil, from, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, from, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, lvl := range []string{"warning", "error", "fatal", "panic"} {
			if strings.Contains(l, "level="+lvl) || strings.Contains(l, `"level":"`+lvl+`"`) || strings.HasPrefix(l, "panic:") {
				out = append(out, l)
				break
			}
		}
	}
	return out, from + int64(len(b)), nil
}

// rssSampler samples a process's resident set size (VmRSS) periodically.
type rssSampler struct {
	pid     int
	mu      sync.Mutex
	samples []int64 // KiB
	err     error
	stop    chan struct{}
	done    chan struct{}
}

func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func startRSSSampler(pid int, every time.Duration) *rssSampler {
	r := &rssSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	sample := func() {
		kb, err := readRSS(pid)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.err = err
			return
		}
		r.samples = append(r.samples, kb)
	}
	sample()
	go func() {
		defer close(r.done)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-r.stop:
				sample()
				return
			case <-tk.C:
				sample()
			}
		}
	}()
	return r
}

// finish stops sampling (one last sample) and returns the samples.
func (r *rssSampler) finish() ([]int64, error) {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.samples, r.err
}

// ---- the bridge, dumped

// bridgeDump is br-int's flows and groups as `ovs-ofctl dump-flows
// --no-stats` and `dump-groups` print them, each sorted.
type bridgeDump struct{ flows, groups string }

func dumpBridge(n *node) (bridgeDump, error) {
	f, err := n.sw.DumpFlows(bridge, true)
	if err != nil {
		return bridgeDump{}, err
	}
	sort.Strings(f)
	out, err := n.sw.Ofctl("-O", "OpenFlow15", "dump-groups", bridge)
	if err != nil {
		return bridgeDump{}, err
	}
	var g []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, " ") && strings.TrimSpace(l) != "" {
			g = append(g, strings.TrimSpace(l))
		}
	}
	sort.Strings(g)
	return bridgeDump{strings.Join(f, "\n"), strings.Join(g, "\n")}, nil
}

// soakService gives a pod a Service (TCP 80) and an EndpointSlice with its
// address, so that the bridge has groups to compare too.
func soakService(w *world, ns, podName, ip, nodeName string) error {
	ctx, cancel := soakCtx()
	defer cancel()
	name := "s-" + podName
	svc, err := w.c.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"pod": podName},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(80)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("service %s/%s: %w", ns, name, err)
	}
	_ = svc
	_, err = w.c.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "e2e.ovs-netpol.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(int32(80))}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{ip}, NodeName: ptr.To(nodeName),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("EndpointSlice %s/%s: %w", ns, name, err)
	}
	return nil
}
