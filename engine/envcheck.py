"""Environment checks: can this machine fine-tune this model on this dataset?

Each :class:`Check` is ok / warn / fail with a one-line detail and a one-line fix.
``run_checks`` runs them all; ``can_train`` says whether training can go ahead (warnings,
such as "CPU only", do not stop it; failures do).

Nothing heavy is imported here: package versions come from ``importlib.metadata``, GPUs from
NVML (engine.gpu), and torch/CUDA/bitsandbytes are probed in a child process so a caller (the
TUI) never pays for importing torch.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from engine.gpu import GpuSample, GpuSampler

if TYPE_CHECKING:
    from engine.workspace import Workspace

Status = Literal["ok", "warn", "fail"]
GIB = 2**30
MIB = 2**20

# The tutorial's model (internlm2-chat-1_8b, bf16 weights): the size assumed when unknown.
DEFAULT_MODEL_BYTES = int(3.8 * GIB)
DEMO_MODEL_BYTES = 16 * MIB

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "qwen.tiktoken")
# What xtuner 0.2.0 pins or needs, checked against its own metadata when it is installed.
KEY_PACKAGES = ("torch", "transformers", "mmengine", "peft", "bitsandbytes", "datasets")

TORCH_PROBE_TIMEOUT = 180  # importing torch + bitsandbytes on a busy machine can be slow


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def can_train(checks: Iterable[Check]) -> bool:
    """Training can go ahead when no check failed (warnings are fine)."""
    return all(c.status != "fail" for c in checks)


def checks_to_json(checks: list[Check]) -> dict[str, Any]:
    return {"can_train": can_train(checks), "checks": [c.to_json() for c in checks]}


def checks_from_json(data: dict[str, Any]) -> list[Check]:
    return [Check(**c) for c in data["checks"]]


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


# --- Python and packages -----------------------------------------------------------------
def check_python() -> Check:
    v = sys.version_info
    text = f"Python {platform.python_version()} ({sys.executable})"
    if (3, 10) <= (v.major, v.minor) < (3, 13):
        return Check("Python", "ok", text)
    return Check(
        "Python",
        "fail",
        text + ": xtuner 0.2.0 and the wizard need 3.10-3.12",
        "make a venv with python3.10-3.12 (make run does it)",
    )


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _xtuner_requirements() -> dict[str, str]:
    """name -> specifier from xtuner's metadata (base requirements only, no extras)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - packaging ships with pip/transformers
        return {}
    try:
        reqs = importlib.metadata.requires("xtuner") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    out: dict[str, str] = {}
    for line in reqs:
        try:
            req = Requirement(line)
        except Exception:
            continue
        if req.marker is not None and "extra" in str(req.marker):
            continue
        out[req.name.lower()] = str(req.specifier)
    return out


def _satisfies(version: str, spec: str) -> bool:
    if not spec:
        return True
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        return Version(version) in SpecifierSet(spec)
    except Exception:
        return True


def check_packages() -> list[Check]:
    """One "packages" line for what is fine, one line per package that is not."""
    checks = _package_checks()
    good = [c for c in checks if c.status == "ok"]
    bad = [c for c in checks if c.status != "ok"]
    if not good:
        return bad
    versions = ", ".join(f"{c.name} {c.detail.split(' ')[0]}" for c in good)
    summary = Check("packages", "ok", versions + (": as xtuner needs" if len(good) > 1 else ""))
    return [summary, *bad]


def _package_checks() -> list[Check]:
    checks: list[Check] = []
    xt = _version("xtuner")
    if xt is None:
        checks.append(
            Check(
                "xtuner",
                "fail",
                "not installed",
                "pip install 'xtuner==0.2.0' (make run sets everything up)",
            )
        )
        return checks
    if xt != "0.2.0":
        checks.append(
            Check(
                "xtuner",
                "warn",
                f"{xt} installed; the wizard is built and tested against 0.2.0",
                "pip install 'xtuner==0.2.0'",
            )
        )
    else:
        checks.append(Check("xtuner", "ok", f"{xt}"))
    needs = _xtuner_requirements()
    for name in KEY_PACKAGES:
        have = _version(name)
        spec = needs.get(name, "")
        wanted = f"xtuner needs {spec}" if spec else "xtuner needs it"
        if have is None:
            status: Status = "warn" if name == "bitsandbytes" else "fail"
            checks.append(
                Check(name, status, f"not installed ({wanted})", f"pip install '{name}{spec}'")
            )
        elif not _satisfies(have, spec) and name == "bitsandbytes":
            # xtuner's pin predates CUDA 13; a newer bitsandbytes ran its QLoRA on an H200.
            # Whether 4-bit really works here is the "bitsandbytes 4-bit" check's verdict.
            checks.append(
                Check(
                    name,
                    "warn",
                    f"{have} installed, {wanted}; see the 4-bit check for whether it works",
                    f"if 4-bit fails: pip install '{name}{spec}'",
                )
            )
        elif not _satisfies(have, spec):
            checks.append(
                Check(name, "fail", f"{have} installed, {wanted}", f"pip install '{name}{spec}'")
            )
        else:
            checks.append(Check(name, "ok", f"{have}" + (f" ({wanted})" if spec else "")))
    return checks


# --- torch, CUDA, bitsandbytes (child process) ----------------------------------------------
_PROBE = r"""
import json, os, sys, warnings
warnings.filterwarnings("ignore")
out = {}
try:
    import torch
    out["torch"] = torch.__version__
    out["cuda_available"] = bool(torch.cuda.is_available())
    out["cuda_version"] = torch.version.cuda
    out["device_count"] = torch.cuda.device_count() if out["cuda_available"] else 0
    if out["cuda_available"]:
        out["bf16"] = bool(torch.cuda.is_bf16_supported())
        out["devices"] = [torch.cuda.get_device_name(i) for i in range(out["device_count"])]
except Exception as exc:
    out["torch_error"] = f"{type(exc).__name__}: {exc}"
if "torch" in out:
    try:
        import contextlib, io
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import bitsandbytes as bnb
            out["bnb"] = getattr(bnb, "__version__", "?")
            if out.get("cuda_available"):
                import bitsandbytes.functional as F
                x = torch.randn(64, 64, device="cuda", dtype=torch.float16)
                q, state = F.quantize_4bit(x, quant_type="nf4")
                y = F.dequantize_4bit(q, state)
                out["bnb_4bit"] = bool(torch.isfinite(y).all().item())
    except Exception as exc:
        out["bnb_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
sys.stdout.write("\nPROBE-JSON " + json.dumps(out) + "\n")
"""


def probe_torch(
    python: str | None = None,
    timeout: float = TORCH_PROBE_TIMEOUT,
    *,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Import torch (and bitsandbytes) in a child process; what it found, or an ``error``.

    Setting ``cancel`` kills the child at once (the wizard quitting mid-check).
    """
    env = dict(os.environ)
    env.setdefault("PYTHONWARNINGS", "ignore")
    try:
        proc = subprocess.Popen(
            [python or sys.executable, "-c", _PROBE],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    except OSError as exc:
        return {"error": f"cannot start {python or sys.executable}: {exc.strerror}"}
    deadline = time.monotonic() + timeout
    while True:
        try:
            stdout, stderr = proc.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if (cancel is not None and cancel.is_set()) or time.monotonic() > deadline:
                proc.kill()
                proc.communicate()
                if cancel is not None and cancel.is_set():
                    return {"error": "cancelled"}
                return {"error": f"importing torch took over {timeout:.0f} s"}
    for line in reversed(stdout.splitlines()):
        if line.startswith("PROBE-JSON "):
            return json.loads(line[len("PROBE-JSON ") :])
    tail = (stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"the probe exited {proc.returncode}: {tail[:300]}"}


_probe_cache: dict[tuple[str, ...], tuple[float, dict[str, Any]]] = {}
_probe_lock = threading.Lock()


def probe_torch_cached(
    *, max_age: float = 600.0, refresh: bool = False, cancel: threading.Event | None = None
) -> dict[str, Any]:
    """:func:`probe_torch`, reused for ``max_age`` seconds unless ``refresh``.

    Keyed by the interpreter and the installed torch/bitsandbytes/triton versions, so a
    reinstall is noticed; the wizard's first check uses it, its re-check key refreshes.
    """
    key = (sys.executable, *(str(_version(d)) for d in ("torch", "bitsandbytes", "triton")))
    now = time.monotonic()
    with _probe_lock:
        hit = _probe_cache.get(key)
    if hit is not None and not refresh and now - hit[0] < max_age:
        return hit[1]
    result = probe_torch(cancel=cancel)
    if "error" not in result:
        with _probe_lock:
            _probe_cache[key] = (now, result)
    return result


def checks_from_probe(probe: dict[str, Any]) -> list[Check]:
    if "error" in probe:
        return [
            Check("torch", "fail", probe["error"], "reinstall torch in the venv (make run)"),
        ]
    if "torch_error" in probe:
        return [
            Check(
                "torch",
                "fail",
                f"cannot import torch: {probe['torch_error']}",
                "pip install torch (make run sets it up)",
            )
        ]
    checks: list[Check] = []
    version = probe["torch"]
    if probe.get("cuda_available"):
        n = probe.get("device_count", 0)
        names = ", ".join(sorted(set(probe.get("devices", []))))
        bf16 = "bf16 supported" if probe.get("bf16") else "no bf16 (fp16 only)"
        checks.append(
            Check(
                "torch + CUDA",
                "ok",
                f"torch {version}, CUDA {probe.get('cuda_version')}, {n} GPU(s): {names}; {bf16}",
            )
        )
    else:
        cuda = probe.get("cuda_version")
        why = "a CPU build of torch" if not cuda else f"CUDA {cuda} build, but no usable GPU"
        checks.append(
            Check(
                "torch + CUDA",
                "warn",
                f"torch {version}: {why}; training runs on the CPU (tiny models only, slow)",
                "fine for the demo model; for a real model use a machine with an NVIDIA GPU"
                " and the CUDA build of torch",
            )
        )
    if "bnb_error" in probe:
        err = probe["bnb_error"]
        fix = "pip install 'bitsandbytes==0.45.0'"
        if "triton" in err:
            fix = "pip uninstall -y triton (bitsandbytes 0.45 imports triton.ops, gone in triton 3)"
        checks.append(
            Check(
                "bitsandbytes 4-bit",
                "warn",
                f"cannot use bitsandbytes: {err}; QLoRA (4-bit) is off, LoRA still works",
                fix,
            )
        )
    elif probe.get("cuda_available"):
        if probe.get("bnb_4bit"):
            checks.append(
                Check(
                    "bitsandbytes 4-bit",
                    "ok",
                    f"bitsandbytes {probe.get('bnb')}: nf4 quantize/dequantize on the GPU works",
                )
            )
        else:
            checks.append(
                Check(
                    "bitsandbytes 4-bit",
                    "warn",
                    f"bitsandbytes {probe.get('bnb')}: nf4 round trip gave non-finite values",
                    "use LoRA without 4-bit, or reinstall bitsandbytes",
                )
            )
    else:
        checks.append(
            Check(
                "bitsandbytes 4-bit",
                "warn",
                f"bitsandbytes {probe.get('bnb')} needs a CUDA GPU for 4-bit: QLoRA is off here,"
                " the wizard uses LoRA in float32",
                "nothing to do on a CPU; QLoRA needs an NVIDIA GPU",
            )
        )
    return checks


# --- GPUs (NVML) --------------------------------------------------------------------------
def checks_from_gpus(samples: list[GpuSample], error: str | None = None) -> list[Check]:
    if not samples:
        why = f" (NVML: {error})" if error else ""
        return [
            Check(
                "GPU",
                "warn",
                f"no NVIDIA GPU found{why}",
                "train the demo model on the CPU, or run on a machine with an NVIDIA GPU and driver",
            )
        ]
    checks = []
    for s in samples:
        if s.mem_total_mb is None:
            checks.append(Check(f"GPU {s.index}", "ok", f"{s.name}, memory N/A"))
            continue
        free = s.mem_free_mb or 0.0
        detail = (
            f"{s.name}: {human_bytes(s.mem_total_mb * MIB)} total, {human_bytes(free * MIB)} free"
        )
        if s.temp_c is not None:
            detail += f", {s.temp_c:.0f} °C"
        if free < 2048:
            checks.append(
                Check(
                    f"GPU {s.index}",
                    "warn",
                    detail + ": almost full",
                    "stop what holds its memory (nvidia-smi lists the processes)",
                )
            )
        else:
            checks.append(Check(f"GPU {s.index}", "ok", detail))
    return checks


# --- machine: CPU, RAM, disk -------------------------------------------------------------
def check_cpu() -> Check:
    total = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = total
    detail = f"{usable} usable core(s)" + (f" of {total}" if usable != total else "")
    if usable < 2:
        return Check("CPU", "warn", detail + ": data preparation and CPU training will be slow")
    return Check("CPU", "ok", detail)


def check_ram(model_bytes: int) -> Check:
    try:
        import psutil

        vm = psutil.virtual_memory()
        total, avail = vm.total, vm.available
    except Exception:
        try:
            pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            total = avail = pages
        except (ValueError, OSError, AttributeError):
            return Check("RAM", "warn", "cannot read the memory size", "")
    # Loading and merging hold the full-precision base in memory (about 2x bf16 weights).
    need = 2 * model_bytes + 2 * GIB
    detail = f"{human_bytes(avail)} available of {human_bytes(total)}"
    if avail < need:
        return Check(
            "RAM",
            "warn",
            detail + f"; loading/merging this model wants about {human_bytes(need)}",
            "close other programs, or merge on a machine with more memory",
        )
    return Check("RAM", "ok", detail)


def run_disk_needs(model_bytes: int) -> tuple[int, int]:
    """(bytes training needs, bytes the whole run needs) for a model of ``model_bytes``.

    Training writes checkpoints (adapter + optimizer state, a few % of the model, two kept),
    logs and the tokenised dataset cache; convert + merge then write the adapter and a full
    merged copy of the model.
    """
    train = int(0.1 * model_bytes) + 512 * MIB
    total = train + model_bytes + int(0.05 * model_bytes)
    return train, total


def check_disk(ws_root: Path, model_bytes: int) -> Check:
    probe = Path(ws_root)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError as exc:
        return Check("disk", "warn", f"cannot read free space: {exc.strerror}", "")
    train, total = run_disk_needs(model_bytes)
    detail = f"{human_bytes(free)} free in {ws_root}; the run writes about {human_bytes(total)}"
    if free < train:
        return Check(
            "disk",
            "fail",
            detail + f" (training alone {human_bytes(train)})",
            "free space there, or use --workspace on a bigger disk",
        )
    if free < total:
        return Check(
            "disk",
            "warn",
            detail + ": enough to train, not to merge",
            "free space before the Merge step, or use --workspace on a bigger disk",
        )
    return Check("disk", "ok", detail)


# --- the model folder ---------------------------------------------------------------------
def _auto_map_files(mapping: Any) -> set[str]:
    files: set[str] = set()
    if not isinstance(mapping, dict):
        return files
    for value in mapping.values():
        for ref in value if isinstance(value, list) else [value]:
            if isinstance(ref, str) and "." in ref:
                files.add(ref.rsplit(".", 1)[0] + ".py")
    return files


def _weights(model_dir: Path) -> tuple[list[Path], list[str]]:
    """The weight files, and shards an index names that are missing."""
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    missing: list[str] = []
    for index in model_dir.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            missing.append(f"{index.name} (unreadable)")
            continue
        missing += sorted(s for s in shards if not (model_dir / s).is_file())
    return files, missing


def model_dir_of(ws: Workspace, model: str | Path | None) -> tuple[Path | None, bool]:
    """(folder, is_demo) for an explicit model, or the workspace's choice ("demo" or a path).

    Resolved by :func:`engine.selection.model_choice` (not checked: the checks say what is
    wrong); no choice at all means the demo model.
    """
    from engine.selection import model_choice

    choice = model_choice(ws, model, check=False)
    if choice is None:
        return ws.demo_model_dir, True
    return choice.path, choice.is_demo


def check_remote_code(model_dir: Path, ws: Workspace | None = None) -> Check:
    """The Python the folder brings, named with its hash: ok when confirmed in ``ws`` (or the
    wizard's own demo code), a warning until then (nothing runs it unconfirmed)."""
    from engine.trust import TRUST_FLAG, TRUST_KEY, _is_wizards_demo, remote_code, untrusted_code

    code = remote_code(model_dir)
    if code is None:
        return Check("remote code", "ok", "none (transformers' own code)")
    if untrusted_code(ws, model_dir) is not None:
        return Check(
            "remote code",
            "warn",
            f"{code.describe()} would run (trust_remote_code); not confirmed, so nothing "
            "loads this folder",
            f"read those files; press {TRUST_KEY} to trust this version (in the wizard's "
            f"Environment step), or pass {TRUST_FLAG}",
        )
    whose = "the wizard's demo code (xtuner's own files)" if _is_wizards_demo(code) else "confirmed"
    return Check("remote code", "ok", f"{code.describe()} runs with trust_remote_code: {whose}")


def check_model(
    model_dir: Path, *, is_demo: bool = False, ws: Workspace | None = None
) -> tuple[list[Check], int | None]:
    """Checks of a model folder, and its weights' size in bytes (None when unknown).
    ``ws``: the workspace whose confirmations of remote code count."""
    if is_demo and not (model_dir / "config.json").exists():
        return [
            Check(
                "model",
                "warn",
                f"the demo model is not built yet ({model_dir})",
                "build it: key b on this screen, or xtuner-wizard demo-model"
                + (" --arch qwen2" if model_dir.name == "demo-qwen2" else ""),
            )
        ], None
    if not model_dir.is_dir():
        what = "is not a folder" if model_dir.exists() else "not found"
        return [
            Check(
                "model",
                "fail",
                f"{model_dir} {what}",
                "pass --model PATH to a Hugging Face model folder (config.json, tokenizer, weights)",
            )
        ], None
    checks: list[Check] = []
    cfg: dict[str, Any] = {}
    cfg_path = model_dir / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        if not isinstance(cfg, dict):
            raise ValueError("not a JSON object")
        arch = ", ".join(cfg.get("architectures") or []) or cfg.get("model_type") or "?"
        if "model_type" not in cfg and not cfg.get("architectures"):
            checks.append(
                Check(
                    "model config",
                    "fail",
                    f"{cfg_path} names no model_type or architectures",
                    "copy the model's own config.json into the folder",
                )
            )
        else:
            checks.append(Check("model config", "ok", f"{arch} ({model_dir})"))
    except FileNotFoundError:
        checks.append(
            Check(
                "model config",
                "fail",
                f"no config.json in {model_dir}",
                "download the whole model folder (config.json, tokenizer files, weights)",
            )
        )
    except RecursionError:
        cfg = {}
        checks.append(
            Check(
                "model config",
                "fail",
                f"{cfg_path} is not valid JSON: nested too deeply",
                "re-download config.json",
            )
        )
    except (OSError, ValueError) as exc:
        cfg = {}
        checks.append(
            Check(
                "model config",
                "fail",
                f"{cfg_path} is not valid JSON: {exc}",
                "re-download config.json",
            )
        )

    tok_files = [f for f in TOKENIZER_FILES if (model_dir / f).is_file()]
    tok_cfg: dict[str, Any] = {}
    tok_cfg_path = model_dir / "tokenizer_config.json"
    tok_cfg_error = None
    try:
        loaded = json.loads(tok_cfg_path.read_text(encoding="utf-8"))
        tok_cfg = loaded if isinstance(loaded, dict) else {}
    except FileNotFoundError:
        pass
    except RecursionError:
        tok_cfg_error = "nested too deeply"
    except (OSError, ValueError) as exc:
        tok_cfg_error = str(exc)
    if tok_cfg_error is not None:
        checks.append(
            Check(
                "tokenizer",
                "fail",
                f"{tok_cfg_path} is not valid JSON: {tok_cfg_error}",
                "re-download tokenizer_config.json",
            )
        )
    elif tok_files:
        extra = f", template: {'yes' if tok_cfg.get('chat_template') else 'no'}"
        checks.append(Check("tokenizer", "ok", ", ".join(tok_files) + (extra if tok_cfg else "")))
    else:
        checks.append(
            Check(
                "tokenizer",
                "fail",
                f"no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}) in {model_dir}",
                "copy the tokenizer files from the original model folder",
            )
        )

    weights, missing = _weights(model_dir)
    size = sum(p.stat().st_size for p in weights) or None
    if missing:
        checks.append(
            Check(
                "weights",
                "fail",
                f"missing shards: {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""),
                "finish the download (all files the index names must be there)",
            )
        )
    elif not weights:
        checks.append(
            Check(
                "weights",
                "fail",
                f"no weight files (*.safetensors, *.bin) in {model_dir}",
                "download the model's weight files into the folder",
            )
        )
    else:
        names = ", ".join(p.name for p in weights[:2]) + (
            f" +{len(weights) - 2} more" if len(weights) > 2 else ""
        )
        checks.append(Check("weights", "ok", f"{names}, {human_bytes(size or 0)}"))

    code = _auto_map_files(cfg.get("auto_map")) | _auto_map_files(tok_cfg.get("auto_map"))
    remote = sorted(f for f in code if "--" not in f)
    hub_refs = sorted(f for f in code if "--" in f)
    absent = [f for f in remote if not (model_dir / f).is_file()]
    if hub_refs or absent:
        checks.append(
            Check(
                "remote code",
                "fail",
                "auto_map names code that is not in the folder: " + ", ".join(hub_refs + absent),
                "copy those .py files from the original model folder (there is no model hub here)",
            )
        )
    elif remote or any(model_dir.glob("*.py")):
        checks.append(check_remote_code(model_dir, ws))
    else:
        checks.append(Check("remote code", "ok", "none (transformers' own code)"))
    return checks, size


# --- the dataset --------------------------------------------------------------------------
def _basic_dataset_check(path: Path) -> Check:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return Check("dataset", "fail", f"{path} is not UTF-8 text", "save it as UTF-8 JSON")
    except RecursionError:
        return Check("dataset", "fail", f"{path}: JSON nested too deeply", "fix the dataset")
    except ValueError as exc:
        return Check(
            "dataset",
            "fail",
            f"{path}: invalid JSON at line {getattr(exc, 'lineno', '?')}: {getattr(exc, 'msg', exc)}",
            "fix the JSON there, or regenerate it in the Data step",
        )
    if not isinstance(data, list) or not data:
        return Check(
            "dataset",
            "fail",
            f"{path}: expected a non-empty JSON list of conversations",
            'each item: {"conversation": [{"input": ..., "output": ...}]}',
        )
    for i, item in enumerate(data):
        conv = item.get("conversation") if isinstance(item, dict) else None
        if not isinstance(conv, list) or not conv:
            return Check(
                "dataset",
                "fail",
                f"{path}: item {i} has no 'conversation' list",
                'each item: {"conversation": [{"input": ..., "output": ...}]}',
            )
        for turn in conv:
            if not isinstance(turn, dict) or not isinstance(turn.get("output"), str):
                return Check(
                    "dataset",
                    "fail",
                    f"{path}: item {i} has a turn without an 'output' string",
                    'each turn: {"input": "...", "output": "..."}',
                )
    return Check("dataset", "ok", f"{len(data)} conversations ({path})")


def _validator() -> Callable[..., Any] | None:
    """engine.data.validate.validate_file (the Data step's validator), when it is there."""
    if importlib.util.find_spec("engine.data.validate") is None:
        return None
    try:
        from engine.data.validate import validate_file
    except Exception:
        return None
    return validate_file


def check_dataset(path: Path, *, explicit: bool = False) -> Check:
    if not path.exists():
        if explicit:
            return Check(
                "dataset",
                "fail",
                f"{path} not found",
                "pass --data PATH to a JSON dataset, or make one in the Data step",
            )
        return Check(
            "dataset",
            "warn",
            f"not made yet ({path})",
            "the Data step writes it (or: xtuner-wizard data)",
        )
    validate = _validator()
    if validate is None:
        return _basic_dataset_check(path)
    try:
        report = validate(path)
    except Exception as exc:  # the validator's own bug must not hide the basic result
        basic = _basic_dataset_check(path)
        return Check(basic.name, basic.status, basic.detail + f" (validator: {exc})", basic.fix)
    errors = list(report.errors)
    n_errors = len(errors) + int(getattr(report, "omitted_errors", 0))
    if n_errors:
        first = errors[0] if errors else None
        detail = f"{n_errors} problem(s)"
        if first is not None:
            detail += f"; first: {first.where}: {first.message}"
        fix = (first.fix if first is not None and first.fix else "") or "fix it in the Data step"
        return Check("dataset", "fail", detail, fix)
    detail = f"{getattr(report, 'n_records', len(report.records))} conversations ({path})"
    warnings = list(report.warnings)
    if warnings:
        w = warnings[0]
        return Check(
            "dataset",
            "warn",
            detail + f"; {len(warnings)} warning(s), first: {w.where}: {w.message}",
            w.fix,
        )
    return Check("dataset", "ok", detail)


# --- everything ---------------------------------------------------------------------------
def run_checks(
    ws: Workspace,
    model: str | Path | None = None,
    dataset: str | Path | None = None,
    *,
    probe: bool = True,
    sampler: GpuSampler | None = None,
    on_check: Callable[[Check], None] | None = None,
    cancel: threading.Event | None = None,
    fresh_probe: bool = True,
) -> list[Check]:
    """All the checks, in display order. ``on_check`` is called as each one is known.

    ``probe=False`` skips the torch/CUDA/bitsandbytes child process (seconds); setting
    ``cancel`` stops that child at once; ``fresh_probe=False`` reuses this process's last
    probe of the same install (up to 10 minutes old).
    """
    checks: list[Check] = []

    def add(*new: Check) -> None:
        for c in new:
            checks.append(c)
            if on_check is not None:
                on_check(c)

    add(check_python())
    add(*check_packages())
    if probe:
        probed = probe_torch_cached(refresh=fresh_probe, cancel=cancel)
        add(*checks_from_probe(probed))
    sampler = sampler or GpuSampler()
    add(*checks_from_gpus(sampler.sample(), sampler.error))
    add(check_cpu())
    model_dir, is_demo = model_dir_of(ws, model)
    model_checks, size = check_model(model_dir, is_demo=is_demo, ws=ws) if model_dir else ([], None)
    model_bytes = size or (DEMO_MODEL_BYTES if is_demo else DEFAULT_MODEL_BYTES)
    add(check_ram(model_bytes))
    add(check_disk(ws.root, model_bytes))
    add(*model_checks)
    from engine.selection import dataset_path

    add(check_dataset(dataset_path(ws, dataset), explicit=dataset is not None))
    return checks
