"""`archscale report`: render results/ into one Markdown file, REPORT.md (harness.report.build builds the text).

The report is deterministic (no time of rendering in it): re-running on unchanged results gives the same file, so it
can be committed. It is written atomically, and only once every results file has been read: a corrupt file is one
error line (exit 2) and leaves the previous report as it was.
"""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("report", help="render results/ (kernels, sweeps, calibration, searches) as REPORT.md",
                              description=__doc__)  # fmt: skip
    p.add_argument("--results", metavar="DIR", type=Path, default=Path("results"),
                   help="the results folder to render (default results/)")  # fmt: skip
    p.add_argument("--out", metavar="FILE", type=Path, default=None, help="the Markdown file (default DIR/REPORT.md)")
    p.set_defaults(run=run)


def run(args) -> int:
    from harness.report.build import build_report
    from harness.toml_io import write_atomic

    out = args.out if args.out is not None else args.results / "REPORT.md"
    text = build_report(args.results, link_dir=out.expanduser().parent)
    write_atomic(out, text)
    print(f"Wrote {out} ({len(text.splitlines())} lines)")
    return 0
