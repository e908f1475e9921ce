"""``xtuner-wizard chat [MODEL]``: talk to the merged model (or base + adapter), streamed."""

from __future__ import annotations

import argparse
import sys
import threading


def register(sub, parent) -> None:
    p = sub.add_parser(
        "chat",
        parents=[parent],
        help="chat with the merged model (default) or any model folder, streamed",
        description="Chat in the terminal with the run's prompt template (greedy by default). "
        "--prompt answers once and exits; without it, an interactive loop "
        "(/clear forgets the history, /exit or Ctrl-D quits, Ctrl-C stops an answer).",
    )
    p.add_argument(
        "model",
        nargs="?",
        default=None,
        metavar="MODEL",
        help="model folder, relative to the current folder, or demo (default: the workspace's "
        "latest merged model); the same as --model before the command",
    )
    p.add_argument("--adapter", metavar="DIR", help="a LoRA adapter (hf/) to apply to MODEL")
    p.add_argument("--prompt", metavar="TEXT", help="ask once, print the answer, exit")
    p.add_argument("--system", metavar="TEXT", help="system prompt")
    p.add_argument(
        "--engine",
        default="auto",
        help="auto (default: fast on a GPU where it supports the model, else hf), hf, "
        "fast (GPU: CUDA graphs), fast-compile, lmdeploy",
    )
    p.add_argument(
        "--run",
        metavar="ID",
        help="answer from this run's checkpoint (LoRA folded into the base, no merge needed)",
    )
    p.add_argument(
        "--template", metavar="NAME|CFG", help="prompt template name or config (default: the run's)"
    )
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the Python code the model folder brings (auto_map, *.py); asked once per "
        "version of that code",
    )
    p.set_defaults(func=handle, takes_model=True)


def check_generation(args: argparse.Namespace) -> None:
    """The generation settings, checked against their meaning before any model loads."""
    from engine.errors import WizardError

    if args.max_new_tokens < 1:
        raise WizardError(
            f"{args.max_new_tokens} is not a number of tokens",
            where="--max-new-tokens",
            fix="pass 1 or more (e.g. 256)",
        )
    if not args.temperature >= 0:
        raise WizardError(
            f"{args.temperature} is not a temperature",
            where="--temperature",
            fix="pass 0 (greedy) or more, e.g. 0.7",
        )
    if not 0 < args.top_p <= 1:
        raise WizardError(
            f"{args.top_p} is not a probability in (0, 1]", where="--top-p", fix="e.g. 0.9"
        )


def default_model(ws):
    from engine.errors import WizardError
    from engine.export import latest_merged

    found = latest_merged(ws)
    if found is None:
        raise WizardError(
            "no merged model in this workspace",
            where=str(ws.merged_dir),
            fix="run `xtuner-wizard merge` first, or give a MODEL folder",
        )
    return found


def handle(args: argparse.Namespace) -> int:
    from engine.chat.base import load_engine
    from engine.cli import workspace_of

    check_generation(args)
    ws = workspace_of(args)
    from engine.chat.tuned import default_tuned

    # the workspace's tuned model (engine.selection: the merged one, else a finished run's
    # checkpoint, as the Chat step and run-all decide it), unless a MODEL or --run is given
    tuned = default_tuned(ws) if args.model is None and not args.run else None
    if args.run or (tuned is not None and tuned.kind == "run"):
        from engine.chat.adapter import load_run_engine

        # No merged model yet (or asked for): the run's checkpoint on its base, LoRA folded in.
        engine = load_run_engine(
            ws,
            args.run or tuned.run_id,
            engine=args.engine,
            device=args.device,
            trust_remote_code=args.trust_remote_code,
        )
        print(f"(answering from {ws.rel(engine.model_path)} on its base model, not merged)")
    else:
        from engine.selection import absolute, model_choice
        from engine.trust import require_trusted

        # typed paths: relative to the folder the command was typed in (engine.selection)
        if args.model:
            model = model_choice(ws, args.model, where="MODEL").path
        else:
            model = default_model(ws)
        require_trusted(ws, model, consent=args.trust_remote_code)
        adapter = absolute(args.adapter) if args.adapter else None
        template = args.template
        if template and template.endswith(".py"):
            template = str(absolute(template))
        engine = load_engine(
            args.engine,
            model,
            adapter=adapter,
            template=template,
            device=args.device,
            workspace=ws,  # the consent just given (or recorded before) counts
        )
    gen = dict(
        system=args.system,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
    )
    if args.prompt is not None:
        for piece in engine.stream_chat([{"role": "user", "content": args.prompt}], **gen):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        if args.model is None:
            ws.mark_done("chat")  # the workspace's own merged model answered
        return 0
    return _loop(engine, gen)


def _loop(engine, gen) -> int:
    history: list[dict] = []
    print(f"chat ({engine.name} engine, template {engine.template.name}); /clear, /exit")
    while True:
        try:
            text = input("> ").strip()
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print()
            return 0
        if not text:
            continue
        if text in ("/exit", "/quit", "exit"):
            return 0
        if text == "/clear":
            history.clear()
            print("(history cleared)")
            continue
        history.append({"role": "user", "content": text})
        stop = threading.Event()
        answer = []
        try:
            for piece in engine.stream_chat(history, stop_event=stop, **gen):
                answer.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            stop.set()
            print(" [stopped]", end="")
        print()
        history.append({"role": "assistant", "content": "".join(answer)})
