"""`archscale campaign`: the GPU measurements as one time-boxed, resumable command on a lent GPU machine.

  plan     (here) what is measured already for a GPU, what is left, and its predicted device time
  stamp    (here) record the commit the copied checkout is, for the rows' metadata (the copy travels without .git)
  run      (on the GPU machine) seed --out from results/, run the stages under --budget-s, write into --out
  collect  (here) check what came back and put it into results/, losing nothing

Stages and files: harness.campaign.plan; the runner: harness.campaign.run; collect: harness.campaign.collect.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.cli.args import positive_float

DEFAULT_BUDGET_S = 520.0  # a device call runs at most 600 s; the install and the copy out take the rest
DEVICE_COMMAND = ('python3 -m pip install -q --no-deps --no-build-isolation -e . && '
                  'python3 -m harness campaign run --out "$OUT" --budget-s {budget:.0f}')  # fmt: skip


def stage_list(text: str) -> tuple[str, ...]:
    import argparse

    from harness.campaign.plan import STAGE_NAMES

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in STAGE_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"stages are a comma-separated subset of {','.join(STAGE_NAMES)}")
    return names


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("campaign", help="the GPU measurements as one resumable command on a lent GPU",
                              description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)  # fmt: skip
    verbs = p.add_subparsers(dest="verb", required=True)
    plan = verbs.add_parser("plan", help="what is measured for a GPU, what is left, predicted device time")
    plan.add_argument("--gpu", default="h100-sxm", help="datasheet GPU (default h100-sxm)")
    plan.add_argument("--results", type=Path, default=Path("results"))
    plan.add_argument("--budget-s", type=positive_float, default=DEFAULT_BUDGET_S)
    plan.set_defaults(run=run_plan)
    stamp = verbs.add_parser("stamp", help="record the commit for the copy sent to the GPU machine")
    stamp.add_argument("--budget-s", type=positive_float, default=DEFAULT_BUDGET_S)
    stamp.set_defaults(run=run_stamp)
    run = verbs.add_parser("run", help="on the GPU machine: run the stages into --out within --budget-s")
    run.add_argument("--out", type=Path, required=True, help="the folder whose files come back (flat)")
    run.add_argument("--budget-s", type=positive_float, default=DEFAULT_BUDGET_S)
    run.add_argument("--stages", type=stage_list, default=None, help="a subset, e.g. sweeps,probe (default all)")
    run.add_argument("--results", type=Path, default=Path("results"))
    run.set_defaults(run=run_campaign)
    collect = verbs.add_parser("collect", help="put what a campaign brought back into results/")
    collect.add_argument("folder", type=Path)
    collect.add_argument("--results", type=Path, default=Path("results"))
    collect.set_defaults(run=run_collect)


def run_plan(args) -> int:
    from harness.campaign.plan import (
        SWEEP_JOBS,
        SWEEP_REPEATS,
        kernels_todo,
        predicted_point_s,
        sweep_progress,
        tests_done,
    )
    from harness.sweep.revision import git_revision
    from kernels.bench import grid
    from perfmodel.hardware import get_gpu, gpu_from_device_name

    hardware = get_gpu(args.gpu)
    kernel_files = [path for path in sorted((args.results / "kernels").glob("gqa_decode-*.jsonl"))
                    if getattr(gpu_from_device_name(path.stem), "name", None) == hardware.name]  # fmt: skip
    tests_file = args.results / "gpu-tests" / f"{hardware.name}.txt"

    print(f"Campaign for {hardware.name} ({hardware.display_name}); results under {args.results}/")
    print(f"tests    : {tests_done(tests_file, git_revision()['git_sha']) or 'to run at this commit'}")
    total_points = len(grid())
    for path in kernel_files or [None]:
        left = kernels_todo(path) if path else total_points
        print(f"kernels  : {total_points - left} of {total_points} points in {path or 'no file yet'}")
    sweeps_file = args.results / "sweeps" / f"torch-{hardware.name}.jsonl"
    print(f"sweeps   : {sweeps_file} (predicted device seconds per point: the warm-up's prefill and "
          f"{SWEEP_REPEATS} timed run{'s' if SWEEP_REPEATS > 1 else ''})")  # fmt: skip
    total_s = 0.0
    for job in SWEEP_JOBS:
        n_points, todo = sweep_progress(job, sweeps_file, hardware)
        seconds = [predicted_point_s(p) for p in todo]
        job_s = sum(s for s in seconds if s is not None)
        total_s += job_s
        unknown = sum(s is None for s in seconds)
        print(f"  {n_points - len(todo):>3} of {n_points:>3} done, ~{job_s:6.0f} s left"
              f"{f' (+{unknown} not predicted)' if unknown else ''}  {job.label()}")  # fmt: skip
    probe = args.results / "hardware" / f"{hardware.name}.toml"
    print(f"probe    : {'in ' + str(probe) if probe.exists() else 'to run'}")
    print(f"Sweeps left: ~{total_s:,.0f} s of device time predicted, ~{total_s / args.budget_s:.1f} calls of "
          f"{args.budget_s:.0f} s for the sweeps alone (model builds and graph captures not counted)")  # fmt: skip
    return 0


def run_stamp(args) -> int:
    from harness.sweep.revision import REPO_ROOT, STAMP_RELATIVE_PATH, write_stamp

    path = write_stamp(REPO_ROOT)
    print(f'Wrote {path}. On the GPU machine (device run, carry ["{STAMP_RELATIVE_PATH.parent}"]):')
    print(DEVICE_COMMAND.format(budget=args.budget_s))
    return 0


def run_campaign(args) -> int:
    import torch

    from harness.campaign.plan import STAGE_NAMES, CampaignFiles, build_stages
    from harness.campaign.run import run_stages, seed_from_results, summary_table
    from harness.sweep.results_io import device_slug
    from harness.sweep.revision import git_revision
    from perfmodel.errors import ArchscaleInputError
    from perfmodel.hardware import gpu_from_device_name

    if not torch.cuda.is_available():
        raise ArchscaleInputError("campaign run measures a CUDA GPU and torch sees none (plan it here: campaign plan)")
    device_name = torch.cuda.get_device_name(0)
    hardware = gpu_from_device_name(device_name)
    if hardware is None:
        raise ArchscaleInputError(f"no datasheet entry for '{device_name}' (perfmodel/data/hardware.toml): the "
                                  "campaign's sweeps predict every point for it")  # fmt: skip
    revision = git_revision()
    if revision["git_sha"] is None or revision["git_dirty"]:
        print(f"archscale: warning: this copy is not a clean commit ({revision}); collect will refuse its rows "
              "(run `archscale campaign stamp` before sending it)", file=sys.stderr)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    files = CampaignFiles(args.out, hardware.name, device_slug(device_name))
    seeded = seed_from_results(files, args.results)
    key = subprocess.run([sys.executable, "tests/benchmarks/machine_key.py"], capture_output=True, text=True)
    machine_key = key.stdout.strip() if key.returncode == 0 else None
    wanted = args.stages or STAGE_NAMES
    if machine_key is None and "benchmarks" in wanted:
        print(f"archscale: warning: no machine key for the benchmarks stage, left out ({key.stderr.strip()[-200:]})",
              file=sys.stderr)  # fmt: skip
        wanted = tuple(name for name in wanted if name != "benchmarks")
    plot_dir = Path("/tmp") / "archscale-campaign"
    plot_dir.mkdir(exist_ok=True)
    stages = build_stages(files, args.results, hardware, revision["git_sha"], machine_key or "", plot_dir, wanted)
    print(f"{device_name} ({hardware.name}); budget {args.budget_s:.0f} s; resumed from "
          f"{', '.join(map(str, seeded)) or 'nothing'}", flush=True)  # fmt: skip
    results = run_stages(stages, args.budget_s, files.log)
    print(summary_table(results))
    return 0


def run_collect(args) -> int:
    from harness.campaign.collect import collect

    placements, left_out = collect(args.folder, args.results)
    for placement in placements:
        print(f"{placement.target}: {placement.what}")
    if left_out:
        print(f"Left out (not results): {', '.join(left_out)}")
    gpus = [p.target.stem.removeprefix("torch-") for p in placements if p.target.parent.name == "sweeps"]
    if gpus:
        print(f"Next: make calibrate-gpu GPU={gpus[0]} (calibrate and compare on its sweeps), then archscale report")
    return 0
