"""Per-op time of our engine's prefill forward at several forward sizes (torch.profiler, CPU or CUDA): which ops cost
more per token as a forward holds more tokens. The check `predict --breakdown` is held against when a sweep's
prefill per token moves with the batch.

    python -m harness.cli.profile_prefill small-base --input-len 256 --forward-tokens 2048,8192 [--device cpu]

Prints the run's metadata, then µs per prompt token of each aten op (self time, the mean of --repeats forwards after
one warm-up) at each forward size, largest first, and the ratio of the largest size to the smallest.
"""

from __future__ import annotations

import argparse
import json
import sys

from harness.cli.args import positive_int, positive_int_list


def main(argv=None) -> int:
    from harness.probe.profile_prefill import op_us_per_token
    from harness.sweep.metadata import run_metadata
    from harness.tables import format_table
    from perfmodel import resolve_arch

    parser = argparse.ArgumentParser(prog="python -m harness.cli.profile_prefill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("config", help="preset name or config.json")
    parser.add_argument("--input-len", type=positive_int, default=256, help="prompt tokens per sequence")
    parser.add_argument("--forward-tokens", type=positive_int_list, default=(2048, 8192),
                        help="prompt tokens per forward, e.g. 2048,8192 (whole sequences)")  # fmt: skip
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--top", type=positive_int, default=12, help="ops shown, by time at the largest size")
    args = parser.parse_args(argv)
    arch = resolve_arch(args.config)
    sizes = sorted(args.forward_tokens)
    per_size = {size: op_us_per_token(arch, args.input_len, size, args.repeats, args.device) for size in sizes}
    command = ["python", "-m", "harness.probe.profile_prefill", *(sys.argv[1:] if argv is None else argv)]
    print("# " + json.dumps(run_metadata(command), sort_keys=True))
    largest, smallest = per_size[sizes[-1]], per_size[sizes[0]]
    ops = sorted(largest, key=largest.get, reverse=True)[: args.top]
    body = [(op, *(f"{per_size[s].get(op, 0.0):.2f}" for s in sizes),
             f"{largest[op] / smallest[op]:.2f}" if smallest.get(op) else "-") for op in ops]  # fmt: skip
    body.append(("all ops", *(f"{sum(per_size[s].values()):.2f}" for s in sizes),
                 f"{sum(largest.values()) / sum(smallest.values()):.2f}"))  # fmt: skip
    print(f"{arch.name}, prompts of {args.input_len} tokens, µs per prompt token (self time, {args.device}):")
    held = [max(1, size // args.input_len) * args.input_len for size in sizes]  # whole sequences per forward
    print(format_table(("op", *(f"{h} tokens/forward" for h in held), f"{held[-1]} / {held[0]}"), body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
