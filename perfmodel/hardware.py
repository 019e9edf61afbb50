"""GPU datasheet specs (`Hardware`, from data/hardware.toml) and per-(GPU, engine) efficiency factors
(`Calibration`, from data/calibration.toml). Lookup is forgiving about case and punctuation; an unknown name
fails with the nearest known names."""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from perfmodel.errors import ArchscaleInputError

DATA_DIR = Path(__file__).with_name("data")
ENGINES = ("torch", "vllm", "sglang")


@dataclass(frozen=True)
class Hardware:
    name: str  # canonical key, e.g. "h100-sxm"
    display_name: str
    hbm_bandwidth_bytes_per_s: float
    peak_bf16_flops_per_s: float  # dense
    peak_fp16_flops_per_s: float  # dense
    memory_bytes: float
    sm_count: int
    aliases: tuple[str, ...] = ()
    sources: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Calibration:
    compute_efficiency: float
    memory_efficiency: float
    kernel_launch_overhead_s: float
    step_overhead_s: float
    gpu_memory_utilization: float
    workspace_bytes: float
    calibrated: bool


def _normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@cache
def _hardware_table() -> dict[str, Hardware]:
    with (DATA_DIR / "hardware.toml").open("rb") as f:
        raw = tomllib.load(f)
    table = {}
    for key, spec in raw.items():
        spec = dict(spec)
        table[key] = Hardware(
            name=key,
            aliases=tuple(spec.pop("aliases", ())),
            sources=spec.pop("sources", {}),
            **spec,
        )
    return table


def list_gpus() -> list[Hardware]:
    return list(_hardware_table().values())


def get_gpu(name: str) -> Hardware:
    """A GPU by name or alias ("h200", "H100-SXM", "a100_80gb"); unknown names suggest the nearest ones."""
    wanted = _normalize(name)
    known = {}
    for gpu in list_gpus():
        for label in (gpu.name, gpu.display_name, *gpu.aliases):
            known[_normalize(label)] = gpu
    if wanted in known:
        return known[wanted]
    nearest = difflib.get_close_matches(wanted, list(known), n=6, cutoff=0.5)
    names = list(dict.fromkeys(known[n].name for n in nearest))[:3]
    hint = f"; did you mean: {', '.join(names)}?" if names else ""
    raise ArchscaleInputError(f"unknown GPU '{name}'{hint} (`archscale gpus` lists them)")


def gpu_from_device_name(device_name: str) -> Hardware | None:
    """The datasheet entry for a CUDA device name such as "NVIDIA H100 80GB HBM3", or None if unknown."""
    name = device_name.upper()
    if "H200" in name:
        return get_gpu("h200")
    if "H100" in name:
        return get_gpu("h100-pcie" if "PCIE" in name else "h100-sxm")
    if "A100" in name:
        return get_gpu("a100-80gb" if "80G" in name else "a100-40gb")
    if "B200" in name:
        return get_gpu("b200")
    return None


@cache
def _calibration_table() -> dict:
    with (DATA_DIR / "calibration.toml").open("rb") as f:
        return tomllib.load(f)


def get_calibration(gpu_name: str, engine: str) -> Calibration:
    """Calibrated factors for (GPU, engine) if `archscale calibrate` wrote them, else the engine's priors."""
    if engine not in ENGINES:
        raise ArchscaleInputError(f"unknown engine '{engine}' (known: {', '.join(ENGINES)})")
    table = _calibration_table()
    entry = table.get(gpu_name, {}).get(engine) or table["default"][engine]
    return Calibration(**entry)
