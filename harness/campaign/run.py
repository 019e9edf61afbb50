"""Run the GPU campaign's stages (harness.campaign.plan) under one deadline, on the lent GPU machine.

Each command runs in a process group of its own, its output appended to its stage's log; at its stage's cap (never
past the deadline less a reserve for the summary) the group is stopped, SIGTERM then SIGKILL, and the next stage
starts. Every stage resumes from its file, so a stopped one loses its point in flight only. A command's failure is
recorded and the stage goes on with its next command; the summary table ends the campaign log and stdout.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.campaign.plan import Command, Stage

RESERVE_S = 15.0  # kept back at the end for the summary and the copy out
MIN_STAGE_S = 30.0  # with less than this left before the deadline a stage is skipped: it would only start and stop
TERM_GRACE_S = 10.0


@dataclass(frozen=True)
class StageResult:
    name: str
    status: str  # done | stopped | failed | skipped | complete
    elapsed_s: float
    detail: str = ""


def run_command(command: Command, timeout_s: float, log_path: Path) -> int | None:
    """Run one command, its stderr (and stdout, unless it has a file of its own) appended to log_path; its exit
    code (127 where it could not start), or None where it was stopped at timeout_s."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    tmp = command.stdout_path.with_name(command.stdout_path.name + ".tmp") if command.stdout_path else None
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(command.argv)}\n")
        log.flush()
        stdout = tmp.open("w", encoding="utf-8") if tmp else log
        try:
            code = _wait(command, stdout, log, env, timeout_s)
        finally:
            if tmp:
                stdout.close()
    if tmp:
        if code == 0:
            tmp.replace(command.stdout_path)
        else:
            tmp.unlink(missing_ok=True)
    return code


def _wait(command: Command, stdout, log, env: dict, timeout_s: float) -> int | None:
    try:
        process = subprocess.Popen(command.argv, stdout=stdout, stderr=log, env=env, start_new_session=True)
    except OSError as exc:  # no such program: recorded like a failing command
        log.write(f"[could not start: {exc}]\n")
        return 127
    try:
        return process.wait(timeout=max(timeout_s, 0.0))
    except subprocess.TimeoutExpired:
        _stop_group(process)
        log.write(f"[stopped at its time cap, {timeout_s:.0f} s]\n")
        return None


def command_label(argv: tuple[str, ...]) -> str:
    """A command's short name: the archscale subcommand, or the module a `python -m` runs."""
    if argv[1:3] == ("-m", "harness") and len(argv) > 3:
        return argv[3]
    return argv[2] if argv[1:2] == ("-m",) and len(argv) > 2 else argv[0]


def _stop_group(process: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=TERM_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def run_stage(stage: Stage, deadline: float) -> StageResult:
    """Run a stage's commands in order until they end or its cap (or the deadline) comes."""
    started = time.monotonic()
    if stage.done:
        return StageResult(stage.name, "complete", 0.0, stage.done)
    left_s = deadline - started - RESERVE_S
    if left_s < MIN_STAGE_S:
        return StageResult(stage.name, "skipped", 0.0, f"{max(left_s, 0):.0f} s left before the deadline")
    cap_s = left_s if stage.cap_s is None else min(stage.cap_s, left_s)
    stage_end = started + cap_s
    failures = []
    for command in stage.commands:
        code = run_command(command, stage_end - time.monotonic(), stage.log_path)
        if code is None:
            return StageResult(stage.name, "stopped", time.monotonic() - started,
                               f"at its cap of {cap_s:.0f} s; the next call resumes it")  # fmt: skip
        if code != 0:
            failures.append(f"{command_label(command.argv)} exit {code}")
    elapsed_s = time.monotonic() - started
    if failures:
        return StageResult(stage.name, "failed", elapsed_s, "; ".join(failures) + f" (see {stage.log_path.name})")
    return StageResult(stage.name, "done", elapsed_s)


def run_stages(stages: list[Stage], budget_s: float, log_path: Path) -> list[StageResult]:
    """All stages under one deadline, budget_s from now; the summary appended to log_path."""
    deadline = time.monotonic() + budget_s
    results = []
    for stage in stages:
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"=== stage {stage.name} ===\n")
        result = run_stage(stage, deadline)
        print(f"[campaign] {result.name}: {result.status} ({result.elapsed_s:.0f} s) {result.detail}", flush=True)
        results.append(result)
    with log_path.open("a", encoding="utf-8") as log:
        log.write(summary_table(results) + "\n")
    return results


def summary_table(results: list[StageResult]) -> str:
    lines = [f"{'stage':<11} {'status':<9} {'seconds':>7}  detail"]
    lines += [f"{r.name:<11} {r.status:<9} {r.elapsed_s:>7.0f}  {r.detail}" for r in results]
    return "\n".join(lines)


def seed_from_results(files, results: Path) -> list[Path]:
    """Copy the results already committed for this GPU into the campaign folder, so each stage resumes from them."""
    from harness.campaign.plan import results_place

    seeded = []
    for path in (files.kernels, files.sweeps):
        committed = results_place(path.name, results)
        if committed is not None and committed.exists() and not path.exists():
            shutil.copyfile(committed, path)
            seeded.append(committed)
    return seeded
