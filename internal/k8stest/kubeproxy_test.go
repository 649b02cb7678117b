package k8stest_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovs-netpol/ovs-netpol/internal/k8stest"
)

// A real kube-proxy in a node's host namespace, against the test API
// server: a ClusterIP with an EndpointSlice is DNATed to a backend in another
// namespace (TCP and UDP), a Service without endpoints gets kube-proxy's
// REJECT rule and connects to it are refused at once; no sysctl is touched
// (global or of the namespace).
//
//	host netns (kube-proxy, 10.200.0.1) ==veth== backend netns (10.200.0.2: tcp/8080, udp/8053)
func TestKubeProxyServices(t *testing.T) {
	t.Parallel()
	c := k8stest.Shared(t)
	ctx := ctxFor(t)

	// The user kube-proxy authenticates as is bound to system:node-proxier
	// by the API server's bootstrap policy: no RBAC of ours is needed.
	crb, err := c.Client.RbacV1().ClusterRoleBindings().Get(ctx, "system:node-proxier", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if crb.RoleRef.Name != "system:node-proxier" ||
		!containsSubject(crb.Subjects, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: k8stest.KubeProxyUser}) {
		t.Fatalf("ClusterRoleBinding system:node-proxier: %+v %+v", crb.RoleRef, crb.Subjects)
	}

	host, backend := vethPair(t, "10.200.0.1/24", "10.200.0.2/24")
	// Local connects to a ClusterIP need a route before iptables sees them.
	run(t, "ip", "-n", host, "route", "add", "default", "via", "10.200.0.2")
	serveTCP(t, backend, "10.200.0.2:8080")
	serveUDP(t, backend, "10.200.0.2:8053")

	globalsBefore, netnsBefore := globalSysctls(t), netnsSysctls(t, host)
	node := "kp-node-" + host[len(host)-6:]
	kp := c.StartKubeProxy(t, k8stest.KubeProxyOptions{
		NetNS:        host,
		NodeName:     node,
		NodeIPs:      []string{"10.200.0.1"},
		ClusterCIDRs: []string{"10.244.0.0/16"},
	})
	n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the Node kube-proxy reads: %v", err)
	}
	t.Logf("Node %s: %+v", node, n.Status.Addresses)

	ns := "kube-proxy-" + host[len(host)-6:]
	createNamespace(t, c, ns)
	ports := []corev1.ServicePort{
		{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)},
		{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(8053)},
	}
	web := createService(t, c, ns, "web", ports)
	empty := createService(t, c, ns, "empty", ports)
	http, dns := "http", "dns"
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	ready := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"10.200.0.2"},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		}},
		Ports: []discoveryv1.EndpointPort{
			{Name: &http, Protocol: &tcp, Port: ptr(int32(8080))},
			{Name: &dns, Protocol: &udp, Port: ptr(int32(8053))},
		},
	}
	if _, err := c.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The rules kube-proxy must write: DNAT for web (nat table), REJECT for
	// empty (filter table), each port on its own.
	want := map[string][]string{
		"web http":   {"-A KUBE-SERVICES ", "-d " + web + "/32", "-p tcp", "--dport 80", `"` + ns + `/web:http cluster IP"`, "-j KUBE-SVC-"},
		"web dns":    {"-A KUBE-SERVICES ", "-d " + web + "/32", "-p udp", "--dport 53", `"` + ns + `/web:dns cluster IP"`, "-j KUBE-SVC-"},
		"empty http": {"-A KUBE-SERVICES ", "-d " + empty + "/32", "-p tcp", "--dport 80", `"` + ns + `/empty:http has no endpoints"`, "-j REJECT"},
		"empty dns":  {"-A KUBE-SERVICES ", "-d " + empty + "/32", "-p udp", "--dport 53", `"` + ns + `/empty:dns has no endpoints"`, "-j REJECT"},
	}
	t0 := time.Now()
	if err := kp.WaitIptables(ctx, func(rules string) bool {
		for _, parts := range want {
			if findRule(rules, parts) == "" {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if err := kp.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	rules, err := kp.IptablesSave()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rules for both Services in place %v after they were created:", time.Since(t0).Round(time.Millisecond))
	for _, k := range []string{"web http", "web dns", "empty http", "empty dns"} {
		t.Logf("  %s: %s", k, findRule(rules, want[k]))
	}

	t.Run("TCPClusterIPIsDNATed", func(t *testing.T) {
		conn, err := k8stest.DialInNetNS(ctx, host, "tcp", net.JoinHostPort(web, "80"))
		if err != nil {
			t.Fatalf("connect %s:80 from the host namespace: %v", web, err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || line != "backend 10.200.0.1\n" {
			t.Fatalf("from %s:80 read %q, %v; want the backend's banner (client seen as the node's address)", web, line, err)
		}
	})

	t.Run("UDPClusterIPIsDNATed", func(t *testing.T) {
		conn, err := k8stest.DialInNetNS(ctx, host, "udp", net.JoinHostPort(web, "53"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		buf := make([]byte, 100)
		for try := 0; ; try++ {
			if _, err := conn.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			n, err := conn.Read(buf)
			if err == nil {
				if got := string(buf[:n]); got != "backend ping" {
					t.Fatalf("answer from %s:53: %q", web, got)
				}
				return
			}
			if try == 2 {
				t.Fatalf("no answer from %s:53/udp: %v", web, err)
			}
		}
	})

	t.Run("TCPNoEndpointsIsRejected", func(t *testing.T) {
		start := time.Now()
		conn, err := k8stest.DialInNetNS(ctx, host, "tcp", net.JoinHostPort(empty, "80"))
		took := time.Since(start)
		if err == nil {
			conn.Close()
			t.Fatalf("connect %s:80 (no endpoints) succeeded", empty)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) || took > time.Second {
			t.Fatalf("connect %s:80 (no endpoints): %v after %v; want connection refused at once", empty, err, took)
		}
		t.Logf("connect %s:80: %v after %v", empty, err, took.Round(time.Microsecond))
	})

	t.Run("UDPNoEndpointsIsRejected", func(t *testing.T) {
		conn, err := k8stest.DialInNetNS(ctx, host, "udp", net.JoinHostPort(empty, "53"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// REJECT in OUTPUT: the send itself fails with EPERM and the ICMP
		// port unreachable it generates makes the next read fail with
		// ECONNREFUSED, both at once.
		start := time.Now()
		_, werr := conn.Write([]byte("ping"))
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, rerr := conn.Read(make([]byte, 100))
		took := time.Since(start)
		if (werr != nil && !errors.Is(werr, syscall.EPERM)) || !errors.Is(rerr, syscall.ECONNREFUSED) || took > time.Second {
			t.Fatalf("UDP to %s:53 (no endpoints): write: %v, read: %v after %v; want EPERM (or nil), then connection refused at once", empty, werr, rerr, took)
		}
		t.Logf("UDP to %s:53: write: %v; read: %v; after %v", empty, werr, rerr, took.Round(time.Microsecond))
	})

	t.Run("NoSysctlChanged", func(t *testing.T) {
		if after := globalSysctls(t); after != globalsBefore {
			t.Errorf("global conntrack settings changed: before %s, after %s", globalsBefore, after)
		}
		if after := netnsSysctls(t, host); after != netnsBefore {
			t.Errorf("sysctls of the host namespace changed: before %s, after %s", netnsBefore, after)
		}
	})
}

func containsSubject(subjects []rbacv1.Subject, s rbacv1.Subject) bool {
	for _, x := range subjects {
		if x == s {
			return true
		}
	}
	return false
}

func ptr[T any](v T) *T { return &v }

// findRule returns the first line of an iptables-save dump that contains
// every part, or "".
func findRule(rules string, parts []string) string {
lines:
	for _, line := range strings.Split(rules, "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue lines
			}
		}
		return line
	}
	return ""
}

func createService(t *testing.T, c *k8stest.Cluster, ns, name string, ports []corev1.ServicePort) string {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: ports},
	}
	created, err := c.Client.CoreV1().Services(ns).Create(ctxFor(t), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Allocated from the cluster's --service-cluster-ip-range 10.96.0.0/16.
	if !strings.HasPrefix(created.Spec.ClusterIP, "10.96.") {
		t.Fatalf("Service %s/%s got ClusterIP %q", ns, name, created.Spec.ClusterIP)
	}
	return created.Spec.ClusterIP
}

// vethPair makes two network namespaces joined by a veth with the given
// addresses, loopback up in both; the test's cleanup deletes them.
func vethPair(t *testing.T, hostCIDR, backendCIDR string) (host, backend string) {
	t.Helper()
	id := fmt.Sprintf("%06x", rand.IntN(1<<24))
	host, backend = "kp-host-"+id, "kp-back-"+id
	hv, bv := "kph-"+id, "kpb-"+id
	for _, n := range []string{host, backend} {
		run(t, "ip", "netns", "add", n)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "delete", n).CombinedOutput(); err != nil {
				t.Errorf("ip netns delete %s: %v: %s", n, err, out)
			}
		})
	}
	run(t, "ip", "link", "add", hv, "netns", host, "type", "veth", "peer", "name", bv, "netns", backend)
	for _, x := range [][3]string{{host, hv, hostCIDR}, {backend, bv, backendCIDR}} {
		run(t, "ip", "-n", x[0], "addr", "add", x[2], "dev", x[1])
		run(t, "ip", "-n", x[0], "link", "set", x[1], "up")
		run(t, "ip", "-n", x[0], "link", "set", "lo", "up")
	}
	return host, backend
}

// serveTCP accepts connections on addr inside netns and writes
// "backend CLIENT_IP\n" to each, then closes it.
func serveTCP(t *testing.T, netns, addr string) {
	t.Helper()
	l, err := k8stest.ListenInNetNS(netns, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
			_, _ = io.WriteString(conn, "backend "+host+"\n")
			conn.Close()
		}
	}()
}

// serveUDP answers every datagram on addr inside netns with "backend " + it.
func serveUDP(t *testing.T, netns, addr string) {
	t.Helper()
	pc, err := k8stest.ListenPacketInNetNS(netns, "udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte("backend "), buf[:n]...), from)
		}
	}()
}

// globalSysctls reads the conntrack settings shared by all network
// namespaces that kube-proxy's defaults would raise.
func globalSysctls(t *testing.T) string {
	t.Helper()
	var parts []string
	for _, f := range []string{"/proc/sys/net/netfilter/nf_conntrack_max", "/sys/module/nf_conntrack/parameters/hashsize"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, f+"="+strings.TrimSpace(string(b)))
	}
	return strings.Join(parts, " ")
}

// netnsSysctls reads the per-namespace settings kube-proxy's defaults
// would change: route_localnet (localhostNodePorts) and the conntrack TCP
// timeouts.
func netnsSysctls(t *testing.T, netns string) string {
	t.Helper()
	return strings.Join(strings.Fields(run(t, "ip", "netns", "exec", netns, "sysctl",
		"net.ipv4.conf.all.route_localnet",
		"net.netfilter.nf_conntrack_tcp_timeout_established",
		"net.netfilter.nf_conntrack_tcp_timeout_close_wait",
		"net.netfilter.nf_conntrack_tcp_be_liberal")), " ")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
