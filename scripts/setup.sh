#!/usr/bin/env bash
# Sets up .venv in the repo root: torch (the local CPU wheel, or a CUDA build on a GPU box),
# xtuner 0.2.0 and its pins, the wizard itself (editable) and the dev tools.
# Idempotent and quick when nothing changed: a stamp records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
stamp="$VENV/.xtuner-wizard-installed"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

pick_python() {
  for py in "${PYTHON:-}" python3.11 python3.12 python3.10 python3; do
    [ -n "$py" ] || continue
    command -v "$py" >/dev/null 2>&1 || continue
    if "$py" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] < (3, 13)))'; then
      echo "$py"; return 0
    fi
  done
  echo "error: xtuner-wizard needs Python 3.10-3.12 (fix: install one, or set PYTHON=/path/to/python3.11)" >&2
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  py=$(pick_python)
  echo "setup: creating $VENV with $py"
  "$py" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  # GPU box: a CUDA torch with a matching torchvision (real, importable).
  echo "setup: GPU found, installing a CUDA torch"
  "${pip[@]}" "torch==2.14.1" "torchvision==0.29.1"
  "${pip[@]}" -e ".[dev]" "torch==2.14.1" "torchvision==0.29.1"
  # bitsandbytes 0.45 imports triton.ops, which triton 3.x no longer has.
  "$VENV/bin/python" -c 'import bitsandbytes' >/dev/null 2>&1 || "$VENV/bin/python" -m pip uninstall -y -q triton
else
  # CPU: the local torch 2.13 CPU wheel. xtuner requires torchvision; pin the one that does
  # not drag torch to a 5.5 GB CUDA build, then remove it (it cannot import beside CPU torch;
  # engine/_shims stands in for it in xtuner's processes).
  echo "setup: no GPU, installing the CPU torch"
  "${pip[@]}" "torch==2.13.0"
  "${pip[@]}" -e ".[dev]" "torch==2.13.0" "torchvision==0.28.0"
  "$VENV/bin/python" -m pip uninstall -y -q torchvision
fi
echo "$want" > "$stamp"
echo "setup: done ($VENV)"
