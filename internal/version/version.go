// Package version names the build of every ovs-netpol binary. The Makefile
// sets Version and Commit with -ldflags -X (from `git describe --always
// --dirty` and `git rev-parse HEAD`); a plain `go build` or `go install`
// leaves them empty, and the module and VCS stamps Go records in the binary
// (runtime/debug.ReadBuildInfo) are used instead.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set at link time:
//
//	-X github.com/ovs-netpol/ovs-netpol/internal/version.Version=v0.4.0-3-gabcdef0
//	-X github.com/ovs-netpol/ovs-netpol/internal/version.Commit=abcdef0...
var (
	Version string
	Commit  string
)

// Info is what a binary says about its build.
type Info struct {
	// Version is the release (git describe) or, without -ldflags, the module
	// version Go recorded ("(devel)" for a build inside the repository).
	Version string `json:"version"`
	// Commit is the full revision, "+dirty" appended when the build saw
	// uncommitted changes (VCS stamp only); empty when nothing recorded it.
	Commit    string `json:"commit,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the build information: the link-time values first, then what
// debug.ReadBuildInfo has for what they leave empty.
func Get() Info {
	return get(Version, Commit, debug.ReadBuildInfo)
}

func get(version, commit string, read func() (*debug.BuildInfo, bool)) Info {
	info := Info{Version: version, Commit: commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info.Version != "" && info.Commit != "" {
		return info
	}
	bi, ok := read()
	if !ok {
		if info.Version == "" {
			info.Version = "unknown"
		}
		return info
	}
	if info.Version == "" {
		info.Version = bi.Main.Version
	}
	if info.Commit == "" {
		var rev string
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" && dirty {
			rev += "+dirty"
		}
		info.Commit = rev
	}
	if info.Version == "" {
		info.Version = "unknown"
	}
	return info
}

// String is the one line every binary prints for --version, after its name:
// "v0.4.0-3-gabcdef0 (commit abcdef0123..., go1.24.1 linux/amd64)".
func (i Info) String() string {
	var extra []string
	if i.Commit != "" {
		extra = append(extra, "commit "+i.Commit)
	}
	extra = append(extra, i.GoVersion, i.Platform)
	return fmt.Sprintf("%s (%s)", i.Version, strings.Join(extra, ", "))
}

// Line is "NAME VERSION (...)", what `NAME --version` prints.
func Line(name string) string { return name + " " + Get().String() }
