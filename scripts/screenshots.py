"""Write docs/screens/<step>.svg: each step at 80x24 on the finished demo workspace.

The same workspace, fixed sensors and frozen clock as the snapshot tests
(tests/test_steps_screen.py); Textual's own SVG export.

    PYTHONPATH=$PWD .venv/bin/python scripts/screenshots.py [--size 80x24]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def freeze() -> None:
    import engine.export
    from engine.gpu import GpuSampler
    from tui.screens import environment, train

    os.environ["XTUNER_WIZARD_GPUS"] = "none"
    train._host_sample = lambda procs: (12.0, 3.1, 23.5)
    train.now = lambda: 1795920200.0
    GpuSampler.sample = lambda self: []
    environment.EnvironmentPane.AUTO_CHECK = False
    engine.export.free_bytes = lambda path: 50 * 1024**3


async def shoot(step: str, size: tuple[int, int], out: Path) -> None:
    from test_steps_screen import SNAP_WS, finished_workspace, show_step

    from tui.app import WizardApp

    finished_workspace(SNAP_WS, step)
    app = WizardApp(SNAP_WS)
    async with app.run_test(size=size) as pilot:
        await show_step(pilot, step)
        app.save_screenshot(filename=out.name, path=str(out.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="80x24")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screens")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    freeze()
    from engine.workspace import STEPS

    args.out.mkdir(parents=True, exist_ok=True)
    for number, step in enumerate(STEPS, 1):
        out = args.out / f"{number}-{step}.svg"
        asyncio.run(shoot(step, (width, height), out))
        print(out.relative_to(REPO))


if __name__ == "__main__":
    main()
