#!/usr/bin/env bash
# Train MAFT+ on SLURM: one task per node, each running torchrun, which starts the node's
# processes; all of them join one run through torchrun's c10d rendezvous on the first node.
#
# Usage (from the repository root; sbatch options on the command line override the defaults):
#   sbatch --nodes 2 --gpus-per-node 8 scripts/slurm_train.sh --config-file CFG [train_net args]
#   sbatch --nodes 1 scripts/slurm_train.sh --config-file CFG --resume   # continue a run
#
# It reads these environment variables:
#   SLURM_JOB_NODELIST   (set by SLURM) the nodes; the first one hosts the rendezvous
#   SLURM_NNODES         (set by SLURM) the number of nodes (torchrun --nnodes)
#   SLURM_JOB_ID         (set by SLURM) the rendezvous id, unique per job
#   SLURM_SUBMIT_DIR     (set by SLURM) the repository root, unless MAFT_PLUS_REPO is set
#   SLURM_GPUS_ON_NODE   (set by SLURM with --gpus-per-node) processes per node
#   NPROC_PER_NODE       processes per node, overriding SLURM_GPUS_ON_NODE (e.g. CPU-only nodes)
#   MASTER_PORT          the rendezvous port on the first node (default 29500)
#   MAFT_PLUS_REPO       the repository root (default SLURM_SUBMIT_DIR)
#   PYTHON               the interpreter (default MAFT_PLUS_REPO/.venv/bin/python)
# Every process logs to the job's output file; rank 0 writes checkpoints to OUTPUT_DIR.
#SBATCH --job-name=maft-plus
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=48:00:00
set -euo pipefail

die() { echo "slurm_train: ERROR: $*" >&2; exit 1; }

for name in SLURM_JOB_NODELIST SLURM_NNODES SLURM_JOB_ID; do
  [[ -n "${!name:-}" ]] || die "$name is not set: submit this script with sbatch (see its header)"
done
REPO="${MAFT_PLUS_REPO:-${SLURM_SUBMIT_DIR:-}}"
[[ -f "$REPO/train_net.py" ]] ||
  die "no train_net.py in '$REPO': submit from the repository root or set MAFT_PLUS_REPO"
PY="${PYTHON:-$REPO/.venv/bin/python}"
NPROC="${NPROC_PER_NODE:-${SLURM_GPUS_ON_NODE:-}}"
[[ "$NPROC" =~ ^[1-9][0-9]*$ ]] ||
  die "processes per node unknown: request --gpus-per-node or set NPROC_PER_NODE (got '$NPROC')"
HEAD_NODE="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
PORT="${MASTER_PORT:-29500}"

echo "slurm_train: $SLURM_NNODES node(s) x $NPROC process(es), rendezvous $HEAD_NODE:$PORT"
cd "$REPO"
srun --ntasks-per-node=1 --kill-on-bad-exit=1 \
  "$PY" -m torch.distributed.run \
  --nnodes "$SLURM_NNODES" \
  --nproc_per_node "$NPROC" \
  --rdzv_backend c10d \
  --rdzv_endpoint "$HEAD_NODE:$PORT" \
  --rdzv_id "$SLURM_JOB_ID" \
  train_net.py "$@"
