"""The Environment step in the real app: checks run in a worker, re-run on r, demo model on b."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from textual.widgets import Static

from engine.demo import ensure_demo_model, is_complete
from engine.envcheck import Check
from engine.workspace import Workspace
from tui.app import WizardApp
from tui.screens.environment import EnvironmentPane
from tui.widgets.step_rail import StepRail

DATASET = [{"conversation": [{"input": "请介绍一下你自己", "output": "我是小明的小助手"}]}]

# A real run of the checks on the CPU machine (xtuner-wizard doctor --json on a workspace with
# the demo model and the tutorial's dataset), paths normalised: the snapshot's input.
RECORDED = [
    Check("Python", "ok", "Python 3.11.7 (~/xtuner-wizard/.venv/bin/python3)", ""),
    Check(
        "packages",
        "ok",
        "xtuner 0.2.0, torch 2.13.0+cpu, transformers 4.48.0, mmengine 0.10.6, peft 0.21.2, "
        "bitsandbytes 0.45.0, datasets 5.0.1: as xtuner needs",
        "",
    ),
    Check(
        "torch + CUDA",
        "warn",
        "torch 2.13.0+cpu: a CPU build of torch; training runs on the CPU (tiny models only, slow)",
        "fine for the demo model; for a real model use a machine with an NVIDIA GPU and the "
        "CUDA build of torch",
    ),
    Check(
        "bitsandbytes 4-bit",
        "warn",
        "bitsandbytes 0.45.0 needs a CUDA GPU for 4-bit: QLoRA is off here, the wizard uses "
        "LoRA in float32",
        "nothing to do on a CPU; QLoRA needs an NVIDIA GPU",
    ),
    Check(
        "GPU",
        "warn",
        "no NVIDIA GPU found (NVML: NVML Shared Library Not Found)",
        "train the demo model on the CPU, or run on a machine with an NVIDIA GPU and driver",
    ),
    Check("CPU", "ok", "2 usable core(s)", ""),
    Check("RAM", "ok", "20.3 GiB available of 23.5 GiB", ""),
    Check("disk", "ok", "75.1 GiB free in ~/workspace; the run writes about 529.9 MiB", ""),
    Check("model config", "ok", "InternLM2ForCausalLM (~/workspace/demo-model)", ""),
    Check("tokenizer", "ok", "tokenizer.json, template: yes", ""),
    Check("weights", "ok", "model.safetensors, 15.6 MiB", ""),
    Check(
        "remote code",
        "ok",
        "configuration_internlm2.py, modeling_internlm2.py (sha256 295b8dfe850f) runs with "
        "trust_remote_code: the wizard's demo code (xtuner's own files)",
        "",
    ),
    Check("dataset", "ok", "102 conversations (~/workspace/datas/assistant.json)", ""),
]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    # Same folder as tests/test_demo.py uses: one build per session.
    ws = Workspace(tmp_path_factory.getbasetemp() / "shared-demo-ws").ensure()
    return ensure_demo_model(ws)


async def settle(app: WizardApp, pilot) -> None:
    """Wait until the pane's workers (and the re-check a finished build starts) are done."""
    pane = app.query_one(EnvironmentPane)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 300
    while loop.time() < deadline:
        await pilot.pause(0.1)
        if not pane._checking and not pane._building:
            await pilot.pause()
            return
    raise AssertionError("the Environment pane never settled")


async def test_checks_appear_rerun_and_mark_the_step(workspace: Workspace, demo_dir: Path):
    workspace.set_choice("model", str(demo_dir))
    workspace.dataset_path.parent.mkdir(parents=True)
    workspace.dataset_path.write_text(json.dumps(DATASET, ensure_ascii=False), encoding="utf-8")
    app = WizardApp(workspace.root)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(EnvironmentPane)
        await settle(app, pilot)
        names = [c.name for c in pane.checks]
        for expected in ("Python", "torch + CUDA", "GPU", "disk", "remote code", "dataset"):
            assert expected in names
        remote = next(c for c in pane.checks if c.name == "remote code")
        assert "modeling_internlm2.py" in remote.detail
        assert "Training can go ahead" in str(app.query_one("#env-summary", Static).content)
        assert app.query_one(StepRail).state_of("environment") == "done"
        assert "environment" in workspace.load_state().done
        # A model folder of the user's own: no demo-model key.
        assert pane.check_action("build_demo", ()) is False

        # Walk the rail away and back (esc leaves the Data step's name field): the checks stay.
        await pilot.press("right_square_bracket", "escape", "right_square_bracket")
        assert app.current_step == "config"
        await pilot.press("1")
        assert app.current_step == "environment" and pane.checks

        # Opening the step focused its main control (the checks); r re-runs them (a new
        # generation; old results would be dropped).
        assert app.focused is not None and pane in app.focused.ancestors_with_self
        before = pane._generation
        await pilot.press("r")
        assert pane._generation == before + 1
        await settle(app, pilot)
        assert [c.name for c in pane.checks] == names


async def test_b_builds_the_demo_model_and_rechecks(workspace: Workspace, monkeypatch):
    monkeypatch.setattr(EnvironmentPane, "PROBE", False)  # the first test probes for real
    app = WizardApp(workspace.root)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(EnvironmentPane)
        await settle(app, pilot)
        model = next(c for c in pane.checks if c.name == "model")
        assert model.status == "warn" and "not built yet" in model.detail
        assert pane.check_action("build_demo", ()) is True
        await pilot.press("tab", "b")
        assert pane._building
        await settle(app, pilot)
        demo_line = str(app.query_one("#env-demo", Static).content)
        assert "Demo model ready" in demo_line, demo_line
        assert is_complete(workspace.demo_model_dir)
        assert workspace.load_state().choices["model"] == "demo"
        named = {c.name: c for c in pane.checks}
        assert named["weights"].status == "ok" and "model" not in named


async def test_failed_checks_keep_the_step_open(workspace: Workspace, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(EnvironmentPane, "PROBE", False)
    workspace.set_choice("model", str(tmp_path / "no-such-model"))
    workspace.mark_done("environment")
    app = WizardApp(workspace.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        summary = str(app.query_one("#env-summary", Static).content)
        assert "cannot go ahead" in summary
        assert app.query_one(StepRail).state_of("environment") == "todo"
    assert "environment" not in workspace.load_state().done


def test_environment_snapshot(snap_compare, workspace: Workspace, monkeypatch):
    monkeypatch.setattr(EnvironmentPane, "AUTO_CHECK", False)
    app = WizardApp(workspace.root)

    async def feed(pilot) -> None:
        app.query_one("#title-bar", Static).update("xtuner-wizard  ·  ~/workspace")
        app.query_one(EnvironmentPane).show_checks(RECORDED)
        await pilot.press("tab")  # into the pane: the footer shows its keys
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 40), run_before=feed)


async def test_a_model_of_another_family_makes_config_propose_that_familys_base(
    workspace: Workspace, tmp_path: Path, monkeypatch
):
    """An InternLM2 base chosen in Config, then a Qwen2 model chosen in the picker: the stale
    base is dropped and the Config step proposes Qwen1.5's config."""
    from test_models import INTERNLM2_CFG, QWEN2_CFG, hf_snapshot, safetensors_bytes, write_model
    from waits import settle as settle_all
    from waits import until

    from tui.widgets.model_picker import ModelPicker, ModelPickerScreen

    monkeypatch.setattr(EnvironmentPane, "PROBE", False)
    weights = safetensors_bytes({"w": ("BF16", [8, 8])})
    snap = hf_snapshot(
        tmp_path / "hf",
        "Qwen/Qwen1.5-0.5B-Chat",
        "a" * 40,
        {"config.json": json.dumps(QWEN2_CFG).encode(), "model.safetensors": weights},
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    monkeypatch.setenv("XTUNER_WIZARD_SHARE_ROOTS", "")
    intern = write_model(tmp_path / "internlm2", INTERNLM2_CFG, {"w": ("BF16", [8, 8])})
    workspace.set_choice("model", str(intern))
    workspace.set_choice("config_base", "internlm2_chat_1_8b_qlora_alpaca_e3")
    app = WizardApp(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.open_step("config")  # seen once with the InternLM2 base: the pane keeps it in mind
        await until(pilot, lambda: app.query("#config"), "the Config step")
        await settle_all(pilot)
        assert app.query_one("#config")._base == "internlm2_chat_1_8b_qlora_alpaca_e3"
        app.open_step("environment", focus=True)
        await settle_all(pilot)
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, ModelPickerScreen), "the picker")
        picker = app.screen.query_one(ModelPicker)
        await until(pilot, lambda: len(picker.entries) == 2, "discovery")
        qwen = next(i for i, e in enumerate(picker.entries) if e.path == snap)
        app.screen.query_one("#mp-list").highlighted = qwen
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, ModelPickerScreen), "closed")
        choices = workspace.load_state().choices
        assert choices["model"] == str(snap) and "config_base" not in choices
        await settle(app, pilot)
        app.open_step("config")
        await until(pilot, lambda: app.query("#config"), "the Config step")
        await settle_all(pilot)
        pane = app.query_one("#config")
        assert pane._base == "qwen1_5_0_5b_chat_qlora_alpaca_e3"
        assert str(app.query_one("#base-name", Static).content) == pane._base


def screen_text(app: WizardApp) -> str:
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)


async def test_t_names_and_confirms_a_model_folders_code_at_80x24(
    workspace: Workspace, tmp_path: Path, monkeypatch
):
    """Remote code is a warning naming its files and hash, and the key that confirms it; t opens
    the dialog, n records nothing, y records the hash and the check turns green."""
    from test_trust import remote_model
    from waits import until

    from engine.trust import is_trusted, remote_code
    from tui.widgets.confirm import ConfirmTrust

    monkeypatch.setattr(EnvironmentPane, "PROBE", False)
    model = remote_model(tmp_path / "evil")
    code = remote_code(model)
    workspace.set_choice("model", str(model))
    app = WizardApp(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(EnvironmentPane)
        await settle(app, pilot)
        remote = next(c for c in pane.checks if c.name == "remote code")
        assert remote.status == "warn" and code.short in remote.detail
        assert pane.check_action("trust_code", ()) is True
        await pilot.press("tab")  # into the pane: its keys in the footer
        await pilot.pause()
        text = screen_text(app)
        assert "modeling_evil.py" in text and code.short in text
        assert "press t" in text  # the key, named where the warning is
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, ConfirmTrust), "the trust dialog")
        dialog = screen_text(app)
        assert "modeling_evil.py" in dialog and code.short in dialog and "(y)" in dialog
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmTrust), "closed")
        assert not is_trusted(workspace, model)
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, ConfirmTrust), "the trust dialog")
        await pilot.press("y")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmTrust), "closed")
        assert code.digest in workspace.load_state().trusted
        await settle(app, pilot)
        remote = next(c for c in pane.checks if c.name == "remote code")
        assert remote.status == "ok" and "confirmed" in remote.detail
        assert pane.check_action("trust_code", ()) is False  # nothing left to confirm
