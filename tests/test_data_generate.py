"""The identity dataset generators: the tutorial's exactly, and the varied one that generalises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.data import (
    IdentityFacts,
    build_dataset,
    dumps_dataset,
    generate_tutorial,
    generate_varied,
    phrases,
    write_dataset,
)
from engine.data.generate import normalize, question_core
from engine.errors import HandEditedError, WizardError
from engine.workspace import Workspace

# The tutorial's xtuner_generate_assistant.py, verbatim but for the name and n lines.
TUTORIAL_SCRIPT = """\
import json

# 设置用户的名字
name = {name!r}
# 设置需要重复添加的数据次数
n = {n}

# 初始化数据
data = [
    {{"conversation": [{{"input": "请介绍一下你自己", "output": "我是{{}}的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦".format(name)}}]}},
    {{"conversation": [{{"input": "你在实战营做什么", "output": "我在这里帮助{{}}完成XTuner微调个人小助手的任务".format(name)}}]}}
]

# 通过循环，将初始化的对话数据重复添加到data列表中
for i in range(n):
    data.append(data[0])
    data.append(data[1])

# 将data列表中的数据写入到'datas/assistant.json'文件中
with open('datas/assistant.json', 'w', encoding='utf-8') as f:
    # 使用json.dump方法将数据以JSON格式写入文件
    # ensure_ascii=False 确保中文字符正常显示
    # indent=4 使得文件内容格式化，便于阅读
    json.dump(data, f, ensure_ascii=False, indent=4)
"""

NAME = "伍鲜同志"


def run_tutorial_script(tmp_path: Path, name: str, n: int) -> bytes:
    folder = tmp_path / f"tutorial-{n}"
    (folder / "datas").mkdir(parents=True)
    script = folder / "xtuner_generate_assistant.py"
    script.write_text(TUTORIAL_SCRIPT.format(name=name, n=n), encoding="utf-8")
    subprocess.run([sys.executable, script.name], cwd=folder, check=True, timeout=60)
    return (folder / "datas" / "assistant.json").read_bytes()


@pytest.mark.parametrize("n", [0, 3, 50])
def test_tutorial_style_is_the_tutorial_scripts_output_byte_for_byte(tmp_path, workspace, n):
    expected = run_tutorial_script(tmp_path, NAME, n)
    records = generate_tutorial(NAME, n)
    assert len(records) == 2 + 2 * n
    assert dumps_dataset(records).encode("utf-8") == expected
    result = write_dataset(workspace, records)
    assert result.path.read_bytes() == expected


def test_tutorial_cli_writes_the_tutorial_bytes_and_8000_gives_16002(tmp_path, workspace, capsys):
    expected = run_tutorial_script(tmp_path, "Ada", 4)
    code = main(
        [
            "-w",
            str(workspace.root),
            "data",
            "generate",
            "--name",
            "Ada",
            "--style",
            "tutorial",
            "--n",
            "4",
        ]
    )
    assert code == 0
    assert workspace.dataset_path.read_bytes() == expected
    assert "10 records" in capsys.readouterr().out
    assert len(generate_tutorial("Ada")) == 16002


def _identity_inputs(records: list[dict]) -> dict[str, list[str]]:
    """Identity questions of the training set per language (general answers excluded)."""
    general_answers = {a for lang in ("zh", "en") for _, a in phrases.GENERAL[lang]}
    general_answers |= {a for lang in ("zh", "en") for _, a in phrases.GREETINGS[lang]}
    out: dict[str, list[str]] = {"zh": [], "en": []}
    for record in records:
        for turn in record["conversation"]:
            if turn["output"] in general_answers:
                continue
            lang = "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in turn["input"]) else "en"
            out[lang].append(turn["input"])
    return out


def test_varied_asks_at_least_50_distinct_ways_per_language():
    bundle = generate_varied(IdentityFacts(NAME), n=2000)
    inputs = _identity_inputs(bundle.train)
    for lang in ("zh", "en"):
        cores = {question_core(q, lang) for q in inputs[lang]}
        assert len(cores) >= 50, (lang, len(cores))
        assert len(set(inputs[lang])) >= 200  # dressed: greetings, punctuation, register
    # mixed punctuation and register
    zh = set(inputs["zh"])
    assert any(q.endswith("？") for q in zh) and any(q.endswith("?") for q in zh)
    assert any(q.startswith("你好，") for q in zh)
    en = set(inputs["en"])
    assert any(q == q.lower() for q in en) and any(q[0].isupper() for q in en)


def test_varied_is_seeded_and_deduplicated():
    facts = IdentityFacts(NAME)
    a = generate_varied(facts, n=800, seed=7)
    b = generate_varied(facts, n=800, seed=7)
    c = generate_varied(facts, n=800, seed=8)
    assert a.train == b.train and a.heldout == b.heldout
    assert a.train != c.train
    keys = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in a.train]
    assert len(keys) == len(set(keys)) == 800


def test_no_heldout_question_is_in_the_training_file(workspace):
    bundle = generate_varied(IdentityFacts(NAME), n=3000, seed=1)
    result = write_dataset(workspace, bundle)
    train = json.loads(result.path.read_text(encoding="utf-8"))
    heldout = json.loads(result.heldout_path.read_text(encoding="utf-8"))
    assert result.heldout_path == workspace.heldout_path
    assert set(heldout) == {"facts", "keywords", "questions", "general"}
    langs = {q["lang"] for q in heldout["questions"]}
    assert langs == {"zh", "en"}
    trained = [t["input"] for r in train for t in r["conversation"]]
    trained_norm = {normalize(q) for q in trained}
    trained_cores = {question_core(q, lang) for q in trained for lang in ("zh", "en")}
    for q in heldout["questions"]:
        assert normalize(q["input"]) not in trained_norm, q
        assert question_core(q["input"], q["lang"]) not in trained_cores, q
    for g in heldout["general"]:
        assert normalize(g["input"]) not in trained_norm, g
    # the tutorial's own records stay in training, word for word (default facts)
    for record in generate_tutorial(NAME, 0):
        assert record in train


def test_every_identity_answer_states_the_facts():
    facts = IdentityFacts(
        "Ann",
        assistant_name="Kiwi",
        maker="Acme Lab",
        base_model="Qwen2 7B",
        purpose="help Ann cook",
    )
    bundle = generate_varied(facts, n=1500, seed=2)
    assert bundle.heldout["keywords"] == ["Ann", "Kiwi"]
    general = {a for lang in ("zh", "en") for _, a in phrases.GENERAL[lang]}
    general |= {a for lang in ("zh", "en") for _, a in phrases.GREETINGS[lang]}
    outputs = [t["output"] for r in bundle.train for t in r["conversation"]]
    identity = [o for o in outputs if o not in general]
    assert len(identity) > 1000
    for answer in identity:
        assert "Ann" in answer and "Kiwi" in answer, answer
    assert any("Acme Lab" in a for a in identity) and any("Qwen2 7B" in a for a in identity)
    assert any("help Ann cook" in a for a in identity)
    assert bundle.heldout["facts"]["maker"] == "Acme Lab"


def test_varied_mixes_multi_turn_and_general_conversation():
    bundle = generate_varied(IdentityFacts(NAME), n=1000, general_share=0.2, multi_turn_share=0.1)
    multi = [r for r in bundle.train if len(r["conversation"]) > 1]
    assert len(multi) == bundle.counts["multi_turn"] == 100
    general = {q for lang in ("zh", "en") for q, _ in phrases.GENERAL[lang]}
    single_general = [
        r
        for r in bundle.train
        if len(r["conversation"]) == 1 and NAME not in r["conversation"][0]["output"]
    ]
    assert len(single_general) == bundle.counts["general"] == 200
    assert any(r["conversation"][0]["input"] in general for r in single_general)
    none = generate_varied(IdentityFacts(NAME), n=300, general_share=0.0)
    assert none.counts["general"] == 0


def test_large_n_is_capped_with_a_note_instead_of_duplicates():
    bundle = generate_varied(IdentityFacts(NAME), n=5000, general_share=0.5)
    assert bundle.counts["general"] < 2500
    assert any("general conversation" in note for note in bundle.notes)
    assert len(bundle.train) == 5000  # identity records fill the rest


@pytest.mark.parametrize(
    "kwargs, where",
    [
        ({"n": 0}, "--n"),
        ({"n": 10, "general_share": 1.5}, "--general-share"),
        ({"n": 10, "general_share": 0.6, "multi_turn_share": 0.5}, "--general-share"),
        ({"n": 10, "heldout_count": 80}, "heldout_count"),
    ],
)
def test_bad_parameters_name_the_option(kwargs, where):
    with pytest.raises(WizardError) as info:
        generate_varied(IdentityFacts(NAME), **kwargs)
    assert info.value.where == where


def test_empty_name_is_refused():
    with pytest.raises(WizardError, match="name"):
        build_dataset("varied", IdentityFacts("  "), n=10)
    with pytest.raises(WizardError, match="style"):
        build_dataset("fancy", IdentityFacts(NAME), n=10)


def test_write_refuses_a_hand_edited_file_and_backs_it_up_with_force(workspace):
    write_dataset(workspace, build_dataset("varied", IdentityFacts(NAME), n=50))
    edited = b'[{"conversation": [{"input": "hi", "output": "mine"}]}]'
    workspace.dataset_path.write_bytes(edited)
    held_before = workspace.heldout_path.read_bytes()
    with pytest.raises(HandEditedError):
        write_dataset(workspace, build_dataset("varied", IdentityFacts("Other"), n=50))
    assert workspace.dataset_path.read_bytes() == edited
    assert workspace.heldout_path.read_bytes() == held_before  # nothing written at all
    result = write_dataset(
        workspace, build_dataset("varied", IdentityFacts("Other"), n=50), force=True
    )
    assert [b.read_bytes() for b in result.backups] == [edited]
    assert "Other" in workspace.dataset_path.read_text(encoding="utf-8")


def test_cli_generate_varied_records_the_choice_and_marks_the_step(workspace, capsys, monkeypatch):
    root = str(workspace.root)
    code = main(
        ["-w", root, "data", "generate", "--name", NAME, "--n", "400", "--assistant-name", "小鲜"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "wrote datas/assistant.json: 400 records" in out
    assert "wrote datas/heldout.json: 30 held-out questions" in out
    state = Workspace(root).load_state()
    assert state.choices["data"] == "datas/assistant.json"
    assert state.choices["name"] == NAME
    assert "data" in state.done
    train = json.loads(workspace.dataset_path.read_text(encoding="utf-8"))
    assert len(train) == 400 and any(
        "小鲜" in t["output"] for r in train for t in r["conversation"]
    )
    # the name is remembered: a second run needs no --name (--out: typed in the workspace)
    monkeypatch.chdir(root)
    assert main(["-w", root, "data", "generate", "--n", "10", "--out", "datas/small.json"]) == 0
    assert Workspace(root).load_state().choices["data"] == "datas/small.json"


def test_cli_generate_refuses_to_clobber_an_edited_file(workspace, capsys):
    root = str(workspace.root)
    workspace.dataset_path.parent.mkdir(parents=True)
    workspace.dataset_path.write_text("[]", encoding="utf-8")  # not written by the wizard
    assert main(["-w", root, "data", "generate", "--name", NAME]) == 2
    err = capsys.readouterr().err
    assert "changed by hand" in err and "--force" in err and "Traceback" not in err
    assert workspace.dataset_path.read_text(encoding="utf-8") == "[]"
    assert main(["-w", root, "data", "generate", "--name", NAME, "--force"]) == 0
    assert "kept as .wizard/backups/" in capsys.readouterr().out


def test_cli_generate_without_a_name_says_so(workspace, capsys):
    assert main(["-w", str(workspace.root), "data", "generate"]) == 2
    assert "--name" in capsys.readouterr().err
