"""The run monitor on real captured logs (tests/data/logs/, from real xtuner 0.2.0 CPU runs).

``resumed/work_dir``: a 12-iteration demo-model run whose trainer was SIGKILLed right after its
iter-4 checkpoint (folder 20261129_023934) and then resumed (folder 20261129_024135).
``resumed/killed-train.log``: the supervisor's train.log of the killed run (console copy).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from train_support import write_checkpoint

from engine.runs.monitor import (
    END_LINE_FORMAT,
    RunMonitor,
    clean_text,
    parse_eta,
    parse_log_line,
)

DATA = Path(__file__).parent / "data" / "logs"
RESUMED = DATA / "resumed" / "work_dir"
FIRST, SECOND = "20261129_023934", "20261129_024135"


def _lines(folder: str) -> list[str]:
    return (RESUMED / folder / f"{folder}.log").read_text(encoding="utf-8").splitlines()


def _scalars(folder: str) -> list[dict]:
    text = (RESUMED / folder / "vis_data" / "scalars.json").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


# -- parse_log_line -------------------------------------------------------------------------
def test_parse_real_iter_line():
    line = next(ln for ln in _lines(FIRST) if "Iter(train) [ 1/12]" in ln)
    rec = parse_log_line(line)
    assert rec is not None
    assert rec["kind"] == "iter" and rec["mode"] == "train"
    assert (rec["iter"], rec["max_iters"]) == (1, 12)
    assert rec["logged_at"] == "2026/11/29 02:40:37"
    assert rec["lr"] == pytest.approx(2.0e-08)
    assert rec["eta"] == 53
    assert rec["time"] == pytest.approx(4.8927)
    assert rec["loss"] == pytest.approx(8.7155, abs=1e-4)
    assert {"data_time", "grad_norm"} <= rec.keys()


def test_parse_console_line_without_year_and_gpu_memory():
    # the console copy (train.log) drops the year; GPU runs add `memory:` (format from the notes)
    line = (
        "11/29 01:50:22 - mmengine - INFO - Iter(train) [48/96]  lr: 1.0668e-03  eta: 0:00:07  "
        "time: 0.1075  data_time: 0.0027  memory: 6245  grad_norm: 0.1457  loss: 0.0423"
    )
    rec = parse_log_line(line)
    assert rec["iter"] == 48 and rec["max_iters"] == 96
    assert rec["memory"] == 6245 and rec["loss"] == pytest.approx(0.0423)


def test_parse_event_lines_from_real_log():
    kinds = {}
    for line in _lines(FIRST) + _lines(SECOND):
        rec = parse_log_line(line)
        if rec is not None:
            kinds.setdefault(rec["kind"], rec)
    assert kinds["num_samples"]["num_train_samples"] == 20
    assert kinds["eval_start"]["hook_point"] == "before_train"
    assert kinds["sample"]["message"] == "Sample output:"
    assert kinds["checkpoint"]["iter"] == 4
    assert kinds["resumed"]["iter"] == 4
    assert kinds["config"]["message"] == "Config:"
    # continuation lines (config dump, sample text) are not records
    assert parse_log_line("<|im_start|>user") is None
    assert parse_log_line("max_length = 64") is None
    assert parse_log_line("") is None


def test_parse_by_epoch_line_and_eta_with_days():
    rec = parse_log_line(
        "2026/11/29 01:50:22 - mmengine - INFO - Epoch(train)  [2][ 10/366]  lr: 2.0e-04  "
        "eta: 1 day, 2:03:04  time: 0.2600  data_time: 0.0060  loss: 1.2345"
    )
    assert (rec["epoch"], rec["iter_in_epoch"], rec["iters_per_epoch"]) == (2, 10, 366)
    assert rec["eta"] == parse_eta("26:03:04") == 26 * 3600 + 3 * 60 + 4
    assert parse_eta("soon") is None


def test_clean_text_removes_terminal_controls():
    assert clean_text("\x1b[31mred\x1b[0m a\x07b\tc\nd") == "red a\ufffdb\tc\nd"


# -- RunMonitor -----------------------------------------------------------------------------
def _copy(tmp_path: Path) -> Path:
    work = tmp_path / "work_dirs" / "cfg"
    shutil.copytree(RESUMED, work)
    return work


def test_resumed_run_history_is_whole(tmp_path):
    work = _copy(tmp_path)
    for n in (8, 12):
        write_checkpoint(work / f"iter_{n}.pth")
    snap = RunMonitor(work).poll()
    assert [it for it, _ in snap.losses] == list(range(1, 13))
    # full precision from scalars.json, each iteration from the folder that trained it
    expected = {d["iter"]: d["loss"] for d in _scalars(FIRST) + _scalars(SECOND)}
    assert dict(snap.losses) == pytest.approx(expected)
    assert snap.iteration == 12 and snap.max_iters == 12 and snap.progress == 1.0
    assert snap.resumes == 1
    assert snap.num_train_samples == 20
    assert snap.epoch is None  # trained by max_iters: no honest epoch
    assert snap.tokens_per_s is None  # 20 packed samples: too few to count tokens honestly
    assert snap.lr == pytest.approx(_scalars(SECOND)[-1]["lr"])
    assert [p.name for p in snap.checkpoints] == ["iter_8.pth", "iter_12.pth"]
    assert snap.started_at == "2026/11/29 02:39:35"
    points = [(s.iteration, s.hook_point) for s in snap.eval_samples]
    assert points[:2] == [(0, "before_train"), (0, "before_train")]
    assert (4, "after_train_iter") in points and (8, "after_train_iter") in points
    assert points[-2:] == [(12, "after_train"), (12, "after_train")]
    first = snap.eval_samples[0].text
    assert first.startswith(
        "<s><|im_start|>user\n请介绍一下你自己<|im_end|>\n<|im_start|>assistant\n"
    )
    assert not first.endswith("\n")
    assert all("\x1b" not in s.text for s in snap.eval_samples)
    # the last event of the log is the after-train evaluation; without a record no "done"
    assert snap.phase == "evaluating"


def test_incremental_reads_with_partial_lines_match_a_whole_read(tmp_path):
    whole = RunMonitor(_copy(tmp_path / "a")).poll()
    work = tmp_path / "b" / "work_dirs" / "cfg"
    live = RunMonitor(work)
    assert live.poll().phase == "starting"  # no work dir yet
    snaps = []
    for folder in (FIRST, SECOND):
        log = (RESUMED / folder / f"{folder}.log").read_bytes()
        scal = (RESUMED / folder / "vis_data" / "scalars.json").read_bytes()
        (work / folder / "vis_data").mkdir(parents=True)
        # odd chunk sizes split lines and UTF-8 characters
        for start in range(0, len(log), 997):
            with open(work / folder / f"{folder}.log", "ab") as fh:
                fh.write(log[start : start + 997])
            with open(work / folder / "vis_data" / "scalars.json", "ab") as fh:
                fh.write(
                    scal[start // 10 : (start + 997) // 10]
                    if start + 997 < len(log)
                    else scal[start // 10 :]
                )
            snaps.append(live.poll())
    final = live.poll()
    assert final.losses == whole.losses
    assert [(s.iteration, s.text) for s in final.eval_samples] == [
        (s.iteration, s.text) for s in whole.eval_samples
    ]
    phases = {s.phase for s in snaps}
    assert {"starting", "training", "evaluating"} <= phases
    iterations = [s.iteration for s in snaps]
    assert iterations == sorted(iterations)  # progress never goes back


def test_version_changes_only_when_something_changed(tmp_path):
    work = _copy(tmp_path)
    mon = RunMonitor(work)
    first = mon.poll()
    again = mon.poll()
    assert again is first and again.version == first.version
    log = work / SECOND / f"{SECOND}.log"
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(
            "2026/11/29 02:43:48 - mmengine - INFO - Iter(train) [12/12]  lr: 1.0e-08"
        )  # partial
    assert mon.poll().version == first.version  # a partial line is not read yet
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("  eta: 0:00:00  time: 1.0  data_time: 0.1  grad_norm: 1.0  loss: 0.5\n")
    changed = mon.poll()
    assert changed.version > first.version and changed != first
    assert changed.last_log_at == "2026/11/29 02:43:48"
    # the same iteration again from the same folder: scalars.json's full precision value stays
    assert changed.losses[-1] == (12, pytest.approx(_scalars(SECOND)[-1]["loss"]))


def test_later_start_replaces_history_from_its_first_iteration(tmp_path):
    work = _copy(tmp_path)
    # work lost after the checkpoint: the killed trainer had logged iterations 5 and 6 too
    lost = (
        "2026/11/29 02:41:00 - mmengine - INFO - Iter(train) [ {n}/12]  lr: 1.9e-08  eta: 0:00:30"
        "  time: 4.0  data_time: 0.02  grad_norm: 3.0  loss: 99.0\n"
    )
    with open(work / FIRST / f"{FIRST}.log", "a", encoding="utf-8") as fh:
        fh.write(lost.format(n=5) + lost.format(n=6))
    snap = RunMonitor(work).poll()
    assert [it for it, _ in snap.losses] == list(range(1, 13))
    assert 99.0 not in [loss for _, loss in snap.losses]
    # a fresh start (iteration 1) in the same work dir replaces everything before it
    fresh = work / "20261129_050000"
    (fresh / "vis_data").mkdir(parents=True)
    shutil.copy(work / FIRST / f"{FIRST}.log", fresh / "20261129_050000.log")
    snap = RunMonitor(work).poll()
    assert [it for it, _ in snap.losses] == [1, 2, 3, 4, 5, 6]
    assert snap.eval_samples[0].iteration == 0 and snap.resumes == 2


def test_run_log_gives_tail_and_outcome(tmp_path):
    work = _copy(tmp_path)
    shutil.rmtree(work / SECOND)
    mon = RunMonitor(work, DATA / "resumed" / "killed-train.log", tail_lines=20)
    snap = mon.poll()
    assert snap.state == "failed" and snap.phase == "failed" and snap.exit_code == -9
    assert len(snap.log_tail) == 20
    assert snap.log_tail[-1] == END_LINE_FORMAT.format(state="failed", code=-9)
    assert snap.iteration == 4


def test_record_gives_final_state_cause_and_fix(tmp_path):
    work = _copy(tmp_path)
    record = tmp_path / "run.json"
    record.write_text(json.dumps({"id": "x", "state": "running"}))
    mon = RunMonitor(work, record_path=record)
    assert mon.poll().phase == "evaluating"
    record.write_text(
        json.dumps({"id": "x", "state": "failed", "exit_code": 1, "cause": "c", "fix": "f"})
    )
    os.utime(record, (1, 1))  # a new mtime even on coarse clocks
    snap = mon.poll()
    assert (snap.phase, snap.exit_code, snap.cause, snap.fix) == ("failed", 1, "c", "f")


def test_for_record_reads_only_its_resume_chain(tmp_path):
    import time

    from engine.runs.records import RunRecord

    work = _copy(tmp_path)
    ws = tmp_path / "ws"

    def local(stamp: str) -> float:
        return time.mktime(time.strptime(stamp, "%Y%m%d_%H%M%S"))

    def record(run_id: str, started: float, previous: str | None = None) -> RunRecord:
        rec = RunRecord(
            id=run_id,
            workspace=str(ws),
            config="cfg.py",
            work_dir=str(work),
            command="xtuner train cfg.py",
            state="succeeded",
            started=started,
            previous_run=previous,
        )
        rec.save()
        return rec

    record("first", local("20261129_023905"))
    resumed = record("second", local("20261129_024104"), previous="first")
    snap = RunMonitor.for_record(resumed).poll()
    assert [it for it, _ in snap.losses] == list(range(1, 13)) and snap.phase == "done"
    # the same start without the resume link: a fresh run, the older folder is not its history
    fresh = record("fresh", local("20261129_024104"))
    snap = RunMonitor.for_record(fresh).poll()
    assert [it for it, _ in snap.losses] == list(range(5, 13)) and snap.resumes == 0
