"""One line per GPU (utilisation, memory, temperature, power), then CPU and RAM.

Values are rounded before they are shown (utilisation to 1%, memory to 0.1 GB, power to 1 W)
and each line repaints only the characters that changed (LiveLines), so a steady GPU costs
nothing on the wire. With no GPU the GPU lines are absent and only the CPU/RAM line remains.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tui.widgets.live_lines import LiveLines


def _na(value: Any, fmt: str) -> str:
    return "N/A" if value is None else fmt.format(value)


def gpu_line(sample: Any) -> str:
    """``GPU0 NVIDIA H200     util  87%  mem  40.1/139.8 GB   62°C  310 W``; N/A where unknown."""
    name = str(getattr(sample, "name", "") or "GPU")
    name = name.removeprefix("NVIDIA ")[:14]
    util = _na(getattr(sample, "util_pct", None), "{:3.0f}%")
    used, total = getattr(sample, "mem_used_mb", None), getattr(sample, "mem_total_mb", None)
    if used is None or total is None:
        mem = "N/A"
    else:
        mem = f"{used / 1024:5.1f}/{total / 1024:.1f} GB"
    temp = _na(getattr(sample, "temp_c", None), "{:3.0f}°C")
    power = _na(getattr(sample, "power_w", None), "{:4.0f} W")
    index = getattr(sample, "index", 0)
    return f"GPU{index} {name:<14} util {util:>4}  mem {mem:>16}  {temp:>5}  {power:>6}"


def host_line(cpu_pct: float | None, ram_used_gb: float | None, ram_total_gb: float | None) -> str:
    """The run's own processes: ``run CPU  180%   RAM   2.1 of 23.5 GB`` (N/A with no run)."""
    cpu = _na(cpu_pct, "{:3.0f}%")
    if ram_used_gb is None or ram_total_gb is None:
        ram = "N/A"
    else:
        ram = f"{ram_used_gb:5.1f} of {ram_total_gb:.1f} GB"
    return f"run CPU {cpu:>4}   RAM {ram}"


class GpuPanel(LiveLines):
    """GPU lines (none without a GPU) and a CPU/RAM line."""

    DEFAULT_CSS = """
    GpuPanel {
        height: auto;
        width: 1fr;
    }
    """

    def show(
        self,
        gpus: Sequence[Any],
        cpu_pct: float | None = None,
        ram_used_gb: float | None = None,
        ram_total_gb: float | None = None,
    ) -> None:
        lines = [gpu_line(g) for g in gpus]
        lines.append(host_line(cpu_pct, ram_used_gb, ram_total_gb))
        self.set_lines(lines)

    @property
    def gpu_count(self) -> int:
        return sum(1 for line in self.lines if line.startswith("GPU"))
