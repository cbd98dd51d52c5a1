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

cargo build --quiet --locked -p usage-gateway

# Starts `usage-gateway demo` on a free port and sets `url` and `token` from its banner.
start_demo() {
  work=$(mktemp -d)
  target/debug/usage-gateway demo --listen 127.0.0.1:0 >"$work/stdout" 2>"$work/stderr" &
  demo=$!
  trap 'kill "$demo" 2>/dev/null || true; wait "$demo" 2>/dev/null || true; rm -rf "$work"' EXIT
  for _ in $(seq 1 600); do
    grep -q "^export TOKEN='" "$work/stdout" && break
    if ! kill -0 "$demo" 2>/dev/null; then
      echo "the demo gateway exited:" >&2
      cat "$work/stderr" >&2
      exit 1
    fi
    sleep 0.1
  done
  url=$(sed -n 's/^usage-gateway demo is running at //p' "$work/stdout")
  token=$(sed -n "s/^export TOKEN='\(.*\)'\$/\1/p" "$work/stdout")
  if [ -z "$url" ] || [ -z "$token" ]; then
    echo "the demo gateway printed no URL or token:" >&2
    cat "$work/stdout" "$work/stderr" >&2
    exit 1
  fi
}

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
