"""Sweep rows as a data set: load and check sweep files, and re-predict their points under any calibration.

`load_sweeps` reads JSONL files written by `archscale sweep`, keeps the measured rows (status ok, output tokens/s
present; prefill time and TPOT where the engine has them: our engine's static waves do, vLLM's and SGLang's continuous
batching and published figures give the throughput alone; rows from before per-request TTFT have their `ttft_s`
read as the prefill time), and lists what it set aside and why; it refuses to mix hardware or engines in one data
set (a fit or a comparison across two machines means nothing). A point measured more than once — in several passes
of a sweep, each pass its own file, or published several times — becomes one row: the median of each measured
field, with `measurements` (how many) and `measured_range` (the lowest and highest output tokens/s), so that a
comparison can tell model error from the spread between measurements taken at different times. `predict_rows` runs
the perfmodel on every kept point in vectorized `estimate` calls — the architecture at the dtype the engine ran, its
workload, the given hardware and calibration, with the scheduling policy of the engine release that measured it
(perfmodel/engine_releases.py; one call per release policy) — so calibrate and compare judge the current model, not
the prediction stored when the row was written.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from harness.sweep.drift import DriftCorrection, DriftSummary, drift_summary, fit_drift_correction
from harness.sweep.machine_reference import REFERENCE_FIELDS
from perfmodel.arch import DTYPE_BYTES
from perfmodel.arch_batch import ARRAY_FIELDS, ArchBatch
from perfmodel.calibration import Calibration
from perfmodel.engine_releases import RELEASE_ENGINES, release_policy
from perfmodel.errors import ArchscaleInputError
from perfmodel.estimator import Estimate, estimate
from perfmodel.hardware import Hardware

MEASURED = ("output_tokens_per_s",)  # every kept row has these
PHASES = ("prefill_time_s", "tpot_s")  # our engine's rows have these too (see `has_phases`)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def machine_of(row: dict) -> str:
    """What the row was measured on: the GPU's name, or the CPU model and core count."""
    meta = row.get("metadata") or {}
    if meta.get("gpu_name") and row.get("device") == "cuda":
        return str(meta["gpu_name"])
    return f"{meta.get('cpu_model') or 'unknown CPU'} ({meta.get('cpu_count_logical') or '?'} CPUs)"


@dataclass
class SweepData:
    rows: list[dict]  # measured rows (status ok), in file order
    excluded: list[str] = field(default_factory=list)  # one line per row set aside, with the reason
    sha256: dict[str, str] = field(default_factory=dict)  # file -> SHA-256 of its bytes
    engine: str = ""
    machine: str = ""
    drift: DriftSummary | None = None  # how much of the scatter between passes the machine reference explains
    drift_correction: DriftCorrection | None = None  # set when the measurements were brought to one machine state

    @property
    def configs(self) -> list[str]:
        return sorted({row["config"] for row in self.rows})


def has_phases(row: dict) -> bool:
    """Does the row time the prefill of a wave and the decode step (our engine), or only the whole run?"""
    return all(row.get(key) is not None for key in PHASES)


# What a split can be by: the key's name in the calibration file's train_<name> / holdout_<name> lists.
SPLIT_KEYS = {"config": "configs", "batch_size": "batch_sizes", "workload": "workloads"}


def workload_of(row: dict) -> str:
    """A row's workload as the split names it: "INPUT/OUTPUT" tokens per request."""
    return f"{row['input_len']}/{row['output_len']}"


def split_value(row: dict, by: str):
    return workload_of(row) if by == "workload" else row[by]


# A sweep measured in several passes: <out>, then <out stem>-pass2<suffix>, <out stem>-pass3<suffix>, ...
PASS_SUFFIX = re.compile(r"-pass(\d+)$")


def pass_paths(out: Path, passes: int) -> list[Path]:
    """The files of `passes` passes over a grid: `out`, then <out>-pass2.jsonl, <out>-pass3.jsonl, ..."""
    return [out] + [out.with_name(f"{out.stem}-pass{k}{out.suffix}") for k in range(2, passes + 1)]


def pass_of(path: Path) -> tuple[str, int]:
    """(the stem of the study's first pass, this file's pass number) of a file `pass_paths` names."""
    match = PASS_SUFFIX.search(path.stem)
    return (path.stem[: match.start()], int(match.group(1))) if match else (path.stem, 1)


# What identifies a measured point (the sweep's resume key), and the fields whose median a merged point reports.
POINT_KEY = ("config", "shape_hash", "engine", "device", "dtype", "attention", "batch_size", "input_len", "output_len")
# What --drift-correct brings to one machine state: the measured figures, all but the machine reference itself.
CORRECTED_FIELDS = ("output_tokens_per_s", "total_tokens_per_s", "ttft_s", "ttft_p50_s", "ttft_p99_s",
                    "prefill_time_s", "tpot_s", "total_time_s")  # fmt: skip
MERGED_FIELDS = CORRECTED_FIELDS + REFERENCE_FIELDS


def engine_version_of(row: dict) -> str | None:
    """The engine release a row was measured with (vLLM/SGLang rows and published rows carry it), or None."""
    return row.get("engine_version") or (row.get("metadata") or {}).get("engine_version")


def _same_measurement(row: dict) -> tuple:
    """What repeats of one measurement share: the point (POINT_KEY), the options it ran with and the engine's
    version (a run with another prefill budget, or another engine build, is another measurement)."""
    version = engine_version_of(row)
    options = json.dumps(row.get("options") or {}, sort_keys=True, default=str)
    return (*(row.get(k) for k in POINT_KEY), options, version)


def group_repeats(rows: list[dict]) -> list[list[dict]]:
    """The rows of each measurement (`_same_measurement`), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(_same_measurement(row), []).append(row)
    return list(groups.values())


def merge_repeats(rows: list[dict]) -> list[dict]:
    """One row per measurement (`group_repeats`): measured once, the row as it is (`measurements` 1,
    `measured_range` and `measured_values` None); n times, the first row's fields with the median of each
    MERGED_FIELDS field over the repeats that have it, `measurements` n, `measured_range` [min, max] of output
    tokens/s and `measured_values` each measurement's output tokens/s in the order of the files (pass by pass)."""
    merged = []
    for repeats in group_repeats(rows):
        row = {**repeats[0], "measurements": len(repeats), "measured_range": None, "measured_values": None}
        if len(repeats) > 1:
            for key in MERGED_FIELDS:
                values = [r[key] for r in repeats if r.get(key) is not None]
                row[key] = float(np.median(values)) if values else None
            rates = [r["output_tokens_per_s"] for r in repeats]
            row["measured_range"], row["measured_values"] = [min(rates), max(rates)], rates
        merged.append(row)
    return merged


def _label(row: dict) -> str:
    return f"{row.get('config')} b={row.get('batch_size')} in={row.get('input_len')} out={row.get('output_len')}"


def load_sweeps(paths, *, drift_correct: bool = False, probe_state: tuple[float, float] | None = None) -> SweepData:
    """The measured rows of sweep files (one machine, one engine); see the module docstring. `drift_correct`: bring
    every measurement, by its machine reference, to `probe_state` (a hardware entry's machine_reference), else to the
    state typical of the data set, before merging (harness/sweep/drift.py)."""
    from harness.sweep.results_io import check_sweep_files, read_jsonl

    data = SweepData(rows=[])
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ArchscaleInputError(f"sweep file {path} " + ("is a directory" if path.is_dir() else "does not exist"))
        check_sweep_files([path])  # a corrupt row is one line naming file:line and the field
        rows = read_jsonl(path)
        if not rows:
            raise ArchscaleInputError(f"{path}: no rows (an empty sweep file)")
        data.sha256[str(path)] = file_sha256(path)
        for number, row in enumerate(rows, 1):
            if "arch" not in row or "batch_size" not in row or "status" not in row:
                raise ArchscaleInputError(f"{path}:{number}: not a sweep row (no arch/batch_size/status): "
                                          "is this a file written by `archscale sweep`?")  # fmt: skip
            if row.get("status") == "ok" and "prefill_time_s" not in row:
                # Written before TTFT was reported per request: its ttft_s is a full wave's prefill time.
                row["prefill_time_s"], row["ttft_s"] = row.get("ttft_s"), None
            if row["status"] != "ok":
                data.excluded.append(f"{_label(row)}: status {row['status']} ({row.get('message', '')})")
                continue
            if any(row.get(key) is None for key in MEASURED):  # check_sweep_files refused any other bad value
                data.excluded.append(f"{_label(row)}: no {' or '.join(MEASURED)} measured")
                continue
            data.rows.append(row)
    if not data.rows:
        raise ArchscaleInputError("no measured row (status ok) in the sweep files: nothing to fit or compare")
    engines = sorted({row["engine"] for row in data.rows})
    machines = sorted({machine_of(row) for row in data.rows})
    for what, found in (("machines", machines), ("engines", engines)):
        if len(found) > 1:
            raise ArchscaleInputError(f"the sweep files mix {what} ({'; '.join(found)}): calibrate or compare one "
                                      "machine and one engine at a time")  # fmt: skip
    groups = group_repeats(data.rows)  # after the checks: only one machine's measurements are merged
    data.drift = drift_summary(groups)
    if drift_correct:
        data.drift_correction = fit_drift_correction(groups, CORRECTED_FIELDS, probe_state)
        data.rows = [data.drift_correction.apply(row) for row in data.rows]
    data.rows = merge_repeats(data.rows)
    data.engine, data.machine = engines[0], machines[0]
    return data


def arch_batch(rows: list[dict]) -> ArchBatch:
    """The rows' architectures, each at the byte width of the dtype its engine ran."""
    columns = {f: [row["arch"][f] for row in rows] for f in ARRAY_FIELDS if f != "dtype_bytes"}
    columns["dtype_bytes"] = [DTYPE_BYTES[row["dtype"]] for row in rows]
    return ArchBatch(**{f: np.asarray(v, dtype=np.int64) for f, v in columns.items()})


# The scheduling limits vLLM and SGLang report in effect (a row's `engine_config`), under the perfmodel's names.
ENGINE_LIMITS = {"max_num_seqs": ("max_num_seqs", "max_running_requests"),
                 "max_prefill_tokens": ("max_num_batched_tokens", "chunked_prefill_size")}  # fmt: skip


def engine_limits(row: dict) -> dict:
    """The point's max_prefill_tokens and max_num_seqs where the row records them: what the engine reported in effect
    (vLLM/SGLang `engine_config`), else the row's options (our engine's prefill budget; a published row's stated
    limits); absent = the calibration's engine defaults."""
    options, config = row.get("options") or {}, row.get("engine_config") or {}
    limits = {}
    for name, engine_keys in ENGINE_LIMITS.items():
        reported = [config[k] for k in engine_keys if isinstance(config.get(k), int) and config[k] > 0]
        value = reported[0] if reported else options.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            limits[name] = value
    return limits


def release_policy_of(row: dict, gpu_name: str) -> dict:
    """The scheduling policy of the vLLM/SGLang release that measured `row` on `gpu_name` ({} for our engine's rows
    and rows without a version: the calibration's own)."""
    version = engine_version_of(row)
    if row.get("engine") not in RELEASE_ENGINES or version is None:
        return {}
    return release_policy(row["engine"], version, gpu_name)


def predict_rows(rows: list[dict], hardware: Hardware, calibration: Calibration) -> Estimate:
    """The perfmodel's estimate of every row's point, arrays of shape [len(rows)]: one `estimate` call per release
    policy among the rows, put back in row order."""
    policies = [tuple(sorted(release_policy_of(row, hardware.name).items())) for row in rows]
    groups: dict[tuple, list[int]] = {}
    for index, policy in enumerate(policies):
        groups.setdefault(policy, []).append(index)
    parts = [(indices, _predict([rows[i] for i in indices], hardware, replace(calibration, **dict(policy))))
             for policy, indices in groups.items()]  # fmt: skip
    return parts[0][1] if len(parts) == 1 else _in_row_order(parts, len(rows))


def _predict(rows: list[dict], hardware: Hardware, calibration: Calibration) -> Estimate:
    workload = {key: np.asarray([row[key] for row in rows], dtype=np.int64)
                for key in ("batch_size", "input_len", "output_len")}  # fmt: skip
    limits = [engine_limits(row) for row in rows]
    prefill_tokens = [limit.get("max_prefill_tokens") or calibration.max_prefill_tokens for limit in limits]
    num_seqs = [limit.get("max_num_seqs") or calibration.max_num_seqs for limit in limits]
    return estimate(arch_batch(rows), hardware, calibration=calibration, max_prefill_tokens=np.asarray(prefill_tokens),
                    max_num_seqs=np.asarray(num_seqs), **workload)  # fmt: skip


def _in_row_order(parts: list[tuple[list[int], Estimate]], n_rows: int) -> Estimate:
    """One Estimate of [n_rows] arrays from the estimates of groups of rows (their row indices)."""

    def gather(value_of):
        first = np.asarray(value_of(parts[0][1]))
        out = np.empty(n_rows, dtype=first.dtype)
        for indices, part in parts:
            out[indices] = value_of(part)
        return out

    merged = {}
    for f in fields(Estimate):
        value = getattr(parts[0][1], f.name)
        if f.name == "op_classes":  # the same operators in every group
            merged[f.name] = value
        elif isinstance(value, dict):
            merged[f.name] = {key: gather(lambda e, name=f.name, key=key: getattr(e, name)[key]) for key in value}
        else:
            merged[f.name] = gather(lambda e, name=f.name: getattr(e, name))
    return Estimate(**merged)


def measured(rows: list[dict], key: str) -> np.ndarray:
    """The rows' measured `key` (NaN where a row lacks it, e.g. per-request TTFT in rows that predate it)."""
    return np.asarray([np.nan if row.get(key) is None else row[key] for row in rows], dtype=np.float64)
