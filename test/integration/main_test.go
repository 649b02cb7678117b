// Package integration runs the node agent (the real ovs-netpol-agent binary)
// against real components: a kube-apiserver with etcd (internal/k8stest) and a
// private Open vSwitch (internal/ovstest). The CNI is emulated by adding internal
// ports with the pod binding external_ids; the kubelet by setting pod status.
//
// Needs root, openvswitch-switch, iproute2, etcd-server, kubectl and Go (the
// agent is built from ./cmd/ovs-netpol-agent once per run). Missing pieces
// fail the tests; they never skip.
package integration

import (
	"os"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/internal/k8stest"
)

func TestMain(m *testing.M) {
	code := k8stest.RunShared(m)
	if agentBuild.dir != "" {
		_ = os.RemoveAll(agentBuild.dir)
	}
	os.Exit(code)
}
