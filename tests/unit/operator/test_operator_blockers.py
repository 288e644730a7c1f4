"""What a spec references must exist before anything is applied; the blocker names the field."""

from __future__ import annotations

from pydantic import ValidationError

from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.reconcile import find_blocker, spec_blocker

DIGEST = "sha256:" + "ef" * 32


def spec(uri: str, secret: str | None = None) -> ModelDeploymentSpec:
    model = {"name": "m", "version": "1", "uri": uri, "format": "onnx", "digest": DIGEST}
    if secret:
        model["credentialsSecret"] = secret
    return ModelDeploymentSpec.model_validate({"model": model})


def lookup(*existing: str):
    async def found(name: str) -> bool:
        return name in existing

    return found


async def test_missing_secret_blocks_naming_the_field() -> None:
    blocker = await find_blocker(spec("s3://b/m.onnx", "creds"), "ns", lookup(), lookup())
    assert blocker is not None
    assert (blocker.reason, blocker.field) == ("SecretNotFound", "spec.model.credentialsSecret")
    assert blocker.message.startswith("spec.model.credentialsSecret: Secret 'creds' not found")


async def test_missing_claim_blocks_naming_the_uri() -> None:
    blocker = await find_blocker(spec("pvc://models/a/m.onnx"), "ns", lookup(), lookup())
    assert blocker is not None
    assert (blocker.reason, blocker.field) == ("PersistentVolumeClaimNotFound", "spec.model.uri")
    assert "'models'" in blocker.message


async def test_present_references_do_not_block() -> None:
    assert (
        await find_blocker(spec("s3://b/m.onnx", "creds"), "ns", lookup("creds"), lookup()) is None
    )
    assert await find_blocker(spec("pvc://models/m.onnx"), "ns", lookup(), lookup("models")) is None
    assert await find_blocker(spec("https://h/m.onnx"), "ns", lookup(), lookup()) is None


def test_unparseable_spec_blocks_with_its_path() -> None:
    try:
        ModelDeploymentSpec.model_validate({"model": {"name": "m"}})
    except ValidationError as error:
        blocker = spec_blocker(error)
    assert blocker.reason == "InvalidSpec"
    assert blocker.field.startswith("spec.model.")
    assert blocker.message.startswith(blocker.field)
