"""One line per image archive: file, reference, image ID (config digest), manifest digest, sizes.

Reads "file|reference|tag" lines on stdin (from images/build.sh); LAYOUT is the OCI layout the
tags live in, OUT the directory of the archives. The manifest digest is the OCI manifest's (the
one `skopeo copy oci:…` pushes unchanged); the image ID is what `docker images` and
`crictl images` show, whatever the archive format.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REF_NAME = "org.opencontainers.image.ref.name"


def blob(layout: Path, digest: str) -> dict:
    algorithm, hexdigest = digest.split(":")
    return json.loads((layout / "blobs" / algorithm / hexdigest).read_text())


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size < 1e7 else f"{size / 1e6:.0f} MB"


def main() -> None:
    layout, out = Path(sys.argv[1]), Path(sys.argv[2])
    index = json.loads((layout / "index.json").read_text())
    manifests = {m["annotations"][REF_NAME]: m["digest"] for m in index["manifests"]}
    for line in sys.stdin.read().split():
        name, reference, tag = line.split("|")
        if tag not in manifests:  # another build with this cache has moved on since
            print(f"{name}.tar  {reference}  (not in {layout} any more)")
            continue
        manifest = blob(layout, manifests[tag])
        compressed = sum(layer["size"] for layer in manifest["layers"])
        archive = (out / f"{name}.tar").stat().st_size
        print(
            f"{name}.tar  {reference}  id {manifest['config']['digest']}  "
            f"manifest {manifests[tag]}  {megabytes(archive)} ({megabytes(compressed)} gzipped)"
        )


if __name__ == "__main__":
    main()
