"""Prints where `make bench` keeps this machine's speed baseline, relative to results/benchmarks/:
`<pytest-benchmark machine id>/<CPU model>-<logical CPUs>cpus[-<GPU>]`, e.g.
`Linux-CPython-3.11-64bit/intel-xeon-processor-2cpus`. pytest-benchmark's own id (OS, Python, word size) says nothing
of the hardware, so the CPU and GPU are added: a fresh clone on the same kind of machine finds the committed
baseline, and any other machine finds none (and is told so) rather than comparing against the wrong one."""

import os
import re

from pytest_benchmark.utils import get_machine_id

from harness.sweep.metadata import cpu_model, gpu_info


def machine_key() -> str:
    parts = [cpu_model() or "unknown-cpu", f"{os.cpu_count()}cpus", gpu_info()["gpu_name"] or ""]
    text = re.sub(r"\((r|tm)\)", "", " ".join(parts).lower())
    return f"{get_machine_id()}/{re.sub(r'[^a-z0-9.]+', '-', text).strip('-')}"


if __name__ == "__main__":
    print(machine_key())
