"""Batch-size sweeps: measure every (config × batch size × lengths) point on an engine, next to its prediction.

Each point is a pure function of its `SweepPoint` (`run_point`): the same point gives the same kind of row
wherever it runs, in this process (`run_sweep`) or as a Ray task (`harness.sweep.ray_fanout`). The driver alone touches the
results file: it skips keys already there (`plan_sweep`, resume), appends one whole JSON line per finished point
(`SweepRecorder`, the one path both runners share; `harness.sweep.results_io`), and records a failure or an OOM as a row
with that status instead of stopping. Rows carry the key, the measurement, the perfmodel's prediction for the same
point and hardware, the engine options, and the run metadata. Schema: results/README.md.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import itertools
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from harness.engines.base import EngineOptions, Workload
from perfmodel.arch import ARCH_FIELDS, DTYPE_BYTES, Arch
from perfmodel.errors import ArchscaleInputError
from perfmodel.hardware import Hardware

KEY_FIELDS = ("config", "shape_hash", "engine", "device", "dtype", "attention", "batch_size", "input_len", "output_len")


def shape_hash(arch: Arch) -> str:
    """10 hex digits identifying the shape (every Arch field but the name and the dtype)."""
    shape = {f: getattr(arch, f) for f in ARCH_FIELDS if f not in ("name", "dtype_bytes")}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class SweepPoint:
    arch: Arch
    engine: str
    workload: Workload
    options: EngineOptions
    hardware: Hardware | None = None  # what the prediction is made for; None: no prediction
    calibration_file: str | None = None  # `archscale calibrate` output for the prediction; None: the priors
    engine_version: str | None = None  # the vLLM/SGLang release that serves it: its scheduling policy is predicted

    def key(self) -> tuple:
        return tuple(self.key_dict().values())

    def key_dict(self) -> dict:
        return {
            "config": self.arch.name,
            "shape_hash": shape_hash(self.arch),
            "engine": self.engine,
            "device": self.options.device,
            "dtype": self.options.dtype,
            "attention": self.options.attention,
            "batch_size": self.workload.batch_size,
            "input_len": self.workload.input_len,
            "output_len": self.workload.output_len,
        }

    def label(self) -> str:
        w = self.workload
        return f"{self.arch.name} b={w.batch_size} in={w.input_len} out={w.output_len}"


# The orders a sweep can measure its grid in (`--order`). config: config → lengths → batch size, each config's curve
# fills in first. interleaved: lengths → batch size → config, the configs of one workload back to back, so a
# comparison of configs sees one machine state and a shared machine's drift moves whole workloads, not one config.
POINT_ORDERS = ("config", "interleaved")


def build_points(archs, *, batch_sizes, input_lens, output_lens, engine: str, options: EngineOptions,
                 hardware: Hardware | None, calibration_file: str | None = None, engine_version: str | None = None,
                 order: str = "config") -> list[SweepPoint]:  # fmt: skip
    """The grid, in one of POINT_ORDERS."""
    names = [a.name for a in archs]
    if len(set(names)) != len(names):
        raise ArchscaleInputError(f"two configs share a name ({', '.join(names)}): rename a config folder")
    if order not in POINT_ORDERS:
        raise ArchscaleInputError(f"unknown sweep order '{order}' (one of {', '.join(POINT_ORDERS)})")
    grid = itertools.product(archs, input_lens, output_lens, batch_sizes)
    if order == "interleaved":
        grid = ((arch, i, o, b) for i, o, b, arch in itertools.product(input_lens, output_lens, batch_sizes, archs))
    return [
        SweepPoint(
            arch, engine, Workload(batch, input_len, output_len), options, hardware, calibration_file, engine_version
        )
        for arch, input_len, output_len, batch in grid
    ]


def predict_point(point: SweepPoint) -> tuple[dict | None, str | None]:
    """The perfmodel's prediction for the point (arch at the engine's dtype), or None and why not."""
    from perfmodel.predict import predict

    if point.hardware is None:
        return None, "no hardware entry for this device (run `archscale probe` and pass --hardware)"
    arch = replace(point.arch, dtype_bytes=DTYPE_BYTES[point.options.dtype])
    w = point.workload
    try:
        prediction = predict(arch, point.hardware, batch_size=w.batch_size, input_len=w.input_len,
                             output_len=w.output_len, engine=point.engine, calibration_file=point.calibration_file,
                             max_prefill_tokens=point.options.max_prefill_tokens,
                             engine_version=point.engine_version)  # fmt: skip
    except ArchscaleInputError as exc:
        return None, str(exc)
    row = prediction.to_dict()
    row.pop("breakdown", None)
    return row, None


def run_point(point: SweepPoint) -> dict:
    """Measure and predict one point; never raises for a failing point (the row says what failed)."""
    from harness.engines import get_engine

    started = time.perf_counter()
    before = _machine_reference(point)
    try:
        measurement = get_engine(point.engine).run(point.arch, point.workload, point.options).to_dict()
    except ArchscaleInputError:
        raise  # a mistake in the sweep's own arguments: stop, do not write error rows for every point
    except Exception as exc:  # a failing point is a row, and the sweep goes on
        measurement = failure(exc)
    after = _machine_reference(point) if before and measurement["status"] == "ok" else None
    if after:
        measurement |= before.mean_with(after).row_fields()
    return point_row(point, measurement, started)


def _machine_reference(point: SweepPoint):
    """harness.sweep.machine_reference's times on the point's device, for our engine (an engine in a process of its own
    holds the device while it runs); None where it cannot be measured."""
    if point.engine != "torch":
        return None
    from harness.sweep.machine_reference import measure_reference

    try:
        return measure_reference(point.options.device)
    except Exception:  # e.g. no memory left on the GPU: the row goes without it
        return None


def failure(exc: BaseException, status: str = "error") -> dict:
    """The measurement of a point that failed: its status and the first line of what went wrong."""
    return {"status": status, "message": f"{type(exc).__name__}: {exc}".splitlines()[0][:500]}


def arch_fields(arch: Arch) -> dict:
    """A row's `arch`: the shape (no name, no dtype: the row has its own) and the derived counts a reader wants."""
    return {f: getattr(arch, f) for f in ARCH_FIELDS if f not in ("name", "dtype_bytes")} | {
        "n_params_non_embedding": arch.n_params_non_embedding,
        "n_params_total": arch.n_params_total,
        "mlp_attn_ratio": arch.mlp_attn_ratio,
        "gqa_group": arch.gqa_group,
    }


def point_row(point: SweepPoint, measurement: dict, started: float | None) -> dict:
    """The row of a point (without the run metadata): key, measurement, prediction, shape and options.
    `started`: its time.perf_counter() at the start (None: unknown, as for a worker lost mid-point)."""
    predicted, why_not = predict_point(point)
    return {
        **point.key_dict(),
        **measurement,
        "predicted": predicted,
        "point_finished_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **({"prediction_unavailable": why_not} if why_not else {}),
        "hardware": point.hardware.name if point.hardware else None,
        "arch": arch_fields(point.arch),
        "options": point.options.to_dict(),
        "point_wall_s": None if started is None else time.perf_counter() - started,
    }


@dataclass
class SweepPlan:
    todo: list[SweepPoint]
    done: int
    warning: str | None


def plan_sweep(points: list[SweepPoint], out, dry_run: bool = False) -> SweepPlan:
    """Which points are still to measure; sets aside a torn last line unless `dry_run` (which changes nothing).
    A corrupt line elsewhere is an error."""
    from harness.sweep.results_io import prepare_resume

    rows, warning = prepare_resume(out, set_aside=not dry_run)
    finished = {tuple(row.get(f) for f in KEY_FIELDS) for row in rows}
    todo = [p for p in points if p.key() not in finished]
    return SweepPlan(todo=todo, done=len(points) - len(todo), warning=warning)


def run_sweep(todo: list[SweepPoint], out, metadata: dict, *, progress: bool = True, on_row=None) -> list[dict]:
    """Measure `todo` in this process, appending each row to `out` as it finishes; returns the new rows. Our engine's
    points run in order; an external engine's are served config by config, one engine each (`engine_groups`)."""
    with SweepRecorder(out, metadata, len(todo), progress=progress, on_row=on_row) as recorder:
        for group in engine_groups(todo):
            recorder.running(group[0].label())
            for row in run_group(group):
                recorder.finish(row)
    return recorder.rows


def engine_groups(points: list[SweepPoint]) -> list[list[SweepPoint]]:
    """The points one engine serves: an external engine's points of one config and engine setup together (in the
    order their first point comes, the points in their own order), whatever the sweep's order, since building the
    engine is the costly part; our engine's points one by one, in order."""
    from harness.engines import EXTERNAL_ENGINES

    groups: dict[object, list[SweepPoint]] = {}
    for k, point in enumerate(points):
        if point.engine in EXTERNAL_ENGINES:
            setup = (point.engine, point.arch, json.dumps(point.options.to_dict(), sort_keys=True))
            groups.setdefault(setup, []).append(point)
        else:
            groups[k] = [point]
    return list(groups.values())


def run_group(points: list[SweepPoint]):
    """Rows of points one engine serves, each as it finishes (`run_point` for a group of one). A served point's
    `point_wall_s` is its own time in the engine (warm-up and timed runs), plus the engine's build for the first."""
    if len(points) == 1:
        yield run_point(points[0])
        return
    from harness.engines import get_engine

    engine, first = get_engine(points[0].engine), points[0]
    started, done = time.perf_counter(), 0
    measurements = engine.run_points(first.arch, [p.workload for p in points], first.options)
    try:
        with contextlib.closing(measurements):  # stopped early (an error, Ctrl-C): the engine is killed at once
            for point, measurement in zip(points, measurements, strict=True):  # one per point, or an error
                row = point_row(point, measurement.to_dict(), started)
                if row.get("engine_point_s") is not None:  # its own time in the engine (the next ran meanwhile)
                    fresh = row.get("engine_points_before") == 0
                    row["point_wall_s"] = row["engine_point_s"] + ((row.get("engine_init_s") or 0.0) if fresh else 0.0)
                yield row
                started, done = time.perf_counter(), done + 1
    except ArchscaleInputError:
        raise  # a mistake in the sweep's own arguments: stop, do not write error rows for every point
    except Exception as exc:  # the adapter itself failed: the points it did not serve are rows saying so
        for point in points[done:]:
            yield point_row(point, failure(exc), started)


class SweepRecorder:
    """The driver's one path for a finished point, whichever runner measured it: add the run metadata, append the
    row to `out` as one whole line, keep it, report it (a rich progress bar with the running point, each finished
    point printed with measured vs predicted tok/s; or `on_row` alone, as with --quiet)."""

    def __init__(self, out, metadata: dict, total: int, *, progress: bool = True, on_row=None):
        self.out, self.metadata, self.total, self.on_row = out, metadata, total, on_row
        self.enabled, self.progress, self.task = progress, None, None
        self.rows: list[dict] = []

    def __enter__(self):
        if self.enabled and self.total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), transient=True)  # fmt: skip
            self.progress.__enter__()
            self.task = self.progress.add_task("sweep", total=self.total)
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.__exit__(*exc)

    def running(self, description: str) -> None:
        """What is being measured now (the bar's label)."""
        if self.progress:
            self.progress.update(self.task, description=description)

    def finish(self, row: dict, metadata: dict | None = None) -> dict:
        """Append a finished point's row with the run metadata (`metadata` overrides fields of it, e.g. the worker's
        host and GPU) and report it; returns the row as written."""
        from harness.sweep.results_io import append_jsonl

        row = {**row, "metadata": {**self.metadata, **(metadata or {})}}
        steps = row.pop("scheduler_steps", None)
        if steps:  # an engine's every step: beside the sweep, keyed like the row, so the row stays a summary
            append_jsonl(steps_path(self.out), {**{k: row[k] for k in KEY_FIELDS}, "runs": steps})
        append_jsonl(self.out, row)
        self.rows.append(row)
        if self.progress:
            self.progress.console.print(format_row(row), highlight=False)
            self.progress.advance(self.task)
        if self.on_row:
            self.on_row(row)
        return row


def steps_path(out) -> Path:
    """Where a sweep's per-step engine traces go: steps/<name> beside it (results/sweeps/steps/vllm-cpu.jsonl), out of
    the sweep folder's own *.jsonl."""
    out = Path(out)
    return out.parent / "steps" / out.name


def format_row(row: dict) -> str:
    head = f"{row['config']} b={row['batch_size']} in={row['input_len']} out={row['output_len']}"
    if row["status"] != "ok":
        return f"{head}: {row['status']} ({row.get('message', '')})"
    predicted = row.get("predicted")
    text = f"{head}: measured {row['output_tokens_per_s']:,.1f} out tok/s"
    if predicted:
        ratio = predicted["output_tokens_per_s"] / row["output_tokens_per_s"]
        text += f", predicted {predicted['output_tokens_per_s']:,.1f} ({ratio:.2f}x)"
    return text
