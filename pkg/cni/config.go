// Package cni implements the ovs-netpol CNI plugin (cmd/ovs-netpol-cni): it
// connects a pod's network namespace to the Open vSwitch integration bridge
// with a veth pair, gets the pod's addresses from a delegated IPAM plugin,
// and records which pod a bridge port belongs to in the Interface's
// external_ids (see pkg/ovsdb), which the agent reads.
//
// Network configuration (stdin), beyond the standard fields:
//
//	bridge            OVS bridge of the pods (default "br-int"); must exist
//	ovsdb             OVSDB endpoint (default "unix:/var/run/openvswitch/db.sock")
//	datapathType      the bridge's datapath type (default "netdev"); only
//	                  decides the default of disableTxOffload
//	disableTxOffload  turn TX checksum offload off on the pod's interface
//	                  (default: true when datapathType is "netdev"). The
//	                  userspace datapath receives a veth's packets with
//	                  partial checksums; its conntrack then marks TCP as
//	                  invalid, and policies that admit only tracked
//	                  connections drop it.
//	mtu               MTU of both veth ends (default: the kernel's, 1500)
//	hostNetNS         path of the network namespace the host end goes to
//	                  (default: the plugin's own). Empty in production; tests
//	                  set it to the namespace of their private ovs-vswitchd,
//	                  which must be able to open the device.
//	ipam              delegated IPAM configuration, e.g. {"type":"host-local",
//	                  "subnet":"10.244.1.0/24","routes":[{"dst":"0.0.0.0/0"}]}
//
// CNI_ARGS K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID (when given) and
// CNI_CONTAINERID go to the port's external_ids, with the container-side MAC
// as attached-mac. Only ports with namespace and name are pod ports for the
// agent.
package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// Defaults of the network configuration.
const (
	DefaultBridge       = "br-int"
	DefaultOVSDB        = "unix:/var/run/openvswitch/db.sock"
	DefaultDatapathType = "netdev"
)

// NetConf is the plugin's network configuration.
type NetConf struct {
	types.PluginConf
	Bridge           string `json:"bridge,omitempty"`
	OVSDB            string `json:"ovsdb,omitempty"`
	DatapathType     string `json:"datapathType,omitempty"`
	DisableTxOffload *bool  `json:"disableTxOffload,omitempty"`
	MTU              int    `json:"mtu,omitempty"`
	HostNetNS        string `json:"hostNetNS,omitempty"`
}

// TxOffloadOff reports whether TX checksum offload is to be turned off.
func (c *NetConf) TxOffloadOff() bool {
	if c.DisableTxOffload != nil {
		return *c.DisableTxOffload
	}
	return c.DatapathType == "netdev"
}

// LoadConf parses the configuration from stdin and applies the defaults.
// Errors are CNI errors (code 6 or 7).
func LoadConf(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "cannot parse the network configuration", err.Error())
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "cannot parse prevResult", err.Error())
	}
	if conf.Bridge == "" {
		conf.Bridge = DefaultBridge
	}
	if conf.OVSDB == "" {
		conf.OVSDB = DefaultOVSDB
	}
	if conf.DatapathType == "" {
		conf.DatapathType = DefaultDatapathType
	}
	if conf.MTU < 0 {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "invalid network configuration", fmt.Sprintf("mtu %d is negative", conf.MTU))
	}
	if conf.IPAM.Type == "" {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "invalid network configuration", `"ipam" with a "type" is required`)
	}
	return conf, nil
}

// PodArgs are the Kubernetes CNI_ARGS the plugin uses. Field names are the
// keys (types.LoadArgs matches them by name).
type PodArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_UID                types.UnmarshallableString //nolint:revive // CNI_ARGS key
}

// LoadPodArgs parses CNI_ARGS ("K=V;K2=V2"), ignoring keys it does not
// know: runtimes pass more than the plugin needs.
func LoadPodArgs(s string) (*PodArgs, error) {
	a := &PodArgs{}
	a.IgnoreUnknown = true
	if err := types.LoadArgs(s, a); err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, "cannot parse CNI_ARGS", err.Error())
	}
	return a, nil
}

// HostVethName is the name of the host end of the veth of a container's
// interface: "np" and 11 hex digits of a hash of both, 13 characters (a
// Linux interface name has at most 15). The same inputs give the same name,
// so DEL finds what ADD created without any state.
func HostVethName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "\x00" + ifName))
	return "np" + hex.EncodeToString(sum[:])[:11]
}
