"""Convert a training checkpoint to a LoRA adapter and merge it into the base model.

The tutorial's two commands, run in one child process (``python -m engine.merge_child``,
real exit codes, killable, torch never imported by the wizard) that calls each tool's
``main()`` with these arguments, so python starts and imports xtuner once, not twice:

    python -m xtuner.tools.model_converters.pth_to_hf CFG PTH <ws>/hf --safe-serialization
    python -m xtuner.tools.model_converters.merge BASE <ws>/hf <ws>/merged --safe-serialization --device cpu|cuda

Before them: the base must be full precision (a 4-bit base cannot take a merge), the disk
must hold the merged model, and an existing hf/ or merged/ is moved aside, never overwritten.
After them, in the same child: the merged model is loaded with transformers (the load check);
then ``merged/xtuner_wizard.json`` records where it came from and its prompt template.
Progress goes to ``progress(phase, detail)``; the child's output is kept in
``.wizard/merge.log`` so a failure shows its tail (and which step failed).
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
    from engine.selection import model_dir

    return model_dir(ws)


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
    from engine.runs.checkpoints import is_checkpoint, is_zero_checkpoint, newest_checkpoint
    from engine.runs.control import refresh, run_to_merge
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
        pth = newest_checkpoint(record.work_dir)  # its own whole checkpoints only
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


# -- merged folders: staged, published whole, the previous one kept --------------------------
# A merge writes into a hidden folder beside its target and is renamed into place only when
# the load check passed and the marker (INFO_FILE with "complete": true) is written; the
# previous good model stays where it was until then. A killed merge leaves only the staging
# folder (named with its pid), removed by the next merge once that pid is gone.
STAGING_TAG = ".merging-"
PREVIOUS_SUFFIX = ".previous"


def is_complete_merge(path: Path | str | None) -> bool:
    """True for a merged model the wizard finished: its marker says complete (or, from older
    versions, records a passed load check), and config.json and weights are there."""
    if path is None:
        return False
    path = Path(path)
    try:
        info = json.loads((path / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(info, dict) or not (info.get("complete") is True or info.get("load_check")):
        return False
    return (path / "config.json").is_file() and any(
        p.suffix in WEIGHT_SUFFIXES for p in path.iterdir() if p.is_file()
    )


def check_merge_out(ws: Workspace, out_dir: Path) -> None:
    """Refuse an output folder that is the workspace, one of its parents, a file, or a
    non-empty folder that is not an earlier merge (nothing of the user's is moved away)."""
    out_dir = Path(os.path.abspath(out_dir))
    root = ws.root
    if out_dir == root or out_dir in root.parents:
        raise WizardError(
            "is the workspace or a folder above it; the merged model needs a folder of its own",
            where=str(out_dir),
            fix="pass a new folder, e.g. --out merged-2",
        )
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise WizardError(
            "is a file or a link, not a folder", where=str(out_dir), fix="pass a new folder"
        )
    if out_dir == ws.merged_dir or not out_dir.exists():
        return  # the wizard's own merged/ is always moved aside, never deleted
    if any(out_dir.iterdir()) and not is_complete_merge(out_dir):
        raise WizardError(
            "is not empty and holds no merged model of the wizard's; not moving it",
            where=str(out_dir),
            fix="pass an empty or new folder",
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(out_dir: Path) -> list[Path]:
    """Remove staging folders beside ``out_dir`` left by merges whose process is gone."""
    removed = []
    for tmp in out_dir.parent.glob(f".{out_dir.name}{STAGING_TAG}*"):
        try:
            pid = int(tmp.name[len(f".{out_dir.name}{STAGING_TAG}") :].split("-", 1)[0])
        except ValueError:
            continue
        if tmp.is_dir() and not _pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def staging_dir(out_dir: Path) -> Path:
    """A new empty staging folder beside ``out_dir`` (same disk: the rename is atomic)."""
    import tempfile

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_dir)
    return Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}{STAGING_TAG}{os.getpid()}-", dir=out_dir.parent)
    )


def mark_complete(folder: Path, info: dict) -> None:
    """Write the marker (written last: its presence means the folder is complete)."""
    atomic_write(folder / INFO_FILE, json.dumps({**info, "complete": True}, indent=2))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False when unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def previous_merges(out_dir: Path) -> list[Path]:
    """Earlier models of ``out_dir``, newest first: ``<name>.previous``, then older ones."""
    first = out_dir.with_name(out_dir.name + PREVIOUS_SUFFIX)
    older = sorted(
        (p for p in out_dir.parent.glob(f"{out_dir.name}{PREVIOUS_SUFFIX}-*") if p.is_dir()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    return ([first] if first.is_dir() else []) + older


def folder_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            continue
    return total


def publish(staged: Path, out_dir: Path) -> Path | None:
    """Put the finished ``staged`` folder at ``out_dir``; what was there becomes
    ``<name>.previous`` (an older ``.previous`` is renamed ``.previous-<stamp>``, never
    deleted here). Returns where the old folder went. The swap is one atomic rename where
    the kernel can: at no moment is ``out_dir`` missing or half-written."""
    if not out_dir.exists() and not out_dir.is_symlink():
        os.replace(staged, out_dir)
        return None
    previous = out_dir.with_name(out_dir.name + PREVIOUS_SUFFIX)
    if previous.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(previous.stat().st_mtime))
        dest = previous.with_name(f"{previous.name}-{stamp}")
        n = 1
        while dest.exists():
            dest = previous.with_name(f"{previous.name}-{stamp}-{n}")
            n += 1
        os.replace(previous, dest)
    if _exchange(staged, out_dir):
        os.replace(staged, previous)  # staged now holds the old model
    else:
        os.replace(out_dir, previous)
        os.replace(staged, out_dir)
    return previous


def older_merges(out_dir: Path, keep: int = 1) -> list[tuple[Path, int]]:
    """The earlier models of ``out_dir`` beyond the newest ``keep`` (``merged.previous`` is the
    one kept), with their sizes: what the Merge step offers to remove, asking first."""
    return [(old, folder_bytes(old)) for old in previous_merges(out_dir)[max(keep, 0) :]]


def prune_previous(out_dir: Path, keep: int) -> list[tuple[Path, int]]:
    """Remove earlier models of ``out_dir`` beyond the newest ``keep``; (folder, bytes) each."""
    removed = []
    for old in previous_merges(out_dir)[max(keep, 0) :]:
        size = folder_bytes(old)
        shutil.rmtree(old)
        removed.append((old, size))
    return removed


# -- the child -----------------------------------------------------------------------------
CHILD_MODULE = "engine.merge_child"
# What a failure in each step of the child says (the step it was in when it exited).
STEP_FAILURES = {
    "convert": (
        "pth_to_hf failed",
        "see the log tail; the config must be the one the checkpoint was trained with",
    ),
    "merge": (
        "merge failed",
        "see the log tail; the base must be the model the run was trained on",
    ),
    "check": ("the merged model does not load with transformers", "see the log; merge again"),
}


def _run_child(
    argv: list[str],
    log_path: Path,
    on_line: Callable[[str], None],
    *,
    cwd: Path,
) -> int:
    """Run ``argv`` (stdin closed, stderr into stdout), every line into the log and to
    ``on_line`` as it comes; returns the exit code."""
    from engine.xtuner_env import child_env

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(
            argv,
            cwd=str(cwd),
            env=child_env(),  # no TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD: see merge_command
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
    return code


def log_tail(log_path: Path, n: int = 20) -> list[str]:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return lines[-n:]


def merge_command(src: MergeSource, hf_dir: Path, out_dir: Path, device: str) -> list[str]:
    """The one child of a merge (:mod:`engine.merge_child`): xtuner's pth_to_hf and merge,
    called in that process, then the load check; one python start-up for all three.

    Its checkpoint is unpickled in full (xtuner's ``guess_load_checkpoint`` passes
    ``weights_only=False`` itself), which is why :func:`convert_and_merge` lets only the
    workspace's own checkpoints through without ``--trust-checkpoint``; the child's
    environment is the plain :func:`engine.xtuner_env.child_env` (nothing is forced)."""
    from engine.xtuner_env import module_command

    return module_command(
        CHILD_MODULE,
        str(src.config),
        str(src.checkpoint),
        str(hf_dir),
        str(src.base_model),
        str(out_dir),
        device,
    )


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
    keep: int | None = None,
    trust_remote_code: bool = False,
    trust_checkpoint: bool = False,
) -> Path:
    """pth_to_hf + merge into ``out`` (default ``<ws>/merged``); returns the merged folder.

    Written into a staging folder and published whole (:func:`publish`) after the load
    check; the model that was there becomes ``<name>.previous``. ``keep``: remove earlier
    models beyond the newest ``keep`` (sizes reported); without it none is removed.
    """
    say = progress or (lambda phase, detail: None)
    ws.ensure()
    out_dir = Path(os.path.abspath(ws.path(out))) if out else ws.merged_dir
    check_merge_out(ws, out_dir)  # first: `/` has no name to put "-adapter" after
    hf_dir = ws.hf_dir if out is None else out_dir.with_name(out_dir.name + "-adapter")
    src = resolve_source(ws, run=run, checkpoint=checkpoint, config=config, base_model=base_model)
    for note in src.notes:
        say("prepare", note)
    check_full_precision(src.base_model)
    from engine.trust import require_own_checkpoint, require_trusted, trust

    require_own_checkpoint(ws, src.checkpoint, consent=trust_checkpoint)
    require_trusted(ws, src.base_model, consent=trust_remote_code, where="the base model")
    if out is not None and hf_dir.is_dir() and any(hf_dir.iterdir()):
        if not (hf_dir / "adapter_config.json").is_file():
            raise WizardError(
                "is not empty and holds no adapter of the wizard's; not moving it",
                where=str(hf_dir),
                fix="pass another --out (the adapter goes to <out>-adapter)",
            )
    needed = estimate_merged_bytes(src.base_model) + checkpoint_bytes(src.checkpoint)
    free = check_free_space(out_dir.parent, needed, limit=disk_limit)
    say("prepare", f"disk: needs ~{_human(needed)}, {_human(free)} free")
    staged_out = staging_dir(out_dir)
    try:
        staged_hf = staging_dir(hf_dir)
    except BaseException:
        shutil.rmtree(staged_out, ignore_errors=True)
        raise
    try:
        _convert_and_merge_into(
            ws, src, staged_out, staged_hf, out_dir, hf_dir, device=device, say=say
        )
    except BaseException:
        # the previous good model never moved: only the staging folders go
        shutil.rmtree(staged_out, ignore_errors=True)
        shutil.rmtree(staged_hf, ignore_errors=True)
        raise
    for staged, final in ((staged_hf, hf_dir), (staged_out, out_dir)):
        moved = publish(staged, final)
        if moved:
            say("done", f"kept the previous {final.name}/ as {moved.name}/")
    trust(ws, out_dir)  # its code is the base's, confirmed above; the wizard wrote the rest
    with ws.transaction() as state:
        state.choices["merged"] = str(out_dir) if out else ws.rel(out_dir)
        state.choices["adapter"] = str(hf_dir) if out else ws.rel(hf_dir)
        if "merge" not in state.done:
            state.done.append("merge")
    if keep is not None:
        for folder in (hf_dir, out_dir):
            for old, size in prune_previous(folder, keep):
                say("done", f"removed {old.name}/ ({_human(size)})")
    else:
        older = previous_merges(out_dir)[1:]
        if older:
            sizes = ", ".join(f"{p.name}/ ({_human(folder_bytes(p))})" for p in older)
            say("done", f"older merges kept: {sizes}; remove them with --keep 1")
    facts = json.loads((out_dir / INFO_FILE).read_text(encoding="utf-8")).get("load_check", {})
    params = facts.get("parameters")
    say("done", f"{ws.rel(out_dir)}/ loads ({params / 1e6:.1f}M parameters)" if params else "done")
    return out_dir


def _convert_and_merge_into(
    ws: Workspace,
    src: MergeSource,
    out_dir: Path,
    hf_dir: Path,
    final_out: Path,
    final_hf: Path,
    *,
    device: str | None,
    say: Progress,
) -> None:
    """pth_to_hf into ``hf_dir`` and merge into ``out_dir`` (the staging folders), load
    check, marker. ``final_*``: where they will be published (recorded in the marker)."""
    from engine.merge_child import FAIL_NO_ADAPTER, FAIL_NO_SAFETENSORS, parse_mark

    if device is None:
        device = _cuda_or_cpu()
    log_path = ws.wizard_dir / LOG_NAME
    log_path.write_text(f"# merge {time.strftime('%Y-%m-%d %H:%M:%S')}\n", encoding="utf-8")
    # 1. adapter conversion, 2-3. base load + merge, save, 4. load check: one child, which
    # says when it moves on (marker lines); the tools' own lines give the details.
    say("convert", f"{ws.rel(src.checkpoint)} -> {ws.rel(final_hf)}/")
    seen: dict = {"phase": "convert", "fail": None, "facts": None}

    def on_mark(mark: dict) -> None:
        if "fail" in mark:
            seen["fail"] = mark["fail"]
        elif "facts" in mark:
            seen["facts"] = mark["facts"]
        elif mark.get("phase") == "merge":
            seen["phase"] = "merge"
            say("merge", f"loading {src.base_model.name} ({device}) and merging the adapter")
        elif mark.get("phase") == "check":
            seen["phase"] = "check"
            say("check", "loading the merged model with transformers")

    def on_line(line: str) -> None:
        mark = parse_mark(line)
        if mark is not None:
            on_mark(mark)
        elif seen["phase"] == "convert":
            if "Load State Dict" in line and "%" in line:
                detail = line.split("Load State Dict", 1)[1].strip(": ")[:40]
                say("convert", "load state dict " + detail)
            elif "Load PTH model" in line:
                say("convert", "checkpoint loaded; saving the adapter")
        elif seen["phase"] == "merge":
            if line.startswith("Saving to"):
                say("save", f"writing {ws.rel(final_out)}/ (safetensors)")
            elif "Loading checkpoint shards" in line and "%" in line:
                say("merge", "loading the base " + line.split(":", 1)[-1].strip()[:40])

    code = _run_child(merge_command(src, hf_dir, out_dir, device), log_path, on_line, cwd=ws.root)
    if seen["fail"] == FAIL_NO_ADAPTER or (
        code == 0 and not (hf_dir / "adapter_config.json").is_file()
    ):
        raise MergeFailed(
            "pth_to_hf wrote no adapter_config.json (was this a full fine-tune?)",
            log_path=log_path,
            tail=log_tail(log_path),
        )
    if seen["fail"] == FAIL_NO_SAFETENSORS or (
        code == 0 and not list(out_dir.glob("*.safetensors"))
    ):
        raise MergeFailed("merge wrote no .safetensors", log_path=log_path, tail=log_tail(log_path))
    if code != 0 or seen["facts"] is None:
        message, fix = STEP_FAILURES[seen["phase"]]
        raise MergeFailed(
            f"{message} (exit code {code})", log_path=log_path, tail=log_tail(log_path), fix=fix
        )
    facts = seen["facts"]
    info = {
        "prompt_template": src.prompt_template,
        "config": str(src.config),
        "checkpoint": str(src.checkpoint),
        "base_model": str(src.base_model),
        "adapter": str(final_hf),
        "run": src.run_id,
        "merged_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_check": facts,
    }
    mark_complete(out_dir, info)


def _cuda_or_cpu() -> str:
    """cuda when a GPU is visible (asked cheaply, without importing torch)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return "cpu"
    return "cuda" if Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") else "cpu"


def latest_merged(ws: Workspace) -> Path | None:
    """The workspace's merged model: state's choice, else <ws>/merged, if complete
    (:func:`is_complete_merge`); a half-written folder is never picked."""
    choice = ws.load_state().choices.get("merged")
    for cand in ([ws.path(choice)] if choice else []) + [ws.merged_dir]:
        if is_complete_merge(cand):
            return cand
    return None
