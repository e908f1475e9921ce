"""The merge's one child process: pth_to_hf, merge and the load check in one python.

    python -m engine.merge_child CONFIG PTH HF_DIR BASE OUT_DIR DEVICE

started by :mod:`engine.export` (the wizard never imports torch itself). It runs XTuner's own
tools, ``xtuner.tools.model_converters.pth_to_hf`` and ``...merge``, by calling their
``main()`` with the arguments the tutorial gives them on the command line (``sys.argv`` set
for the call), one after the other in this process, then loads the merged model with
transformers. One python start-up and one import of xtuner/torch/transformers instead of
three (each ~15 s on a GPU box).

Between the steps it prints one marker line, ``<MARK> {"phase": ..., "pid": ...}`` (a
failed check: ``{"fail": ...}``; the load check's facts: ``{"facts": {...}}``), which the
parent turns into its progress phases; everything else (the tools' own output) goes to
the merge log as before. The exit code is the failed tool's (an exception: 1), so the
parent can say which step failed and how.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
import traceback
from pathlib import Path

from engine.xtuner_env import MERGE_MODULE, PTH_TO_HF_MODULE

MARK = "@@xtuner-wizard-merge"
FAIL_NO_ADAPTER = "no-adapter"
FAIL_NO_SAFETENSORS = "no-safetensors"
EXIT_CHECK_FAILED = 3  # a step exited 0 but did not write what it should have


def emit(**fields) -> None:
    print(f"{MARK} {json.dumps({**fields, 'pid': os.getpid()})}", flush=True)


def parse_mark(line: str) -> dict | None:
    """The fields of a marker line (None for any other line)."""
    if not line.startswith(MARK + " "):
        return None
    try:
        fields = json.loads(line[len(MARK) + 1 :])
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None


def run_tool(module: str, *args: str) -> int:
    """``python -m module args...`` in this process: its ``main()`` with ``sys.argv`` set.

    Returns its exit code (0, a ``SystemExit`` code such as argparse's 2, or 1 with the
    traceback printed for an exception)."""
    print(f"$ python -m {module} {' '.join(args)}  (in this process)", flush=True)
    saved = sys.argv
    try:
        mod = importlib.import_module(module)
        sys.argv = [mod.__file__ or module, *args]
        mod.main()
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr, flush=True)
        return 1
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    finally:
        sys.argv = saved
        sys.stdout.flush()
    return 0


def release() -> None:
    """Free what the previous step held (its model) before the next one loads another."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# On a GPU the merged model loads there, in the dtype it was saved in (float16), as chat will
# load it; only without one does transformers' CPU default (float32) apply.
def load_check(path: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), trust_remote_code=True, **({"torch_dtype": "auto"} if cuda else {})
    )
    if cuda:
        model.to("cuda")
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(next(model.parameters()).dtype),
        "architecture": type(model).__name__,
        "vocab": len(tok),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 6:
        print(
            "usage: python -m engine.merge_child CONFIG PTH HF_DIR BASE OUT_DIR DEVICE",
            file=sys.stderr,
        )
        return 2
    config, pth, hf_dir, base, out_dir, device = argv

    emit(phase="convert")
    code = run_tool(PTH_TO_HF_MODULE, config, pth, hf_dir, "--safe-serialization")
    if code:
        return code
    if not (Path(hf_dir) / "adapter_config.json").is_file():
        emit(fail=FAIL_NO_ADAPTER)
        return EXIT_CHECK_FAILED
    release()

    emit(phase="merge")
    code = run_tool(MERGE_MODULE, base, hf_dir, out_dir, "--safe-serialization", "--device", device)
    if code:
        return code
    if not list(Path(out_dir).glob("*.safetensors")):
        emit(fail=FAIL_NO_SAFETENSORS)
        return EXIT_CHECK_FAILED
    release()

    emit(phase="check")
    os.chdir(out_dir)  # as the separate load-check process ran: in the merged folder
    try:
        facts = load_check(Path(out_dir))
    except BaseException:
        traceback.print_exc()
        return 1
    emit(facts=facts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
