"""The documentation a newcomer reads: README.md stays short enough to read in five minutes (<= 250 lines, the rest in
docs/), and every relative link in README.md, docs/*.md and results/README.md points at a file that exists."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "results" / "README.md"]
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")  # [text](target) or [text](target#anchor)
README_MAX_LINES = 250


def relative_links(text: str) -> list[str]:
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= README_MAX_LINES


def test_docs_has_one_page_per_task_the_readme_links():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pages = {path.name for path in (ROOT / "docs").glob("*.md")}
    assert {"model.md", "measuring.md", "calibration.md", "engines.md", "published.md", "scale-out.md",
            "gpu-campaign.md"} <= pages  # fmt: skip
    assert {page for page in pages if f"docs/{page}" not in readme} == set(), "a docs page the README does not link"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    missing = [t for t in relative_links(page.read_text(encoding="utf-8")) if not (page.parent / t).exists()]
    assert missing == []


def test_the_link_finder_sees_relative_links_and_skips_web_ones():
    text = "[a](docs/model.md) [b](model.md#run) [c](https://example.org/x) [d](mailto:x@y.z)"
    assert relative_links(text) == ["docs/model.md", "model.md"]
