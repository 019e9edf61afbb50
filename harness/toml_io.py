"""Writing TOML (hardware entries, calibration files) without a writer dependency, and writing files atomically.

`dumps` turns nested dicts into TOML tables ([a], [a.b], ...; scalars and lists of scalars as values);
`write_atomic` (perfmodel.atomic_io, re-exported here) writes to a temporary file in the target's folder, optionally
checks it, then `os.replace`s it, so a crash never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import math
import re

from perfmodel.atomic_io import write_atomic

__all__ = ["dumps", "toml_key", "toml_value", "write_atomic"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_value(value) -> str:
    if type(value).__module__ == "numpy":  # np.float64 / np.int64 / np.bool_: their plain Python value
        value = value.item()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        return repr(value)
    if isinstance(value, str):
        escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
        return '"' + "".join(escapes.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch)
                             for ch in value) + '"'  # fmt: skip
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}: {value!r}")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else toml_value(key)


def dumps(tables: dict, prefix: str = "") -> str:
    """Nested dicts as TOML: each dict becomes a [table] holding its scalar values, sub-dicts follow as [a.b]."""
    lines = []
    for name, table in tables.items():
        header = f"{prefix}.{toml_key(name)}" if prefix else toml_key(name)
        values = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
        lines += [f"[{header}]", *(f"{toml_key(k)} = {toml_value(v)}" for k, v in values.items()), ""]
        children = {k: v for k, v in table.items() if isinstance(v, dict)}
        if children:
            lines.append(dumps(children, header))
    return "\n".join(lines)
