package controller

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Events on NetworkPolicies: each node reports, on every policy that
// selects pods attached to it, whether it realized the policy ("Realized
// on node N: F flows for R rules ...") or could not (the policy is invalid:
// "PolicyRejected"; OVS refused a rule's flows: the FlowsRefused /
// FlowsAccepted Events of refused.go, which this file does not repeat).
//
// An Event is recorded only when what is reported changes: the policy's
// identity (UID), its spec (metadata.generation), its outcome (realized,
// rejected, refused), or it starts selecting pods here. Flow counts moving
// with peer pods coming and going do not count as a change, so a resync or
// a full sync of an unchanged policy records nothing. A policy that stops
// selecting pods here is reported again when it selects some (subject to
// the gap below).
// A flapping policy is bounded twice: one Event per policy per
// policyEventGap on this node (the latest state wins when the gap is over),
// and client-go's correlator (similar Events aggregated, spam-filtered per
// object). After an agent restart each policy is reported once more.
const (
	// policyReportInterval spaces the report passes (each walks the
	// policies and the local pods).
	policyReportInterval = time.Second
	// policyEventGap is the least time between two Events of one policy.
	policyEventGap = 10 * time.Second
)

// Reasons of the policy Events.
const (
	ReasonRealized       = "Realized"
	ReasonPolicyRejected = "PolicyRejected"
)

// policyOutcome is what this node did with a policy.
type policyOutcome int

const (
	outcomeRealized policyOutcome = iota + 1
	outcomeRejected
	outcomeRefused
)

// policyIdentity is what an Event reports; a new Event is due when it
// changes.
type policyIdentity struct {
	uid        types.UID
	generation int64
	outcome    policyOutcome
	reason     string // rejection cause
}

// policyReport is the last identity reported for one policy.
type policyReport struct {
	identity policyIdentity
	emitted  time.Time // zero: never
}

// policyEvents is the controller's report state (guarded by Controller.mu).
type policyEvents struct {
	reported map[string]*policyReport // by namespace/name
	// rejected holds why applyPolicy rejected a policy (by namespace/name).
	rejected map[string]string
	// interval and gap are policyReportInterval and policyEventGap (tests
	// shorten them before Run).
	interval, gap time.Duration
	lastPass      time.Time
	timer         *time.Timer
	timerAt       time.Time
}

func newPolicyEvents() policyEvents {
	return policyEvents{reported: map[string]*policyReport{}, rejected: map[string]string{},
		interval: policyReportInterval, gap: policyEventGap}
}

// notePolicyRejected records (err != nil) or clears the rejection of a
// policy; called by applyPolicy for every policy it applies.
func (c *Controller) notePolicyRejected(key string, err error) {
	if err == nil {
		delete(c.pev.rejected, key)
		return
	}
	c.pev.rejected[key] = printable.String(err.Error())
}

// localTargets returns, by namespace, the pods a policy can select here:
// attached to this node's bridge and active.
func (c *Controller) localTargets() map[string][]*model.Pod {
	cl := c.inc.Cluster()
	out := map[string][]*model.Pod{}
	for key := range c.inc.Config().Bindings {
		p := cl.Pods[c.podUIDs[key]]
		if p == nil || p.Node != c.opts.Compiler.Node || !p.Active() {
			continue
		}
		out[p.Namespace] = append(out[p.Namespace], p)
	}
	return out
}

// reportPolicies records the due policy Events after a commit (Controller.mu
// held). It runs at most once per policyReportInterval; a later pass (and
// an Event held back by policyEventGap) is queued with a timer.
func (c *Controller) reportPolicies(now time.Time) {
	if c.recorder == nil || c.policyLister == nil {
		return
	}
	if next := c.pev.lastPass.Add(c.pev.interval); now.Before(next) {
		c.reportAt(next)
		return
	}
	c.pev.lastPass = now
	cl := c.inc.Cluster()
	locals := c.localTargets()
	var flowsByCookie map[openflow.Cookie]int // counted once, only if an Event is due
	var wake time.Time
	keys := make([]string, 0, len(cl.Policies))
	for key := range cl.Policies {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		pol := cl.Policies[key]
		var targets int
		for _, p := range locals[pol.Namespace] {
			if pol.PodSelector != nil && pol.PodSelector.Matches(p.Labels) {
				targets++
			}
		}
		if targets == 0 {
			// Nothing to realize here. What was reported is forgotten (a
			// later selection is reported again), but not when: a pod
			// flapping in and out of the selection is held to the gap.
			if prev := c.pev.reported[key]; prev != nil {
				prev.identity = policyIdentity{}
			}
			continue
		}
		np, err := c.policyLister.NetworkPolicies(pol.Namespace).Get(pol.Name)
		if err != nil {
			continue // deleted; its delete event is queued
		}
		id := policyIdentity{uid: np.UID, generation: np.Generation, outcome: outcomeRealized}
		var cookies []openflow.Cookie
		rules := map[model.Direction]int{}
		for _, d := range []model.Direction{model.Ingress, model.Egress} {
			for i := range pol.Rules(d) {
				ck := compiler.RuleCookie(compiler.RuleKey(pol, d, i))
				cookies = append(cookies, ck)
				rules[d]++
				if _, refused := c.refused[ck]; refused && id.outcome == outcomeRealized {
					id.outcome = outcomeRefused
				}
			}
		}
		if why, bad := c.pev.rejected[key]; bad {
			id.outcome, id.reason = outcomeRejected, why
		}
		prev := c.pev.reported[key]
		if prev != nil && prev.identity == id {
			continue
		}
		if prev != nil && now.Before(prev.emitted.Add(c.pev.gap)) {
			// Held back: reported when the gap is over, if still changed.
			if due := prev.emitted.Add(c.pev.gap); wake.IsZero() || due.Before(wake) {
				wake = due
			}
			continue
		}
		r := &policyReport{identity: id, emitted: now}
		if id.outcome == outcomeRefused {
			// Nothing recorded here (see below): the gap runs from the
			// last Event this file recorded.
			r.emitted = time.Time{}
			if prev != nil {
				r.emitted = prev.emitted
			}
		}
		c.pev.reported[key] = r
		node := c.opts.Compiler.Node
		switch id.outcome {
		case outcomeRealized:
			if flowsByCookie == nil {
				flowsByCookie = map[openflow.Cookie]int{}
				for _, f := range c.inc.Flows() {
					if f.Cookie.Kind() == openflow.KindRule {
						flowsByCookie[f.Cookie]++
					}
				}
			}
			flows := 0
			for _, ck := range cookies {
				flows += flowsByCookie[ck]
			}
			c.recorder.Eventf(np, corev1.EventTypeNormal, ReasonRealized,
				"Realized on node %s: %s for %s (%d ingress, %d egress); it selects %s here.",
				node, plural(flows, "flow"), plural(rules[model.Ingress]+rules[model.Egress], "rule"), rules[model.Ingress], rules[model.Egress], plural(targets, "pod"))
		case outcomeRejected:
			verb := "are"
			if targets == 1 {
				verb = "is"
			}
			c.recorder.Eventf(np, corev1.EventTypeWarning, ReasonPolicyRejected,
				"Not realized on node %s: the policy cannot be used (%s). Its %s here %s isolated with no rule allowing anything until it is fixed.",
				node, id.reason, plural(targets, "pod"), verb)
		case outcomeRefused:
			// FlowsRefused (refused.go) was recorded on the policy when OVS
			// refused the rule; Realized follows when it is accepted.
		}
	}
	for key := range c.pev.reported {
		if _, ok := cl.Policies[key]; !ok {
			delete(c.pev.reported, key)
		}
	}
	if !wake.IsZero() {
		c.reportAt(wake)
	}
}

// reportAt queues a report pass at t (one timer, the earliest wins).
func (c *Controller) reportAt(t time.Time) {
	if c.pev.timer != nil && c.pev.timerAt.After(time.Now()) && !t.Before(c.pev.timerAt) {
		return // an earlier pass is already queued
	}
	if c.pev.timer != nil {
		c.pev.timer.Stop()
	}
	c.pev.timerAt = t
	c.pev.timer = time.AfterFunc(time.Until(t), func() { c.queue.Add(item{kind: "report"}) })
}

// PolicyReports lists, sorted, the policies this node reported and how
// ("ns/name realized"), for tests and logs.
func (c *Controller) PolicyReports() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for key, r := range c.pev.reported {
		if r.identity.outcome != 0 { // 0: selects no pod here now
			out = append(out, fmt.Sprintf("%s %s", key, r.identity.outcome))
		}
	}
	sort.Strings(out)
	return out
}

// plural is "1 flow", "2 flows".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func (o policyOutcome) String() string {
	switch o {
	case outcomeRealized:
		return "realized"
	case outcomeRejected:
		return "rejected"
	case outcomeRefused:
		return "refused"
	}
	return "unknown"
}
