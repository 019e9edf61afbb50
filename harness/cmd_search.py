"""`archscale search`: Panda, Surefire and the loss/throughput frontier around a baseline architecture.

Without `--law`, the architecture factor is the paper's multiplicative fit (arXiv 2510.18245, Section 4;
law/data/paper_law.json) and L_opt(N, D) is a Chinchilla law fitted on the Epoch AI data shipped in law/data.
At a fixed N and D, L_opt only sets the absolute level of the losses; the ranking comes from the factor.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from harness.cli_args import positive_int, positive_int_list

ROLES = ("baseline", "panda", "surefire")
FRONTIER_ROWS_SHOWN = 12


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "search",
        help="find the fastest architecture that keeps the loss (Panda, Surefire, Pareto frontier)",
        description=__doc__,
    )
    p.add_argument("--baseline", required=True, help="preset name or path to a config.json")
    p.add_argument("--gpu", required=True, help="GPU name (see `archscale gpus`)")
    p.add_argument("--engine", default="torch", choices=("torch", "vllm", "sglang"))
    p.add_argument("--calibration", metavar="FILE.toml", default=None,
                   help="efficiency factors fitted by `archscale calibrate` (default: the priors)")  # fmt: skip
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--input-len", type=positive_int, default=4096)
    p.add_argument("--output-len", type=positive_int, default=1024)
    p.add_argument("--loss-target", type=float, default=None, help="default: the baseline's predicted loss")
    p.add_argument("--law", type=Path, default=None, help="a law saved by `archscale fit conditional --out`")
    p.add_argument(
        "--train-tokens", type=float, default=None, help="D for L_opt(N, D); default 20 tokens per parameter"
    )
    p.add_argument(
        "--gqa",
        type=positive_int_list,
        default=(1, 2, 4, 8, 16),
        help="GQA groups (query heads per KV head) to consider, e.g. 1,2,4,8 (default 1,2,4,8,16)",
    )
    p.add_argument("--min-kv-heads", type=positive_int, default=2)
    p.add_argument("--d-multiple", type=positive_int, default=64, help="d_model is a multiple of this (64 or 128)")
    p.add_argument("--budget-tolerance", type=float, default=0.02, help="allowed |N/N_baseline - 1| (default 0.02)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--save", type=Path, default=None, help="also write the JSON result (with metadata) here")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG of candidates and frontier here")
    p.add_argument("--emit-config", type=Path, default=None, metavar="DIR", help="write chosen config.json files")
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
    archs = {
        "baseline": result.baseline,
        "panda": candidates.arch(result.panda_index, name=f"panda-{stem}"),
        "surefire": candidates.arch(result.surefire_index, name=f"surefire-{stem}"),
    }

    def row(arch, loss: float) -> dict:
        prediction = predict(
            arch,
            deployment.gpu,
            engine=deployment.engine,
            calibration_file=deployment.calibration_file,
            **deployment.workload,
        ).to_dict()
        prediction.pop("breakdown")
        return {
            **arch_fields(arch),
            **prediction,
            "predicted_loss": loss,
            "loss_delta_vs_baseline": loss - result.baseline_loss,
            "throughput_ratio_vs_baseline": prediction["output_tokens_per_s"] / result.baseline_tokens_per_s,
        }

    indices = {"panda": result.panda_index, "surefire": result.surefire_index}
    rows = {"baseline": row(result.baseline, result.baseline_loss)}
    rows |= {role: row(archs[role], float(candidates.predicted_loss[i])) for role, i in indices.items()}
    rows["frontier"] = [row(candidates.arch(i), float(candidates.predicted_loss[i])) for i in result.frontier_indices]
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
        f"Search around {payload['baseline']['name']} on {dep['gpu']} ({dep['engine']}), batch {dep['batch_size']}, "
        f"in {dep['input_len']} / out {dep['output_len']}",
        f"Law: {payload['law']}",
        f"D = {payload['train_tokens']:.3g} training tokens; loss target L_t = {payload['loss_target']:.4f}",
    ]
    if payload["x_opt"] is not None and payload["r_opt"] is not None:
        lines.append(
            f"Continuous optimum of the law: x* = d/sqrt(N) = {payload['x_opt']:.4f}, r* = {payload['r_opt']:.3f}"
        )
    header = ("", "d", "layers", "heads", "kv", "d_ff", "r", "GQA", "N", "loss", "out tok/s", "x base")
    body = [
        (
            role,
            r["d_model"],
            r["n_layer"],
            r["n_head"],
            r["n_kv_head"],
            r["d_ff"],
            f"{r['mlp_attn_ratio']:.2f}",
            r["gqa_group"],
            humanize_count(r["n_params_non_embedding"]),
            f"{r['predicted_loss']:.4f}",
            f"{r['output_tokens_per_s']:,.0f}",
            f"{r['throughput_ratio_vs_baseline']:.2f}",
        )
        for role, r in ((role, payload[role]) for role in ROLES)
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
    lines += [f"Note: {note}" for note in payload["notes"]]
    return "\n".join(lines)


def run(args) -> int:
    from harness.metadata import run_metadata
    from law.search import Deployment, SearchSpace, search
    from perfmodel import get_gpu, resolve_arch
    from perfmodel.errors import ArchscaleInputError

    baseline = resolve_arch(args.baseline)
    deployment = Deployment(
        gpu=get_gpu(args.gpu),
        engine=args.engine,
        batch_size=args.batch_size,
        input_len=args.input_len,
        output_len=args.output_len,
        calibration_file=args.calibration,
    )
    if args.loss_target is not None and not args.loss_target > 0:
        raise ArchscaleInputError(f"--loss-target must be a positive loss, got {args.loss_target}")
    law, law_description = load_law(args.law)
    space = SearchSpace(gqa_groups=tuple(args.gqa), min_kv_heads=args.min_kv_heads, d_multiple=args.d_multiple,
                        budget_tolerance=args.budget_tolerance)  # fmt: skip
    result = search(
        baseline, law, deployment, loss_target=args.loss_target, train_tokens=args.train_tokens, space=space
    )

    rows, archs = result_rows(result, deployment)
    payload = {
        **rows,
        "deployment": {"gpu": deployment.gpu.name, "engine": deployment.engine, **deployment.workload},
        "law": law_description,
        "train_tokens": result.train_tokens,
        "loss_target": result.loss_target,
        "x_opt": result.x_opt,
        "r_opt": result.r_opt,
        "n_candidates": len(result.candidates),
        "n_feasible": int(result.candidates.feasible.sum()),
        "notes": result.notes,
    }
    if args.emit_config is not None:
        written = write_configs(args.emit_config, {role: archs[role] for role in ("panda", "surefire")})
        payload["emitted_configs"] = [str(path) for path in written]
    if args.plot is not None:
        from harness.search_plot import plot_search

        plot_search(result, args.plot, title=f"{baseline.name or args.baseline} on {deployment.gpu.name}")
        payload["plot"] = str(args.plot)
    if args.save is not None:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        saved = {**payload, "kind": "prediction", "metadata": run_metadata()}
        args.save.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")

    if args.json:
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_tables(payload))
        for extra in ("emitted_configs", "plot"):
            if extra in payload:
                print(f"Wrote {extra.replace('_', ' ')}: {payload[extra]}")
    return 0


def write_configs(directory: Path, archs: dict) -> list[Path]:
    """One HF config.json per chosen architecture: DIR/<name>/config.json."""
    written = []
    for arch in archs.values():
        path = directory / arch.name / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(arch.to_hf_config(), indent=2) + "\n")
        written.append(path)
    return written
