package k8stest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/ovs-netpol/ovs-netpol/internal/k8stest"
	"github.com/ovs-netpol/ovs-netpol/pkg/convert"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// diffNamespace holds the corpus' namespaced objects; the pods it creates
// for real are on a node no other test uses (tests in this binary share the
// cluster and list pods by node).
const diffNamespace = "apidiff"

func nsYAML(meta string) string { return "apiVersion: v1\nkind: Namespace\nmetadata: " + meta + "\n" }

func podYAML(name, spec, status string) string {
	out := "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + ", namespace: " + diffNamespace + "}\nspec: " + spec + "\n"
	if status != "" {
		out += "status: " + status + "\n"
	}
	return out
}

// okContainers is a container spec the API server accepts.
const okContainers = "{containers: [{name: c, image: busybox}]}"

func portsPod(name, ports string) string {
	return podYAML(name, "{containers: [{name: c, image: busybox, ports: "+ports+"}]}", "")
}

func npYAML(name, spec string) string {
	return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name + ", namespace: " + diffNamespace + "}\nspec: " + spec + "\n"
}

func npPorts(name, ports string) string {
	return npYAML(name, "{podSelector: {}, ingress: [{ports: "+ports+"}]}")
}

func npFrom(name, peers string) string {
	return npYAML(name, "{podSelector: {}, ingress: [{from: "+peers+"}]}")
}

func svcYAML(name, spec string) string {
	return "apiVersion: v1\nkind: Service\nmetadata: {name: " + name + ", namespace: " + diffNamespace + "}\nspec: " + spec + "\n"
}

func sliceYAML(name, rest string) string {
	return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: " + name + ", namespace: " + diffNamespace +
		", labels: {kubernetes.io/service-name: web}}\n" + rest + "\n"
}

// apiCorpus: objects of every kind ovs-netpol reads, valid and not, with
// the edges of each rule and the inputs of issue 10.
func apiCorpus() []struct{ name, doc string } {
	long := func(n int) string { return strings.Repeat("a", n) }
	return []struct{ name, doc string }{
		// Namespaces
		{"namespace", nsYAML("{name: diff-ok, labels: {team: x, example.com/tier: web}, annotations: {note: anything goes}}")},
		{"namespace name 63 chars", nsYAML("{name: " + long(63) + "}")},
		{"namespace name 64 chars", nsYAML("{name: " + long(64) + "}")},
		{"namespace name upper case", nsYAML("{name: Diff}")},
		{"namespace name with a dot", nsYAML("{name: a.b}")},
		{"namespace name with a line break", nsYAML(`{name: "a\ntable=0,actions=NORMAL"}`)},
		{"label value 63 chars", nsYAML("{name: diff-l63, labels: {k: " + long(63) + "}}")},
		{"label value 64 chars", nsYAML("{name: diff-l64, labels: {k: " + long(64) + "}}")},
		{"label value 5 MB", nsYAML("{name: diff-l5m, labels: {k: " + long(5<<20) + "}}")},
		{"label key with two slashes", nsYAML("{name: diff-lk, labels: {a/b/c: x}}")},
		{"label value with a line break", nsYAML(`{name: diff-lnl, labels: {k: "a\nb"}}`)},
		{"namespace with metadata.namespace (cleared)", nsYAML("{name: diff-nsns, namespace: elsewhere}")},
		{"namespace annotation key with a space", nsYAML("{name: diff-ann, annotations: {\"a b\": c}}")},
		{"namespace finalizer kubernetes", nsYAML("{name: diff-fin}\nspec: {finalizers: [kubernetes]}")},
		{"namespace finalizer not qualified", nsYAML("{name: diff-fin2}\nspec: {finalizers: [custom]}")},

		// Pods (status checked through the status subresource)
		{"pod", podYAML("p-ok", "{nodeName: apidiff-node, containers: [{name: c, image: busybox, ports: [{name: http, containerPort: 80}]}]}", "")},
		{"pod name upper case", podYAML("P-bad", okContainers, "")},
		{"pod name with a line break", podYAML(`"p\nflow add table=0,actions=NORMAL"`, okContainers, "")},
		{"pod without containers", podYAML("p-noc", "{nodeName: apidiff-node}", "")},
		{"pod container without image", podYAML("p-noimg", "{containers: [{name: c}]}", "")},
		{"pod container name upper case", podYAML("p-cname", "{containers: [{name: C, image: busybox}]}", "")},
		{"pod named port 15 chars", portsPod("p-np15", "[{name: "+long(15)+", containerPort: 80}]")},
		{"pod named port 16 chars", portsPod("p-np16", "[{name: "+long(16)+", containerPort: 80}]")},
		{"pod named port only digits", portsPod("p-npd", "[{name: \"123\", containerPort: 80}]")},
		{"pod containerPort 65535", portsPod("p-cp65535", "[{containerPort: 65535}]")},
		{"pod containerPort 65536", portsPod("p-cp65536", "[{containerPort: 65536}]")},
		{"pod port protocol lower case", portsPod("p-tcp", "[{containerPort: 80, protocol: tcp}]")},
		{"pod port protocol SCTP", portsPod("p-sctp", "[{containerPort: 80, protocol: SCTP}]")},
		{"pod duplicate port names", portsPod("p-dupn", "[{name: a, containerPort: 80}, {name: a, containerPort: 81}]")},
		{"pod nodeName upper case", podYAML("p-node", "{nodeName: Node_1, containers: [{name: c, image: busybox}]}", "")},
		{"pod hostNetwork hostPort differs", podYAML("p-hn", "{hostNetwork: true, containers: [{name: c, image: busybox, ports: [{containerPort: 80, hostPort: 81}]}]}", "")},
		{"pod duplicate container names", podYAML("p-dupc", "{containers: [{name: c, image: busybox}, {name: c, image: busybox}]}", "")},
		{"pod init container named like a container", podYAML("p-initc", "{initContainers: [{name: c, image: busybox}], containers: [{name: c, image: busybox}]}", "")},
		{"pod restartPolicy lower case", podYAML("p-rp", "{restartPolicy: always, containers: [{name: c, image: busybox}]}", "")},
		{"pod hostNetwork port without hostPort", podYAML("p-hn2", "{hostNetwork: true, containers: [{name: c, image: busybox, ports: [{containerPort: 8080}]}]}", "")},
		{"pod owner reference without uid", "apiVersion: v1\nkind: Pod\nmetadata: {name: p-own, namespace: " + diffNamespace + ", ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: rs}]}\nspec: " + okContainers + "\n"},
		{"pod status dual-stack", podYAML("p-st", okContainers, `{podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.5}, {ip: "fd00::5"}]}`)},
		{"pod status IP with leading zeros", podYAML("p-st0", okContainers, "{podIP: 10.244.1.05, podIPs: [{ip: 10.244.1.05}]}")},
		{"pod status IPv4-mapped IPv6", podYAML("p-st4in6", okContainers, `{podIP: "::ffff:10.244.1.5", podIPs: [{ip: "::ffff:10.244.1.5"}]}`)},
		{"pod status two IPv4", podYAML("p-st2", okContainers, "{podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.5}, {ip: 10.244.1.6}]}")},
		{"pod status podIP differs from podIPs[0]", podYAML("p-stdiff", okContainers, "{podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.6}]}")},
		{"pod status podIP only", podYAML("p-stip", okContainers, "{podIP: 10.244.1.7}")},
		{"pod status podIPs only", podYAML("p-stips", okContainers, "{podIPs: [{ip: 10.244.1.8}]}")},
		{"pod status non-canonical IPv6", podYAML("p-st6", okContainers, `{podIP: "FD00:0::5", podIPs: [{ip: "FD00:0::5"}]}`)},

		// NetworkPolicies
		{"policy", npYAML("np-ok", "{podSelector: {matchLabels: {app: db}}, policyTypes: [Ingress, Egress], ingress: [{from: [{podSelector: {}}, {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}, podSelector: {matchExpressions: [{key: a, operator: In, values: [b]}]}}], ports: [{port: 80}]}], egress: [{}]}")},
		{"policy name 253 chars", npYAML(long(253), "{podSelector: {}}")},
		{"policy name 254 chars", npYAML(long(254), "{podSelector: {}}")},
		{"policy name with a line break", npYAML(`"p\nflow add table=0,priority=65535,actions=NORMAL\n#"`, "{podSelector: {}}")},
		{"policy protocol lower case", npPorts("np-tcp", "[{protocol: tcp, port: 80}]")},
		{"policy protocol ICMP", npPorts("np-icmp", "[{protocol: ICMP}]")},
		{"policy port as a string of digits", npPorts("np-str", `[{port: "80"}]`)},
		{"policy port 0", npPorts("np-p0", "[{port: 0}]")},
		{"policy port 65535", npPorts("np-p65535", "[{port: 65535}]")},
		{"policy port 65536", npPorts("np-p65536", "[{port: 65536}]")},
		{"policy endPort below port", npPorts("np-end", "[{port: 90, endPort: 80}]")},
		{"policy endPort equal to port", npPorts("np-endeq", "[{port: 80, endPort: 80}]")},
		{"policy endPort 65536", npPorts("np-end65536", "[{port: 80, endPort: 65536}]")},
		{"policy endPort with a named port", npPorts("np-endname", "[{port: http, endPort: 90}]")},
		{"policy endPort without port", npPorts("np-endonly", "[{endPort: 90}]")},
		{"policy named port 15 chars", npPorts("np-n15", "[{port: "+long(15)+"}]")},
		{"policy named port 16 chars", npPorts("np-n16", "[{port: "+long(16)+"}]")},
		{"policy ipBlock with except", npFrom("np-cidr", "[{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]")},
		{"policy CIDR with host bits", npFrom("np-host", "[{ipBlock: {cidr: 10.0.0.1/24}}]")},
		{"policy except with host bits", npFrom("np-ehost", "[{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.1/16]}}]")},
		{"policy IPv4-mapped IPv6 CIDR", npFrom("np-4in6", `[{ipBlock: {cidr: "::ffff:10.0.0.0/104"}}]`)},
		{"policy CIDR with leading zeros", npFrom("np-zero", "[{ipBlock: {cidr: 010.0.0.0/8}}]")},
		{"policy non-canonical IPv6 CIDR", npFrom("np-v6", `[{ipBlock: {cidr: "FD00:0::/64"}}]`)},
		{"policy except outside cidr", npFrom("np-eout", "[{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]")},
		{"policy except equal to cidr", npFrom("np-eeq", "[{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}]")},
		{"policy except of the other family", npFrom("np-efam", `[{ipBlock: {cidr: 10.0.0.0/8, except: ["fd00::/64"]}}]`)},
		{"policy ipBlock and podSelector in one peer", npFrom("np-both", "[{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]")},
		{"policy empty peer", npFrom("np-empty", "[{}]")},
		{"policy policyTypes misspelled", npYAML("np-types", "{podSelector: {}, policyTypes: [Ingres]}")},
		{"policy selector value 64 chars", npYAML("np-sel64", "{podSelector: {matchLabels: {a: "+long(64)+"}}}")},
		{"policy three policyTypes", npYAML("np-3types", "{podSelector: {}, policyTypes: [Ingress, Egress, Ingress]}")},
		{"policy selector Exists with values", npYAML("np-exists", "{podSelector: {matchExpressions: [{key: a, operator: Exists, values: [b]}]}}")},
		{"policy selector In without values", npYAML("np-in", "{podSelector: {matchExpressions: [{key: a, operator: In}]}}")},

		// Services
		{"service", svcYAML("web", "{clusterIP: 10.96.0.50, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}, {name: dns, port: 53, protocol: UDP}]}")},
		{"service name starting with a digit", svcYAML("1web", "{ports: [{port: 80}]}")},
		{"service name with a dot", svcYAML("web.x", "{ports: [{port: 80}]}")},
		{"service protocol lower case", svcYAML("web-tcp", "{ports: [{port: 80, protocol: tcp}]}")},
		{"service two ports without names", svcYAML("web-2p", "{ports: [{port: 80}, {port: 81}]}")},
		{"service port 0", svcYAML("web-p0", "{ports: [{port: 0}]}")},
		{"service without ports", svcYAML("web-nop", "{clusterIP: 10.96.0.51}")},
		{"service headless without ports", svcYAML("web-headless", "{clusterIP: None}")},
		{"service targetPort name 16 chars", svcYAML("web-tp16", "{ports: [{port: 80, targetPort: "+long(16)+"}]}")},
		{"service cluster IP with leading zeros", svcYAML("web-ip0", "{clusterIP: 10.96.0.052, ports: [{port: 80}]}")},
		{"service selector value with a space", svcYAML("web-sel", `{selector: {app: "a b"}, ports: [{port: 80}]}`)},
		{"service type lower case", svcYAML("web-type", "{type: clusterip, ports: [{port: 80}]}")},
		{"service affinity timeout above a day", svcYAML("web-aff", "{sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}, ports: [{port: 80}]}")},
		{"service ExternalName without a name", svcYAML("web-ext", "{type: ExternalName}")},
		{"service ExternalName", svcYAML("web-ext2", "{type: ExternalName, externalName: db.example.com}")},
		{"service external IP with leading zeros", svcYAML("web-eip", "{externalIPs: [10.0.0.010], ports: [{port: 80}]}")},
		{"service nodePort on ClusterIP", svcYAML("web-np", "{ports: [{port: 80, nodePort: 30080}]}")},

		// EndpointSlices
		{"endpointslice", sliceYAML("web-1", "addressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints: [{addresses: [10.244.1.5], nodeName: apidiff-node, hostname: web-0}]")},
		{"endpointslice name upper case", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: Web-1, namespace: " + diffNamespace + "}\naddressType: IPv4\n"},
		{"endpointslice IPv6 address in IPv4 slice", sliceYAML("web-2", `addressType: IPv4`+"\n"+`endpoints: [{addresses: ["fd00::5"]}]`)},
		{"endpointslice without addressType", sliceYAML("web-3", "endpoints: [{addresses: [10.244.1.5]}]")},
		{"endpointslice loopback address", sliceYAML("web-4", "addressType: IPv4\nendpoints: [{addresses: [127.0.0.1]}]")},
		{"endpointslice non-canonical IPv6", sliceYAML("web-5", `addressType: IPv6`+"\n"+`endpoints: [{addresses: ["FD00::0005"]}]`)},
		{"endpointslice protocol lower case", sliceYAML("web-6", "addressType: IPv4\nports: [{port: 80, protocol: tcp}]")},
		{"endpointslice duplicate port names", sliceYAML("web-7", "addressType: IPv4\nports: [{name: a, port: 80}, {name: a, port: 81}]")},
		{"endpointslice hostname upper case", sliceYAML("web-8", "addressType: IPv4\nendpoints: [{addresses: [10.244.1.5], hostname: Web}]")},
		{"endpointslice endpoint without addresses", sliceYAML("web-9", "addressType: IPv4\nendpoints: [{addresses: []}]")},
	}
}

// resourcePath is where an object of kind is created.
func resourcePath(kind string) string {
	switch kind {
	case "Namespace":
		return "/api/v1/namespaces"
	case "Pod":
		return "/api/v1/namespaces/" + diffNamespace + "/pods"
	case "Service":
		return "/api/v1/namespaces/" + diffNamespace + "/services"
	case "NetworkPolicy":
		return "/apis/networking.k8s.io/v1/namespaces/" + diffNamespace + "/networkpolicies"
	case "EndpointSlice":
		return "/apis/discovery.k8s.io/v1/namespaces/" + diffNamespace + "/endpointslices"
	}
	panic("no path for kind " + kind)
}

// apiServerVerdict sends doc to the API server as kubectl would create it:
// a server-side dry run, except for Pods, which are created for real (in
// the scratch namespace) so that their status can then be written through
// the status subresource, dry run, as a kubelet writes it. nil: accepted.
func apiServerVerdict(ctx context.Context, c *k8stest.Cluster, doc string) error {
	body, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		return fmt.Errorf("corpus YAML: %w", err)
	}
	var head struct {
		Kind   string          `json:"kind"`
		Status json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return fmt.Errorf("corpus JSON: %w", err)
	}
	req := c.Client.CoreV1().RESTClient().Post().AbsPath(resourcePath(head.Kind)).
		SetHeader("Content-Type", "application/json").Body(body)
	if head.Kind != "Pod" {
		return req.Param("dryRun", "All").Do(ctx).Error()
	}
	res := req.Do(ctx)
	if err := res.Error(); err != nil || len(head.Status) == 0 {
		return err
	}
	raw, err := res.Raw()
	if err != nil {
		return err
	}
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		return fmt.Errorf("created pod: %w", err)
	}
	if err := json.Unmarshal(head.Status, &pod.Status); err != nil {
		return fmt.Errorf("corpus status: %w", err)
	}
	_, err = c.Client.CoreV1().Pods(diffNamespace).UpdateStatus(ctx, &pod, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// ourVerdict is the file-input path of `ovs-netpol compile`: read and
// validate (package manifest), then normalize (package normalize).
func ourVerdict(doc string) error {
	objs, err := manifest.Parse("corpus.yaml", []byte(doc))
	if err != nil {
		return err
	}
	if n := len(objs.Namespaces) + len(objs.Pods) + len(objs.PoliciesV1) + len(objs.Services) + len(objs.EndpointSlices); n != 1 {
		return fmt.Errorf("read %d objects (warnings %q)", n, objs.Warnings)
	}
	_, _, err = objs.Cluster(model.ModeV1)
	return err
}

// TestFileValidationAgreesWithAPIServer is a differential test: every object
// of the corpus goes to the real kube-apiserver v1.37.2 and through our
// file-input validation; both must accept it or both refuse it.
func TestFileValidationAgreesWithAPIServer(t *testing.T) {
	t.Parallel()
	c := k8stest.Shared(t)
	ctx := ctxFor(t)
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: diffNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("scratch namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), diffNamespace, metav1.DeleteOptions{})
	})

	corpus := apiCorpus()
	agree, accepted, refused, sameField := 0, 0, 0, 0
	for _, item := range corpus {
		theirs := apiServerVerdict(ctx, c, item.doc)
		ours := ourVerdict(item.doc)
		short := func(err error) string {
			if err == nil {
				return "accepted"
			}
			s := err.Error()
			if len(s) > 300 {
				s = s[:300] + "..."
			}
			return "refused: " + s
		}
		if (theirs == nil) != (ours == nil) {
			t.Errorf("%s: DISAGREE\n  kube-apiserver: %s\n  ovs-netpol:     %s", item.name, short(theirs), short(ours))
			continue
		}
		agree++
		// Refused by both: for the same field, where the API server names
		// fields (a 5 MB body is refused for its size before validation).
		if fields := causeFields(theirs); len(fields) > 0 {
			same := false
			for _, f := range fields {
				// clusterIPs[0] is clusterIP defaulted: normalize names the field given.
				same = same || strings.Contains(ours.Error(), f) || (f == "spec.clusterIPs[0]" && strings.Contains(ours.Error(), "spec.clusterIP:"))
			}
			if !same {
				t.Errorf("%s: both refuse, for different fields: kube-apiserver %q, ovs-netpol: %.300s", item.name, fields, ours)
			} else {
				sameField++
			}
		}
		if theirs == nil {
			accepted++
		} else {
			refused++
		}
		if theirs == nil {
			t.Logf("%-45s both accepted", item.name)
		} else {
			t.Logf("%-45s both refused\n    kube-apiserver: %.200s\n    ovs-netpol:     %.200s", item.name, theirs, ours)
		}
	}
	t.Logf("agreement with kube-apiserver v1.37.2: %d of %d objects (%d accepted by both, %d refused by both, %d of them naming the same field)", agree, len(corpus), accepted, refused, sameField)
	if accepted == 0 || refused == 0 {
		t.Errorf("corpus exercises only one side: %d accepted, %d refused", accepted, refused)
	}

	// What a cluster stores reads back: a `kubectl get -o yaml` dump (the
	// demo compiles one) of every kind, with the API server's own objects
	// (the kubernetes Service, kube-system, ...) and the pods created above.
	dump, err := c.Kubectl("get", "namespaces,pods,networkpolicies,services,endpointslices,nodes", "-A", "-o", "yaml")
	if err != nil {
		t.Fatalf("kubectl get: %v\n%s", err, dump)
	}
	objs, err := manifest.Parse("dump.yaml", []byte(dump))
	if err == nil {
		_, _, err = objs.Cluster(model.ModeV1)
	}
	if err != nil {
		t.Fatalf("a kubectl get -o yaml dump is refused: %v", err)
	}
	t.Logf("kubectl get -o yaml dump read back: %d namespaces, %d pods, %d services, %d endpointslices", len(objs.Namespaces), len(objs.Pods), len(objs.Services), len(objs.EndpointSlices))

	// convert writes only what the API server accepts, from Kubernetes 1.6
	// manifests in the forms their API server took (lower-case protocols,
	// ports as strings, CIDRs with host bits, non-canonical IPv6).
	legacy := strings.Join([]string{
		nsYAML("{name: " + diffNamespace + ", annotations: {net.beta.kubernetes.io/network-policy: '{\"ingress\":{\"isolation\":\"DefaultDeny\"}}'}}"),
		"apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: legacy, namespace: " + diffNamespace + "}\n" +
			"spec: {podSelector: {}, ingress: [{ports: [{protocol: tcp, port: \"6379\"}, {protocol: udp}], from: [{ipBlock: {cidr: 10.0.0.1/8, except: [10.1.2.3/16]}}, {ipBlock: {cidr: \"FD00:0::1/64\"}}]}]}\n",
	}, "---\n")
	in, err := manifest.Parse("legacy.yaml", []byte(legacy))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := convert.Convert(in)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "converted.yaml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Kubectl("apply", "--dry-run=server", "-f", file); err != nil {
		t.Errorf("kube-apiserver refuses the output of convert: %v\n%s\n%s", err, res, out)
	} else if !strings.Contains(res, "networkpolicy.networking.k8s.io/legacy created") || !strings.Contains(res, "networkpolicy.networking.k8s.io/default-deny-ingress created") {
		t.Errorf("kubectl apply did not create both policies:\n%s", res)
	} else {
		t.Logf("convert output accepted by kube-apiserver (server dry run):\n%s", strings.TrimSpace(res))
	}
}

// causeFields returns the fields an API server refusal names.
func causeFields(err error) []string {
	var status apierrors.APIStatus
	if err == nil || !errors.As(err, &status) || status.Status().Details == nil {
		return nil
	}
	var out []string
	for _, c := range status.Status().Details.Causes {
		if c.Field != "" {
			out = append(out, c.Field)
		}
	}
	return out
}
