#!/usr/bin/env bash
# Set up maft-plus from nothing: a virtual environment with pinned requirements, PyTorch,
# detectron2 and the package itself (editable). Safe to re-run: an up-to-date environment is
# detected from a stamp and left alone in a second or two.
#
# Usage: bash scripts/setup.sh [--venv DIR] [--use-current-env] [--quiet]
#   --venv DIR         where to create the environment (default: .venv in the repository root)
#   --use-current-env  install into the environment of $PYTHON instead of a new venv; a torch and
#                      a detectron2 already there (e.g. built from source on a GPU machine) are kept
#   --quiet            print only problems and the final line
# Environment: PYTHON picks the interpreter (default: the first of python3.11, python3.12, python3
#   whose version is supported). PIP_INDEX_URL is honoured.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
USE_CURRENT_ENV=0
QUIET=0
MIN_PY=3.11
MAX_PY=3.12
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
BUILD_PINS=(setuptools==80.9.0 wheel==0.45.1)
MIN_FREE_GB=8

while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv) VENV="$(realpath -m "$2")"; shift 2 ;;
    --use-current-env) USE_CURRENT_ENV=1; shift ;;
    --quiet) QUIET=1; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

say() { [[ $QUIET == 1 ]] || echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

# --- 1. an interpreter of a supported version ------------------------------------------------
py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
version_ok() {  # version_ok 3.11 -> true when MIN_PY <= v <= MAX_PY
  [[ "$(printf '%s\n' "$MIN_PY" "$1" | sort -V | head -1)" == "$MIN_PY" &&
     "$(printf '%s\n' "$1" "$MAX_PY" | sort -V | head -1)" == "$1" ]]
}
if [[ -n "${PYTHON:-}" ]]; then
  v="$(py_version "$PYTHON")" || die "PYTHON=$PYTHON cannot be run as a Python interpreter."
  version_ok "$v" || die "PYTHON=$PYTHON is Python $v; maft-plus needs Python $MIN_PY to $MAX_PY" \
    "(the pinned PyTorch, numpy<2, scipy and detectron2). Point PYTHON at a supported interpreter."
  PY="$PYTHON"
else
  PY=""
  for cand in python3.11 python3.12 python3; do
    if v="$(py_version "$cand")" && version_ok "$v"; then PY="$cand"; break; fi
  done
  [[ -n "$PY" ]] || die "no Python $MIN_PY to $MAX_PY found (tried python3.11, python3.12," \
    "python3; python3 is $(py_version python3 || echo 'missing')). Install one, or set PYTHON=/path/to/python."
fi

if [[ $USE_CURRENT_ENV == 1 ]]; then
  VPY="$(command -v "$PY")"
  STAMP_DIR="$("$VPY" -c 'import sys; print(sys.prefix)')"
else
  VPY="$VENV/bin/python"
  STAMP_DIR="$VENV"
fi
STAMP="$STAMP_DIR/.maft_plus_setup"

# --- 2. nothing to do when the environment matches this checkout's requirements --------------
fingerprint() {
  cat "$REPO/scripts/setup.sh" "$REPO/setup.py" "$REPO/requirements.txt" \
      "$REPO/requirements-dev.txt" "$REPO/requirements-detectron2.txt" | sha256sum | cut -c1-16
}
FP="$(fingerprint)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$FP" && -x "$VPY" ]] &&
   "$VPY" -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ("torch", "detectron2", "open_clip", "maft_plus")))' \
     2>/dev/null; then
  say "environment at $STAMP_DIR is up to date (python: $VPY)"
  exit 0
fi

# --- 3. what installing needs: venv, the package index, disk space ---------------------------
if [[ $USE_CURRENT_ENV == 0 && ! -x "$VPY" ]]; then
  "$PY" -c 'import venv, ensurepip' 2>/dev/null || die "$PY lacks the venv/ensurepip modules;" \
    "on Debian/Ubuntu install them with: apt-get install python$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"
fi
INDEX_URL="${PIP_INDEX_URL:-$("$PY" -m pip config get global.index-url 2>/dev/null || true)}"
INDEX_URL="${INDEX_URL:-https://pypi.org/simple/}"
"$PY" - "$INDEX_URL" <<'PYEOF' || die "cannot reach the package index $INDEX_URL. Setup downloads \
pinned packages from it: check the network or proxy, or set PIP_INDEX_URL to a reachable mirror."
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=20).close()
except Exception as exc:  # report any failure to connect, whatever its kind
    print(f"setup: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
PYEOF
mkdir -p "$(dirname "$STAMP_DIR")"
free_gb=$(( $(df -Pk "$(dirname "$STAMP_DIR")" | awk 'NR==2 {print $4}') / 1024 / 1024 ))
if ! "$VPY" -c 'import torch' 2>/dev/null && (( free_gb < MIN_FREE_GB )); then
  die "only ${free_gb} GB free under $(dirname "$STAMP_DIR"); PyTorch and the rest need about" \
    "${MIN_FREE_GB} GB. Free some space or choose another place with --venv DIR."
fi

# --- 4. install --------------------------------------------------------------------------------
pip_install() {
  "$VPY" -m pip install --disable-pip-version-check -q "$@" ||
    die "pip install $* failed (see pip's message above)."
}
if [[ $USE_CURRENT_ENV == 0 && ! -x "$VPY" ]]; then
  say "creating a virtual environment at $VENV with $PY ($(py_version "$PY"))"
  "$PY" -m venv "$VENV" || die "could not create a virtual environment at $VENV."
fi
pip_install "${BUILD_PINS[@]}"

if "$VPY" -c 'import torch, torchvision' 2>/dev/null; then
  say "keeping the installed torch $("$VPY" -c 'import torch; print(torch.__version__)')"
else
  say "installing ${TORCH_PINS[*]} (a few GB, about a minute)"
  pip_install "${TORCH_PINS[@]}"
fi

say "installing the pinned requirements"
pip_install -r "$REPO/requirements.txt" -r "$REPO/requirements-dev.txt"

if "$VPY" -c 'import detectron2' 2>/dev/null; then
  say "keeping the installed detectron2 $("$VPY" -c 'import detectron2; print(detectron2.__version__)')"
else
  # detectron2 is not on PyPI under its own name; sal-detectron2 is upstream detectron2 (commit
  # a59f056) as a cp310 wheel whose pure-Python part runs on 3.11-3.12. MAFT+ needs none of its
  # compiled ops, so its cp310 extension and a stray top-level `tools` package are removed.
  SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  say "installing detectron2 (sal-detectron2 0.7.2, pure Python) into $SITE"
  pip_install --no-deps --only-binary=:all: --python-version 3.10 --upgrade --target "$SITE" \
    -r "$REPO/requirements-detectron2.txt"
  rm -rf "$SITE/tools" "$SITE"/detectron2/_C.*.so
fi

say "installing maft-plus (editable)"
pip_install --no-deps --no-build-isolation -e "$REPO"

"$VPY" -c 'import torch, detectron2, open_clip, maft_plus' ||
  die "the environment was installed but 'import torch, detectron2, open_clip, maft_plus' fails."
echo "$FP" > "$STAMP"
echo "setup: done. Python: $VPY"
