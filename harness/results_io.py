"""Append-only JSONL results files: one JSON object per line, written so that nothing already there is lost.

A row is appended with a single write of a complete line, then flushed and fsynced; readers reject a corrupt
line with the file name and line number instead of silently dropping data. `finished_keys` is what makes
sweeps and benchmarks resumable: a point whose key is already in the file is not measured again.

A run killed mid-write (SIGKILL, power loss) can leave at most one unterminated last line. `prepare_resume`
checks every complete line first (a corrupt one is an error and the file is left byte-identical), then sets
such a torn tail aside into `<file>.torn` and cuts it from the file, so the point is measured again and the
file stays valid JSONL. A tail that is a whole JSON object missing only its newline is kept and terminated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from perfmodel.errors import ArchscaleInputError


def check_writable(path: str | Path) -> Path:
    """Create `path`'s folder and check a results file can be appended there, before anything is measured."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchscaleInputError(f"cannot create the folder of {path}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise ArchscaleInputError(f"{path} is a directory: give a results file (.jsonl) there")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ArchscaleInputError(f"cannot write {path}: permission denied")
    return path


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append `row` as one line to `path` (parent folders created)."""
    path = check_writable(path)
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
    if path.is_dir():
        raise ArchscaleInputError(f"{path} is a directory, not a results file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ArchscaleInputError(f"{path}: not UTF-8 text at byte {exc.start}; not a results file") from None
    except OSError as exc:
        raise ArchscaleInputError(f"{path}: cannot read ({exc.strerror})") from None
    return [_parse_line(path, number, line) for number, line in enumerate(text.split("\n"), 1) if line.strip()]


def _parse_line(path: Path, line_number: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ArchscaleInputError(
            f"{path}:{line_number}: corrupt results line ({exc.msg}); fix or remove that line"
        ) from None
    if not isinstance(row, dict):
        raise ArchscaleInputError(f"{path}:{line_number}: results line is not a JSON object")
    return row


def prepare_resume(path: str | Path, set_aside: bool = True) -> tuple[list[dict], str | None]:
    """The rows of `path` and a warning if a torn last line was set aside (see the module docstring).
    With `set_aside=False` (a dry run) the file is only read: the warning says what a real run would do."""
    path = Path(path)
    if not path.exists():
        return [], None
    if path.is_dir():
        raise ArchscaleInputError(f"{path} is a directory: give a results file (.jsonl) there")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArchscaleInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    complete, newline, tail = data.rpartition(b"\n")
    if not newline:  # no newline at all: the whole file is one unterminated line
        complete, tail = b"", data
    try:
        lines = complete.decode("utf-8").split("\n") if complete else []
    except UnicodeDecodeError as exc:
        raise ArchscaleInputError(f"{path}: not UTF-8 text at byte {exc.start}; not a results file") from None
    rows = [_parse_line(path, number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not tail.strip():
        return rows, None
    try:
        row = json.loads(tail.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        row = None
    if not set_aside:
        whole = isinstance(row, dict)
        return rows + ([row] if whole else []), None if whole else (
            f"{path}: the last line was cut off by an interrupted run; a real run sets it aside and measures its "
            "point again"
        )
    if isinstance(row, dict):  # whole row, only its newline missing
        with path.open("ab") as out:
            out.write(b"\n")
        return rows + [row], None
    side = path.with_name(path.name + ".torn")
    with side.open("ab") as out:
        out.write(tail + b"\n")
        out.flush()
        os.fsync(out.fileno())
    with path.open("r+b") as out:
        out.truncate(len(data) - len(tail))
    return rows, (
        f"{path}: the last line was cut off by an interrupted run; set aside into {side.name} "
        f"({len(tail)} bytes) and its point will be measured again"
    )


def finished_keys(path: str | Path, key_fields: tuple[str, ...]) -> set[tuple]:
    """The keys (tuples of `key_fields` values) of rows already in `path`."""
    return {tuple(row.get(field) for field in key_fields) for row in read_jsonl(path)}
