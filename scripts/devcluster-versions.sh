# Pinned versions of the dev cluster. Kubernetes and etcd are pinned in tools/k8s/go.mod
# (etcd is the one Kubernetes requires); keep K8S_VERSION equal to the version there.
K8S_VERSION=v1.36.3
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.21.4
GATEWAY_API_VERSION=v1.6.1
