package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ovs-netpol/ovs-netpol/pkg/convert"
	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
)

func convertCmd() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "convert -f OLD.yaml",
		Short: "Convert Kubernetes 1.6 policies (extensions/v1beta1 + DefaultDeny annotation) to networking.k8s.io/v1",
		Long: `Prints networking.k8s.io/v1 manifests equivalent to the Kubernetes 1.6 ones
given: namespaces without the net.beta.kubernetes.io/network-policy
annotation, each NetworkPolicy as networking.k8s.io/v1, and a deny-all
ingress policy for each namespace the annotation isolated. Warnings on
stderr say where v1 semantics differ (policies in namespaces that were not
annotated start isolating the pods they select).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			objs, err := manifest.Load(files)
			if err != nil {
				return err
			}
			out, warnings, err := convert.Convert(objs)
			if err != nil {
				return err
			}
			for _, w := range append(objs.Warnings, warnings...) {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file or directory (repeatable; - for stdin)")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}
