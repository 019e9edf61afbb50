"""The GPU campaign's plan: what to measure on a lent GPU, in which order, into which files, and what is done.

A GPU machine is lent for minutes at a time: bare, with this checkout copied to it without `.git` (the commit travels
as a source stamp, harness.sweep.revision) and one flat folder whose files come back (at most 8). So the campaign is
one command that runs stages in order under a deadline (harness.campaign.run), each resuming from its own file,
which `run` first seeds from the results already committed for that GPU; `collect` (harness.campaign.collect) puts
what came back into results/. A finished stage is skipped, a stopped one continues in the next call.

Stages, in the order of what their figures are for:
  tests       pytest -m gpu and the Triton kernel tests, compiled          -> gpu-tests-<gpu>.txt
  kernels     bench-kernel's whole grid (ours vs SDPA and FlexAttention)  -> gqa_decode-<device>.jsonl
  sweeps      our engine over the paper's 1B and 3B models (LLaMA, Panda, Surefire) and two Qwens, in 512 / out 512
              and in 4096 / out 1024: batch 1, 16, 64, 256 first, family by family, then the batch sizes between
                                                                           -> torch-<gpu>.jsonl
  probe       this GPU's roofline and our engine's overheads               -> hardware-<gpu>.toml and .json
  benchmarks  the GPU benchmarks' speed baseline for `make bench`          -> benchmarks--<machine key>.json
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

FAMILY_1B = ("llama-3.2-1b", "panda-1b", "surefire-1b")
FAMILY_3B = ("llama-3.2-3b", "panda-3b", "surefire-3b")
QWEN = ("qwen2.5-1.5b", "qwen3-0.6b")
FIRST_BATCH_SIZES = (1, 16, 64, 256)  # each ratio curve's shape in four points, for every family first
BETWEEN_BATCH_SIZES = (2, 4, 8, 32, 128)
SHORT, LONG = (512, 512), (4096, 1024)  # (input_len, output_len)
# One timed run per point after the warm-up, so the campaign takes few device calls: two would nearly double it (the
# plan predicts ~1,560 device seconds of sweeps with one, ~2,700 with two). Each row's machine reference, timed
# around the point, still records the GPU's state.
SWEEP_REPEATS = 1

STAGE_NAMES = ("tests", "kernels", "sweeps", "probe", "benchmarks")
# Each stage's time cap in seconds (None: whatever the deadline leaves); a stage also ends by the deadline.
STAGE_CAP_S = {"tests": 150.0, "kernels": 180.0, "sweeps": None, "probe": 150.0, "benchmarks": 90.0}


@dataclass(frozen=True)
class SweepJob:
    """One `archscale sweep` of the campaign: configs × batch sizes at one workload, interleaved."""

    configs: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    input_len: int
    output_len: int

    def label(self) -> str:
        batches = ",".join(map(str, self.batch_sizes))
        return f"{', '.join(self.configs)} · b {batches} · in {self.input_len} / out {self.output_len}"


# In order: the four-point curves of the 1B family, then 3B, then the Qwens (held out when calibrating), then the
# batch sizes between. The 3B family at in 4096 / out 1024 holds ~115 sequences on an 80 GB GPU (predict's 'max
# seqs'): batch 128 and 256 run in waves, so they come last.
SWEEP_JOBS = (
    SweepJob(FAMILY_1B, FIRST_BATCH_SIZES, *SHORT),
    SweepJob(FAMILY_1B, FIRST_BATCH_SIZES, *LONG),
    SweepJob(FAMILY_3B, FIRST_BATCH_SIZES, *SHORT),
    SweepJob(FAMILY_3B, (1, 16, 64), *LONG),
    SweepJob(QWEN, FIRST_BATCH_SIZES, *SHORT),
    SweepJob(QWEN, FIRST_BATCH_SIZES, *LONG),
    SweepJob(FAMILY_1B + FAMILY_3B + QWEN, BETWEEN_BATCH_SIZES, *SHORT),
    SweepJob(FAMILY_1B + QWEN, BETWEEN_BATCH_SIZES, *LONG),
    SweepJob(FAMILY_3B, (2, 4, 8, 32, 128, 256), *LONG),
)


@dataclass(frozen=True)
class Command:
    """A process of a stage: its arguments, and the file its stdout becomes (written whole, on success only)."""

    argv: tuple[str, ...]
    stdout_path: Path | None = None


@dataclass(frozen=True)
class Stage:
    name: str
    commands: tuple[Command, ...]
    log_path: Path  # where the commands' output goes (appended)
    cap_s: float | None
    done: str | None = None  # why there is nothing left to do; None: run it


@dataclass(frozen=True)
class CampaignFiles:
    """The campaign's files in the folder that comes back, flat and named for the GPU (`gpu`: the datasheet key,
    e.g. h100-sxm; `device`: the device's own name as a slug)."""

    out: Path
    gpu: str
    device: str

    @property
    def log(self) -> Path:
        return self.out / "campaign.log"

    @property
    def tests(self) -> Path:
        return self.out / f"gpu-tests-{self.gpu}.txt"

    @property
    def kernels(self) -> Path:
        return self.out / f"gqa_decode-{self.device}.jsonl"

    @property
    def sweeps(self) -> Path:
        return self.out / f"torch-{self.gpu}.jsonl"

    @property
    def probe(self) -> Path:
        return self.out / f"hardware-{self.gpu}.toml"

    @property
    def probe_json(self) -> Path:
        return self.probe.with_suffix(".json")

    def benchmarks(self, machine_key: str) -> Path:
        return self.out / f"benchmarks--{machine_key.replace('/', '--')}.json"


# A file of the campaign's folder -> its place under results/ (collect; run seeds the folder from there).
_RESULTS_PLACES = (
    (re.compile(r"gpu-tests-([a-z0-9.-]+)\.txt"), "gpu-tests/{0}.txt"),
    (re.compile(r"(gqa_decode-[a-z0-9.-]+\.jsonl)"), "kernels/{0}"),
    (re.compile(r"(torch-[a-z0-9.-]+\.jsonl)"), "sweeps/{0}"),
    (re.compile(r"hardware-([a-z0-9.-]+\.(?:toml|json))"), "hardware/{0}"),
    (re.compile(r"benchmarks--([A-Za-z0-9._-]+?)--([a-z0-9.-]+\.json)"), "benchmarks/{0}/{1}"),
)


def results_place(name: str, results: Path) -> Path | None:
    """Where a file the campaign wrote belongs under `results`, or None for one that stays out (the log)."""
    for pattern, place in _RESULTS_PLACES:
        match = pattern.fullmatch(name)
        if match:
            return results / place.format(*match.groups())
    return None


def test_log_metadata(text: str) -> dict:
    """The run metadata on a GPU test log's first line (`python -m harness.sweep.metadata`), or {} where it has none."""
    try:
        meta = json.loads(text.split("\n", 1)[0].removeprefix("# metadata: "))
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def tests_done(results_file: Path, git_sha: str | None) -> str | None:
    """The tests stage is done where results/ holds its log for this very commit."""
    try:
        recorded = test_log_metadata(results_file.read_text(encoding="utf-8")).get("git_sha")
    except OSError:
        return None
    return f"run at this commit already ({results_file})" if git_sha and recorded == git_sha else None


def kernels_todo(kernels_file: Path) -> int:
    """Points of bench-kernel's default grid not yet in the file."""
    from harness.sweep.results_io import finished_keys
    from kernels.bench import KEY_FIELDS, grid

    done = finished_keys(kernels_file, KEY_FIELDS)
    return sum(point.key() not in done for point in grid())


def sweep_points(job: SweepJob, hardware):
    """The job's points as `archscale sweep --device cuda` builds them (bf16, Triton attention, CUDA graphs)."""
    from argparse import Namespace

    from harness.sweep.options import engine_options
    from harness.sweep.points import build_points
    from perfmodel import resolve_arch

    args = Namespace(engine="torch", dtype=None, attention=None, no_cuda_graph=False, block_size=None,
                     max_prefill_tokens=None, repeats=SWEEP_REPEATS, seed=0)  # fmt: skip
    options = engine_options(args, "cuda", hardware)
    return build_points([resolve_arch(name) for name in job.configs], batch_sizes=job.batch_sizes,
                        input_lens=[job.input_len], output_lens=[job.output_len], engine="torch", options=options,
                        hardware=hardware, order="interleaved")  # fmt: skip


def sweep_progress(job: SweepJob, sweeps_file: Path, hardware) -> tuple[int, list]:
    """(the job's point count, its points not yet in the sweeps file)."""
    from harness.sweep.points import plan_sweep

    points = sweep_points(job, hardware)
    return len(points), plan_sweep(points, sweeps_file, dry_run=True).todo


def predicted_point_s(point) -> float | None:
    """Device seconds a sweep point is predicted to take: its timed runs and the warm-up's prefill (model build and
    graph capture not counted); None where it cannot be predicted (e.g. it does not fit)."""
    from harness.sweep.points import predict_point

    prediction, _ = predict_point(point)
    if prediction is None:
        return None
    w = point.workload
    run_s = w.batch_size * (w.input_len + w.output_len) / prediction["total_tokens_per_s"]
    return SWEEP_REPEATS * run_s + prediction["ttft_p99_s"]


def build_stages(files: CampaignFiles, results: Path, hardware, git_sha: str | None, machine_key: str,
                 plot_dir: Path, wanted=STAGE_NAMES) -> list[Stage]:  # fmt: skip
    """The stages asked for, in STAGE_NAMES order, with what each has left (their files already seeded)."""
    py = (sys.executable,)
    archscale, pytest = (*py, "-m", "harness"), (*py, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    benchmarks_file = files.benchmarks(machine_key)

    def tests() -> Stage:  # the log's first line: the run's metadata (what tests_done reads), then both runs' output
        commands = (Command((*py, "-m", "harness.sweep.metadata"), stdout_path=files.tests),
                    Command((*pytest, "-m", "gpu", "tests")), Command((*pytest, "tests/kernels")))  # fmt: skip
        done = tests_done(results_place(files.tests.name, results), git_sha)
        return Stage("tests", commands, files.tests, STAGE_CAP_S["tests"], done)

    def kernels() -> Stage:
        bench = (*archscale, "bench-kernel", "--out", str(files.kernels), "--plot", str(plot_dir / "kernels.png"))
        done = None if kernels_todo(files.kernels) else "every point measured"
        return Stage("kernels", (Command(bench),), files.log, STAGE_CAP_S["kernels"], done)

    def sweeps() -> Stage:
        commands = tuple(Command((*archscale, *_sweep_args(job, files.sweeps)))
                         for job in SWEEP_JOBS if sweep_progress(job, files.sweeps, hardware)[1])  # fmt: skip
        done = None if commands else "every point measured"
        return Stage("sweeps", commands, files.log, STAGE_CAP_S["sweeps"], done)

    def probe() -> Stage:
        probe_args = (*archscale, "probe", "--device", "cuda", "--out", str(files.probe), "--json")
        done = _exists(results_place(files.probe.name, results))
        return Stage("probe", (Command(probe_args, files.probe_json),), files.log, STAGE_CAP_S["probe"], done)

    def benchmarks() -> Stage:
        bench = (*pytest, "tests/benchmarks", "-m", "gpu", "--benchmark-enable", "--benchmark-only",
                 f"--benchmark-json={benchmarks_file}")  # fmt: skip
        done = _exists(results_place(benchmarks_file.name, results))
        return Stage("benchmarks", (Command(bench),), files.log, STAGE_CAP_S["benchmarks"], done)

    builders = {"tests": tests, "kernels": kernels, "sweeps": sweeps, "probe": probe, "benchmarks": benchmarks}
    return [builders[name]() for name in STAGE_NAMES if name in wanted]


def _sweep_args(job: SweepJob, out: Path) -> tuple[str, ...]:
    """`archscale sweep` arguments of a job, on the GPU, appending to `out`."""
    return ("sweep", *job.configs, "--device", "cuda", "--batch-size", ",".join(map(str, job.batch_sizes)),
            "--input-len", str(job.input_len), "--output-len", str(job.output_len), "--repeats", str(SWEEP_REPEATS),
            "--order", "interleaved", "--quiet", "--out", str(out))  # fmt: skip


def _exists(path: Path) -> str | None:
    return f"in results/ already ({path}; remove it to measure again)" if path.exists() else None
