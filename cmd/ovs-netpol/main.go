// Command ovs-netpol is the command-line tool: it compiles Kubernetes
// manifests into the br-int flow set, converts Kubernetes 1.6 policies to
// v1, and inspects a live cluster and bridge. Installed (or linked) as
// kubectl-ovs_netpol on PATH it is the kubectl plugin `kubectl ovs-netpol`.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ovs-netpol/ovs-netpol/internal/version"
)

// Names the same program answers to (argv[0]): kubectl runs plugins found
// on PATH as kubectl-NAME (a dash in the plugin name is written "_"), and
// asks kubectl_complete-NAME for their shell completions.
const (
	pluginBinary   = "kubectl-ovs_netpol"
	completeBinary = "kubectl_complete-ovs_netpol"
	pluginName     = "kubectl ovs-netpol"
)

// cluster holds the kubectl-style connection flags every command shares
// (persistent flags of the root command).
var cluster struct {
	kubeconfig string
	context    string
	namespace  string
}

func main() {
	root := rootCmd(filepath.Base(os.Args[0]))
	args := os.Args[1:]
	if filepath.Base(os.Args[0]) == completeBinary {
		// kubectl's plugin completion runs kubectl_complete-ovs_netpol with
		// the words to complete: cobra's hidden __complete command does it.
		args = append([]string{cobra.ShellCompRequestCmd}, args...)
	}
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", root.DisplayName(), err)
		os.Exit(1)
	}
}

// rootCmd builds the command tree; invokedAs is argv[0]'s base name.
func rootCmd(invokedAs string) *cobra.Command {
	root := &cobra.Command{
		Use:   "ovs-netpol",
		Short: "Kubernetes NetworkPolicy compiled to Open vSwitch flows",
		Long: `Kubernetes NetworkPolicy compiled to Open vSwitch flows: offline
(compile, convert) and against a live cluster and node (pods, flows,
explain, verify, diff).

The commands that read the cluster take kubectl's --kubeconfig, --context
and -n/--namespace (the namespace of pod names given without one).

kubectl plugin: installed (or linked) on PATH as kubectl-ovs_netpol, this
program is ` + "`kubectl ovs-netpol ...`" + ` (make install does it, with
kubectl_complete-ovs_netpol for kubectl's completion of the plugin).

Shell completion: source <(ovs-netpol completion bash), likewise zsh, fish
and powershell (bash needs the bash-completion package); see
` + "`ovs-netpol completion --help`" + `.`,
		Version:       version.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	if invokedAs == pluginBinary || invokedAs == completeBinary {
		// Help and usage lines say "kubectl ovs-netpol ..." (cobra's display
		// name); the command's own name stays one word, the binary's, which
		// is what a generated completion script registers and calls.
		root.Use = pluginBinary
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: pluginName}
	}
	root.SetVersionTemplate("{{.DisplayName}} {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&cluster.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	pf.StringVar(&cluster.context, "context", "", "kubeconfig context to use (default: its current context)")
	pf.StringVarP(&cluster.namespace, "namespace", "n", "", "namespace of pod names given without one (default: the context's namespace, else default)")
	root.AddCommand(compileCmd(), convertCmd(), versionCmd())
	root.AddCommand(diffCmd())
	root.AddCommand(explainCmd(), verifyCmd())
	root.AddCommand(podsCmd(), flowsCmd())
	return root
}

// clientConfig resolves --kubeconfig and --context the way kubectl does.
func clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = cluster.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: cluster.context}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// restConfig is the API server connection of --kubeconfig/--context (or the
// in-cluster configuration when no kubeconfig is found).
func restConfig() (*rest.Config, error) {
	cfg, err := clientConfig().ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "ovs-netpol/" + version.Get().Version
	return cfg, nil
}

// kubeClient is a clientset for restConfig.
func kubeClient() (kubernetes.Interface, error) {
	cfg, err := restConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// namespace is the namespace of names given without one: -n, else the
// kubeconfig context's namespace, else "default" (as kubectl).
func namespace() string {
	if cluster.namespace != "" {
		return cluster.namespace
	}
	if ns, _, err := clientConfig().Namespace(); err == nil && ns != "" {
		return ns
	}
	return "default"
}

// qualify turns a pod (or policy) name into NAMESPACE/NAME: a name that
// already has a namespace is returned as given.
func qualify(name string) string {
	if strings.Contains(name, "/") {
		return name
	}
	return namespace() + "/" + name
}
