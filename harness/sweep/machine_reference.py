"""The machine reference: one fixed GEMM and one fixed memory stream, timed on a sweep point's device just before and
just after the point, so a sweep records how fast the machine itself ran while it measured (a shared VM's neighbours,
clocks, heat) beside the engine's figures. The engine's code and sizes never change it: only the machine does.
`archscale compare` holds each point's pass-to-pass scatter against the reference's and reports how much of it the
machine explains (harness/calibrate/compare.py, `drift_summary`).
"""

from __future__ import annotations

import functools
import statistics
import time
from dataclasses import dataclass

# (M, N, K) of the reference matmul and bytes of the reference stream, per device: about 10 ms and 3 ms on a 2-vCPU
# VM (fp32), well under 1 ms each on an H100 (bf16): small next to any point, large next to the timer.
GEMM_MNK = {"cpu": (128, 4096, 1024), "cuda": (4096, 4096, 4096)}
STREAM_BYTES = {"cpu": 64 * 2**20, "cuda": 2**30}
ROUNDS = 5  # medians of this many timed rounds, after one untimed
REFERENCE_FIELDS = ("reference_gemm_s", "reference_stream_s")  # a sweep row's fields: (GEMM, stream) seconds


@dataclass(frozen=True)
class ReferenceTimes:
    gemm_s: float  # median seconds of one GEMM_MNK matmul
    stream_s: float  # median seconds of one sum over STREAM_BYTES

    def mean_with(self, other: ReferenceTimes) -> ReferenceTimes:
        return ReferenceTimes((self.gemm_s + other.gemm_s) / 2, (self.stream_s + other.stream_s) / 2)

    @staticmethod
    def median_of(times: list[ReferenceTimes]) -> ReferenceTimes:
        return ReferenceTimes(statistics.median(t.gemm_s for t in times), statistics.median(t.stream_s for t in times))

    def row_fields(self) -> dict:
        return dict(zip(REFERENCE_FIELDS, (self.gemm_s, self.stream_s), strict=True))


def _operands(device: str):
    """The reference's tensors: kept for the process on the CPU (64 MiB), made afresh on a GPU so that they hold none
    of its memory while the engine runs."""
    return _cpu_operands() if device == "cpu" else _make_operands(device)


@functools.cache
def _cpu_operands():
    return _make_operands("cpu")


def _make_operands(device: str):
    import torch

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    m, n, k = GEMM_MNK[device]
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(m, k, generator=generator).to(device, dtype)
    b = torch.randn(k, n, generator=generator).to(device, dtype)
    stream = torch.ones(STREAM_BYTES[device] // 4, dtype=torch.float32, device=device)
    return a, b, stream


def _median_s(run, device: str) -> float:
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    run()
    sync()
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_reference(device: str) -> ReferenceTimes:
    """The reference's times on `device` ("cpu" or "cuda") now."""
    import torch

    a, b, stream = _operands(device)
    times = ReferenceTimes(gemm_s=_median_s(lambda: torch.mm(a, b), device),
                           stream_s=_median_s(lambda: stream.sum(), device))  # fmt: skip
    if device == "cuda":
        del a, b, stream
        torch.cuda.empty_cache()  # give the engine back every byte
    return times
