package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// execute runs the command tree as argv[0] = invokedAs with args.
func execute(t *testing.T, invokedAs string, args ...string) (string, error) {
	t.Helper()
	cluster.kubeconfig, cluster.context, cluster.namespace = "", "", ""
	root := rootCmd(invokedAs)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestNamesAndVersion(t *testing.T) {
	cases := []struct {
		invokedAs, name string
	}{
		{"ovs-netpol", "ovs-netpol"},
		{pluginBinary, "kubectl ovs-netpol"},
		{completeBinary, "kubectl ovs-netpol"},
	}
	for _, c := range cases {
		t.Run(c.invokedAs, func(t *testing.T) {
			out, err := execute(t, c.invokedAs, "--version")
			if err != nil || !strings.HasPrefix(out, c.name+" ") || strings.Count(out, "\n") != 1 {
				t.Fatalf("--version: %v %q", err, out)
			}
			v, err := execute(t, c.invokedAs, "version")
			if err != nil || v != out {
				t.Fatalf("version: %v %q, want the --version line %q", err, v, out)
			}
			help, err := execute(t, c.invokedAs, "--help")
			if err != nil || !strings.Contains(help, "\n  "+c.name+" [command]") {
				t.Fatalf("help does not name %q:\n%s", c.name, help)
			}
		})
	}
}

func TestQualify(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: u
  user: {token: x}
contexts:
- name: with-ns
  context: {cluster: c, user: u, namespace: team-a}
- name: without-ns
  context: {cluster: c, user: u}
current-context: with-ns
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name                 string
		context, namespace   string
		kubeconfig, in, want string
	}{
		{"-n wins", "", "prod", kc, "web", "prod/web"},
		{"a qualified name is kept", "", "prod", kc, "other/web", "other/web"},
		{"the current context's namespace", "", "", kc, "web", "team-a/web"},
		{"--context without a namespace", "without-ns", "", kc, "web", "default/web"},
		{"no kubeconfig at all", "", "", filepath.Join(dir, "missing"), "web", "default/web"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cluster.kubeconfig, cluster.context, cluster.namespace = c.kubeconfig, c.context, c.namespace
			t.Cleanup(func() { cluster.kubeconfig, cluster.context, cluster.namespace = "", "", "" })
			if got := qualify(c.in); got != c.want {
				t.Fatalf("qualify(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

// TestCompletionScripts: cobra's completion command generates scripts
// that the shells parse (bash -n), for the CLI's and the plugin's name.
func TestCompletionScripts(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash is needed to check the completion script:", err)
	}
	for _, invokedAs := range []string{"ovs-netpol", pluginBinary} {
		for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
			t.Run(invokedAs+"/"+shell, func(t *testing.T) {
				out, err := execute(t, invokedAs, "completion", shell)
				if err != nil || len(out) < 1000 {
					t.Fatalf("completion %s: %v (%d bytes)", shell, err, len(out))
				}
				if shell != "bash" {
					return
				}
				f := filepath.Join(t.TempDir(), "completion.bash")
				if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				if msg, err := exec.Command(bash, "-n", f).CombinedOutput(); err != nil {
					t.Fatalf("bash -n: %v\n%s", err, msg)
				}
				// Sourcing it registers the completion function for the name
				// the shell completes (the binary's file name).
				script := "source " + f + " && complete -p " + invokedAs
				msg, err := exec.Command(bash, "-c", script).CombinedOutput()
				if err != nil || !strings.Contains(string(msg), invokedAs) {
					t.Fatalf("sourcing: %v\n%s", err, msg)
				}
				t.Logf("%s: %d bytes; %s", shell, len(out), strings.TrimSpace(string(msg)))
			})
		}
	}
}

// TestCompleteRequests: the hidden __complete command (what the scripts and
// kubectl_complete-ovs_netpol run) lists the subcommands.
func TestCompleteRequests(t *testing.T) {
	out, err := execute(t, completeBinary, cobra.ShellCompRequestCmd, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"compile\t", "convert\t", "version\t", "completion\t"} {
		if !strings.Contains(out, want) {
			t.Fatalf("no %q in the completions:\n%s", want, out)
		}
	}
}

// bashCompletion is the bash-completion package's library, which cobra's
// bash scripts need (as every distribution's shell setup loads it).
const bashCompletion = "/usr/share/bash-completion/bash_completion"

// TestCompletionInBash builds the program, installs it under both names in
// a PATH directory, sources each name's bash script and completes "co" the
// way bash does on TAB: the script runs the binary's __complete command.
func TestCompletionInBash(t *testing.T) {
	if _, err := os.Stat(bashCompletion); err != nil {
		t.Fatalf("the bash-completion package is needed (make deps installs it): %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ovs-netpol")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Link(bin, filepath.Join(dir, pluginBinary)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ovs-netpol", pluginBinary} {
		t.Run(name, func(t *testing.T) {
			// compopt complains outside a real TAB (harmless): no set -e
			// after sourcing.
			script := `source ` + bashCompletion + ` || exit 1
source <("$1" completion bash) || exit 1
COMP_WORDS=("$1" co); COMP_CWORD=1; COMP_LINE="$1 co"; COMP_POINT=${#COMP_LINE}
"__start_$1" 2>/dev/null
printf '%s\n' "${COMPREPLY[@]}"`
			cmd := exec.Command("bash", "-c", script, "bash", name)
			cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			got := strings.Fields(string(out))
			if strings.Join(got, " ") != "compile completion convert" {
				t.Fatalf("completions of %q: %q, want compile, completion and convert", name+" co", got)
			}
		})
	}
}
