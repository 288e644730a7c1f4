"""The loopback network emulation as pure functions (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

from modelops_devcluster.podnet import (
    UNRESOLVED_ADDRESS,
    PodAddressMap,
    pick_service_address,
    rewrite_mount_path,
    rewrite_pod_local_addresses,
    rewrite_service_hosts,
)

SERVICE = {"spec": {"ports": [{"name": "http", "port": 8000, "targetPort": "http"}]}}


def endpoint_slice(*endpoints: tuple[str, bool, str]) -> dict[str, object]:
    return {
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8000}],
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": ready}, "targetRef": {"name": pod}}
            for ip, ready, pod in endpoints
        ],
    }


def test_only_the_pods_own_ports_move_to_the_pod_address() -> None:
    text = "--upstream http://127.0.0.1:8080 --registry http://127.0.0.1:5555 localhost:9090"
    assert rewrite_pod_local_addresses(text, "127.1.0.7", [8080, 9090]) == (
        "--upstream http://127.1.0.7:8080 --registry http://127.0.0.1:5555 127.1.0.7:9090"
    )


def test_service_hosts_resolve_with_and_without_port() -> None:
    seen = []

    def resolve(namespace: str, service: str, port: int | None) -> str:
        seen.append((namespace, service, port))
        return "127.1.0.9:8000"

    text = '{"a": "http://m-champion.ns.svc:8000", "b": "http://m.ns.svc.cluster.local/x"}'
    assert rewrite_service_hosts(text, resolve) == (
        '{"a": "http://127.1.0.9:8000", "b": "http://127.1.0.9:8000/x"}'
    )
    assert seen == [("ns", "m-champion", 8000), ("ns", "m", None)]
    assert rewrite_service_hosts("a.b.svc.example.com", resolve) == "a.b.svc.example.com"


def test_mount_paths_move_to_the_volume_directory() -> None:
    mounts = [("/models", Path("/w/model")), ("/models/cache", Path("/w/cache"))]
    assert rewrite_mount_path("/models/", mounts) == "/w/model/"
    assert rewrite_mount_path("file:///models/a.skops", mounts) == "file:///w/model/a.skops"
    assert rewrite_mount_path("/models/cache/x", mounts) == "/w/cache/x"
    assert rewrite_mount_path("/modelsx", mounts) == "/modelsx"


def test_the_newest_ready_endpoint_wins_and_none_is_refused() -> None:
    addresses = PodAddressMap()
    created = {"old": "2024-01-01T00:00:00Z", "new": "2024-01-02T00:00:00Z"}

    def creation(endpoint: dict[str, object]) -> str:
        return created[endpoint["targetRef"]["name"]]  # type: ignore[index]

    slices = [endpoint_slice(("10.245.0.1", True, "old"), ("10.245.0.2", True, "new"))]
    assert pick_service_address(SERVICE, slices, 8000, creation, addresses.to_local) == (
        "127.1.0.2:8000"
    )
    not_ready = [endpoint_slice(("10.245.0.1", False, "old"))]
    assert pick_service_address(SERVICE, not_ready, 8000, creation) == UNRESOLVED_ADDRESS
    assert pick_service_address(SERVICE, slices, 9999, creation) == UNRESOLVED_ADDRESS
    assert pick_service_address(None, slices, 8000, creation) == UNRESOLVED_ADDRESS


def test_api_addresses_mirror_the_loopback_ones() -> None:
    addresses = PodAddressMap("127.1.0.0/16", "10.245.0.0/16")
    assert addresses.to_api("127.1.2.3") == "10.245.2.3"
    assert addresses.to_local("10.245.2.3") == "127.1.2.3"
    assert addresses.to_local("10.0.0.1") == "10.0.0.1"
