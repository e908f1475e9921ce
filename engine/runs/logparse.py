"""The one reader of mmengine's log lines (and the supervisor's end line): what a line means.

The run monitor, the failure diagnosis, the Train pane and ``attach`` all read lines through
:func:`parse_log_line`. Formats as xtuner 0.2.0 / mmengine 0.10.6 write them (docs/xtuner-on-cpu.md):
``11/29 01:50:22 - mmengine - INFO - Iter(train) [48/96]  lr: 1.0668e-03  eta: 0:00:07 ...``.
Lines are capped at ``MAX_LINE_CHARS`` before parsing: a model's noise can be long.
"""

from __future__ import annotations

import re
from typing import Any

MAX_LINE_CHARS = 4096

# "2026/11/29 02:30:17 - mmengine - INFO - message"
# (the console copy in the run's train.log has no year: "11/29 02:30:17 - mmengine - ...")
_PREFIX = re.compile(r"^((?:\d{4}/)?\d{2}/\d{2} \d{2}:\d{2}:\d{2}) - (\S+) - (\w+) - (.*)$")
_ITER = re.compile(r"^Iter\((train|val|test)\)\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]\s*(.*)$")
_EPOCH = re.compile(
    r"^Epoch\((train|val|test)\)\s*\[\s*(\d+)\s*\]\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]\s*(.*)$"
)
_FIELD = re.compile(r"([A-Za-z_][\w.]*):\s+(\S+)")
_ETA_FIELD = re.compile(r"\beta:\s+((?:\d+ days?, )?\d+:\d{2}:\d{2})")
_ETA = re.compile(r"^(?:(\d+) days?, )?(\d+):(\d{2}):(\d{2})$")
_CKPT_SAVE = re.compile(r"^Saving checkpoint at (\d+) (iterations|epochs)")
_EVAL_START = re.compile(
    r"^(before_train|after_train_iter|after_train|after_val) in EvaluateChatHook"
)
_NUM_SAMPLES = re.compile(r"^Num train samples (\d+)")
_RESUMED = re.compile(r"resumed epoch: (\d+), iter: (\d+)")
CONFIG_SCALAR = re.compile(r"^([A-Za-z_]\w*) = (.+)$")
END_LINE = re.compile(r"^\[xtuner-wizard\] run ended: (\w+)(?: \(exit (-?\d+)\))?")

# Supervisor's end line in the run log, written when the trainer has exited; see supervise.py.
END_LINE_FORMAT = "[xtuner-wizard] run ended: {state} (exit {code})"

# C0 controls (ESC above all) and DEL must never reach a terminal: a model's noise can hold them.
_CONTROLS = {c: "\ufffd" for c in [*range(0, 9), *range(11, 32), 127]}


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def clean_text(text: str) -> str:
    """``text`` without colour codes and terminal control characters (newlines, tabs kept)."""
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    return text.translate(_CONTROLS)


PHASES = ("starting", "training", "evaluating", "saving", "done", "failed", "stopped")


def parse_eta(text: str) -> int | None:
    """``0:00:07`` or ``1 day, 2:03:04`` -> seconds."""
    m = _ETA.match(text.strip())
    if not m:
        return None
    days, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return ((days * 24 + h) * 60 + mi) * 60 + s


def _number(text: str) -> float | int | str:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_log_line(line: str) -> dict[str, Any] | None:
    """Parse one mmengine log line; ``None`` for lines that are not mmengine records.

    Returns ``{"logged_at", "logger", "level", "message", "kind", ...}`` where ``kind`` is one of
    ``iter`` (with ``mode``, ``iter``, ``max_iters``, optional ``epoch`` and every
    ``name: value`` field, ``eta`` in seconds), ``eval_start`` (``hook_point``), ``sample``
    (``Sample output:``), ``checkpoint`` (``iter``), ``num_samples`` (``num_train_samples``),
    ``resumed`` (``iter``), ``config`` (the config dump starts) or ``message``.
    """
    m = _PREFIX.match(line[:MAX_LINE_CHARS].rstrip("\r\n"))
    if not m:
        return None
    stamp, logger, level, message = m.groups()
    out: dict[str, Any] = {"logged_at": stamp, "logger": logger, "level": level, "message": message}
    body = message.strip()
    it = _ITER.match(body)
    ep = None if it else _EPOCH.match(body)
    if it or ep:
        if it:
            mode, cur, total, rest = it.groups()
            out.update(kind="iter", mode=mode, iter=int(cur), max_iters=int(total))
        else:
            mode, epoch, cur, total, rest = ep.groups()  # type: ignore[union-attr]
            out.update(
                kind="iter",
                mode=mode,
                epoch=int(epoch),
                iter_in_epoch=int(cur),
                iters_per_epoch=int(total),
            )
        eta = _ETA_FIELD.search(rest)
        if eta:
            out["eta"] = parse_eta(eta.group(1))
            rest = rest[: eta.start()] + rest[eta.end() :]
        for name, value in _FIELD.findall(rest):
            if name == "eta":
                out["eta"] = parse_eta(value)
            else:
                out[name] = _number(value)
        return out
    if body == "Sample output:":
        out["kind"] = "sample"
    elif mm := _EVAL_START.match(body):
        out.update(kind="eval_start", hook_point=mm.group(1))
    elif mm := _CKPT_SAVE.match(body):
        out.update(kind="checkpoint", iter=int(mm.group(1)), unit=mm.group(2))
    elif mm := _NUM_SAMPLES.match(body):
        out.update(kind="num_samples", num_train_samples=int(mm.group(1)))
    elif mm := _RESUMED.search(body):
        out.update(kind="resumed", epoch=int(mm.group(1)), iter=int(mm.group(2)))
    elif body == "Config:":
        out["kind"] = "config"
    else:
        out["kind"] = "message"
    return out
