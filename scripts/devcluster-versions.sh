# The dev cluster's versions, read from the committed tools modules (go.mod + go.sum pin every
# component and its whole dependency graph). Sourced by devcluster-build.sh.
_tools="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd)"
_required() { awk -v m="$2" '$1 == m || ($1 == "require" && $2 == m) {print ($1 == "require") ? $3 : $2}' "$_tools/$1/go.mod"; }
K8S_VERSION=$(_required k8s k8s.io/kubernetes)
KWOK_VERSION=$(_required kwok sigs.k8s.io/kwok)
HELM_VERSION=$(_required helm helm.sh/helm/v3)
GATEWAY_API_VERSION=$(_required gateway-api sigs.k8s.io/gateway-api)
CONTAINERD_VERSION=$(_required containerd github.com/containerd/containerd/v2)
COREDNS_VERSION=$(_required coredns github.com/coredns/coredns)
PROMETHEUS_VERSION=$(_required prometheus github.com/prometheus/prometheus)
