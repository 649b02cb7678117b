package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionFlag: --version answers a person; the CNI VERSION command (an
// environment variable, as runtimes send it) still answers with the
// supported versions, with or without the argument.
func TestVersionFlag(t *testing.T) {
	plugin := filepath.Join(pluginDir, "ovs-netpol-cni")
	run := func(env []string, args ...string) (string, string, error) {
		cmd := exec.Command(plugin, args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader(`{"cniVersion":"1.0.0","name":"n","type":"ovs-netpol-cni"}`)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	out, _, err := run(nil, "--version")
	if err != nil || !strings.HasPrefix(out, "ovs-netpol-cni ") || strings.Count(out, "\n") != 1 {
		t.Fatalf("--version: %v %q", err, out)
	}
	t.Logf("--version: %s", strings.TrimSpace(out))
	cases := []struct {
		name string
		args []string
	}{
		{"CNI VERSION", nil},
		{"CNI VERSION with --version on the command line", []string{"--version"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, err := run([]string{"CNI_COMMAND=VERSION"}, c.args...)
			if err != nil {
				t.Fatalf("%v: %s", err, stderr)
			}
			var v struct {
				CNIVersion        string   `json:"cniVersion"`
				SupportedVersions []string `json:"supportedVersions"`
			}
			if err := json.Unmarshal([]byte(stdout), &v); err != nil || len(v.SupportedVersions) != 5 || v.SupportedVersions[4] != "1.1.0" {
				t.Fatalf("VERSION answered %q (%v)", stdout, err)
			}
		})
	}
	// Without CNI_COMMAND and without --version: the skel's "about" line,
	// which names the build too.
	_, stderr, err := run(nil)
	if err != nil || !strings.Contains(stderr, "ovs-netpol-cni: attaches pods") || !strings.Contains(stderr, out[len("ovs-netpol-cni "):len(out)-1]) {
		t.Fatalf("no CNI_COMMAND: %v %q", err, stderr)
	}
}
