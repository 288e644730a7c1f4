"""Writes console-script wrappers with a `#!/usr/bin/python3` shebang (the image's interpreter).

`pip install --target` writes scripts whose shebang names the build host's Python, so the images
get their own: `wrappers.py BIN --site DIR` for every console script of the distributions
installed in DIR (such as `kopf`), `wrappers.py BIN --package NAME` for the pyproject.toml
scripts whose code lives in package NAME (such as `modelops-serve`).
"""

from __future__ import annotations

import argparse
import configparser
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The entry point runs only as the main program, as in pip's own scripts: multiprocessing's spawn
# start method runs the parent's main file again in each child (as __mp_main__), and a wrapper
# that called the entry point there would start the whole program again (MLServer's workers).
TEMPLATE = (
    "#!/usr/bin/python3\nimport sys\n\nfrom {module} import {name}\n\n"
    'if __name__ == "__main__":\n    sys.exit({call}())\n'
)


def site_scripts(site: Path) -> dict[str, str]:
    scripts: dict[str, str] = {}
    for entry_points in sorted(site.glob("*.dist-info/entry_points.txt")):
        parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # names keep their case
        parser.read(entry_points)
        if parser.has_section("console_scripts"):
            scripts.update(parser.items("console_scripts"))
    return scripts


def project_scripts(package: str) -> dict[str, str]:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return {name: target for name, target in scripts.items() if target.startswith(package + ".")}


def write_wrappers(bin_dir: Path, scripts: dict[str, str]) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, target in sorted(scripts.items()):
        module, _, call = target.split("[")[0].strip().partition(":")  # "[extra]" needs nothing
        call = call.strip()
        path = bin_dir / name
        path.write_text(TEMPLATE.format(module=module, name=call.split(".")[0], call=call))
        path.chmod(0o755)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bin_dir", type=Path)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--site", type=Path, help="a directory filled by pip install --target")
    source.add_argument("--package", help="an import package of this project")
    args = parser.parse_args()
    scripts = site_scripts(args.site) if args.site else project_scripts(args.package)
    if not scripts:
        parser.error("no console scripts found")
    write_wrappers(args.bin_dir, scripts)
    print(" ".join(sorted(scripts)))


if __name__ == "__main__":
    main()
