// Command ovs-netpol-cni is the CNI plugin that attaches pods to the Open
// vSwitch bridge of ovs-netpol; see pkg/cni for its configuration.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ovs-netpol/ovs-netpol/pkg/cni"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:   cni.Add,
		Del:   cni.Del,
		Check: cni.Check,
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "ovs-netpol-cni: attaches pods to an Open vSwitch bridge for ovs-netpol")
}
