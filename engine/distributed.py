"""Several GPUs and several nodes: plans, commands and checks for torchrun + DeepSpeed.

The wizard never runs its own distributed engine: it renders what XTuner 0.2.0 itself does.

- ``NPROC_PER_NODE=N xtuner train CONFIG --deepspeed deepspeed_zero2`` is what a user types.
  The ``xtuner`` entry point then runs ``torchrun --nnodes=.. --node_rank=.. --nproc_per_node=N
  --master_addr=.. --master_port=.. <xtuner>/tools/train.py CONFIG ... --launcher pytorch``
  (``xtuner/entry_point.py``), reading NPROC_PER_NODE, NNODES, NODE_RANK, ADDR and PORT from the
  environment (PORT random in 20000-29999 when unset). The entry point always exits 0, so the
  wizard runs that torchrun line itself (``python -m torch.distributed.run``: the same program,
  this interpreter) to get the trainer's real exit code.
- ``--deepspeed`` takes a name from ``xtuner/configs/deepspeed/*.json`` (``deepspeed_zero1``,
  ``deepspeed_zero2``, ``deepspeed_zero2_offload``, ``deepspeed_zero3``,
  ``deepspeed_zero3_offload``) or a path to a DeepSpeed json. The wizard's short names drop the
  ``deepspeed_`` prefix.
- With DeepSpeed, mmengine's FlexibleRunner saves each checkpoint as a *folder*
  ``work_dir/iter_N.pth/`` (``deepspeed.save_checkpoint(work_dir, tag="iter_N.pth")``) holding
  ``mp_rank_00_model_states.pt`` (ZeRO 1/2) or ``zero_pp_rank_R_mp_rank_00_model_states.pt``
  (ZeRO 3) and one ``*_optim_states.pt`` per data-parallel rank; ``last_checkpoint`` names the
  folder. ``xtuner convert pth_to_hf`` accepts the folder (``guess_load_checkpoint`` ->
  ``xtuner.utils.zero_to_any_dtype``, which imports deepspeed), and ``--resume`` too.
- Slurm: ``--launcher slurm`` makes every srun task a rank (mmengine reads SLURM_PROCID,
  SLURM_LOCALID, SLURM_NTASKS, SLURM_NODELIST; MASTER_PORT from the environment).

Nothing heavy is imported here (no torch, no xtuner, no deepspeed): the CLI must start fast.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import WizardError
from engine.xtuner_env import TRAIN_MODULE, python_executable, xtuner_package_dir

# xtuner 0.2.0's configs/deepspeed/deepspeed_<stage>.json, used when xtuner is not installed here
KNOWN_STAGES = ("zero1", "zero2", "zero2_offload", "zero3", "zero3_offload")
STAGE_PREFIX = "deepspeed_"
DEEPSPEED_MIN = "0.12.3"  # xtuner/tools/train.py refuses older
DEEPSPEED_PIN = "0.16.2"  # xtuner 0.2.0's `[deepspeed]` extra
DEFAULT_PORT = 29500  # torch.distributed's default
LOCAL_ADDRS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
TORCHRUN_MODULE = "torch.distributed.run"  # what the `torchrun` script runs
_SLURM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")  # [D-]HH[:MM[:SS]] or minutes


# -- DeepSpeed stages ------------------------------------------------------------------------
def deepspeed_stages(xtuner_dir: Path | None = None) -> tuple[str, ...]:
    """The stages ``xtuner train --deepspeed`` knows (short names), read from its configs."""
    root = xtuner_dir if xtuner_dir is not None else xtuner_package_dir()
    if root is not None:
        folder = Path(root) / "configs" / "deepspeed"
        found = sorted(
            p.stem[len(STAGE_PREFIX) :]
            for p in folder.glob(f"{STAGE_PREFIX}*.json")
            if not p.name.startswith((".", "_"))
        )
        if found:
            return tuple(found)
    return KNOWN_STAGES


def normalize_stage(stage: str | None, *, stages: Sequence[str] | None = None) -> str | None:
    """``zero2``/``deepspeed_zero2``/``ZeRO-2`` -> ``zero2``; a path to a .json stays a path.

    Raises WizardError for names xtuner does not know, with the right fix for each mistake.
    """
    if stage is None:
        return None
    text = str(stage).strip()
    if text.lower() in ("", "none", "off", "no", "ddp"):
        return None
    if text.lower().endswith(".json"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise WizardError(
                "DeepSpeed config not found",
                where=text,
                fix="give an existing .json, or a stage name: " + ", ".join(stages or KNOWN_STAGES),
            )
        return str(path.resolve())
    known = tuple(stages if stages is not None else deepspeed_stages())
    name = text.lower().replace("-", "").replace(" ", "")
    if name.startswith(STAGE_PREFIX):
        name = name[len(STAGE_PREFIX) :]
    name = re.sub(r"^zero(\d)offload$", r"zero\1_offload", name)
    name = re.sub(r"^(\d)$", r"zero\1", name)
    if name in known:
        return name
    m = re.match(r"^zero(\d)(_offload)?$", name)
    if m and m.group(2) and f"zero{m.group(1)}" in known:
        offloadable = [s.removesuffix("_offload") for s in known if s.endswith("_offload")]
        raise WizardError(
            f"DeepSpeed ZeRO-{m.group(1)} has no offload variant in xtuner",
            where=f"--deepspeed {text}",
            fix="offload only goes with "
            + " or ".join(offloadable)
            + ": use "
            + " or ".join(f"{s}_offload" for s in offloadable)
            + f", or zero{m.group(1)} without offload",
        )
    raise WizardError(
        f"unknown DeepSpeed stage {text!r}",
        where=f"--deepspeed {text}",
        fix="use one of " + ", ".join(known) + " (xtuner's configs/deepspeed/*.json), "
        "or a path to a DeepSpeed .json",
    )


def stage_argument(stage: str) -> str:
    """What ``xtuner train --deepspeed`` gets: ``deepspeed_zero2``, or the .json path."""
    return stage if stage.endswith(".json") else STAGE_PREFIX + stage


# -- what this machine has ---------------------------------------------------------------------
def visible_gpu_count(sampler=None) -> tuple[int, str | None]:
    """GPUs this process may use (NVML, narrowed by CUDA_VISIBLE_DEVICES) and, with none, why."""
    if sampler is None:
        from engine.gpu import GpuSampler

        sampler = GpuSampler()
    samples = sampler.sample()
    count = len(samples)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and count:
        wanted = [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        count = min(count, len(wanted))
    return count, (getattr(sampler, "error", None) if not samples else None)


def deepspeed_version() -> str | None:
    """deepspeed's installed version, found without importing it (None: not installed)."""
    if importlib.util.find_spec("deepspeed") is None:
        return None
    from importlib import metadata

    try:
        return metadata.version("deepspeed")
    except metadata.PackageNotFoundError:
        return "unknown"


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text.split("+")[0])[:3])


DETECT = "detect"  # check_deepspeed/validate: look at this environment


def check_deepspeed(version: str | None = DETECT) -> str:
    """The installed deepspeed version; WizardError with the install command when missing/old.

    ``version``: a version string or None (not installed) to judge; DETECT looks it up here.
    """
    if version == DETECT:
        version = deepspeed_version()
    fix = (
        f"pip install deepspeed=={DEEPSPEED_PIN} (xtuner 0.2.0's pin; "
        "`DS_BUILD_OPS=0 pip wheel --no-deps deepspeed==" + DEEPSPEED_PIN + "` makes a "
        "1.5 MB pure-Python wheel to carry to a machine without network), or train without "
        "--deepspeed (plain DDP)"
    )
    if version is None:
        raise WizardError("deepspeed is not installed in this environment", fix=fix)
    if version != "unknown" and _version_tuple(version) < _version_tuple(DEEPSPEED_MIN):
        raise WizardError(
            f"deepspeed {version} is too old (xtuner needs >= {DEEPSPEED_MIN})", fix=fix
        )
    return version


# -- the plan ----------------------------------------------------------------------------------
@dataclass
class LaunchPlan:
    """How a run spreads over GPUs: ``gpus_per_node`` x ``nodes``, DeepSpeed stage or DDP."""

    gpus_per_node: int
    nodes: int = 1
    deepspeed: str | None = None  # zero1|zero2|zero3|zero2_offload|zero3_offload|x.json|None
    master_addr: str = "127.0.0.1"
    master_port: int = DEFAULT_PORT
    config: Path | str | None = None
    work_dir: Path | str | None = None
    extra_args: tuple[str, ...] = ()  # e.g. ("--resume", PATH)
    notes: list[str] = field(default_factory=list)

    @property
    def world_size(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def validate(
    plan: LaunchPlan,
    *,
    local: bool = True,
    slurm: bool = False,
    gpus_found: int | None = None,
    gpu_error: str | None = None,
    deepspeed_installed: str | None = DETECT,
    stages: Sequence[str] | None = None,
) -> LaunchPlan:
    """Check a plan; returns it normalised (stage short name, paths absolute) or raises
    WizardError naming the field and the fix.

    ``local``: the run starts on this machine (its GPUs and its deepspeed are checked);
    False for commands printed for other nodes or a Slurm cluster. ``slurm``: the master
    address comes from SLURM_NODELIST (a local default is fine). ``gpus_found`` defaults to
    what NVML sees here. One GPU on a machine without any is allowed: that is the CPU run.
    """
    if not isinstance(plan.gpus_per_node, int) or plan.gpus_per_node < 1:
        raise WizardError(
            f"--gpus must be 1 or more, not {plan.gpus_per_node!r}",
            where="--gpus",
            fix="give the number of GPUs per node, e.g. --gpus 2",
        )
    if not isinstance(plan.nodes, int) or plan.nodes < 1:
        raise WizardError(
            f"--nodes must be 1 or more, not {plan.nodes!r}",
            where="--nodes",
            fix="give the number of machines, e.g. --nodes 2 (1 for a single machine)",
        )
    if not isinstance(plan.master_port, int) or not 1024 <= plan.master_port <= 65535:
        raise WizardError(
            f"master port {plan.master_port!r} is out of range",
            where="--master-port",
            fix="use a free port between 1024 and 65535, e.g. 29500",
        )
    addr = (plan.master_addr or "").strip()
    if not addr or any(c.isspace() for c in addr):
        raise WizardError(
            f"master address {plan.master_addr!r} is not a host name or IP",
            where="--master-addr",
            fix="give node 0's address, e.g. --master-addr 10.0.0.1",
        )
    if plan.nodes > 1 and addr in LOCAL_ADDRS and not slurm:
        raise WizardError(
            f"{plan.nodes} nodes cannot meet at {addr} (each node would look at itself)",
            where="--master-addr",
            fix="give node 0's address that the other nodes can reach, e.g. --master-addr "
            "10.0.0.1 (`hostname -I` on node 0)",
        )
    plan.master_addr = addr
    plan.deepspeed = normalize_stage(plan.deepspeed, stages=stages)
    if plan.config is not None:
        config = Path(plan.config).expanduser()
        if not config.is_file():
            raise WizardError(
                "config not found",
                where=str(config),
                fix="render one with `xtuner-wizard config` or pass --config PATH of a .py",
            )
        plan.config = config.resolve()
    if plan.work_dir is not None:
        plan.work_dir = Path(plan.work_dir).expanduser().resolve()
    if plan.deepspeed is not None and plan.deepspeed.startswith("zero3") and plan.config:
        text = Path(plan.config).read_text(encoding="utf-8", errors="replace")
        if "quantization_config" in text and "quantization_config=None" not in text:
            plan.notes.append(
                "QLoRA (4-bit) with ZeRO-3 partitions quantized weights; xtuner's recipes pair "
                "QLoRA with zero1/zero2: prefer --deepspeed zero2"
            )
    if local:
        found = gpus_found
        if found is None:
            found, gpu_error = visible_gpu_count()
        if plan.gpus_per_node > found and plan.world_size > 1:
            why = f" ({gpu_error})" if (found == 0 and gpu_error) else ""
            fix = (
                f"use --gpus {found} or fewer"
                if found
                else "run this on a machine with GPUs (`nvidia-smi` lists them), or train on "
                "one device with `xtuner-wizard train`"
            )
            raise WizardError(
                f"asked for {plan.gpus_per_node} GPUs but found {found} here{why}",
                where="--gpus",
                fix=fix + "; to only print commands for other machines, add --nodes/--slurm "
                "or --no-gpu-check",
            )
        if found == 0:
            plan.notes.append("no GPU here: the run trains on the CPU")
        if plan.deepspeed is not None:
            check_deepspeed(deepspeed_installed)
    return plan


# -- commands ----------------------------------------------------------------------------------
def _train_tail(plan: LaunchPlan) -> list[str]:
    if plan.config is None:
        raise WizardError("no config to train", fix="pass --config PATH (a .py config)")
    tail = [str(plan.config)]
    if plan.deepspeed is not None:
        tail += ["--deepspeed", stage_argument(plan.deepspeed)]
    if plan.work_dir is not None:
        tail += ["--work-dir", str(plan.work_dir)]
    tail += list(plan.extra_args)
    return tail


def train_script(xtuner_dir: Path | None = None) -> str:
    """``<xtuner>/tools/train.py``: what the entry point hands torchrun (``train.__file__``)."""
    root = xtuner_dir if xtuner_dir is not None else xtuner_package_dir()
    if root is None:
        raise WizardError(
            "xtuner is not installed in this environment",
            fix="pip install xtuner==0.2.0 (see `xtuner-wizard doctor`)",
        )
    return str(Path(root) / "tools" / "train.py")


def launch_env(plan: LaunchPlan, node_rank: int = 0) -> dict[str, str]:
    """The variables xtuner's entry point reads (only those that differ from its defaults
    are needed, but all are given for a multi-node plan so each command says everything)."""
    env = {"NPROC_PER_NODE": str(plan.gpus_per_node)}
    if plan.nodes > 1:
        env.update(
            NNODES=str(plan.nodes),
            NODE_RANK=str(node_rank),
            PORT=str(plan.master_port),
            ADDR=plan.master_addr,
        )
    elif plan.distributed and plan.master_port != DEFAULT_PORT:
        env["PORT"] = str(plan.master_port)  # (unset: the entry point picks a random one)
    return env


def train_env_and_argv(
    plan: LaunchPlan,
    *,
    node_rank: int = 0,
    python: str | None = None,
    xtuner_dir: Path | None = None,
) -> tuple[dict[str, str], list[str]]:
    """(environment additions, argv) that start ``plan`` on this node.

    One GPU: ``python -m xtuner.tools.train CONFIG ...`` (what ``xtuner train`` runs, with a
    real exit code). More: the torchrun line ``xtuner/entry_point.py`` builds, run through this
    interpreter (``python -m torch.distributed.run``), ``--launcher pytorch`` last as there.
    """
    py = python or python_executable()
    tail = _train_tail(plan)
    if not plan.distributed:
        return {}, [py, "-m", TRAIN_MODULE, *tail]
    if not 0 <= node_rank < plan.nodes:
        raise WizardError(
            f"node rank {node_rank} is outside 0..{plan.nodes - 1}",
            fix=f"give a rank below {plan.nodes}",
        )
    torchrun = [
        f"--nnodes={plan.nodes}",
        f"--node_rank={node_rank}",
        f"--nproc_per_node={plan.gpus_per_node}",
        f"--master_addr={plan.master_addr}",
        f"--master_port={plan.master_port}",
    ]
    argv = [py, "-m", TORCHRUN_MODULE, *torchrun, train_script(xtuner_dir), *tail]
    argv += ["--launcher", "pytorch"]
    return launch_env(plan, node_rank), argv


def _shown_path(value: str, rel_to: Path | None) -> str:
    if rel_to is None or not os.path.isabs(value):
        return value
    try:
        return os.path.relpath(value, rel_to) if Path(value).is_relative_to(rel_to) else value
    except ValueError:
        return value


def human_command(plan: LaunchPlan, *, node_rank: int = 0, rel_to: Path | str | None = None) -> str:
    """What the user would type: ``NPROC_PER_NODE=2 PORT=29500 xtuner train CFG --deepspeed
    deepspeed_zero2`` (paths under ``rel_to`` shown relative to it)."""
    base = Path(rel_to).resolve() if rel_to is not None else None
    env = launch_env(plan, node_rank) if plan.distributed else {}
    parts = [f"{k}={shlex.quote(v)}" for k, v in env.items()]
    parts += ["xtuner", "train"]
    parts += [shlex.quote(_shown_path(a, base)) for a in _train_tail(plan)]
    return " ".join(parts)


def node_commands(plan: LaunchPlan, *, workspace: Path | str | None = None) -> list[str]:
    """One shell line per node, in node-rank order, as xtuner documents multi-node runs:
    ``cd WS && NPROC_PER_NODE=8 NNODES=2 NODE_RANK=r PORT=P ADDR=A xtuner train CFG ...``.
    Paths stay absolute: every node needs the same paths (a shared file system)."""
    prefix = f"cd {shlex.quote(str(workspace))} && " if workspace is not None else ""
    return [prefix + human_command(plan, node_rank=r) for r in range(plan.nodes)]


def _sbatch_value(name: str, value: str, pattern: re.Pattern = _SLURM_NAME) -> str:
    if not pattern.match(value):
        raise WizardError(
            f"Slurm {name} {value!r} has characters sbatch directives cannot carry",
            where=f"--{name}",
            fix="use letters, digits, '.', '_' or '-'",
        )
    return value


def slurm_script(
    plan: LaunchPlan,
    *,
    partition: str | None = None,
    job_name: str = "xtuner-wizard",
    gpus_per_node: int | None = None,
    time_limit: str | None = None,
    workspace: Path | str | None = None,
    python: str = "python",
    env: Mapping[str, str] | None = None,
) -> str:
    """A Slurm batch script: one srun task per GPU, ``--launcher slurm`` (mmengine reads the
    rank from SLURM_PROCID/SLURM_LOCALID, the master from SLURM_NODELIST and MASTER_PORT).

    The trainer runs as ``python -m xtuner.tools.train`` so a failed run fails the job (the
    ``xtuner`` entry point exits 0 either way). ``env``: more exports, e.g. the full unpickling
    a resume from the workspace's own checkpoint needs (``engine.trust.unpickle_env``); none
    is given by default.
    """
    gpus = gpus_per_node if gpus_per_node is not None else plan.gpus_per_node
    if gpus < 1:
        raise WizardError("--gpus must be 1 or more", where="--gpus", fix="e.g. --gpus 8")
    job = _sbatch_value("job-name", job_name)
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job}",
    ]
    if partition:
        lines.append(f"#SBATCH --partition={_sbatch_value('partition', partition)}")
    lines += [
        f"#SBATCH --nodes={plan.nodes}",
        f"#SBATCH --ntasks-per-node={gpus}",
        f"#SBATCH --gres=gpu:{gpus}",
    ]
    if time_limit:
        lines.append(f"#SBATCH --time={_sbatch_value('time', time_limit, _SLURM_TIME)}")
    lines += [
        "#SBATCH --output=slurm-%j.out",
        "",
        f"# {plan.nodes} node(s) x {gpus} GPU(s) = {plan.nodes * gpus} ranks"
        + (f", DeepSpeed {plan.deepspeed}" if plan.deepspeed else ", DDP"),
        "# Submit with: sbatch THIS_FILE. Every node needs the same paths (shared file system).",
        "set -euo pipefail",
    ]
    if workspace is not None:
        lines.append(f"cd {shlex.quote(str(workspace))}")
    exports = {
        "MASTER_PORT": str(plan.master_port),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if plan.master_addr not in LOCAL_ADDRS:
        exports["MASTER_ADDR"] = plan.master_addr
    exports.update(env or {})
    lines += [f"export {k}={shlex.quote(v)}" for k, v in exports.items()]
    cmd = [python, "-m", TRAIN_MODULE, *_train_tail(plan), "--launcher", "slurm"]
    lines += [
        "",
        "srun --kill-on-bad-exit=1 " + " ".join(shlex.quote(a) for a in cmd),
        "",
    ]
    return "\n".join(lines)
