#!/usr/bin/env bash
# Metrics hygiene: `promtool check metrics` on the demo gateway's /metrics, after one
# /v1/usage request (so the upstream and cache families exist). Any finding fails the run.
#
# Usage: .ci/promtool.sh            (from anywhere; builds the debug binary first)
# Installs Debian's `prometheus` package (which ships promtool) when promtool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# shellcheck source=demo.sh
. .ci/demo.sh
start_demo
URL="$url" TOKEN="$token" python3 - <<'PY'
import os, urllib.request
req = urllib.request.Request(os.environ["URL"] + "/v1/usage",
                             headers={"Authorization": "Bearer " + os.environ["TOKEN"]})
with urllib.request.urlopen(req, timeout=60) as r:
    assert r.status == 200, r.status
PY
URL="$url" python3 -c 'import os, sys, urllib.request; sys.stdout.write(urllib.request.urlopen(os.environ["URL"] + "/metrics", timeout=30).read().decode())' >"$work/metrics"
families=$(grep -c '^# TYPE ' "$work/metrics" || true)
# promtool exits 0 on lint findings too (it prints them), so any output is a failure.
if ! findings=$(promtool check metrics <"$work/metrics" 2>&1) || [ -n "$findings" ]; then
  echo "promtool check metrics found problems in $url/metrics:" >&2
  echo "$findings" >&2
  exit 1
fi
echo "promtool check metrics: $families families, no findings"
