"""Put what a GPU campaign brought back (harness.campaign.plan) into results/, losing nothing.

Every file is checked before any is written: a results file (kernel points, sweep rows) must be the committed file
with rows added after it, since `run` seeded it from there (so nothing committed is dropped); every new row must carry
the metadata of a commit (a git SHA, not dirty), as must the test log and the probe; a probe or a benchmark baseline
already in results/ is not overwritten. Then each is written atomically to its place and the kernel plot is redrawn from the whole file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.campaign.plan import results_place, test_log_metadata
from perfmodel.errors import ArchscaleInputError


@dataclass(frozen=True)
class Placement:
    source: Path
    target: Path
    what: str  # one line for the summary


def plan_collect(source_dir: Path, results: Path) -> tuple[list[Placement], list[str]]:
    """The files to place and the names left out; raises ArchscaleInputError (nothing written) for any bad file."""
    if not source_dir.is_dir():
        raise ArchscaleInputError(f"{source_dir}: not a folder (give the folder the campaign's files came back in)")
    placements, left_out = [], []
    for source in sorted(source_dir.iterdir()):
        target = results_place(source.name, results) if source.is_file() else None
        if target is None:
            left_out.append(source.name)
            continue
        placements.append(Placement(source, target, _check(source, target)))
    return placements, left_out


def _check(source: Path, target: Path) -> str:
    data = source.read_bytes()
    if source.suffix == ".jsonl":
        return _check_rows(source, target, data)
    if source.suffix == ".txt":
        _check_commit(source, test_log_metadata(data.decode("utf-8", "replace")))
        return "GPU test log" + (" (replaces the earlier one)" if target.exists() else "")
    if target.exists() and target.read_bytes() != data:
        raise ArchscaleInputError(f"{target} exists and differs from {source.name}: remove it first to replace it")
    if source.suffix == ".toml":
        from perfmodel.hardware import load_hardware_file

        # a probe's entry that does not load is one line here, not a broken results/; it names its commit too
        _check_commit(source, load_hardware_file(source).metadata or {})
    else:
        try:
            json.loads(data)
        except ValueError:
            raise ArchscaleInputError(f"{source}: not JSON; not placed (nothing written)") from None
    return "new" if not target.exists() else "unchanged"


def _check_commit(source: Path, meta: dict) -> None:
    if not meta.get("git_sha") or meta.get("git_dirty") is not False:
        raise ArchscaleInputError(f"{source.name}: measured outside a clean commit (git_sha {meta.get('git_sha')}, "
                                  f"dirty {meta.get('git_dirty')}): not placed (nothing written)")  # fmt: skip


def _check_rows(source: Path, target: Path, data: bytes) -> str:
    from harness.sweep.results_io import check_sweep_files, read_jsonl

    committed = target.read_bytes() if target.exists() else b""
    if not data.startswith(committed):
        raise ArchscaleInputError(f"{source.name} does not begin with {target}'s rows: placing it would lose "
                                  "committed rows (nothing written)")  # fmt: skip
    rows = read_jsonl(source)
    if source.name.startswith("torch-"):
        check_sweep_files([source])
    new_rows = rows[len(read_jsonl(target)) :] if committed else rows
    for row in new_rows:
        _check_commit(source, row.get("metadata") or {})
    return f"{len(new_rows)} new rows ({len(rows)} in all)"


def collect(source_dir: Path, results: Path) -> tuple[list[Placement], list[str]]:
    """Check every file, then write each to its place; redraw the kernel plot where kernel points came."""
    from perfmodel.atomic_io import write_atomic

    placements, left_out = plan_collect(source_dir, results)
    for placement in placements:
        placement.target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(placement.target, placement.source.read_bytes())
        if placement.target.name.startswith("gqa_decode-"):
            _redraw_kernel_plot(placement.target)
    return placements, left_out


def _redraw_kernel_plot(kernels_file: Path) -> None:
    from harness.report.kernel_plot import plot_kernel_bench
    from harness.sweep.results_io import read_jsonl

    rows = read_jsonl(kernels_file)
    name = (rows[-1].get("metadata") or {}).get("gpu_name") if rows else None
    plot_kernel_bench(rows, kernels_file.with_suffix(".png"), title=name or kernels_file.stem)
