package normalize

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// describe renders a normalized policy in one canonical line per part, so
// tables can state expectations compactly.
func describe(p *model.Policy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s sel=%s ingress=%v egress=%v", p.Key(), p.APIVersion, sel(p.PodSelector), p.AffectsIngress, p.AffectsEgress)
	for _, d := range []model.Direction{model.Ingress, model.Egress} {
		for i, r := range p.Rules(d) {
			fmt.Fprintf(&b, "\n%s[%d] %s", d, i, describeRule(r))
		}
	}
	return b.String()
}

func describeRule(r model.Rule) string {
	var peers, ports []string
	for _, p := range r.Peers {
		if p.IPBlock != nil {
			s := "ip:" + p.IPBlock.CIDR.String()
			for _, e := range p.IPBlock.Except {
				s += "-" + e.String()
			}
			peers = append(peers, s)
			continue
		}
		peers = append(peers, "ns:"+sel(p.NamespaceSelector)+",pod:"+sel(p.PodSelector))
	}
	for _, p := range r.Ports {
		ports = append(ports, p.String())
	}
	if r.AllPeers() {
		peers = []string{"*"}
	}
	if r.AllPorts() {
		ports = []string{"*"}
	}
	return "peers=" + strings.Join(peers, " ") + " ports=" + strings.Join(ports, " ")
}

func sel(s labels.Selector) string {
	if s == nil {
		return "nil"
	}
	return "{" + s.String() + "}"
}
