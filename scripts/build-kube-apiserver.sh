#!/usr/bin/env bash
# Builds a real kube-apiserver for the tests (pkg/k8stest) from the separate Go
# module tools/kube-apiserver (k8s.io/kubernetes + its staging modules pinned
# to the published releases). There is no Debian package or downloadable
# binary on our machines, so we compile it once and cache it:
#
#   ${OVS_NETPOL_CACHE:-$HOME/.cache/ovs-netpol}/kube-apiserver-v1.37.2
#
# The build is skipped when that file exists. Cold it takes ~8 minutes
# (module downloads + compile). Several callers at once (parallel test
# binaries) are serialized with flock; the binary appears atomically.
#
# Progress goes to stderr; the last line on stdout is the binary's path.
# Usage: scripts/build-kube-apiserver.sh [--force]
set -euo pipefail

KUBE_VERSION=v1.37.2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODDIR="$ROOT/tools/kube-apiserver"
CACHE="${OVS_NETPOL_CACHE:-$HOME/.cache/ovs-netpol}"
OUT="$CACHE/kube-apiserver-$KUBE_VERSION"

fail() { echo "build-kube-apiserver: FAILED: $*" >&2; exit 1; }

force=0
[ "${1:-}" = --force ] && force=1

if [ "$force" = 0 ] && [ -x "$OUT" ]; then
	echo "$OUT"
	exit 0
fi

command -v go >/dev/null || fail "go is not installed"
grep -q "k8s.io/kubernetes $KUBE_VERSION" "$MODDIR/go.mod" ||
	fail "$MODDIR/go.mod does not require k8s.io/kubernetes $KUBE_VERSION (update KUBE_VERSION here and in pkg/k8stest)"
mkdir -p "$CACHE" || fail "cannot create $CACHE"

# One builder at a time; whoever waited finds the binary ready.
exec 9>"$CACHE/.kube-apiserver.lock"
flock 9 || fail "cannot lock $CACHE/.kube-apiserver.lock"
if [ "$force" = 0 ] && [ -x "$OUT" ]; then
	echo "$OUT"
	exit 0
fi

echo "building kube-apiserver $KUBE_VERSION (cached after the first time, ~8 min cold)..." >&2
start=$(date +%s)
tmp="$OUT.tmp.$$"
trap 'rm -f "$tmp"' EXIT

# Stamp the real version (as kubernetes' hack/lib/version.sh does) so that
# /version and kubectl report v1.37.2 instead of v0.0.0-master.
major=${KUBE_VERSION#v}; major=${major%%.*}
minor=${KUBE_VERSION#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

(
	cd "$MODDIR"
	# -mod=readonly: go.mod/go.sum of tools/kube-apiserver are committed; never rewrite them here.
	GOFLAGS= CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false \
		-ldflags="$ldflags" -o "$tmp" k8s.io/kubernetes/cmd/kube-apiserver
) >&2 || fail "go build k8s.io/kubernetes/cmd/kube-apiserver (in $MODDIR) failed, see above"

"$tmp" --version >&2 || fail "the built binary does not run"
mv -f "$tmp" "$OUT" || fail "cannot move the binary to $OUT"
trap - EXIT
echo "built kube-apiserver in $(($(date +%s) - start)) s, $(du -h "$OUT" | cut -f1): $OUT" >&2
echo "$OUT"
