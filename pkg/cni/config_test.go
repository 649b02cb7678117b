package cni

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestLoadConfDefaults(t *testing.T) {
	c, err := LoadConf([]byte(`{"cniVersion":"1.0.0","name":"n","type":"ovs-netpol-cni","ipam":{"type":"host-local"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Bridge != "br-int" || c.OVSDB != "unix:/var/run/openvswitch/db.sock" || c.DatapathType != "netdev" || c.MTU != 0 || c.HostNetNS != "" {
		t.Errorf("defaults: %+v", c)
	}
	if !c.TxOffloadOff() {
		t.Error("netdev: TX offload should be off by default")
	}
	c, err = LoadConf([]byte(`{"cniVersion":"1.0.0","name":"n","type":"t","datapathType":"system","bridge":"b","ovsdb":"tcp:1.2.3.4:6640","mtu":9000,"ipam":{"type":"static"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.TxOffloadOff() || c.Bridge != "b" || c.OVSDB != "tcp:1.2.3.4:6640" || c.MTU != 9000 {
		t.Errorf("explicit: %+v", c)
	}
	on, off := true, false
	for _, tc := range []struct {
		dp   string
		set  *bool
		want bool
	}{{"netdev", &off, false}, {"system", &on, true}, {"netdev", nil, true}, {"system", nil, false}} {
		c := &NetConf{DatapathType: tc.dp, DisableTxOffload: tc.set}
		if c.TxOffloadOff() != tc.want {
			t.Errorf("%s %v: TxOffloadOff = %v", tc.dp, tc.set, !tc.want)
		}
	}
}

func TestLoadConfErrors(t *testing.T) {
	for in, code := range map[string]uint{
		`{`: types.ErrDecodingFailure,
		`{"cniVersion":"1.0.0","name":"n","type":"t"}`:                                                            types.ErrInvalidNetworkConfig,
		`{"cniVersion":"1.0.0","name":"n","type":"t","mtu":-1,"ipam":{"type":"x"}}`:                               types.ErrInvalidNetworkConfig,
		`{"cniVersion":"1.0.0","name":"n","type":"t","prevResult":{"ips":[{"address":"x"}]},"ipam":{"type":"x"}}`: types.ErrDecodingFailure,
	} {
		_, err := LoadConf([]byte(in))
		var e *types.Error
		if !errors.As(err, &e) || e.Code != code {
			t.Errorf("LoadConf(%s) = %v, want code %d", in, err, code)
		}
	}
}

func TestLoadPodArgs(t *testing.T) {
	a, err := LoadPodArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=a;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1")
	if err != nil || a.K8S_POD_NAMESPACE != "x" || a.K8S_POD_NAME != "a" || a.K8S_POD_UID != "u-1" || a.K8S_POD_INFRA_CONTAINER_ID != "abc" {
		t.Errorf("%+v %v", a, err)
	}
	// Unknown keys are ignored even without IgnoreUnknown.
	if a, err := LoadPodArgs("K8S_POD_NAMESPACE=x;SOMETHING=else"); err != nil || a.K8S_POD_NAMESPACE != "x" {
		t.Errorf("%+v %v", a, err)
	}
	if a, err := LoadPodArgs(""); err != nil || a.K8S_POD_NAME != "" {
		t.Errorf("%+v %v", a, err)
	}
	if _, err := LoadPodArgs("K8S_POD_NAME"); err == nil || !strings.Contains(err.Error(), "CNI_ARGS") {
		t.Errorf("malformed CNI_ARGS: %v", err)
	}
}

func TestHostVethName(t *testing.T) {
	n := HostVethName("0123456789abcdef", "eth0")
	if len(n) != 13 || !strings.HasPrefix(n, "np") {
		t.Errorf("HostVethName = %q", n)
	}
	if n != HostVethName("0123456789abcdef", "eth0") {
		t.Error("not deterministic")
	}
	if n == HostVethName("0123456789abcdef", "eth1") || n == HostVethName("0123456789abcdeg", "eth0") ||
		HostVethName("ab", "c") == HostVethName("a", "bc") {
		t.Error("collision between different inputs")
	}
}
