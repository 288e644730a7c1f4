"""Writes images/requirements/{operator,serving,mlserver}.txt: every Python distribution each image
installs, pinned to one exact version and the sha256 of the one wheel pip picked for the images'
platform.

The product images' dependency lists come from pyproject.toml (operator: the base dependencies;
serving: the base dependencies plus the `serving`, `sklearn`, `onnx`, `xgboost` and `lightgbm`
extras). Third-party
images list their requirements here instead (IMAGE_REQUIREMENTS: mlserver, MLServer with its
scikit-learn runtime, which the project does not depend on). pip resolves them itself
(`pip install --dry-run --report`) for CPython 3.11 on manylinux x86_64, the platform of
Debian 12's python3, so the lock needs no tool besides pip. Run it when pyproject.toml's
dependencies or IMAGE_REQUIREMENTS change: `python3 images/lock.py [IMAGE...]`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IMAGE_EXTRAS = {"operator": [], "serving": ["serving", "sklearn", "onnx", "xgboost", "lightgbm"]}
# Images of third-party software, locked from these requirements rather than pyproject.toml.
IMAGE_REQUIREMENTS = {
    # uvloop 0.22+ breaks MLServer 1.7.1's parallel workers (get_event_loop without a loop).
    "mlserver": ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22"],
}
IMAGES = [*IMAGE_EXTRAS, *IMAGE_REQUIREMENTS]
PYTHON_VERSION = "3.11"
# pip expands only manylinux2014/2010 by itself; glibc 2.36 is Debian 12's.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)] + [
    "manylinux2014_x86_64"
]


def target_args() -> list[str]:
    """The pip options that select wheels for the images' interpreter (shared with build.sh)."""
    args = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    args += ["--abi", "cp" + PYTHON_VERSION.replace(".", "")]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    return args


def image_requirements(pyproject: dict, image: str) -> list[str]:
    if image in IMAGE_REQUIREMENTS:
        return list(IMAGE_REQUIREMENTS[image])
    project = pyproject["project"]
    requirements = list(project["dependencies"])
    for extra in IMAGE_EXTRAS[image]:
        requirements += project["optional-dependencies"][extra]
    return requirements


def resolve(requirements: list[str]) -> list[dict]:
    """The distributions pip would install for these requirements, from its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        # --isolated: no user or site pip configuration (such as local find-links) may change
        # what is locked; the host's CA bundle is still needed to reach the index.
        cert = os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
        command = [sys.executable, "-m", "pip", "--isolated", "--cert", cert, "install"]
        command += ["--dry-run", "--ignore-installed", "--quiet", "--report", str(report)]
        command += ["--target", str(Path(tmp) / "target")]  # pip < 23.3 wants it with --platform
        subprocess.run(command + target_args() + requirements, check=True)
        return json.loads(report.read_text())["install"]


def lock_text(image: str, requirements: list[str], installs: list[dict]) -> str:
    lines = [
        f"# The {image} image's Python distributions, written by images/lock.py for CPython",
        f"# {PYTHON_VERSION} on manylinux x86_64 (pip install --require-hashes --no-deps -r this)",
        "# from these requirements in "
        + ("images/lock.py:" if image in IMAGE_REQUIREMENTS else "pyproject.toml:"),
    ]
    lines += [f"#   {requirement}" for requirement in requirements]
    pins = []
    for item in installs:
        name = re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower()  # PEP 503 form
        digest = item["download_info"]["archive_info"]["hashes"]["sha256"]
        pins.append(f"{name}=={item['metadata']['version']} \\\n    --hash=sha256:{digest}")
    lines += sorted(pins)
    return "\n".join(lines) + "\n"


def main() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for image in sys.argv[1:] or IMAGES:
        if image not in IMAGES:
            sys.exit(f"unknown image: {image} ({' '.join(IMAGES)})")
        requirements = image_requirements(pyproject, image)
        path = HERE / "requirements" / f"{image}.txt"
        path.write_text(lock_text(image, requirements, resolve(requirements)))
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--pip-target-args"]:
        print(" ".join(target_args()))
    else:
        main()
