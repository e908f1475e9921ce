"""``xtuner-wizard models`` (the model folders found here) and ``xtuner-wizard model get|link``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from engine.errors import WizardError
from engine.models import TUTORIAL_LINK


def register(sub, parent) -> None:
    p = sub.add_parser(
        "models",
        parents=[parent],
        help="list the model folders found here (workspace, hub caches, share folders)",
        description="Model folders found in the workspace, --model, Hugging Face's cache "
        "(HF_HUB_CACHE / HF_HOME), ModelScope's cache (MODELSCOPE_CACHE) and the tutorial "
        "platform's share folders (/root/share/new_models, /share/new_models; "
        "XTUNER_WIZARD_SHARE_ROOTS overrides), each with its architecture, parameters, dtype, "
        "size on disk, remote code and the XTuner built-in configs that fit it.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--model",
        default=None,
        metavar="PATH|demo",
        help="also describe this folder (listed first)",
    )
    p.set_defaults(func=list_models, takes_model=True)

    m = sub.add_parser(
        "model",
        parents=[parent],
        help="get a model from the hub (model get REPO_ID), or link one into the workspace",
        description="`model get ORG/NAME`: download a model with huggingface_hub's own "
        "downloader into its cache, in a detached worker (it survives the terminal; run the "
        "same command again to follow it or to resume a download that stopped). "
        "`model link PATH|ORG/NAME`: link a model folder into the workspace as ORG/NAME and "
        "choose it; `--tutorial` links it under the tutorial's name, "
        f"{TUTORIAL_LINK}.",
    )
    msub = m.add_subparsers(dest="model_action", metavar="ACTION", required=True)
    g = msub.add_parser("get", parents=[parent], help="download ORG/NAME with progress")
    g.add_argument("repo_id", metavar="REPO_ID", help="the model's id, e.g. Qwen/Qwen1.5-0.5B-Chat")
    g.add_argument("--source", choices=("hf", "modelscope"), default="hf")
    g.add_argument("--revision", default=None, metavar="R", help="branch, tag or commit (main)")
    g.add_argument("--detach", action="store_true", help="start it and return (follow it later)")
    g.add_argument("--link", action="store_true", help="when done, link it into the workspace")
    g.set_defaults(func=get_model)
    ln = msub.add_parser(
        "link", parents=[parent], help="link a model folder into the workspace (ORG/NAME)"
    )
    ln.add_argument("model", metavar="PATH|ORG/NAME", help="a folder, or a model `models` lists")
    named = ln.add_mutually_exclusive_group()
    named.add_argument(
        "--as",
        dest="name",
        default=None,
        metavar="ORG/NAME",
        help="the name in the workspace (default: the model's own ORG/NAME)",
    )
    named.add_argument(
        "--tutorial",
        action="store_true",
        help=f"link it under the tutorial's name, {TUTORIAL_LINK} (an InternLM2 model)",
    )
    ln.set_defaults(func=link_model)


def list_models(args: argparse.Namespace) -> int:
    from engine.cli import workspace_of
    from engine.envcheck import human_bytes
    from engine.models import SearchRoots, discover, format_params

    ws = workspace_of(args)
    roots = SearchRoots.from_env()
    model = _given_model(args.model) or ws.load_state().choices.get("model")
    entries = discover(ws.root, model=model, roots=roots)
    if args.model and not any(e.source == "--model" for e in entries):
        from engine.demo import demo_arch

        arch = demo_arch(model)
        raise WizardError(
            f"the demo model {model} is not built yet"
            if arch
            else f"not a model folder (no config.json naming a model): {model}",
            where="--model",
            fix=f"build it: xtuner-wizard demo-model --arch {arch}"
            if arch
            else "give the folder holding config.json and the weights",
        )
    if args.json:
        searched = {
            "workspace": str(ws.root),
            "huggingface": str(roots.hf_hub),
            "modelscope": [str(p) for p in roots.modelscope],
            "share": [str(p) for p in roots.share],
        }
        print(
            json.dumps({"models": [e.to_json() for e in entries], "searched": searched}, indent=2)
        )
        return 0
    if not entries:
        print(
            "no model folders found (searched the workspace, "
            f"{roots.hf_hub}, {', '.join(map(str, roots.modelscope))}, "
            f"{', '.join(map(str, roots.share))}).\n"
            "Get one: xtuner-wizard model get internlm/internlm2-chat-1_8b, or copy a folder "
            "here and use --model DIR (or --model demo for the offline demo model)."
        )
        return 0
    for e in entries:
        print(
            f"{e.name}  {e.architecture or e.model_type or '?'}  "
            f"{format_params(e.parameters, e.parameters_estimated)}  {e.dtype or '?'}  "
            f"{human_bytes(e.size_bytes)}  ({e.source})"
        )
        print(f"    {e.path}")
        if e.remote_code:
            print(f"    remote code: {', '.join(e.remote_code)}")
        if e.configs:
            more = f" (+{len(e.configs) - 3} more)" if len(e.configs) > 3 else ""
            print(f"    configs: {', '.join(e.configs[:3])}{more}")
        else:
            print(f"    configs: none built in for model_type {e.model_type!r}")
        for problem in e.problems:
            print(f"    not usable: {problem}")
    return 0


def _given_model(value: str | None) -> str | None:
    """A typed ``--model``: a demo name as it is, a path from the shell's folder, absolute."""
    if not value:
        return None
    from engine.demo import demo_arch
    from engine.selection import absolute

    return value if demo_arch(value) else str(absolute(value))


def get_model(args: argparse.Namespace) -> int:
    from engine.cli import workspace_of
    from engine.download import start_download

    ws = workspace_of(args).ensure()
    job = start_download(ws, args.repo_id, source=args.source, revision=args.revision)
    job = _follow(ws, job, detach=args.detach)
    if job.state == "failed":
        raise WizardError(job.error or "the download failed", where="model get", fix=job.fix)
    if job.state != "done":
        print(
            f"the download goes on in the background (log: {job.log}); "
            f"`xtuner-wizard model get {job.repo_id}` shows it again"
        )
        return 0
    print(job.describe())
    if args.link:
        link_model(
            argparse.Namespace(
                workspace=str(ws.root), model=job.model_dir, name=None, tutorial=False
            )
        )
    else:
        print(
            f"use it: xtuner-wizard config --model {job.model_dir}  "
            f"(or `xtuner-wizard model link {job.model_dir}` for the tutorial's layout)"
        )
    return 0


def _follow(ws, job, *, detach: bool):
    """Print the job's progress until it ends (or, with ``detach``, until it is downloading)."""
    from engine.download import current_job

    tty = sys.stdout.isatty()
    last_line, last_print = "", 0.0
    try:
        while True:
            now = current_job(ws, job.repo_id, job.source) or job
            line = now.describe()
            if now.state in ("done", "failed"):
                if tty and last_line:
                    print()
                return now
            if detach and now.state in ("downloading", "retrying"):
                print(line)
                return now
            if line != last_line and (time.monotonic() - last_print >= 1.0 or not last_line):
                if tty:
                    print(f"\r{line[:200]:<80}", end="", flush=True)
                elif now.state not in ("starting", "checking"):
                    print(line, flush=True)
                last_line, last_print = line, time.monotonic()
            time.sleep(0.25)
    except KeyboardInterrupt:
        print()
        return current_job(ws, job.repo_id, job.source) or job


def link_model(args: argparse.Namespace) -> int:
    from engine.cli import workspace_of
    from engine.download import link_into_workspace
    from engine.models import TUTORIAL_FAMILY, describe_model, discover, workspace_name

    ws = workspace_of(args).ensure()
    given = Path(str(args.model)).expanduser()
    entry = describe_model(given, name=None) if given.is_dir() else None
    if entry is None:
        matches = [e for e in discover(ws.root) if e.name == args.model and e.usable]
        if not matches:
            raise WizardError(
                f"no model folder {args.model!r}",
                where="model link",
                fix="give a folder with config.json, or a name `xtuner-wizard models` lists",
            )
        entry = matches[0]
    else:
        # a folder inside a hub cache or share folder: its ORG/NAME from the listing
        for found in discover(None, model=None):
            if found.path.resolve() == entry.path.resolve():
                entry = found
                break
    tutorial = getattr(args, "tutorial", False)
    if tutorial and entry.model_type != TUTORIAL_FAMILY:
        raise WizardError(
            f"{entry.name} is a {entry.model_type or '?'} model; the tutorial's name "
            f"{TUTORIAL_LINK} is for InternLM2",
            where="--tutorial",
            fix="link it under its own name (no --tutorial), or pick one with --as ORG/NAME",
        )
    name = args.name or workspace_name(entry, tutorial=tutorial)
    link = link_into_workspace(ws, entry.path, name)
    ws.set_choice("model", str(link))  # a config base of another family goes with it
    shown = link.relative_to(ws.root)  # (ws.rel would follow the link)
    target = os.readlink(link) if link.is_symlink() else entry.path
    print(f"linked {shown} -> {target}; it is the workspace's model now")
    return 0
