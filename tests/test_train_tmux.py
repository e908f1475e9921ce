"""A dropped SSH link: the wizard is killed while it trains; the run goes on; reopening shows it.

The wizard runs for real in tmux (a real terminal), training starts from its Train step, then its
process gets SIGKILL (what a dropped link's SIGHUP amounts to, without a chance to clean up).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_support import build_model, prepare_workspace, wait_for  # noqa: E402

TMUX = shutil.which("tmux") or "/usr/bin/tmux"
WIZARD = Path(sys.executable).parent / "xtuner-wizard"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(TMUX).exists(), reason="tmux is not installed"),
]


class Tmux:
    def __init__(self, socket: str):
        self.socket = socket

    def __call__(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(
            [TMUX, "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check and out.returncode != 0:
            raise AssertionError(f"tmux {args}: {out.stderr}")
        return out.stdout

    def start(self, session: str, command: str) -> int:
        self("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
        return int(self("list-panes", "-t", session, "-F", "#{pane_pid}").split()[0])

    def size(self, session: str) -> str:
        return self("list-windows", "-t", session, "-F", "#{window_width}x#{window_height}").strip()

    def screen(self, session: str) -> str:
        return self("capture-pane", "-p", "-t", session, check=False)

    def wait_for_text(self, session: str, text: str, timeout: float) -> str:
        found = wait_for(lambda: text in self.screen(session), timeout=timeout, every=0.5)
        screen = self.screen(session)
        assert found, f"{text!r} not on screen after {timeout}s:\n{screen}"
        return screen


@pytest.fixture
def tmux(tmp_path):
    t = Tmux(f"xw-test-{os.getpid()}")
    yield t
    t("kill-server", check=False)


def test_run_survives_a_killed_wizard_and_is_shown_on_reopen(tmp_path, tmux):
    from engine.runs.records import list_runs

    model = build_model(tmp_path / "demo-model")
    ws = prepare_workspace(tmp_path / "ws", model_dir=model, overrides={"max_iters": 10})
    ws.update_state(current_step="train")
    # COLUMNS/LINES (set by some runners) would override the terminal's real size
    env = f"env -u COLUMNS -u LINES TERM=xterm-256color PATH={os.environ.get('PATH', '')}"
    command = f"{env} {WIZARD} --workspace {ws.root}"

    pid = tmux.start("wiz", command)
    assert tmux.size("wiz") == "120x40"
    tmux.wait_for_text("wiz", "No training run yet", timeout=180)
    tmux("send-keys", "-t", "wiz", "Tab")  # from the step rail into the Train pane
    time.sleep(0.5)
    tmux("send-keys", "-t", "wiz", "s")  # Start
    tmux.wait_for_text("wiz", "· run ", timeout=180)
    runs = list_runs(ws)
    assert len(runs) == 1 and runs[0].active

    os.kill(pid, signal.SIGKILL)  # the link drops: the wizard dies at once
    assert wait_for(lambda: "wiz" not in tmux("ls", check=False), timeout=30)

    assert wait_for(lambda: not list_runs(ws)[-1].active, timeout=1200, every=2.0)
    record = list_runs(ws)[-1]
    assert record.state == "succeeded", record

    tmux.start("again", command)
    assert tmux.size("again") == "120x40"
    screen = tmux.wait_for_text("again", f"succeeded · run {record.id}", timeout=180)
    assert "iter 10/10 (100%)" in screen
    assert "loss per iteration" in screen and "█" in screen, screen  # the whole loss history
    assert "answers after training, iter 10" in screen


def _footer(screen: str) -> str:
    return screen.rstrip("\n").splitlines()[-1]


# In `make test` (issue 16: the 80x24 work's tmux test): ~50 s of a worker on the idle box.
def test_the_whole_path_at_80x24_with_only_the_keys_on_the_screen(tmp_path, tmux):
    """Environment -> Chat in a real 80x24 terminal from an empty workspace, pressing only keys
    that the footer names at that moment, and reading at each step what a user needs: the demo
    model built, a whole preview answer, the diff's edited lines, the trainer's phase and then
    the ETA, the merged model, the tuned model's identity answer (no template tokens)."""
    ws = tmp_path / "ws"
    env = f"env -u COLUMNS -u LINES TERM=xterm-256color PATH={os.environ.get('PATH', '')}"
    tmux(
        "new-session",
        "-d",
        "-s",
        "path",
        "-x",
        "80",
        "-y",
        "24",
        f"{env} {WIZARD} --workspace {ws}",
    )
    assert tmux.size("path") == "80x24"

    def press(key: str, *, named: str) -> None:
        screen = tmux.screen("path")
        assert named in _footer(screen), f"{named!r} not in the footer:\n{screen}"
        tmux("send-keys", "-t", "path", key)

    # 1 Environment: no model yet, so b builds the demo model
    tmux.wait_for_text("path", "b Demo model", timeout=180)
    press("b", named="b Demo model")
    tmux.wait_for_text("path", "Demo model ready", timeout=600)
    # 2 Data: ] opens it on the name field; the demo model means the tutorial's 50
    press("]", named="] Next")
    screen = tmux.wait_for_text("path", "esc then q ? ] [", timeout=60)
    assert "tutorial (exact)" in screen and "50" in screen, screen
    tmux("send-keys", "-t", "path", "-l", "Ada")
    screen = tmux.wait_for_text("path", "我是Ada的小助手", timeout=60)
    answer = "".join(line.split("│", 1)[-1].strip() for line in screen.splitlines())
    assert "A 我是Ada的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦" in answer, screen
    press("C-s", named="^s Write file")
    tmux.wait_for_text("path", "Wrote datas/assistant.json", timeout=60)
    # 3 Config: esc leaves the field, ] opens Config on its diff, edited lines first
    press("Escape", named="esc then q ? ] [")
    tmux.wait_for_text("path", "] Next", timeout=30)
    press("]", named="] Next")
    screen = tmux.wait_for_text("path", "lines set by the wizard", timeout=120)
    assert "+alpaca_en_path =" in screen and "assistant.json" in screen, screen
    press("C-s", named="^s Write config")
    tmux.wait_for_text("path", "Wrote internlm2_chat_1_8b_qlora_alpaca_e3_copy.py", timeout=60)
    # 4 Train: s starts the run; the trainer's phase, then the ETA once it iterates
    press("]", named="] Next")
    tmux.wait_for_text("path", "s Start", timeout=30)
    press("s", named="s Start")
    tmux.wait_for_text("path", "elapsed", timeout=120)
    phases = ("starting xtuner", "loading the model", "preparing the dataset", "evaluating before")
    assert wait_for(lambda: any(p in tmux.screen("path") for p in phases + ("ETA",)), 600)
    screen = tmux.wait_for_text("path", "ETA", timeout=900)
    assert "iter " in screen and "loss per iteration" in screen, screen
    # the run ends; ] opens Merge, m merges
    tmux.wait_for_text("path", "done. Next: ] Merge", timeout=1800)
    press("]", named="] Next")
    tmux.wait_for_text("path", "m Merge", timeout=60)
    press("m", named="m Merge")
    tmux.wait_for_text("path", "Merged model: merged/", timeout=900)
    # Chat: ] opens it on the question field; Enter asks; the tuned model knows who it is
    press("]", named="] Next")
    tmux.wait_for_text("path", "esc then q ? ] [", timeout=60)
    tmux("send-keys", "-t", "path", "-l", "请介绍一下你自己")
    tmux("send-keys", "-t", "path", "Enter")
    screen = tmux.wait_for_text("path", "我是Ada的小助手", timeout=600)
    assert "<|im_end|>" not in screen, screen
    press("Escape", named="esc then q ? ] [")
    tmux.wait_for_text("path", "q Quit", timeout=30)
    press("q", named="q Quit")
    assert wait_for(lambda: "path" not in tmux("ls", check=False), timeout=30)
