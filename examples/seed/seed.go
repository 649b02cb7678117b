// Package seed holds the Kubernetes 1.6 documentation example (the
// DefaultDeny namespace annotation and the policy test-network-policy) as
// the tests read it, so that they test the very files users are shown.
package seed

import _ "embed"

// Namespace is namespace.yaml: namespace default with the DefaultDeny
// annotation.
//
//go:embed namespace.yaml
var Namespace string

// Policy is policy.yaml: the extensions/v1beta1 policy, protocol: tcp.
//
//go:embed policy.yaml
var Policy string

// Document is the namespace and the policy as one two-document manifest.
func Document() string { return Namespace + "---\n" + Policy }
