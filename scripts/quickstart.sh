#!/usr/bin/env bash
# The quickstart, with no downloads: set up (if needed), write the synthetic dataset, train the
# tiny MAFT+ on it on CPU (about a minute) and evaluate it; results land in output/tiny_synthetic.
# Extra arguments go to train_net.py as KEY VALUE overrides, e.g. SOLVER.MAX_ITER 300.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MAFT_VENV:-$REPO/.venv}"
bash "$REPO/scripts/setup.sh" --quiet --venv "$VENV"
cd "$REPO"
export HF_HUB_OFFLINE=1
"$VENV/bin/python" datasets/prepare_synthetic.py
"$VENV/bin/python" train_net.py --config-file configs/tiny/maftp_tiny_train.yaml "$@"
