"""The CRDs in crds/ and the chart are generated from the pydantic models and stay in sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops_operator.api import crdgen
from modelops_operator.api.championchallenger import ChampionChallengerSpec
from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.conditions import PENDING_STATUS

REPO = Path(__file__).resolve().parents[3]


def _walk(node: dict[str, Any], path: str = ""):
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{name}")
    if node.get("type") == "array":
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}.*")


def _schemas():
    for crd in (crdgen.modeldeployment_crd(), crdgen.championchallenger_crd()):
        yield crd["spec"]["names"]["kind"], crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_committed_crds_match_the_models() -> None:
    stale = crdgen.stale_files()
    assert not stale, f"run `make crds`: {[str(p.relative_to(REPO)) for p in stale]}"


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    outputs = ((tmp_path / "plain", {}), (tmp_path / "chart", crdgen.HELM_KEEP))
    crdgen.write(outputs)
    assert crdgen.stale_files(outputs) == []
    victim = next((tmp_path / "chart").iterdir())
    victim.write_text(victim.read_text().replace("maxLength: 63", "maxLength: 64", 1))
    assert crdgen.stale_files(outputs) == [victim]
    # The chart's copy without its keep annotation is stale too: uninstall would delete it.
    victim.write_text((tmp_path / "plain" / victim.name).read_text())
    assert crdgen.stale_files(outputs) == [victim]


def test_chart_copy_is_the_same_crd_kept_on_uninstall() -> None:
    # Not in the chart's crds/ directory: Helm would install those once and never upgrade them.
    assert not (REPO / "charts/modelops/crds").exists()
    for name in crdgen.render():
        plain = yaml.safe_load((REPO / "crds" / name).read_text())
        chart = yaml.safe_load((crdgen.CHART_CRDS_DIR / name).read_text())
        assert chart["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
        assert chart == plain


@pytest.mark.parametrize(("kind", "schema"), list(_schemas()))
def test_schema_is_structural_and_described(kind: str, schema: dict[str, Any]) -> None:
    text = yaml.safe_dump(schema)
    for forbidden in ("$ref", "anyOf", "$defs", "title:"):
        assert forbidden not in text, f"{kind}: {forbidden} in schema"
    free_form = [
        path
        for path, node in _walk(schema)
        if node.get("x-kubernetes-preserve-unknown-fields")
        and not node.get("x-kubernetes-embedded-resource")
    ]
    # Only the operator's own bookkeeping in status may be free-form; every user field is typed
    # or a whole Kubernetes object the API server checks as one (the retraining template).
    assert all(p.split(".")[-2:-1] == ["status"] for p in free_form), free_form
    assert all(p.rsplit(".", 1)[-1] in ("machine", "evidence") for p in free_form), free_form
    for path, node in _walk(schema):
        scalar_item = path.endswith("[]") and node.get("type") != "object"
        owned_by_server = path == ".metadata"
        assert node.get("description") or scalar_item or owned_by_server, f"{kind}{path}"
        assert node.get("type") or node.get("x-kubernetes-int-or-string"), f"{kind}{path}: no type"


def test_modeldeployment_has_scale_status_and_columns() -> None:
    crd = crdgen.modeldeployment_crd()
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    scale = version["subresources"]["scale"]
    assert scale["specReplicasPath"] == ".spec.runtime.replicas"
    status_props = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status_props["selector"]["type"] == "string"  # HPA needs a string selector
    assert status_props["replicas"]["type"] == "integer"
    names = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert names == ["Ready", "Model", "Version", "Replicas", "Drift", "Endpoint", "Age"]
    assert crd["spec"]["names"]["shortNames"] == ["mdep"]
    assert crd["spec"]["names"]["categories"] == ["modelops"]


def test_championchallenger_columns_tell_the_story() -> None:
    crd = crdgen.championchallenger_crd()
    version = crd["spec"]["versions"][0]
    names = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    for column in ("Phase", "Challenger", "Traffic", "Decision", "Age"):
        assert column in names
    assert crd["spec"]["names"]["shortNames"] == ["cc"]
    assert "scale" not in version["subresources"]


def test_conditions_are_a_map_keyed_by_type() -> None:
    for kind, schema in _schemas():
        conditions = schema["properties"]["status"]["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map", kind
        assert conditions["x-kubernetes-list-map-keys"] == ["type"], kind
        status = dict(schema["properties"]["status"])
        whole = status.pop("default", None)
        # No field of a status defaults (it would claim progress nobody made); a
        # ModelDeployment's status as a whole is "pending" until the operator's first report.
        assert "default" not in yaml.safe_dump(status), kind
        assert whole == (PENDING_STATUS if kind == "ModelDeployment" else None), kind


def test_the_pending_status_is_a_valid_status_that_kstatus_reads_as_in_progress() -> None:
    from modelops_operator.api.modeldeployment import ModelDeploymentStatus

    pending = ModelDeploymentStatus.model_validate(PENDING_STATUS)
    states = {c.type: c.status for c in pending.conditions}
    assert states == {"Ready": "Unknown", "Reconciling": "True"}
    assert pending.observed_generation == 0  # absent: nothing observed yet


def test_every_cel_message_names_a_field() -> None:
    for kind, schema in _schemas():
        rules = [r for _, n in _walk(schema) for r in n.get("x-kubernetes-validations", [])]
        assert len(rules) >= 8, kind
        for rule in rules:
            message = rule["message"]
            assert any(word in message for word in ("spec.", "metadata.", "cpu ", "memory ")), (
                f"{kind}: '{message}' names no field"
            )


def test_optional_object_fields_default_to_empty_so_nested_defaults_apply() -> None:
    schema = dict(_schemas())["ModelDeployment"]
    spec = schema["properties"]["spec"]["properties"]
    assert spec["runtime"]["default"] == {}
    assert spec["runtime"]["properties"]["replicas"]["default"] == 1
    alpha = dict(_schemas())["ChampionChallenger"]["properties"]["spec"]["properties"]["decision"]
    assert alpha["properties"]["alpha"]["exclusiveMinimum"] is True
    assert alpha["properties"]["alpha"]["exclusiveMaximum"] is True


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("examples/modeldeployment-sklearn.yaml", ModelDeploymentSpec),
        ("examples/championchallenger-canary.yaml", ChampionChallengerSpec),
        ("examples/championchallenger-shadow.yaml", ChampionChallengerSpec),
    ],
)
def test_examples_parse_and_round_trip(path: str, model: type) -> None:
    manifest = yaml.safe_load((REPO / path).read_text())
    spec = model.model_validate(manifest["spec"])
    again = model.model_validate(spec.to_wire())
    assert again == spec
    for key in manifest["spec"]:
        assert key in spec.to_wire(), f"{path}: spec.{key} lost in the round trip"


def test_example_digest_is_the_committed_model_file() -> None:
    import hashlib

    manifest = yaml.safe_load((REPO / "examples/modeldeployment-sklearn.yaml").read_text())
    model_file = REPO / "examples/models/iris-1.0.0.skops"
    digest = "sha256:" + hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert manifest["spec"]["model"]["digest"] == digest
