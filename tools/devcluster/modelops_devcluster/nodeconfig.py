"""Pure builders of the real node's configuration: containerd, CNI, kubelet, kube-proxy, CoreDNS.

The node lives in network and mount namespaces of its own (nodens.py). Inside them every
address below is private to the node: nothing routes out of the namespace, so no packet can
reach the machine's network. The control plane stays on the host's 127.0.0.1 and is reached
through the relay (nsrelay.py) listening on the node's address with the API server's port.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .pki import NODE_API_ADDRESS

# The node's InternalIP, on a veth inside the node's namespace (in the API server's certificate).
NODE_IP = NODE_API_ADDRESS
NODE_PREFIX = 24
POD_SUBNET = "10.246.0.0/16"  # pods' own addresses, behind the CNI bridge
POD_GATEWAY = "10.246.0.1"
DNS_SERVICE_IP = "10.0.0.10"  # kube-dns, inside SERVICE_CLUSTER_IP_RANGE
CLUSTER_DOMAIN = "cluster.local"
KUBELET_PORT = 10250
COREDNS_PORT = 1053  # unprivileged: CoreDNS runs as non-root; the Service maps 53 to it

# Images every node needs before any workload, named in dist/images/images.txt by `make images`.
PAUSE_IMAGE = "modelops.dev/pause"
COREDNS_IMAGE = "modelops.dev/coredns"

# The values the kubelet insists on for six machine-wide settings. The node's mount namespace
# shows it files holding these values, so it never writes the host's real ones.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}


@dataclass(frozen=True)
class NodePaths:
    """Where one node keeps its state. `run` is short: unix sockets allow 108 bytes."""

    state: Path  # containerd root, kubelet root, logs (may be long)
    run: Path  # sockets and runtime state (short)

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def egress_socket(self) -> Path:
        return self.run / "egress.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state / "cni" / "net.d"

    @property
    def kubelet_root(self) -> Path:
        # In `run`: the kubelet listens on unix sockets below its root (pod-resources, plugins).
        return self.run / "kubelet"


def containerd_config(paths: NodePaths, runc: str, cni_bin_dir: str, sandbox_image: str) -> str:
    """containerd 2.x (config version 3): CRI with runc on cgroupfs and the bridge CNI."""
    cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
    return f"""version = 3
root = "{paths.state / 'containerd'}"
state = "{paths.run / 'containerd'}"
# Pods' shims, mounts and network namespaces all live inside the node's namespaces.
[grpc]
  address = "{paths.containerd_socket}"
[ttrpc]
  address = "{paths.containerd_socket}.ttrpc"
[debug]
  level = "warn"
[metrics]
  address = ""
[plugins.'io.containerd.internal.v1.opt']
  path = "{paths.state / 'opt'}"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{sandbox_image}"
[{cri_runtime}]
  # The machine lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below containerd's.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [{cri_runtime}.containerd]
    default_runtime_name = "runc"
    [{cri_runtime}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri_runtime}.containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{paths.run / 'runc'}"
        SystemdCgroup = false
  [{cri_runtime}.cni]
    bin_dirs = ["{cni_bin_dir}"]
    conf_dir = "{paths.cni_conf_dir}"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def cni_conflist(paths: NodePaths) -> dict[str, Any]:
    """One bridge, pods on POD_SUBNET; hairpin so a pod can reach itself through a Service."""
    return {
        "cniVersion": "1.0.0",
        "name": "modelops-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.state / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(paths: NodePaths, cgroup_root: str, ca_file: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This machine mounts cgroup v1 controllers; 1.36 still runs on them when told to.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        # Every pod's cgroup lives under this root, which the node removes when it stops.
        "cgroupRoot": cgroup_root,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "address": NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        # Pods never see the host's resolvers: names outside the cluster do not resolve.
        "resolvConf": str(paths.state / "resolv.conf"),
        "podLogsDir": str(paths.state / "pod-logs"),
        "volumePluginDir": str(paths.state / "volume-plugins"),
        # Images are imported, never pulled: the kubelet must not collect them as garbage.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "serializeImagePulls": False,
        "maxPods": 110,
        "staticPodPath": "",
        "registerNode": True,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "shutdownGracePeriod": "0s",
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 2,
    }


def kube_proxy_config(kubeconfig: Path, node_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node_name,
        "bindAddress": NODE_IP,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "clusterCIDR": POD_SUBNET,
        # Pods share one bridge without bridge netfilter in this namespace: masquerading every
        # Service connection routes the answer back through the rules that rewrote the request.
        "iptables": {"masqueradeAll": True, "syncPeriod": "10s", "minSyncPeriod": "0s"},
        # Zero leaves conntrack's machine-wide tables alone (they are not the node's to set).
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def service_account_with_cluster_role(
    meta: dict[str, str], role: str, rules: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A ServiceAccount bound to a ClusterRole of its own: what an in-cluster add-on runs as."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": role}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": role},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": role},
         "subjects": [{"kind": "ServiceAccount", **meta}]},
    ]


def coredns_manifests(image: str) -> list[dict[str, Any]]:
    """CoreDNS as users' clusters run it: a Deployment and the `kube-dns` Service."""
    labels = {"k8s-app": "kube-dns"}
    corefile = f"""\
.:{COREDNS_PORT} {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    loadbalance
}}
"""
    rules = [
        {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
         "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
         "verbs": ["list", "watch"]},
    ]
    meta = {"name": "coredns", "namespace": "kube-system"}
    return [
        *service_account_with_cluster_role(meta, "system:coredns", rules),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
         "data": {"Corefile": corefile}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**meta, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "priorityClassName": "system-cluster-critical",
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
                        "containers": [{
                            "name": "coredns",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [{"name": "dns", "containerPort": COREDNS_PORT,
                                       "protocol": "UDP"},
                                      {"name": "dns-tcp", "containerPort": COREDNS_PORT,
                                       "protocol": "TCP"}],
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                                               "periodSeconds": 2},
                            "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                            "resources": {"requests": {"cpu": "50m", "memory": "32Mi"},
                                          "limits": {"memory": "128Mi"}},
                            "securityContext": {"readOnlyRootFilesystem": True,
                                                "allowPrivilegeEscalation": False,
                                                "capabilities": {"drop": ["ALL"]}},
                            "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                        }],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "clusterIP": DNS_SERVICE_IP,
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": "dns-tcp"},
                ],
            },
        },
    ]


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"

