"""results/ as a product: the committed outputs derived by the code (results/REPORT.md and the search outputs
results/search-*.json) are what the code at this commit derives from the same inputs. When the model, the law or
results/ change, `make results` rewrites them; until it is run and committed, these tests fail and name the file."""

import math
import shlex
from pathlib import Path

import pytest

from harness.cli.main import build_parser
from harness.report.build import build_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
SEARCHES = sorted(RESULTS.glob("search-*.json"))
RUN_FIELDS = {"metadata", "plot", "emitted_configs"}  # who ran it, when, where it wrote: not the answer


def differences(committed, current, where: str = "") -> list[str]:
    """Paths at which two JSON values differ; floats within 1e-9, relative or absolute, are equal (another CPU's
    last bits; a loss difference of two losses near 3 keeps about 1e-11 of them)."""
    if isinstance(committed, dict) and isinstance(current, dict):
        keys = sorted(set(committed) | set(current))
        return [d for k in keys for d in differences(committed.get(k), current.get(k), f"{where}.{k}")]
    if isinstance(committed, list) and isinstance(current, list) and len(committed) == len(current):
        return [
            d
            for i, (a, b) in enumerate(zip(committed, current, strict=True))
            for d in differences(a, b, f"{where}[{i}]")
        ]
    if isinstance(committed, float) and isinstance(current, float):
        return [] if math.isclose(committed, current, rel_tol=1e-9, abs_tol=1e-9) else [where]
    return [] if committed == current else [where]


def test_the_committed_report_is_what_the_code_renders_from_results():
    rendered = build_report(RESULTS, link_dir=RESULTS)
    assert rendered == (RESULTS / "REPORT.md").read_text(encoding="utf-8"), "results/REPORT.md is stale: make results"


def test_there_are_committed_searches_to_check():
    names = {path.name for path in SEARCHES}
    assert {f"search-llama-3.2-{size}-{gpu}.json" for size in ("1b", "3b") for gpu in ("h200", "a100-80gb")} <= names


@pytest.mark.parametrize("path", SEARCHES, ids=lambda p: p.name)
def test_a_committed_search_is_what_its_command_gives_at_this_commit(path, tmp_path, monkeypatch):
    import json

    committed = json.loads(path.read_text(encoding="utf-8"))
    argv = shlex.split(committed["metadata"]["command"])
    argv = argv[argv.index("search") :]
    args = build_parser().parse_args(argv)
    args.save, args.plot, args.emit_config = tmp_path / "search.json", None, None  # nothing written but here
    monkeypatch.chdir(ROOT)  # the command's own paths (a probed hardware entry) are relative to the repository
    assert args.run(args) == 0
    current = json.loads(args.save.read_text(encoding="utf-8"))
    strip = lambda payload: {k: v for k, v in payload.items() if k not in RUN_FIELDS}  # noqa: E731
    assert differences(strip(committed), strip(current)) == [], f"{path.name} is stale: make results"


@pytest.mark.parametrize(
    "committed, current, found",
    [
        ({"a": 1.0, "b": [1, 2]}, {"a": 1.0 + 1e-12, "b": [1, 2]}, []),
        ({"a": 1.0}, {"a": 1.001}, [".a"]),
        ({"a": [1, 2]}, {"a": [1, 3]}, [".a[1]"]),
        ({"a": 1}, {"b": 1}, [".a", ".b"]),
    ],
)
def test_the_comparison_sees_a_changed_number_or_field_and_nothing_else(committed, current, found):
    assert differences(committed, current) == found
