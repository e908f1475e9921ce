"""state.json under a file lock: concurrent writers from processes and threads lose nothing."""

from __future__ import annotations

import multiprocessing
import threading

from engine.workspace import Workspace

PROCESSES = 4
THREADS = 2
PER_WRITER = 25  # 4 processes x 2 threads x 25 = 200 updates


def _writer(root: str, tag: str) -> None:
    ws = Workspace(root)
    for i in range(PER_WRITER):
        ws.set_choice(f"{tag}-{i}", i)
        if i % 5 == 0:
            ws.record_written(ws.root / "f.txt")


def _process(root: str, p: int) -> None:
    threads = [threading.Thread(target=_writer, args=(root, f"p{p}t{t}")) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_200_concurrent_updates_none_lost(tmp_path):
    ws = Workspace(tmp_path).ensure()
    (tmp_path / "f.txt").write_text("x")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_process, args=(str(tmp_path), p)) for p in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    choices = ws.load_state().choices
    expected = {
        f"p{p}t{t}-{i}" for p in range(PROCESSES) for t in range(THREADS) for i in range(PER_WRITER)
    }
    assert len(expected) == 200
    assert expected - set(choices) == set()
    assert "f.txt" in ws.load_state().written


def test_lock_is_reentrant_in_one_thread(tmp_path):
    ws = Workspace(tmp_path).ensure()
    with ws.transaction() as state:
        state.choices["a"] = 1
        ws.set_choice("b", 2)  # nested: must not deadlock
    assert ws.load_state().choices == {"a": 1, "b": 2}
