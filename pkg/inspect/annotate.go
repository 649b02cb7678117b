package inspect

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// OriginUnknown is the origin of a flow whose cookie the compiled view does
// not know: another controller's flow, or one of ours left from a state the
// agent has not caught up with (or that it failed to remove).
const OriginUnknown = "unknown (not ours or stale)"

// Node is one node's compiled view of the live (or file) cluster.
type Node struct {
	Cluster *model.Cluster
	Result  *compiler.Result // flows, groups, Origins (cookie → text), Conjunctions (conj_id → key)
	Config  compiler.Config
	// Warnings are those of manifest.Objects.Cluster (what will surprise).
	Warnings []string

	// rules maps each rule cookie to its rule.
	rules map[openflow.Cookie]RuleRef
	// conjs maps each conjunction ID to its rule.
	conjs map[uint32]RuleRef
}

// RuleRef names one NetworkPolicy rule (and, for a rule split by named
// port, the named-port group of the conjunction).
type RuleRef struct {
	Namespace, Policy string
	Direction         model.Direction
	Index             int
	// NamedPort is the named-port group key of a conjunction ("" for most).
	NamedPort string
}

// PolicyKey is namespace/name of the rule's policy.
func (r RuleRef) PolicyKey() string { return r.Namespace + "/" + r.Policy }

// String renders "policy NS/NAME ingress rule 0" (plus " named port KEY").
func (r RuleRef) String() string {
	s := fmt.Sprintf("policy %s %s rule %d", printable.String(r.PolicyKey()), r.Direction, r.Index)
	if r.NamedPort != "" {
		s += " named port " + printable.String(r.NamedPort)
	}
	return s
}

// parseConjKey reads the compiler's conjunction key
// "namespace/policy/direction/index[/named:group]". Namespace and policy
// names hold no "/" (the API server allows DNS names only).
func parseConjKey(key string) (RuleRef, bool) {
	parts := strings.SplitN(key, "/", 5)
	if len(parts) < 4 {
		return RuleRef{}, false
	}
	idx, err := strconv.Atoi(parts[3])
	d := model.Direction(parts[2])
	if err != nil || idx < 0 || (d != model.Ingress && d != model.Egress) {
		return RuleRef{}, false
	}
	r := RuleRef{Namespace: parts[0], Policy: parts[1], Direction: d, Index: idx}
	if len(parts) == 5 {
		g, ok := strings.CutPrefix(parts[4], "named:")
		if !ok {
			return RuleRef{}, false
		}
		r.NamedPort = g
	}
	return r, true
}

// CompileNode normalizes objs in the agent's isolation mode and compiles
// the node's flows with the agent's configuration and the given bindings,
// as the agent does: Nodes (their pod CIDRs and InternalIPs make an overlay
// node's tunnel flows) go through normalize.Node, and one that fails it, or
// whose pod CIDRs or InternalIPs this node or an older node holds
// (model.RefusedNodes), is left out with a warning, as the agent treats it
// as absent. Conjunction
// IDs are those of a fresh compile: they equal the agent's unless two rule
// keys' hashes collided (then the order the agent saw the rules in decides
// which takes the next ID).
func CompileNode(objs *manifest.Objects, ac AgentConfig, bindings map[string]compiler.Binding) (*Node, error) {
	mode := ac.Mode
	if mode == "" {
		mode = model.ModeV1
	}
	objs, nodeWarnings := withoutInvalidNodes(objs)
	objs, refusedWarnings := withoutRefusedNodes(objs, ac.Node, ac.NodeIPs)
	nodeWarnings = append(nodeWarnings, refusedWarnings...)
	objs, dupWarnings := withoutDuplicateIPs(objs, ac.Node, bindings)
	c, warnings, err := objs.Cluster(mode)
	if err != nil {
		return nil, err
	}
	warnings = append(append(nodeWarnings, dupWarnings...), warnings...)
	cfg := ac.Compiler(bindings)
	res, err := compiler.Compile(c, cfg)
	if err != nil {
		return nil, fmt.Errorf("compile node %s: %w", printable.String(ac.Node), err)
	}
	n := &Node{Cluster: c, Result: res, Config: cfg, Warnings: warnings,
		rules: map[openflow.Cookie]RuleRef{}, conjs: map[uint32]RuleRef{}}
	for _, p := range c.Policies {
		for _, d := range []model.Direction{model.Ingress, model.Egress} {
			for i := range p.Rules(d) {
				n.rules[compiler.RuleCookie(compiler.RuleKey(p, d, i))] = RuleRef{Namespace: p.Namespace, Policy: p.Name, Direction: d, Index: i}
			}
		}
	}
	for id, key := range res.Conjunctions {
		if r, ok := parseConjKey(key); ok {
			n.conjs[id] = r
		}
	}
	return n, nil
}

// withoutInvalidNodes leaves out the Nodes normalize.Node refuses, as the
// agent does (pkg/controller, nodes.go: logged, counted, treated as
// absent), where Objects.Cluster would refuse the whole input: the API
// server checks less than normalize.Node does (a pod CIDR with host bits
// set, for one). objs is not modified.
func withoutInvalidNodes(objs *manifest.Objects) (*manifest.Objects, []string) {
	var keep []*corev1.Node
	var warnings []string
	for _, n := range objs.Nodes {
		if _, err := normalize.Node(n); err != nil {
			warnings = append(warnings, fmt.Sprintf("%s (left out: the agent treats the node as absent, with no tunnel flows to or from it)", printable.String(err.Error())))
			continue
		}
		keep = append(keep, n)
	}
	if len(warnings) == 0 {
		return objs, nil
	}
	out := *objs
	out.Nodes = keep
	return &out, warnings
}

// withoutRefusedNodes leaves out the Nodes whose pod CIDRs or InternalIPs
// this node or an older node holds, as the agent refuses them (pkg/controller,
// nodes.go: model.RefusedNodes). objs holds only valid Nodes
// (withoutInvalidNodes) and is not modified.
func withoutRefusedNodes(objs *manifest.Objects, local string, localIPs []netip.Addr) (*manifest.Objects, []string) {
	all := make([]*model.Node, 0, len(objs.Nodes))
	for _, n := range objs.Nodes {
		if mn, err := normalize.Node(n); err == nil {
			all = append(all, mn)
		}
	}
	refused := model.RefusedNodes(local, localIPs, all)
	if len(refused) == 0 {
		return objs, nil
	}
	var keep []*corev1.Node
	var warnings []string
	for _, n := range objs.Nodes {
		if why, ok := refused[n.Name]; ok {
			warnings = append(warnings, fmt.Sprintf("node %s: %s (left out: the agent treats the node as absent, with no tunnel flows to or from it)",
				printable.String(n.Name), printable.String(why)))
			continue
		}
		keep = append(keep, n)
	}
	out := *objs
	out.Nodes = keep
	return &out, warnings
}

// withoutDuplicateIPs resolves addresses that several active pods claim
// (a stale status, a bug elsewhere) as the agent does (pkg/controller,
// podips.go): a pod of node with a port binding keeps the address, else the
// pod created first, then the lower UID; the others are compiled without
// it. Files may not hold such duplicates (Objects.Cluster refuses them), a
// live cluster can. objs is not modified: pods that lose an address are
// copies in a copy of objs.
func withoutDuplicateIPs(objs *manifest.Objects, node string, bindings map[string]compiler.Binding) (*manifest.Objects, []string) {
	type claim struct {
		pod   *corev1.Pod
		key   string
		bound bool
	}
	byIP := map[netip.Addr][]claim{}
	for _, p := range objs.Pods {
		n, err := normalize.Pod(p)
		if err != nil || !n.Active() {
			continue // Cluster reports the error
		}
		_, bound := bindings[n.Key()]
		for _, ip := range n.IPs {
			byIP[ip] = append(byIP[ip], claim{pod: p, key: n.Key(), bound: bound && n.Node == node})
		}
	}
	losers := map[*corev1.Pod][]netip.Addr{}
	var warnings []string
	for _, ip := range slices.SortedFunc(maps.Keys(byIP), netip.Addr.Compare) {
		cs := byIP[ip]
		if len(cs) < 2 {
			continue
		}
		slices.SortFunc(cs, func(a, b claim) int {
			switch {
			case a.bound != b.bound:
				if a.bound {
					return -1
				}
				return 1
			case !a.pod.CreationTimestamp.Equal(&b.pod.CreationTimestamp):
				if a.pod.CreationTimestamp.Before(&b.pod.CreationTimestamp) {
					return -1
				}
				return 1
			}
			return cmp.Or(strings.Compare(string(a.pod.UID), string(b.pod.UID)), strings.Compare(a.key, b.key))
		})
		var lost []string
		for _, c := range cs[1:] {
			losers[c.pod] = append(losers[c.pod], ip)
			lost = append(lost, c.key)
		}
		warnings = append(warnings, fmt.Sprintf("pod IP %s is claimed by %d active pods: kept by %s, left out of %s (as the agent does)",
			ip, len(cs), printable.String(cs[0].key), printable.String(strings.Join(lost, ", "))))
	}
	if len(losers) == 0 {
		return objs, nil
	}
	out := *objs
	out.Pods = make([]*corev1.Pod, len(objs.Pods))
	for i, p := range objs.Pods {
		lost, ok := losers[p]
		if !ok {
			out.Pods[i] = p
			continue
		}
		cp := p.DeepCopy()
		cp.Status.PodIPs = slices.DeleteFunc(cp.Status.PodIPs, func(pip corev1.PodIP) bool {
			a, err := netip.ParseAddr(pip.IP)
			return err == nil && slices.Contains(lost, a)
		})
		cp.Status.PodIP = ""
		if len(cp.Status.PodIPs) > 0 {
			cp.Status.PodIP = cp.Status.PodIPs[0].IP
		}
		out.Pods[i] = cp
	}
	return &out, warnings
}

// Rule returns the rule whose cookie the flow carries.
func (n *Node) Rule(c openflow.Cookie) (RuleRef, bool) {
	r, ok := n.rules[c]
	return r, ok
}

// Conjunction returns the rule a conjunction ID belongs to.
func (n *Node) Conjunction(id uint32) (RuleRef, bool) {
	r, ok := n.conjs[id]
	return r, ok
}

// Origin names what made a live flow: "policy NS/NAME ingress rule 0",
// "pod NS/NAME", "pipeline skeleton", "node N (gateway port P)",
// "service NS/NAME", followed by the rule(s) of its conj_id match or
// conjunction() actions ("; conj_id 7: policy ..." or
// "; conjunctions 7: policy ..., 9: policy ..."), which a flow shared by
// several rules serves beyond the one its cookie names. A session-affinity
// entry ovs-vswitchd learned is "learned by service NS/NAME". A cookie the
// view does not know is OriginUnknown; an unknown conjunction ID is
// "unknown conjunction N". Names are made printable.
func (n *Node) Origin(f LiveFlow) string {
	note, _ := auditNote(f.Actions)
	return n.origin(f.Cookie, note, f.ConjID, f.Conjunctions)
}

// CompiledOrigin is Origin of a compiled flow, read from its typed values:
// its cookie, the note of its controller action, its conj_id match
// (Match.ConjID) and its conjunctions.
func (n *Node) CompiledOrigin(f openflow.Flow) string {
	var note string
	for _, a := range f.Actions.List() {
		if c, ok := a.(openflow.Controller); ok {
			note, _ = auditNoteOf([]byte(c.Userdata))
			break
		}
	}
	conjID, _ := f.Match.ConjID()
	var conjs []uint32
	for _, c := range f.Actions.Conjunctions() {
		conjs = append(conjs, c.ID)
	}
	return n.origin(f.Cookie, note, conjID, conjs)
}

// origin is Origin of a flow's cookie, audit note ("" for none), conj_id
// match (0 for none) and conjunction IDs.
func (n *Node) origin(cookie openflow.Cookie, note string, conjID uint32, conjunctions []uint32) string {
	var s string
	learned := cookie&openflow.OursMask == openflow.Ours.Learned()&openflow.OursMask
	switch {
	case learned:
		if o, ok := n.Result.Origins[cookie&^openflow.OursMask|openflow.Ours]; ok {
			s = "learned by " + printable.String(o)
		} else {
			s = OriginUnknown
		}
	case cookie.IsOurs():
		if r, ok := n.rules[cookie]; ok {
			s = r.String()
		} else if o, ok := n.Result.Origins[cookie]; ok {
			s = printable.String(o)
		} else {
			s = OriginUnknown
		}
	default:
		s = OriginUnknown
	}
	if note != "" {
		s += "; " + note
	}
	// A conjunction of the rule the cookie already names is not named twice.
	conj := func(id uint32) string {
		if name := n.conjName(id); name != s {
			return fmt.Sprintf("%d: %s", id, name)
		}
		return fmt.Sprintf("%d (this rule)", id)
	}
	if conjID != 0 {
		s += "; conj_id " + conj(conjID)
	}
	if len(conjunctions) > 0 {
		parts := make([]string, 0, len(conjunctions))
		for _, id := range conjunctions {
			parts = append(parts, conj(id))
		}
		s += "; conjunctions " + strings.Join(parts, ", ")
	}
	return s
}

func (n *Node) conjName(id uint32) string {
	if r, ok := n.conjs[id]; ok {
		return r.String()
	}
	return fmt.Sprintf("unknown conjunction %d", id)
}

// OfPolicy reports whether the flow belongs to a rule of the policy
// namespace/name: its cookie is one of the policy's rules, or its conj_id
// or one of its conjunction() actions is one of the policy's conjunctions
// (a flow shared with other policies' rules is listed for each).
func (n *Node) OfPolicy(f LiveFlow, policyKey string) bool {
	if r, ok := n.rules[f.Cookie]; ok && r.PolicyKey() == policyKey {
		return true
	}
	if r, ok := n.conjs[f.ConjID]; ok && f.ConjID != 0 && r.PolicyKey() == policyKey {
		return true
	}
	for _, id := range f.Conjunctions {
		if r, ok := n.conjs[id]; ok && r.PolicyKey() == policyKey {
			return true
		}
	}
	return false
}

// OfPod reports whether the flow concerns the pod namespace/name: its own
// flows (the pod's cookie, local or remote), and any flow that matches one
// of its addresses exactly as source or destination (nw_src, nw_dst,
// ipv6_src, ipv6_dst, arp_spa, arp_tpa, nd_target) or its OpenFlow port
// (in_port, or an output to it). Flows that reach the pod through a wider
// CIDR (an ipBlock, the pipeline's defaults) are not listed, except, on an
// overlay node, the tunnel flows of a remote pod's node whose pod CIDR
// holds its address (it has no flows of its own there).
func (n *Node) OfPod(f LiveFlow, podKey string) bool {
	var pod *model.Pod
	for _, p := range n.Cluster.Pods {
		if p.Key() == podKey {
			pod = p
			break
		}
	}
	if pod == nil {
		return false
	}
	o, known := n.Result.Origins[f.Cookie]
	if known && f.Cookie.IsOurs() && (o == "pod "+podKey || o == "remote pod "+podKey) {
		return true
	}
	tunnelOfItsNode := known && pod.Node != n.Config.Node && f.Cookie == compiler.NodeCookie(pod.Node)
	var port string
	if b, ok := n.Config.Bindings[podKey]; ok && pod.Node == n.Config.Node {
		port = strconv.FormatUint(uint64(b.OFPort), 10)
	}
	for _, tok := range strings.Split(f.Match, ",") {
		name, val, ok := strings.Cut(tok, "=")
		if !ok {
			continue
		}
		switch name {
		case "nw_src", "nw_dst", "ipv6_src", "ipv6_dst", "arp_spa", "arp_tpa", "nd_target":
			if ip, err := netip.ParseAddr(val); err == nil && slices.Contains(pod.IPs, ip) {
				return true
			}
			if p, err := netip.ParsePrefix(val); err == nil && tunnelOfItsNode && slices.ContainsFunc(pod.IPs, p.Contains) {
				return true
			}
		case "in_port":
			if port != "" && val == port {
				return true
			}
		}
	}
	if port != "" {
		for _, a := range strings.Split(f.Actions, ",") {
			if a == "output:"+port {
				return true
			}
		}
	}
	return false
}
