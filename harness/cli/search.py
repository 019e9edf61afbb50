"""`archscale search`: Panda, Surefire and the loss/throughput frontier around a baseline architecture.

Without `--law`, the architecture factor is the paper's multiplicative fit (arXiv 2510.18245, Section 4;
law/data/paper_law.json) and L_opt(N, D) is a Chinchilla law fitted on the Epoch AI data shipped in law/data.
At a fixed N and D, L_opt only sets the absolute level of the losses; the ranking comes from the factor, which is
why the loss target defaults to a delta from the baseline's predicted loss (--loss-delta 0) rather than a level.
GQA stays at the baseline's unless --gqa opens it (the law has no GQA term).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from harness.cli.args import (
    add_deployment_args,
    add_dtype_arg,
    add_hardware_args,
    deployment_kwargs,
    positive_int,
    positive_int_list,
    with_dtype,
)
from perfmodel.atomic_io import write_atomic

ROLES = ("baseline", "panda", "surefire", "surefire_gqa")
FRONTIER_ROWS_SHOWN = 12


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "search",
        help="find the fastest architecture that keeps the loss (Panda, Surefire, Pareto frontier)",
        description=__doc__,
    )
    p.add_argument("--baseline", required=True, help="preset name or path to a config.json")
    add_hardware_args(p)
    add_dtype_arg(p, default="the baseline's; every candidate and placed config takes it")
    p.add_argument("--engine", default="torch", choices=("torch", "vllm", "sglang"))
    p.add_argument("--calibration", metavar="FILE.toml", default=None,
                   help="efficiency factors fitted by `archscale calibrate` (default: the priors)")  # fmt: skip
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--input-len", type=positive_int, default=4096)
    p.add_argument("--output-len", type=positive_int, default=1024)
    add_deployment_args(p, kv_default="the baseline's dtype")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--loss-delta", type=float, default=None,
                        help="L_t = the baseline's predicted loss + this (default 0.0: no worse than the baseline); "
                        "safer than an absolute level, which L_opt(N, D) sets")  # fmt: skip
    target.add_argument("--loss-target", type=float, default=None, help="an absolute loss target L_t instead")
    p.add_argument("--loss-tolerance", type=float, default=None,
                   help="predicted losses within this of the minimum tie (default: 1 standard error from the law's "
                   "covariance, else the extrapolation RMS error measured by `fit evaluate`)")  # fmt: skip
    p.add_argument("--law", type=Path, default=None, help="a law saved by `archscale fit conditional --out`")
    p.add_argument(
        "--train-tokens", type=float, default=None, help="D for L_opt(N, D); default 20 tokens per parameter"
    )
    p.add_argument(
        "--gqa",
        type=positive_int_list,
        default=None,
        help="also search these GQA groups (query heads per KV head), e.g. 1,2,4,8,16; default: keep the "
        "baseline's (the law has no GQA term)",
    )
    p.add_argument("--min-kv-heads", type=positive_int, default=2)
    p.add_argument("--d-multiple", type=positive_int, default=64, help="d_model is a multiple of this (64 or 128)")
    p.add_argument("--budget-tolerance", type=float, default=0.02, help="allowed |N/N_baseline - 1| (default 0.02)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--save", type=Path, default=None, help="also write the JSON result (with metadata) here")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG of candidates and frontier here")
    p.add_argument("--emit-config", type=Path, default=None, metavar="DIR", help="write chosen config.json files")
    p.add_argument("--place", type=str, default=None, metavar="CONFIG,...",
                   help="presets or config.json paths to place in the ranking, tie band and frontier")  # fmt: skip
    p.set_defaults(run=run)


def load_law(path: Path | None):
    """The user's saved law, or the paper's coefficients with a Chinchilla L_opt from the shipped data."""
    from law import ConditionalLaw, default_chinchilla, paper_law

    if path is not None:
        return ConditionalLaw.load(path), f"{path}"
    chinchilla = default_chinchilla()
    description = (
        "paper's multiplicative fit (arXiv 2510.18245, 80M/145M/297M) x L_opt = Chinchilla fit on Epoch data "
        f"(E={chinchilla.E:.3f}, A={chinchilla.A:.1f}, B={chinchilla.B:.1f}, "
        f"alpha={chinchilla.alpha:.4f}, beta={chinchilla.beta:.4f})"
    )
    return paper_law(lopt=chinchilla), description


def result_rows(result, deployment) -> tuple[dict, dict]:
    """JSON rows (predict keys + architecture + predicted loss + ratios to the baseline) for the baseline, Panda,
    Surefire and every frontier point; and the chosen `Arch`s by role."""
    from perfmodel import predict

    candidates = result.candidates
    stem = result.baseline.name or "baseline"
    indices = {"panda": result.panda_index, "surefire": result.surefire_index,
               "surefire_gqa": result.surefire_gqa_index}  # fmt: skip
    archs = {"baseline": result.baseline}
    archs |= {role: candidates.arch(i, name=f"{role.replace('_', '-')}-{stem}") for role, i in indices.items()
              if i is not None}  # fmt: skip

    def row(arch, index: int | None) -> dict:
        prediction = predict(
            arch,
            deployment.gpu,
            engine=deployment.engine,
            calibration_file=deployment.calibration_file,
            engine_version=deployment.engine_version,
            **deployment.workload,
        ).to_dict()
        prediction.pop("breakdown")
        loss = result.baseline_loss if index is None else float(candidates.predicted_loss[index])
        if index is None:
            stderr = result.baseline_loss_stderr
        else:
            stderr = None if candidates.loss_stderr is None else float(candidates.loss_stderr[index])
        return {
            **arch_fields(arch),
            **prediction,
            "predicted_loss": loss,
            "predicted_loss_stderr": stderr,
            "loss_delta_vs_baseline": loss - result.baseline_loss,
            "throughput_ratio_vs_baseline": prediction["output_tokens_per_s"] / result.baseline_tokens_per_s,
        }

    rows = {"baseline": row(result.baseline, None)}
    rows |= {role: None if i is None else row(archs[role], i) for role, i in indices.items()}
    rows["frontier"] = [row(candidates.arch(i), i) for i in result.frontier_indices]
    return rows, archs


def arch_fields(arch) -> dict:
    return {
        "name": arch.name,
        "d_model": arch.d_model,
        "n_layer": arch.n_layer,
        "n_head": arch.n_head,
        "n_kv_head": arch.n_kv_head,
        "d_head": arch.d_head,
        "d_ff": arch.d_ff,
        "vocab": arch.vocab,
        "gqa_group": arch.gqa_group,
        "mlp_attn_ratio": arch.mlp_attn_ratio,
        "hidden_size_factor": arch.hidden_size_factor,
        "n_params_non_embedding": arch.n_params_non_embedding,
    }


def format_tables(payload: dict) -> str:
    from harness.tables import format_table, humanize_count

    dep = payload["deployment"]
    lines = [
        f"Search around {payload['baseline']['name']} on {dep['gpu']} ({dep['engine']}, {dep['dtype_bytes']}-byte "
        f"weights{', a probed machine' if dep['hardware_measured'] else ''}), batch {dep['batch_size']}, "
        f"in {dep['input_len']} / out {dep['output_len']}",
        f"Law: {payload['law']}",
        f"D = {payload['train_tokens']:.3g} training tokens; loss target L_t = {payload['loss_target']:.4f} "
        f"({target_rule_text(payload['loss_target_rule'])})",
        f"Ties: {payload['n_ties']:,} candidates at GQA {payload['baseline_gqa']} within "
        f"{payload['loss_tolerance']:.4f} of the lowest predicted loss {payload['min_loss']:.4f}; Panda is the tie "
        "nearest (x*, r*)",
        f"Tolerance {payload['loss_tolerance']:.4f}: {payload['loss_tolerance_source']}",
    ]
    if payload["x_opt"] is not None and payload["r_opt"] is not None:
        lines.append(
            f"Continuous optimum of the law: x* = d/sqrt(N) = {payload['x_opt']:.4f}, r* = {payload['r_opt']:.3f}"
        )
    header = ("", "d", "layers", "heads", "kv", "d_ff", "r", "GQA", "N", "loss", "± se", "out tok/s", "x base")
    body = [
        (
            role.replace("_", "-"),
            r["d_model"],
            r["n_layer"],
            r["n_head"],
            r["n_kv_head"],
            r["d_ff"],
            f"{r['mlp_attn_ratio']:.2f}",
            r["gqa_group"],
            humanize_count(r["n_params_non_embedding"]),
            f"{r['predicted_loss']:.4f}",
            "n/a" if r["predicted_loss_stderr"] is None else f"{r['predicted_loss_stderr']:.4f}",
            f"{r['output_tokens_per_s']:,.0f}",
            f"{r['throughput_ratio_vs_baseline']:.2f}",
        )
        for role, r in ((role, payload[role]) for role in ROLES)
        if r is not None
    ]
    lines += ["", format_table(header, body), ""]
    frontier = payload["frontier"]
    shown = [frontier[i] for i in sorted(set(np.linspace(0, len(frontier) - 1, FRONTIER_ROWS_SHOWN).astype(int)))]
    lines.append(
        f"Pareto frontier ({len(frontier)} of {payload['n_candidates']:,} candidates, loss vs output tok/s"
        + (f"; {len(shown)} shown, --json lists all" if len(shown) < len(frontier) else "")
        + "):"
    )
    header = ("d", "heads", "kv", "d_ff", "r", "GQA", "loss", "out tok/s", "x base")
    body = [
        (
            r["d_model"],
            r["n_head"],
            r["n_kv_head"],
            r["d_ff"],
            f"{r['mlp_attn_ratio']:.2f}",
            r["gqa_group"],
            f"{r['predicted_loss']:.4f}",
            f"{r['output_tokens_per_s']:,.0f}",
            f"{r['throughput_ratio_vs_baseline']:.2f}",
        )
        for r in shown
    ]
    lines += [format_table(header, body), ""]
    if payload.get("placed"):
        lines += [format_placed(payload["placed"], payload), ""]
    lines += [f"Note: {note}" for note in payload["notes"]]
    return "\n".join(lines)


def target_rule_text(rule: dict) -> str:
    if rule["rule"] == "absolute":
        return "absolute, --loss-target"
    return f"the baseline's predicted loss {rule['delta']:+.4f}, --loss-delta"


def format_placed(placed: list[dict], payload: dict) -> str:
    from harness.tables import format_table

    def speed(value: float | None) -> str:
        return "none" if value is None else f"{value / payload['baseline']['output_tokens_per_s']:.2f}"  # none: no fit

    header = ("placed", "d", "heads/kv", "r", "GQA", "N/N_base", "loss", "rank (GQA held)", "tie", "<= L_t",
              "x base", "frontier x base (held / all)")  # fmt: skip
    body = [
        (
            r["name"],
            r["d_model"],
            f"{r['n_head']}/{r['n_kv_head']}",
            f"{r['mlp_attn_ratio']:.2f}",
            r["gqa_group"],
            f"{r['n_params_ratio_vs_baseline']:.3f}",
            f"{r['predicted_loss']:.4f}",
            f"{r['loss_rank_held_gqa']:,} of {r['n_held_gqa']:,}",
            "yes" if r["within_tolerance"] else "no",
            "yes" if r["meets_loss_target"] else "no",
            speed(r["output_tokens_per_s"]),
            f"{speed(r['frontier_tokens_per_s_at_loss_held_gqa'])} / {speed(r['frontier_tokens_per_s_at_loss'])}",
        )
        for r in placed
    ]
    return "Placed architectures (frontier: the fastest candidate with a loss <= theirs):\n" + format_table(
        header, body
    )


def run(args) -> int:
    from harness.sweep.metadata import run_metadata
    from law.search import Deployment, SearchSpace, search, searched_gqa_groups
    from perfmodel import resolve_arch
    from perfmodel.errors import ArchscaleInputError
    from perfmodel.hardware import resolve_hardware

    check_outputs(args)  # before any work: a bad output path is one line, and nothing is written
    baseline = with_dtype(resolve_arch(args.baseline), args.dtype)  # the candidates take the baseline's dtype
    deployment = Deployment(
        gpu=resolve_hardware(args.gpu, args.hardware),
        engine=args.engine,
        batch_size=args.batch_size,
        input_len=args.input_len,
        output_len=args.output_len,
        calibration_file=args.calibration,
        **deployment_kwargs(args),
    )
    if args.loss_target is not None and not 0 < args.loss_target < math.inf:
        raise ArchscaleInputError(f"--loss-target must be a positive loss, finite, got {args.loss_target}")
    if args.loss_delta is not None and not math.isfinite(args.loss_delta):
        raise ArchscaleInputError(f"--loss-delta must be a finite number, got {args.loss_delta}")
    if args.loss_tolerance is not None and not 0 <= args.loss_tolerance < math.inf:
        raise ArchscaleInputError(f"--loss-tolerance must be >= 0 and finite, got {args.loss_tolerance}")
    if args.train_tokens is not None and not 0 < args.train_tokens < math.inf:
        raise ArchscaleInputError(f"--train-tokens must be a positive finite number, got {args.train_tokens}")
    placed_archs = [with_dtype(resolve_arch(name), args.dtype) for name in place_specs(args.place)]
    law, law_description = load_law(args.law)
    space = SearchSpace(gqa_groups=None if args.gqa is None else tuple(args.gqa), min_kv_heads=args.min_kv_heads,
                        d_multiple=args.d_multiple, budget_tolerance=args.budget_tolerance)  # fmt: skip
    result = search(baseline, law, deployment, loss_target=args.loss_target, loss_delta=args.loss_delta,
                    loss_tolerance=args.loss_tolerance, train_tokens=args.train_tokens, space=space)  # fmt: skip

    rows, archs = result_rows(result, deployment)
    payload = {
        **rows,
        "deployment": {
            "gpu": deployment.gpu.name,
            "hardware_measured": deployment.gpu.measured,
            "dtype_bytes": baseline.dtype_bytes,
            "engine": deployment.engine,
            "engine_version": deployment.engine_version,
            **deployment.workload,
        },
        "law": law_description,
        "train_tokens": result.train_tokens,
        "loss_target": result.loss_target,
        "loss_target_rule": {"rule": result.loss_target_rule, "delta": result.loss_delta},
        "loss_tolerance": result.loss_tolerance,
        "loss_tolerance_source": result.loss_tolerance_source,
        "min_loss": result.min_loss,
        "n_ties": len(result.tie_indices),
        "baseline_gqa": result.baseline_gqa,
        "gqa_groups": list(searched_gqa_groups(baseline, space)),
        "x_opt": result.x_opt,
        "r_opt": result.r_opt,
        "n_candidates": len(result.candidates),
        "n_feasible": int(result.candidates.feasible.sum()),
        "notes": result.notes,
    }
    if placed_archs:
        from law.placement import place

        payload["placed"] = place(result, law, deployment, placed_archs)
    if args.emit_config is not None:
        written = write_configs(args.emit_config, {role: arch for role, arch in archs.items() if role != "baseline"})
        payload["emitted_configs"] = [str(path) for path in written]
    if args.plot is not None:
        from harness.report.search_plot import plot_search

        plot_search(result, args.plot, title=f"{baseline.name or args.baseline} on {deployment.gpu.name}")
        payload["plot"] = str(args.plot)
    if args.save is not None:
        saved = {**payload, "kind": "prediction", "metadata": run_metadata()}
        write_atomic(args.save, json.dumps(saved, indent=2, sort_keys=True) + "\n")

    if args.json:
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_tables(payload))
        for extra in ("emitted_configs", "plot"):
            if extra in payload:
                print(f"Wrote {extra.replace('_', ' ')}: {payload[extra]}")
    return 0


def place_specs(text: str | None) -> list[str]:
    """--place 'a,b' -> ['a', 'b']; an empty item is an error, as in every comma list of the CLI."""
    from perfmodel.errors import ArchscaleInputError

    if text is None:
        return []
    specs = [part.strip() for part in text.split(",")]
    if not all(specs):
        raise ArchscaleInputError(f"--place: empty item in '{text}' (expected e.g. panda-1b,surefire-1b)")
    return specs


def check_outputs(args) -> None:
    """--save and --plot must be writable files and --emit-config a folder, before the search runs."""
    from perfmodel.atomic_io import check_output_dir, check_output_file

    for option, path in (("--save", args.save), ("--plot", args.plot)):
        if path is not None:
            check_output_file(path, option)
    if args.emit_config is not None:
        check_output_dir(args.emit_config, "--emit-config")


def write_configs(directory: Path, archs: dict) -> list[Path]:
    """One HF config.json per chosen architecture: DIR/<name>/config.json, each written atomically."""
    from perfmodel.atomic_io import check_output_dir, check_output_file

    check_output_dir(directory, "--emit-config")
    paths = {arch.name: check_output_file(directory / arch.name / "config.json") for arch in archs.values()}
    return [write_atomic(paths[arch.name], json.dumps(arch.to_hf_config(), indent=2) + "\n")
            for arch in archs.values()]  # fmt: skip
