package compiler

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// IDAllocator hands out conjunction IDs derived from a hash of the rule key,
// so one policy's IDs never depend on which other policies exist. A hash
// collision takes the next free ID; an allocator that lives as long as the
// agent keeps every ID it gave out until Release.
type IDAllocator struct {
	byKey map[string]uint32
	used  map[uint32]string
}

// NewIDAllocator returns an empty allocator.
func NewIDAllocator() *IDAllocator {
	return &IDAllocator{byKey: map[string]uint32{}, used: map[uint32]string{}}
}

// ID returns the conjunction ID of key, allocating it on first use.
func (a *IDAllocator) ID(key string) uint32 {
	if id, ok := a.byKey[key]; ok {
		return id
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	id := h.Sum32()
	for id == 0 || a.used[id] != "" {
		id++
	}
	a.byKey[key] = id
	a.used[id] = key
	return id
}

// Key returns the key an ID was allocated for.
func (a *IDAllocator) Key(id uint32) (string, bool) {
	k, ok := a.used[id]
	return k, ok
}

// Release frees key's ID.
func (a *IDAllocator) Release(key string) {
	if id, ok := a.byKey[key]; ok {
		delete(a.byKey, key)
		delete(a.used, id)
	}
}

// Result is a compiled flow set with what explains it.
type Result struct {
	// Flows are merged and sorted: ready for ovs-ofctl.
	Flows []openflow.Flow
	// Origins maps each cookie in Flows to a human description.
	Origins map[openflow.Cookie]string
	// Conjunctions maps conjunction IDs to the rule (and named-port group).
	Conjunctions map[uint32]string
}

// Text renders the flows one per line, with a comment header per origin
// when comments is set (ovs-ofctl ignores '#' lines).
func (r *Result) Text(comments bool) string {
	if !comments {
		return openflow.Text(r.Flows)
	}
	var b strings.Builder
	if len(r.Conjunctions) > 0 {
		ids := make([]uint32, 0, len(r.Conjunctions))
		for id := range r.Conjunctions {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		b.WriteString("# conjunctions (conj_id: namespace/policy/direction/rule[/named-port group]):\n")
		for _, id := range ids {
			fmt.Fprintf(&b, "#   %d: %s\n", id, r.Conjunctions[id])
		}
	}
	var last openflow.Cookie
	var lastTable = -1
	for _, f := range r.Flows {
		if int(f.Table) != lastTable {
			fmt.Fprintf(&b, "# table %d: %s\n", f.Table, TableNames[f.Table])
			lastTable = int(f.Table)
			last = 0
		}
		if f.Cookie != last {
			fmt.Fprintf(&b, "# cookie %s: %s\n", f.Cookie, r.Origins[f.Cookie])
			last = f.Cookie
		}
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Compile produces node cfg.Node's complete flow set for cluster c.
// Bindings must cover the local pods that should get flows (see
// DefaultBindings); local pods without one are left out.
func Compile(c *model.Cluster, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	ids := NewIDAllocator()
	origins := map[openflow.Cookie]string{
		pipelineCookie: "pipeline skeleton",
		nodeCookie:     fmt.Sprintf("node %s (gateway port %s)", cfg.Node, PortName(cfg.GatewayPort)),
	}
	var flows []openflow.Flow
	flows = append(flows, pipelineFlows(cfg)...)
	flows = append(flows, nodeFlows(cfg)...)

	pods := c.SortedPods()
	local := localPods(c, cfg)
	for _, pod := range local {
		in, _ := c.Isolated(pod, model.Ingress)
		eg, _ := c.Isolated(pod, model.Egress)
		flows = append(flows, podFlows(cfg, pod, cfg.Bindings[pod.Key()], in, eg)...)
		origins[PodCookie(pod)] = "pod " + pod.Key()
	}
	for _, f := range remoteFlows(cfg, pods) {
		flows = append(flows, f)
	}
	for _, pod := range pods {
		if pod.Node != cfg.Node {
			origins[openflow.NewCookie(openflow.KindPod, "remote/"+pod.Key())] = "remote pod " + pod.Key()
		}
	}

	for _, p := range c.SortedPolicies() {
		var targets []*model.Pod
		for _, pod := range local {
			if c.Selects(p, pod) && len(pod.IPs) > 0 {
				targets = append(targets, pod)
			}
		}
		for _, d := range []model.Direction{model.Ingress, model.Egress} {
			if !c.PolicyAffects(p, d) {
				continue
			}
			rules := p.Rules(d)
			for i := range rules {
				key := RuleKey(p, d, i)
				origins[RuleCookie(key)] = fmt.Sprintf("policy %s %s rule %d", p.Key(), d, i)
				flows = append(flows, ruleFlows(ruleInput{
					cluster: c, cfg: cfg, policy: p, dir: d, index: i, rule: &rules[i],
					targets: targets, pods: pods,
				}, ids)...)
			}
		}
	}

	merged, err := Merge(flows)
	if err != nil {
		return nil, err
	}
	res := &Result{Flows: merged, Origins: map[openflow.Cookie]string{}, Conjunctions: map[uint32]string{}}
	for _, f := range merged {
		res.Origins[f.Cookie] = origins[f.Cookie]
	}
	for id, key := range ids.used {
		res.Conjunctions[id] = key
	}
	return res, nil
}

// Merge combines flows with the same table, priority and match, which
// OpenFlow cannot hold twice: conjunction-only flows join their actions
// (ordered by conjunction ID, cookie of the lowest), identical flows
// collapse (lowest cookie), anything else is a compiler bug reported as an
// error. The result is sorted.
func Merge(flows []openflow.Flow) ([]openflow.Flow, error) {
	byKey := make(map[openflow.Key][]openflow.Flow, len(flows))
	for _, f := range flows {
		byKey[f.Key()] = append(byKey[f.Key()], f)
	}
	out := make([]openflow.Flow, 0, len(byKey))
	for k, fs := range byKey {
		if len(fs) == 1 {
			out = append(out, fs[0])
			continue
		}
		if isConjunction(fs[0].Actions) {
			type part struct {
				id     uint32
				action string
				cookie openflow.Cookie
			}
			var parts []part
			for _, f := range fs {
				if !isConjunction(f.Actions) {
					return nil, fmt.Errorf("flow table=%d,priority=%d,%s: conjunction and non-conjunction actions collide", k.Table, k.Priority, k.Match)
				}
				for _, a := range splitConjunctions(f.Actions) {
					var id uint32
					fmt.Sscanf(a, "conjunction(%d,", &id)
					parts = append(parts, part{id, a, f.Cookie})
				}
			}
			sort.Slice(parts, func(i, j int) bool {
				if parts[i].id != parts[j].id {
					return parts[i].id < parts[j].id
				}
				return parts[i].action < parts[j].action
			})
			var actions []string
			for i, p := range parts {
				if i > 0 && p.action == parts[i-1].action {
					continue
				}
				actions = append(actions, p.action)
			}
			f := fs[0]
			f.Cookie = parts[0].cookie
			f.Actions = strings.Join(actions, ",")
			out = append(out, f)
			continue
		}
		f := fs[0]
		for _, g := range fs[1:] {
			if g.Actions != f.Actions {
				return nil, fmt.Errorf("flow table=%d,priority=%d,%s: conflicting actions %q and %q", k.Table, k.Priority, k.Match, f.Actions, g.Actions)
			}
			if g.Cookie < f.Cookie {
				f.Cookie = g.Cookie
			}
		}
		out = append(out, f)
	}
	openflow.Sort(out)
	return out, nil
}

func isConjunction(actions string) bool { return strings.HasPrefix(actions, "conjunction(") }

// splitConjunctions splits "conjunction(1,1/2),conjunction(5,2/3)".
func splitConjunctions(actions string) []string {
	var out []string
	for _, a := range strings.SplitAfter(actions, "),") {
		out = append(out, strings.TrimSuffix(a, ","))
	}
	return out
}
