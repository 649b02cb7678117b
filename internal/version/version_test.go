package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	stamp := func(version string, settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Path: "github.com/ovs-netpol/ovs-netpol", Version: version}, Settings: settings}, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}
	cases := []struct {
		name            string
		version, commit string
		read            func() (*debug.BuildInfo, bool)
		wantVersion     string
		wantCommit      string
	}{
		{"ldflags win over the build stamp", "v1.2.3-4-gabcdef0", "abcdef0", stamp("(devel)", rev), "v1.2.3-4-gabcdef0", "abcdef0"},
		{"ldflags version, commit from the VCS stamp", "v1.2.3", "", stamp("(devel)", rev), "v1.2.3", rev.Value},
		{"no ldflags: module version and VCS revision", "", "", stamp("(devel)", rev), "(devel)", rev.Value},
		{"dirty tree is marked", "", "", stamp("v0.0.0-2026", rev, debug.BuildSetting{Key: "vcs.modified", Value: "true"}), "v0.0.0-2026", rev.Value + "+dirty"},
		{"clean tree is not", "", "", stamp("(devel)", rev, debug.BuildSetting{Key: "vcs.modified", Value: "false"}), "(devel)", rev.Value},
		{"no VCS stamp (go build -buildvcs=false)", "", "", stamp("(devel)"), "(devel)", ""},
		{"no build info at all", "", "", none, "unknown", ""},
		{"empty module version", "", "", stamp(""), "unknown", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := get(c.version, c.commit, c.read)
			if got.Version != c.wantVersion || got.Commit != c.wantCommit {
				t.Fatalf("got version %q commit %q, want %q %q", got.Version, got.Commit, c.wantVersion, c.wantCommit)
			}
			s := got.String()
			if !strings.HasPrefix(s, c.wantVersion+" (") || (c.wantCommit != "") != strings.Contains(s, "commit "+c.wantCommit) {
				t.Fatalf("String() = %q", s)
			}
		})
	}
}

func TestLineNamesTheBinary(t *testing.T) {
	if l := Line("ovs-netpol-cni"); !strings.HasPrefix(l, "ovs-netpol-cni ") {
		t.Fatalf("Line = %q", l)
	}
}
