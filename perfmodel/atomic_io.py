"""Writing output files atomically, checking output paths before any work is done, and saying why JSON did not
parse (stdlib only).

`write_atomic` writes to a temporary file in the target's folder, optionally checks it, then `os.replace`s it, so
a crash or a failed check never leaves a half-written file where a good one was. `check_output_file` and
`check_output_dir` say, before a command computes anything, whether a path can be written: a folder where a file
is wanted (or the reverse) or a parent that is a file is one clear `ArchscaleInputError`, and nothing is created.
Every OS error while writing becomes an `ArchscaleInputError` naming the path. `json_failure` turns every way
`json.loads` can fail on a user's file into a short reason, and `json_type` names a parsed value's JSON type.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from perfmodel.errors import ArchscaleInputError


def _check_parents(path: Path) -> None:
    """The nearest existing ancestor of `path` must be a writable folder (the rest is created when writing)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                if parent == path.parent:
                    raise ArchscaleInputError(f"cannot write {path}: {parent} is a file, not a folder")
                raise ArchscaleInputError(f"cannot write {path}: cannot create the folder {path.parent}, {parent} is "
                                          "a file")  # fmt: skip
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ArchscaleInputError(f"cannot write {path}: permission denied in {parent}")
            return
        if parent.is_symlink():  # a dangling link where a folder should be
            raise ArchscaleInputError(f"cannot write {path}: {parent} is a broken link")


# What json.loads raises on a user's file: JSONDecodeError (a ValueError); ValueError for an integer of more than
# 4300 digits; RecursionError for nesting deeper than the interpreter's stack.
JSON_ERRORS = (ValueError, RecursionError)


def json_failure(exc: BaseException) -> str:
    """Why json.loads failed, in a few words (for one of JSON_ERRORS)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON at line {exc.lineno}: {exc.msg}"
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    return "a number too long to read"


def json_type(value) -> str:
    """The JSON name of a parsed value's type: object, array, string, number, boolean or null."""
    names = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def check_output_file(path: str | Path, what: str = "the output") -> Path:
    """Raise unless `path` can be written as a file (it may exist, as a file); creates nothing."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ArchscaleInputError(f"{path} is a folder: give a file name for {what}")
    if path.name in ("", ".", ".."):
        raise ArchscaleInputError(f"{path} is not a file name for {what}")
    _check_parents(path)
    if path.exists() and not os.access(path, os.W_OK):
        raise ArchscaleInputError(f"cannot write {path}: permission denied")
    return path


def check_output_dir(path: str | Path, what: str = "the output") -> Path:
    """Raise unless `path` is a folder or can be created as one; creates nothing."""
    path = Path(path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ArchscaleInputError(f"{path} is a file: give a folder for {what}")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ArchscaleInputError(f"cannot write into {path}: permission denied")
        return path
    _check_parents(path)
    return path


def make_dirs(path: Path) -> None:
    """`mkdir -p`, with an OS error as one clear line."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ArchscaleInputError(f"cannot create the folder {path}: a file is in the way") from None
    except OSError as exc:
        raise ArchscaleInputError(f"cannot create the folder {path}: {exc.strerror or exc}") from None


def write_atomic(path: str | Path, data: str | bytes, check=None) -> Path:
    """Write `data` (text as UTF-8) to `path` through a temporary file in the same folder, then rename it over
    `path`; `check(tmp_path)` may raise to abort, leaving `path` as it was. Parent folders are created. A link is
    followed (the file it points to is replaced, not the link); a device or pipe (/dev/null, /dev/stdout) is
    written in place, since renaming over it would replace the device."""
    path = check_output_file(path)
    data = data.encode("utf-8") if isinstance(data, str) else data
    if path.is_symlink():
        path = check_output_file(path.resolve())
    if path.exists() and not path.is_file():
        try:
            with path.open("wb") as f:
                f.write(data)
        except OSError as exc:
            raise ArchscaleInputError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ArchscaleInputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # an existing file keeps its mode
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ArchscaleInputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
