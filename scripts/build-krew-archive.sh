#!/usr/bin/env bash
# Build the krew archive of `kubectl modelops` for linux/amd64 and write its manifest.
#
#   scripts/build-krew-archive.sh                  # dist/krew/*.tar.gz + plugins/krew/modelops.yaml
#   RELEASE_BASE_URL=https://… scripts/build-krew-archive.sh
#   kubectl krew install --manifest=plugins/krew/modelops.yaml \
#       --archive=dist/krew/kubectl-modelops_v0.1.0_linux_amd64.tar.gz   # try it before a release
#
# What is in it, and why (docs/cli.md, "Installing"): the plugin's own sources (pure Python) and
# its libraries installed with `pip install --target`, once per CPython version (3.11, 3.12,
# 3.13), because two of them are compiled (msgspec, used by lightkube for kubeconfigs, and
# PyYAML's C loader). A zipapp cannot import compiled modules, so the archive is a directory with
# a small sh launcher that picks the library tree matching the `python3` it finds. The user needs
# python3 ≥ 3.11 on PATH (or MODELOPS_PYTHON); nothing is downloaded when the plugin runs.
# `card` and `dashboard` need the full `modelops` package and are not in this archive.
#
# The archive is reproducible (sorted names, fixed times and owners, gzip without a name or
# time), so the sha256 in the manifest identifies the build. Needs: pip (an index it may use),
# tar, gzip, sha256sum.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
[ -x "$python" ] || python=$(command -v python3)
version=$("$python" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$repo/pyproject.toml")
base_url=${RELEASE_BASE_URL:-https://github.com/modelops/modelops/releases/download/v$version}
pythons=${PYTHON_VERSIONS:-3.11 3.12 3.13}
platform=manylinux2014_x86_64
name=kubectl-modelops_v${version}_linux_amd64
out=$repo/dist/krew
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/kubectl-modelops

# The plugin's libraries at the versions the tests ran with.
requirements=$("$python" - <<'PY'
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in ("lightkube", "PyYAML")))
PY
)

mkdir -p "$root/lib/common/modelops_operator" "$out"
for minor in $pythons; do
    tag=cp${minor/./}
    echo "libraries for CPython $minor: $requirements"
    "$python" -m pip install --quiet --no-compile --disable-pip-version-check \
        --target "$root/lib/$tag" --platform "$platform" --python-version "$minor" \
        --implementation cp --only-binary=:all: $requirements
    rm -rf "$root/lib/$tag/bin"
done

# Only what the plugin imports: the package marker, the shared names, the plugin itself and
# the historical module name.
package=$repo/operator/modelops_operator
cp "$package/__init__.py" "$package/constants.py" "$package/kubectl_plugin.py" \
    "$root/lib/common/modelops_operator/"
mkdir -p "$root/lib/common/modelops_operator/plugin"
cp "$package"/plugin/*.py "$root/lib/common/modelops_operator/plugin/"
# So `kubectl modelops version` reports the release (importlib.metadata reads this).
metadata=$root/lib/common/modelops-$version.dist-info
mkdir -p "$metadata"
printf 'Metadata-Version: 2.1\nName: modelops\nVersion: %s\n' "$version" >"$metadata/METADATA"

launcher() {  # $1: file name, $2: the Python call that runs it
    cat >"$root/$1" <<SH
#!/bin/sh
# $1 from the krew archive: the libraries built for this python3, then the plugin.
# -E and -s keep PYTHONPATH and user site-packages out; the path is set inside the
# interpreter so that programs the plugin starts (kubeconfig exec credentials) never inherit it.
here=\$(dirname "\$(readlink -f "\$0")")
python=\${MODELOPS_PYTHON:-python3}
tag=\$("\$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])' 2>/dev/null) || {
    echo "error: $1 needs python3 (3.11 to 3.13); install it or set MODELOPS_PYTHON" >&2
    exit 1
}
if [ ! -d "\$here/lib/\$tag" ]; then
    echo "error: this build has no libraries for \$tag (it has: \$(cd "\$here/lib" && echo cp*)); set MODELOPS_PYTHON to one of those" >&2
    exit 1
fi
exec "\$python" -E -s -c "import sys; sys.path[:0] = [sys.argv.pop(1), sys.argv.pop(1)]; $2" "\$here/lib/common" "\$here/lib/\$tag" "\$@"
SH
    chmod 0755 "$root/$1"
}
launcher kubectl-modelops \
    "from modelops_operator.plugin.main import main; sys.exit(main())"
launcher kubectl_complete-modelops \
    "from modelops_operator.plugin.completion import kubectl_complete_main; sys.exit(kubectl_complete_main())"
cp "$repo/README.md" "$root/README.md"

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=u+w,go-w \
    -C "$work" -cf - kubectl-modelops | gzip -n -9 >"$out/$name.tar.gz"
sha=$(sha256sum "$out/$name.tar.gz" | cut -d' ' -f1)
echo "$out/$name.tar.gz sha256 $sha"

cat >"$repo/plugins/krew/modelops.yaml" <<YAML
# Written by scripts/build-krew-archive.sh: edit the script, not this file.
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: modelops
spec:
  version: v$version
  homepage: ${base_url%/releases/*}
  shortDescription: Gate, approve and audit ML model rollouts of the modelops operator
  description: |
    Works with the modelops operator's ModelDeployments and ChampionChallengers: list them,
    watch a challenge's gates until it settles, approve, promote or roll back in your own name
    (checked by the API server), pause and resume, and read or export the lineage records of
    every promotion and rollback.
  caveats: |
    Needs python3 3.11, 3.12 or 3.13 on PATH (or MODELOPS_PYTHON pointing at one).
    For \`kubectl modelops <TAB>\` (kubectl >= 1.26), put kubectl_complete-modelops on PATH:
      ln -s "\$HOME/.krew/store/modelops/v$version/kubectl-modelops/kubectl_complete-modelops" \\
        "\$HOME/.krew/bin/"
    \`card\` and \`dashboard\` need the full package: pip install modelops.
  platforms:
    - selector:
        matchLabels:
          os: linux
          arch: amd64
      uri: $base_url/$name.tar.gz
      sha256: $sha
      files:
        - from: kubectl-modelops/*
          to: kubectl-modelops
      bin: kubectl-modelops/kubectl-modelops
YAML
echo "wrote plugins/krew/modelops.yaml"
