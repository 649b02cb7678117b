package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/nodenet"
	"github.com/ovs-netpol/ovs-netpol/pkg/ovsdb"
)

// TestTunnelNoneUndoesGeneve: an agent restarted with --tunnel=none after a
// geneve run removes what the overlay set on the switch: the Geneve port,
// and the MTU the overlay pinned on the bridge's LOCAL port (mtu_request),
// which would otherwise stay at the underlay's MTU less 50 while flat-L2
// pods get 1500 (the datapath drops a larger frame to a smaller port). A
// switch that never ran the overlay keeps an mtu_request of its own.
func TestTunnelNoneUndoesGeneve(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := ovstest.Start(t)
	log := logrus.New()
	db, err := ovsdb.Connect(ctx, s.DBSock(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.EnsureBridge(ctx, "br-int", "netdev", compiler.TableNames); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Spec:   corev1.NodeSpec{PodCIDR: "10.91.1.0/24", PodCIDRs: []string{"10.91.1.0/24"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.29.1.2"}}}})
	o := options{nodeName: "n1", bridge: "br-int", datapathType: "netdev", tunnel: tunnelGeneve, tunnelPortName: "ovs-netpol-gnv0",
		mtu: 1450, hostNetNS: "/var/run/netns/" + s.NetNS, cniConfDir: t.TempDir(), cniConfName: nodenet.DefaultCNIConfName}
	get := func(args ...string) string {
		out, err := s.Vsctl(args...)
		if err != nil {
			return "error: " + err.Error()
		}
		return strings.TrimSpace(out)
	}

	cfg := compiler.Config{Node: "n1"}
	if _, err := setupNode(ctx, o, client, db, s.DBSock(), &cfg, nil, log); err != nil {
		t.Fatal(err)
	}
	if got := get("get", "Interface", "br-int", "mtu_request"); got != "1450" {
		t.Fatalf("geneve: LOCAL mtu_request %s, want 1450", got)
	}
	if got := get("get", "Interface", "ovs-netpol-gnv0", "type", "options"); got != "geneve\n{local_ip=flow, remote_ip=flow}" {
		t.Errorf("geneve: tunnel port %q, want a flow-based Geneve port whose flows set the source (local_ip=flow)", got)
	}

	o.tunnel = tunnelNone
	cfg = compiler.Config{Node: "n1"}
	if _, err := setupNode(ctx, o, client, db, s.DBSock(), &cfg, nil, log); err != nil {
		t.Fatal(err)
	}
	if got := get("--if-exists", "get", "Interface", "ovs-netpol-gnv0", "type"); got != "" {
		t.Errorf("none after geneve: the Geneve port is still there (%s)", got)
	}
	if got := get("get", "Interface", "br-int", "mtu_request"); got != "[]" {
		t.Errorf("none after geneve: LOCAL mtu_request %s, want [] (none)", got)
	}

	// An operator's own mtu_request without an overlay run is left alone.
	if _, err := s.Vsctl("set", "Interface", "br-int", "mtu_request=9000"); err != nil {
		t.Fatal(err)
	}
	if _, err := setupNode(ctx, o, client, db, s.DBSock(), &cfg, nil, log); err != nil {
		t.Fatal(err)
	}
	if got := get("get", "Interface", "br-int", "mtu_request"); got != "9000" {
		t.Errorf("none without a geneve run before: LOCAL mtu_request %s, want the operator's 9000", got)
	}
}
