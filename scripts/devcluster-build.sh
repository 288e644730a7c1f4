#!/usr/bin/env bash
# Builds the dev cluster's binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kubelet, kube-proxy, kwok, helm, containerd, CoreDNS) from their Go
# modules, pinned with go.mod + go.sum in tools/{k8s,kwok,helm,gateway-api,containerd,coredns},
# and the pause program the node's sandboxes run. Binaries are cached outside the repo in a directory keyed
# by every version, so only the first build on a machine is slow (about 20 min on 2 cores);
# ~/.cache/modelops/devcluster/bin always points at the current ones.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/devcluster-versions.sh"

cache_root=${MODELOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelops/devcluster}
key="k8s-${K8S_VERSION}-kwok-${KWOK_VERSION}-helm-${HELM_VERSION}-gwapi-${GATEWAY_API_VERSION}"
key="$key-containerd-${CONTAINERD_VERSION}-coredns-${COREDNS_VERSION}-prometheus-${PROMETHEUS_VERSION}"
out="$cache_root/$key/bin"
data="$cache_root/$key/data"
mkdir -p "$out" "$data"

# local toolchain only (fail fast rather than download one); static binaries; a module cache
# that `rm -rf` can clean.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-modcacherw

step() { printf '[devcluster-build %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
started=$(date +%s)
elapsed() { echo "$(( $(date +%s) - started )) s"; }

# Module zips never fill in git's version placeholders: without these, /version says
# v0.0.0-master and helm's kubeVersion checks break.
minor=$(echo "$K8S_VERSION" | cut -d. -f2)
k8s_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags="$k8s_ldflags -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${minor}"
  k8s_ldflags="$k8s_ldflags -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

if [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ] \
   && [ -x "$out/kube-scheduler" ] && [ -x "$out/kubectl" ] \
   && [ -x "$out/kubelet" ] && [ -x "$out/kube-proxy" ] \
   && "$out/kube-apiserver" --version | grep -qx "Kubernetes ${K8S_VERSION}"; then
  step "kubernetes ${K8S_VERSION} cached"
else
  step "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy ${K8S_VERSION}" \
       "(the slow part: ~15 min cold on 2 cores)"
  (cd "$here/tools/k8s" && go build -trimpath -ldflags "$k8s_ldflags" -o "$out/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  step "kubernetes built ($(elapsed))"
fi

if [ -x "$out/etcd" ] && "$out/etcd" --version >/dev/null 2>&1; then
  step "etcd cached"
else
  step "building etcd (the version kubernetes ${K8S_VERSION} requires)"
  (cd "$here/tools/k8s" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
  step "etcd built ($(elapsed))"
fi

if [ -x "$out/kwok" ] && "$out/kwok" --version 2>/dev/null | grep -q "${KWOK_VERSION}"; then
  step "kwok cached"
else
  step "building kwok ${KWOK_VERSION} (~3 min cold)"
  (cd "$here/tools/kwok" && go build -trimpath -o "$out/kwok" \
      -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION}" sigs.k8s.io/kwok/cmd/kwok)
  step "kwok built ($(elapsed))"
fi

# Without the Kubernetes version in its ldflags, offline `helm template` and `helm lint` check a
# chart's kubeVersion against 1.20; the stamp marks a helm built with it.
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_ldflags="$helm_ldflags -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=${minor}"
done
if [ -x "$out/helm" ] && [ -f "$out/.helm-k8s-1.${minor}" ] \
   && "$out/helm" version --short 2>/dev/null | grep -q "${HELM_VERSION}"; then
  step "helm cached"
else
  step "building helm ${HELM_VERSION} (~5 min cold)"
  (cd "$here/tools/helm" && go build -trimpath -o "$out/helm" -ldflags "$helm_ldflags" \
      helm.sh/helm/v3/cmd/helm)
  touch "$out/.helm-k8s-1.${minor}"
  step "helm built ($(elapsed))"
fi

if [ -x "$out/containerd" ] && "$out/containerd" --version 2>/dev/null | grep -q "${CONTAINERD_VERSION}"; then
  step "containerd cached"
else
  step "building containerd ${CONTAINERD_VERSION}, its runc shim and ctr (~5 min cold)"
  cd_ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=${CONTAINERD_VERSION}"
  (cd "$here/tools/containerd" && go build -trimpath -tags "no_btrfs,no_devmapper,no_zfs" \
      -ldflags "$cd_ldflags" -o "$out/" \
      github.com/containerd/containerd/v2/cmd/containerd \
      github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
      github.com/containerd/containerd/v2/cmd/ctr)
  step "containerd built ($(elapsed))"
fi

# (Here-strings, not pipes: with pipefail, grep -q closing early fails the version command.)
if [ -x "$out/coredns" ] && grep -q "${COREDNS_VERSION#v}" <<<"$("$out/coredns" -version 2>/dev/null)"; then
  step "coredns cached"
else
  step "building CoreDNS ${COREDNS_VERSION} (~3 min cold)"
  (cd "$here/tools/coredns" && go build -trimpath -ldflags "-s -w" -o "$out/coredns" github.com/coredns/coredns)
  step "coredns built ($(elapsed))"
fi

# Prometheus for the cluster: Debian's package leaves out Kubernetes service discovery, which
# the in-cluster Prometheus needs; the build keeps only that discovery plugin. Module v0.3XX.Y
# is Prometheus 3.XX.Y.
prom_version=$(echo "${PROMETHEUS_VERSION#v0.}" | awk -F. '{printf "3.%d.%s", substr($1, 2), $2}')
if [ -x "$out/prometheus" ] && grep -q "$prom_version" <<<"$("$out/prometheus" --version 2>&1)"; then
  step "prometheus cached"
else
  step "building Prometheus $prom_version with Kubernetes discovery only (~4 min cold)"
  prom_ldflags="-s -w -X github.com/prometheus/common/version.Version=$prom_version"
  prom_ldflags="$prom_ldflags -X github.com/prometheus/common/version.Branch=release"
  (cd "$here/tools/prometheus" && go build -trimpath -tags "remove_all_sd,enable_kubernetes_sd" \
      -ldflags "$prom_ldflags" -o "$out/prometheus" github.com/prometheus/prometheus/cmd/prometheus)
  step "prometheus built ($(elapsed))"
fi

# The sandbox ("pause") program, from the same Kubernetes module: static, so its image needs
# nothing else. It is imported as the sandbox image the node's containerd pins.
if [ ! -x "$out/pause" ]; then
  pause_c="$(cd "$here/tools/k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
  step "building pause from $pause_c"
  gcc -Os -static -DVERSION="${K8S_VERSION}-modelops" -o "$out/pause.tmp" "$pause_c"
  strip "$out/pause.tmp" && mv "$out/pause.tmp" "$out/pause"
fi

# Data the cluster start needs, read from the module cache: Gateway API CRDs and kwok stages.
if [ ! -s "$data/kwok-stages.yaml" ] || ! ls "$data"/gateway-api-crds/*.yaml >/dev/null 2>&1; then
  step "collecting Gateway API ${GATEWAY_API_VERSION} CRDs and kwok stages from the module cache"
  module_dir() { (cd "$here/tools/$1" && go list -m -f '{{.Dir}}' "$2"); }
  (cd "$here/tools/gateway-api" && go mod download sigs.k8s.io/gateway-api)
  (cd "$here/tools/kwok" && go mod download sigs.k8s.io/kwok)
  gw_dir=$(module_dir gateway-api sigs.k8s.io/gateway-api)
  kwok_dir=$(module_dir kwok sigs.k8s.io/kwok)
  mkdir -p "$data/gateway-api-crds"
  cp "$gw_dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml "$data/gateway-api-crds/"
  : > "$data/kwok-stages.yaml.tmp"
  for s in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    printf -- '---\n' >> "$data/kwok-stages.yaml.tmp"
    cat "$kwok_dir/kustomize/stage/$s" >> "$data/kwok-stages.yaml.tmp"
  done
  mv "$data/kwok-stages.yaml.tmp" "$data/kwok-stages.yaml"
fi

# Switch the stable names atomically, so a concurrent reader never sees a half-made link.
ln -sfn "$out" "$cache_root/bin.tmp" && mv -T "$cache_root/bin.tmp" "$cache_root/bin"
ln -sfn "$data" "$cache_root/data.tmp" && mv -T "$cache_root/data.tmp" "$cache_root/data"
step "ready in $(elapsed): $("$out/kube-apiserver" --version), $("$out/etcd" --version | head -1)"
step "binaries: $cache_root/bin (put it on PATH)"
