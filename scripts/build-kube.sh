#!/usr/bin/env bash
# Builds a real Kubernetes component for the tests (internal/k8stest) from the
# separate Go module tools/kube (k8s.io/kubernetes + its staging modules pinned
# to the published releases): kube-apiserver (the test API server) or
# kube-proxy (iptables mode, in the e2e nodes' host network namespaces).
# There is no Debian package or downloadable binary on our machines, so we
# compile each once and cache it:
#
#   ${OVS_NETPOL_CACHE:-$HOME/.cache/ovs-netpol}/COMPONENT-v1.37.2
#
# The build is skipped when that file exists. Cold, kube-apiserver takes ~8
# minutes or more (module downloads + compile, 2 cores); kube-proxy after it
# ~2 minutes (same modules, most packages in Go's build cache), ~7 alone with
# an empty build cache. Several callers at once (parallel test binaries) are
# serialized with flock per component; the binary appears atomically.
#
# Progress goes to stderr; the last line on stdout is the binary's path.
# Usage: scripts/build-kube.sh kube-apiserver|kube-proxy [--force]
set -euo pipefail

KUBE_VERSION=v1.37.2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODDIR="$ROOT/tools/kube"
CACHE="${OVS_NETPOL_CACHE:-$HOME/.cache/ovs-netpol}"

fail() { echo "build-kube: FAILED: $*" >&2; exit 1; }
usage() { echo "usage: $0 kube-apiserver|kube-proxy [--force]" >&2; exit 2; }

component="${1:-}"
case "$component" in
kube-apiserver | kube-proxy) ;;
*) usage ;;
esac
force=0
case "${2:-}" in
"") ;;
--force) force=1 ;;
*) usage ;;
esac
[ $# -le 2 ] || usage

OUT="$CACHE/$component-$KUBE_VERSION"

if [ "$force" = 0 ] && [ -x "$OUT" ]; then
	echo "$OUT"
	exit 0
fi

command -v go >/dev/null || fail "go is not installed"
grep -q "k8s.io/kubernetes $KUBE_VERSION" "$MODDIR/go.mod" ||
	fail "$MODDIR/go.mod does not require k8s.io/kubernetes $KUBE_VERSION (update KUBE_VERSION here and in internal/k8stest)"
grep -q "\"k8s.io/kubernetes/cmd/$component\"" "$MODDIR/tools.go" ||
	fail "$MODDIR/tools.go does not import k8s.io/kubernetes/cmd/$component"
mkdir -p "$CACHE" || fail "cannot create $CACHE"

# One builder per component at a time; whoever waited finds the binary ready.
exec 9>"$CACHE/.$component.lock"
flock 9 || fail "cannot lock $CACHE/.$component.lock"
if [ "$force" = 0 ] && [ -x "$OUT" ]; then
	echo "$OUT"
	exit 0
fi

echo "building $component $KUBE_VERSION (cached after the first time, several minutes cold)..." >&2
start=$(date +%s)
tmp="$OUT.tmp.$$"
trap 'rm -f "$tmp"' EXIT

# Stamp the real version (as kubernetes' hack/lib/version.sh does) so that
# --version, /version and kubectl report v1.37.2 instead of v0.0.0-master.
major=${KUBE_VERSION#v}; major=${major%%.*}
minor=${KUBE_VERSION#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

(
	cd "$MODDIR"
	# -mod=readonly: go.mod/go.sum of tools/kube are committed; never rewrite them here.
	GOFLAGS= CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false \
		-ldflags="$ldflags" -o "$tmp" "k8s.io/kubernetes/cmd/$component"
) >&2 || fail "go build k8s.io/kubernetes/cmd/$component (in $MODDIR) failed, see above"

"$tmp" --version >&2 || fail "the built binary does not run"
mv -f "$tmp" "$OUT" || fail "cannot move the binary to $OUT"
trap - EXIT
echo "built $component in $(($(date +%s) - start)) s, $(du -h "$OUT" | cut -f1): $OUT" >&2
echo "$OUT"
