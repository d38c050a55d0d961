#!/usr/bin/env bash
# The quickstart, with no downloads: set up (if needed), write the synthetic dataset, train the
# tiny MAFT+ on it on CPU (a few minutes), evaluate it, and segment a held-out image with the
# demo. Results land in output/tiny_synthetic (the picture: demo/00000_overlay.png).
# Extra arguments go to train_net.py as KEY VALUE overrides, e.g. SOLVER.MAX_ITER 300.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MAFT_VENV:-$REPO/.venv}"
bash "$REPO/scripts/setup.sh" --quiet --venv "$VENV"
cd "$REPO"
export HF_HUB_OFFLINE=1
"$VENV/bin/python" datasets/prepare_synthetic.py
OUT="${MAFT_QUICKSTART_OUTPUT:-output/tiny_synthetic}"
DATA="${DETECTRON2_DATASETS:-datasets}/maftp_synthetic"
"$VENV/bin/python" train_net.py --config-file configs/tiny/maftp_tiny_train.yaml OUTPUT_DIR "$OUT" "$@"
"$VENV/bin/python" demo/demo.py --config-file configs/tiny/maftp_tiny.yaml \
    --weights "$OUT/model_final.pth" --vocabulary-file "$DATA/vocabulary.txt" \
    --input "$DATA/images/val/00000.jpg" "$DATA/images/val/00001.jpg" \
    --output "$OUT/demo"
echo "quickstart: segmented held-out images are in $OUT/demo/ (*_overlay.png)"
