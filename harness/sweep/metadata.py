"""Run metadata attached to every measured row: GPU, driver, CUDA, CPU, library versions, git SHA, command, time.

Everything heavy (torch, triton, nvidia-ml-py) is imported lazily and optional: on a CPU-only machine the
GPU fields are None rather than an error, so a dry run or a CPU test still gets honest metadata. Only measuring
commands call `run_metadata` (never `archscale predict`), so importing torch here, lazily, is fine.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import shlex
import socket
import sys

from harness.sweep.revision import git_revision


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def gpu_info() -> dict:
    """Name, memory, driver and CUDA version of GPU 0 via nvidia-ml-py, else torch.cuda, else all None."""
    info = {"gpu_name": None, "gpu_memory_bytes": None, "driver_version": None, "cuda_version": None}
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            name = pynvml.nvmlDeviceGetName(handle)
            driver = pynvml.nvmlSystemGetDriverVersion()
            info["gpu_name"] = name.decode() if isinstance(name, bytes) else name
            info["gpu_memory_bytes"] = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
            info["driver_version"] = driver.decode() if isinstance(driver, bytes) else driver
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML library, no driver, no GPU: fall back to torch below
        pass
    try:
        import torch
    except ImportError:
        return info
    info["cuda_version"] = torch.version.cuda
    if info["gpu_name"] is None and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu_name"] = props.name
        info["gpu_memory_bytes"] = int(props.total_memory)
    return info


def cpu_model() -> str | None:
    """The CPU's "model name" from /proc/cpuinfo (Linux), else platform.processor(), else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def cpu_info() -> dict:
    """CPU model, logical CPU count, the threads torch uses (None without torch) and the platform string."""
    try:
        import torch

        threads = torch.get_num_threads()
    except Exception:  # no torch (or a broken install): the field is None, metadata never fails
        threads = None
    return {
        "cpu_model": cpu_model(),
        "cpu_count_logical": os.cpu_count(),
        "torch_num_threads": threads,
        "platform": platform.platform(),
    }


def run_metadata(command: str | list[str] | None = None) -> dict:
    """Everything a reader needs to reproduce or judge a measurement."""
    if command is None:
        command = sys.argv
    if not isinstance(command, str):
        command = shlex.join(command)
    return {
        **gpu_info(),
        **cpu_info(),
        "torch_version": package_version("torch"),
        "triton_version": package_version("triton"),
        "vllm_version": package_version("vllm"),
        "sglang_version": package_version("sglang"),
        "archscale_version": package_version("archscale"),
        "python_version": platform.python_version(),
        **git_revision(),
        "hostname": socket.gethostname(),
        "command": command,
        "time_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


if (
    __name__ == "__main__"
):  # `python -m harness.sweep.metadata`: one header line for a log (the GPU campaign's test log)
    import json

    tests = "pytest -m gpu tests; pytest tests/kernels"
    print(f"# metadata: {json.dumps(run_metadata(f'archscale campaign (tests stage): {tests}'), sort_keys=True)}")
