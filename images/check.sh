#!/usr/bin/env bash
# Runs commands inside an image archive from dist/images without a container engine: the
# root filesystem unpacked, mounted read-only with a tmpfs on /tmp (as the operator's pods run
# it), the image's environment, as the image's user (as root; rootless runs map to uid 0).
# Usage: images/check.sh ARCHIVE [COMMAND...]   (each COMMAND one shell string; in images
# without a shell, words split on spaces)
# Without commands it runs the product images' commands (--help) and imports, and fails when a
# module had to be compiled from source (a .pyc missing from the image).
set -euo pipefail
archive=$(realpath "$1"); shift
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
rootless=(); [ "$(id -u)" -eq 0 ] || rootless=(--rootless)
skopeo copy --quiet "docker-archive:$archive" "oci:$work/oci:check"
umoci unpack "${rootless[@]}" --image "$work/oci:check" "$work/bundle" >/dev/null
mapfile -t env < <(jq -r '.process.env[]' "$work/bundle/config.json")
user=$(jq -r '"\(.process.user.uid):\(.process.user.gid)"' "$work/bundle/config.json")

commands=("$@")
if [ ${#commands[@]} -eq 0 ]; then
  # The modules import; and `python3 -v` says "code object from /path/x.py" (unquoted) for none.
  no_source() { echo "python3 -c 'import $1' && ! python3 -v -c 'import $1' 2>&1 | grep 'code object from /.*[.]py$'"; }
  # Every extension module finds the libraries it links against (the .libs directories that
  # auditwheel grafts are found through the modules' RPATH, so ldd of those alone cannot tell).
  linked='! find /opt/modelops/lib -name "*.so*" -type f ! -path "*.libs/*" -exec ldd {} + | grep -B9 "not found"'
  # MLServer serves a model given by MLSERVER_MODEL_* alone (no model-settings.json), with a
  # parallel worker (a spawned child process): the model gets ready and a V2 inference answers.
  mlserver_serves=$(cat <<'SH'
python3 - <<'PY'
import joblib
from sklearn.linear_model import LogisticRegression
joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), "/tmp/model.joblib")
PY
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export MLSERVER_HOST=127.0.0.1 MLSERVER_HTTP_PORT="$(port)" MLSERVER_GRPC_PORT="$(port)" MLSERVER_METRICS_PORT="$(port)"
export MLSERVER_MODEL_NAME=check MLSERVER_MODEL_IMPLEMENTATION=mlserver_sklearn.SKLearnModel MLSERVER_MODEL_URI=/tmp/model.joblib
mlserver start /mnt/models >/tmp/mlserver.log 2>&1 & server=$!
python3 - <<'PY' || { kill $server; cat /tmp/mlserver.log; exit 1; }
import json, os, time, urllib.request as request
model = f"http://127.0.0.1:{os.environ['MLSERVER_HTTP_PORT']}/v2/models/check"
for _ in range(120):
    try:
        request.urlopen(model + "/ready")
        break
    except OSError:
        time.sleep(0.5)
body = {"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP64", "data": [0.0, 1.0]}]}
infer = request.Request(model + "/infer", json.dumps(body).encode(), {"Content-Type": "application/json"})
print(json.load(request.urlopen(infer))["outputs"])
PY
kill $server && wait $server || true
SH
)
  case $(basename "$archive") in
    modelops-operator.tar)
      commands=("kopf --help" "kopf run --help" "modelops --help" "kubectl-modelops --help"
                "$(no_source modelops_operator.main)" "$linked") ;;
    modelops-serving.tar)
      commands=("modelops-serve --help" "modelops-sidecar --help" "modelops-router --help"
                "modelops-fetch --help" "$(no_source "modelops_serving.server,\
 modelops_serving.fetch, sklearn, skops.io, onnxruntime, uvloop")" "$linked") ;;
    mlserver.tar)
      commands=("mlserver --help" "mlserver start --help"
                "$(no_source "mlserver.cli, mlserver.server, mlserver_sklearn, sklearn, pandas, uvloop, grpc")"
                "$linked" "$mlserver_serves") ;;
    prometheus.tar) commands=("/bin/prometheus --version") ;;
    coredns.tar) commands=("/coredns -version") ;;
    pause.tar) commands=("/pause -v") ;;
    *) echo "name the commands to run in $archive" >&2; exit 2 ;;
  esac
fi

rootfs=$work/bundle/rootfs
userspec=(--userspec="$user"); [ "$(id -u)" -eq 0 ] || { userspec=(); user="0:0 (mapped)"; }
for command in "${commands[@]}"; do
  # shellcheck disable=SC2206  # images without a shell (scratch) run the words themselves
  if [ -x "$rootfs/bin/sh" ]; then argv=(/bin/sh -ec "$command"); else argv=($command); fi
  echo ">> [$(basename "$archive") as $user, read-only root] $command"
  # shellcheck disable=SC2016  # the inner shell expands them
  if ! output=$(unshare -m ${rootless:+-r} --propagation private sh -ec '
    r=$1; shift
    mount --bind "$r" "$r"; mount -o remount,bind,ro "$r"
    if [ -d "$r/proc" ]; then mount -t proc proc "$r/proc"; fi
    if [ -d "$r/dev" ]; then mount --rbind /dev "$r/dev"; fi
    if [ -d "$r/tmp" ]; then mount -t tmpfs tmpfs "$r/tmp"; fi
    exec "$@"' - "$rootfs" env -i "${env[@]}" /usr/sbin/chroot "${userspec[@]}" "$rootfs" "${argv[@]}" 2>&1)
  then
    echo "$output"; echo "FAILED: $command" >&2; exit 1
  fi
  head -n 3 <<<"$output"
done
echo "all ${#commands[@]} commands passed"
