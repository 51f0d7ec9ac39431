#!/usr/bin/env bash
# Build (once) the istioctl that benchmark 5 compares `meshready analyze` with, from the Go module
# proxy, into ${MESHREADY_CACHE:-$HOME/.cache/meshready}/istioctl/<version>/istioctl.
#
# Istio tags its releases without the `v` Go versions need (`1.30.3`), so the proxy serves
# istio.io/istio only as pseudo-versions of commits. No 1.30.x commit builds from it: the
# release-1.30 pseudo-version requires an istio.io/api commit the proxy refuses (403). The one
# pinned here is the master branch of 2026-08-27, on its way to 1.31 (istio.io/api
# v1.31.0-rc.0); its analyzers are 1.30's plus what master added. BENCHMARKS.md says more.
#
# The last line of output is the binary's path. Overrides: ISTIOCTL_VERSION, MESHREADY_CACHE.
set -euo pipefail

ISTIOCTL_VERSION=${ISTIOCTL_VERSION:-v0.0.0-20260827124520-eed52ebb66ad}
DIR="${MESHREADY_CACHE:-$HOME/.cache/meshready}/istioctl/$ISTIOCTL_VERSION"

export GOWORK=off
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS="${GOFLAGS:-} -mod=mod"

log() { printf 'istioctl: %s\n' "$*" >&2; }

if [[ -x $DIR/istioctl ]]; then
  log "cached: $DIR/istioctl"
else
  command -v go >/dev/null || { log "error: go is not installed"; exit 1; }
  log "building istio.io/istio/istioctl@$ISTIOCTL_VERSION (a few minutes)"
  mkdir -p "$DIR"
  # Built under a temporary name and renamed, so an interrupted build is never taken for one.
  GOBIN="$DIR/.partial" go install "istio.io/istio/istioctl/cmd/istioctl@$ISTIOCTL_VERSION"
  mv "$DIR/.partial/istioctl" "$DIR/istioctl"
  rmdir "$DIR/.partial"
fi
echo "$DIR/istioctl"
