"""Markdown pieces of `archscale report` (harness/report/build.py): tables, percentages, and one line per run from its
metadata (command without the program's folder, git SHA, machine, versions, time)."""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from harness.tables import humanize_bytes
from perfmodel.errors import ArchscaleInputError

# What the report reads besides its own folders: ours, then the fits to and the rows of throughputs others published
# (results/published, `make calibrate-published`).
CALIBRATION_FILES = ("calibration/*.toml", "published/calibration.toml")
SWEEP_FILES = ("sweeps/*.jsonl", "published/*.jsonl")


def md_table(header, rows) -> list[str]:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows] + [""]


def pct(value) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _command(command) -> str:
    """The recorded command with the program's folder dropped (`/x/.venv/bin/archscale sweep` -> `archscale sweep`)."""
    if not command:
        return "unknown"
    program, _, rest = str(command).partition(" ")
    return f"{Path(program).name} {rest}".strip()


def run_line(meta: dict | None) -> str:
    """One line from a run's metadata: command, git SHA, machine, versions, time."""
    if not meta:
        return "no run metadata recorded"
    if meta.get("source") == "published":  # others' measurement (archscale published --sweep-rows), not a run of ours
        return (f"published by others, not measured here: {str(meta.get('source_url')).split('#')[0]} · "
                f"{meta.get('gpu_name')} · "
                f"{meta.get('engine_version')} · {meta.get('published_csv')}")  # fmt: skip
    sha = meta.get("git_sha")
    git = f"git {str(sha)[:7]}" + (" (uncommitted changes)" if meta.get("git_dirty") else "") if sha else "git unknown"
    cpu = f"{meta.get('cpu_model') or 'unknown CPU'}, {meta.get('cpu_count_logical') or '?'} logical CPUs"
    machine = cpu
    if meta.get("gpu_name"):
        memory, driver, cuda = meta.get("gpu_memory_bytes"), meta.get("driver_version"), meta.get("cuda_version")
        extras = ", ".join(x for x in (memory and humanize_bytes(memory), driver and f"driver {driver}",
                                       cuda and f"CUDA {cuda}") if x)  # fmt: skip
        machine = f"{meta['gpu_name']}{f' ({extras})' if extras else ''}; {cpu}"
    versions = ", ".join(f"{label} {meta[key]}" for key, label in (
        ("torch_version", "torch"), ("triton_version", "triton"), ("vllm_version", "vLLM"),
        ("sglang_version", "SGLang"), ("python_version", "Python"), ("archscale_version", "archscale"))
        if meta.get(key))  # fmt: skip
    return (f"`{_command(meta.get('command'))}` · {git} · {machine} · {versions or 'versions unknown'} · "
            f"{meta.get('time_utc') or 'time unknown'}")  # fmt: skip


def runs_lines(rows: list[dict]) -> list[str]:
    """One bullet per distinct run (command, SHA, start time) among `rows`, with its row count, oldest first."""
    counts: dict[str, int] = defaultdict(int)
    first: dict[str, str] = {}
    for row in rows:
        meta = row.get("metadata") or {}
        line = run_line(meta)
        counts[line] += 1
        first.setdefault(line, str(meta.get("time_utc") or ""))
    ordered = sorted(counts, key=lambda line: (first[line], line))
    return [f"- Run ({counts[line]} rows): {line}" for line in ordered] + [""]


@contextmanager
def reading(path: Path, writer: str):
    """Unexpected content in `path` (a missing key, a wrong type) as one error line naming the file."""
    try:
        yield
    except ArchscaleInputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ArchscaleInputError(f"{path}: not what `{writer}` writes ({type(exc).__name__}: {exc}); fix or remove "
                                  "the file") from None  # fmt: skip
