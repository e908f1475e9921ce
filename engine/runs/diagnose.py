"""Why did a training run fail? Recognise the cause in its log and say the fix.

``diagnose(log_text, exit_code)`` reads the end of the trainer's output (stdout + stderr) and
returns a :class:`Cause` or ``None`` when the run looks fine (exit 0 and no error). The order of
the checks matters: the most specific cause wins (a CUDA OOM is also a RuntimeError).
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

TAIL_CHARS = 200_000  # only the end of a long log matters


@dataclass(frozen=True)
class Cause:
    kind: str  # cuda_oom | no_cuda | config_error | disk_full | killed | interrupted | missing_file | error
    message: str
    fix: str


_OOM = re.compile(
    r"(CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|"
    r"HIP out of memory|NPU out of memory)",
)
_NO_CUDA = re.compile(
    r"(Torch not compiled with CUDA enabled|Found no NVIDIA driver|No CUDA GPUs are available|"
    r"CUDA driver version is insufficient|no CUDA-capable device is detected|"
    r"``AmpOptimizerWrapper`` is only available training on gpu|"
    r"CUDA is required but not available|"
    r"Distributed package doesn't have NCCL built in|ProcessGroupNCCL is only supported with GPUs|"
    r"requires a GPU)",
    re.IGNORECASE,
)
_DISK = re.compile(
    r"(No space left on device|\[Errno 28\]|ENOSPC|Disk quota exceeded|"
    r"PytorchStreamWriter failed writing file)"
)
DISK_FULL_BYTES = 1 << 20  # less free than this where the run writes: the disk is full
_KILLED_TEXT = re.compile(r"(^Killed$|Out of memory: Killed process|oom-kill)", re.MULTILINE)
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+)', re.MULTILINE)
_ERROR_LINE = re.compile(
    r"^((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Interrupt|Exit)|AssertionError)"
    r"(?::\s*(.*))?$"
)
_CONFIG_SYNTAX = re.compile(r"There are syntax errors in config file (\S+?):?\s")
_RANK_PREFIX = re.compile(r"^\[rank\d+\]:\s?", re.MULTILINE)  # torch prefixes a worker's output
_ZERO_WARMUP = "end should be larger than begin"
_MISSING = re.compile(
    r"(FileNotFoundError: .*|Unable to find '[^']+'|"
    r"does not appear to have a file named [\w.]+|"
    r"Incorrect path_or_model_id: '[^']+'|"
    r"Repo id must be in the form .*|"
    r"We couldn't connect to 'https://huggingface.co'.*)"
)

# mmengine reads (parses, executes) the config here: an exception from it is the config's fault
_CONFIG_READER = "mmengine/config/config.py"


def _last_traceback(text: str) -> str:
    i = text.rfind("Traceback (most recent call last):")
    if i < 0:
        return ""
    if "ChildFailedError" in text[i:]:
        # torchrun's own traceback only says that a worker failed: the worker's is earlier
        worker = _last_traceback(text[:i])
        if worker:
            return worker
    return text[i:]


def _last_error_line(text: str) -> str | None:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return line
    for line in reversed(lines):
        if re.search(r"\b(error|failed|exception)\b", line, re.IGNORECASE) and not line.startswith(
            "[xtuner-wizard]"
        ):
            return line
    return None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def diagnose(
    log_text: str, exit_code: int | None, *, config_path: str | None = None
) -> Cause | None:
    """The cause of a failed run, or ``None`` when exit 0 and no error is in the log.

    ``config_path``: the config that was trained; a traceback frame in it names the line.
    """
    text = _RANK_PREFIX.sub("", log_text[-TAIL_CHARS:])
    tb = _last_traceback(text)
    error_line = _last_error_line(tb or text[-20_000:])
    if exit_code == 0 and not tb:
        return None

    if _OOM.search(tb or text):
        line = next((ln for ln in (tb or text).splitlines() if _OOM.search(ln)), "")
        return Cause(
            "cuda_oom",
            "the GPU ran out of memory" + (f": {_short(line, 200)}" if line else ""),
            "lower batch_size or max_length in the config, or use QLoRA "
            "(`xtuner-wizard config --profile qlora`)",
        )
    # (not the whole log: bitsandbytes warns about its missing GPU support on every CPU run)
    scope = tb or text[-5000:]
    if _NO_CUDA.search(scope):
        line = next(ln for ln in scope.splitlines() if _NO_CUDA.search(ln))
        return Cause(
            "no_cuda",
            f"this config needs a GPU, but none can be used: {_short(line, 200)}",
            "check `nvidia-smi` and that torch is a CUDA build (`xtuner-wizard doctor`), "
            "or render a CPU config with `xtuner-wizard config --profile cpu`",
        )
    if _DISK.search(text):
        return Cause(
            "disk_full",
            "the disk is full (No space left on device)",
            "free space where the workspace lives (old work_dirs/*/iter_*.pth checkpoints "
            "are large) or lower save_total_limit, then resume",
        )
    if exit_code is not None and (
        exit_code in (-signal.SIGKILL, 128 + signal.SIGKILL) or _KILLED_TEXT.search(text[-5000:])
    ):
        return Cause(
            "killed",
            "the trainer was killed (signal 9): the system ran out of memory (OOM killer) "
            "or someone killed it",
            "check `dmesg` for the OOM killer; lower batch_size or max_length, close other "
            "programs, then resume from the last checkpoint",
        )
    if exit_code is not None and (
        exit_code in (-signal.SIGINT, 128 + signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGTERM)
        or (error_line or "").startswith("KeyboardInterrupt")
    ):
        return Cause(
            "interrupted",
            "the trainer was interrupted (no checkpoint is written on interrupt)",
            "resume from the last checkpoint with `xtuner-wizard resume`",
        )

    if _ZERO_WARMUP in text[-20_000:]:
        return Cause(
            "config_error",
            "the learning-rate warm-up rounds to 0 iterations: an epoch of this dataset is only "
            "a few iterations long (few packed samples for batch_size x GPUs)",
            "cap the run with `xtuner-wizard config --set max_iters=N` (the wizard then counts "
            "the schedule in iterations), or add data, or lower batch_size",
        )
    config_cause = _config_error(text, tb, error_line, config_path)
    if config_cause is not None:
        return config_cause

    if exit_code != 0:
        missing = _MISSING.search(tb or text[-5000:])
        if missing:
            return Cause(
                "missing_file",
                f"a file the config names is missing: {_short(missing.group(1), 200)}",
                "check the model and data paths in the config "
                "(`pretrained_model_name_or_path`, data path)",
            )
    last = error_line or _last_error_line(text)
    code = f"exit code {exit_code}" if exit_code is not None else "no exit code"
    return Cause(
        "error",
        f"training failed ({code})" + (f": {_short(last)}" if last else ""),
        "read the end of the run's log (`xtuner-wizard attach` or the log file) for details",
    )


def _config_error(
    text: str, tb: str, error_line: str | None, config_path: str | None
) -> Cause | None:
    """An exception raised while the config itself was read or executed."""
    m = _CONFIG_SYNTAX.search(text)
    if m:
        where = m.group(1)
        line_m = re.search(r"line (\d+)", text[m.end() : m.end() + 2000])
        if line_m:
            where += f":{line_m.group(1)}"
        return Cause(
            "config_error",
            f"the config has a syntax error at {where}",
            f"fix the Python syntax at {where}, or render it again with `xtuner-wizard config`",
        )
    if not tb:
        return None
    frames = _FRAME.findall(tb)
    if (error_line or "").startswith(("SyntaxError", "IndentationError")) and _CONFIG_READER in tb:
        # mmengine parses the config text itself: the frame is "<unknown>", line N
        line_no = next((ln for p, ln in reversed(frames) if p == "<unknown>"), None)
        where = config_path or "the config"
        if line_no:
            where += f":{line_no}"
        return Cause(
            "config_error",
            f"the config has a syntax error at {where}: {_short(error_line or '', 200)}",
            f"fix the Python syntax at {where}, or render it again with `xtuner-wizard config`",
        )
    in_config = [
        (path, line)
        for path, line in frames
        if (config_path and _same_file(path, config_path))
        or (
            not config_path
            and path.endswith(".py")
            and "site-packages" not in path
            and "/lib/python" not in path
        )
    ]
    building = _CONFIG_READER in tb
    if in_config and (building or (config_path is not None)):
        path, line = in_config[-1]
        err = error_line or "an error"
        return Cause(
            "config_error",
            f"the config fails at {path}:{line}: {_short(err, 200)}",
            f"fix line {line} of {path}, or render it again with `xtuner-wizard config`",
        )
    return None


def disk_full_cause(work_dir, log_tail: str = "") -> Cause | None:
    """ "disk full" when the disk holding ``work_dir`` has (almost) nothing free, or the log says
    so: a full disk makes everything after it fail (a torch.save cut short, a log write), so
    it is named first, with what was left cut short."""
    import shutil
    from pathlib import Path

    from engine.runs.checkpoints import partial_checkpoints_in

    try:
        free = shutil.disk_usage(work_dir).free
    except OSError:
        free = None
    if not ((free is not None and free < DISK_FULL_BYTES) or _DISK.search(log_tail[-20_000:])):
        return None
    partial = partial_checkpoints_in(work_dir)
    cut = f"; {partial[-1].name} was cut short and is never used" if partial else ""
    left = f" ({free // 1024} KiB free)" if free is not None else ""
    return Cause(
        "disk_full",
        f"disk full: no space left where the run writes{left}{cut}",
        f"free space on the disk holding {Path(work_dir).parent} (old runs' iter_*.pth are "
        "large) or lower save_total_limit, then `xtuner-wizard resume`",
    )


def _same_file(a: str, b: str) -> bool:
    from pathlib import Path

    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b
