"""Hardware specs (`Hardware`): datasheet GPUs and machines measured by `archscale probe`.

Datasheet GPUs come from data/hardware.toml; a machine measured by `archscale probe` comes from a hardware file
in the same format (`load_hardware_file`), with its own efficiency priors in [<name>.calibration.<engine>].
`resolve_hardware` picks one of them for a command line. Efficiency factors live in perfmodel/calibration.py.
Lookup by name is forgiving about case and punctuation; an unknown name fails with the
nearest known names, and a malformed hardware file fails with one line naming the file and the field.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from perfmodel.calibration import check_engine_tables, read_toml
from perfmodel.errors import ArchscaleInputError

DATA_DIR = Path(__file__).with_name("data")
PEAK_FIELDS = ("peak_fp32_flops_per_s", "peak_bf16_flops_per_s", "peak_fp16_flops_per_s", "peak_fp8_flops_per_s")
LOCAL_NAME = "local"  # `--gpu local`: the probe file of this machine


@dataclass(frozen=True)
class Hardware:
    name: str  # canonical key, e.g. "h100-sxm" or "local-cpu"
    display_name: str
    hbm_bandwidth_bytes_per_s: float  # datasheet peak, or the measured copy bandwidth (measured = true)
    peak_bf16_flops_per_s: float | None  # dense; None when unknown (a probe that ran another dtype)
    peak_fp16_flops_per_s: float | None  # dense
    memory_bytes: float  # as the device reports it (torch / cudaMemGetInfo total), or the machine's RAM
    sm_count: int  # CUDA multiprocessors; for a probed CPU, the threads torch uses
    aliases: tuple[str, ...] = ()
    sources: dict = field(default_factory=dict, compare=False, hash=False)
    peak_fp32_flops_per_s: float | None = None  # dense, non-tensor-core fp32 (no TF32)
    peak_fp8_flops_per_s: float | None = None  # dense fp8 tensor cores (Hopper and later); None where there are none
    # GPU-to-GPU link of a TP group, per GPU and per direction, and the latency of one small collective;
    # None where unknown (a probed machine): then only --tp 1 can be modelled.
    interconnect_bandwidth_bytes_per_s: float | None = None
    interconnect_latency_s: float | None = None
    interconnect: str = ""  # e.g. "NVLink 4"
    measured: bool = False  # figures are rates `archscale probe` reached, not datasheet peaks
    calibration_priors: dict = field(default_factory=dict, compare=False, hash=False)  # engine -> Calibration kw
    metadata: dict = field(default_factory=dict, compare=False, hash=False)  # run metadata of the probe
    # (GEMM s, stream s) of harness/sweep/machine_reference.py during the probe: the machine state its rates were measured
    # in; None for datasheet entries and probes from before it
    machine_reference: tuple[float, float] | None = None

    def peak_flops_per_s(self, dtype_bytes):
        """The dense peak for a weight/activation width: 4 bytes -> fp32, 2 -> bf16 (fp16 if only that is
        known: the model cannot tell the two apart), 1 -> fp8 where the hardware has fp8 tensor cores, else bf16
        (an fp8 checkpoint on an A100 runs weight-only kernels that compute in bf16). `dtype_bytes` may be a numpy
        array; the answer is a float when all widths agree, else an array of the same shape."""
        widths = np.asarray(dtype_bytes)
        if widths.size == 0:
            return np.full(widths.shape, np.nan)
        lowest, highest = int(widths.min()), int(widths.max())
        if lowest == highest:  # the usual case: one float, no per-element work
            return self._peak_for_width(lowest)
        peaks = {width: self._peak_for_width(width) for width in np.unique(widths).tolist()}
        return np.select([widths == width for width in peaks], list(peaks.values()), np.nan)

    def _peak_for_width(self, width: int) -> float:
        if width == 1 and self.peak_fp8_flops_per_s is not None:
            return self.peak_fp8_flops_per_s
        if width == 4:
            if self.peak_fp32_flops_per_s is None:
                raise ArchscaleInputError(self._missing_peak("fp32", "peak_fp32_flops_per_s", "float32"))
            return self.peak_fp32_flops_per_s
        peak = self.peak_bf16_flops_per_s if self.peak_bf16_flops_per_s is not None else self.peak_fp16_flops_per_s
        if peak is None:
            raise ArchscaleInputError(self._missing_peak("bf16", "peak_bf16_flops_per_s", "bfloat16"))
        return peak

    def _missing_peak(self, label: str, field_name: str, dtype: str) -> str:
        dtypes = {"peak_fp32_flops_per_s": "float32", "peak_bf16_flops_per_s": "bfloat16",
                  "peak_fp16_flops_per_s": "float16"}  # fmt: skip
        known = [dtypes[f] for f in PEAK_FIELDS if f in dtypes and getattr(self, f) is not None]
        fixes = [f"run with --dtype {' or '.join(known)}"] if known else []
        fixes.append(f"probe it with `archscale probe --dtype {dtype}`" if self.measured else f"add {field_name}")
        return (
            f"{self.display_name} ({self.name}) has no {label} peak ({field_name}) in its hardware entry, "
            f"needed for a {dtype} architecture: {', or '.join(fixes)}"
        )


def _normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


# ---- validation shared by the datasheet table and probe files ----
_REQUIRED_NUMBERS = ("hbm_bandwidth_bytes_per_s", "memory_bytes")
_INTERCONNECT_NUMBERS = ("interconnect_bandwidth_bytes_per_s", "interconnect_latency_s")
_KNOWN_KEYS = {"display_name", "aliases", "sources", "measured", "calibration", "metadata", "sm_count", "interconnect",
               "machine_reference", *_REQUIRED_NUMBERS, *PEAK_FIELDS, *_INTERCONNECT_NUMBERS}  # fmt: skip


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive(value, where: str) -> float:
    if not _is_number(value):
        raise ArchscaleInputError(f"{where} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ArchscaleInputError(f"{where} must be a positive finite number, got {value!r}")
    return value


def _hardware_from_table(key: str, spec, origin: str) -> Hardware:
    """A `Hardware` from one TOML table, with one-line errors naming `origin` ([key] in a file)."""
    where = f"{origin}: [{key}]"
    if not isinstance(spec, dict):
        raise ArchscaleInputError(f"{origin}: '{key}' must be a table ([{key}] with the hardware's fields)")
    unknown = sorted(set(spec) - _KNOWN_KEYS)
    if unknown:
        raise ArchscaleInputError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KNOWN_KEYS))})"
        )
    for name in ("display_name", *_REQUIRED_NUMBERS, "sm_count"):
        if name not in spec:
            raise ArchscaleInputError(f"{where}: missing required field {name}")
    if not isinstance(spec["display_name"], str) or not spec["display_name"].strip():
        raise ArchscaleInputError(f"{where}.display_name must be a non-empty string")
    numbers = {name: _positive(spec[name], f"{where}.{name}") for name in _REQUIRED_NUMBERS}
    sm_count = spec["sm_count"]
    if not isinstance(sm_count, int) or isinstance(sm_count, bool) or sm_count < 1:
        raise ArchscaleInputError(f"{where}.sm_count must be a positive integer, got {sm_count!r}")
    peaks = {name: _positive(spec[name], f"{where}.{name}") for name in PEAK_FIELDS if name in spec}
    if not peaks:
        raise ArchscaleInputError(f"{where}: missing required field: at least one of {', '.join(PEAK_FIELDS)}")
    aliases = spec.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ArchscaleInputError(f"{where}.aliases must be a list of strings")
    measured = spec.get("measured", False)
    if not isinstance(measured, bool):
        raise ArchscaleInputError(f"{where}.measured must be true or false, got {measured!r}")
    links = {name: _positive(spec[name], f"{where}.{name}") for name in _INTERCONNECT_NUMBERS if name in spec}
    if len(links) == 1:
        raise ArchscaleInputError(f"{where}: give both {' and '.join(_INTERCONNECT_NUMBERS)}, or neither")
    if not isinstance(spec.get("interconnect", ""), str):
        raise ArchscaleInputError(f"{where}.interconnect must be a string (the link's name)")
    for table in ("sources", "metadata"):
        if not isinstance(spec.get(table, {}), dict):
            raise ArchscaleInputError(f"{where}.{table} must be a table")
    reference = spec.get("machine_reference")
    if reference is not None:
        if not isinstance(reference, dict) or set(reference) != {"gemm_s", "stream_s"}:
            raise ArchscaleInputError(f"{where}.machine_reference must be a table of gemm_s and stream_s (seconds)")
        reference = tuple(_positive(reference[k], f"{where}.machine_reference.{k}") for k in ("gemm_s", "stream_s"))
    return Hardware(
        name=key,
        display_name=spec["display_name"],
        peak_bf16_flops_per_s=peaks.get("peak_bf16_flops_per_s"),
        peak_fp16_flops_per_s=peaks.get("peak_fp16_flops_per_s"),
        peak_fp32_flops_per_s=peaks.get("peak_fp32_flops_per_s"),
        peak_fp8_flops_per_s=peaks.get("peak_fp8_flops_per_s"),
        interconnect_bandwidth_bytes_per_s=links.get("interconnect_bandwidth_bytes_per_s"),
        interconnect_latency_s=links.get("interconnect_latency_s"),
        interconnect=spec.get("interconnect", ""),
        sm_count=sm_count,
        aliases=tuple(aliases),
        sources=dict(spec.get("sources", {})),
        measured=measured,
        calibration_priors=check_engine_tables(spec.get("calibration", {}), f"{where}.calibration"),
        metadata=dict(spec.get("metadata", {})),
        machine_reference=reference,
        **numbers,
    )


def load_hardware_file(path: str | Path, name: str | None = None) -> Hardware:
    """The hardware entry of a TOML file in the format of data/hardware.toml (as `archscale probe` writes it):
    its only table, or the table `name` when it holds several."""
    path = Path(path).expanduser()
    raw = read_toml(path, "hardware file")
    if not raw:
        raise ArchscaleInputError(f"{path}: no hardware table in the file (expected [<name>] with its fields)")
    if name is None:
        if len(raw) > 1:
            raise ArchscaleInputError(f"{path} holds {len(raw)} hardware tables ({', '.join(raw)}): pick one by name")
        name = next(iter(raw))
    elif name not in raw:
        raise ArchscaleInputError(f"{path} has no hardware table [{name}] (it has: {', '.join(raw)})")
    return _hardware_from_table(name, raw[name], str(path))


def default_probe_path() -> Path:
    """Where `archscale probe` writes this machine's entry: $XDG_CACHE_HOME/archscale/local.toml
    (~/.cache when XDG_CACHE_HOME is unset or not absolute)."""
    cache_home = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(cache_home) if cache_home and os.path.isabs(cache_home) else Path.home() / ".cache"
    return root / "archscale" / "local.toml"


def resolve_hardware(gpu: str | None, hardware_file: str | Path | None) -> Hardware:
    """Exactly one of: a datasheet GPU by name, "local" (the probe file of this machine), or a hardware file."""
    if gpu is not None and hardware_file is not None:
        raise ArchscaleInputError("give either --gpu or --hardware, not both")
    if gpu is None and hardware_file is None:
        raise ArchscaleInputError(
            "name the hardware: --gpu NAME (see `archscale gpus`; `local` = this machine's probe) "
            "or --hardware FILE.toml (written by `archscale probe`)"
        )
    if hardware_file is not None:
        return load_hardware_file(hardware_file)
    if _normalize(gpu) == LOCAL_NAME:
        path = default_probe_path()
        if not path.exists():
            raise ArchscaleInputError(f"no probe of this machine yet: run `archscale probe` (looked for {path})")
        return load_hardware_file(path)
    return get_gpu(gpu)


# ---- the datasheet table ----
@cache
def _hardware_table() -> dict[str, Hardware]:
    path = DATA_DIR / "hardware.toml"
    return {key: _hardware_from_table(key, spec, str(path)) for key, spec in read_toml(path, "hardware file").items()}


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
