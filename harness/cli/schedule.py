"""`archscale schedule`: an engine's scheduler, as it traced itself in a sweep, against the schedule the model
predicts from the settings the engine reported (harness/calibrate/schedule_check.py): steps taken and each request's
first token counted in steps, per point, with the regime it ran in. No hardware entry: costs play no part."""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("schedule", help="an engine's traced scheduler steps against the model's schedule",
                              description=__doc__)  # fmt: skip
    p.add_argument("sweeps", nargs="+", type=Path, metavar="SWEEP.jsonl",
                   help="sweep files of an engine that traces its scheduler (vLLM)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print every check as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from harness.calibrate.schedule_check import check_schedules, format_schedule_checks
    from harness.sweep.rows import load_sweeps
    from perfmodel.errors import ArchscaleInputError

    rows = load_sweeps(args.sweeps).rows  # every file checked as calibrate and compare check them
    checks = check_schedules(rows)
    if not checks:
        raise ArchscaleInputError("no row carries its engine's scheduler trace with the settings it ran with "
                                  "(vLLM sweeps do: `archscale sweep ... --engine vllm`)")  # fmt: skip
    if args.json:
        print(json.dumps([c.to_dict() for c in checks], indent=2, allow_nan=False))
    else:
        print(format_schedule_checks(checks))
    return 0
