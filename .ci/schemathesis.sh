#!/usr/bin/env bash
# Contract conformance: schemathesis against the demo gateway's own /openapi.json, every
# operation, all checks, a fixed seed. Any finding fails the run (exit code != 0).
#
# Usage: .ci/schemathesis.sh            (from anywhere; builds the debug binary first)
# Environment: ST_MAX_EXAMPLES (default 150), ST_SEED (default 20261108).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/schemathesis-venv
# Pinned: a fixed seed only reproduces the same cases with the same schemathesis version.
version=4.32.5
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

cargo build --quiet --locked -p usage-gateway

work=$(mktemp -d)
target/debug/usage-gateway demo --listen 127.0.0.1:0 >"$work/stdout" 2>"$work/stderr" &
demo=$!
cleanup() {
  kill "$demo" 2>/dev/null || true
  wait "$demo" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The demo prints its URL and a dev token once it listens.
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

# The rules OpenAPI cannot state (see the hooks file) need the configured source names.
export ST_SOURCES
ST_SOURCES=$(URL="$url" TOKEN="$token" python3 - <<'PY'
import json, os, urllib.request
req = urllib.request.Request(os.environ["URL"] + "/v1/sources",
                             headers={"Authorization": "Bearer " + os.environ["TOKEN"]})
print(",".join(s["source"] for s in json.load(urllib.request.urlopen(req, timeout=30))["sources"]))
PY
)
export ST_MAX_RANGE_DAYS=400 # config/demo.toml: server.max_range
export SCHEMATHESIS_HOOKS=schemathesis_hooks
export PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH="$PWD/.ci${PYTHONPATH:+:$PYTHONPATH}"
st="$PWD/$venv/bin/st"
# Run from the scratch directory: schemathesis and Hypothesis keep caches in the working
# directory, and a fresh one keeps every run equal for the same seed.
cd "$work"

echo "schemathesis $version against $url/openapi.json (sources: $ST_SOURCES)"
"$st" run "$url/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --seed "${ST_SEED:-20261108}" \
  --max-examples "${ST_MAX_EXAMPLES:-150}" \
  --generation-database none \
  --workers 2 \
  --request-timeout 20 \
  --no-color
