package compiler

import (
	"sort"
	"strconv"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// AuditConfig decides which flows send a copy of a new connection's packet
// to the agent's audit log (a packet-in). A namespace is audited for the
// verdicts its model.AuditAnnotation names, plus All; a verdict is logged
// only when its meter is set (0: that verdict is never sent, whatever the
// namespaces ask), so with the zero AuditConfig the flows are exactly those
// without auditing.
//
//   - deny: the isolation drop of an audited pod (tables 30/40, priority
//     20000) becomes controller(userdata=...,meter_id=DenyMeter): the packet
//     still goes nowhere else.
//   - allow: a rule's allow flows (its conj_id flows and direct allows)
//     send a metered copy before going on, when the policy's namespace is
//     audited (its targets are that namespace's pods); a pod that is not
//     isolated for a direction gets a flow doing the same at
//     PrioAuditDefault, just above the table's default.
//
// The packet-ins are rate limited by the meters in the datapath; the
// userdata says what the flow was compiled from (see AuditNote).
type AuditConfig struct {
	// All is audited in every namespace (the agent's --audit-all).
	All model.AuditMode
	// DenyMeter and AllowMeter are OpenFlow meter IDs (see
	// DefaultAuditDenyMeter); the agent creates them before any flow.
	DenyMeter, AllowMeter uint32
}

// Meter IDs the agent uses by default: "4e" (ours) in the top byte, as our
// cookies and group IDs.
const (
	DefaultAuditDenyMeter  uint32 = 0x4e0001
	DefaultAuditAllowMeter uint32 = 0x4e0002
)

// enabled masks a requested mode with the verdicts that have a meter.
func (a AuditConfig) enabled(m model.AuditMode) model.AuditMode {
	m |= a.All
	if a.DenyMeter == 0 {
		m &^= model.AuditDeny
	}
	if a.AllowMeter == 0 {
		m &^= model.AuditAllow
	}
	return m
}

// auditMode is the effective audit mode of a namespace's pods.
func (inc *Incremental) auditMode(namespace string) model.AuditMode {
	return inc.cfg.Audit.enabled(namespaceAudit(inc.c.Namespaces[namespace]))
}

func namespaceAudit(ns *model.Namespace) model.AuditMode {
	if ns == nil {
		return 0
	}
	return ns.Audit
}

// markAuditChange marks what a namespace's audit annotation changing from
// old to ns affects: its local pods' isolation flows and its policies'
// allow flows.
func (inc *Incremental) markAuditChange(name string, old, ns *model.Namespace) {
	a := inc.cfg.Audit
	if a.enabled(namespaceAudit(old)) == a.enabled(namespaceAudit(ns)) {
		return
	}
	for _, p := range inc.podsByNS[name] {
		if p.Node == inc.cfg.Node {
			inc.dirty[podFrag(p)] = true
		}
	}
	for _, pol := range inc.polByNS[name] {
		inc.markPolicy(pol)
	}
}

// AuditNote is what an audit flow's userdata says: the verdict, the
// direction (table 30 egress, 40 ingress) and why, in the terms of the
// policies. It is text, "ovsnp-audit1 VERDICT DIRECTION REASON...", each
// reason one of
//
//   - NS/NAME: a policy isolating the pod (deny);
//   - NS/NAME#I: the policy's rule I of that direction allowed it (allow);
//   - NS/(DefaultDeny): the namespace's v1.6 isolation annotation (deny);
//   - "-": the pod is not isolated for the direction (allow);
//   - +N: N more isolating policies not listed (at most
//     maxAuditReasons are, to keep the flow small).
//
// Kubernetes names never hold spaces, '#' or parentheses.
type AuditNote struct {
	Verdict   string // "deny" or "allow"
	Direction model.Direction
	Reasons   []string
}

const (
	auditMagic      = "ovsnp-audit1"
	maxAuditReasons = 16
)

// Bytes encodes the note as userdata.
func (n AuditNote) Bytes() []byte {
	return []byte(auditMagic + " " + n.Verdict + " " + string(n.Direction) + " " + strings.Join(n.Reasons, " "))
}

// ParseAuditNote decodes userdata written by an audit flow; ok is false
// for userdata that is not ours.
func ParseAuditNote(b []byte) (n AuditNote, ok bool) {
	f := strings.Fields(string(b))
	if len(f) < 3 || f[0] != auditMagic {
		return AuditNote{}, false
	}
	n.Verdict, n.Direction = f[1], model.Direction(f[2])
	if n.Verdict != "deny" && n.Verdict != "allow" || n.Direction != model.Ingress && n.Direction != model.Egress {
		return AuditNote{}, false
	}
	n.Reasons = f[3:]
	return n, true
}

// controllerAction is the packet-in action of a note (rendered as OVS
// prints it: userdata in dotted hex, the meter in decimal).
func controllerAction(n AuditNote, meter uint32) openflow.Controller {
	return openflow.Controller{Userdata: string(n.Bytes()), MeterID: meter}
}

// isolationReasons names what isolates pod for d: its namespace's v1.6
// annotation, or the policies selecting it with d in their types (sorted,
// at most maxAuditReasons and a count of the rest).
func (inc *Incremental) isolationReasons(pod *model.Pod, d model.Direction) []string {
	var out []string
	if ns, ok := inc.c.Namespaces[pod.Namespace]; ok && d == model.Ingress && ns.LegacyIsolation.Isolates() {
		out = append(out, pod.Namespace+"/(DefaultDeny)")
	}
	var keys []string
	for key, p := range inc.polByNS[pod.Namespace] {
		if inc.c.PolicyAffects(p, d) && inc.c.Selects(p, pod) {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	out = append(out, keys...)
	if len(out) > maxAuditReasons {
		out = append(out[:maxAuditReasons], "+"+strconv.Itoa(len(out)-maxAuditReasons))
	}
	return out
}

// auditPodFlows turns a local pod's isolation drops into metered packet-ins
// (deny audited) and adds the not-isolated packet-ins (allow audited).
// Without auditing flows is returned as it is.
func (inc *Incremental) auditPodFlows(pod *model.Pod, b Binding, ingressIsolated, egressIsolated bool, flows []openflow.Flow) []openflow.Flow {
	mode := inc.auditMode(pod.Namespace)
	if mode == 0 {
		return flows
	}
	a := inc.cfg.Audit
	cookie := PodCookie(pod)
	if mode.Deny() {
		notes := map[uint8]openflow.Actions{}
		for i := range flows {
			f := &flows[i]
			if f.Priority != PrioIsolation || f.Cookie != cookie || !isDrop(*f) {
				continue
			}
			if _, ok := notes[f.Table]; !ok {
				d := model.Ingress
				if f.Table == TableEgress {
					d = model.Egress
				}
				notes[f.Table] = do(controllerAction(AuditNote{Verdict: "deny", Direction: d, Reasons: inc.isolationReasons(pod, d)}, a.DenyMeter))
			}
			f.Actions = notes[f.Table]
		}
	}
	if mode.Allow() && len(pod.IPs) > 0 {
		if !egressIsolated {
			act := controllerAction(AuditNote{Verdict: "allow", Direction: model.Egress, Reasons: []string{"-"}}, a.AllowMeter)
			flows = append(flows, openflow.Flow{Table: TableEgress, Priority: PrioAuditDefault, Cookie: cookie,
				Match: openflow.NewMatch(openflow.InPort(b.OFPort)), Actions: do(act, openflow.Goto(TableIngress))})
		}
		if !ingressIsolated {
			act := do(controllerAction(AuditNote{Verdict: "allow", Direction: model.Ingress, Reasons: []string{"-"}}, a.AllowMeter), openflow.Goto(TableCommit))
			for _, ip := range pod.IPs {
				flows = append(flows, openflow.Flow{Table: TableIngress, Priority: PrioAuditDefault, Cookie: cookie,
					Match: dstMatch(host(ip)), Actions: act})
			}
		}
	}
	return flows
}

// isDrop reports whether a flow drops (no actions, no conjunctions).
func isDrop(f openflow.Flow) bool { return f.Actions.IsDrop() }

// auditRuleFlows makes a rule's allow flows (those going on to the next
// table: its conj_id flows and direct allows) send a metered packet-in
// first, when the policy's namespace is audited for allow.
func (inc *Incremental) auditRuleFlows(pol *model.Policy, d model.Direction, index int, flows []openflow.Flow) []openflow.Flow {
	if !inc.auditMode(pol.Namespace).Allow() {
		return flows
	}
	next := openflow.Goto(TableCommit)
	if d == model.Egress {
		next = openflow.Goto(TableIngress)
	}
	act := do(controllerAction(AuditNote{Verdict: "allow", Direction: d,
		Reasons: []string{pol.Key() + "#" + strconv.Itoa(index)}}, inc.cfg.Audit.AllowMeter), next)
	for i := range flows {
		if l := flows[i].Actions.List(); len(l) == 1 && l[0] == openflow.Action(next) {
			flows[i].Actions = act
		}
	}
	return flows
}
