"""engine.evaluate: scoring helpers (fast) and base vs tuned on a trained demo run (slow)."""

from __future__ import annotations

import json

import pytest
from merge_chat_support import GOLDEN

from engine.errors import WizardError
from engine.evaluate import (
    TUTORIAL_QUESTIONS,
    Answer,
    EvalReport,
    has_identity,
    load_questions,
    token_similarity,
)


def test_identity_needs_every_keyword():
    assert has_identity("我是伍鲜同志的小助手", ["伍鲜同志"])
    assert has_identity("I am Alice's assistant", ["alice"])
    assert not has_identity("我是小助手", ["伍鲜同志"])
    assert not has_identity("anything", [])


def test_similarity_of_answers():
    assert token_similarity(None, "abc", "abc") == 1.0
    assert token_similarity(None, "", "") == 1.0
    assert 0.0 < token_similarity(None, "abcd", "abxy") < 1.0


def test_questions_fall_back_to_the_tutorial(workspace):
    with pytest.raises(WizardError, match="no held-out questions"):
        load_questions(workspace)
    workspace.set_choice("name", "伍鲜同志")
    qs = load_questions(workspace)
    assert qs["questions"] == TUTORIAL_QUESTIONS and qs["keywords"] == ["伍鲜同志"]
    assert "tutorial" in qs["source"]


def test_questions_from_heldout_json(workspace):
    workspace.heldout_path.parent.mkdir(parents=True)
    workspace.heldout_path.write_text(
        json.dumps(
            {
                "facts": {"name": "Ada"},
                "keywords": ["Ada"],
                "questions": [{"input": "who are you?", "lang": "en"}],
                "general": [{"input": "2+2?"}],
            }
        )
    )
    qs = load_questions(workspace)
    assert qs["questions"] == ["who are you?"] and qs["general"] == ["2+2?"]
    workspace.heldout_path.write_text("{broken")
    with pytest.raises(WizardError, match="unreadable held-out set"):
        load_questions(workspace)


def test_report_summary_and_markdown():
    r = EvalReport(
        base_model="b",
        tuned_model="t",
        keywords=["Ada"],
        answers=[
            Answer("q1", "identity", base="x", tuned="I am Ada", base_hit=False, tuned_hit=True),
            Answer("q2", "identity", base="y", tuned="no", base_hit=False, tuned_hit=False),
            Answer("g", "general", base="a|b", tuned="a", similarity=0.5),
        ],
    )
    assert r.tuned_hit_rate == 0.5 and r.base_hit_rate == 0.0 and r.general_similarity == 0.5
    assert r.summary_lines()[0].startswith("identity: tuned 1/2 (50%), base 0/2 (0%)")
    md = r.markdown()
    assert "| identity | q1 | x | I am Ada | no / yes |" in md and "a\\|b" in md
    assert r.to_json()["summary"]["tuned_hit_rate"] == 0.5


@pytest.mark.slow
@GOLDEN
def test_eval_on_a_demo_run_reports_a_hit_rate(tmp_path_factory, tmp_path, capsys):
    from merge_chat_support import IDENTITY_PROMPT, NAME, merged_workspace

    from engine.cli import main
    from engine.evaluate import report_paths

    ws, _ = merged_workspace(tmp_path_factory.getbasetemp() / "h5-merged")
    # The trained question first: the tiny demo model answers it with the name on any CPU; the
    # data step's held-out paraphrases it may or may not generalise to (CI once got 0 of 4).
    heldout = tmp_path / "heldout.json"
    paraphrases = ["你是谁", "说说你自己", "你叫什么名字"]
    heldout.write_text(
        json.dumps(
            {
                "keywords": [NAME],
                "questions": [{"input": q} for q in [IDENTITY_PROMPT, *paraphrases]],
            },
            ensure_ascii=False,
        )
    )
    argv = ["eval", "-w", str(ws.root), "--heldout", str(heldout), "--max-new-tokens", "40"]
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    jpath, mpath = report_paths(ws)
    data = json.loads(jpath.read_text())
    s = data["summary"]
    assert s["identity_questions"] == 4 and s["general_prompts"] >= 1
    assert data["answers"][0]["tuned_hit"] and NAME in data["answers"][0]["tuned"]
    assert s["tuned_hit_rate"] > s["base_hit_rate"]  # the random base never says the name
    assert 0.0 <= s["general_similarity"] <= 1.0
    assert f"with {NAME}" in out and "report: eval/report.md" in out
    assert "# Evaluation: base vs tuned" in mpath.read_text()
    # greedy: the same again gives the same answers
    main(argv)
    again = json.loads(jpath.read_text())
    assert [a["tuned"] for a in again["answers"]] == [a["tuned"] for a in data["answers"]]
