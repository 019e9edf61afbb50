"""Append-only JSONL results files: one JSON object per line, written so that nothing already there is lost.

A row is appended with a single write of a complete line, then flushed and fsynced; readers reject a corrupt
line with the file name and line number instead of silently dropping data. `finished_keys` is what makes
sweeps and benchmarks resumable: a point whose key is already in the file is not measured again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from perfmodel.errors import ArchscaleInputError


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append `row` as one line to `path` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(row, sort_keys=True, allow_nan=False) + "\n"
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as existing:  # a torn last line from a killed run must not swallow this row
            existing.seek(-1, os.SEEK_END)
            if existing.read(1) != b"\n":
                line = "\n" + line
    with path.open("a", encoding="utf-8") as out:
        out.write(line)
        out.flush()
        os.fsync(out.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    """All rows of `path` ([] if it does not exist). A corrupt line raises ArchscaleInputError."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ArchscaleInputError(
                    f"{path}:{line_number}: corrupt results line ({exc.msg}); fix or remove that line"
                ) from None
            if not isinstance(row, dict):
                raise ArchscaleInputError(f"{path}:{line_number}: results line is not a JSON object")
            rows.append(row)
    return rows


def finished_keys(path: str | Path, key_fields: tuple[str, ...]) -> set[tuple]:
    """The keys (tuples of `key_fields` values) of rows already in `path`."""
    return {tuple(row.get(field) for field in key_fields) for row in read_jsonl(path)}
