#!/usr/bin/env bash
# usage: [PACKAGE=./cmd/...] dataplane/build.sh OUTPUT [LINKER FLAG...]
#
# The one build of the data plane's binary (make install, images/build.sh; PACKAGE defaults to
# ./cmd/modelops-proxy, the benchmark builds ./cmd/plainproxy alike): static, and linked
# with a runtime default that keeps Go's system monitor (sysmon) out of its deep sleep.
#
# Why: a proxy at low load goes idle between requests. Idle, sysmon sleeps on a futex and the
# next system call wakes it, and it then polls every 20 us until the process is idle again:
# three extra context switches per request and 40 % of the sidecar's CPU at c=1
# (docs/serving.md, "Threads"). The runtime keeps sysmon on its plain backoff (20 us doubling
# to 10 ms) whenever schedtrace is on; its largest period, 2^31-1 ms (24.8 days of the node's
# uptime), prints the scheduler's one-line summary at most that often. GODEBUG in the
# environment still wins.
set -euo pipefail
out=$(realpath -m "$1")
package=${PACKAGE:-./cmd/modelops-proxy}
shift
cd "$(dirname "$0")"
# Linked in, this default replaces the one go.mod's go line implies; there is none today.
if [ -n "$(GOFLAGS=-mod=mod go list -f '{{.DefaultGODEBUG}}' "$package")" ]; then
  echo "dataplane/build.sh: go.mod now implies a GODEBUG default; add it to the one below" >&2
  exit 1
fi
CGO_ENABLED=0 GOFLAGS=-mod=mod exec go build -trimpath -buildvcs=false \
  -ldflags="$* -X=runtime.godebugDefault=schedtrace=2147483647" \
  -o "$out" "$package"
