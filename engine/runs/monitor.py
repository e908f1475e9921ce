"""Follow a training run by reading the files it writes; never a pipe to the trainer.

What is read (all of it incrementally, only the bytes added since the last :meth:`RunMonitor.poll`):

- ``<work_dir>/<timestamp>/<timestamp>.log``: mmengine's log, one per start of the trainer; a
  resumed run adds a new timestamp folder, so every folder is read in name (= time) order and a
  later folder that starts at iteration ``i`` replaces the history from ``i`` on.
- ``<work_dir>/<timestamp>/vis_data/scalars.json``: JSON lines with full-precision scalars.
- the run's own log (``log_path``, the trainer's stdout + stderr, written by the supervisor):
  the log tail (it has tracebacks mmengine never logs) and the supervisor's end line.
- the run record (``record_path``), when given: the final state, exit code, cause and fix.

Line formats: ``engine/runs/logparse.py``. Everything tolerates partial lines
(only complete lines are parsed) and unknown fields.
"""

from __future__ import annotations

import ast
import json
import os
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.runs.logparse import (
    CONFIG_SCALAR,
    END_LINE,
    END_LINE_FORMAT,  # noqa: F401 - the supervisor's end line, here beside its reader
    clean_text,  # noqa: F401
    parse_eta,  # noqa: F401
    parse_log_line,
)

LOG_TAIL_LINES = 200
# tokens/s = batch * max_length / time holds for packed samples; xtuner packs in up to 32 map
# shards and each shard may end in one short sample, so only with many samples is it within ~10%
MIN_SAMPLES_FOR_TOKENS = 320
TIMESTAMP_DIR = re.compile(r"^\d{8}_\d{6}$")


@dataclass(frozen=True)
class EvalSample:
    """One answer printed by XTuner's EvaluateChatHook (the prompt is part of ``text``)."""

    iteration: int  # 0: before training; else the last iteration trained when it was made
    text: str
    hook_point: str = ""  # before_train | after_train_iter | after_train | after_val


@dataclass(eq=False)
class RunSnapshot:
    """What a run looks like now. Compare ``version`` to know whether anything changed."""

    version: int = 0
    phase: str = "starting"
    iteration: int = 0
    max_iters: int | None = None
    epoch: int | None = None
    max_epochs: int | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    lr: float | None = None
    grad_norm: float | None = None
    iter_time: float | None = None
    data_time: float | None = None
    eta_seconds: int | None = None
    memory_mb: float | None = None
    tokens_per_s: float | None = None
    num_train_samples: int | None = None
    eval_samples: list[EvalSample] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    started_at: str | None = None  # first log timestamp, "YYYY/MM/DD HH:MM:SS" (local time)
    last_log_at: str | None = None  # latest log timestamp
    resumes: int = 0  # how many times the trainer was started again in this work dir
    state: str | None = None  # the run record's final state, when known
    exit_code: int | None = None
    cause: str | None = None
    fix: str | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunSnapshot) and other.version == self.version

    __hash__ = None  # type: ignore[assignment]

    @property
    def last_loss(self) -> float | None:
        return self.losses[-1][1] if self.losses else None

    @property
    def progress(self) -> float | None:
        if not self.max_iters:
            return None
        return min(1.0, self.iteration / self.max_iters)


class _Tail:
    """Read a growing file: only new bytes, complete lines only."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = b""
        self.ino: int | None = None

    def read_lines(self) -> list[str]:
        try:
            st = os.stat(self.path)
        except OSError:
            return []
        if self.ino is not None and (st.st_ino != self.ino or st.st_size < self.offset):
            self.offset, self.partial = 0, b""  # replaced or truncated: start over
        self.ino = st.st_ino
        if st.st_size == self.offset:
            return []
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(st.st_size - self.offset)
        except OSError:
            return []
        self.offset += len(data)
        data = self.partial + data
        *complete, self.partial = data.split(b"\n")
        return [
            clean_text(raw.decode("utf-8", errors="replace").rstrip("\r").rsplit("\r", 1)[-1])
            for raw in complete
        ]


class _Folder:
    """One start of the trainer: ``<work_dir>/<timestamp>/``."""

    def __init__(self, path: Path, index: int):
        self.path = path
        self.index = index
        self.log = _Tail(path / f"{path.name}.log")
        self.scalars = _Tail(path / "vis_data" / "scalars.json")
        self.first_iter: int | None = None
        self.resumed_at = 0  # the iteration it resumed from ("resumed epoch: e, iter: i")


class RunMonitor:
    """Incremental reader of a run's files; :meth:`poll` returns a :class:`RunSnapshot`.

    ``work_dir``: the run's own ``<workspace>/work_dirs/<run id>`` (``earlier_work_dirs``: those
    of the runs it resumes, oldest first). ``log_path``: the run's own log (the trainer's
    stdout/stderr) if there is one. ``record_path``: the run record (``.json``). ``since``:
    timestamp folders from before it are ignored (a work dir of the older layout, shared by
    several runs).
    Cheap to call at 1-2 Hz: stats a few files, reads only what was appended.
    """

    def __init__(
        self,
        work_dir: Path | str,
        log_path: Path | str | None = None,
        *,
        earlier_work_dirs: Sequence[Path | str] = (),
        record_path: Path | str | None = None,
        tail_lines: int = LOG_TAIL_LINES,
        since: float | None = None,
    ):
        self.work_dir = Path(work_dir)
        # a resumed run's history starts in the work dirs of the runs it continues
        self.work_dirs = [Path(d) for d in earlier_work_dirs if Path(d) != self.work_dir]
        self.work_dirs.append(self.work_dir)
        self.log_path = Path(log_path) if log_path else None
        self.record_path = Path(record_path) if record_path else None
        self._folders: dict[str, _Folder] = {}
        # timestamp folders older than this (mmengine names them by local time) belong to
        # earlier runs in the same work dir: ignored
        self._min_folder = (
            time.strftime("%Y%m%d_%H%M%S", time.localtime(since - 2)) if since else None
        )
        self._run_log = _Tail(self.log_path) if self.log_path else None
        self._tail: deque[str] = deque(maxlen=tail_lines)
        # history: iteration -> (folder index, metrics)
        self._points: dict[int, tuple[int, dict[str, Any]]] = {}
        self._losses: list[tuple[int, float]] | None = []  # sorted cache; None: rebuild
        self._samples: list[tuple[int, EvalSample]] = []  # (folder index, sample)
        self._open_sample: list[str] | None = None
        self._open_sample_meta: tuple[int, int, str] = (0, 0, "")
        self._in_config = False
        self._config: dict[str, Any] = {}
        self._last: dict[str, Any] = {}
        self._iteration = 0
        self._max_iters: int | None = None
        self._epoch: int | None = None
        self._num_samples: int | None = None
        self._eval_point = ""
        self._event = "starting"
        self._started_at: str | None = None
        self._last_log_at: str | None = None
        self._world_size = 1
        self._gpu_number = 1
        self._end: tuple[str, int | None] | None = None
        self._record: dict[str, Any] = {}
        self._record_mtime: float | None = None
        self._checkpoints: list[Path] = []
        self._version = 0
        self._snapshot = RunSnapshot()
        self._dirty = True

    @classmethod
    def for_record(cls, record: Any) -> RunMonitor:
        """A monitor for a :class:`engine.runs.records.RunRecord`: its own log and record, its
        own work dir, and the work dirs of the runs it resumes (their history leads to it)."""
        chain = _chain(record)
        return cls(
            record.work_dir,
            record.log_path,
            earlier_work_dirs=[r.work_dir for r in chain[:-1]],
            record_path=record.record_path,
            since=chain[0].started,
        )

    # -- public -------------------------------------------------------------------------
    def poll(self) -> RunSnapshot:
        self._scan_folders()
        for folder in sorted(self._folders.values(), key=lambda f: f.index):
            for line in folder.log.read_lines():
                self._feed_log(folder, line)
            for line in folder.scalars.read_lines():
                self._feed_scalars(folder, line)
        if self._run_log is not None:
            lines = self._run_log.read_lines()
            for line in lines:
                self._feed_run_log(line)
        self._scan_checkpoints()
        self._read_record()
        if self._dirty:
            self._dirty = False
            self._version += 1
            self._snapshot = self._build()
        return self._snapshot

    @property
    def snapshot(self) -> RunSnapshot:
        return self._snapshot

    # -- discovery ----------------------------------------------------------------------
    def _scan_folders(self) -> None:
        found: list[tuple[str, int, Path]] = []
        for order, work_dir in enumerate(self.work_dirs):
            try:
                found += [
                    (e.name, order, Path(e.path))
                    for e in os.scandir(work_dir)
                    if e.is_dir() and TIMESTAMP_DIR.match(e.name)
                ]
            except OSError:
                continue
        for name, _, path in sorted(found):
            if self._min_folder is not None and name < self._min_folder:
                continue
            key = str(path)
            if key not in self._folders:
                self._folders[key] = _Folder(path, len(self._folders))
                if len(self._folders) > 1:
                    self._dirty = True

    def _scan_checkpoints(self) -> None:
        # The same answer resume and merge get: this run's whole checkpoints, ZeRO folders too.
        from engine.runs.checkpoints import checkpoints_in

        try:
            ckpts = checkpoints_in(self.work_dir)
        except OSError:
            ckpts = []
        if ckpts != self._checkpoints:
            self._checkpoints = ckpts
            self._dirty = True

    def _read_record(self) -> None:
        if self.record_path is None:
            return
        try:
            mtime = os.stat(self.record_path).st_mtime
        except OSError:
            return
        if mtime == self._record_mtime:
            return
        try:
            data = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        self._record_mtime = mtime
        if isinstance(data, dict) and data != self._record:
            self._record = data
            self._dirty = True

    # -- feeding ------------------------------------------------------------------------
    def _add_tail(self, line: str) -> None:
        self._tail.append(line)
        self._dirty = True

    def _close_sample(self) -> None:
        if self._open_sample is None:
            return
        text = "\n".join(self._open_sample).rstrip("\n")
        idx, it, point = self._open_sample_meta
        self._samples[-1] = (idx, EvalSample(it, text, point))
        self._open_sample = None

    def _feed_log(self, folder: _Folder, line: str) -> None:
        if self._run_log is None:
            self._add_tail(line)
        self._dirty = True
        rec = parse_log_line(line)
        if rec is None:
            if self._open_sample is not None:
                self._open_sample.append(line)
                idx, it, point = self._open_sample_meta
                text = "\n".join(self._open_sample).rstrip("\n")
                self._samples[-1] = (idx, EvalSample(it, text, point))
            elif self._in_config:
                m = CONFIG_SCALAR.match(line)
                if m:
                    value = m.group(2).strip()
                    try:
                        self._config[m.group(1)] = ast.literal_eval(value)
                    except (ValueError, SyntaxError):
                        self._config[m.group(1)] = value
            elif line.startswith("    Distributed training: True"):
                self._world_size = max(self._world_size, 2)
            elif line.startswith("    GPU number: "):
                try:
                    self._gpu_number = int(line.split(":", 1)[1])
                except ValueError:
                    pass
            return
        self._close_sample()
        self._in_config = False
        if self._started_at is None:
            self._started_at = rec["logged_at"]
        self._last_log_at = rec["logged_at"]
        kind = rec["kind"]
        if kind == "iter" and rec.get("mode") == "train":
            self._on_iter(folder, rec)
        elif kind == "eval_start":
            self._eval_point = rec["hook_point"]
            self._event = "evaluating"
        elif kind == "sample":
            self._event = "evaluating"
            it = folder.resumed_at if self._eval_point == "before_train" else self._iteration
            self._open_sample = []
            self._open_sample_meta = (folder.index, it, self._eval_point)
            self._samples.append((folder.index, EvalSample(it, "", self._eval_point)))
        elif kind == "checkpoint":
            self._event = "saving"
        elif kind == "num_samples":
            self._num_samples = rec["num_train_samples"]
        elif kind == "config":
            self._in_config = True
        elif kind == "resumed":
            folder.resumed_at = rec["iter"]
            self._iteration = rec["iter"]
        elif self._event in ("evaluating", "saving"):
            self._event = "training"

    def _on_iter(self, folder: _Folder, rec: dict[str, Any]) -> None:
        if "iter" in rec:
            it, total = rec["iter"], rec["max_iters"]
        else:  # by-epoch logging: iteration counted from epochs
            per = rec["iters_per_epoch"]
            it = (rec["epoch"] - 1) * per + rec["iter_in_epoch"]
            total = per * int(self._config.get("max_epochs") or rec["epoch"])
            self._epoch = rec["epoch"]
        if folder.first_iter is None:
            folder.first_iter = it
            self._truncate(folder.index, it)
        self._iteration = it
        self._max_iters = total
        metrics = {k: v for k, v in rec.items() if isinstance(v, (int, float))}
        prev = self._points.get(it)
        if prev is not None and prev[0] == folder.index:
            metrics = {**metrics, **prev[1]}  # scalars.json (full precision) wins
        self._set_point(it, folder.index, metrics)
        self._last = metrics
        self._event = "training"

    def _set_point(self, it: int, folder_index: int, metrics: dict[str, Any]) -> None:
        self._points[it] = (folder_index, metrics)
        cache = self._losses
        loss = metrics.get("loss")
        if cache is None or not isinstance(loss, (int, float)):
            self._losses = None
        elif not cache or it > cache[-1][0]:
            cache.append((it, float(loss)))
        elif it == cache[-1][0]:
            cache[-1] = (it, float(loss))
        else:
            self._losses = None  # out of order: rebuilt once in _build

    def _truncate(self, folder_index: int, first_iter: int) -> None:
        """A later start of the trainer at ``first_iter`` replaces the history from there on."""
        for it in [
            i for i, (idx, _) in self._points.items() if idx < folder_index and i >= first_iter
        ]:
            del self._points[it]
            self._losses = None
        self._samples = [
            (idx, s)
            for idx, s in self._samples
            if idx >= folder_index or (first_iter > 1 and s.iteration < first_iter)
        ]

    def _feed_scalars(self, folder: _Folder, line: str) -> None:
        try:
            data = json.loads(line)
        except ValueError:
            return
        if not isinstance(data, dict) or "loss" not in data:
            return
        it = data.get("iter", data.get("step"))
        if not isinstance(it, int):
            return
        if folder.first_iter is None:
            folder.first_iter = it
            self._truncate(folder.index, it)
        prev = self._points.get(it)
        base = prev[1] if prev is not None and prev[0] == folder.index else {}
        merged = {**base, **{k: v for k, v in data.items() if isinstance(v, (int, float))}}
        self._set_point(it, folder.index, merged)
        if it >= self._iteration:
            self._last = merged
        self._dirty = True

    def _feed_run_log(self, line: str) -> None:
        self._add_tail(line)
        m = END_LINE.match(line)
        if m:
            self._end = (m.group(1), int(m.group(2)) if m.group(2) is not None else None)

    # -- snapshot -----------------------------------------------------------------------
    def _build(self) -> RunSnapshot:
        last = self._last
        iter_time = _f(last.get("time"))
        tokens = None
        cfg = self._config
        if (
            iter_time
            and cfg.get("pack_to_max_length") is True
            and (self._num_samples or 0) >= MIN_SAMPLES_FOR_TOKENS
            and isinstance(cfg.get("max_length"), int)
            and isinstance(cfg.get("batch_size"), int)
        ):
            # packed samples are exactly max_length tokens each: an honest count
            world = self._gpu_number if self._world_size > 1 else 1
            tokens = cfg["batch_size"] * cfg["max_length"] * world / iter_time
        max_epochs = cfg.get("max_epochs") if isinstance(cfg.get("max_epochs"), int) else None
        if "max_iters" in str(cfg.get("train_cfg", "")):
            max_epochs = None  # trained by iterations: the config's max_epochs does not apply
        epoch = self._epoch
        if epoch is None and max_epochs and self._max_iters and self._iteration:
            per_epoch = self._max_iters / max_epochs
            epoch = min(max_epochs, int((self._iteration - 1) // per_epoch) + 1)
        state = self._record.get("state") if self._record else None
        if state in (None, "running", "starting") and self._end is not None:
            state = self._end[0]
        phase = self._event
        if phase == "starting" and self._points:
            phase = "training"
        if state == "succeeded":
            phase = "done"
        elif state == "stopped":
            phase = "stopped"
        elif state in ("failed", "killed", "lost"):
            phase = "failed"
        exit_code = self._record.get("exit_code") if self._record else None
        if exit_code is None and self._end is not None:
            exit_code = self._end[1]
        if self._losses is None:
            self._losses = [
                (it, float(m["loss"]))
                for it, (_, m) in sorted(self._points.items())
                if isinstance(m.get("loss"), (int, float))
            ]
        losses = list(self._losses)
        return RunSnapshot(
            version=self._version,
            phase=phase,
            iteration=self._iteration,
            max_iters=self._max_iters,
            epoch=epoch,
            max_epochs=max_epochs,
            losses=losses,
            lr=_f(last.get("lr")),
            grad_norm=_f(last.get("grad_norm")),
            iter_time=iter_time,
            data_time=_f(last.get("data_time")),
            eta_seconds=last.get("eta") if isinstance(last.get("eta"), int) else None,
            memory_mb=_f(last.get("memory")),
            tokens_per_s=tokens,
            num_train_samples=self._num_samples,
            eval_samples=[s for _, s in self._samples],
            log_tail=list(self._tail),
            checkpoints=list(self._checkpoints),
            started_at=self._started_at,
            last_log_at=self._last_log_at,
            resumes=max(0, len(self._folders) - 1),
            state=state,
            exit_code=exit_code,
            cause=self._record.get("cause") if self._record else None,
            fix=self._record.get("fix") if self._record else None,
        )


def _chain(record: Any) -> list[Any]:
    """The runs a resumed run continues, oldest first, ending with ``record`` itself."""
    chain = [record]
    seen = {record.id}
    while getattr(record, "previous_run", None) and record.previous_run not in seen:
        seen.add(record.previous_run)
        try:
            record = type(record).load(record.runs_dir / f"{record.previous_run}.json")
        except Exception:  # noqa: BLE001 - a missing/broken record: keep what we have
            break
        chain.insert(0, record)
    return chain


def _f(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
