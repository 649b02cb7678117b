package convert

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// Fingerprint renders what a normalized policy means (everything but its
// APIVersion) as text: two policies with the same fingerprint have the same
// effect. Selectors are rendered from their sorted requirements; nil
// selectors and empty ones are distinguished, as the model does.
func Fingerprint(p *model.Policy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s podSelector=%s ingress=%v egress=%v", p.Key(), selectorString(p.PodSelector), p.AffectsIngress, p.AffectsEgress)
	for _, d := range []model.Direction{model.Ingress, model.Egress} {
		for i, r := range p.Rules(d) {
			fmt.Fprintf(&b, "\n%s[%d]:", d, i)
			if r.AllPeers() {
				b.WriteString(" all-peers")
			}
			for _, peer := range r.Peers {
				if peer.IPBlock != nil {
					fmt.Fprintf(&b, " ipBlock(%s except %v)", peer.IPBlock.CIDR, peer.IPBlock.Except)
					continue
				}
				fmt.Fprintf(&b, " peer(ns=%s pods=%s)", selectorString(peer.NamespaceSelector), selectorString(peer.PodSelector))
			}
			b.WriteString(" ports:")
			if r.AllPorts() {
				b.WriteString(" all")
			}
			for _, port := range r.Ports {
				fmt.Fprintf(&b, " %s", port)
			}
		}
	}
	return b.String()
}

func selectorString(s labels.Selector) string {
	if s == nil {
		return "<none>"
	}
	reqs, selectable := s.Requirements()
	if !selectable {
		return "<nothing>"
	}
	parts := make([]string, len(reqs))
	for i, r := range reqs {
		parts[i] = r.String()
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ", ") + "}"
}
