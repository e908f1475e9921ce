#!/usr/bin/env bash
# The auto profile's throughput (MFU) on the 1.89B InternLM2 shape, variant by variant (issue 15):
# baseline (today's auto: lora_dropout 0.1, no fused kernels) against lora_dropout 0 and the
# fused kernels (engine/kernels.py), one xtuner training run each, seed 0.
# Carry .whl (../shared/gpu/fetch-wheels.sh + liger_kernel-0.8.5). From the repository root on the
# device machine:   DEADLINE=300 bash benchmarks/gpu_mfu.sh     (results under $OUT)
# Knobs: VARIANTS (default: all of gpu_mfu.VARIANTS, in order), DEADLINE (s for all runs), N.
# Locally: CPU=1 bash benchmarks/gpu_mfu.sh   (demo model, 3 iterations: the control flow)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-mfu}
mkdir -p "$OUT"
PY=${PYTHON:-$(command -v python3)}
[ -n "${CPU:-}" ] && [ -x .venv/bin/python ] && PY=$PWD/.venv/bin/python
if [ -d .whl ] && [ -z "${CPU:-}" ] && [ ! -f /tmp/site/.installed ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl && touch /tmp/site/.installed
fi
[ -d /tmp/site ] && [ -z "${CPU:-}" ] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH=$PWD:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}
mkdir -p /tmp/pybin
printf '#!/bin/sh\nexec %s "$@"\n' "$PY" > /tmp/pybin/python
chmod +x /tmp/pybin/python
export PATH=/tmp/pybin:$PATH
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
# the baseline peaks at ~78.5 GiB: on an 80 GB card it fits only without fragmentation (all variants alike)
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
{
  echo "== $(date -u +%FT%TZ) $("$PY" --version) cores $(nproc)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  "$PY" -c 'import torch, transformers, xtuner, peft; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "transformers", transformers.__version__, "peft", peft.__version__)'
  "$PY" -c 'import liger_kernel, triton; print("liger-kernel ok, triton", triton.__version__)' 2>&1 | tail -1
} 2>&1 | tee "$OUT/env.txt"
CPUFLAG=()
[ -n "${CPU:-}" ] && CPUFLAG=(--cpu)
"$PY" benchmarks/gpu_mfu.py --out "$OUT" "${CPUFLAG[@]}" 2>&1 | tee "$OUT/run.txt"
