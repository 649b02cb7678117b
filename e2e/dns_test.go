package e2e

// TestDNSPattern: the most common egress policy there is (issue 9, item 5).
// Two linked nodes with the built agent and kube-proxy. kube-system has two
// kube-dns pods (k8s-app=kube-dns, one per node, serving UDP and TCP 53,
// and 80) and the Service kube-dns (dns 53/UDP, dns-tcp 53/TCP) with its
// EndpointSlice; namespace dnsclient has a client pod per node; namespace
// dnsother has a pod "web" with its Service. A policy applied with kubectl
// egress-isolates dnsclient's pods and allows only UDP and TCP 53 to
// kube-system's kube-dns pods: DNS through the kube-dns cluster IP passes
// (balanced in the bridge, so the egress rule sees the kube-dns pod), and
// every other connection of the clients is dropped.

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const dnsPolicy = `
podSelector: {}
policyTypes: [Egress]
egress:
- to:
  - namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: kube-system}
    podSelector:
      matchLabels: {k8s-app: kube-dns}
  ports:
  - {protocol: UDP, port: 53}
  - {protocol: TCP, port: 53}`

func TestDNSPattern(t *testing.T) {
	start := time.Now()
	w := newWorld(t, "dns", "10.66")
	s := &svcWorld{world: w, gw6: map[*node]string{}, ip6: map[string]string{}}
	n1, n2 := w.addNode(t), w.addNode(t)
	link(t, n1, n2)
	n1.startAgent(t, "v1")
	n2.startAgent(t, "v1")
	w.ensureNamespace(t, "kube-system", nil)
	w.ensureNamespace(t, "dnsclient", map[string]string{"ns": "dnsclient"})
	w.ensureNamespace(t, "dnsother", map[string]string{"ns": "dnsother"})
	dnsPorts := []corev1.ContainerPort{
		{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
		{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
	}
	dns1 := n1.addPod(t, podSpec{ns: "kube-system", name: "kube-dns-1", labels: map[string]string{"k8s-app": "kube-dns"},
		ports: dnsPorts, tcp: []int{53, 80}, udp: []int{53, 80}})
	dns2 := n2.addPod(t, podSpec{ns: "kube-system", name: "kube-dns-2", labels: map[string]string{"k8s-app": "kube-dns"},
		ports: dnsPorts, tcp: []int{53, 80}, udp: []int{53, 80}})
	client1 := n1.addPod(t, podSpec{ns: "dnsclient", name: "client1", labels: map[string]string{"app": "client"}})
	client2 := n2.addPod(t, podSpec{ns: "dnsclient", name: "client2", labels: map[string]string{"app": "client"}})
	web := n2.addPod(t, podSpec{ns: "dnsother", name: "web", labels: map[string]string{"app": "web"}})
	w.waitPodsRealized(t)

	kubeDNS := s.createService(t, "kube-system", "kube-dns", corev1.ServiceSpec{
		Selector: map[string]string{"k8s-app": "kube-dns"},
		Ports: []corev1.ServicePort{
			svcPort("dns", corev1.ProtocolUDP, 53, intstr.FromInt32(53)),
			svcPort("dns-tcp", corev1.ProtocolTCP, 53, intstr.FromInt32(53)),
		}})
	setSliceOf(t, w, "kube-system", "kube-dns", "kube-dns-x8m2c", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{slicePort("dns", corev1.ProtocolUDP, 53), slicePort("dns-tcp", corev1.ProtocolTCP, 53)},
		readyEndpoints(dns1, dns2)...)
	webSvc := s.createService(t, "dnsother", "web", corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports: []corev1.ServicePort{
			svcPort("http", corev1.ProtocolTCP, 80, intstr.FromInt32(80)),
			svcPort("udp", corev1.ProtocolUDP, 80, intstr.FromInt32(80)),
		}})
	setSliceOf(t, w, "dnsother", "web", "web-c5n7r", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 80), slicePort("udp", corev1.ProtocolUDP, 80)},
		readyEndpoints(web)...)
	dnsVIP, webVIP := kubeDNS.Spec.ClusterIP, webSvc.Spec.ClusterIP
	s.waitLB(t, "udp", dnsVIP, 53, backendsOf(53, dns1.ip, dns2.ip))
	s.waitLB(t, "tcp", dnsVIP, 53, backendsOf(53, dns1.ip, dns2.ip))
	s.waitLB(t, "tcp", webVIP, 80, backendsOf(80, web.ip))
	s.waitLB(t, "udp", webVIP, 80, backendsOf(80, web.ip))

	dnsPods := []string{dns1.key(), dns2.key()}
	// probeAll: DNS through the cluster IP always answered by both
	// kube-dns pods (30 connections each, P(one pod never chosen) = 2^-29),
	// and directly; the rest answered when open, dropped otherwise.
	probeAll := func(t *testing.T, open bool) {
		for _, c := range []*pod{client1, client2} {
			src := podSource(c)
			what := c.key()
			s.expectAnswers(t, what+" DNS via kube-dns", src, conn{"udp", dnsVIP, 53}, 30, true, dnsPods...)
			s.expectAnswers(t, what+" DNS via kube-dns", src, conn{"tcp", dnsVIP, 53}, 30, true, dnsPods...)
			for _, d := range []*pod{dns1, dns2} {
				s.expectAnswers(t, what+" DNS to the pod", src, conn{"udp", d.ip, 53}, 2, true, d.key())
				s.expectAnswers(t, what+" DNS to the pod", src, conn{"tcp", d.ip, 53}, 2, true, d.key())
			}
			others := []struct {
				what string
				c    conn
				who  string
			}{
				{"another Service's cluster IP", conn{"tcp", webVIP, 80}, web.key()},
				{"another Service's cluster IP", conn{"udp", webVIP, 80}, web.key()},
				{"another pod's IP", conn{"tcp", web.ip, 80}, web.key()},
				{"another pod's IP", conn{"udp", web.ip, 80}, web.key()},
				{"a kube-dns pod on another port", conn{"tcp", dns1.ip, 80}, dns1.key()},
				{"a kube-dns pod on another port", conn{"udp", dns2.ip, 80}, dns2.key()},
				{"a kube-dns pod on another port", conn{"tcp", dns2.ip, 80}, dns2.key()},
			}
			var blocked []failCase
			for _, o := range others {
				if open {
					s.expectAnswers(t, what+" to "+o.what, src, o.c, 2, true, o.who)
				} else {
					blocked = append(blocked, failCase{what + " to " + o.what, o.c})
				}
			}
			if !open {
				// kube-dns's cluster IP on a port it does not have: not
				// balanced, so the egress rule (pods only) does not allow it.
				blocked = append(blocked, failCase{what + " to kube-dns's cluster IP on another port", conn{"tcp", dnsVIP, 80}})
				s.expectFailAll(t, src, blocked, 2, time.Second, whyTimeout)
			}
		}
	}

	t.Run("before-the-policy-everything-connects", func(t *testing.T) {
		probeAll(t, true)
		s.cases.Add(1)
	})
	t.Run("egress-only-dns-to-kube-dns", func(t *testing.T) {
		w.change(t, func() { w.kubectlApply(t, np("dnsclient", "allow-dns-only", dnsPolicy)) })
		probeAll(t, false)
		s.cases.Add(1)
	})
	t.Run("policy-deleted", func(t *testing.T) {
		w.change(t, func() { w.deletePolicies(t, "dnsclient") })
		probeAll(t, true)
		s.cases.Add(1)
	})
	s.deleteService(t, "kube-system", "kube-dns")
	s.deleteService(t, "dnsother", "web")
	line := fmt.Sprintf("TestDNSPattern: %d cases, %d real probes (DNS through the kube-dns cluster IP over UDP and TCP, other egress), in %v",
		s.cases.Load(), s.probes.Load(), time.Since(start).Round(time.Second))
	t.Log(line)
	addSummary(line)
}
