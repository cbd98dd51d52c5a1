#!/usr/bin/env bash
# Browser test of the usage page: Debian's chromium and chromium-driver (installed with apt-get
# when missing), Selenium from pip in target/ci-venv, .ci/ui_test.py against the demo gateway with
# its dev token. Leaves a screenshot at target/ui-screenshot.png. Downloads no browser: Selenium
# runs /usr/bin/chromedriver, offline.
#
# Usage: .ci/ui.sh            (from anywhere; builds the debug binary first)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
chromium --version
venv=target/ci-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check 'selenium>=4.20'

# shellcheck source=demo.sh
. .ci/demo.sh
start_demo
URL="$url" TOKEN="$token" SCREENSHOT=target/ui-screenshot.png CHROMEDRIVER=/usr/bin/chromedriver \
  PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" .ci/ui_test.py
