"""``xtuner-wizard data generate|validate``: the identity dataset from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import WizardError

SHOWN_PROBLEMS = 10


def register(sub, parent) -> None:
    data = sub.add_parser(
        "data",
        parents=[parent],
        help="the identity dataset: generate one, or check a file",
        description="Generate the identity dataset (datas/assistant.json) or check a dataset file.",
    )
    actions = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda args: _help(data))

    gen = actions.add_parser(
        "generate",
        parents=[parent],
        help="write datas/assistant.json (and datas/heldout.json)",
        description="Write the identity dataset. 'varied' (default): many paraphrased questions in "
        "Chinese and English, multi-turn samples, some general conversation, and a held-out set "
        "for the evaluation. 'tutorial': exactly the tutorial's xtuner_generate_assistant.py.",
    )
    gen.add_argument("--name", help="your name, as the assistant will say it (required once)")
    gen.add_argument("--style", choices=("varied", "tutorial"), default="varied")
    gen.add_argument(
        "--n",
        type=int,
        default=None,
        metavar="N",
        help="varied: number of records (default 2000); tutorial: repeats (default 8000 -> 16002 records)",
    )
    gen.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help="the dataset file, relative to the current folder (default: the workspace's "
        "datas/assistant.json)",
    )
    gen.add_argument("--seed", type=int, default=0, help="varied: random seed (default 0)")
    gen.add_argument(
        "--assistant-name", default="", metavar="TEXT", help="varied: the assistant's own name"
    )
    gen.add_argument(
        "--maker", default="上海AI实验室", metavar="TEXT", help="varied: who made the base model"
    )
    gen.add_argument(
        "--base-model", default="书生·浦语 1.8B", metavar="TEXT", help="varied: the base model"
    )
    gen.add_argument(
        "--purpose",
        default="",
        metavar="TEXT",
        help="varied: what it is for, a verb phrase (default 帮助NAME完成XTuner微调个人小助手的任务)",
    )
    gen.add_argument(
        "--general-share",
        type=float,
        default=0.1,
        metavar="F",
        help="varied: share of general conversation (default 0.1)",
    )
    gen.add_argument(
        "--force",
        action="store_true",
        help="replace a file you edited by hand (a backup goes to .wizard/backups)",
    )
    gen.set_defaults(func=generate)

    val = actions.add_parser(
        "validate",
        parents=[parent],
        help="check a dataset file and show its statistics",
        description="Check a dataset (JSON array or JSON lines, conversation format) without "
        "changing it; list every problem with its line or record; show statistics.",
    )
    val.add_argument(
        "path", metavar="PATH", help="the dataset file, relative to the current folder"
    )
    val.add_argument(
        "--model",
        default=None,
        metavar="DIR|demo",
        help="count tokens with this model's tokenizer (default: characters)",
    )
    val.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the Python code the --model folder's tokenizer brings",
    )
    val.add_argument(
        "--max-length",
        type=int,
        default=2048,
        metavar="N",
        help="the config's max_length, for the truncation count (default 2048)",
    )
    val.set_defaults(func=validate, takes_model=True)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def generate(args: argparse.Namespace) -> int:
    from engine.cli import workspace_of
    from engine.data.generate import (
        IdentityFacts,
        build_dataset,
        heldout_summary,
        record_choice,
        summary,
        write_dataset,
    )

    ws = workspace_of(args).ensure()
    name = args.name or ws.load_state().choices.get("name")
    if not name or not str(name).strip():
        raise WizardError("your name is needed", where="--name", fix="pass --name 'your name'")
    facts = IdentityFacts(
        name=name,
        assistant_name=args.assistant_name,
        maker=args.maker,
        base_model=args.base_model,
        purpose=args.purpose,
    )
    bundle = build_dataset(
        args.style, facts, n=args.n, seed=args.seed, general_share=args.general_share
    )
    from engine.selection import absolute

    out = absolute(args.out) if args.out is not None else None  # from the current folder
    result = write_dataset(ws, bundle, out, force=args.force)
    record_choice(ws, result, facts.check())
    print(f"wrote {ws.rel(result.path)}: {summary(bundle)}")
    if result.heldout_path is not None and bundle.heldout is not None:
        print(
            f"wrote {ws.rel(result.heldout_path)}: {heldout_summary(bundle.heldout)} (never trained on)"
        )
    for note in bundle.notes:
        print(f"note: {note}")
    for backup in result.backups:
        print(f"your edited file was kept as {ws.rel(backup)}")
    return 0


def _model_dir(ws, model: str | None) -> Path | None:
    if model is None:
        return None
    from engine.demo import choice_dir

    demo = choice_dir(ws, model)
    if demo is not None:
        if not demo.is_dir():
            raise WizardError(
                "the demo model is not built",
                where=f"--model {model}",
                fix="run: xtuner-wizard demo-model" + (" --arch qwen2" if model != "demo" else ""),
            )
        return demo
    from engine.selection import model_choice

    return model_choice(ws, model, check=False).path  # a tokenizer folder is enough here


def validate(args: argparse.Namespace) -> int:
    from engine.cli import EXIT_USER_ERROR, workspace_of
    from engine.data.stats import dataset_stats
    from engine.data.validate import validate_file

    ws = workspace_of(args)
    if args.max_length < 1:
        raise WizardError(
            f"{args.max_length} is not a length", where="--max-length", fix="pass e.g. 2048"
        )
    from engine.selection import absolute

    model = _model_dir(ws, args.model)
    tokenizer = None
    if model is not None:
        from engine.data.stats import load_tokenizer
        from engine.trust import require_trusted

        require_trusted(ws, model, consent=args.trust_remote_code)
        tokenizer = load_tokenizer(model, ws)  # the model first: no "OK" before its error
    path = absolute(args.path)  # from the current folder (engine.selection)
    report = validate_file(path)
    if not report.ok:
        for line in report.lines(SHOWN_PROBLEMS):
            print(line, file=sys.stderr)
        count = len(report.errors) + report.omitted_errors
        print(
            f"{report.path}: {count} problem{'s' if count != 1 else ''}; fix them and run this again "
            "(the file was not changed)",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    what = f"{report.format}{', UTF-8 with BOM' if report.bom else ''}"
    print(f"{report.path}: OK, {report.n_records} records ({what})")
    for line in report.lines(SHOWN_PROBLEMS):
        print(line)
    if report.count is not None:  # a large file: its records were not kept, read them again
        from engine.data.validate import iter_records

        stats = dataset_stats(iter_records(path), None, args.max_length, tokenizer=tokenizer)
    else:
        stats = dataset_stats(report.records, None, args.max_length, tokenizer=tokenizer)
    for line in stats.lines():
        print(f"  {line}")
    return 0
