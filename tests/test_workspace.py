from __future__ import annotations

import pytest

from engine.errors import HandEditedError
from engine.workspace import Workspace


def test_state_round_trips_and_survives_a_broken_file(workspace: Workspace):
    workspace.update_state(current_step="train")
    workspace.set_choice("model", "demo")
    assert Workspace(workspace.root).load_state().current_step == "train"
    workspace.state_path.write_text("{not json", encoding="utf-8")
    assert workspace.load_state().current_step == "environment"
    assert any(workspace.backups_dir.iterdir()), "the broken state file is kept aside"


def test_hand_edited_file_is_not_clobbered(workspace: Workspace):
    target = workspace.root / "cfg.py"
    workspace.write_user_file(target, "a = 1\n")
    workspace.write_user_file(target, "a = 2\n")  # still the wizard's own: replaced freely
    target.write_text("a = 3  # mine\n", encoding="utf-8")
    with pytest.raises(HandEditedError) as err:
        workspace.write_user_file(target, "a = 4\n")
    assert "cfg.py" in str(err.value) and "fix:" in str(err.value)
    assert target.read_text(encoding="utf-8") == "a = 3  # mine\n"
    backup = workspace.write_user_file(target, "a = 4\n", force=True)
    assert backup is not None and backup.read_text(encoding="utf-8") == "a = 3  # mine\n"
    assert target.read_text(encoding="utf-8") == "a = 4\n"


def test_a_file_the_wizard_never_wrote_counts_as_the_users(workspace: Workspace):
    target = workspace.root / "datas" / "assistant.json"
    target.parent.mkdir()
    target.write_text("[]", encoding="utf-8")
    assert workspace.is_hand_edited(target)
