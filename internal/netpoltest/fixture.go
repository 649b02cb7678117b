// Package netpoltest is test support shared by the policy test suites: the
// upstream-style cluster of namespaces x, y, z × pods a, b, c, the
// expectation matrix ("reachability") and its printing, and the verdicts of
// the reference evaluator.
package netpoltest

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/evaluator"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"k8s.io/apimachinery/pkg/labels"
)

// Namespaces and pod names of the standard fixture.
var (
	NamespaceNames = []string{"x", "y", "z"}
	PodNames       = []string{"a", "b", "c"}
)

// Probe is one protocol/port a connection is tried on.
type Probe struct {
	Protocol model.Protocol
	Port     int32
}

func (p Probe) String() string { return fmt.Sprintf("%s/%d", p.Protocol, p.Port) }

// StandardProbes are TCP, UDP and SCTP on ports 80 and 81.
var StandardProbes = []Probe{
	{model.TCP, 80}, {model.TCP, 81},
	{model.UDP, 80}, {model.UDP, 81},
	{model.SCTP, 80}, {model.SCTP, 81},
}

// Special sources besides the pods.
const (
	// SourceNode is the host of the node the destination runs on.
	SourceNode = "node"
	// SourceExternal is an address outside the cluster.
	SourceExternal = "ext"
)

// ExternalIP is the address SourceExternal uses.
var ExternalIP = netip.MustParseAddr("192.0.2.10")

// NodeIP returns the host address of node number i (1-based).
func NodeIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{172, 18, 0, byte(i)}) }

// Fixture is a cluster of namespaces x, y, z (labelled ns=NAME and
// kubernetes.io/metadata.name=NAME) with pods a, b, c in each (labelled
// pod=NAME), each declaring named ports serve-80-tcp ... serve-81-sctp.
type Fixture struct {
	Cluster *model.Cluster
	// Pods by "ns/name", in fixture order.
	Pods  map[string]*model.Pod
	Order []string
	// Nodes lists node names; pods are spread over them by NodeOf.
	Nodes []string
}

// Options shape a fixture.
type Options struct {
	Mode model.Mode
	// Nodes: how many nodes ("node-1", ...); pods go round-robin by index
	// unless NodeOf says otherwise. Default 1.
	Nodes  int
	NodeOf func(ns, pod string) int // returns a 1-based node number
	// DualStack gives every pod an IPv6 address too.
	DualStack bool
}

// NewFixture builds the x/y/z × a/b/c cluster.
func NewFixture(o Options) *Fixture {
	if o.Nodes == 0 {
		o.Nodes = 1
	}
	if o.Mode == "" {
		o.Mode = model.ModeV1
	}
	f := &Fixture{Cluster: model.NewCluster(o.Mode), Pods: map[string]*model.Pod{}}
	for i := 1; i <= o.Nodes; i++ {
		f.Nodes = append(f.Nodes, fmt.Sprintf("node-%d", i))
	}
	n := 0
	for ni, ns := range NamespaceNames {
		f.Cluster.AddNamespace(&model.Namespace{Name: ns, Labels: labels.Set{"ns": ns, "kubernetes.io/metadata.name": ns}})
		for pi, name := range PodNames {
			node := n%o.Nodes + 1
			if o.NodeOf != nil {
				node = o.NodeOf(ns, name)
			}
			n++
			ips := []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(ni + 1), byte(pi + 1)})}
			if o.DualStack {
				ips = append(ips, netip.MustParseAddr(fmt.Sprintf("fd00:10:1::%d:%d", ni+1, pi+1)))
			}
			pod := &model.Pod{
				UID: "uid-" + ns + "-" + name, Namespace: ns, Name: name,
				Labels: labels.Set{"pod": name}, Node: f.Nodes[node-1], IPs: ips, Phase: "Running",
			}
			for _, p := range StandardProbes {
				pod.Ports = append(pod.Ports, model.ContainerPort{
					Name: fmt.Sprintf("serve-%d-%s", p.Port, strings.ToLower(string(p.Protocol))), Port: p.Port, Protocol: p.Protocol})
			}
			f.Cluster.AddPod(pod)
			f.Pods[pod.Key()] = pod
			f.Order = append(f.Order, pod.Key())
		}
	}
	return f
}

// NodeIndex returns the 1-based number of a node name.
func (f *Fixture) NodeIndex(node string) int {
	for i, n := range f.Nodes {
		if n == node {
			return i + 1
		}
	}
	return 0
}

// Sources are every pod, then the destination's node, then an external IP.
func (f *Fixture) Sources() []string {
	return append(append([]string(nil), f.Order...), SourceNode, SourceExternal)
}

// Endpoints returns the evaluator's view of a source and a destination pod
// for the given address family (4 or 6).
func (f *Fixture) Endpoints(src, dst string, fam int) (evaluator.Endpoint, evaluator.Endpoint, bool) {
	d := f.Pods[dst]
	dip, ok := PodIP(d, fam)
	if !ok {
		return evaluator.Endpoint{}, evaluator.Endpoint{}, false
	}
	de := evaluator.PodEndpoint(d, dip)
	switch src {
	case SourceNode:
		if fam == 6 {
			return evaluator.Endpoint{}, evaluator.Endpoint{}, false
		}
		return evaluator.Endpoint{IP: NodeIP(f.NodeIndex(d.Node)), HostOf: d.Node}, de, true
	case SourceExternal:
		if fam == 6 {
			return evaluator.Endpoint{}, evaluator.Endpoint{}, false
		}
		return evaluator.Endpoint{IP: ExternalIP}, de, true
	}
	s := f.Pods[src]
	sip, ok := PodIP(s, fam)
	if !ok {
		return evaluator.Endpoint{}, evaluator.Endpoint{}, false
	}
	return evaluator.PodEndpoint(s, sip), de, true
}

// PodIP returns the pod's address of family fam.
func PodIP(p *model.Pod, fam int) (netip.Addr, bool) {
	for _, ip := range p.IPs {
		if ip.Is4() == (fam == 4) {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// Reachability is an expected (or observed) matrix: for each probe, source
// and destination pod, whether a new connection gets through.
type Reachability struct {
	f       *Fixture
	probes  []Probe
	allowed map[cell]bool
}

type cell struct {
	probe    Probe
	src, dst string
}

// NewReachability starts a matrix with every cell set to def.
func NewReachability(f *Fixture, probes []Probe, def bool) *Reachability {
	r := &Reachability{f: f, probes: probes, allowed: map[cell]bool{}}
	for _, p := range probes {
		for _, s := range f.Sources() {
			for _, d := range f.Order {
				r.allowed[cell{p, s, d}] = def
			}
		}
	}
	return r
}

// Probes returns the probes of the matrix.
func (r *Reachability) Probes() []Probe { return r.probes }

// Set records one cell.
func (r *Reachability) Set(p Probe, src, dst string, allowed bool) {
	r.allowed[cell{p, src, dst}] = allowed
}

// Get reads one cell.
func (r *Reachability) Get(p Probe, src, dst string) bool { return r.allowed[cell{p, src, dst}] }

// Expect sets every cell whose source matches from, destination matches to
// and probe is among probes (all probes when none are given). Patterns:
// "x/a", "x/*", "*/a", "*" (every pod), "node", "ext", "all" (pods, node and
// ext). Several patterns can be joined with "|".
func (r *Reachability) Expect(from, to string, allowed bool, probes ...Probe) *Reachability {
	if len(probes) == 0 {
		probes = r.probes
	}
	for _, p := range probes {
		for _, s := range r.f.Sources() {
			if !MatchPattern(from, s) {
				continue
			}
			for _, d := range r.f.Order {
				if MatchPattern(to, d) {
					r.allowed[cell{p, s, d}] = allowed
				}
			}
		}
	}
	return r
}

// ExpectSelfAndNode applies the rules every matrix obeys whatever the
// policies: a pod reaches itself and the node reaches its pods.
func (r *Reachability) ExpectSelfAndNode() *Reachability {
	for _, p := range r.probes {
		for _, d := range r.f.Order {
			r.allowed[cell{p, d, d}] = true
			r.allowed[cell{p, SourceNode, d}] = true
		}
	}
	return r
}

// MatchPattern reports whether a source or destination name ("x/a",
// "node", "ext") matches an expectation pattern (see Reachability.Expect).
func MatchPattern(pattern, name string) bool {
	for _, pat := range strings.Split(pattern, "|") {
		switch {
		case pat == "all":
			return true
		case pat == SourceNode || pat == SourceExternal:
			if name == pat {
				return true
			}
		case name == SourceNode || name == SourceExternal:
		case pat == "*":
			return true
		default:
			ns, pod, _ := strings.Cut(name, "/")
			pns, ppod, _ := strings.Cut(pat, "/")
			if (pns == "*" || pns == ns) && (ppod == "*" || ppod == pod) {
				return true
			}
		}
	}
	return false
}

// Evaluate fills a matrix from the reference evaluator (IPv4 addresses).
func Evaluate(f *Fixture, probes []Probe) *Reachability {
	r := NewReachability(f, probes, false)
	for _, p := range probes {
		for _, s := range f.Sources() {
			for _, d := range f.Order {
				se, de, ok := f.Endpoints(s, d, 4)
				if !ok {
					continue
				}
				r.Set(p, s, d, evaluator.Allowed(f.Cluster, se, de, p.Protocol, p.Port).Allowed)
			}
		}
	}
	return r
}

// Diff lists the cells where r and other disagree, and renders both
// matrices for each probe that differs (rows = from, columns = to, "."
// connected, "X" blocked, "*" marking the wrong cells).
func (r *Reachability) Diff(other *Reachability, rName, otherName string) (int, string) {
	var b strings.Builder
	wrong := 0
	for _, p := range r.probes {
		var cells []string
		for _, s := range r.f.Sources() {
			for _, d := range r.f.Order {
				if r.Get(p, s, d) != other.Get(p, s, d) {
					cells = append(cells, fmt.Sprintf("%s->%s", s, d))
				}
			}
		}
		if len(cells) == 0 {
			continue
		}
		wrong += len(cells)
		sort.Strings(cells)
		fmt.Fprintf(&b, "probe %s: %d cells differ: %s\n", p, len(cells), strings.Join(cells, " "))
		fmt.Fprintf(&b, "%s:\n%s%s:\n%s", rName, r.render(p, other), otherName, other.render(p, r))
	}
	return wrong, b.String()
}

// Render draws one probe's matrix.
func (r *Reachability) Render(p Probe) string { return r.render(p, nil) }

func (r *Reachability) render(p Probe, cmp *Reachability) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-6s", "")
	for _, d := range r.f.Order {
		fmt.Fprintf(&b, "%-5s", d)
	}
	b.WriteByte('\n')
	for _, s := range r.f.Sources() {
		fmt.Fprintf(&b, "%-6s", s)
		for _, d := range r.f.Order {
			c := "X"
			if r.Get(p, s, d) {
				c = "."
			}
			if cmp != nil && cmp.Get(p, s, d) != r.Get(p, s, d) {
				c += "*"
			}
			fmt.Fprintf(&b, "%-5s", c)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Cells counts the cells of the matrix.
func (r *Reachability) Cells() int { return len(r.allowed) }
