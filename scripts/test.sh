#!/usr/bin/env bash
# Run the test suite, setting the environment up first if needed (scripts/setup.sh).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` or `-k vocabulary`.
# Tests never download anything: HF_HUB_OFFLINE=1.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MAFT_VENV:-$REPO/.venv}"
bash "$REPO/scripts/setup.sh" --quiet --venv "$VENV"
cd "$REPO"
HF_HUB_OFFLINE=1 exec "$VENV/bin/python" -m pytest "$@"
