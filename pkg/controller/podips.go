package controller

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
)

// Two live pods can claim one address (a stale status, a bug elsewhere):
// flows keyed by the address (delivery, peer identity) can serve one pod
// only. The controller decides which, the same way whatever order the
// events came in: a pod of this node with a port on the bridge (the CNI
// plugin attached it here: proof it holds the address) comes first; then
// the pod created first (metadata.creationTimestamp) keeps the address, on
// a tie the lower UID. A stale status (a pod of another node, or one never
// attached here) therefore never takes the address from a pod attached on
// this node. The other pod enters the model
// without that address (it can neither send from it nor be reached at it:
// fail closed) until the winner releases it. Pods that are not active
// (hostNetwork, phase Succeeded or Failed) claim nothing. Each duplicate is
// logged with both pods and counted in ovs_netpol_duplicate_pod_ips.

// ipClaim is one pod's claim on an address.
type ipClaim struct {
	key     string // namespace/name
	uid     string
	created time.Time
	bound   bool // a pod of this node with a port binding
}

// before orders claims: the winner first.
func (a ipClaim) before(b ipClaim) bool {
	switch {
	case a.bound != b.bound:
		return a.bound
	case !a.created.Equal(b.created):
		return a.created.Before(b.created)
	case a.uid != b.uid:
		return a.uid < b.uid
	}
	return a.key < b.key
}

// ipClaims are the active pods' claims, by address and by pod.
type ipClaims struct {
	byIP  map[netip.Addr]map[string]ipClaim
	byPod map[string][]netip.Addr
	dups  int // addresses with more than one claimant
}

func newIPClaims() ipClaims {
	return ipClaims{byIP: map[netip.Addr]map[string]ipClaim{}, byPod: map[string][]netip.Addr{}}
}

// set replaces pod key's claims by ips (none: it claims nothing). It
// returns the addresses whose claimants changed.
func (cl *ipClaims) set(c ipClaim, ips []netip.Addr) []netip.Addr {
	var changed []netip.Addr
	for _, ip := range cl.byPod[c.key] {
		if !slices.Contains(ips, ip) {
			cl.drop(ip, c.key)
			changed = append(changed, ip)
		}
	}
	for _, ip := range ips {
		m := cl.byIP[ip]
		if m == nil {
			m = map[string]ipClaim{}
			cl.byIP[ip] = m
		}
		if old, ok := m[c.key]; ok && old.uid == c.uid && old.bound == c.bound && old.created.Equal(c.created) {
			continue
		}
		if len(m) == 1 {
			if _, self := m[c.key]; !self {
				cl.dups++
			}
		}
		m[c.key] = c
		changed = append(changed, ip)
	}
	if len(ips) == 0 {
		delete(cl.byPod, c.key)
	} else {
		cl.byPod[c.key] = slices.Clone(ips)
	}
	return changed
}

func (cl *ipClaims) drop(ip netip.Addr, key string) {
	m := cl.byIP[ip]
	delete(m, key)
	switch len(m) {
	case 0:
		delete(cl.byIP, ip)
	case 1:
		cl.dups--
	}
}

// claimants returns ip's claims, the winner first.
func (cl *ipClaims) claimants(ip netip.Addr) []ipClaim {
	var out []ipClaim
	for _, c := range cl.byIP[ip] {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b ipClaim) int {
		switch {
		case a.before(b):
			return -1
		case b.before(a):
			return 1
		}
		return 0
	})
	return out
}

// owns reports whether pod key keeps ip (it claims it and wins).
func (cl *ipClaims) owns(key string, ip netip.Addr) bool {
	c := cl.claimants(ip)
	return len(c) == 0 || c[0].key == key
}

// applyPod brings a pod's current state into the model, resolving the
// addresses it shares with other active pods (see above).
func (c *Controller) applyPod(key string) {
	pod, err := c.pods.Get(key)
	if apierrors.IsNotFound(err) {
		c.claimIPs(ipClaim{key: key}, nil)
		if oldUID, had := c.podUIDs[key]; had {
			c.inc.DeletePod(oldUID)
			delete(c.podUIDs, key)
		}
		return
	}
	if err != nil {
		c.reject("pod", key, err)
		return
	}
	p, err := normalize.Pod(pod)
	if err != nil {
		c.reject("pod", key, err)
		return
	}
	var claim []netip.Addr
	if p.Active() {
		claim = p.IPs
	}
	_, bound := c.inc.Config().Bindings[key]
	bound = bound && p.Node == c.opts.Compiler.Node
	c.claimIPs(ipClaim{key: key, uid: p.UID, created: pod.CreationTimestamp.Time, bound: bound}, claim)
	c.setModelPod(key, p)
}

// claimIPs records a pod's claims; the other claimants of each changed
// address are brought into the model again (one may win or lose it), and
// duplicates are reported.
func (c *Controller) claimIPs(claim ipClaim, ips []netip.Addr) {
	changed := c.ips.set(claim, ips)
	if len(changed) == 0 {
		return
	}
	others := map[string]bool{}
	for _, ip := range changed {
		cs := c.ips.claimants(ip)
		for _, o := range cs {
			if o.key != claim.key {
				others[o.key] = true
			}
		}
		if len(cs) > 1 {
			var losers []string
			for _, o := range cs[1:] {
				losers = append(losers, o.key)
			}
			c.log.WithFields(logrus.Fields{"ip": ip.String(), "kept by": cs[0].key, "withheld from": strings.Join(losers, ",")}).
				Warn("duplicate pod IP: more than one active pod claims the address; it is kept by a pod attached on this node, else the pod created first (then the lower UID); the others' flows leave it out")
		}
	}
	c.metrics.DuplicatePodIPs.Set(float64(c.ips.dups))
	for k := range others {
		pod, err := c.pods.Get(k)
		if err != nil {
			continue // its own event follows
		}
		if p, err := normalize.Pod(pod); err == nil {
			c.setModelPod(k, p)
		}
	}
}

// setBindings takes new port bindings; a pod that gained or lost its
// binding ranks differently among the claimants of its addresses.
func (c *Controller) setBindings(b map[string]compiler.Binding) {
	old := c.inc.Config().Bindings
	c.inc.SetBindings(b)
	var changed []string
	for key := range c.ips.byPod {
		_, had := old[key]
		_, has := b[key]
		if had != has {
			changed = append(changed, key)
		}
	}
	for _, key := range changed {
		c.applyPod(key)
	}
}

// setModelPod sets a normalized pod into the model with only the addresses
// it keeps.
func (c *Controller) setModelPod(key string, p *model.Pod) {
	if p.Active() && len(c.ips.byPod[key]) > 0 {
		kept := p.IPs[:0:0]
		for _, ip := range p.IPs {
			if c.ips.owns(key, ip) {
				kept = append(kept, ip)
			}
		}
		p.IPs = kept
	}
	if oldUID, had := c.podUIDs[key]; had && oldUID != p.UID {
		c.inc.DeletePod(oldUID) // recreated under the same name
	}
	c.podUIDs[key] = p.UID
	c.inc.SetPod(p)
}
