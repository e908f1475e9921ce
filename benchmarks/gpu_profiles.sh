#!/usr/bin/env bash
# GPU profiles on the H200 machine: render the qlora / lora / auto configs with the wizard and
# train each for a few iterations, on the demo model and on a random 1.89B InternLM2
# (internlm2-chat-1_8b's dimensions). Prints and writes peak memory and throughput.
#
# Run from the repository root on the device machine (no network there), with the wheels of
# ../shared/gpu/fetch-wheels.sh in .whl/ (carried along):
#     bash benchmarks/gpu_profiles.sh            # logs, configs, summary.md/.json under $OUT
# Knobs (environment): ITERS (demo, default 2), BIG_ITERS (1.89B, default 4),
# PROFILES (default qlora,lora), MODELS (default demo,big). Takes about 4-5 minutes.
# Locally (no GPU): bash benchmarks/gpu_profiles.sh --dry-run   renders the configs only.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-profiles}
mkdir -p "$OUT"

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ] && [ "${1:-}" = "--dry-run" ]; then PY=$PWD/.venv/bin/python
  else PY=$(command -v python3); fi
fi

if [ -d .whl ] && [ "${1:-}" != "--dry-run" ]; then
  if [ ! -f /tmp/site/.installed ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target /tmp/site .whl/*.whl
    touch /tmp/site/.installed
  fi
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

# xtuner's CLI runs `python`: make it this python3 (a wrapper, not a symlink: keeps its paths).
mkdir -p /tmp/pybin
printf '#!/bin/sh\nexec %s "$@"\n' "$PY" > /tmp/pybin/python
chmod +x /tmp/pybin/python
export PATH=/tmp/pybin:$PATH
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

{
  echo "== $(date -u +%FT%TZ) $("$PY" --version)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  "$PY" -c 'import torch, transformers, xtuner, mmengine, peft; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "transformers", transformers.__version__, "xtuner", xtuner.__version__, "peft", peft.__version__)'
} 2>&1 | tee "$OUT/env.txt"

exec "$PY" benchmarks/gpu_profiles.py --out "$OUT" "$@" 2>&1 | tee "$OUT/run.txt"
