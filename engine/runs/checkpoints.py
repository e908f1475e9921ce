"""A run's checkpoints: which are its own, which are whole.

Every run trains into a work dir of its own (``work_dirs/<run id>``), so a run's checkpoints are
the ``iter_N.pth`` in that folder and nothing else. mmengine saves with ``torch.save``, whose
format is a zip archive: a save cut short (a full disk, a kill) leaves a file without the zip's
central directory, which is what :func:`is_whole` checks (it reads only the file's tail). Such a
file is never offered to resume or merge; an older whole one is.

With DeepSpeed, mmengine's FlexibleRunner saves each checkpoint as a *folder*
``work_dir/iter_N.pth/`` (``deepspeed.save_checkpoint(work_dir, tag="iter_N.pth")``) holding
``mp_rank_00_model_states.pt`` (ZeRO 1/2) or ``zero_pp_rank_R_mp_rank_00_model_states.pt``
(ZeRO 3) and one ``*_optim_states.pt`` per data-parallel rank; ``last_checkpoint`` names the
folder. It is whole when every ``.pt`` in it is.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import WizardError

MODEL_STATES_GLOB = "*_model_states.pt"
OPTIM_STATES_GLOB = "*_optim_states.pt"
_ITER_NAME = re.compile(r"iter_(\d+)\.pth")


def checkpoint_iteration(path: Path | str) -> int | None:
    """N of ``iter_N.pth`` (file or folder); None for other names."""
    m = _ITER_NAME.fullmatch(Path(path).name)
    return int(m.group(1)) if m else None


def _whole_file(path: Path) -> bool:
    """A ``torch.save`` archive with its central directory (written last): not cut short."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def is_zero_checkpoint(path: Path | str) -> bool:
    """Whether ``path`` is a DeepSpeed checkpoint folder (``*_model_states.pt`` inside)."""
    p = Path(path)
    return p.is_dir() and any(p.glob(MODEL_STATES_GLOB))


def is_whole(path: Path | str) -> bool:
    """A checkpoint mmengine can resume and pth_to_hf can convert, written to the end: a whole
    ``.pth`` archive, or a ZeRO folder whose every ``.pt`` is whole."""
    p = Path(path)
    if p.is_file():
        return _whole_file(p)
    if is_zero_checkpoint(p):
        return all(_whole_file(f) for f in p.glob("*.pt"))
    return False


is_checkpoint = is_whole  # what resume and merge accept


@dataclass(frozen=True)
class ZeroCheckpointInfo:
    path: Path
    stage: str  # "3" or "1/2" (the files do not tell 1 from 2)
    world_size: int  # data-parallel ranks that wrote optimizer shards (0: none saved)
    bytes: int


def zero_checkpoint_info(path: Path | str) -> ZeroCheckpointInfo:
    """Stage, data-parallel world size and size of a ZeRO checkpoint folder."""
    p = Path(path)
    if not is_zero_checkpoint(p):
        raise WizardError(
            "not a DeepSpeed checkpoint folder",
            where=str(p),
            fix="give an iter_N.pth folder holding *_model_states.pt files",
        )
    models = [f.name for f in p.glob(MODEL_STATES_GLOB)]
    stage = "3" if any(n.startswith("zero_pp_rank_") for n in models) else "1/2"
    optim = list(p.glob(OPTIM_STATES_GLOB))
    size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return ZeroCheckpointInfo(path=p, stage=stage, world_size=len(optim), bytes=size)


def checkpoint_bytes(path: Path | str) -> int:
    p = Path(path)
    return zero_checkpoint_info(p).bytes if is_zero_checkpoint(p) else p.stat().st_size


def checkpoints_in(work_dir: Path | str) -> list[Path]:
    """The whole ``iter_N.pth`` files and ZeRO folders of a work dir, oldest first."""
    try:
        candidates = list(Path(work_dir).glob("iter_*.pth"))
    except OSError:
        return []
    found = [p for p in candidates if checkpoint_iteration(p) is not None and is_whole(p)]
    return sorted(found, key=lambda p: checkpoint_iteration(p) or 0)


def partial_checkpoints_in(work_dir: Path | str) -> list[Path]:
    """``iter_N.pth`` left cut short (a full disk, a kill while saving)."""
    try:
        candidates = list(Path(work_dir).glob("iter_*.pth"))
    except OSError:
        return []
    return sorted(
        (p for p in candidates if checkpoint_iteration(p) is not None and not is_whole(p)),
        key=lambda p: checkpoint_iteration(p) or 0,
    )


def newest_checkpoint(work_dir: Path | str) -> Path | None:
    """The newest whole checkpoint of ``work_dir``: the one mmengine's ``last_checkpoint`` names
    (or the same name here, when the workspace moved) if it is whole, else the highest whole
    ``iter_N.pth`` file or ZeRO folder."""
    work_dir = Path(work_dir)
    try:
        named = Path((work_dir / "last_checkpoint").read_text(encoding="utf-8").strip())
    except OSError:
        named = None
    if named is not None and named.name and is_whole(work_dir / named.name):
        return work_dir / named.name  # (its own folder only: the absolute path may be stale)
    found = checkpoints_in(work_dir)
    return found[-1] if found else None


def run_checkpoints(record) -> list[Path]:
    """A run's own whole checkpoints (its work dir only), oldest first."""
    return checkpoints_in(record.work_dir)


def resume_point(record) -> Path | None:
    """Where a new run continues ``record``: its newest whole checkpoint, else (it saved none,
    or only a partial one) the whole checkpoint it itself resumed from."""
    own = newest_checkpoint(record.work_dir)
    if own is not None:
        return own
    if record.resumed_from and is_whole(record.resumed_from):
        return Path(record.resumed_from)
    return None


def check_resume(plan, checkpoint: Path | str) -> None:
    """A ZeRO checkpoint resumes only under DeepSpeed and the world size that wrote it
    (DeepSpeed 0.16.2 raises ZeRORuntimeException "Automatic adjustment of ZeRO's optimizer state
    partitioning with a new world size is not currently supported")."""
    if not is_zero_checkpoint(checkpoint):
        return
    info = zero_checkpoint_info(checkpoint)
    if plan.deepspeed is None:
        raise WizardError(
            "this checkpoint is a DeepSpeed (ZeRO) folder; it resumes only under DeepSpeed",
            where=str(checkpoint),
            fix="resume with --deepspeed "
            + ("zero3" if info.stage == "3" else "zero2")
            + " (the stage it was trained with)",
        )
    if info.world_size and info.world_size != plan.world_size:
        raise WizardError(
            f"this checkpoint was written by {info.world_size} GPUs; the plan has "
            f"{plan.world_size}",
            where=str(checkpoint),
            fix=f"resume on {info.world_size} GPUs (ZeRO shards the optimizer per GPU), or "
            "convert it with `xtuner-wizard merge` and start a new run",
        )
