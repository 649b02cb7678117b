package bench

import (
	"sort"
	"strconv"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// OSDNCounts is what OpenShift SDN's NetworkPolicy plugin (openshift/origin
// pkg/network/node/networkpolicy.go, the "redhat/openshift-ovs-networkpolicy"
// plugin) would install on one node for the same API objects, following its
// algorithm rather than a generic cross product. See OpenShiftSDN for the
// rules of the count.
type OSDNCounts struct {
	// InUse is the number of namespaces with a pod on the node: the plugin
	// installs flows for these namespaces (VNIDs) only.
	InUse int
	// Allow is its table-80 priority-150 flows: for each ingress policy of
	// an in-use namespace and each of its rules, destinations × peers ×
	// ports, distinct per namespace (identical flows are one flow in OVS).
	Allow int
	// Drop is its priority-100 flows: one per distinct IP that an ingress
	// policy of the namespace selects, in namespaces where no policy selects
	// every pod.
	Drop int
	// Default is its priority-50 flows: one per in-use namespace where no
	// ingress policy selects every pod.
	Default int
	// Substituted is the cross-product count (the share of
	// FlowCounts.CrossPolicy, see RuleCrossProducts) charged for the rules
	// the plugin cannot express; SubstitutedRules is how many rules that is.
	Substituted      int
	SubstitutedRules int
}

// Policy is the count of policy (allow) flows, to set against
// FlowCounts.Policy: Allow plus the substituted rules.
func (c OSDNCounts) Policy() int { return c.Allow + c.Substituted }

// Plugin is every flow counted: Policy plus the drop and default flows.
func (c OSDNCounts) Plugin() int { return c.Allow + c.Drop + c.Default + c.Substituted }

// Total is fc.Total with our policy flows replaced by the plugin's (as
// FlowCounts.CrossTotal does with the cross product): our pipeline, pod and
// node flows stay on both sides.
func (c OSDNCounts) Total(fc FlowCounts) int { return fc.Total - fc.Policy + c.Plugin() }

// OSDNCannot says why OpenShift SDN's plugin cannot express an ingress rule
// ("" if it can). Its parser accepts TCP and UDP ports with a port number
// only: a named port, a port without number (every port of a protocol) or
// SCTP fail the whole policy, which it then treats as deny-all; endPort it
// ignores (it would allow the first port only); an ipBlock peer selects
// nothing (the peer falls through to the pod-and-namespace branch with two
// nil selectors).
func OSDNCannot(r *model.Rule) string {
	for _, p := range r.Ports {
		switch {
		case p.Name != "":
			return "named port"
		case p.Protocol != model.TCP && p.Protocol != model.UDP:
			return "protocol " + string(p.Protocol)
		case p.Port == 0:
			return "port without number"
		case p.EndPort != 0:
			return "port range"
		}
	}
	for _, p := range r.Peers {
		if p.IPBlock != nil {
			return "ipBlock peer"
		}
	}
	return ""
}

// OpenShiftSDN counts what OpenShift SDN's NetworkPolicy plugin would
// install on node for the policies of m, following its algorithm:
//
//   - Flows are per namespace (VNID), installed on every node where the
//     namespace is in use: it has an active pod on the node.
//   - Each policy of such a namespace whose policyTypes include Ingress has
//     destination parts: one per IP of every pod its podSelector selects in
//     the namespace, cluster-wide (not only the node's pods), or a single
//     match-all part when the podSelector is empty.
//   - Per ingress rule: ports, one part per port (one match-all part when
//     there are none); peers, one match-all part when there is no `from`,
//     else per peer: podSelector only, one part (reg0=VNID) when empty, else
//     one per selected pod IP of the namespace; namespaceSelector only, one
//     part per selected namespace (VNID), or one match-all part when empty;
//     both, one per selected pod IP (namespaces and pods cluster-wide). The
//     rule's flows are destinations × peers × ports.
//   - Flows that come out identical (within or across the namespace's
//     policies) are counted once: OVS holds one flow per match.
//   - Unless some ingress policy of the namespace has an empty podSelector,
//     one drop flow per distinct selected IP and one priority-50 flow
//     per namespace (also for in-use namespaces without policies).
//
// Where the plugin has no scheme to follow, the count must not flatter us by
// charging nothing, so the rule is counted the way our cross product counts
// it (its share of FlowCounts.CrossPolicy: local targets × peer addresses ×
// port matches on our pipeline, from flows, the node's compiled flow set):
//
//   - every egress rule of a policy whose policyTypes include Egress (the
//     plugin ignores egress altogether);
//   - every ingress rule OSDNCannot express (named port, port range, SCTP,
//     port without number, ipBlock peer), the whole rule, also its peers
//     and ports the plugin could express. Other rules of the same policy are
//     counted by the plugin's scheme, although the plugin would reject the
//     whole policy for a named port, SCTP or a port without number.
//
// Such policies still count as selecting their targets (drop flows), as
// they would had the plugin parsed them; the plugin, failing to parse them,
// treats them like an empty podSelector. Policies without Ingress select
// nothing here (the plugin gives them an empty selected IP, which would only
// yield a malformed drop flow). Pods are the active pods of the model; a pod
// counts with one IP, its first (the plugin reads status.podIP; it is
// single-stack IPv4). The plugin's fixed flows (one per cluster network in
// table 21, one in table 80) are not counted.
func OpenShiftSDN(m *model.Cluster, node string, flows []openflow.Flow) OSDNCounts {
	share := RuleCrossProducts(flows)
	var c OSDNCounts

	inUse := map[string]bool{}
	podsByNS := map[string][]*model.Pod{}
	for _, pod := range m.Pods {
		if !pod.Active() {
			continue
		}
		if pod.Node == node {
			inUse[pod.Namespace] = true
		}
		if len(pod.IPs) > 0 {
			podsByNS[pod.Namespace] = append(podsByNS[pod.Namespace], pod)
		}
	}
	policiesByNS := map[string][]*model.Policy{}
	for _, p := range m.Policies {
		if inUse[p.Namespace] {
			policiesByNS[p.Namespace] = append(policiesByNS[p.Namespace], p)
		}
	}
	nsNames := make([]string, 0, len(m.Namespaces))
	for name := range m.Namespaces {
		nsNames = append(nsNames, name)
	}
	sort.Strings(nsNames)

	// Namespaces a selector picks, by the selector's text (many policies
	// share one).
	nsCache := map[string][]string{}
	selectNamespaces := func(p *model.Peer) []string {
		k := p.NamespaceSelector.String()
		if v, ok := nsCache[k]; ok {
			return v
		}
		var out []string
		for _, name := range nsNames {
			if p.NamespaceSelector.Matches(m.Namespaces[name].Labels) {
				out = append(out, name)
			}
		}
		nsCache[k] = out
		return out
	}
	podPart := func(pod *model.Pod, dir string) string {
		return "reg0=" + pod.Namespace + ",nw_" + dir + "=" + pod.IPs[0].String()
	}

	for ns := range inUse {
		c.InUse++
		allow := map[string]struct{}{}
		selected := map[string]bool{}
		allSelected := false
		for _, p := range policiesByNS[ns] {
			if m.PolicyAffects(p, model.Egress) {
				for i := range p.Egress {
					c.Substituted += share[compiler.RuleCookie(compiler.RuleKey(p, model.Egress, i))]
					c.SubstitutedRules++
				}
			}
			if !m.PolicyAffects(p, model.Ingress) {
				continue
			}
			var dests []string
			if p.PodSelector.Empty() {
				dests = []string{""}
				allSelected = true
			} else {
				for _, pod := range podsByNS[ns] {
					if m.Selects(p, pod) {
						ip := pod.IPs[0].String()
						dests = append(dests, "nw_dst="+ip)
						selected[ip] = true
					}
				}
			}
			for i := range p.Ingress {
				r := &p.Ingress[i]
				if OSDNCannot(r) != "" {
					c.Substituted += share[compiler.RuleCookie(compiler.RuleKey(p, model.Ingress, i))]
					c.SubstitutedRules++
					continue
				}
				ports := []string{""}
				if len(r.Ports) > 0 {
					ports = ports[:0]
					for _, pt := range r.Ports {
						ports = append(ports, string(pt.Protocol)+",tp_dst="+strconv.Itoa(int(pt.Port)))
					}
				}
				peers := []string{""}
				if len(r.Peers) > 0 {
					peers = peers[:0]
					for j := range r.Peers {
						peer := &r.Peers[j]
						switch {
						case peer.NamespaceSelector == nil && (peer.PodSelector == nil || peer.PodSelector.Empty()):
							// podSelector {} (nil cannot come from the API:
							// it means the same here).
							peers = append(peers, "reg0="+ns)
						case peer.NamespaceSelector == nil:
							for _, pod := range podsByNS[ns] {
								if m.PeerSelects(peer, ns, pod) {
									peers = append(peers, podPart(pod, "src"))
								}
							}
						case peer.PodSelector == nil && peer.NamespaceSelector.Empty():
							peers = append(peers, "")
						case peer.PodSelector == nil:
							for _, name := range selectNamespaces(peer) {
								peers = append(peers, "reg0="+name)
							}
						default:
							for _, name := range selectNamespaces(peer) {
								for _, pod := range podsByNS[name] {
									if m.PeerSelects(peer, ns, pod) {
										peers = append(peers, podPart(pod, "src"))
									}
								}
							}
						}
					}
				}
				for _, d := range dests {
					for _, pe := range peers {
						for _, po := range ports {
							allow[d+"|"+pe+"|"+po] = struct{}{}
						}
					}
				}
			}
		}
		c.Allow += len(allow)
		if !allSelected {
			c.Drop += len(selected)
			c.Default++
		}
	}
	return c
}
