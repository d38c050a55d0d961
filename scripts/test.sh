#!/usr/bin/env bash
# Run the test suite, setting the environment up first if needed (scripts/setup.sh).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` or `-k vocabulary`.
# Tests never download anything: HF_HUB_OFFLINE=1.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MAFT_VENV:-$REPO/.venv}"
bash "$REPO/scripts/setup.sh" --quiet --venv "$VENV"
# The web-demo test drives headless Chromium; it is skipped where Chromium is missing. In CI
# (CI set, root, Debian) install it: Debian's chromium and chromium-driver packages.
if [[ -n "${CI:-}" ]] && ! command -v chromedriver >/dev/null && command -v apt-get >/dev/null &&
   [[ "$(id -u)" == 0 ]]; then
  echo "test: installing chromium and chromium-driver for the web-demo test"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
      chromium-driver; } >/dev/null 2>&1 ||
    echo "test: could not install chromium; the web-demo browser test will be skipped"
fi
cd "$REPO"
HF_HUB_OFFLINE=1 exec "$VENV/bin/python" -m pytest "$@"
