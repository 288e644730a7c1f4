#!/usr/bin/env bash
# Builds the dev cluster's binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, helm) from their Go modules, pinned in tools/k8s/go.mod.
# Binaries are cached outside the repo under a directory keyed by every version, so only
# the first build on a machine is slow; ~/.cache/modelops/devcluster/bin points at them.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/devcluster-versions.sh"

cache_root=${MODELOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelops/devcluster}
key="k8s-${K8S_VERSION}-kwok-${KWOK_VERSION}-helm-${HELM_VERSION}-gwapi-${GATEWAY_API_VERSION}"
out="$cache_root/$key/bin"
mkdir -p "$out"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-modcacherw

step() { printf '\033[1m[devcluster-build %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*"; }


minor=$(echo "$K8S_VERSION" | cut -d. -f2)
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${minor}"
  ldflags="$ldflags -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

started=$(date +%s)
if [ -x "$out/kube-apiserver" ] && "$out/kube-apiserver" --version | grep -qx "Kubernetes ${K8S_VERSION}" \
   && [ -x "$out/kube-controller-manager" ] && [ -x "$out/kube-scheduler" ] && [ -x "$out/kubectl" ]; then
  step "kubernetes ${K8S_VERSION} binaries cached in $out"
else
  step "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl ${K8S_VERSION} (cold: 15-30 min on 2 cores)"
  (cd "$here/tools/k8s" && go build -trimpath -ldflags "$ldflags" -o "$out/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  step "kubernetes binaries built ($(( $(date +%s) - started )) s so far)"
fi

if [ -x "$out/etcd" ] && "$out/etcd" --version >/dev/null 2>&1; then
  step "etcd cached"
else
  step "building etcd (the version kubernetes ${K8S_VERSION} pins)"
  (cd "$here/tools/k8s" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
  step "etcd built ($(( $(date +%s) - started )) s so far)"
fi

if [ -x "$out/kwok" ] && "$out/kwok" --version 2>/dev/null | grep -q "${KWOK_VERSION}"; then
  step "kwok cached"
else
  step "building kwok ${KWOK_VERSION}"
  GOBIN="$out" go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION}" \
    "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
  step "kwok built ($(( $(date +%s) - started )) s so far)"
fi

if [ -x "$out/helm" ] && "$out/helm" version --short 2>/dev/null | grep -q "${HELM_VERSION}"; then
  step "helm cached"
else
  step "building helm ${HELM_VERSION}"
  GOBIN="$out" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
    "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
  step "helm built ($(( $(date +%s) - started )) s so far)"
fi

# Data the cluster start needs, read from the module cache: Gateway API CRDs and kwok stages.
data="$cache_root/$key/data"
if [ ! -s "$data/kwok-stages.yaml" ] || [ ! -d "$data/gateway-api-crds" ]; then
  step "collecting Gateway API ${GATEWAY_API_VERSION} CRDs and kwok stages"
  mkdir -p "$data/gateway-api-crds"
  gw_dir=$(go mod download -json "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}" \
           | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$gw_dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml "$data/gateway-api-crds/"
  kwok_dir=$(go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION}" \
             | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  stages="node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
          pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml"
  : > "$data/kwok-stages.yaml.tmp"
  for s in $stages; do
    printf -- '---\n' >> "$data/kwok-stages.yaml.tmp"
    cat "$kwok_dir/kustomize/stage/$s" >> "$data/kwok-stages.yaml.tmp"
  done
  mv "$data/kwok-stages.yaml.tmp" "$data/kwok-stages.yaml"
fi

ln -sfn "$out" "$cache_root/bin.tmp" && mv -T "$cache_root/bin.tmp" "$cache_root/bin"
ln -sfn "$data" "$cache_root/data.tmp" && mv -T "$cache_root/data.tmp" "$cache_root/data"
step "done in $(( $(date +%s) - started )) s; binaries in $cache_root/bin"
"$out/kube-apiserver" --version
