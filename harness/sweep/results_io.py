"""Append-only JSONL results files: one JSON object per line, written so that nothing already there is lost.

A row is appended with a single write of a complete line, then flushed and fsynced; readers reject a corrupt
line with the file name and line number instead of silently dropping data. `finished_keys` is what makes
sweeps and benchmarks resumable: a point whose key is already in the file is not measured again.

A run killed mid-write (SIGKILL, power loss) can leave at most one unterminated last line. `prepare_resume`
checks every complete line first (a corrupt one is an error and the file is left byte-identical), then sets
such a torn tail aside into `<file>.torn` and cuts it from the file, so the point is measured again and the
file stays valid JSONL. A tail that is a whole JSON object missing only its newline is kept and terminated; a tail
that cannot be one of our rows (binary, not starting with `{`) means the file is not a results file: an error, and the
file is left as it was.

`check_sweep_row` / `check_sweep_files` check what calibrate and compare rely on in a measured sweep row (types,
positive integer workload and shape, a known dtype, finite positive measurements) and name file:line and the field.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from harness.sweep.machine_reference import REFERENCE_FIELDS
from perfmodel.atomic_io import JSON_ERRORS, check_output_file, json_failure, make_dirs
from perfmodel.errors import ArchscaleInputError


def device_slug(device_name: str) -> str:
    """A device's name as results files are named by it ("NVIDIA H100 80GB HBM3" -> nvidia-h100-80gb-hbm3)."""
    return re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")


def check_writable(path: str | Path, create: bool = True) -> Path:
    """Check a results file can be appended at `path` and create its folder (not with `create=False`, a dry run),
    before anything is measured."""
    path = Path(path)
    if path.is_dir():
        raise ArchscaleInputError(f"{path} is a directory: give a results file (.jsonl) there")
    check_output_file(path, "a results file")
    if create:
        make_dirs(path.parent)
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
    return [row for _, row in _numbered_rows(path)]


def _parse_line(path: Path, line_number: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except JSON_ERRORS as exc:
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else json_failure(exc)
        raise ArchscaleInputError(
            f"{path}:{line_number}: corrupt results line ({why}); fix or remove that line"
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
    if not tail.lstrip().startswith(b"{") or not tail.isascii():  # our rows are ASCII JSON objects (ensure_ascii)
        raise ArchscaleInputError(
            f"{path}: the last line is neither a results row nor one cut off by an interrupted run: not a results "
            "file (left unchanged)"
        )
    try:
        row = json.loads(tail.decode("ascii"))
    except JSON_ERRORS:
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


# ---- sweep rows (`archscale sweep`): checked before calibrate and compare compute anything ----
SWEEP_WORKLOAD = ("batch_size", "input_len", "output_len")
SWEEP_ARCH_INTS = ("d_model", "n_layer", "n_head", "n_kv_head", "d_head", "d_ff", "vocab")
SWEEP_ARCH_FLAGS = ("tie_embeddings", "qkv_bias", "qk_norm")
SWEEP_TEXT = ("config", "engine", "dtype", "attention")  # required strings of a measured row
SWEEP_OPTIONAL_TEXT = ("device", "hardware")
SWEEP_MEASURED = ("output_tokens_per_s", "total_tokens_per_s", "ttft_s", "tpot_s", "prefill_time_s",
                  *REFERENCE_FIELDS)  # fmt: skip


def check_sweep_row(path: str | Path, line_number: int, row: dict) -> None:
    """Raise ArchscaleInputError (file:line and the field) unless a measured row (status ok) has the types and
    ranges calibrate and compare rely on; rows of failed points (another status) are only reported, not used."""
    from perfmodel.arch import DTYPE_BYTES, MAX_CONFIG_INT, MAX_CONFIG_PARAMS, Arch

    def bad(what: str) -> ArchscaleInputError:
        return ArchscaleInputError(f"{path}:{line_number}: {what}; is this a row written by `archscale sweep`?")

    def count(table: dict, key: str, where: str = "") -> int:
        value = table.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_CONFIG_INT:
            raise bad(f"'{where}{key}' must be an integer from 1 to {MAX_CONFIG_INT:,}, got {value!r:.40}")
        return value

    if row.get("status") != "ok":
        return
    for key in SWEEP_TEXT + SWEEP_OPTIONAL_TEXT:
        if (key in SWEEP_TEXT or row.get(key) is not None) and not isinstance(row.get(key), str):
            raise bad(f"'{key}' must be a string, got {row.get(key)!r:.40}")
    if row["dtype"] not in DTYPE_BYTES:
        raise bad(f"unknown dtype {row['dtype']!r:.40} (known: {', '.join(DTYPE_BYTES)})")
    for key in SWEEP_WORKLOAD:
        count(row, key)
    for key in ("metadata", "options"):
        if row.get(key) is not None and not isinstance(row[key], dict):
            raise bad(f"'{key}' must be a JSON object, got {row[key]!r:.40}")
    arch = row.get("arch")
    if not isinstance(arch, dict):
        raise bad(f"'arch' must be a JSON object, got {arch!r:.40}")
    ints = {key: count(arch, key, "arch.") for key in SWEEP_ARCH_INTS}
    for key in SWEEP_ARCH_FLAGS:
        if not isinstance(arch.get(key), bool):
            raise bad(f"'arch.{key}' must be true or false, got {arch.get(key)!r:.40}")
    try:
        shape = Arch(**ints, **{key: arch[key] for key in SWEEP_ARCH_FLAGS}, dtype_bytes=DTYPE_BYTES[row["dtype"]])
    except ArchscaleInputError as exc:
        raise bad(f"'arch': {exc}") from None
    if shape.n_params_total > MAX_CONFIG_PARAMS:
        raise bad(f"'arch' has {shape.n_params_total:.3g} parameters (at most {MAX_CONFIG_PARAMS:.0e})")
    for key in SWEEP_MEASURED:
        value = row.get(key)
        if value is None:
            continue  # a missing measurement: the loader sets the row aside and says so
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad(f"'{key}' must be a finite number, got {value!r:.40}")
        if value < 0 or (value == 0 and not (key == "tpot_s" and row["output_len"] <= 1)):
            raise bad(f"'{key}' = {value} is not a measurement (it must be positive)")


def check_sweep_files(paths) -> None:
    """check_sweep_row over every row of every file (a missing file or folder is left to the loader's message)."""
    for path in paths:
        if Path(path).is_file():
            for number, row in _numbered_rows(Path(path)):
                check_sweep_row(path, number, row)


def _numbered_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) for every non-blank line, parsed as read_jsonl does."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ArchscaleInputError(f"{path}: not UTF-8 text at byte {exc.start}; not a results file") from None
    except OSError as exc:
        raise ArchscaleInputError(f"{path}: cannot read ({exc.strerror})") from None
    return [(n, _parse_line(path, n, line)) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
