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
        "--data", default=None, metavar="PATH", help="the dataset (default: datas/assistant.json)"
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
        "--out", default=None, metavar="PATH", help="where to write (default <base>_copy.py)"
    )
    p.add_argument("--diff", action="store_true", help="also print the diff against the built-in")
    p.add_argument("--dry-run", action="store_true", help="print the diff only, write nothing")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a config you edited by hand (a backup goes to .wizard/backups)",
    )
    p.set_defaults(func=handle)


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


def _model_dir(args: argparse.Namespace, ws) -> Path:
    model = args.model or ws.load_state().choices.get("model")
    if not model:
        raise WizardError(
            "no model given",
            where="--model",
            fix="pass --model PATH (the folder with config.json and weights) or --model demo",
        )
    from engine.demo import demo_arch

    if demo_arch(model):
        from engine.demo import ensure_demo_model

        return ensure_demo_model(ws, arch=demo_arch(model))
    path = Path(model).expanduser()
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    if not path.is_dir():
        raise WizardError(
            "model folder not found",
            where=str(path),
            fix="pass the folder holding config.json and the weights, or --model demo",
        )
    if not (path / "config.json").is_file():
        raise WizardError(
            "not a model folder: no config.json",
            where=str(path),
            fix="pass the folder holding config.json and the weights (e.g. internlm2-chat-1_8b)",
        )
    weights = [
        f
        for pattern in ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
        for f in path.glob(pattern)
    ]
    if not weights:
        raise WizardError(
            "no weights in the model folder (*.safetensors or *.bin)",
            where=str(path),
            fix="download the whole model, or point --model at the folder that has them",
        )
    return path


def _data_path(args: argparse.Namespace, ws) -> Path:
    if args.data:
        path = Path(args.data).expanduser()
        if not path.is_absolute():
            path = (Path.cwd() / path).resolve()
    else:
        path = ws.dataset_path
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


def render(args: argparse.Namespace) -> int:
    from engine.cli import workspace_of
    from engine.config import (
        diff_text,
        estimate_for,
        render_config,
        write_config,
    )
    from engine.demo import demo_arch

    ws = workspace_of(args).ensure()
    model = _model_dir(args, ws)
    data = _data_path(args, ws)
    rendered = render_config(
        model_path=str(model),
        data_path=str(data),
        profile=args.profile,
        base=args.base,
        eval_inputs=args.eval,
        set_args=args.set_args,
    )
    if args.diff or args.dry_run:
        sys.stdout.write(diff_text(rendered))
    if args.dry_run:
        return 0
    path = write_config(ws, rendered, args.out, force=args.force)
    ws.set_choice("profile", rendered.profile)
    if args.model:
        ws.set_choice("model", args.model if demo_arch(args.model) else str(model))
    ws.mark_done("config")
    for note in rendered.notes:
        print(f"  {note}")
    run = estimate_for(rendered, data)
    if run is not None:
        print(f"  estimate: {run.summary()}")
        for warning in run.warnings:
            print(f"  warning: {warning}", file=sys.stderr)
    print(f"wrote {ws.rel(path)} (profile {rendered.profile}); next: xtuner-wizard train")
    return 0
