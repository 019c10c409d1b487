#!/usr/bin/env bash
# A real kube-apiserver for the Kubernetes tests, built from the Kubernetes Go modules through the
# Go module proxy (no download site is reachable here) and cached per version. `go install
# k8s.io/kubernetes/cmd/kube-apiserver@v1.X` fails: the module pins its staging modules (k8s.io/api,
# k8s.io/apiserver, ...) at v0.0.0 with `replace => ./staging/...`. So a small wrapper module
# requires k8s.io/kubernetes and replaces every staging module with its published v0.X.Y release,
# read from Kubernetes' own go.mod. Prints the binary's path.
#   bash scripts/ensure-kube-apiserver.sh     # -> ~/.cache/rayflow/kube-apiserver-v1.37.2/kube-apiserver
set -euo pipefail
VERSION="${RAYFLOW_KUBE_VERSION:-v1.37.2}"
STAGING="v0.${VERSION#v1.}"
DIR="${RAYFLOW_CACHE:-$HOME/.cache/rayflow}/kube-apiserver-$VERSION"
if [ -x "$DIR/kube-apiserver" ]; then
  echo "$DIR/kube-apiserver"
  exit 0
fi
command -v go >/dev/null || { echo "kube-apiserver is missing and so is Go (1.26+)" >&2; exit 1; }
echo "building kube-apiserver $VERSION from the Go module proxy (cached in $DIR)..." >&2
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
UPSTREAM="$(go mod download -json "k8s.io/kubernetes@$VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
GO_LINE="$(grep -m1 '^go ' "$UPSTREAM")"
{
  echo "module rayflow.dev/kube-apiserver-build"
  echo
  echo "$GO_LINE"
  echo
  echo "require k8s.io/kubernetes $VERSION"
  echo
  echo "replace ("
  grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$UPSTREAM" |
    awk -v v="$STAGING" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} > go.mod
GOFLAGS=-mod=mod go get "k8s.io/kubernetes/cmd/kube-apiserver@$VERSION" >&2
mkdir -p "$DIR"
# -p 2 and no debug info: the build fits a 2-core machine's memory and time. The version is
# stamped as Kubernetes' own build does (helm checks charts' kubeVersion against it).
MINOR="${VERSION#v1.}"
MINOR="${MINOR%%.*}"
V=k8s.io/component-base/version
GOFLAGS=-mod=mod go build -p 2 -trimpath -o "$DIR/kube-apiserver.partial" \
  -ldflags "-s -w -X $V.gitVersion=$VERSION -X $V.gitMajor=1 -X $V.gitMinor=$MINOR -X $V.gitTreeState=clean" \
  k8s.io/kubernetes/cmd/kube-apiserver >&2
mv "$DIR/kube-apiserver.partial" "$DIR/kube-apiserver"
echo "$DIR/kube-apiserver"
