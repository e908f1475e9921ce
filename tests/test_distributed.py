"""Several GPUs / nodes: plan validation, the torchrun argv, per-node commands, Slurm scripts,
ZeRO checkpoint folders. Fast: nothing here needs a GPU (the 2-GPU run is not made here)."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
from train_support import write_checkpoint

from engine.cli import main as cli_main
from engine.distributed import (
    DEEPSPEED_PIN,
    KNOWN_STAGES,
    LaunchPlan,
    check_deepspeed,
    deepspeed_stages,
    human_command,
    node_commands,
    normalize_stage,
    slurm_script,
    train_env_and_argv,
    validate,
)
from engine.errors import WizardError
from engine.runs.checkpoints import (
    check_resume,
    checkpoint_iteration,
    checkpoints_in,
    is_checkpoint,
    is_zero_checkpoint,
    newest_checkpoint,
    zero_checkpoint_info,
)
from engine.xtuner_env import xtuner_package_dir

XT = Path("/opt/xt")  # a stand-in xtuner folder for golden argv (the real one varies by machine)
PY = "/venv/bin/python"


@pytest.fixture
def spaced(tmp_path: Path, monkeypatch) -> Path:
    """A workspace whose path has spaces, with a config in it; the current folder (paths
    typed on the command line are relative to it)."""
    root = tmp_path / "my ws"
    root.mkdir()
    (root / "assistant cfg.py").write_text("x = 1\n", encoding="utf-8")
    monkeypatch.chdir(root)
    return root


def plan_in(root: Path, **kw) -> LaunchPlan:
    kw.setdefault("gpus_per_node", 2)
    plan = LaunchPlan(
        config=root / "assistant cfg.py", work_dir=root / "work_dirs" / "assistant cfg", **kw
    )
    return validate(plan, local=False)


# -- stages ------------------------------------------------------------------------------------
def test_stages_are_xtuners_own_config_names():
    root = xtuner_package_dir()
    assert root is not None
    on_disk = sorted(p.stem for p in (root / "configs" / "deepspeed").glob("*.json"))
    assert on_disk == sorted("deepspeed_" + s for s in KNOWN_STAGES)
    assert sorted(deepspeed_stages()) == sorted(KNOWN_STAGES)


@pytest.mark.parametrize(
    "given, expected",
    [
        ("zero2", "zero2"),
        ("deepspeed_zero2", "zero2"),
        ("ZeRO-3", "zero3"),
        ("zero2-offload", "zero2_offload"),
        ("deepspeed_zero3_offload", "zero3_offload"),
        ("1", "zero1"),
        ("none", None),
        (None, None),
    ],
)
def test_normalize_stage(given, expected):
    assert normalize_stage(given) == expected


def test_offload_only_with_zero2_or_zero3():
    with pytest.raises(WizardError) as err:
        normalize_stage("zero1_offload")
    text = str(err.value)
    assert "ZeRO-1 has no offload" in text
    assert "zero2_offload or zero3_offload" in text


def test_unknown_stage_lists_the_known_ones():
    with pytest.raises(WizardError) as err:
        normalize_stage("zero4")
    assert "unknown DeepSpeed stage 'zero4'" in str(err.value)
    for stage in KNOWN_STAGES:
        assert stage in err.value.fix


def test_a_deepspeed_json_path_is_passed_through(tmp_path: Path):
    ds = tmp_path / "my ds.json"
    ds.write_text("{}", encoding="utf-8")
    assert normalize_stage(str(ds)) == str(ds.resolve())
    with pytest.raises(WizardError, match="DeepSpeed config not found"):
        normalize_stage(str(tmp_path / "missing.json"))


# -- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, where, words",
    [
        ({"gpus_per_node": 0}, "--gpus", "1 or more"),
        ({"nodes": 0}, "--nodes", "1 or more"),
        ({"master_port": 80}, "--master-port", "out of range"),
        ({"master_addr": "a b"}, "--master-addr", "not a host name"),
        ({"nodes": 2}, "--master-addr", "cannot meet at 127.0.0.1"),
        ({"deepspeed": "zero1_offload"}, "--deepspeed zero1_offload", "no offload"),
    ],
)
def test_validation_errors_name_the_field_and_a_fix(spaced: Path, kw, where, words):
    base = {"gpus_per_node": 2}
    base.update(kw)
    with pytest.raises(WizardError) as err:
        plan_in(spaced, **base)
    assert err.value.where == where
    assert words in err.value.message
    assert err.value.fix


def test_missing_config(tmp_path: Path):
    with pytest.raises(WizardError, match="config not found"):
        validate(LaunchPlan(2, config=tmp_path / "nope.py"), local=False)


def test_local_gpus_are_counted():
    with pytest.raises(WizardError) as err:
        validate(LaunchPlan(4), gpus_found=2)
    assert "asked for 4 GPUs but found 2 here" in str(err.value)
    assert err.value.fix.startswith("use --gpus 2 or fewer")
    with pytest.raises(WizardError) as err:
        validate(LaunchPlan(2), gpus_found=0, gpu_error="NVML Shared Library Not Found")
    assert "found 0 here (NVML Shared Library Not Found)" in str(err.value)
    assert "machine with GPUs" in err.value.fix
    # one device on a machine without GPUs is the CPU run, not an error
    plan = validate(LaunchPlan(1), gpus_found=0)
    assert any("CPU" in n for n in plan.notes)
    # commands for other machines: this one's GPUs do not matter
    assert validate(LaunchPlan(8, nodes=2, master_addr="10.0.0.1"), local=False).world_size == 16
    # Slurm finds the master itself: the local default address is fine there
    assert validate(LaunchPlan(8, nodes=2), local=False, slurm=True).nodes == 2


def test_deepspeed_must_be_installed_and_new_enough():
    with pytest.raises(WizardError) as err:
        validate(LaunchPlan(2, deepspeed="zero2"), gpus_found=2, deepspeed_installed=None)
    assert "deepspeed is not installed" in str(err.value)
    assert f"pip install deepspeed=={DEEPSPEED_PIN}" in err.value.fix
    with pytest.raises(WizardError, match="too old"):
        check_deepspeed("0.10.0")
    assert check_deepspeed("0.16.2") == "0.16.2"
    # DDP (no stage) does not need deepspeed
    assert validate(LaunchPlan(2), gpus_found=2, deepspeed_installed=None).deepspeed is None


def test_qlora_with_zero3_gets_a_note(tmp_path: Path):
    cfg = tmp_path / "q.py"
    cfg.write_text("quantization_config=dict(type=BitsAndBytesConfig)\n", encoding="utf-8")
    plan = validate(LaunchPlan(2, deepspeed="zero3", config=cfg), local=False)
    assert any("prefer --deepspeed zero2" in n for n in plan.notes)
    assert not validate(LaunchPlan(2, deepspeed="zero2", config=cfg), local=False).notes


# -- argv and env ------------------------------------------------------------------------------
def test_one_gpu_is_the_train_module(spaced: Path):
    cfg, wd = str(spaced / "assistant cfg.py"), str(spaced / "work_dirs" / "assistant cfg")
    env, argv = train_env_and_argv(plan_in(spaced, gpus_per_node=1), python=PY, xtuner_dir=XT)
    assert env == {}
    assert argv == [PY, "-m", "xtuner.tools.train", cfg, "--work-dir", wd]
    env, argv = train_env_and_argv(
        plan_in(spaced, gpus_per_node=1, deepspeed="zero2"), python=PY, xtuner_dir=XT
    )
    assert env == {}
    assert argv == [
        PY, "-m", "xtuner.tools.train", cfg, "--deepspeed", "deepspeed_zero2", "--work-dir", wd
    ]  # fmt: skip


def test_two_gpus_are_the_entry_points_torchrun_line(spaced: Path):
    cfg, wd = str(spaced / "assistant cfg.py"), str(spaced / "work_dirs" / "assistant cfg")
    head = [
        PY, "-m", "torch.distributed.run", "--nnodes=1", "--node_rank=0", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", "--master_port=29500", "/opt/xt/tools/train.py", cfg,
    ]  # fmt: skip
    env, argv = train_env_and_argv(plan_in(spaced), python=PY, xtuner_dir=XT)
    assert env == {"NPROC_PER_NODE": "2"}
    assert argv == head + ["--work-dir", wd, "--launcher", "pytorch"]
    plan = plan_in(spaced, deepspeed="zero2", master_port=29612)
    env, argv = train_env_and_argv(plan, python=PY, xtuner_dir=XT)
    assert env == {"NPROC_PER_NODE": "2", "PORT": "29612"}
    assert argv[argv.index("--master_port=29612") + 1 :] == [
        "/opt/xt/tools/train.py", cfg, "--deepspeed", "deepspeed_zero2", "--work-dir", wd,
        "--launcher", "pytorch",
    ]  # fmt: skip


def test_the_real_train_script_is_xtuners(spaced: Path):
    _, argv = train_env_and_argv(plan_in(spaced))
    script = Path(argv[argv.index("--master_port=29500") + 1])
    assert script.name == "train.py" and script.is_file()
    assert script.parent == xtuner_package_dir() / "tools"


def test_human_command_is_what_the_user_types(spaced: Path):
    plan = plan_in(spaced, deepspeed="zero2")
    assert human_command(plan, rel_to=spaced) == (
        "NPROC_PER_NODE=2 xtuner train 'assistant cfg.py' --deepspeed deepspeed_zero2 "
        "--work-dir 'work_dirs/assistant cfg'"
    )
    assert human_command(plan_in(spaced, gpus_per_node=1), rel_to=spaced) == (
        "xtuner train 'assistant cfg.py' --work-dir 'work_dirs/assistant cfg'"
    )


# -- several nodes -----------------------------------------------------------------------------
def test_node_commands_for_two_nodes(spaced: Path):
    plan = plan_in(
        spaced, gpus_per_node=8, nodes=2, deepspeed="zero3", master_addr="10.0.0.1",
        master_port=29555,
    )  # fmt: skip
    r = str(spaced)
    tail = f"xtuner train '{r}/assistant cfg.py' --deepspeed deepspeed_zero3 --work-dir '{r}/work_dirs/assistant cfg'"
    assert node_commands(plan, workspace=spaced) == [
        f"cd '{r}' && NPROC_PER_NODE=8 NNODES=2 NODE_RANK=0 PORT=29555 ADDR=10.0.0.1 {tail}",
        f"cd '{r}' && NPROC_PER_NODE=8 NNODES=2 NODE_RANK=1 PORT=29555 ADDR=10.0.0.1 {tail}",
    ]
    env, argv = train_env_and_argv(plan, node_rank=1, python=PY, xtuner_dir=XT)
    assert env == {
        "NPROC_PER_NODE": "8", "NNODES": "2", "NODE_RANK": "1", "PORT": "29555",
        "ADDR": "10.0.0.1",
    }  # fmt: skip
    assert argv[3:8] == [
        "--nnodes=2", "--node_rank=1", "--nproc_per_node=8", "--master_addr=10.0.0.1",
        "--master_port=29555",
    ]  # fmt: skip
    with pytest.raises(WizardError, match="node rank 2"):
        train_env_and_argv(plan, node_rank=2)


def test_slurm_script(spaced: Path):
    plan = plan_in(
        spaced, gpus_per_node=8, nodes=2, deepspeed="zero2", master_addr="10.0.0.1",
        master_port=29555,
    )  # fmt: skip
    r = str(spaced)
    script = slurm_script(
        plan, partition="gpu", job_name="assistant", time_limit="04:00:00", workspace=spaced
    )
    assert script == "\n".join(
        [
            "#!/bin/bash",
            "#SBATCH --job-name=assistant",
            "#SBATCH --partition=gpu",
            "#SBATCH --nodes=2",
            "#SBATCH --ntasks-per-node=8",
            "#SBATCH --gres=gpu:8",
            "#SBATCH --time=04:00:00",
            "#SBATCH --output=slurm-%j.out",
            "",
            "# 2 node(s) x 8 GPU(s) = 16 ranks, DeepSpeed zero2",
            "# Submit with: sbatch THIS_FILE. Every node needs the same paths (shared file system).",
            "set -euo pipefail",
            f"cd '{r}'",
            "export MASTER_PORT=29555",
            "export HF_HUB_OFFLINE=1",
            "export HF_DATASETS_OFFLINE=1",
            "export PYTHONUNBUFFERED=1",  # no full unpickling without a resume (test_trust.py)
            "export MASTER_ADDR=10.0.0.1",
            "",
            f"srun --kill-on-bad-exit=1 python -m xtuner.tools.train '{r}/assistant cfg.py' "
            f"--deepspeed deepspeed_zero2 --work-dir '{r}/work_dirs/assistant cfg' --launcher slurm",
            "",
        ]
    )
    # gpus_per_node overrides the plan's; no partition line without a partition
    other = slurm_script(plan, gpus_per_node=4)
    assert "#SBATCH --ntasks-per-node=4\n#SBATCH --gres=gpu:4" in other
    assert "--partition" not in other
    with pytest.raises(WizardError, match="job-name"):
        slurm_script(plan, job_name="my job")
    with pytest.raises(WizardError, match="time"):
        slurm_script(plan, time_limit="4 hours")


# -- the CLI -----------------------------------------------------------------------------------
def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli_main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_two_gpus_here_says_what_was_found(spaced: Path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # none visible, whatever the machine has
    code, out, err = _cli(
        capsys, "-w", str(spaced), "distributed", "--gpus", "2", "--config", "assistant cfg.py"
    )
    assert code == 2 and out == ""
    assert err.startswith("error: --gpus: asked for 2 GPUs but found 0 here")
    assert "(fix: run this on a machine with GPUs" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_plan_json(spaced: Path, capsys):
    code, out, _ = _cli(
        capsys, "-w", str(spaced), "distributed", "--gpus", "2", "--deepspeed", "zero2_offload",
        "--config", "assistant cfg.py", "--no-gpu-check", "--json",
    )  # fmt: skip
    assert code == 0
    plan = json.loads(out)
    assert plan["command"] == (
        "NPROC_PER_NODE=2 xtuner train 'assistant cfg.py' --deepspeed deepspeed_zero2_offload "
        "--work-dir 'work_dirs/assistant cfg'"
    )
    assert plan["env"] == {"NPROC_PER_NODE": "2"} and plan["world_size"] == 2
    assert plan["argv"][1:3] == ["-m", "torch.distributed.run"]
    assert plan["argv"][-2:] == ["--launcher", "pytorch"]


def test_cli_nodes_and_slurm_out(spaced: Path, capsys):
    code, out, _ = _cli(
        capsys, "-w", str(spaced), "distributed", "--gpus", "8", "--nodes", "2",
        "--master-addr", "10.0.0.1", "--config", "assistant cfg.py",
    )  # fmt: skip
    assert code == 0
    assert out.count("NODE_RANK=") == 2 and "# node 1 of 2" in out
    code, out, _ = _cli(
        capsys, "-w", str(spaced), "distributed", "--gpus", "8", "--nodes", "2", "--slurm",
        "--partition", "gpu", "--config", "assistant cfg.py", "--out", "job.sh",
    )  # fmt: skip
    assert code == 0 and "wrote the Slurm batch script" in out
    job = spaced / "job.sh"
    assert job.read_text(encoding="utf-8").startswith("#!/bin/bash\n#SBATCH --job-name=")
    assert job.stat().st_mode & stat.S_IXUSR
    assert not list(spaced.glob(".job.sh.*"))  # the atomic write left no temporary file
    code, _, err = _cli(
        capsys, "-w", str(spaced), "distributed", "--gpus", "2", "--partition", "gpu",
        "--config", "assistant cfg.py",
    )  # fmt: skip
    assert code == 2 and "add --slurm" in err


def test_cli_without_a_config(tmp_path: Path, capsys):
    code, _, err = _cli(capsys, "-w", str(tmp_path), "distributed", "--gpus", "2")
    assert code == 2 and "no config chosen" in err


# -- ZeRO checkpoint folders -------------------------------------------------------------------
# The layout DeepSpeed 0.16.2 wrote for xtuner 0.2.0 in a real 2-process ZeRO-2 run (CPU, gloo,
# fp32): work_dir/iter_N.pth/ with the model states and one optimizer shard per data-parallel
# rank; under bf16 the shards get a bf16_ prefix. Beside them: last_checkpoint (naming the
# folder) and zero_to_fp32.py.
ZERO2_FILES = (
    "mp_rank_00_model_states.pt",
    "zero_pp_rank_0_mp_rank_00_optim_states.pt",
    "zero_pp_rank_1_mp_rank_00_optim_states.pt",
)
ZERO2_BF16_FILES = (
    "mp_rank_00_model_states.pt",
    "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt",
    "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt",
)
ZERO3_FILES = (
    "zero_pp_rank_0_mp_rank_00_model_states.pt",
    "zero_pp_rank_1_mp_rank_00_model_states.pt",
    "zero_pp_rank_0_mp_rank_00_optim_states.pt",
    "zero_pp_rank_1_mp_rank_00_optim_states.pt",
)


def _folder(root: Path, name: str, files) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for f in files:
        write_checkpoint(folder / f, 10)
    return folder


def test_zero_checkpoint_folders(tmp_path: Path):
    wd = tmp_path / "work_dirs" / "cfg"
    z2 = _folder(wd, "iter_64.pth", ZERO2_FILES)
    z3 = _folder(tmp_path, "z3", ZERO3_FILES)
    (wd / "zero_to_fp32.py").write_text("# DeepSpeed's converter\n", encoding="utf-8")
    assert zero_checkpoint_info(_folder(tmp_path, "bf16", ZERO2_BF16_FILES)).world_size == 2
    plain = wd / "iter_32.pth"
    write_checkpoint(plain)
    (wd / "iter_96.pth").mkdir()  # an empty folder (a save cut short) is no checkpoint
    assert is_zero_checkpoint(z2) and is_zero_checkpoint(z3)
    assert not is_zero_checkpoint(plain) and not is_zero_checkpoint(wd / "iter_96.pth")
    assert is_checkpoint(plain) and is_checkpoint(z2)
    assert checkpoints_in(wd) == [plain, z2]
    assert newest_checkpoint(wd) == z2
    (wd / "last_checkpoint").write_text("/elsewhere/work_dirs/cfg/iter_32.pth", encoding="utf-8")
    assert newest_checkpoint(wd) == plain  # the workspace moved: the same name here
    (wd / "last_checkpoint").write_text(str(wd / "iter_96.pth"), encoding="utf-8")
    assert newest_checkpoint(wd) == z2  # names an incomplete folder: the newest complete one
    shard = z2 / ZERO2_FILES[1]
    shard.write_bytes(shard.read_bytes()[:-30])  # one shard cut short: the folder is not whole
    assert checkpoints_in(wd) == [plain] and newest_checkpoint(wd) == plain
    write_checkpoint(shard, 10)
    assert checkpoint_iteration(z2) == 64 and checkpoint_iteration(tmp_path / "x.pth") is None
    info = zero_checkpoint_info(z2)
    assert (info.stage, info.world_size) == ("1/2", 2)
    assert info.bytes == sum(f.stat().st_size for f in z2.iterdir())
    assert zero_checkpoint_info(z3).stage == "3"
    with pytest.raises(WizardError, match="not a DeepSpeed checkpoint folder"):
        zero_checkpoint_info(plain)


def test_resume_from_a_zero_folder_needs_deepspeed_and_the_same_gpus(tmp_path: Path):
    z2 = _folder(tmp_path, "iter_64.pth", ZERO2_FILES)
    with pytest.raises(WizardError) as err:
        check_resume(LaunchPlan(2), z2)
    assert "--deepspeed zero2" in err.value.fix
    with pytest.raises(WizardError) as err:
        check_resume(LaunchPlan(4, deepspeed="zero2"), z2)
    assert "written by 2 GPUs; the plan has 4" in str(err.value)
    check_resume(LaunchPlan(2, deepspeed="zero2"), z2)
    check_resume(LaunchPlan(1), tmp_path / "iter_1.pth")  # a plain .pth: nothing to check


# -- stopping a torchrun tree (real torchrun, CPU workers that only sleep) -----------------------
WORKER = """
import os, pathlib, sys, time
pathlib.Path(sys.argv[1], os.environ["RANK"]).write_text(str(os.getpid()))
time.sleep(600)
"""


def _torchrun(tmp_path: Path, name: str):
    import subprocess
    import sys

    from engine.distributed import TORCHRUN_MODULE

    out = tmp_path / name
    out.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    argv = [sys.executable, "-m", TORCHRUN_MODULE, "--nproc_per_node=2", "--master_port=0"]
    proc = subprocess.Popen(
        [*argv, str(script), str(out)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # as the run supervisor starts the trainer
    )
    deadline = time.monotonic() + 240
    while len(list(out.iterdir())) < 2:
        assert proc.poll() is None, "torchrun ended early"
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.2)
    workers = sorted(int(p.read_text()) for p in out.iterdir())
    return proc, workers


@pytest.mark.slow
def test_torchrun_workers_escape_its_group_and_stop_process_tree_ends_them(tmp_path: Path):
    import os
    import signal

    from engine.runs.processes import alive, process_tree, stop_process_tree

    proc, workers = _torchrun(tmp_path, "a")
    try:
        assert set(workers) <= set(process_tree(proc.pid))
        # each worker is a session of its own: a signal to torchrun's group misses them
        assert all(os.getsid(w) == w != os.getsid(proc.pid) for w in workers)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(0.5)
        assert alive(workers) == workers  # orphaned, still running
    finally:
        for w in alive(workers):
            os.kill(w, signal.SIGKILL)

    proc, workers = _torchrun(tmp_path, "b")
    try:
        assert stop_process_tree(proc.pid, timeout=60, grace=10) == []
        assert proc.wait(timeout=10) is not None
        assert alive(workers) == []
    finally:
        for w in alive([proc.pid, *workers]):
            os.kill(w, signal.SIGKILL)


# -- a real 2-process run of xtuner through the torchrun argv (CPU, gloo, plain DDP) ---------------
# A CPU stand-in for two GPUs: mmengine's pytorch launcher calls torch.cuda.set_device(LOCAL_RANK)
# and wraps the model in DDP with device_ids=[LOCAL_RANK]; both are GPU-only, so the config
# neutralises them. Everything else (torchrun, rendezvous, xtuner's train.py with --launcher
# pytorch, the sampler split over 2 ranks, checkpointing from rank 0) is the real thing.
CPU_DDP_HEADER = '__import__("torch").cuda.set_device = lambda *a, **k: None\n'
CPU_DDP_FOOTER = (
    '\nmodel_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, '
    "broadcast_buffers=False)\n"
)


@pytest.mark.slow
@pytest.mark.long  # `make test`: the two-process kill-and-resume trains through the same argv
def test_two_processes_train_through_the_torchrun_argv(tmp_path: Path):
    import subprocess

    from train_support import build_model

    from engine.config import render_config, write_config
    from engine.workspace import Workspace
    from engine.xtuner_env import child_env

    model = build_model(tmp_path / "demo model")
    ws = Workspace(tmp_path / "my ws").ensure()
    record = {"conversation": [{"system": "", "input": "请介绍一下你自己", "output": "我是小助手"}]}
    ws.dataset_path.parent.mkdir(parents=True, exist_ok=True)
    ws.dataset_path.write_text(json.dumps([record] * 400, ensure_ascii=False), encoding="utf-8")
    rendered = render_config(
        model_path=str(model),
        data_path=str(ws.dataset_path),
        profile="cpu",
        overrides={
            "max_iters": 4,
            "save_steps": 2,
            "evaluation_freq": 1000,
            "max_length": 64,
            "max_new_tokens": 4,
        },
    )
    cfg = write_config(ws, rendered)
    cfg.write_text(CPU_DDP_HEADER + cfg.read_text(encoding="utf-8") + CPU_DDP_FOOTER, "utf-8")
    plan = validate(
        LaunchPlan(2, master_port=29631, config=cfg, work_dir=ws.work_dirs / cfg.stem),
        local=False,
    )
    env, argv = train_env_and_argv(plan)
    done = subprocess.run(
        argv,
        env=child_env(extra={**env, "OMP_NUM_THREADS": "1"}),
        cwd=ws.root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "Iter(train) [4/4]" in log
    # mmengine's runtime info: launched by torchrun, world size 2 ("GPU number" is world size)
    assert "Distributed launcher: pytorch" in log and "Distributed training: True" in log
    assert "GPU number: 2" in log
    assert checkpoints_in(plan.work_dir) == [
        plan.work_dir / "iter_2.pth",
        plan.work_dir / "iter_4.pth",
    ]


def test_cli_resume_from_a_zero_folder(spaced: Path, capsys):
    ckpt = _folder(spaced / "work_dirs" / "assistant cfg", "iter_8.pth", ZERO2_FILES)
    args = ["-w", str(spaced), "distributed", "--gpus", "2", "--config", "assistant cfg.py"]
    args += ["--no-gpu-check", "--resume", str(ckpt)]
    code, out, _ = _cli(capsys, *args, "--deepspeed", "zero2")
    assert code == 0
    assert "--resume 'work_dirs/assistant cfg/iter_8.pth'" in out.splitlines()[0]
    code, _, err = _cli(capsys, *args)  # no --deepspeed: a ZeRO folder cannot resume
    assert code == 2 and "--deepspeed zero2" in err
    code, _, err = _cli(capsys, *args[:-1], str(spaced / "iter_9.pth"), "--deepspeed", "zero2")
    assert code == 2 and "checkpoint not found" in err
