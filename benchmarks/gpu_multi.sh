#!/usr/bin/env bash
# Several GPUs through the wizard (issue 8), on the 2-GPU H200 machine (no network there).
# Carry .whl (../shared/gpu/fetch-wheels.sh), .whl-ds (deepspeed 0.16.2 built as a pure-Python
# wheel, `DS_BUILD_OPS=0 pip wheel --no-deps --no-build-isolation deepspeed==0.16.2`, and its
# missing needs: hjson msgpack ninja py-cpuinfo pydantic ...) and .whl-extra (textual, for the
# GPU panel's lines). Then, from the repository root:
#     bash benchmarks/gpu_multi.sh speed demo        # 1 vs 2 GPUs, ZeRO-2, demo model
#     bash benchmarks/gpu_multi.sh speed big         # the same, random 1.89B InternLM2
#     bash benchmarks/gpu_multi.sh lifecycle demo    # 2 GPUs: stop, resume (ZeRO folder), merge
# Results: $OUT/<phase>-<model>.json and .txt (the transcript of every wizard command).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-multi}
mkdir -p "$OUT"
PY=${PYTHON:-$(command -v python3)}

if [ ! -f /tmp/site/.installed ]; then
  wheels=()
  for d in .whl .whl-ds .whl-extra; do
    [ -d "$d" ] && wheels+=("$d"/*.whl)
  done
  if [ ${#wheels[@]} -gt 0 ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target /tmp/site "${wheels[@]}"
  fi
  mkdir -p /tmp/site && touch /tmp/site/.installed
fi
export PYTHONPATH=$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}

# xtuner's CLI runs `python`: make it this python3 (a wrapper, not a symlink: keeps its paths).
mkdir -p /tmp/pybin
printf '#!/bin/sh\nexec %s "$@"\n' "$PY" > /tmp/pybin/python
chmod +x /tmp/pybin/python
export PATH=/tmp/pybin:$PATH
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
# The machine's rule: NVLink multicast stays off, in every process the runs start.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

{
  echo "== $(date -u +%FT%TZ) $("$PY" --version)"
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  nvidia-smi topo -m 2>/dev/null | head -5 || true
  "$PY" -c 'import torch, transformers, xtuner, mmengine, deepspeed; print("torch", torch.__version__, "gpus", torch.cuda.device_count(), "transformers", transformers.__version__, "xtuner", xtuner.__version__, "mmengine", mmengine.__version__, "deepspeed", deepspeed.__version__)'
} 2>&1 | tee -a "$OUT/env.txt"

"$PY" benchmarks/gpu_multi.py "$@" --out "$OUT"
