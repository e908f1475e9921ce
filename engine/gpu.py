"""GPU sampling through NVML (nvidia-ml-py): batched, lazy, never raises, no torch.

``GpuSampler().sample()`` returns one :class:`GpuSample` per GPU, read in one pass; a metric
the driver does not support is ``None`` (shown as "N/A"); a machine with no GPU or no
driver gives an empty list. NVML is initialised on the first sample, not at import.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    util_pct: float | None
    mem_used_mb: float | None
    mem_total_mb: float | None
    temp_c: float | None
    power_w: float | None

    @property
    def mem_free_mb(self) -> float | None:
        if self.mem_used_mb is None or self.mem_total_mb is None:
            return None
        return self.mem_total_mb - self.mem_used_mb

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def format_metric(value: float | int | None, unit: str = "", *, digits: int = 0) -> str:
    """``12 %``, ``40960 MB``, or ``N/A`` when the metric is unsupported (None)."""
    if value is None:
        return "N/A"
    text = f"{value:.{digits}f}"
    return f"{text} {unit}".rstrip() if unit else text


def _call(fn, *args):
    """One NVML call; None when unsupported or failing (never raises)."""
    try:
        return fn(*args)
    except Exception:
        return None


class GpuSampler:
    """Reads every GPU's utilisation, memory, temperature and power through NVML."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nvml: Any = None
        self._handles: list[Any] | None = None  # None: not tried yet; []: no GPU/driver
        self.error: str | None = None  # why there is no GPU, when there is none

    def _init(self) -> list[Any]:
        if self._handles is not None:
            return self._handles
        self._handles = []
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._nvml = pynvml
        except Exception as exc:  # no library, no driver, no device
            self.error = str(exc) or type(exc).__name__
            self._handles = []
        return self._handles

    @property
    def available(self) -> bool:
        with self._lock:
            return bool(self._init())

    def sample(self) -> list[GpuSample]:
        """One sample per GPU, empty on a machine without GPUs. Never raises."""
        with self._lock:
            try:
                handles = self._init()
                nv = self._nvml
                out = []
                for i, h in enumerate(handles):
                    name = _call(nv.nvmlDeviceGetName, h)
                    if isinstance(name, bytes):
                        name = name.decode(errors="replace")
                    util = _call(nv.nvmlDeviceGetUtilizationRates, h)
                    mem = _call(nv.nvmlDeviceGetMemoryInfo, h)
                    temp = _call(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
                    power = _call(nv.nvmlDeviceGetPowerUsage, h)  # milliwatts
                    out.append(
                        GpuSample(
                            index=i,
                            name=str(name or f"GPU {i}"),
                            util_pct=float(util.gpu) if util is not None else None,
                            mem_used_mb=mem.used / 2**20 if mem is not None else None,
                            mem_total_mb=mem.total / 2**20 if mem is not None else None,
                            temp_c=float(temp) if temp is not None else None,
                            power_w=power / 1000.0 if power is not None else None,
                        )
                    )
                return out
            except Exception as exc:
                self.error = str(exc) or type(exc).__name__
                return []

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                _call(self._nvml.nvmlShutdown)
            self._nvml = None
            self._handles = None
