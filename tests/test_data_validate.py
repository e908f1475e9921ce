"""Validation points at the line and says the fix; good files pass; statistics count right."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.data import (
    IdentityFacts,
    dataset_stats,
    dumps_dataset,
    generate_tutorial,
    generate_varied,
    load_conversations,
    validate_file,
)
from engine.errors import WizardError

GOOD_RECORD = {"conversation": [{"input": "你是谁", "output": "我是小助手"}]}

# (name, file bytes, strings the error output must contain)
BROKEN = [
    (
        "trailing_comma",
        b'[\n    {"conversation": [{"input": "a", "output": "b"}]},\n]\n',
        ["bad.json:2:", "a comma after the last record", "remove that comma"],
    ),
    (
        "trailing_comma_in_turn",
        b'[\n    {"conversation": [{"input": "a", "output": "b",}]}\n]\n',
        ["bad.json:2:52:", "comma before '}'", "remove the comma"],
    ),
    (
        "mismatched_bracket",
        b'[\n {"conversation": [}\n]\n',
        ["bad.json:2:20:", "'[' closed with '}'", "close '[' with ']'"],
    ),
    (
        "missing_value",
        b'[\n    {"conversation": }\n]',
        ["bad.json:2:22:", "no value after ':'"],
    ),
    (
        "missing_comma_between_records",
        b'[\n    {"conversation": [{"input": "a", "output": "b"}]}\n    {"conversation": [{"input": "c", "output": "d"}]}\n]',
        ["bad.json:3:5:", "missing comma between records"],
    ),
    (
        "single_quotes",
        b"[\n    {'conversation': [{'input': 'a', 'output': 'b'}]}\n]",
        ["bad.json:2:6:", "single quotes", "double quotes"],
    ),
    (
        "full_width_comma",
        '[\n    {"conversation": [{"input": "a"， "output": "b"}]}\n]'.encode(),
        ["bad.json:2:36:", "full-width '，'", "type ','"],
    ),
    (
        "unterminated_string",
        b'[\n    {"conversation": [{"input": "a, "output": "b"}]}\n]',
        ["bad.json:2:", "JSON syntax"],
    ),
    (
        "alpaca_fields",
        json.dumps([{"instruction": "who", "input": "", "output": "me"}]).encode(),
        ["record 0", "alpaca", '"conversation"'],
    ),
    (
        "empty_output",
        json.dumps([GOOD_RECORD, {"conversation": [{"input": "a", "output": "  "}]}]).encode(),
        ["bad.json:1: record 1.conversation[0].output", "is empty", "write the answer"],
    ),
    (
        "missing_output_and_typo",
        json.dumps([{"conversation": [{"input": "a", "ouput": "b"}]}]).encode(),
        ["conversation[0].ouput", "rename it to 'output'"],
    ),
    (
        "output_not_a_string",
        json.dumps([{"conversation": [{"input": "a", "output": 3}]}]).encode(),
        ["conversation[0].output", "is a number, not a string"],
    ),
    (
        "conversation_not_a_list",
        json.dumps([{"conversation": {"input": "a", "output": "b"}}]).encode(),
        ["record 0.conversation", "not a list of turns"],
    ),
    (
        "not_a_list",
        b'"just a string"',
        ["bad.json", "a JSON string, not a list of records"],
    ),
    (
        "one_pretty_object",
        json.dumps(GOOD_RECORD, indent=2).encode(),
        ["one JSON object, not a list", "wrap the record(s) in [ ]"],
    ),
    (
        "records_inside_a_field",
        json.dumps({"data": [GOOD_RECORD]}, indent=2).encode(),
        ["inside the field 'data'"],
    ),
    ("empty_file", b"   \n", ["the file is empty"]),
    (
        "gbk",
        '[{"conversation": [{"input": "你好", "output": "好"}]}]'.encode("gbk"),
        ["bad.json:1:", "not UTF-8", "GBK"],
    ),
    (
        "json_lines_bad_line",
        b'{"conversation": [{"input": "a", "output": "b"}]}\n{"conversation": [{"input": "a" "output": "b"}]}\n',
        ["bad.json:2:", "missing comma"],
    ),
    (
        "cut_off",
        b'[\n    {"conversation": [{"input": "a", "output": "b"}]},\n    {"conv',
        ["bad.json:3:", "JSON syntax"],
    ),
]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name, content, expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_files_fail_with_where_and_fix(
    tmp_path, capsys, monkeypatch, name, content, expected
):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    before = sha(bad)
    code = main(["data", "validate", "bad.json"])
    captured = capsys.readouterr()
    assert code != 0
    assert "Traceback" not in captured.err
    for text in expected:
        assert text in captured.err, (text, captured.err)
    assert len(captured.err.splitlines()) <= 12
    assert sha(bad) == before


def test_everything_wrong_is_listed_at_once_up_to_a_limit(tmp_path):
    records = [GOOD_RECORD] + [{"conversation": [{"input": "q", "output": ""}]} for _ in range(40)]
    bad = tmp_path / "many.json"
    bad.write_text(dumps_dataset(records), encoding="utf-8")
    report = validate_file(bad, max_problems=20)
    assert not report.ok
    assert len(report.problems) == 20 and report.omitted == 20
    assert report.lines()[-1] == "... and 20 more"
    # each names its own record and line (indent=4: record i starts at line 2 + 8 * i)
    assert report.problems[0].where == f"{bad}:10: record 1.conversation[0].output"
    assert report.problems[1].where == f"{bad}:18: record 2.conversation[0].output"


def test_several_syntax_errors_in_a_pretty_array_are_all_found(tmp_path):
    records = [GOOD_RECORD] * 6
    text = dumps_dataset(records).split("\n")
    # break record 1 and record 4 (single quotes around a key, a missing colon)
    text[12] = text[12].replace('"input"', "'input'")
    text[37] = text[37].replace('"output":', '"output"')
    bad = tmp_path / "two.json"
    bad.write_text("\n".join(text), encoding="utf-8")
    report = validate_file(bad)
    wheres = [p.where for p in report.problems]
    assert wheres == [f"{bad}:13:17", f"{bad}:38:26"], [str(p) for p in report.problems]
    assert "single quotes" in report.problems[0].message
    assert "missing ':'" in report.problems[1].message
    assert len(report.records) == 4


def test_the_command_line_binary_prints_no_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'[{"conversation": [{"input": "a", "output": ""}]}]')
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from engine.cli import main; sys.exit(main())",
            "data",
            "validate",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert f"{bad}:1: record 0.conversation[0].output: is empty" in proc.stderr
    assert "Traceback" not in proc.stderr


def _good_files(tmp_path: Path) -> dict[str, Path]:
    multi = {
        "conversation": [
            {"system": "你是一个乐于助人的助手", "input": "你好", "output": "你好！"},
            {"input": "你是谁", "output": "我是小助手"},
        ]
    }
    files = {
        "array.json": dumps_dataset(generate_tutorial("Ada", 2)).encode(),
        "lines.jsonl": "\n".join(
            json.dumps(r, ensure_ascii=False) for r in [GOOD_RECORD, multi]
        ).encode()
        + b"\n",
        "bom.json": b"\xef\xbb\xbf" + json.dumps([GOOD_RECORD, multi], ensure_ascii=False).encode(),
        "bom-lines.json": b"\xef\xbb\xbf"
        + json.dumps(multi, ensure_ascii=False).encode()
        + b"\r\n",
        "crlf.json": json.dumps([multi], indent=2, ensure_ascii=False)
        .replace("\n", "\r\n")
        .encode(),
        "one-line.jsonl": json.dumps(GOOD_RECORD, ensure_ascii=False).encode(),
    }
    out = {}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        out[name] = tmp_path / name
    return out


def test_good_files_pass(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = _good_files(tmp_path)
    for name, path in files.items():
        before = sha(path)
        code = main(["data", "validate", name])
        captured = capsys.readouterr()
        assert code == 0, (name, captured.err)
        assert f"{name}: OK" in captured.out
        assert sha(path) == before
    report = validate_file(files["bom.json"])
    assert report.bom and report.format == "JSON array" and len(report.records) == 2
    assert validate_file(files["lines.jsonl"]).format == "JSON lines"
    multi = load_conversations(files["bom-lines.json"])
    assert multi[0]["conversation"][0]["system"] == "你是一个乐于助人的助手"


def test_unknown_fields_and_empty_input_are_warnings_not_errors(tmp_path):
    path = tmp_path / "warn.json"
    path.write_text(json.dumps([{"conversation": [{"input": "", "output": "x", "note": "mine"}]}]))
    report = validate_file(path)
    assert report.ok and len(report.warnings) == 2
    assert "warning: unknown field 'note'" in "\n".join(report.lines())


def test_load_conversations_raises_one_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"conversation": []}, {"conversation": [{"input": "a"}]}]))
    with pytest.raises(WizardError) as info:
        load_conversations(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}:1: record 0.conversation: is empty")
    assert "(and 1 more" in text
    missing = tmp_path / "nope.json"
    with pytest.raises(WizardError, match="no such file"):
        load_conversations(missing)


def test_stats_without_a_tokenizer_count_characters():
    stats = dataset_stats(generate_tutorial("Ada", 10))
    assert (stats.records, stats.turns, stats.duplicates, stats.distinct_inputs) == (22, 22, 20, 2)
    assert stats.unit == "chars" and stats.truncated is None
    lengths = sorted(
        [
            len("请介绍一下你自己")
            + len("我是Ada的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦"),
            len("你在实战营做什么") + len("我在这里帮助Ada完成XTuner微调个人小助手的任务"),
        ]
    )
    assert stats.max == lengths[1] and stats.p95 == lengths[1] and stats.median == sum(lengths) / 2
    varied = dataset_stats(generate_varied(IdentityFacts("Ada"), n=300).train)
    assert varied.multi_turn > 0 and varied.duplicates == 0


@pytest.fixture(scope="module")
def demo_tokenizer_dir(tmp_path_factory) -> Path:
    from engine.demo import build_tokenizer

    out = tmp_path_factory.mktemp("tok")
    build_tokenizer(out)
    return out


def test_token_stats_match_what_xtuner_encodes(demo_tokenizer_dir):
    """Token lengths equal xtuner's own template_map_fn + encode_fn on the same records."""
    from engine.xtuner_env import ensure_xtuner_importable_here

    ensure_xtuner_importable_here()
    from transformers import AutoTokenizer
    from xtuner.dataset.map_fns import template_map_fn_factory
    from xtuner.dataset.utils import encode_fn
    from xtuner.utils import PROMPT_TEMPLATE

    records = [
        generate_tutorial("Ada", 0)[0],
        {
            "conversation": [
                {"system": "你是一个助手", "input": "你好", "output": "你好！"},
                {"input": "Who are you?", "output": "I'm Ada's assistant."},
                {"input": "再见", "output": "再见！"},
            ]
        },
        {"conversation": [{"input": "长" * 300, "output": "x"}]},
    ]
    tokenizer = AutoTokenizer.from_pretrained(str(demo_tokenizer_dir), trust_remote_code=True)
    mapper = template_map_fn_factory(template=PROMPT_TEMPLATE.internlm2_chat)
    expected = sorted(
        len(encode_fn(mapper(json.loads(json.dumps(r))), tokenizer, max_length=10**6)["input_ids"])
        for r in records
    )
    stats = dataset_stats(records, demo_tokenizer_dir, max_length=expected[1])
    assert stats.unit == "tokens"
    assert stats.max == expected[2] and stats.median == expected[1]
    assert stats.truncated == 1  # only the longest is over max_length


def test_validate_counts_tokens_with_a_model_folder(tmp_path, demo_tokenizer_dir, capsys):
    path = tmp_path / "a.json"
    path.write_text(dumps_dataset(generate_tutorial("Ada", 1)), encoding="utf-8")
    assert (
        main(
            ["data", "validate", str(path), "--model", str(demo_tokenizer_dir), "--max-length", "8"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "tokens: median" in out and "over max_length 8: 4 (XTuner truncates them)" in out
    assert main(["data", "validate", str(path), "--model", str(tmp_path / "missing")]) == 2
    assert "no such model folder" in capsys.readouterr().err


def test_a_minified_array_with_several_problems_lists_them_all(tmp_path):
    bad = tmp_path / "min.json"
    bad.write_text(
        '[{"conversation": [{"input": "a", "output": "b",}]}, '
        '{"conversation": [{"input": "a" "output": "b"}]}, '
        '{"conversation": [{"input": "a", "output": ""}]}]'
    )
    report = validate_file(bad)
    assert [p.where for p in report.problems] == [
        f"{bad}:1:49",
        f"{bad}:1:86",
        f"{bad}:1: record 2.conversation[0].output",
    ]
