//go:build tools

// Package tools pins the Kubernetes components the tests run, so that
// `go mod tidy` in this module keeps everything they need: a real
// kube-apiserver (internal/k8stest) and a real kube-proxy (iptables mode, in the
// e2e nodes' host network namespaces). Built by scripts/build-kube.sh.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
