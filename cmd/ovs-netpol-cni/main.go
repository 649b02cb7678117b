// Command ovs-netpol-cni is the CNI plugin that attaches pods to the Open
// vSwitch bridge of ovs-netpol; see pkg/cni for its configuration.
package main

import (
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	cniversion "github.com/containernetworking/cni/pkg/version"

	"github.com/ovs-netpol/ovs-netpol/pkg/cni"

	"github.com/ovs-netpol/ovs-netpol/internal/version"
)

func main() {
	// A runtime runs the plugin with CNI_COMMAND set (VERSION included) and
	// no arguments; only a person runs it with --version.
	if len(os.Args) == 2 && os.Args[1] == "--version" && os.Getenv("CNI_COMMAND") == "" {
		fmt.Println(version.Line("ovs-netpol-cni"))
		return
	}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:   cni.Add,
		Del:   cni.Del,
		Check: cni.Check,
	}, cniversion.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "ovs-netpol-cni: attaches pods to an Open vSwitch bridge for ovs-netpol, "+version.Get().String())
}
