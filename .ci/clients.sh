#!/usr/bin/env bash
# Generated clients: a Python client (openapi-python-client, default settings) and a TypeScript one
# (openapi-typescript types, openapi-fetch calls, `tsc --strict`) are generated from the demo
# gateway's own /openapi.json, and each calls getUsage (JSON) and getUsageCsv (CSV) with the
# demo's dev token. Any failure (generation, a warning while generating, the type check, a call or
# an assertion in .ci/clients/) fails the run.
#
# Usage: .ci/clients.sh            (from anywhere; builds the debug binary first)
# Environment: CLIENTS_DOC, a file to generate from instead of the demo's /openapi.json (e.g. an
# older openapi/openapi.json, to see what its clients make of the demo).
# Installs into target/: the Python tools in a venv, the npm packages from .ci/clients/ts's lock.
set -euo pipefail
given_doc=${CLIENTS_DOC:+$(realpath "$CLIENTS_DOC")}
cd "$(dirname "$0")/.."

out=target/clients
venv=target/clients-venv
# Pinned, like the npm packages in .ci/clients/ts/package-lock.json: a new generator release may
# generate differently.
opc_version=0.29.1
if ! "$venv/bin/openapi-python-client" --version 2>/dev/null | grep -q "$opc_version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "openapi-python-client==$opc_version"
fi
rm -rf "$out"
mkdir -p "$out"
# The TypeScript project is built under target/, where npm puts node_modules and tsc its output.
cp -R .ci/clients/ts "$out/ts"
rm -rf "$out/ts/node_modules" "$out/ts/dist"
npm_cache=$PWD/target/npm-cache
(cd "$out/ts" && npm ci --cache "$npm_cache" --no-audit --no-fund --loglevel=error)

# shellcheck source=demo.sh
. .ci/demo.sh
start_demo
if [ -n "$given_doc" ]; then
  doc=$given_doc
  from=(--path "$doc")
else
  doc=$url/openapi.json
  from=(--url "$doc")
fi
echo "generating clients from $doc"

echo "--- Python (openapi-python-client $opc_version, default settings)"
# ruff, one of its dependencies, formats the generated code when it is on PATH.
PATH="$PWD/$venv/bin:$PATH" openapi-python-client generate --fail-on-warning \
  "${from[@]}" --output-path "$out/python"
URL="$url" TOKEN="$token" PYTHONPATH="$out/python" PYTHONDONTWRITEBYTECODE=1 \
  "$venv/bin/python" .ci/clients/check_python.py

echo "--- TypeScript (openapi-typescript, openapi-fetch, tsc --strict)"
(
  cd "$out/ts"
  npx --no-install openapi-typescript "$doc" --output src/api.d.ts
  npx --no-install tsc --strict --noEmit -p .
  npx --no-install tsc -p .
  URL="$url" TOKEN="$token" node dist/main.js
)
echo "generated clients: both called getUsage (JSON) and getUsageCsv (CSV)"
