#!/usr/bin/env bash
# One-command setup on Debian/Ubuntu: Fashion-MNIST from apt, then memlib with its dev extras.
# Idempotent; safe to re-run. Set MEMLIB_SKIP_APT=1 to skip the apt step.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

if [ -z "${MEMLIB_SKIP_APT:-}" ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  echo "[setup] apt-get install dataset-fashion-mnist"
  $SUDO apt-get install -y -q dataset-fashion-mnist || { $SUDO apt-get update -q && $SUDO apt-get install -y -q dataset-fashion-mnist; }
fi

# Pin torch/torchvision first: a bare "torch" requirement would pull a multi-GB build from PyPI.
echo "[setup] pip install torch torchvision"
python3 -m pip install -q "torch==${MEMLIB_TORCH:-2.14.1}" "torchvision==${MEMLIB_TORCHVISION:-0.29.1}"
echo "[setup] pip install -e .[dev]"
python3 -m pip install -q -e ".[dev]"
python3 -c "import memlib, torch; print('[setup] memlib', memlib.__version__, '| torch', torch.__version__)"
