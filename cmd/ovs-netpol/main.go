// Command ovs-netpol is the offline tool: it compiles Kubernetes manifests
// into the br-int flow set and converts Kubernetes 1.6 policies to v1.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "ovs-netpol",
		Short:         "Kubernetes NetworkPolicy compiled to Open vSwitch flows",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(compileCmd(), convertCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ovs-netpol:", err)
		os.Exit(1)
	}
}
