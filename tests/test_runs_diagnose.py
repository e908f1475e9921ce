"""diagnose(): failure causes from real captured xtuner 0.2.0 output (tests/data/logs/failures/,
the last 40 lines of real failed `python -m xtuner.tools.train` runs) and, for what cannot happen
on this CPU machine (CUDA OOM, a missing GPU, a full disk), text in the exact format PyTorch and
mmengine print."""

from __future__ import annotations

from pathlib import Path

from engine.runs.diagnose import diagnose

FAILURES = Path(__file__).parent / "data" / "logs" / "failures"
RESUMED = Path(__file__).parent / "data" / "logs" / "resumed"

TB_HEAD = """Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/venv/lib/python3.11/site-packages/xtuner/tools/train.py", line 388, in main
    runner.train()
  File "/venv/lib/python3.11/site-packages/mmengine/runner/runner.py", line 1777, in train
    model = self.train_loop.run()  # type: ignore
"""

CUDA_OOM = (
    TB_HEAD
    + """  File "/venv/lib/python3.11/site-packages/torch/nn/modules/linear.py", line 125, in forward
    return F.linear(input, self.weight, self.bias)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.02 GiB is free. Including non-PyTorch memory, this process has 78.16 GiB memory in use.
"""
)

NO_AMP_GPU = (
    TB_HEAD
    + """  File "/venv/lib/python3.11/site-packages/mmengine/optim/optimizer/amp_optimizer_wrapper.py", line 76, in __init__
    assert is_cuda_available() or is_npu_available() or is_mlu_available(
AssertionError: ``AmpOptimizerWrapper`` is only available training on gpu, npu, mlu or musa
"""
)

NO_DRIVER = (
    TB_HEAD
    + """  File "/venv/lib/python3.11/site-packages/torch/cuda/__init__.py", line 372, in _lazy_init
    torch._C._cuda_init()
RuntimeError: Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and installed a driver from http://www.nvidia.com/Download/index.aspx
"""
)

DISK_FULL = (
    TB_HEAD
    + """  File "/venv/lib/python3.11/site-packages/torch/serialization.py", line 967, in save
    _save(
RuntimeError: [enforce fail at inline_container.cc:626] . unexpected pos 123456 vs 123400
OSError: [Errno 28] No space left on device
"""
)

# bitsandbytes prints this on every CPU run: it is not a failure and not "no CUDA"
BNB_WARNING = (
    "The installed version of bitsandbytes was compiled without GPU support. 8-bit optimizers, "
    "8-bit multiplication, and GPU quantization are unavailable.\n"
)


def test_success_is_not_a_failure():
    log = (RESUMED / "killed-train.log").read_text(encoding="utf-8")
    head = log[: log.index("Saving checkpoint at 4")]
    assert diagnose(BNB_WARNING + head, 0) is None


def test_cuda_out_of_memory():
    cause = diagnose(BNB_WARNING + CUDA_OOM, 1)
    assert cause.kind == "cuda_oom"
    assert "Tried to allocate 2.00 GiB" in cause.message
    assert "batch_size" in cause.fix and "max_length" in cause.fix and "QLoRA" in cause.fix


def test_no_gpu():
    for text in (NO_AMP_GPU, NO_DRIVER):
        cause = diagnose(BNB_WARNING + text, 1)
        assert cause.kind == "no_cuda", text
        assert "--profile cpu" in cause.fix


def test_bitsandbytes_warning_alone_is_not_no_cuda():
    real = (FAILURES / "fail_scheduler.log").read_text(encoding="utf-8")
    cause = diagnose(BNB_WARNING + real, 1)
    assert cause.kind == "config_error"  # the scheduler's own cause, not "no CUDA"
    assert "warm-up rounds to 0 iterations" in cause.message


def test_disk_full():
    cause = diagnose(DISK_FULL, 1)
    assert cause.kind == "disk_full"
    assert "free space" in cause.fix


def test_killed_by_signal_9():
    log = (RESUMED / "killed-train.log").read_text(encoding="utf-8")
    for code in (-9, 137):
        cause = diagnose(log, code)
        assert cause.kind == "killed"
        assert "signal 9" in cause.message and "resume" in cause.fix
    assert diagnose("step 3\nKilled\n", 1).kind == "killed"


def test_interrupted():
    text = TB_HEAD + "KeyboardInterrupt\n"
    assert diagnose(text, -2).kind == "interrupted"
    assert diagnose(text, 1).kind == "interrupted"


def test_config_error_names_file_and_line():
    text = (FAILURES / "bad_name.log").read_text(encoding="utf-8")
    cause = diagnose(text, 1, config_path="/tmp/h4/bad_name.py")
    assert cause.kind == "config_error"
    assert "/tmp/h4/bad_name.py:29" in cause.message
    assert "NameError: name 'undefined_name' is not defined" in cause.message
    assert "line 29" in cause.fix
    # without knowing the config, the frame outside the libraries is taken
    assert "/tmp/h4/bad_name.py:29" in diagnose(text, 1).message


def test_config_syntax_error_names_line():
    text = (FAILURES / "bad_syntax.log").read_text(encoding="utf-8")
    cause = diagnose(text, 1, config_path="/ws/my_copy.py")
    assert cause.kind == "config_error"
    assert "/ws/my_copy.py:32" in cause.message
    assert "'(' was never closed" in cause.message


def test_missing_data_file():
    text = (FAILURES / "bad_data.log").read_text(encoding="utf-8")
    cause = diagnose(text, 1, config_path="/tmp/h4/bad_data.py")
    assert cause.kind == "missing_file"
    assert "/tmp/h4/nope.json" in cause.message


def test_generic_fallback_gives_last_error_line():
    text = "loading...\nsomething odd happened\nRuntimeError: weird thing\n"
    cause = diagnose(text, 3)
    assert cause.kind == "error"
    assert "exit code 3" in cause.message and "RuntimeError: weird thing" in cause.message
    assert diagnose("", 5).kind == "error"


# -- DeepSpeed / torchrun runs on the H200 machine (benchmarks/gpu_multi.py, 2026-11-29): the end
# of the wizard's train.log, warnings left out by the script that captured them --------------
def test_zero_warmup_on_one_gpu_with_rank_prefixes():
    """DeepSpeed on 1 GPU: torch prefixes the worker's traceback with ``[rank0]:``; the cause was
    once taken from an mmengine WARNING line instead."""
    real = (FAILURES / "zero2_1gpu_scheduler.log").read_text(encoding="utf-8")
    cause = diagnose(real, 1)
    assert cause.kind == "config_error"
    assert "warm-up rounds to 0 iterations" in cause.message
    assert "--set max_iters" in cause.fix


def test_zero_warmup_under_torchrun():
    real = (FAILURES / "zero2_2gpu_scheduler.log").read_text(encoding="utf-8")
    assert "ChildFailedError" in real
    cause = diagnose(real, 1)
    assert cause.kind == "config_error" and "warm-up" in cause.message


def test_torchrun_failure_names_the_workers_error_not_childfailederror():
    """A worker's traceback (rank-prefixed) then torchrun's ChildFailedError, both as captured."""
    worker = (FAILURES / "zero2_1gpu_scheduler.log").read_text(encoding="utf-8")
    worker = worker.replace("end should be larger than begin", "a worker's own error").replace(
        "ValueError: a worker's own error, but got begin=0, end=0",
        "RuntimeError: a worker's own error",
    )
    torchrun = (FAILURES / "zero2_2gpu_scheduler.log").read_text(encoding="utf-8")
    torchrun = torchrun[torchrun.index("W1129 ") :]  # torchrun's part: after the worker's
    cause = diagnose(worker.replace("[xtuner-wizard] run ended: failed (exit 1)", "") + torchrun, 1)
    assert cause.kind == "error"
    assert "RuntimeError: a worker's own error" in cause.message
    assert "ChildFailedError" not in cause.message
