"""``xtuner-wizard distributed``: the plan for several GPUs / nodes (torchrun + DeepSpeed).

Prints what would start on this machine (the command shown to the user and the exact argv),
the command for each node of a multi-node run, or a Slurm batch script (``--out FILE``
written atomically). Nothing is started.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def register(sub, parent) -> None:
    p = sub.add_parser(
        "distributed",
        parents=[parent],
        help="plan a run on several GPUs or nodes (torchrun + DeepSpeed): commands, Slurm script",
        description="Print how XTuner runs the workspace's config on several GPUs: "
        "`NPROC_PER_NODE=N xtuner train CONFIG --deepspeed STAGE` and the torchrun line behind "
        "it, one command per node for several nodes (NNODES, NODE_RANK, ADDR, PORT), or a Slurm "
        "batch script. On one node the GPUs and deepspeed of this machine are checked.",
    )
    p.add_argument("--gpus", type=int, required=True, metavar="N", help="GPUs per node")
    p.add_argument("--nodes", type=int, default=1, metavar="M", help="machines (default 1)")
    p.add_argument(
        "--deepspeed",
        default=None,
        metavar="STAGE",
        help="zero1, zero2, zero3, zero2_offload, zero3_offload (xtuner's configs/deepspeed), "
        "a DeepSpeed .json, or none (plain DDP, the default)",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="PATH",
        help="config .py, relative to the current folder (default: the workspace's)",
    )
    p.add_argument(
        "--master-addr",
        default=None,
        metavar="ADDR",
        help="node 0's address (default 127.0.0.1; required for several nodes)",
    )
    p.add_argument(
        "--master-port",
        type=int,
        default=None,
        metavar="PORT",
        help="rendezvous port (default 29500)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="CKPT",
        help="continue from a checkpoint: an iter_N.pth file or DeepSpeed folder",
    )
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="--resume from a checkpoint that is not one of this workspace's runs (loading it "
        "runs whatever Python it holds)",
    )
    p.add_argument("--slurm", action="store_true", help="write a Slurm batch script instead")
    p.add_argument("--partition", default=None, metavar="P", help="Slurm partition")
    p.add_argument("--job-name", default="xtuner-wizard", metavar="NAME", help="Slurm job name")
    p.add_argument("--time", default=None, metavar="T", help="Slurm time limit, e.g. 04:00:00")
    p.add_argument("--out", default=None, metavar="FILE", help="write the script/commands to FILE")
    p.add_argument(
        "--force",
        action="store_true",
        help="--out: replace a file the wizard did not write or you edited (a backup is kept)",
    )
    p.add_argument(
        "--no-gpu-check",
        action="store_true",
        help="the commands are for another machine: do not check this one's GPUs and deepspeed",
    )
    p.add_argument("--json", action="store_true", help="machine-readable plan")
    p.set_defaults(func=handle)


def _plan_from(args: argparse.Namespace):
    from engine.cli import workspace_of
    from engine.distributed import DEFAULT_PORT, LaunchPlan
    from engine.errors import WizardError
    from engine.selection import absolute, stored

    ws = workspace_of(args)
    recorded = ws.load_state().choices.get("config")
    if not args.config and not recorded:
        raise WizardError(
            "no config chosen in this workspace",
            where=str(ws.root),
            fix="render one with `xtuner-wizard config`, or pass --config PATH",
        )
    # typed: from the current folder; recorded: inside the workspace (engine.selection)
    config_path = absolute(args.config) if args.config else stored(ws, recorded)
    plan = LaunchPlan(
        gpus_per_node=args.gpus,
        nodes=args.nodes,
        deepspeed=args.deepspeed,
        master_addr=args.master_addr or "127.0.0.1",
        master_port=args.master_port if args.master_port is not None else DEFAULT_PORT,
        config=config_path,
        # a run started elsewhere (other nodes, Slurm) is no wizard run: the tutorial's layout
        work_dir=ws.work_dirs / Path(config_path).stem,
    )
    return ws, plan


def handle(args: argparse.Namespace) -> int:
    from engine.distributed import (
        human_command,
        node_commands,
        slurm_script,
        train_env_and_argv,
        validate,
    )
    from engine.errors import WizardError
    from engine.runs.checkpoints import check_resume, is_checkpoint

    if args.partition and not args.slurm:
        raise WizardError("--partition is for Slurm", where="--partition", fix="add --slurm")
    ws, plan = _plan_from(args)
    unpickle: dict[str, str] = {}  # no full unpickling unless resuming (checked below)
    local = not (args.slurm or args.nodes > 1 or args.no_gpu_check)
    validate(plan, local=local, slurm=args.slurm)
    if args.resume:
        from engine.selection import absolute

        ckpt = absolute(args.resume)
        if not is_checkpoint(ckpt):
            raise WizardError(
                "checkpoint not found",
                where=str(ckpt),
                fix="give an iter_N.pth file or DeepSpeed checkpoint folder of the work dir",
            )
        from engine.trust import FULL_UNPICKLE_ENV, require_own_checkpoint, unpickle_env

        # mmengine unpickles it fully: the workspace's own checkpoints only, or on request
        require_own_checkpoint(ws, ckpt, consent=args.trust_checkpoint, where="--resume")
        unpickle = unpickle_env(ws, ckpt) or dict(FULL_UNPICKLE_ENV)
        check_resume(plan, ckpt)
        plan.extra_args = ("--resume", str(ckpt.resolve()))
    if args.slurm:
        text = slurm_script(
            plan,
            partition=args.partition,
            job_name=args.job_name,
            time_limit=args.time,
            workspace=ws.root.resolve(),
            env=unpickle,
        )
        kind = "Slurm batch script"
    elif plan.nodes > 1:
        lines = [
            f"# node {r} of {plan.nodes}" + (" (the master)" if r == 0 else "") + f"\n{c}"
            for r, c in enumerate(node_commands(plan, workspace=ws.root.resolve()))
        ]
        text = "\n".join(lines) + "\n"
        kind = "per-node commands"
    else:
        env, argv = train_env_and_argv(plan)
        env = {**env, **unpickle}
        if args.json:
            import json

            text = (
                json.dumps(
                    {
                        "command": human_command(plan, rel_to=ws.root),
                        "env": env,
                        "argv": argv,
                        "world_size": plan.world_size,
                        "deepspeed": plan.deepspeed,
                        "notes": plan.notes,
                    },
                    ensure_ascii=False,
                    indent=2,
                )
                + "\n"
            )
        else:
            shown_env = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
            text = (
                f"command: {human_command(plan, rel_to=ws.root)}\n"
                f"runs:    {(shown_env + ' ') if shown_env else ''}{shlex.join(argv)}\n"
            )
        kind = "plan"
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.out:
        from engine.selection import absolute

        out = absolute(args.out)
        backup = ws.write_user_file(out, text, force=args.force)
        if args.slurm:
            out.chmod(0o755)
        print(f"wrote the {kind} to {out}")
        if backup is not None:
            print(f"your edited file was kept as {ws.rel(backup)}")
    else:
        sys.stdout.write(text)
    return 0
