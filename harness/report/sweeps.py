"""The sweeps section of `archscale report` (harness/report/build.py): every committed study — a sweep file and its
further passes (<name>-pass<N>.jsonl), or published rows as sweep rows — re-predicted with the current model, with
the engine's priors and with the calibration fitted on it (harness.calibrate.compare), as error, ranking and ratio tables."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from harness.report.markdown import CALIBRATION_FILES, SWEEP_FILES, md_table, pct, reading, runs_lines
from perfmodel.errors import ArchscaleInputError


def sweep_section(ctx) -> list[str]:
    from harness.sweep.rows import pass_of

    lines = ["", "## Sweeps: measured against the model", ""]
    files = ctx.files(SWEEP_FILES)
    if not files:
        return lines + ["No sweep has been committed yet (`archscale sweep CONFIG... --out "
                        "results/sweeps/<engine>-<machine>.jsonl` measures one).", ""]  # fmt: skip
    lines += ["Every measured point is predicted again by the current model (`archscale compare`), with the engine's "
              "priors for the hardware entry (uncalibrated) and with the calibration fitted on these rows; error = "
              "100·(predicted/measured − 1). Train / holdout: the configs (or batch sizes, or workloads) the "
              "calibration was fitted on / held out, for both models. A point measured in several passes is compared "
              "at its median. Per-point tables: `archscale compare`'s output.", ""]  # fmt: skip
    studies: dict[str, list[Path]] = {}  # a sweep's passes (<name>-pass<N>.jsonl) are one study
    for path in files:
        studies.setdefault(str(path.with_name(pass_of(path)[0])), []).append(path)
    for paths in studies.values():  # the first pass (no suffix) first: it names the machine
        lines += _sweep_file(ctx, sorted(paths, key=lambda p: pass_of(p)[1]))
    return lines


def _predicted_for(ctx, sweep: Path, data) -> tuple:
    """(Hardware, its file or None, calibration file or None) to re-predict a sweep with: hardware/<machine>.toml
    (the sweep being <engine>-<machine>.jsonl, its first pass), else the datasheet GPU the rows name; the calibration
    of that entry and engine that was fitted on this sweep file (in calibration/*.toml or published/calibration.toml),
    else calibration/<machine>.toml."""
    from perfmodel.calibration import read_toml
    from perfmodel.hardware import get_gpu, list_gpus, load_hardware_file

    slug = sweep.stem.removeprefix(f"{data.engine}-")
    hw_file = ctx.root / "hardware" / f"{slug}.toml"
    names = {r["hardware"] for r in data.rows if r.get("hardware")}
    if hw_file.is_file():
        hardware = load_hardware_file(hw_file)
    elif len(names) == 1 and next(iter(names)) in {g.name for g in list_gpus()}:
        hardware, hw_file = get_gpu(next(iter(names))), None
    else:
        return None, None, None
    candidates = []
    for path in ctx.files(CALIBRATION_FILES):
        tables = read_toml(path, "calibration file").get(hardware.name)
        entry = tables.get(data.engine) if isinstance(tables, dict) else None
        if isinstance(entry, dict):
            fitted_on = {Path(p).name for p in entry.get("sweep_sha256", {})}
            candidates.append((sweep.name not in fitted_on, path.stem != slug, path))
    return hardware, hw_file, min(candidates)[2] if candidates else None


def _sweep_file(ctx, paths: list[Path]) -> list[str]:
    """One study: a sweep file and its further passes (measured again, later, into <name>-pass<N>.jsonl)."""
    from harness.calibrate.compare import compare, fit_holdout
    from harness.sweep.results_io import read_jsonl
    from harness.sweep.rows import load_sweeps
    from perfmodel.calibration import engine_priors, get_calibration

    path = paths[0]
    rows = [row for p in paths for row in read_jsonl(p)]
    lines = [f"### {' + '.join(ctx.link(p) for p in paths)}", ""]
    if not any(r.get("status") == "ok" for r in rows):
        return lines + [f"No measured point (status ok) among its {len(rows)} rows: not compared.", ""]
    data = load_sweeps(paths)
    slug = path.stem.removeprefix(f"{data.engine}-")  # the machine, as in hardware/<machine>.toml
    with reading(path, "archscale sweep"):
        batches = sorted({r["batch_size"] for r in data.rows})
        shapes = sorted({(r["input_len"], r["output_len"]) for r in data.rows})
        not_ok = sum(r.get("status") != "ok" for r in rows)
        lines += [f"{len(data.rows)} measured points ({len(rows)} rows, {not_ok} not ok) on {data.machine}, "
                  f"engine {data.engine}: configs {', '.join(data.configs)}; batch {', '.join(map(str, batches))}; "
                  f"(in, out) {', '.join(f'({i}, {o})' for i, o in shapes)}.", "", *runs_lines(rows)]  # fmt: skip
    hardware, hw_file, cal_file = _predicted_for(ctx, path, data)
    if hardware is None:
        return lines + [f"No hardware entry to predict for (looked for `hardware/{slug}.toml` and a datasheet GPU "
                        "named in the rows): not compared.", ""]  # fmt: skip
    where = ctx.link(hw_file) if hw_file else "the datasheet (perfmodel/data/hardware.toml)"
    # Both models are split by what the calibration held out, so that their held-out errors compare like for like.
    holdout = {} if cal_file is None else fit_holdout(cal_file, hardware.name, data.engine, data)
    variants = [("uncalibrated", None)] + ([("calibrated", cal_file)] if cal_file is not None else [])
    lines += [f"Predicted for hardware entry `{hardware.name}` ({hardware.display_name}) from {where}; calibration: "
              + (f"{ctx.link(cal_file)} [{hardware.name}.{data.engine}]." if cal_file else
                 "none committed for it, so uncalibrated only."), ""]  # fmt: skip
    comparisons = {}
    for label, cal in variants:
        calibration = (
            engine_priors(hardware, data.engine) if cal is None else get_calibration(hardware, data.engine, cal)
        )
        try:
            comparisons[label] = compare(data, hardware, calibration, calibration_label=label, **holdout)
        except ArchscaleInputError as exc:  # e.g. every point infeasible on that entry: say so, go on
            return lines + [f"Not compared ({label}): {exc}.", ""]
    first = next(iter(comparisons.values()))
    if first.excluded:
        lines += [f"Excluded from the comparison ({len(first.excluded)}): " + "; ".join(first.excluded), ""]
    if first.n_repeated_points:
        lines += [f"{first.n_repeated_points} points measured more than once (medians compared): their "
                  f"measurements spread by median {pct(first.median_measured_spread_pct)}, max "
                  f"{pct(first.max_measured_spread_pct)} of output tok/s.", ""]  # fmt: skip
    if first.drift is not None:
        from harness.sweep.drift import format_drift

        lines += [format_drift(first.drift) + ".", ""]
    lines += _error_table(comparisons)
    for label, c in comparisons.items():
        r = c.ranking
        rho = "n/a" if r.mean_spearman is None else f"{r.mean_spearman:.2f} over {r.n_spearman_groups} workloads"
        apart = ("" if r.n_pairs_apart is None else f"; of the {r.n_pairs_apart} pairs whose measurements do not "
                 f"overlap, {r.n_pairs_apart_right} right, every one at {r.n_groups_right_apart} of the {r.n_groups_apart} "
                 "workloads that have one")  # fmt: skip
        lines.append(f"- Ranking of configs by output tok/s, {label}: order fully right at {r.n_groups_right} of "
                     f"{r.n_groups} workloads, {r.n_pairs_right} of {r.n_pairs} pairs right, mean Spearman {rho}"
                     f"{apart}.")  # fmt: skip
    lines += ["", *_ratio_table(comparisons)]
    machines = {slug} | {p.stem for p in ctx.files("hardware/*.toml")}
    extra = [p for p in ctx.files("compare/*") if _owner(p.name, machines) == slug]
    compare_dir = ctx.root / "compare"
    extra += [  # a study's folders (drift-corrected/, no-curve/): their reports, calibrations and plots
        p for p in ctx.files("compare/*/**/*") if _owner(p.relative_to(compare_dir).parts[0], machines) == slug
    ]
    if extra:
        lines += ["Committed `archscale calibrate` / `compare` outputs for this machine (as their run wrote them, with "
                  "the model of that time): "
                  + ", ".join(ctx.link(p) for p in extra), ""]  # fmt: skip
    return lines


def _owner(name: str, machines: set[str]) -> str | None:
    """The machine a compare/ output named <machine>-... belongs to: the longest machine name it starts with, so that
    cpu-epyc-2c-interleaved-calibrated.txt is not also cpu-epyc-2c's."""
    owners = [machine for machine in machines if name.startswith(f"{machine}-")]
    return max(owners, key=len) if owners else None


def _error_table(comparisons: dict) -> list[str]:
    """Median / max |error| per (split, metric), one column group per model (uncalibrated, calibrated)."""
    from harness.calibrate.compare import METRICS

    names = dict(METRICS)
    keyed = {label: {(s.split, s.metric): s for s in c.summary} for label, c in comparisons.items()}
    header = ["split", "metric", "points"]
    header += [f"{h}, {label}" for label in keyed for h in ("median |err|", "max |err|", "median err")]
    body = []
    for (split, metric), first in next(iter(keyed.values())).items():
        if not first.n_points:  # a metric these rows do not measure (e.g. written by an older sweep)
            continue
        row = [split, names[metric], first.n_points]
        for summary in keyed.values():
            s = summary[(split, metric)]
            signed = "-" if s.median_error_pct is None else f"{s.median_error_pct:+.1f}%"
            row += [pct(s.median_abs_error_pct), pct(s.max_abs_error_pct), signed]
        body.append(row)
    return md_table(header, body)


def _span(values) -> str:
    values = list(values)
    return f"{min(values):.2f}–{max(values):.2f}" if values else "-"


def _ratio_table(comparisons: dict) -> list[str]:
    """Per config: measured and predicted ratio to the baseline config (range) and the ratio's |error|."""
    from harness.calibrate.compare import error_stats

    ratios = {label: defaultdict(list) for label in comparisons}
    for label, c in comparisons.items():
        for x in c.pairs.ratios:
            ratios[label][x.config].append(x)
    configs = sorted({config for by_config in ratios.values() for config in by_config})
    if not configs:
        return ["No throughput ratio to a baseline config (one config only, or none at a shared workload).", ""]
    body = []
    for config in configs:
        xs = next(by_config[config] for by_config in ratios.values() if config in by_config)
        row = [config, len(xs), _span(x.measured_ratio for x in xs)]
        for by_config in ratios.values():
            median, largest, _ = error_stats([y.ratio_error_pct for y in by_config.get(config, [])])
            row += [_span(y.predicted_ratio for y in by_config.get(config, [])), f"{pct(median)} / {pct(largest)}"]
        body.append(row)
    header = ["config", "points", "measured x"]
    header += [f"{h}, {label}" for label in comparisons for h in ("predicted x", "|ratio err| median / max")]
    base = next(iter(comparisons.values())).pairs.baseline
    return [f"Throughput ratio of each config to `{base}` (output tok/s at the same batch, in, out):", "",
            *md_table(header, body)]  # fmt: skip
