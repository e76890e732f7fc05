#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok
# and etcd from the pinned wrapper modules in e2e/go/, into a cache directory keyed by version,
# so a second run reuses them. Prints the directory on the last line of stdout.
#
#   e2e/scripts/build-control-plane.sh            # build (or reuse) and print the bin dir
#
# Environment: HEADROOM_CACHE (default ~/.cache/headroom).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${HEADROOM_CACHE:-$HOME/.cache/headroom}"

k8s_version="$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$here/go/controlplane/go.mod")"
kwok_version="$(awk '$1=="require" && $2=="sigs.k8s.io/kwok" {print $3}' "$here/go/kwok/go.mod")"
etcd_version="$(awk '$1=="require" && $2=="go.etcd.io/etcd/server/v3" {print $3}' "$here/go/etcd/go.mod")"
go_version="$(go env GOVERSION)"
bin="$cache/bin/k8s-${k8s_version}_kwok-${kwok_version}_etcd-${etcd_version}_${go_version}"
mkdir -p "$bin"

log() { echo "[build-control-plane] $*" >&2; }

minor="${k8s_version#v1.}"; minor="${minor%%.*}"
ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=${k8s_version} \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=${minor} \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=${k8s_version} \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=${minor}"

build() { # <module dir> <output name> <package> <ldflags>
  local dir="$1" name="$2" pkg="$3" flags="$4"
  if [ -x "$bin/$name" ]; then log "$name: cached in $bin"; return; fi
  log "$name: building $pkg (cold builds take minutes; go prints each package it compiles with -v)"
  local start=$SECONDS
  # -v lists packages as they compile: visible progress for long cold builds.
  (cd "$dir" && CGO_ENABLED=0 go build -mod=readonly -trimpath -v -ldflags "$flags" -o "$bin/$name.tmp" "$pkg") 2>&1 \
    | awk -v n="$name" '{c++; if (c % 50 == 0) {printf "[build-control-plane] %s: %d packages compiled\n", n, c > "/dev/stderr"; fflush("/dev/stderr")}} /\.go:[0-9]+:|^go: / {print > "/dev/stderr"}'
  [ "${PIPESTATUS[0]}" -eq 0 ] || { log "$name: build failed"; exit 1; }
  mv "$bin/$name.tmp" "$bin/$name"
  log "$name: built in $((SECONDS - start))s"
}

build "$here/go/controlplane" kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
build "$here/go/controlplane" kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$ldflags"
build "$here/go/controlplane" kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$ldflags"
build "$here/go/controlplane" kubectl k8s.io/kubernetes/cmd/kubectl "$ldflags"
build "$here/go/kwok" kwok sigs.k8s.io/kwok/cmd/kwok "-s -w"

build "$here/go/etcd" etcd go.etcd.io/etcd/server/v3 "-s -w"
echo "$bin"
