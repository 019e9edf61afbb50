"""How far a probed GEMM curve carries to other architectures. `archscale probe` measures the curve on one config's
GEMMs (`--gemm-config`) and the perfmodel applies it to every architecture; here each config's own GEMMs are timed the
same way (one pass over q/k/v, o, the MLP and the LM head at M = 1, 2, 4, ... rows; harness/probe/decode.py) and
turned into the perfmodel's GEMM factor at the hardware entry's priors, beside the factor the perfmodel predicts for
that config on the entry (its curve, and its GEMM shape grid where the probe measured one: perfmodel/gemm_shapes.py).
A config whose own factor differs from the entry's is predicted that much off at that M, whatever is calibrated.
The configs are timed in rounds, all of them back to back in each, so the machine's drift moves them together.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass

from perfmodel.errors import ArchscaleInputError


@dataclass
class ConfigCurve:
    name: str
    factors: dict[int, list[float]]  # M -> the config's own GEMM factor in each round
    entry_factors: dict[int, float]  # M -> the factor the perfmodel predicts at M on the entry (curve, shape grid)

    def median(self, rows: int) -> float:
        return statistics.median(self.factors[rows])

    def off_pct(self, rows: int) -> float:
        """100·(entry factor / the config's own − 1): how much slower (< 0) or faster the perfmodel, on the entry's
        curve, predicts this config's GEMMs at M rows than they ran now (the machine's drift since the probe
        included)."""
        return 100 * (self.entry_factors[rows] / self.median(rows) - 1)

    def off_vs_pct(self, baseline: ConfigCurve, rows: int) -> float:
        """100·(median over rounds of the baseline's factor / this config's − 1), each round's pair measured back to
        back: how far a curve measured on the baseline's GEMMs predicts this config's at M rows, free of the drift."""
        ratios = [b / own for b, own in zip(baseline.factors[rows], self.factors[rows], strict=True)]
        return 100 * (statistics.median(ratios) - 1)


def entry_priors(hardware):
    """The torch engine's priors of a probed entry, which must hold a measured GEMM curve."""
    from perfmodel.calibration import engine_priors

    priors = engine_priors(hardware, "torch")
    if not priors.gemm_curve_rows:
        raise ArchscaleInputError(f"hardware entry {hardware.name} has no measured GEMM curve for the torch engine: "
                                  "probe the machine with `archscale probe` first")  # fmt: skip
    return priors


def predicted_factor(arch, rows: int, hardware, priors, peak_flops_per_s: float) -> float:
    """The GEMM factor the perfmodel predicts for one pass over `arch`'s GEMMs at `rows` rows on the entry: their
    roofline at the priors over their predicted time (the entry's curve, and its shape grid where it has one),
    launches left out as the curve leaves them out."""
    from harness.probe.decode import GEMM_OPS, gemm_roofline_s, one_gpu_shape
    from perfmodel.operators import dense_ops
    from perfmodel.roofline import roofline

    without_launches = dataclasses.replace(priors, kernel_launch_overhead_s=0.0)
    ops = dense_ops(one_gpu_shape(arch), float(rows), float(rows), 1.0)
    predicted_s = sum(roofline(ops[name], hardware, without_launches, peak_flops_per_s)[0] for name in GEMM_OPS)
    bandwidth = hardware.hbm_bandwidth_bytes_per_s * priors.memory_efficiency
    return float(gemm_roofline_s(arch, [rows], peak_flops_per_s, bandwidth)[0] / predicted_s.item())


def check_curves(archs, hardware, device: str, rounds: int, max_rows: int) -> list[ConfigCurve]:
    """Each of `archs`' own GEMM factors at M = 1, 2, 4, ... `max_rows` on `device`, `rounds` times, against the
    curve of `hardware` (a probed entry of this machine)."""
    import torch

    from harness.probe.decode import gemm_curve, gemm_curve_times
    from harness.probe.measure import SIZES, KernelTimer, check_device, default_dtype
    from perfmodel.arch import DTYPE_BYTES

    check_device(torch, device)
    dtype = default_dtype(device)  # the probe's: the entry's curve was measured at it
    element_bytes = DTYPE_BYTES[dtype]
    priors = entry_priors(hardware)
    peak, bandwidth = hardware.peak_flops_per_s(element_bytes), hardware.hbm_bandwidth_bytes_per_s
    sizes = SIZES[(device, False)]
    timer = KernelTimer(torch, device, sizes)
    archs = [dataclasses.replace(arch, dtype_bytes=element_bytes) for arch in archs]
    factors = [{} for _ in archs]  # per config: M -> its factor in each round
    for _ in range(rounds):
        for arch, by_rows in zip(archs, factors, strict=True):
            with torch.inference_mode():
                times = gemm_curve_times(timer, device, getattr(torch, dtype), arch, max_rows, sizes.max_call_s)
            rows, measured = gemm_curve(times, peak, bandwidth, priors.memory_efficiency)
            for m, factor in zip(rows, measured, strict=True):
                by_rows.setdefault(int(m), []).append(factor)
    curves = []
    for arch, by_rows in zip(archs, factors, strict=True):
        rows = [m for m, values in by_rows.items() if len(values) == rounds]  # measured in every round
        entry = {m: predicted_factor(arch, m, hardware, priors, peak) for m in rows}
        curves.append(ConfigCurve(arch.name, {m: by_rows[m] for m in rows}, entry))
    return curves
