"""run-all: every step of the tutorial in order, headless, on a real model or the demo one.

Each step calls the same engine function the wizard's screens and the other commands call;
this module only chooses sizes and strings them together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import WizardError
from engine.workspace import Workspace

Say = Callable[[str], None]

# The tutorial's first question: the one its before/after table shows.
IDENTITY_PROMPT = "请介绍一下你自己"

# The demo model is tiny and trains on a CPU: the tutorial's data style with n=50 gives 102
# records that pack into ~32 samples an epoch of ~60 tokens (xtuner's 32 shards, or fewer
# processes with a shorter max_length: engine.config.estimate.data_preparation), ~96 iterations,
# enough for it to learn the answers exactly (see docs/notes/xtuner-on-cpu.md); n=8000 would
# take hours on a CPU.
DEMO_DATA = {"style": "tutorial", "n": 50}


@dataclass
class RunAllResult:
    model: Path
    dataset: Path
    config: Path
    run_id: str
    merged: Path
    prompt: str
    answer: str


def resolve_model(ws: Workspace, model: str | None, say: Say) -> tuple[Path, bool]:
    """The model folder to fine-tune and whether it is the demo model (built on demand)."""
    from engine.selection import ensure_model, record_model, require_model

    choice = require_model(ws, model or "demo", weights=True)
    if choice.is_demo:
        say(_demo_line(choice.demo))
    path = ensure_model(ws, choice)
    record_model(ws, choice)
    return path, choice.is_demo


def _demo_line(demo: str) -> str:
    from engine.demo import demo_arch

    kind = {"internlm2": "InternLM2", "qwen2": "Qwen2"}.get(demo_arch(demo) or "", demo)
    return f"model: the demo model (tiny {kind}, random weights; builds offline in seconds)"


def run_all(
    ws: Workspace,
    *,
    name: str,
    model: str | None = "demo",
    profile: str = "auto",
    style: str | None = None,
    n: int | None = None,
    max_iters: int | None = None,
    force: bool = False,
    say: Say = print,
    trust_remote_code: bool = False,
) -> RunAllResult:
    from engine.chat.adapter import answer_from_run, prefetch_imports
    from engine.config import render_config, write_config
    from engine.data import IdentityFacts, build_dataset, record_choice, write_dataset
    from engine.data.generate import heldout_path_for
    from engine.export import convert_and_merge
    from engine.runs import get_run, start_run
    from engine.runs.launch import active_runs, plan_from_choices
    from engine.selection import ensure_model, record_model, require_model
    from engine.trust import require_trusted

    # Check first, change nothing: every refusal comes before the first write.
    active = active_runs(ws) if ws.runs_dir.is_dir() else []
    if active:
        raise WizardError(
            f"run {active[0].id} is still {active[0].state}; run-all would rewrite its "
            "dataset and config",
            where=str(ws.root),
            fix=f"wait for it, or stop it: xtuner-wizard stop {active[0].id}",
        )
    choice = require_model(ws, model or "demo", weights=True)
    is_demo = choice.is_demo
    if not trust_remote_code and choice.path.is_dir():
        # the demo too: trusted by its code's hash (xtuner's own files), not by its name; one
        # not built yet is built below from those files
        require_trusted(ws, choice.path)
    demo_sizing = is_demo and style is None and n is None
    if demo_sizing:
        style, n = DEMO_DATA["style"], DEMO_DATA["n"]
    bundle = build_dataset(style or "varied", IdentityFacts(name=name), n=n)
    ws.check_user_file(ws.dataset_path, force=force)
    if bundle.heldout is not None:
        ws.check_user_file(heldout_path_for(ws.dataset_path), force=force)

    ws.ensure()
    if is_demo:
        say(_demo_line(choice.demo))
    model_path = ensure_model(ws, choice)
    overrides = {"max_iters": max_iters} if max_iters else None
    rendered = render_config(
        model_path=str(model_path),
        data_path=str(ws.dataset_path),
        profile=profile,
        overrides=overrides,
    )
    ws.check_user_file(ws.root / rendered.default_filename, force=force)  # before any write
    require_trusted(ws, model_path, consent=trust_remote_code)  # as built or found
    record_model(ws, choice)
    ws.mark_done("environment")

    # 1. data
    if demo_sizing:
        say(
            f"data: demo sizing, tutorial style with n={n} (the demo model learns it in ~100 iterations)"
        )
    written = write_dataset(ws, bundle, force=force)
    record_choice(ws, written, IdentityFacts(name=name))
    say(f"data: wrote {ws.rel(written.path)} ({written.records} records)")

    # 2. config, rendered again now that the dataset is there: its size sets the dataset
    # preparation (map_num_proc, the pack length: engine.config.api.prepare_dataset)
    rendered = render_config(
        model_path=str(model_path),
        data_path=str(ws.dataset_path),
        profile=profile,
        overrides=overrides,
    )
    config_path = write_config(ws, rendered, force=force)
    ws.mark_done("config")
    say(f"config: wrote {ws.rel(config_path)} (profile {rendered.profile})")
    for note in rendered.notes:
        say(f"config: {note}")

    # 3. train (detached: it survives this process)
    record = start_run(ws, config_path, plan=plan_from_choices(ws))
    say(f"train: run {record.id} started: {record.command}")
    say(
        f"train: follow it with `xtuner-wizard attach {record.id}`; it goes on if this process dies"
    )
    prefetch_imports()  # the first answer follows training: import torch meanwhile
    record = _follow(ws, record.id, say)
    if not record.succeeded:
        raise WizardError(
            f"training run {record.id} {record.state}: {record.cause or 'see its log'}",
            where=str(record.log_path),
            fix=record.fix or "read the log, fix the config, then `xtuner-wizard resume`",
        )
    ws.mark_done("train")
    record = get_run(ws, record.id)

    # 4. the first answer, from the run's checkpoint (LoRA folded into the base in memory)
    answer, engine_name = answer_from_run(ws, record.id, IDENTITY_PROMPT)
    ws.mark_done("chat")
    say(f"chat ({engine_name}, from the checkpoint): {IDENTITY_PROMPT}")
    say(f"chat: {answer}")

    # 5. convert + merge (after the answer: nothing waits for it)
    merged = convert_and_merge(
        ws, run=record.id, progress=lambda phase, detail: say(f"merge: {phase}: {detail}")
    )
    ws.mark_done("merge")
    say(f"merge: {ws.rel(merged)}")
    return RunAllResult(
        model_path, written.path, config_path, record.id, merged, IDENTITY_PROMPT, answer
    )


def _follow(ws: Workspace, run_id: str, say: Say):
    """Wait for the run, reporting progress every tenth of the way."""
    from engine.runs import get_run
    from engine.runs.follow import RunFollower

    follower = RunFollower(get_run(ws, run_id))
    last = -1
    for update in follower.updates(interval=1.0):
        snap = update.snapshot
        if snap.max_iters and snap.iteration - last >= max(1, snap.max_iters // 10):
            last = snap.iteration
            loss = f"{snap.last_loss:.4f}" if snap.last_loss is not None else "-"
            say(f"train: iter {snap.iteration}/{snap.max_iters} loss {loss}")
    return follower.record
