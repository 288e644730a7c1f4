"""The image recipe's inputs agree with each other: lock files, pyproject.toml, Containerfiles,
images/build.sh and the names the operator uses (no image is built here; see docs/images.md)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from modelops_operator.constants import DEFAULT_SERVING_IMAGE

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([a-z0-9-]+)==(\S+) \\\n    --hash=sha256:([0-9a-f]{64})$", re.MULTILINE)


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"images_{name}", IMAGES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock, wrappers = load("lock"), load("wrappers")


def pins(image: str) -> dict[str, Version]:
    text = (IMAGES / "requirements" / f"{image}.txt").read_text()
    entries = [e for e in re.split(r"\n(?=[^ ])", text) if e and not e.startswith("#")]
    found = {m[0]: Version(m[1]) for m in PIN.findall(text)}
    assert len(found) == len(entries), "every entry is name==version with exactly one sha256"
    return found


@pytest.mark.parametrize("image", ["operator", "serving", "mlserver"])
def test_the_lock_pins_a_version_allowed_by_every_requirement(image: str) -> None:
    locked = pins(image)
    for line in lock.image_requirements(PYPROJECT, image):
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not locked: run python3 images/lock.py"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{name}=={locked[name]} no longer satisfies {line}: run python3 images/lock.py"
        )


@pytest.mark.parametrize("image", ["operator", "serving", "mlserver"])
def test_lock_py_writes_each_lock_file_as_committed(image: str) -> None:
    """The lock's text is a function of its requirements and pins (so adding an image's own
    requirement list left the product images' lock files as they were)."""
    text = (IMAGES / "requirements" / f"{image}.txt").read_text()
    installs = [
        {
            "metadata": {"name": name, "version": version},
            "download_info": {"archive_info": {"hashes": {"sha256": digest}}},
        }
        for name, version, digest in PIN.findall(text)
    ]
    requirements = lock.image_requirements(PYPROJECT, image)
    assert lock.lock_text(image, requirements, installs) == text
    source = "images/lock.py" if image in lock.IMAGE_REQUIREMENTS else "pyproject.toml"
    assert f"# from these requirements in {source}:\n" in text


def test_the_mlserver_lock_is_mlserver_with_its_sklearn_runtime_not_the_project() -> None:
    locked = pins("mlserver")
    assert locked["mlserver"] == locked["mlserver-sklearn"] == Version("1.7.1")
    assert locked["uvloop"] < Version("0.22"), "0.22 breaks MLServer 1.7.1's parallel workers"
    assert {"scikit-learn", "joblib"} <= set(locked)
    assert not {"kopf", "lightkube", "skops", "onnxruntime"} & set(locked)
    assert set(lock.IMAGES) == {"operator", "serving", "mlserver"}


def test_the_serving_lock_adds_the_model_formats_and_the_http_stack_to_the_operators() -> None:
    operator, serving = pins("operator"), pins("serving")
    assert set(operator) <= set(serving)
    assert {"scikit-learn", "skops", "onnxruntime", "aiohttp", "uvloop"} <= set(serving)
    assert "onnxruntime" not in operator


def containerfile(image: str) -> str:
    return (IMAGES / f"{image}.Containerfile").read_text()


def build_command(image: str) -> list[str]:
    """The command images/build.sh gives a product image (after its quoted description)."""
    script = (IMAGES / "build.sh").read_text()
    call = re.search(rf"^ +{image}\) python_image {image} \S+ (.*?) ;;$", script, re.S | re.M)
    assert call, f"no python_image call for {image} in images/build.sh"
    return re.sub(r'^\\?\s*"[^"]*"', "", call[1].strip()).replace("\\\n", " ").split()


@pytest.mark.parametrize("image", ["operator", "serving"])
def test_a_containerfile_builds_what_build_sh_builds(image: str) -> None:
    text = containerfile(image)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd and json.loads(cmd[1]) == build_command(image)
    assert f"images/requirements/{image}.txt" in text and "--require-hashes" in text
    assert f"COPY {image}/modelops_{image} /opt/modelops/app/modelops_{image}" in text
    assert "tools/" not in text, "the dev cluster and the demo are not shipped"
    assert "USER 65532:65532" in text
    assert "PYTHONPATH=/opt/modelops/app:/opt/modelops/lib" in text
    assert f'image.version="{PYPROJECT["project"]["version"]}"' in text


def mlserver_config() -> tuple[list[str], list[str]]:
    """The environment and command images/build.sh gives the mlserver image."""
    script = (IMAGES / "build.sh").read_text()
    body = re.search(r"^mlserver_image\(\) \{$(.*?)^\}$", script, re.S | re.M)
    assert body, "no mlserver_image in images/build.sh"
    return re.findall(r"--config\.env ([^\s)]+)", body[1]), re.findall(
        r"--config\.cmd ([^\s)]+)", body[1]
    )


def test_the_mlserver_containerfile_builds_what_build_sh_builds() -> None:
    text, (env, cmd) = containerfile("mlserver"), mlserver_config()
    containerfile_cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert containerfile_cmd and json.loads(containerfile_cmd[1]) == cmd == [
        "mlserver",
        "start",
        "/mnt/models",
    ]
    env_block = re.search(r"^ENV ((?:.*\\\n)*.*)$", text, re.M)
    assert env_block and sorted(env_block[1].replace("\\\n", " ").split()) == sorted(env)
    assert "PYTHONPATH=/opt/modelops/lib" in env, "no app layer"
    # A read-only root: what MLServer writes (with parallel workers) goes under /tmp.
    assert {
        "MLSERVER_METRICS_DIR=/tmp/mlserver-metrics",
        "MLSERVER_ENVIRONMENTS_DIR=/tmp/mlserver-envs",
    } <= set(env)
    assert "images/requirements/mlserver.txt" in text and "--require-hashes" in text
    assert "USER 65532:65532" in text and "WORKDIR /tmp" in text
    assert f'image.version="{pins("mlserver")["mlserver"]}"' in text
    script = (IMAGES / "build.sh").read_text()
    assert 'export_image mlserver "modelops.dev/mlserver:$version"' in script
    assert re.search(r"^\[ .* \] \|\| wanted=\(.*\bmlserver\b.*\)$", script, re.M), (
        "built by default"
    )


def test_the_operators_default_serving_image_is_the_one_make_images_builds() -> None:
    built = f"modelops/modelops-serving:{PYPROJECT['project']['version']}"
    assert built == DEFAULT_SERVING_IMAGE
    script = (IMAGES / "build.sh").read_text()
    assert 'export_image "modelops-$image" "modelops/modelops-$image:$version"' in script
    assert build_command("operator")[-2:] == ["-m", "modelops_operator.main"]


def test_the_serving_image_has_every_command_the_operator_runs() -> None:
    """The Python programs through wrappers, the Go data plane (dataplane/) as one static
    binary under the names the operator runs."""
    scripts = wrappers.project_scripts("modelops_serving")
    assert {"modelops-serve", "modelops-fetch"} <= set(scripts)
    assert not {"modelops-sidecar", "modelops-router"} & set(scripts), "the Go binary's names"
    assert not any(target.startswith("modelops_operator") for target in scripts.values())
    script = (IMAGES / "build.sh").read_text()
    for name in ("modelops-sidecar", "modelops-router"):
        assert f'ln -s modelops-proxy "$stage/usr/local/bin/{name}"' in script
        assert f"ln -s modelops-proxy /out/{name}" in containerfile("serving")
    # Both builds go through dataplane/build.sh, static and with the same linked-in default.
    build = (IMAGES.parent / "dataplane" / "build.sh").read_text()
    assert "CGO_ENABLED=0" in build and "-X=runtime.godebugDefault=" in build
    assert 'bash dataplane/build.sh "$stage/usr/local/bin/modelops-proxy"' in script
    assert "RUN bash /src/dataplane/build.sh /out/modelops-proxy" in containerfile("serving")
    assert "COPY --from=dataplane /out/ /usr/local/bin/" in containerfile("serving")
    assert 'if [ "$image" = serving ]; then go_layers=("$(dataplane_layer)"); fi' in script


def test_wrappers_use_the_images_python_and_run_their_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "tool-1.0.dist-info").mkdir(parents=True)
    (site / "tool-1.0.dist-info" / "entry_points.txt").write_text(
        "[console_scripts]\nTool-Run = json.tool:main\n\n[other]\nx = y:z\n"
    )
    wrappers.write_wrappers(tmp_path / "bin", wrappers.site_scripts(site))
    wrapper = tmp_path / "bin" / "Tool-Run"
    assert wrapper.read_text().startswith("#!/usr/bin/python3\n")
    assert wrapper.stat().st_mode & 0o777 == 0o755
    done = subprocess.run(
        [sys.executable, str(wrapper)], input='{"b": 1}', capture_output=True, text=True
    )
    assert done.returncode == 0 and json.loads(done.stdout) == {"b": 1}


def test_a_wrapper_run_again_by_a_spawned_child_does_not_start_the_program(tmp_path: Path) -> None:
    """multiprocessing's spawn runs the parent's main file in each child as __mp_main__."""
    site = tmp_path / "site"
    (site / "tool-1.0.dist-info").mkdir(parents=True)
    (site / "tool-1.0.dist-info" / "entry_points.txt").write_text(
        "[console_scripts]\nhello = builtins:print\n"
    )
    wrappers.write_wrappers(tmp_path / "bin", wrappers.site_scripts(site))
    wrapper = str(tmp_path / "bin" / "hello")
    as_child = f"import runpy; runpy.run_path({wrapper!r}, run_name='__mp_main__')"
    for argv, printed in (([wrapper], "\n"), (["-c", as_child], "")):
        done = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout == printed, done.stderr
