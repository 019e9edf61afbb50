"""`archscale` command line: one subcommand per module, heavy imports deferred until a command runs.

Each command module exposes `add_parser(subparsers)` (registering itself with `set_defaults(run=...)`) and a
`run(args) -> int`. Mistakes a user can make surface as `ArchscaleInputError` and become one line on stderr
with exit code 2; argparse's own usage errors are squeezed to one line as well.
"""

from __future__ import annotations

import argparse
import sys

from perfmodel.errors import ArchscaleInputError

# Command modules, in the order `archscale --help` lists them. Each is imported at start-up, so each must
# keep its own heavy imports (torch, triton, scipy, matplotlib) inside its `run` function.
COMMAND_MODULES = (
    "harness.cli.predict",
    "harness.cli.gpus",
    "harness.cli.fit",
    "harness.cli.search",
    "harness.cli.bench_kernel",
    "harness.cli.sweep",
    "harness.cli.published",
    "harness.cli.calibrate",
    "harness.cli.probe",
    "harness.cli.gemm_curve",
    "harness.cli.compare",
    "harness.cli.schedule",
    "harness.cli.report",
    "harness.cli.campaign",
)


class _OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _OneLineParser(
        prog="archscale",
        description="Design LLM architectures for fast inference: predict, fit, search, measure.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ArchscaleInputError as exc:
        sys.stderr.write(f"archscale: error: {exc}\n")
        return 2
    except BrokenPipeError:  # `archscale ... | head`
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("archscale: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
