// Package convert implements `ovs-netpol convert`: it rewrites a cluster
// described for the Kubernetes 1.6 NetworkPolicy design (extensions/v1beta1
// policies plus the net.beta.kubernetes.io/network-policy namespace
// annotation) as networking.k8s.io/v1 objects that a current API server
// accepts and that mean the same thing.
//
// The one change of meaning that cannot be avoided is reported as a warning:
// under v1.6 a policy in a namespace without the DefaultDeny annotation had no
// effect at all, while under v1 every policy isolates the pods it selects.
package convert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// DenyAllName is the name of the policy that replaces a namespace's
// DefaultDeny annotation; when a policy of that name already exists in the
// namespace, "-2", "-3", ... is appended.
const DenyAllName = "default-deny-ingress"

// lastApplied is kubectl's record of the previous configuration: stale after
// a conversion, so it is dropped.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// Convert turns the Namespaces and NetworkPolicies of objs into
// networking.k8s.io/v1 form and returns them as multi-document YAML, in input
// order, ready for `kubectl apply -f` and readable by manifest.Load:
//
//   - each Namespace without the legacy annotation (it is removed);
//   - after each Namespace annotated DefaultDeny, a NetworkPolicy
//     default-deny-ingress (podSelector: {}, policyTypes: [Ingress]) that
//     isolates all its pods for ingress as the annotation did;
//   - each extensions/v1beta1 NetworkPolicy as networking.k8s.io/v1, fields
//     carried over, with explicit policyTypes (Ingress, plus Egress when it
//     has egress rules — v1.6 had none, which is warned about);
//   - each networking.k8s.io/v1 NetworkPolicy as it is.
//
// In every policy, protocols are upper-cased (tcp → TCP), ports written as
// strings of digits ("80") become numbers and CIDRs are written masked in
// canonical form (10.0.0.1/8 → 10.0.0.0/8), as the API server requires:
// the output holds only what a current API server accepts (the input was
// validated when read, see package manifest).
// Server-set metadata (uid, resourceVersion, creationTimestamp, managedFields,
// ...), kubectl's last-applied-configuration annotation and status are
// dropped. Pods and Nodes are not emitted.
//
// Every policy is validated (package normalize) and the v1 form is checked to
// normalize to exactly the same rules as the original. A malformed legacy
// annotation is an error: convert refuses to guess whether it was meant to
// isolate the namespace.
func Convert(objs *manifest.Objects) (out []byte, warnings []string, err error) {
	if objs == nil {
		return nil, nil, errors.New("no objects")
	}
	c := converter{objs: objs}
	if err := c.run(); err != nil {
		return nil, nil, err
	}
	return c.out.Bytes(), c.warnings, nil
}

type converter struct {
	objs     *manifest.Objects
	out      bytes.Buffer
	warnings []string
}

// item is one object to emit.
type item struct {
	order   int // input position
	sub     int // 0: the object, 1: a deny-all emitted right after it
	comment string
	obj     runtime.Object
}

func (c *converter) warnf(format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, args...))
}

// order returns the input position of obj (objects without a known source
// come last, in the order given).
func (c *converter) order(obj runtime.Object, fallback int) int {
	if src, ok := c.objs.Sources[obj]; ok {
		return src.Seq
	}
	return len(c.objs.Sources) + fallback
}

func (c *converter) from(obj runtime.Object) string {
	if src, ok := c.objs.Sources[obj]; ok {
		return src.String()
	}
	return "input"
}

func (c *converter) run() error {
	var items []item

	// Namespaces: which are isolated, and their annotation-free form.
	isolated := map[string]*corev1.Namespace{}
	declared := map[string]runtime.Object{}
	for i, ns := range c.objs.Namespaces {
		if prev, dup := declared[ns.Name]; dup {
			return fmt.Errorf("%s: defined twice: also at %s", c.objs.Where(ns), c.objs.Where(prev))
		}
		declared[ns.Name] = ns
		value, present := ns.Annotations[model.LegacyAnnotation]
		iso, err := model.ParseLegacyAnnotation(value, present)
		if iso == model.LegacyMalformed {
			return fmt.Errorf("%s: %v; convert refuses to guess what it meant: fix the annotation to {\"ingress\":{\"isolation\":\"DefaultDeny\"}} or remove it", c.objs.Where(ns), err)
		}
		if iso == model.LegacyDefaultDeny {
			isolated[ns.Name] = ns
		}
		out := ns.DeepCopy()
		comment := "from " + c.from(ns)
		if present {
			delete(out.Annotations, model.LegacyAnnotation)
			comment += fmt.Sprintf("; annotation %s removed", model.LegacyAnnotation)
		}
		items = append(items, item{order: c.order(ns, i), comment: comment, obj: out})
	}

	// Policies: validate, convert, check the conversion kept every rule.
	type policy struct {
		src   runtime.Object
		norm  *model.Policy
		v1    *networkingv1.NetworkPolicy
		from  string // original apiVersion
		order int
	}
	var policies []policy
	byKey := map[string]runtime.Object{}
	add := func(src runtime.Object, norm *model.Policy, v1 *networkingv1.NetworkPolicy) error {
		if prev, dup := byKey[norm.Key()]; dup {
			return fmt.Errorf("%s: defined twice: also at %s", c.objs.Where(src), c.objs.Where(prev))
		}
		byKey[norm.Key()] = src
		order := c.order(src, len(c.objs.Namespaces)+len(policies))
		policies = append(policies, policy{src: src, norm: norm, v1: v1, from: norm.APIVersion, order: order})
		return nil
	}
	for _, np := range c.objs.PoliciesV1beta1 {
		norm, err := normalize.NetworkPolicyV1beta1(np)
		if err != nil {
			return fmt.Errorf("%s: %w", c.objs.Where(np), err)
		}
		v1, err := normalize.V1beta1ToV1(np)
		if err != nil {
			return fmt.Errorf("%s: %w", c.objs.Where(np), err)
		}
		if len(v1.Spec.PolicyTypes) == 0 {
			// Explicit, so that nobody reads the result with v1.6 eyes.
			ingress, egress, _ := normalize.EffectivePolicyTypes(&v1.Spec)
			v1.Spec.PolicyTypes = normalize.PolicyTypes(ingress, egress)
		}
		if err := add(np, norm, v1); err != nil {
			return err
		}
	}
	for _, np := range c.objs.PoliciesV1 {
		norm, err := normalize.NetworkPolicyV1(np)
		if err != nil {
			return fmt.Errorf("%s: %w", c.objs.Where(np), err)
		}
		if err := add(np, norm, np.DeepCopy()); err != nil {
			return err
		}
	}
	sort.SliceStable(policies, func(i, j int) bool { return policies[i].order < policies[j].order })
	names := map[string]map[string]bool{} // namespace → policy names in use
	for _, p := range policies {
		if err := canonicalize(p.v1); err != nil {
			return fmt.Errorf("%s: %w", c.objs.Where(p.src), err)
		}
		p.v1.APIVersion, p.v1.Kind = normalize.APIVersionV1, "NetworkPolicy"
		again, err := normalize.NetworkPolicyV1(p.v1)
		if err != nil {
			return fmt.Errorf("%s: internal error: the converted policy is invalid: %w", c.objs.Where(p.src), err)
		}
		if a, b := Fingerprint(p.norm), Fingerprint(again); a != b {
			return fmt.Errorf("%s: internal error: conversion changed the policy:\n%s\nbecame\n%s", c.objs.Where(p.src), a, b)
		}
		if names[p.norm.Namespace] == nil {
			names[p.norm.Namespace] = map[string]bool{}
		}
		names[p.norm.Namespace][p.norm.Name] = true

		comment := "from " + c.from(p.src)
		if p.from != normalize.APIVersionV1 {
			comment = fmt.Sprintf("converted from %s (%s)", p.from, c.from(p.src))
		}
		items = append(items, item{order: p.order, comment: comment, obj: p.v1})
		c.policyWarnings(p.src, p.norm, isolated, declared)
	}

	// A deny-all policy for every DefaultDeny namespace, right after it.
	for i, ns := range c.objs.Namespaces {
		if isolated[ns.Name] == nil {
			continue
		}
		name := DenyAllName
		for n := 2; names[ns.Name][name]; n++ {
			name = fmt.Sprintf("%s-%d", DenyAllName, n)
		}
		if name != DenyAllName {
			c.warnf("%s: a policy named %s already exists in namespace %s, so the deny-all policy replacing the DefaultDeny annotation is named %s", c.objs.Where(ns), DenyAllName, ns.Name, name)
		}
		items = append(items, item{
			order:   c.order(ns, i),
			sub:     1,
			comment: fmt.Sprintf("replaces the DefaultDeny annotation of namespace %s: isolates all its pods for ingress", ns.Name),
			obj:     DenyAll(ns.Name, name),
		})
	}

	if n, m := len(c.objs.Pods), len(c.objs.Nodes); n+m > 0 {
		c.warnf("convert emits only Namespaces and NetworkPolicies: %s not emitted", countNouns(n, "Pod", m, "Node"))
	}
	if len(items) == 0 {
		c.warnf("nothing to convert: no Namespace or NetworkPolicy in the input")
		return nil
	}

	sort.SliceStable(items, func(i, j int) bool {
		if items[i].order != items[j].order {
			return items[i].order < items[j].order
		}
		return items[i].sub < items[j].sub
	})
	for i, it := range items {
		doc, err := Encode(it.obj)
		if err != nil {
			return err
		}
		if i > 0 {
			c.out.WriteString("---\n")
		}
		// A comment holds names from the input: nothing in it may end the
		// comment line.
		c.out.WriteString("# " + printable.String(it.comment) + "\n")
		c.out.Write(doc)
	}
	return nil
}

// policyWarnings explains how the policy's effect changes from v1.6 to v1.
func (c *converter) policyWarnings(src runtime.Object, p *model.Policy, isolated map[string]*corev1.Namespace, declared map[string]runtime.Object) {
	where := c.objs.Where(src)
	if isolated[p.Namespace] == nil {
		why := "is not annotated DefaultDeny"
		if declared[p.Namespace] == nil {
			why = "is not in the input, hence not annotated DefaultDeny"
		}
		effect := "isolates the pods it selects for ingress: they accept only what its rules allow"
		if p.AffectsIngress && len(p.Ingress) == 0 {
			effect = "denies all ingress to the pods it selects"
		}
		if !p.AffectsIngress {
			effect = "isolates the pods it selects for egress"
		}
		c.warnf("%s: namespace %s %s, so under v1.6 this policy had no effect; under networking.k8s.io/v1 it %s", where, p.Namespace, why, effect)
	}
	if p.AffectsEgress {
		c.warnf("%s: v1.6 had no egress rules; under networking.k8s.io/v1 this policy (policyTypes with Egress) also isolates the pods it selects for egress", where)
	}
	if !p.AffectsIngress && isolated[p.Namespace] != nil {
		c.warnf("%s: v1.6 used this policy as an ingress whitelist, but its policyTypes does not list Ingress, so under networking.k8s.io/v1 it allows no ingress", where)
	}
}

// DenyAll returns the networking.k8s.io/v1 policy that isolates every pod of
// namespace for ingress and allows nothing: what a DefaultDeny annotation did.
func DenyAll(namespace, name string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	np.APIVersion, np.Kind = normalize.APIVersionV1, "NetworkPolicy"
	np.Namespace, np.Name = namespace, name
	return np
}

// canonicalize upper-cases protocols, turns port strings of digits into
// numbers and writes CIDRs masked in canonical form, in place. Validity was
// checked when the files were read and by normalize.
func canonicalize(np *networkingv1.NetworkPolicy) error {
	fix := func(path string, ports []networkingv1.NetworkPolicyPort) error {
		for i := range ports {
			p := &ports[i]
			if p.Protocol != nil {
				proto, err := model.ParseProtocol(string(*p.Protocol))
				if err != nil {
					return fmt.Errorf("%s.ports[%d].protocol: %w", path, i, err)
				}
				v := corev1.Protocol(proto)
				p.Protocol = &v
			}
			if p.Port != nil && p.Port.Type == intstr.String {
				num, _, err := normalize.PortValue(*p.Port)
				if err != nil {
					return fmt.Errorf("%s.ports[%d].port: %w", path, i, err)
				}
				if num != 0 {
					v := intstr.FromInt32(num)
					p.Port = &v
				}
			}
		}
		return nil
	}
	// A current API server refuses CIDRs with host bits (Kubernetes 1.6
	// accepted them and meant the prefix, as normalize reads them); the
	// canonical text of the masked prefix means the same to every reader.
	canonical := func(path, s string) (string, error) {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Is4In6() {
			return "", fmt.Errorf("%s: invalid CIDR %q", path, s)
		}
		return p.Masked().String(), nil
	}
	cidrs := func(path string, peers []networkingv1.NetworkPolicyPeer) error {
		for i := range peers {
			b := peers[i].IPBlock
			if b == nil {
				continue
			}
			var err error
			if b.CIDR, err = canonical(fmt.Sprintf("%s[%d].ipBlock.cidr", path, i), b.CIDR); err != nil {
				return err
			}
			for j := range b.Except {
				if b.Except[j], err = canonical(fmt.Sprintf("%s[%d].ipBlock.except[%d]", path, i, j), b.Except[j]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	// rule canonicalizes one ingress or egress rule; peers is its from or to.
	rule := func(path string, ports []networkingv1.NetworkPolicyPort, peersField string, peers []networkingv1.NetworkPolicyPeer) error {
		if err := fix(path, ports); err != nil {
			return err
		}
		return cidrs(path+"."+peersField, peers)
	}
	for i, r := range np.Spec.Ingress {
		if err := rule(fmt.Sprintf("spec.ingress[%d]", i), r.Ports, "from", r.From); err != nil {
			return err
		}
	}
	for i, r := range np.Spec.Egress {
		if err := rule(fmt.Sprintf("spec.egress[%d]", i), r.Ports, "to", r.To); err != nil {
			return err
		}
	}
	return nil
}

// Encode renders an object as one YAML document for kubectl: no status, no
// server-set metadata, no kubectl last-applied-configuration annotation, no
// empty Namespace spec. Strings YAML 1.1 would misread (y, no, 123, ...)
// are quoted.
func Encode(obj runtime.Object) ([]byte, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		for _, k := range []string{"creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "managedFields", "resourceVersion", "selfLink", "uid"} {
			delete(md, k)
		}
		if ann, ok := md["annotations"].(map[string]any); ok {
			delete(ann, lastApplied)
			if len(ann) == 0 {
				delete(md, "annotations")
			}
		}
	}
	if spec, ok := m["spec"].(map[string]any); ok && len(spec) == 0 && m["kind"] == "Namespace" {
		delete(m, "spec")
	}
	clean, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(clean)
}

func countNouns(n int, noun string, m int, noun2 string) string {
	var parts []string
	for _, x := range []struct {
		n    int
		noun string
	}{{n, noun}, {m, noun2}} {
		switch {
		case x.n == 1:
			parts = append(parts, "1 "+x.noun)
		case x.n > 1:
			parts = append(parts, fmt.Sprintf("%d %ss", x.n, x.noun))
		}
	}
	return strings.Join(parts, " and ")
}
