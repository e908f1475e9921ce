#!/usr/bin/env bash
# Start -> the tuned model's first answer on one H200: the tutorial by hand vs the wizard (issue 15).
# Carry .whl (../shared/gpu/fetch-wheels.sh). From the repository root on the device machine:
#     bash benchmarks/gpu_first_answer.sh tutorial   # prepare, then the tutorial by hand (in the
#                                                   # background, own session; waits for it up to
#                                                   # LIMIT s, default 540, then returns)
#     bash benchmarks/gpu_first_answer.sh wizard     # waits for a tutorial still running, then
#                                                   # the wizard's run-all (1.89B, demo), report
# Results: $WORK/results (kept on the machine between calls) and $OUT/results.tgz.
# Locally: CPU=1 bash benchmarks/gpu_first_answer.sh tutorial|wizard   (demo model, short runs)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/first-answer-out}
WORK=${WORK:-/tmp/first-answer-work}
RES=$WORK/results
LIMIT=${LIMIT:-540}
mkdir -p "$OUT" "$RES"
T0=$(date +%s)
PY=${PYTHON:-$(command -v python3)}
CPUFLAG=()
[ -n "${CPU:-}" ] && CPUFLAG=(--cpu)

if [ -d .whl ] && [ ! -f /tmp/site/.installed ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl && touch /tmp/site/.installed
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
[ -d /tmp/site/bin ] && export PATH=/tmp/site/bin:$PATH
# xtuner's CLI runs `python`: make it this python3 (a wrapper, not a symlink: keeps its paths).
mkdir -p /tmp/pybin
printf '#!/bin/sh\nexec %s "$@"\n' "$PY" > /tmp/pybin/python
chmod +x /tmp/pybin/python
export PATH=/tmp/pybin:$PATH
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

bench() { "$PY" benchmarks/gpu_first_answer.py "$@" --out "$RES" --work "$WORK" --n "${N:-8000}" "${CPUFLAG[@]}"; }
pack() { tar czf "$OUT/results.tgz" -C "$WORK" results; cp "$RES"/*.json "$OUT"/ 2>/dev/null; ls -la "$OUT"; }

{
  echo "== $(date -u +%FT%TZ) $("$PY" --version) cores $(nproc)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  "$PY" -c 'import torch, transformers, xtuner, mmengine, peft; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "transformers", transformers.__version__, "xtuner", xtuner.__version__, "peft", peft.__version__)'
} 2>&1 | tee -a "$RES/env.txt"

wait_tutorial() {  # a tutorial started by an earlier call, still running in its own session
  local deadline=$1
  while [ -f "$WORK/tutorial.pid" ] && kill -0 "$(cat "$WORK/tutorial.pid")" 2>/dev/null; do
    [ "$(date +%s)" -ge "$deadline" ] && { echo "tutorial still running"; return 1; }
    sleep 2
  done
  return 0
}

case "${1:-}" in
  tutorial)
    bench prepare 2>&1 | tee "$RES/prepare.out"
    setsid nohup "$PY" benchmarks/gpu_first_answer.py tutorial --out "$RES" --work "$WORK" --n "${N:-8000}" \
      "${CPUFLAG[@]}" > "$RES/tutorial.out" 2>&1 < /dev/null &
    echo $! > "$WORK/tutorial.pid"
    wait_tutorial $((T0 + LIMIT))
    tail -20 "$RES/tutorial.out"
    pack
    ;;
  wizard)
    wait_tutorial $((T0 + 300)) || exit 3
    bench prepare 2>&1 | tee -a "$RES/prepare.out"
    bench wizard 2>&1 | tee "$RES/wizard.out"
    bench report 2>&1 | tee "$RES/report.out"
    pack
    ;;
  *)
    echo "usage: $0 tutorial|wizard" >&2
    exit 2
    ;;
esac
