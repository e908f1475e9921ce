"""Large datasets are validated in chunks: the same verdicts, memory bounded by a record."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from engine.data import validate as v
from engine.data.stats import dataset_stats
from engine.data.validate import iter_records, validate_file

REC = {"conversation": [{"input": "请介绍一下你自己", "output": "我是伍鲜同志的小助手"}]}


@pytest.fixture
def streaming(monkeypatch):
    """Every file counts as large, and chunks are small: the chunk seams get exercised."""
    monkeypatch.setattr(v, "STREAM_BYTES", 0)
    monkeypatch.setattr(v, "CHUNK_BYTES", 64)


def _write(tmp_path, text: str | bytes, name: str = "d.json"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_good_files_pass_in_chunks(tmp_path, streaming):
    body = json.dumps([REC] * 50, ensure_ascii=False, indent=4)
    for data in (
        body,
        b"\xef\xbb\xbf" + body.encode(),
        "\n".join(json.dumps(REC) for _ in range(50)),
    ):
        report = validate_file(_write(tmp_path, data))
        assert report.ok and report.n_records == 50 and not report.records, report.lines()
    assert sum(1 for _ in iter_records(tmp_path / "d.json")) == 50


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ('[\n{"conversation": [{"input": "a", "output": "b"}]},\n{"conversation": [}\n]', ":3:", "JSON syntax"),
        ('[{"conversation": [{"input": "a", "output": "b"}]},\n]', ":2:1", "comma after the last record"),
        ('[{"conversation": [{"input": "a", "output": "b"}]}', ":1", "never closed"),
        ('[{"conversation": [{"input": "a", "output": "b"}]}] x', ":1:", "extra text"),
        ('[{"conversation": [{"input": "a"}]}]', "record 0", "output"),
        ("[" * 5000 + "]" * 5000, "", "nested too deeply"),
    ],
)  # fmt: skip
def test_problems_are_found_in_chunks(tmp_path, streaming, text, where, words):
    report = validate_file(_write(tmp_path, text))
    assert not report.ok
    first = report.errors[0]
    assert where in first.where and words in str(first), report.lines()


def test_a_file_cut_inside_a_character_is_truncated(tmp_path, streaming):
    raw = json.dumps([REC] * 3, ensure_ascii=False).encode()
    report = validate_file(_write(tmp_path, raw[: raw.rindex("助".encode()) + 1]))
    assert "truncated" in report.errors[0].message


def test_memory_stays_bounded_by_the_chunk_not_the_file(tmp_path, monkeypatch):
    # (tracemalloc slows Python ~20x: a small file, small chunks; the whole-file reader
    # peaks at ~7x the file's size here, the chunked one at a fraction of it)
    monkeypatch.setattr(v, "STREAM_BYTES", 1 << 14)
    monkeypatch.setattr(v, "CHUNK_BYTES", 1 << 11)
    path = _write(tmp_path, json.dumps([REC] * 1_500, ensure_ascii=False, indent=4))
    size = path.stat().st_size
    assert size > 250_000
    tracemalloc.start()
    try:
        report = validate_file(path)
        stats = dataset_stats(iter_records(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok and report.n_records == 1_500 and stats.records == 1_500
    assert stats.duplicates == 1_499
    assert peak < size / 8, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"
