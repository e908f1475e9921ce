"""Convert a training checkpoint to a LoRA adapter and merge it into the base model.

The tutorial's two commands, run as child processes for real exit codes:

    python -m xtuner.tools.model_converters.pth_to_hf CFG PTH <ws>/hf --safe-serialization
    python -m xtuner.tools.model_converters.merge BASE <ws>/hf <ws>/merged --safe-serialization --device cpu|cuda

Before them: the base must be full precision (a 4-bit base cannot take a merge), the disk
must hold the merged model, and an existing hf/ or merged/ is moved aside, never overwritten.
After them: the merged model is loaded with transformers in a child process (the load check),
and ``merged/xtuner_wizard.json`` records where it came from and its prompt template.
Progress goes to ``progress(phase, detail)``; every child's output is kept in
``.wizard/merge.log`` so a failure shows its tail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import WizardError
from engine.workspace import Workspace, atomic_write

PHASES = ("convert", "merge", "save", "check")
PHASE_TITLES = {
    "convert": "adapter conversion (pth_to_hf)",
    "merge": "base load and merge",
    "save": "save (safetensors)",
    "check": "load check",
}
LOG_NAME = "merge.log"
INFO_FILE = "xtuner_wizard.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
MERGED_DTYPE_BYTES = 2  # xtuner's merge loads the base in float16

Progress = Callable[[str, str], None]


class MergeFailed(WizardError):
    """A conversion/merge child failed: carries the tail of its log."""

    def __init__(self, message: str, *, log_path: Path, tail: list[str], fix: str | None = None):
        super().__init__(message, where=str(log_path), fix=fix)
        self.log_path = log_path
        self.tail = tail


@dataclass
class MergeSource:
    config: Path
    checkpoint: Path
    base_model: Path
    run_id: str | None = None
    prompt_template: str | None = None
    notes: list[str] = field(default_factory=list)


# -- where things come from -------------------------------------------------------------
def _base_from_choice(ws: Workspace) -> Path | None:
    choice = ws.load_state().choices.get("model")
    if not choice:
        return None
    from engine.demo import choice_dir

    return choice_dir(ws, choice) or ws.path(choice)


def checkpoint_bytes(path: Path) -> int:
    """Size of a checkpoint: an ``iter_N.pth`` file or a DeepSpeed folder of shards."""
    from engine.runs.checkpoints import is_zero_checkpoint, zero_checkpoint_info

    return zero_checkpoint_info(path).bytes if is_zero_checkpoint(path) else path.stat().st_size


def checkpoints_of(work_dir: Path) -> list[Path]:
    """Checkpoints of a work dir, oldest first: ``iter_N.pth`` files and DeepSpeed folders."""
    from engine.runs.checkpoints import checkpoints_in

    return checkpoints_in(work_dir)


def resolve_source(
    ws: Workspace,
    *,
    run: str | None = None,
    checkpoint: str | Path | None = None,
    config: str | Path | None = None,
    base_model: str | Path | None = None,
) -> MergeSource:
    """The config, checkpoint and base model a merge uses (a run record, or paths given)."""
    from engine.chat.templates import config_settings
    from engine.distributed import check_deepspeed
    from engine.runs.checkpoints import is_checkpoint, is_zero_checkpoint, run_to_merge
    from engine.runs.control import refresh
    from engine.runs.launch import last_checkpoint
    from engine.runs.records import list_runs

    record = run_to_merge(ws, run) if (checkpoint is None or run is not None) else None
    if checkpoint is not None:
        pth = ws.path(checkpoint)
        if not is_checkpoint(pth):
            raise WizardError(
                "checkpoint not found",
                where=str(pth),
                fix="give an iter_N.pth file or a DeepSpeed iter_N.pth/ folder",
            )
        if record is None:  # the run that wrote it, when there is one
            same = [r for r in list_runs(ws) if Path(r.work_dir).resolve() == pth.parent.resolve()]
            record = same[-1] if same else None
    else:
        record = refresh(record)  # a run whose supervisor died is not "running" any more
        if record.active:
            raise WizardError(
                f"run {record.id} is still {record.state}",
                fix="wait for it to finish (or stop it), or pass --checkpoint PTH",
            )
        pth = last_checkpoint(record.work_dir)  # its own whole checkpoints only
        if pth is None:
            raise WizardError(
                f"run {record.id} has no checkpoint",
                where=record.work_dir,
                fix="train until the first save (save_steps), or resume the run",
            )
    if is_zero_checkpoint(pth):
        check_deepspeed()  # pth_to_hf needs DeepSpeed to read a ZeRO folder
    run_id = record.id if record else None
    if config is None and record is not None:
        config = record.config
    if config is None:
        # The config trained (the workspace's), else mmengine's dump in the work dir (a dump
        # loses statements such as the CPU patch, so it is the last resort).
        chosen = ws.load_state().choices.get("config")
        if chosen and ws.path(chosen).stem == pth.parent.name and ws.path(chosen).is_file():
            config = ws.path(chosen)
        else:
            copies = sorted(pth.parent.glob("*.py"))
            config = copies[0] if copies else (ws.path(chosen) if chosen else None)
    if config is None:
        raise WizardError("no config for this checkpoint", fix="pass --config CFG")
    cfg_path = ws.path(config)
    if not cfg_path.is_file():
        raise WizardError("config not found", where=str(cfg_path), fix="pass --config CFG")
    settings = config_settings(cfg_path)
    notes = []
    if base_model is None:
        named = settings.get("pretrained_model_name_or_path")
        if named and Path(named).expanduser().is_dir():
            base_model = Path(named).expanduser()
        else:
            base_model = _base_from_choice(ws)
            if named:
                notes.append(
                    f"the config's model {named!r} is not a folder here; using {base_model}"
                )
    if base_model is None:
        raise WizardError(
            "no base model for the merge",
            where=str(cfg_path),
            fix="set pretrained_model_name_or_path in the config, or pass --base MODEL",
        )
    base = ws.path(base_model)
    if not (base / "config.json").is_file():
        raise WizardError(
            "the base model folder has no config.json",
            where=str(base),
            fix="pass --base with the full-precision model the run was trained on",
        )
    return MergeSource(
        config=cfg_path,
        checkpoint=pth,
        base_model=base,
        run_id=run_id,
        prompt_template=settings.get("prompt_template"),
        notes=notes,
    )


# -- checks before starting --------------------------------------------------------------
def check_full_precision(base: Path) -> None:
    """Refuse a quantized (4-bit/8-bit) base: a LoRA cannot be merged into packed weights."""
    try:
        cfg = json.loads((base / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WizardError(f"cannot read config.json: {exc}", where=str(base)) from exc
    q = cfg.get("quantization_config")
    if q:
        kind = (
            "4-bit"
            if q.get("load_in_4bit") or q.get("bnb_4bit_quant_type")
            else ("8-bit" if q.get("load_in_8bit") else q.get("quant_method", "quantized"))
        )
        raise WizardError(
            f"the base model is {kind} (config.json has quantization_config); merging a LoRA "
            "into quantized weights would lose the precision the adapter was trained against",
            where=str(base / "config.json"),
            fix="merge into the original full-precision (bf16/fp16/fp32) model: --base MODEL",
        )


def weights_bytes(model_dir: Path) -> int:
    return sum(
        p.stat().st_size
        for p in Path(model_dir).iterdir()
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES
    )


def estimate_merged_bytes(base: Path) -> int:
    """The merged model's size: the base's weights at float16 (xtuner's merge) plus 5%."""
    try:
        cfg = json.loads((base / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}
    per_param = DTYPE_BYTES.get(str(cfg.get("torch_dtype", "float16")), 2)
    size = weights_bytes(base) * MERGED_DTYPE_BYTES // per_param
    small = sum(
        p.stat().st_size for p in base.iterdir() if p.is_file() and p.suffix not in WEIGHT_SUFFIXES
    )
    return int(size * 1.05) + small


def free_bytes(path: Path) -> int:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_free_space(path: Path, needed: int, *, limit: int | None = None) -> int:
    """Raise when the disk holding ``path`` has less than ``needed`` bytes free.

    ``limit`` stands in for the free space (tests simulate a full disk with it)."""
    free = free_bytes(path) if limit is None else int(limit)
    if free < needed:
        raise WizardError(
            f"not enough disk for the merged model: needs {_human(needed)}, {_human(free)} free",
            where=str(path),
            fix="free some space (old merged.previous-* folders, checkpoints) or use --out on another disk",
        )
    return free


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def move_aside(path: Path) -> Path | None:
    """Rename an existing output folder to ``<name>.previous-<stamp>`` (no copy, no loss)."""
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = path.with_name(f"{path.name}.previous-{stamp}")
    n = 1
    while dest.exists():
        dest = path.with_name(f"{path.name}.previous-{stamp}-{n}")
        n += 1
    os.replace(path, dest)
    return dest


# -- the children -------------------------------------------------------------------------
def _run_child(
    argv: list[str],
    log_path: Path,
    on_line: Callable[[str], None],
    *,
    cwd: Path,
    fail_message: str,
    fix: str,
) -> None:
    from engine.xtuner_env import child_env

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(
            argv,
            cwd=str(cwd),
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        buf = b""
        while True:
            chunk = (
                proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096)
            )
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.replace(b"\r", b"\n").split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    log.write(line + "\n")
                    on_line(line)
            log.flush()
        if buf.strip():
            line = buf.decode("utf-8", "replace").rstrip()
            log.write(line + "\n")
            on_line(line)
        code = proc.wait()
        log.write(f"[exit {code}]\n")
    if code != 0:
        tail = log_tail(log_path)
        raise MergeFailed(
            f"{fail_message} (exit code {code})", log_path=log_path, tail=tail, fix=fix
        )


def log_tail(log_path: Path, n: int = 20) -> list[str]:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return lines[-n:]


# On a GPU the merged model loads there, in the dtype it was saved in (float16), as chat will
# load it; only without one does transformers' CPU default (float32) apply.
LOAD_CHECK = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
path = sys.argv[1]
cuda = torch.cuda.is_available()
tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained(
    path, trust_remote_code=True, **({"torch_dtype": "auto"} if cuda else {}))
if cuda:
    model.to("cuda")
n = sum(p.numel() for p in model.parameters())
print("LOADCHECK " + json.dumps({"parameters": n, "dtype": str(next(model.parameters()).dtype),
      "architecture": type(model).__name__, "vocab": len(tok)}))
"""


def load_check(model_dir: Path, log_path: Path) -> dict:
    """Load the merged model with transformers in a child process; its facts or MergeFailed."""
    from engine.xtuner_env import python_executable

    found: dict = {}

    def on_line(line: str) -> None:
        if line.startswith("LOADCHECK "):
            found.update(json.loads(line[len("LOADCHECK ") :]))

    _run_child(
        [python_executable(), "-c", LOAD_CHECK, str(model_dir)],
        log_path,
        on_line,
        cwd=model_dir,
        fail_message="the merged model does not load with transformers",
        fix="see the log; merge again",
    )
    return found


# -- the whole step -----------------------------------------------------------------------
def convert_and_merge(
    ws: Workspace,
    *,
    run: str | None = None,
    checkpoint: str | Path | None = None,
    config: str | Path | None = None,
    out: str | Path | None = None,
    base_model: str | Path | None = None,
    device: str | None = None,
    progress: Progress | None = None,
    disk_limit: int | None = None,
) -> Path:
    """pth_to_hf + merge into ``out`` (default ``<ws>/merged``); returns the merged folder."""
    from engine.xtuner_env import MERGE_MODULE, PTH_TO_HF_MODULE, module_command

    say = progress or (lambda phase, detail: None)
    ws.ensure()
    src = resolve_source(ws, run=run, checkpoint=checkpoint, config=config, base_model=base_model)
    for note in src.notes:
        say("prepare", note)
    check_full_precision(src.base_model)
    out_dir = ws.path(out) if out else ws.merged_dir
    hf_dir = ws.hf_dir if out is None else out_dir.with_name(out_dir.name + "-adapter")
    needed = estimate_merged_bytes(src.base_model) + checkpoint_bytes(src.checkpoint)
    free = check_free_space(out_dir.parent, needed, limit=disk_limit)
    say("prepare", f"disk: needs ~{_human(needed)}, {_human(free)} free")
    for folder in (hf_dir, out_dir):
        moved = move_aside(folder)
        if moved:
            say("prepare", f"kept the previous {folder.name}/ as {moved.name}/")
    if device is None:
        device = _cuda_or_cpu()
    log_path = ws.wizard_dir / LOG_NAME
    log_path.write_text(f"# merge {time.strftime('%Y-%m-%d %H:%M:%S')}\n", encoding="utf-8")

    # 1. adapter conversion
    say("convert", f"{ws.rel(src.checkpoint)} -> {ws.rel(hf_dir)}/")

    def on_convert(line: str) -> None:
        if "Load State Dict" in line and "%" in line:
            say(
                "convert", "load state dict " + line.split("Load State Dict", 1)[1].strip(": ")[:40]
            )
        elif "Load PTH model" in line:
            say("convert", "checkpoint loaded; saving the adapter")

    _run_child(
        module_command(
            PTH_TO_HF_MODULE,
            str(src.config),
            str(src.checkpoint),
            str(hf_dir),
            "--safe-serialization",
        ),
        log_path,
        on_convert,
        cwd=ws.root,
        fail_message="pth_to_hf failed",
        fix="see the log tail; the config must be the one the checkpoint was trained with",
    )
    if not (hf_dir / "adapter_config.json").is_file():
        raise MergeFailed(
            "pth_to_hf wrote no adapter_config.json (was this a full fine-tune?)",
            log_path=log_path,
            tail=log_tail(log_path),
        )

    # 2-3. base load + merge, save
    say("merge", f"loading {src.base_model.name} ({device}) and merging the adapter")

    def on_merge(line: str) -> None:
        if line.startswith("Saving to"):
            say("save", f"writing {ws.rel(out_dir)}/ (safetensors)")
        elif "Loading checkpoint shards" in line and "%" in line:
            say("merge", "loading the base " + line.split(":", 1)[-1].strip()[:40])

    _run_child(
        module_command(
            MERGE_MODULE,
            str(src.base_model),
            str(hf_dir),
            str(out_dir),
            "--safe-serialization",
            "--device",
            device,
        ),
        log_path,
        on_merge,
        cwd=ws.root,
        fail_message="merge failed",
        fix="see the log tail; the base must be the model the run was trained on",
    )
    if not list(out_dir.glob("*.safetensors")):
        raise MergeFailed("merge wrote no .safetensors", log_path=log_path, tail=log_tail(log_path))

    # 4. load check
    say("check", "loading the merged model with transformers")
    facts = load_check(out_dir, log_path)
    info = {
        "prompt_template": src.prompt_template,
        "config": str(src.config),
        "checkpoint": str(src.checkpoint),
        "base_model": str(src.base_model),
        "adapter": str(hf_dir),
        "run": src.run_id,
        "merged_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_check": facts,
    }
    atomic_write(out_dir / INFO_FILE, json.dumps(info, indent=2, ensure_ascii=False))
    state = ws.load_state()
    state.choices["merged"] = ws.rel(out_dir)
    state.choices["adapter"] = ws.rel(hf_dir)
    ws.save_state(state)
    ws.mark_done("merge")
    params = facts.get("parameters")
    say("done", f"{ws.rel(out_dir)}/ loads ({params / 1e6:.1f}M parameters)" if params else "done")
    return out_dir


def _cuda_or_cpu() -> str:
    """cuda when a GPU is visible (asked cheaply, without importing torch)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return "cpu"
    return "cuda" if Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") else "cpu"


def latest_merged(ws: Workspace) -> Path | None:
    """The workspace's merged model: state's choice, else <ws>/merged when it is there."""
    choice = ws.load_state().choices.get("merged")
    for cand in ([ws.path(choice)] if choice else []) + [ws.merged_dir]:
        if (cand / "config.json").is_file():
            return cand
    return None
