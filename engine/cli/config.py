"""``xtuner-wizard config``: render the tutorial's config (or ``config list``: the built-ins)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import WizardError

PROFILE_CHOICES = ("auto", "tutorial", "qlora", "lora", "cpu")


def register(sub, parent) -> None:
    p = sub.add_parser(
        "config",
        parents=[parent],
        help="write the training config: xtuner's built-in one with the tutorial's edits",
        description="Copy xtuner's built-in config (as `xtuner copy-cfg` does) into the "
        "workspace as <base>_copy.py, with the tutorial's edits (model path, data path, JSON "
        "loading, dataset_map_fn=None, evaluation questions) and the settings of a profile. "
        "`config list [-p PATTERN]` lists the built-in configs, like `xtuner list-cfg -p`.",
        epilog="profiles: auto (by the hardware found), tutorial (QLoRA nf4, fp16, batch 1 x 16), "
        "qlora, lora (bf16, sdpa, bigger batch), cpu (float32, no AMP, gloo). "
        "Wizard keys for --set besides the file's own settings: lora_r lora_alpha lora_dropout "
        "quantization torch_dtype amp attn_implementation use_activation_checkpointing "
        "max_iters max_new_tokens logger_interval dist_backend.",
    )
    p.add_argument(
        "action", nargs="?", choices=("list",), help="list: show the built-in configs instead"
    )
    p.add_argument("-p", "--pattern", default=None, help="list: only names containing PATTERN")
    p.add_argument(
        "--model",
        default=None,
        metavar="PATH|demo",
        help="the model folder (default: the workspace's model; demo builds the demo model)",
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="the dataset (default: the one `data generate` or the Data step wrote)",
    )
    p.add_argument(
        "--base",
        default=None,
        metavar="CONFIG",
        help="the built-in config to start from (default: the best fit for the model's family, "
        "e.g. internlm2_chat_1_8b_qlora_alpaca_e3, qwen1_5_0_5b_chat_qlora_alpaca_e3; "
        "`xtuner-wizard models` lists the fits)",
    )
    p.add_argument("--profile", choices=PROFILE_CHOICES, default="auto")
    p.add_argument(
        "--eval",
        nargs="+",
        default=None,
        metavar="TEXT",
        help="evaluation questions (default: 请介绍一下你自己, Please introduce yourself)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="set_args",
        help="change a setting (Python value: --set lr=1e-4 --set SYSTEM='...'); repeatable",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help="where to write, relative to the current folder (default: <base>_copy.py in the "
        "workspace)",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the Python code the model folder brings (auto_map, *.py); asked once per "
        "version of that code",
    )
    p.add_argument("--diff", action="store_true", help="also print the diff against the built-in")
    p.add_argument("--dry-run", action="store_true", help="print the diff only, write nothing")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a config you edited by hand (a backup goes to .wizard/backups)",
    )
    p.set_defaults(func=handle, takes_model=True)


def handle(args: argparse.Namespace) -> int:
    if args.action == "list":
        return list_configs(args)
    return render(args)


def list_configs(args: argparse.Namespace) -> int:
    from engine.config import list_builtin

    names = list_builtin(args.pattern)
    if not names:
        raise WizardError(
            f"no built-in config matches {args.pattern!r}",
            where="config list -p",
            fix="try a shorter pattern such as internlm2",
        )
    print("\n".join(names))
    return 0


def _model_choice(args: argparse.Namespace, ws):
    """The model (typed or recorded), checked: folder, config.json, tokenizer, weights."""
    from engine.selection import require_model

    choice = require_model(ws, args.model, weights=True)
    if args.model is None and not choice.is_demo:
        # the recorded model may have moved since: check it too, before writing anything
        from engine.selection import check_model_folder

        check_model_folder(choice.path, where="the workspace's model", weights=True)
    return choice


def _data_path(args: argparse.Namespace, ws) -> Path:
    from engine.selection import dataset_path

    path = dataset_path(ws, args.data)
    if not path.is_file():
        raise WizardError(
            "dataset not found",
            where=str(path),
            fix="make one with `xtuner-wizard data generate --name NAME`, or pass --data PATH",
        )
    try:
        from engine.data.validate import validate_file
    except ImportError:  # the data package is optional for this command
        return path
    report = validate_file(path, max_problems=1)
    if not report.ok:
        first = report.errors[0]
        raise WizardError(first.message, where=first.where, fix=first.fix or None)
    return path


def _trained_model(ws, rendered) -> Path | None:
    """The folder the rendered config trains (relative: to the workspace, where the trainer
    runs), as ``--set pretrained_model_name_or_path`` may have changed it."""
    value = rendered.settings.get("pretrained_model_name_or_path")
    if not isinstance(value, str) or not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else ws.root / path


def render(args: argparse.Namespace) -> int:
    from engine.cli import workspace_of
    from engine.config import (
        diff_text,
        estimate_for,
        render_config,
        write_config,
    )
    from engine.selection import ensure_model, record_model
    from engine.trust import require_trusted

    ws = workspace_of(args)
    choice = _model_choice(args, ws)
    if not args.trust_remote_code and choice.path.is_dir():
        # the demo too: trusted by its code's hash (xtuner's files), not by its name; one not
        # built yet is built from xtuner's own files below
        require_trusted(ws, choice.path)
    data = _data_path(args, ws)
    ws.ensure()
    model = ensure_model(ws, choice)
    rendered = render_config(
        model_path=str(model),
        data_path=str(data),
        profile=args.profile,
        base=args.base,
        eval_inputs=args.eval,
        set_args=args.set_args,
    )
    # what the config trains (a --set pretrained_model_name_or_path=DIR included) runs its code
    trains = {model, _trained_model(ws, rendered) or model}
    if not args.trust_remote_code:
        for folder in sorted(trains):
            require_trusted(
                ws, folder, where="--set pretrained_model_name_or_path" if folder != model else None
            )
    if args.diff or args.dry_run:
        sys.stdout.write(diff_text(rendered))
    if args.dry_run:
        return 0
    if args.trust_remote_code:
        for folder in sorted(trains):
            require_trusted(ws, folder, consent=True)
    from engine.selection import absolute

    out = absolute(args.out) if args.out else None  # typed: from the current folder
    path = write_config(ws, rendered, out, force=args.force)
    ws.set_choice("profile", rendered.profile)
    if args.model:
        record_model(ws, choice)
    ws.mark_done("config")
    for note in rendered.notes:
        print(f"  {note}")
    from engine.runs.launch import plan_from_choices

    plan = plan_from_choices(ws)  # what `train` launches: the `gpus` choice, else 1
    run = estimate_for(rendered, data, gpus=plan.gpus_per_node if plan else 1)
    if run is not None:
        print(f"  estimate: {run.summary()}")
        for warning in run.warnings:
            print(f"  warning: {warning}", file=sys.stderr)
    print(f"wrote {ws.rel(path)} (profile {rendered.profile}); next: xtuner-wizard train")
    return 0
