//go:build tools

// Package tools pins k8s.io/kubernetes/cmd/kube-apiserver so that `go mod tidy`
// in this module keeps everything it needs. Tests in the main module run a real
// kube-apiserver built from here; see scripts/build-kube-apiserver.sh.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
