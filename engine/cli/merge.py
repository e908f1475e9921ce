"""``xtuner-wizard merge [RUN]``: pth_to_hf + merge into the full-precision base (safetensors)."""

from __future__ import annotations

import argparse
import sys
import time


def register(sub, parent) -> None:
    p = sub.add_parser(
        "merge",
        parents=[parent],
        help="convert a run's checkpoint to an adapter (hf/) and merge it into the base (merged/)",
        description="Run xtuner's pth_to_hf and merge on a training run's last checkpoint: the "
        "adapter goes to hf/, the merged model (safetensors) to merged/, then it is loaded with "
        "transformers as a check. Both are written into a hidden folder beside their target and "
        "renamed into place only when the check passed; the model that was there becomes "
        "merged.previous/ (an older one is kept as merged.previous-<time>/ unless --keep).",
    )
    p.add_argument("run", nargs="?", default=None, metavar="RUN", help="run id (default: latest)")
    p.add_argument("--checkpoint", metavar="PTH", help="a checkpoint instead of the run's last one")
    p.add_argument("--config", metavar="CFG", help="the config the checkpoint was trained with")
    p.add_argument("--base", metavar="MODEL", help="the full-precision base model folder")
    p.add_argument("--out", metavar="DIR", help="where the merged model goes (default: merged/)")
    p.add_argument(
        "--keep",
        type=int,
        default=None,
        metavar="N",
        help="keep only the N newest earlier models (merged.previous*), removing older ones "
        "(their sizes are shown); default: remove none",
    )
    p.add_argument(
        "--device", choices=("cpu", "cuda"), help="where to merge (default: cuda if any)"
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the Python code the model folder brings (auto_map, *.py); asked once per "
        "version of that code",
    )
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow a --checkpoint from outside this workspace's runs (loading a checkpoint "
        "runs the Python its pickle holds)",
    )
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from engine.cli import workspace_of
    from engine.errors import WizardError
    from engine.export import PHASE_TITLES, MergeFailed, convert_and_merge

    ws = workspace_of(args)
    if args.keep is not None and args.keep < 0:
        raise WizardError(f"{args.keep} is not a count", where="--keep", fix="pass 0 or more")
    start = time.monotonic()
    last = {"phase": None}

    def progress(phase: str, detail: str) -> None:
        stamp = f"[{time.monotonic() - start:5.1f}s]"
        if phase != last["phase"]:
            last["phase"] = phase
            title = PHASE_TITLES.get(phase, phase)
            print(f"{stamp} == {title}", flush=True)
        print(f"{stamp}    {detail}", flush=True)

    from engine.selection import absolute

    def given(value: str | None) -> str | None:  # a path typed here: relative to the shell
        return None if value is None else str(absolute(value))

    try:
        out = convert_and_merge(
            ws,
            run=args.run,
            checkpoint=given(args.checkpoint),
            config=given(args.config),
            base_model=given(args.base),
            out=given(args.out),
            device=args.device,
            keep=args.keep,
            trust_remote_code=args.trust_remote_code,
            trust_checkpoint=args.trust_checkpoint,
            progress=progress,
        )
    except MergeFailed as exc:
        print("\n".join(["--- log tail ---", *exc.tail, "---"]), file=sys.stderr)
        raise
    print(f"merged model: {out}")
    print(f"chat with it: xtuner-wizard chat {ws.rel(out)}")
    return 0
