"""Engine policy by release (data/engine_releases.toml): what vLLM and SGLang schedule by default in a release line.

`release_policy("vllm", "0.6.3", "a100-80gb")` is the Calibration policy fields that release uses on that GPU: the
matching entry's fields, then its `gpus` fields for the GPU. A release is read from the first "X.Y" or "X.Y.Z" in
the text ("0.6.3", "v0.5.3.post1", "main@2024-08-04 (after v0.5.3.post1 ...)" → 0.5.3), so a sweep row's or a
published row's engine_version can be used as it is.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path

from perfmodel.calibration_fields import check_field_values
from perfmodel.errors import ArchscaleInputError

RELEASES_FILE = Path(__file__).with_name("data") / "engine_releases.toml"
RELEASE_ENGINES = ("vllm", "sglang")
# The Calibration fields an entry may set: the engine's scheduling policy, never an efficiency.
POLICY_FIELDS = ("chunked_prefill", "max_num_seqs", "max_prefill_tokens", "cuda_graph_max_batch",
                 "paged_kv_admission", "kv_block_tokens")  # fmt: skip
_RELEASE = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?:\.(\d+))?")
_BOUND = re.compile(r"^(>=|<)(\d+(?:\.\d+){1,2})$")


def parse_release(text) -> tuple[int, int, int] | None:
    """(major, minor, patch) of the first release number in `text`, or None where there is none."""
    match = _RELEASE.search(str(text)) if text is not None else None
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def _bounds(spec: str, where: str) -> tuple[tuple, tuple | None]:
    """(lowest release included, first release excluded or None) of ">=A,<B" or ">=A"."""
    low = high = None
    for part in spec.split(","):
        match = _BOUND.match(part.strip())
        if match is None:
            raise ArchscaleInputError(f"{where}: releases must read '>=X.Y.Z' or '>=X.Y.Z,<X.Y.Z', got {spec!r}")
        release = parse_release(match[2])
        if match[1] == ">=":
            low = release
        else:
            high = release
    if low is None or (high is not None and high <= low):
        raise ArchscaleInputError(f"{where}: releases {spec!r} is not a range '>=X.Y.Z[,<X.Y.Z]'")
    return low, high


@cache
def release_table() -> dict[str, list[dict]]:
    """{engine: entries sorted by release, each {"low", "high", "releases", "fields", "gpus"}}, validated: ranges
    contiguous from the first, the last open-ended, only policy fields, each value as a calibration file's."""
    with RELEASES_FILE.open("rb") as f:
        raw = tomllib.load(f)
    table = {}
    for engine in RELEASE_ENGINES:
        entries = []
        for k, entry in enumerate(raw.get(engine, [])):
            where = f"{RELEASES_FILE.name}: {engine} entry {k + 1}"
            low, high = _bounds(entry.get("releases", ""), where)
            gpus = entry.get("gpus", {})
            for gpu, fields in (("", entry), *((f".gpus.{name}", spec) for name, spec in gpus.items())):
                unknown = set(fields) - set(POLICY_FIELDS) - {"releases", "gpus"}
                if unknown:
                    raise ArchscaleInputError(f"{where}{gpu}: unknown field(s) {', '.join(sorted(unknown))}")
                check_field_values(fields, where + gpu, POLICY_FIELDS)
            fields = {name: entry[name] for name in POLICY_FIELDS if name in entry}
            entries.append({"low": low, "high": high, "releases": entry["releases"], "fields": fields, "gpus": gpus})
        entries.sort(key=lambda e: e["low"])
        for before, after in zip(entries, entries[1:], strict=False):
            if before["high"] != after["low"]:
                raise ArchscaleInputError(f"{RELEASES_FILE.name}: {engine} ranges {before['releases']!r} and "
                                          f"{after['releases']!r} leave a gap or overlap")  # fmt: skip
        if entries and entries[-1]["high"] is not None:
            raise ArchscaleInputError(f"{RELEASES_FILE.name}: the last {engine} range must be open-ended ('>=X.Y.Z')")
        table[engine] = entries
    return table


def release_policy(engine: str, version, gpu_name: str) -> dict:
    """The policy fields `engine` release `version` uses on GPU `gpu_name`; one-line errors for an engine without
    releases, text without a release number, or a release older than the table."""
    if engine not in RELEASE_ENGINES:
        raise ArchscaleInputError(f"an engine version applies to {' and '.join(RELEASE_ENGINES)}, not '{engine}'")
    release = parse_release(version)
    if release is None:
        raise ArchscaleInputError(f"no release number (such as 0.6.3) in engine version {version!r}")
    entries = release_table()[engine]
    for entry in entries:
        if entry["low"] <= release and (entry["high"] is None or release < entry["high"]):
            return {**entry["fields"], **entry["gpus"].get(gpu_name, {})}
    tabulated = "; ".join(e["releases"] for e in entries)
    raise ArchscaleInputError(f"{engine} {'.'.join(map(str, release))} is older than the releases whose defaults "
                              f"perfmodel/data/engine_releases.toml tabulates ({tabulated})")  # fmt: skip
