"""What machine a number was measured on: every benchmark report and `reports/run.json` embed this."""

from __future__ import annotations

import contextlib
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "onnxruntime", "tritonclient", "nvidia-pytriton", "lightgbm", "numpy")


def machine_info(**extra: Any) -> dict[str, Any]:
    """CPU model and count, load at measurement time (benchmarks on a shared machine say so), memory,
    Python and the versions of the packages that decide speed. Versions are read from package metadata,
    so calling this imports nothing heavy."""
    cpu_model = "unknown"
    with contextlib.suppress(OSError, StopIteration):
        cpu_model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    versions = {}
    for package in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "memory_gib": memory_gib,
        "load_average_1m_5m_15m": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "packages": versions,
        **extra,
    }
