#!/usr/bin/env bash
# The real `helm` for the chart tests, built from source through the Go module proxy (no download
# site is reachable here) and cached per version: the first run takes a minute or two, the rest
# nothing. Prints the binary's path.
#   bash scripts/ensure-helm.sh            # -> ~/.cache/rayflow/helm-v3.19.5/helm
set -euo pipefail
VERSION="${RAYFLOW_HELM_VERSION:-v3.19.5}"
DIR="${RAYFLOW_CACHE:-$HOME/.cache/rayflow}/helm-$VERSION"
if [ ! -x "$DIR/helm" ]; then
  if ! command -v go >/dev/null; then
    echo "helm is missing and so is Go: install Go 1.24+ (it builds helm $VERSION)" >&2
    exit 1
  fi
  echo "building helm $VERSION with go install (cached in $DIR)..." >&2
  mkdir -p "$DIR"
  GOBIN="$DIR" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$VERSION" >&2
fi
echo "$DIR/helm"
