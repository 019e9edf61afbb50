"""`archscale published`: throughputs others published for vLLM and SGLang (perfmodel/data/published_throughput.csv)
against the model — with the engines' default priors and with the package's fit to them — or those rows written as
sweep files for `archscale calibrate` and `archscale compare` (`--sweep-rows DIR`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("published", help="published vLLM/SGLang throughputs against the model",
                              description=__doc__)  # fmt: skip
    p.add_argument("--sweep-rows", metavar="DIR", type=Path, default=None,
                   help="write the rows as sweep files DIR/published-<engine>-<gpu>.jsonl instead")  # fmt: skip
    p.add_argument("--adopt", metavar="FILE.toml", type=Path, default=None,
                   help="fits of the published rows (archscale calibrate); write to --out those that predict their "
                        "held-out rows better than the priors")  # fmt: skip
    p.add_argument("--out", metavar="FILE.toml", type=Path, default=None, help="where --adopt writes")
    p.add_argument("--json", action="store_true", help="print every row's predictions as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from harness.calibrate.published import adopt_fits, markdown_table, predict_published, read_rows, write_sweep_rows
    from perfmodel.atomic_io import check_output_dir, check_output_file
    from perfmodel.errors import ArchscaleInputError

    if (args.adopt is None) != (args.out is None):
        raise ArchscaleInputError("--adopt FILE.toml and --out FILE.toml go together")
    if args.adopt is not None and (args.sweep_rows is not None or args.json):
        raise ArchscaleInputError("--adopt does one job: give --sweep-rows or --json in a run of their own")
    if args.sweep_rows is not None and args.json:
        raise ArchscaleInputError("--sweep-rows writes files: give --json in a run of its own")
    if args.adopt is not None:
        check_output_file(args.out, "--out")
        for line in adopt_fits(args.adopt, args.out):
            print(line)
        print(f"Wrote {args.out}")
        return 0
    if args.sweep_rows is not None:
        check_output_dir(args.sweep_rows, "--sweep-rows")
        for path in write_sweep_rows(args.sweep_rows):
            print(f"Wrote {path}")
        return 0
    points = predict_published(read_rows())
    if args.json:
        rows = [asdict(p) | {"error_pct": p.error_pct, "fitted_error_pct": p.fitted_error_pct} for p in points]
        print(json.dumps(rows, indent=2, allow_nan=False))
    else:
        print(markdown_table(points))
    return 0
