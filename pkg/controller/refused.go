package controller

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Refusal is an origin (cookie) whose flows OVS refused, with its error.
type Refusal struct {
	Cookie openflow.Cookie
	Err    error
}

// ByOrigin is implemented by Flows adapters that can keep going when OVS
// refuses a bundle: they apply it origin by origin (each origin's flows and
// groups in one atomic bundle), install every origin OVS accepts, remove
// the refused origins' flows from the bridge (fail closed) and return them.
// err means the bridge's state is unknown (the switch failed, or the
// pipeline skeleton was refused: then nothing was applied).
type ByOrigin interface {
	// ApplyByOrigin applies ch, which Apply just failed to commit as one
	// bundle with cause.
	ApplyByOrigin(ctx context.Context, ch Change, cause error) ([]Refusal, error)
	// SyncByOrigin is Sync that does not stall on refused origins (and as
	// fast as Sync when nothing is refused).
	SyncByOrigin(ctx context.Context, flows []openflow.Flow, groups []openflow.Group) (added, deleted int, refused []Refusal, err error)
}

// Retry backoff of a refused origin: doubled per refusal, capped. A change
// to the origin's own flows retries it at once.
const (
	refusedRetryBase = time.Second
	refusedRetryMax  = 2 * time.Minute
)

// refusal is what the controller knows of a refused origin.
type refusal struct {
	desc    string // in user terms: "policy ns/name ingress rule 0"
	msg     string // OVS's error text
	since   time.Time
	retries int
	next    time.Time
}

// ovsMessage is the error text of a refusal on one line, trimmed for logs
// and Events (a flow's text can be long). The adapter gives OVS's own text.
func ovsMessage(err error) string {
	// The first line is the error (OVS adds the failed bundle's commit and
	// ovs-ofctl's exit on the next lines).
	msg, _, _ := strings.Cut(strings.TrimSpace(err.Error()), "\n")
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return msg
}

// withoutRefused keeps refused origins off the bridge in a change: an add
// of a flow whose (merged) cookie is refused becomes a delete of its key
// (the key may hold an older flow of another origin), a group of a refused
// origin is left out. It returns the refused cookies the change touched:
// their object changed, so they are retried at once.
func (c *Controller) withoutRefused(ch Change) (Change, map[openflow.Cookie]bool) {
	touched := map[openflow.Cookie]bool{}
	if len(c.refused) == 0 {
		return ch, touched
	}
	out := Change{DelFlows: ch.DelFlows, DelGroups: ch.DelGroups}
	for _, f := range ch.DelFlows {
		if _, ok := c.refused[f.Cookie]; ok {
			touched[f.Cookie] = true
		}
	}
	for _, f := range ch.AddFlows {
		if _, ok := c.refused[f.Cookie]; ok {
			touched[f.Cookie] = true
			out.DelFlows = append(out.DelFlows, f)
			continue
		}
		out.AddFlows = append(out.AddFlows, f)
	}
	for _, g := range ch.SetGroups {
		if _, ok := c.refused[g.Cookie]; ok {
			touched[g.Cookie] = true
			continue
		}
		out.SetGroups = append(out.SetGroups, g)
	}
	return out, touched
}

// origins returns the desired flows and groups of the given cookies.
func (c *Controller) originsChange(cookies map[openflow.Cookie]bool) Change {
	var ch Change
	for _, f := range c.inc.Flows() {
		if cookies[f.Cookie] {
			ch.AddFlows = append(ch.AddFlows, f)
		}
	}
	for _, g := range c.inc.Groups() {
		if cookies[g.Cookie] {
			ch.SetGroups = append(ch.SetGroups, g)
		}
	}
	return ch
}

// refusedFlows counts the desired flows that are off the bridge because
// their origin is refused (the flow count check expects the rest).
func (c *Controller) refusedFlows() int {
	if len(c.refused) == 0 {
		return 0
	}
	n := 0
	for _, f := range c.inc.Flows() {
		if _, ok := c.refused[f.Cookie]; ok {
			n++
		}
	}
	return n
}

// noteRefused records origins OVS refused: reported (log, metric, Event)
// when they become refused, scheduled for a retry.
func (c *Controller) noteRefused(rs []Refusal, now time.Time) {
	if len(rs) == 0 {
		return
	}
	descs := c.inc.Origins()
	for _, r := range rs {
		msg := ovsMessage(r.Err)
		old, had := c.refused[r.Cookie]
		st := &refusal{desc: descs[r.Cookie], msg: msg, since: now}
		if st.desc == "" {
			st.desc = "unknown origin " + r.Cookie.String()
		}
		if had {
			st.since, st.retries = old.since, old.retries
		}
		backoff := refusedRetryBase << min(st.retries, 10)
		st.next = now.Add(min(backoff, refusedRetryMax))
		c.refused[r.Cookie] = st
		if had {
			// Reported when it became refused; a retry refused again (OVS
			// names whichever flow it stopped at) is only counted.
			c.log.WithFields(logrus.Fields{"origin": st.desc, "retries": st.retries, "ovs error": msg}).Debug("refused origin refused again")
			continue
		}
		c.log.WithFields(logrus.Fields{"origin": st.desc, "cookie": r.Cookie.String(), "ovs error": msg}).
			Warn("OVS refused the flows of an origin: they are left off the bridge (fail closed) and retried; every other change is applied")
		c.event(r.Cookie, corev1.EventTypeWarning, "FlowsRefused",
			"Open vSwitch refused the flows of %s on node %s: %s. They are left out (nothing they allow is allowed) and retried.", st.desc, c.opts.Compiler.Node, msg)
	}
	c.metrics.RefusedOrigins.Set(float64(len(c.refused)))
}

// clearRefused forgets a refused origin that was accepted (or is gone).
func (c *Controller) clearRefused(cookie openflow.Cookie, accepted bool) {
	st, ok := c.refused[cookie]
	if !ok {
		return
	}
	delete(c.refused, cookie)
	c.metrics.RefusedOrigins.Set(float64(len(c.refused)))
	fields := logrus.Fields{"origin": st.desc, "cookie": cookie.String(), "retries": st.retries, "refused for": time.Since(st.since).Round(time.Millisecond)}
	if !accepted {
		c.log.WithFields(fields).Info("a refused origin no longer has flows: forgotten")
		return
	}
	c.log.WithFields(fields).Info("flows of a refused origin accepted by OVS")
	c.event(cookie, corev1.EventTypeNormal, "FlowsAccepted", "Open vSwitch accepted the flows of %s on node %s after %d retries.", st.desc, c.opts.Compiler.Node, st.retries)
}

// retryRefused retries the refused origins that are due, or whose object
// changed (touched), as one bundle and, if that is refused, origin by
// origin. Their flows are off the bridge (fail closed), so a retry only
// adds. Origins that no longer have flows are forgotten.
func (c *Controller) retryRefused(ctx context.Context, touched map[openflow.Cookie]bool, now time.Time) error {
	if len(c.refused) == 0 {
		return nil
	}
	due := map[openflow.Cookie]bool{}
	for ck, st := range c.refused {
		if touched[ck] || !now.Before(st.next) {
			due[ck] = true
		}
	}
	if len(due) == 0 {
		return nil
	}
	ch := c.originsChange(due)
	present := map[openflow.Cookie]bool{}
	for _, f := range ch.AddFlows {
		present[f.Cookie] = true
	}
	for _, g := range ch.SetGroups {
		present[g.Cookie] = true
	}
	for ck := range due {
		if !present[ck] {
			c.clearRefused(ck, false)
		} else {
			c.refused[ck].retries++
			c.metrics.RefusedRetries.Inc()
		}
	}
	if ch.Len() == 0 {
		return nil
	}
	err := c.flows.Apply(ctx, ch)
	var refused []Refusal
	if err != nil {
		c.metrics.BundleFailures.Inc()
		bo, ok := c.flows.(ByOrigin)
		if !ok {
			return err
		}
		if refused, err = bo.ApplyByOrigin(ctx, ch, err); err != nil {
			return err
		}
	}
	still := map[openflow.Cookie]bool{}
	for _, r := range refused {
		still[r.Cookie] = true
	}
	for ck := range present {
		if !still[ck] {
			c.clearRefused(ck, true)
		}
	}
	c.noteRefused(refused, now)
	c.metrics.FlowMods.Add(float64(ch.Len()))
	return nil
}

// scheduleRetry arms one timer for the earliest refused origin's retry.
func (c *Controller) scheduleRetry(now time.Time) {
	if len(c.refused) == 0 {
		return
	}
	var next time.Time
	for _, st := range c.refused {
		if next.IsZero() || st.next.Before(next) {
			next = st.next
		}
	}
	if c.retryTimer != nil {
		c.retryTimer.Stop()
	}
	c.retryTimer = time.AfterFunc(max(next.Sub(now), 0), func() { c.queue.Add(item{kind: "retry"}) })
}

// involved finds the API object an origin's flows come from (a rule's
// NetworkPolicy, a pod, a Service), from the listers; nil for the
// pipeline, the node and objects gone.
func (c *Controller) involved(cookie openflow.Cookie) runtime.Object {
	cl := c.inc.Cluster()
	switch cookie.Kind() {
	case openflow.KindPod:
		for _, p := range cl.Pods {
			if compiler.PodCookie(p) == cookie || openflow.NewCookie(openflow.KindPod, "remote/"+p.Key()) == cookie {
				if c.pods.indexer == nil {
					return nil
				}
				if pod, err := c.pods.Get(p.Key()); err == nil {
					return pod
				}
				return nil
			}
		}
	case openflow.KindRule:
		for _, pol := range cl.Policies {
			for _, d := range []model.Direction{model.Ingress, model.Egress} {
				for i := range pol.Rules(d) {
					if compiler.RuleCookie(compiler.RuleKey(pol, d, i)) == cookie && c.policyLister != nil {
						if np, err := c.policyLister.NetworkPolicies(pol.Namespace).Get(pol.Name); err == nil {
							return np
						}
						return nil
					}
				}
			}
		}
	case openflow.KindService:
		for _, svc := range cl.Services {
			if compiler.ServiceCookie(svc) == cookie && c.svcLister != nil {
				ns, name, _ := cache.SplitMetaNamespaceKey(svc.Key())
				if s, err := c.svcLister.Services(ns).Get(name); err == nil {
					return s
				}
				return nil
			}
		}
	}
	return nil
}

// event records a Kubernetes Event on an origin's object, if it has one.
// client-go's recorder aggregates and rate-limits repeats; the controller
// records only changes (a new refusal, an acceptance).
func (c *Controller) event(cookie openflow.Cookie, typ, reason, format string, args ...any) {
	if c.recorder == nil {
		return
	}
	if obj := c.involved(cookie); obj != nil {
		c.recorder.Eventf(obj, typ, reason, format, args...)
	}
}

// RefusedOrigins lists the refused origins (description: OVS's error),
// sorted, for logs and tests.
func (c *Controller) RefusedOrigins() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, st := range c.refused {
		out = append(out, fmt.Sprintf("%s: %s", st.desc, st.msg))
	}
	sort.Strings(out)
	return out
}
