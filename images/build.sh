#!/usr/bin/env bash
# `make images`: builds the project's OCI images without a container engine or a registry, into
# dist/images/<name>.tar (docker-archive: for `docker load`, `kind load image-archive`,
# `ctr images import`). Debian base from mmdebstrap, Python packages from the committed lock
# files with pip --target, layers as reproducible tars, assembled with umoci, exported with skopeo.
# Slow inputs (Debian root filesystems, dependency layers, compressed blobs) are cached outside
# the repo, keyed by what made them; docs/images.md explains the images and the recipe.
# Usage: images/build.sh [operator serving mlserver prometheus pause coredns]   (default: all)
set -euo pipefail
shopt -s inherit_errexit  # the steps run in $(...) and must stop on errors too
renice -n 10 -p $$ >/dev/null  # share the CPU politely: everything below inherits this

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
devcache=${MODELOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelops/devcluster}
cache=${MODELOPS_IMAGES_CACHE:-$(dirname "$devcache")/images}
out=${IMAGES_OUT:-$here/dist/images}
layout=$cache/oci
# File times in every layer, and the creation time of the images whose inputs are not this repo.
LAYER_EPOCH=1747699200  # 2025-05-20T00:00:00Z
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
revision=$(git rev-parse HEAD)
[ -z "$(git status --porcelain -- operator/modelops_operator serving/modelops_serving dataplane pyproject.toml images)" ] \
  || revision="$revision-dirty"
app_epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
source_url=https://modelops.io  # the chart's home
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(operator serving mlserver prometheus pause coredns)

step() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
sha() { sha256sum | cut -c1-16; }

ensure_tools() {
  local missing=() cmd
  declare -A pkg=([mmdebstrap]=mmdebstrap [umoci]=umoci [skopeo]=skopeo)
  for cmd in "${!pkg[@]}"; do command -v "$cmd" >/dev/null || missing+=("${pkg[$cmd]}"); done
  [ ${#missing[@]} -eq 0 ] && return
  step "installing Debian packages: ${missing[*]}"
  local sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A Debian bookworm root filesystem as a tar: the Essential set plus $2 (no apt, no docs, man
# pages or locales; copyright files stay). Cached by its recipe. Echoes the tar's path.
rootfs() {
  local name=$1 include=$2
  local opts=(--variant=essential --include="$include" --format=tar
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*'
    --customize-hook="$here/images/rootfs-hook.sh")
  local key; key=$(cat <(declare -f rootfs) images/rootfs-hook.sh <(echo "$LAYER_EPOCH $include") | sha)
  local tar=$cache/rootfs/$name-$key.tar
  if [ ! -s "$tar" ]; then
    step "debootstrapping the $name root filesystem (bookworm + $include; ~1-2 min)" >&2
    rm -rf "$cache/rootfs/$name"-* && mkdir -p "$cache/rootfs"
    # An empty /dev (the runtime mounts its own), no device nodes in the layer.
    SOURCE_DATE_EPOCH=$LAYER_EPOCH mmdebstrap --quiet "${opts[@]}" bookworm - \
      | mmtarfilter --path-exclude='/dev/*' >"$tar.tmp"
    mv "$tar.tmp" "$tar"
  fi
  # The package versions used, recorded in the repo: a change shows in `git diff`.
  local record=images/debian/$name.txt
  { echo "# Debian packages in the $name root filesystem (written by images/build.sh)."
    tar -xOf "$tar" ./var/lib/dpkg/status | awk '/^Package:/ {p = $2} /^Version:/ {print p "=" $2}' | sort
  } >"$record.tmp"
  if cmp -s "$record.tmp" "$record"; then rm -f "$record.tmp"; else
    [ ! -f "$record" ] || step "NOTE: $record changed (the Debian archive moved on): commit it" >&2
    mv "$record.tmp" "$record"
  fi
  echo "$tar"
}

# Reproducible: sorted names, one mtime, numeric owner 0, no umask leaks; the (empty)
# directories $3... are appended owned by the images' user.
layer_tar() {
  local flags=(--sort=name --format=gnu --numeric-owner --mtime="@$LAYER_EPOCH" --mode='u+rw,go+rX,go-w')
  local dir exclude=(); for dir in "${@:3}"; do exclude+=(--exclude="./$dir"); done
  tar "${flags[@]}" --owner=0 --group=0 "${exclude[@]}" -C "$1" -cf "$2" .
  for dir in "${@:3}"; do
    tar "${flags[@]}" --owner=65532 --group=65532 --no-recursion -C "$1" -rf "$2" "./$dir"
  done
}

keyed_tar() {  # layer_tar of directory $1 as $cache/layers/$2-<content hash>.tar; echoes the path
  mkdir -p "$cache/layers" && layer_tar "$1" "$cache/layers/$2.tar.tmp" "${@:3}" && rm -rf "$1"
  local key; key=$(sha <"$cache/layers/$2.tar.tmp")
  if [ -s "$cache/layers/$2-$key.tar" ]; then rm -f "$cache/layers/$2.tar.tmp"; else
    rm -f "$cache/layers/$2"-*.tar && mv "$cache/layers/$2.tar.tmp" "$cache/layers/$2-$key.tar"
  fi
  echo "$cache/layers/$2-$key.tar"
}

# .pyc for the Python files under stage $2 (at $3 in the image), made by the python3 of root
# filesystem $1 (so the host's Python does not matter), never re-validated against their
# source: fine on a read-only root filesystem.
compile() {
  local dir=${1%.tar}.d
  if [ ! -x "$dir/usr/bin/python3" ]; then
    rm -rf "$dir" "$dir.tmp" && mkdir -p "$dir.tmp" && tar -xf "$1" -C "$dir.tmp" && mv "$dir.tmp" "$dir"
  fi
  # shellcheck disable=SC2016  # expanded by the inner shell
  unshare --map-root-user --mount sh -ec 'r=$2; mount --bind "$1" "$r/mnt"; shift 2; exec chroot "$r" "$@"' - \
    "$2" "$dir" /usr/bin/python3 -m compileall -q -j 1 --invalidation-mode unchecked-hash -d "$3" "/mnt$3" >/dev/null
}

# The Python distributions of requirements/$1.txt as /opt/modelops/lib, with wrappers for their
# console scripts (such as kopf), compiled by the python3 of base $2. Cached by the lock file.
deps_layer() {
  local image=$1 base=$2 lock=images/requirements/$1.txt
  local key; key=$(cat "$lock" images/lock.py images/wrappers.py <(declare -f deps_layer compile layer_tar) \
    <(basename "$base") | sha)
  local tar=$cache/layers/deps-$image-$key.tar
  if [ ! -s "$tar" ]; then
    step "installing $image's Python packages from $lock" >&2
    local stage; stage=$(mktemp -d) && mkdir -p "$cache/layers"
    # --isolated: only the lock decides (no local find-links); the host's CA bundle reaches the index.
    # shellcheck disable=SC2046
    python3 -m pip --isolated --disable-pip-version-check --cert "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" \
      install --quiet --root-user-action=ignore \
      --no-deps --require-hashes --no-compile --target "$stage/opt/modelops/lib" -r "$lock" \
      $(python3 images/lock.py --pip-target-args) >&2
    rm -rf "$stage/opt/modelops/lib/bin"
    python3 images/wrappers.py "$stage/usr/local/bin" --site "$stage/opt/modelops/lib" >/dev/null
    compile "$base" "$stage" /opt/modelops/lib
    layer_tar "$stage" "$tar.tmp" && rm -rf "$stage" "$cache/layers/deps-$image"-*.tar && mv "$tar.tmp" "$tar"
  fi
  echo "$tar"
}

# This project's package $2 (tracked and new files, not ignored ones) and its commands.
# Echoes the path of the layer tar (as the other steps).
app_layer() {
  local image=$1 package=$2 base=$3 stage f; stage=$(mktemp -d)
  local src=${package#modelops_}/$package  # operator/modelops_operator, serving/modelops_serving
  git ls-files --cached --others --exclude-standard -- "$src" | while read -r f; do
    [ ! -f "$f" ] || install -D -m 0644 "$f" "$stage/opt/modelops/app/${f#*/}"
  done
  python3 images/wrappers.py "$stage/usr/local/bin" --package "$package" >/dev/null
  compile "$base" "$stage" /opt/modelops/app
  if [ "$image" = serving ]; then  # the examples' models, for file:// URIs (docs/quickstart.md)
    install -D -m 0644 -t "$stage/usr/share/modelops/models" examples/models/*
  fi
  keyed_tar "$stage" "app-$image"
}

# The data plane (dataplane/: one static Go binary, run as modelops-sidecar or modelops-router
# by the name it is called by) in /usr/local/bin. Reproducible: no paths, VCS stamp or build id
# in the binary. Echoes the path of the layer tar (as the other steps).
dataplane_layer() {
  local stage; stage=$(mktemp -d)
  GOOS=linux GOARCH=amd64 bash dataplane/build.sh "$stage/usr/local/bin/modelops-proxy" \
    -s -w -buildid= >&2
  ln -s modelops-proxy "$stage/usr/local/bin/modelops-sidecar"
  ln -s modelops-proxy "$stage/usr/local/bin/modelops-router"
  keyed_tar "$stage" dataplane
}

# Tags "$1-final-<key>" in the cache's layout: the layer tars $3... on an empty image, then
# `umoci config` with the options in the array named $2. Steps whose tag exists are skipped.
assemble() {
  local name=$1 tag=empty key="" layer; local -n config=$2; shift 2
  umoci ls --layout "$layout" | grep -qx empty || umoci new --image "$layout:empty"
  for layer in "$@"; do  # a layer tar's name carries the hash of what made it
    key=$(printf '%s %s %s' "$key" "$(basename "$layer")" "$(stat -c %s "$layer")" | sha)
    if ! umoci ls --layout "$layout" | grep -qx "$name-$key"; then
      umoci raw add-layer --image "$layout:$tag" --tag "$name-$key" --history.created "$(iso "$LAYER_EPOCH")" \
        --history.created_by "images/build.sh: $(basename "$layer" .tar | sed 's/-[0-9a-f]*$//')" "$layer"
    fi
    tag=$name-$key && used_tags+=("$tag")
  done
  key=$(printf '%s\n' "$tag" "${config[@]}" | sha)
  umoci ls --layout "$layout" | grep -qx "$name-final-$key" \
    || umoci config --image "$layout:$tag" --tag "$name-final-$key" --no-history "${config[@]}"
  final_tag=$name-final-$key && used_tags+=("$final_tag")
}

export_image() {  # $1 file name, $2 reference
  local stamp=$cache/stamps/$1
  if [ -s "$out/$1.tar" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$final_tag $2 $(stat -c %s "$out/$1.tar")" ]; then
    step "$2 unchanged"
  else
    mkdir -p "$out" "$cache/stamps" && rm -f "$out/$1.tar.tmp"
    skopeo copy --quiet "oci:$layout:$final_tag" "docker-archive:$out/$1.tar.tmp:$2"
    mv "$out/$1.tar.tmp" "$out/$1.tar"
    echo "$final_tag $2 $(stat -c %s "$out/$1.tar")" >"$stamp"
    step "$2 written"
  fi
}

labels() {  # title, description, version, source, licenses, created epoch[, revision]
  local i l=(title "$1" description "$2" version "$3" source "$4" licenses "$5" created "$(iso "$6")")
  if [ -n "${7:-}" ]; then l+=(revision "$7"); fi
  for ((i = 0; i < ${#l[@]}; i += 2)); do
    printf -- '--config.label=org.opencontainers.image.%s=%s\n' "${l[i]}" "${l[i+1]}"
  done
}

# manylinux wheels expect libstdc++; LightGBM links the system OpenMP (libgomp1)
python_base() { rootfs python python3,ca-certificates,libstdc++6,libgomp1; }

python_image() {  # $1 image (operator|serving), $2 package, $3 description, then the command
  local image=$1 package=$2 description=$3 arg base deps app go_layers=(); shift 3
  base=$(python_base)
  deps=$(deps_layer "$image" "$base") && app=$(app_layer "$image" "$package" "$base")
  if [ "$image" = serving ]; then go_layers=("$(dataplane_layer)"); fi
  local cfg=(--created "$(iso "$app_epoch")" --config.user 65532:65532 --config.workingdir /home/nonroot
    --config.env PATH=/usr/local/bin:/usr/bin:/bin --config.env PYTHONPATH=/opt/modelops/app:/opt/modelops/lib
    --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1 --config.env LANG=C.UTF-8)
  for arg in "$@"; do cfg+=(--config.cmd "$arg"); done
  mapfile -t -O ${#cfg[@]} cfg < <(labels "modelops-$image" "$description" "$version" "$source_url" \
    Apache-2.0 "$app_epoch" "$revision")
  assemble "$image" cfg "$base" "$deps" "$app" "${go_layers[@]}"
  export_image "modelops-$image" "modelops/modelops-$image:$version"
}

# MLServer with its scikit-learn runtime, a V2 model server to run as champion or challenger
# beside modelops-serve: the python base and the layer of requirements/mlserver.txt, no app layer.
# Its version is the lock's. Read-only root: what it writes (the metrics and environments
# directories of parallel workers) goes to /tmp, its working directory; docs/images.md.
mlserver_image() {
  local base deps version
  version=$(sed -n 's/^mlserver==\([^ ]*\) .*/\1/p' images/requirements/mlserver.txt)
  base=$(python_base) && deps=$(deps_layer mlserver "$base")
  local cfg=(--created "$(iso "$LAYER_EPOCH")" --config.user 65532:65532 --config.workingdir /tmp
    --config.exposedports 8080/tcp --config.exposedports 8081/tcp --config.exposedports 8082/tcp
    --config.env PATH=/usr/local/bin:/usr/bin:/bin --config.env PYTHONPATH=/opt/modelops/lib
    --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1 --config.env LANG=C.UTF-8
    --config.env MLSERVER_METRICS_DIR=/tmp/mlserver-metrics
    --config.env MLSERVER_ENVIRONMENTS_DIR=/tmp/mlserver-envs
    --config.cmd mlserver --config.cmd start --config.cmd /mnt/models)
  mapfile -t -O ${#cfg[@]} cfg < <(labels mlserver "MLServer with its scikit-learn runtime" "$version" \
    https://github.com/SeldonIO/MLServer Apache-2.0 "$LAYER_EPOCH")
  assemble mlserver cfg "$base" "$deps"
  export_image mlserver "modelops.dev/mlserver:$version"
}

# A scratch image with the static binary $1 of the dev cluster's build as /$2, plus the files
# staged by the function named $7 (if any; it prints the directories the user owns).
# $3 tag, $4 description, $5 source, $6 the name of an array of more `umoci config` options.
static_image() {
  local binary=$devcache/bin/$1 stage layer
  if [ ! -x "$binary" ]; then
    step "SKIPPED $1: $binary is missing (make cluster-build makes it)"; skipped+=("$1"); return
  fi
  stage=$(mktemp -d) && install -D -m 0755 "$binary" "$stage/$2"
  local owned=(); if [ -n "${7:-}" ]; then mapfile -t owned < <("$7" "$stage"); fi
  layer=$(keyed_tar "$stage" "$1" "${owned[@]}")
  local -n extra=$6
  local cfg=(--created "$(iso "$LAYER_EPOCH")" --config.entrypoint "/$2" "${extra[@]}")
  mapfile -t -O ${#cfg[@]} cfg < <(labels "$1" "$4" "$3" "$5" Apache-2.0 "$LAYER_EPOCH")
  assemble "$1" cfg "$layer"
  export_image "$1" "modelops.dev/$1:$3"
}

prometheus_files() {  # a default configuration (pods mount their own) and the data directory
  install -D -m 0644 images/prometheus.yml "$1/etc/prometheus/prometheus.yml"
  mkdir -p "$1/prometheus" && echo prometheus
}

# Prometheus as the dev cluster builds it (with Kubernetes service discovery, which Debian's
# package leaves out), laid out like the upstream image.
prometheus_image() {
  local version; version=$("$devcache/bin/prometheus" --version 2>/dev/null | awk 'NR == 1 {print $3}') || true
  local cfg=(--config.user 65532:65532 --config.workingdir /prometheus --config.exposedports 9090/tcp
    --config.cmd --config.file=/etc/prometheus/prometheus.yml --config.cmd --storage.tsdb.path=/prometheus)
  static_image prometheus bin/prometheus "$version" "Prometheus, static, Kubernetes discovery only" \
    https://github.com/prometheus/prometheus cfg prometheus_files
}

pause_image() {  # tagged <pause version>-<kubernetes version>, as kubeadm pins the upstream one
  local makefile pause_tag
  makefile=$(go env GOMODCACHE 2>/dev/null)/k8s.io/kubernetes@${K8S_VERSION:-}/build/pause/Makefile
  pause_tag=$(awk '$1 == "TAG" && $2 == "?=" {print $3}' "$makefile" 2>/dev/null || true)
  if [ -z "$pause_tag" ]; then
    step "SKIPPED pause: cannot read its version from $makefile"; skipped+=(pause); return
  fi
  local cfg=(--config.user 65535:65535)  # as the upstream image
  static_image pause pause "$pause_tag-$K8S_VERSION" "Kubernetes sandbox (pause) program, static" \
    https://github.com/kubernetes/kubernetes cfg
}

coredns_image() {
  if [ -z "${COREDNS_VERSION:-}" ]; then
    step "SKIPPED coredns: no version in tools/coredns/go.mod"; skipped+=(coredns); return
  fi
  local cfg=(--config.user 65532:65532)  # as the upstream image: it listens on a port >= 1024
  static_image coredns coredns "${COREDNS_VERSION#v}" "CoreDNS, static" https://github.com/coredns/coredns cfg
}

ensure_tools
mkdir -p "$cache"
exec 9>"$cache/.lock" && flock 9  # one build at a time per cache
[ -f "$layout/index.json" ] || umoci init --layout "$layout"
started=$(date +%s) skipped=() used_tags=(empty)
# shellcheck source=scripts/devcluster-versions.sh
source scripts/devcluster-versions.sh || true  # a tools module that is not there yet is skipped
for image in "${wanted[@]}"; do
  case $image in
    operator) python_image operator modelops_operator "The modelops Kubernetes operator (kopf)" \
                kopf run --standalone --all-namespaces -m modelops_operator.main ;;
    serving) python_image serving modelops_serving \
               "modelops model server, metrics sidecar, router and model fetcher" modelops-serve ;;
    mlserver) mlserver_image ;;
    prometheus) prometheus_image ;;
    pause) pause_image ;;
    coredns) coredns_image ;;
    *) echo "unknown image: $image (operator serving mlserver prometheus pause coredns)" >&2; exit 2 ;;
  esac
done

# The cache keeps what this build used: older tags of the images built go, then their blobs
# (gc reads every blob, so it runs only when there is something to collect).
stale=()
for t in $(umoci ls --layout "$layout"); do
  printf '%s\n' "${wanted[@]}" | grep -qx "${t%%-*}" || continue
  printf '%s\n' "${used_tags[@]}" | grep -qx "$t" || stale+=("$t")
done
for t in "${stale[@]}"; do umoci rm --image "$layout:$t"; done
[ ${#stale[@]} -eq 0 ] || umoci gc --layout "$layout"

step "done in $(( $(date +%s) - started )) s; the images in ${out#"$here"/}:"
# Every archive in the output directory that this cache wrote (and nobody changed since).
for stamp in "$cache"/stamps/*; do
  read -r tag ref size <"$stamp"
  [ "$(stat -c %s "$out/${stamp##*/}.tar" 2>/dev/null)" != "$size" ] || echo "${stamp##*/}|$ref|$tag"
done | python3 images/summary.py "$layout" "$out" | tee "$out/images.txt"
if [ ${#skipped[@]} -gt 0 ]; then step "not built: ${skipped[*]}"; fi
