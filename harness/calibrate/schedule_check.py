"""An engine's scheduler as it traced itself against the schedule the model predicts for the same point.

vLLM rows carry what its scheduler did in their first timed run (`scheduler`: steps that scheduled tokens, each
request's first token counted in steps, requests running, preemptions; from vLLM's own per-step statistics,
harness/engines/workers/vllm_offline.py) and the settings it ran with (`engine_config`: max_num_seqs,
max_num_batched_tokens, block_size, num_gpu_blocks). `check_schedules` predicts the same run with
`perfmodel.scheduler.engine_schedule` from those settings (the KV cache: num_gpu_blocks × block_size tokens) and
puts steps and TTFT in steps side by side. No cost enters: this holds the schedule alone, so a miss here is the
scheduler model's, not an efficiency's. Regimes: lockstep (a turn's prompts fit one step), staggered (prompts over
several steps, chunked), capped (more requests than max_num_seqs: turns), KV-bound (more than the KV holds at full
length: paged admission, preemption).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

STEP_TARGET_PCT, STEP_TARGET_STEPS = 5.0, 3  # the model's step count: within 5% or 3 steps of the engine's


@dataclass
class ScheduleCheck:
    config: str
    batch_size: int
    input_len: int
    output_len: int
    regime: str
    max_num_seqs: int
    step_tokens: int
    kv_tokens: int
    measured_steps: int
    predicted_steps: float
    measured_ttft_steps: float | None  # mean over requests
    predicted_ttft_steps: float
    measured_max_running: int | None
    predicted_running: float
    measured_preemptions: int | None

    @property
    def steps_error_pct(self) -> float:
        return 100.0 * (self.predicted_steps / self.measured_steps - 1)

    @property
    def steps_within_target(self) -> bool:
        miss = abs(self.predicted_steps - self.measured_steps)
        return miss <= STEP_TARGET_STEPS or 100.0 * miss / self.measured_steps <= STEP_TARGET_PCT

    @property
    def ttft_steps_error_pct(self) -> float | None:
        if not self.measured_ttft_steps:
            return None
        return 100.0 * (self.predicted_ttft_steps / self.measured_ttft_steps - 1)

    def to_dict(self) -> dict:
        return asdict(self) | {
            "steps_error_pct": self.steps_error_pct,
            "ttft_steps_error_pct": self.ttft_steps_error_pct,
        }


def traced(row: dict) -> bool:
    """A measured row with the engine's scheduler trace and the settings the check needs."""
    config = row.get("engine_config") or {}
    needed = ("max_num_seqs", "max_num_batched_tokens", "block_size", "num_gpu_blocks")
    return (
        row.get("status") == "ok"
        and bool((row.get("scheduler") or {}).get("steps"))
        and all(isinstance(config.get(k), int) and config[k] > 0 for k in needed)
    )


def check_schedules(rows: list[dict]) -> list[ScheduleCheck]:
    """One check per traced row (others are left out), in row order."""
    import numpy as np

    from perfmodel.scheduler import continuous_ttft_steps, engine_schedule

    checks = []
    for row in filter(traced, rows):
        config, trace = row["engine_config"], row["scheduler"]
        n, i, o = row["batch_size"], row["input_len"], row["output_len"]
        cap, budget, block = config["max_num_seqs"], config["max_num_batched_tokens"], config["block_size"]
        kv_tokens = config["num_gpu_blocks"] * block
        full = math.floor(kv_tokens / (i + o))  # requests the KV holds at their full length
        slots = min(full, cap)
        steps, g, q, per_prompt, running, staggered = engine_schedule(
            n, i, o, budget, full_length_slots=slots, max_num_seqs=cap, kv_tokens=kv_tokens, block_tokens=block,
            paged=True,
        )  # fmt: skip
        ttft_mean, *_ = continuous_ttft_steps(n, i, o, running, budget, g, q, per_prompt)
        kv_bound = n > slots and slots < min(cap, n)
        regime = ("KV-bound" if kv_bound else "capped" if n > cap else "staggered" if bool(staggered)
                  else "lockstep")  # fmt: skip
        checks.append(ScheduleCheck(
            config=row["config"], batch_size=n, input_len=i, output_len=o, regime=regime, max_num_seqs=cap,
            step_tokens=budget, kv_tokens=kv_tokens, measured_steps=trace["steps"], predicted_steps=float(np.asarray(steps)),
            measured_ttft_steps=trace.get("ttft_steps_mean"), predicted_ttft_steps=float(np.asarray(ttft_mean)),
            measured_max_running=trace.get("max_running"), predicted_running=float(np.asarray(running)),
            measured_preemptions=trace.get("preemptions"),
        ))  # fmt: skip
    return checks


def format_schedule_checks(checks: list[ScheduleCheck]) -> str:
    """The engine's steps and first-token steps beside the model's, one line per point, and how many meet the
    target."""
    from harness.tables import format_table

    def pct(value):
        return "-" if value is None else f"{value:+.1f}%"

    rows = [(c.config, c.batch_size, f"{c.input_len}/{c.output_len}", c.regime, c.measured_steps,
             f"{c.predicted_steps:.0f}", pct(c.steps_error_pct),
             "-" if c.measured_ttft_steps is None else f"{c.measured_ttft_steps:.1f}", f"{c.predicted_ttft_steps:.1f}",
             pct(c.ttft_steps_error_pct), c.measured_max_running if c.measured_max_running is not None else "-",
             f"{c.predicted_running:.0f}", c.measured_preemptions if c.measured_preemptions is not None else "-")
            for c in checks]  # fmt: skip
    header = ("config", "batch", "in/out", "regime", "steps", "model", "err", "TTFT steps", "model", "err",
              "running", "model", "preempted")  # fmt: skip
    within = sum(c.steps_within_target for c in checks)
    ttft_errors = [abs(c.ttft_steps_error_pct) for c in checks if c.ttft_steps_error_pct is not None]
    summary = (
        f"Step count within {STEP_TARGET_PCT:g}% or {STEP_TARGET_STEPS} steps of the engine's: {within} of "
        f"{len(checks)}"
    )
    if ttft_errors:
        summary += (f"; TTFT in steps |error| median {statistics.median(ttft_errors):.1f}%, "
                    f"max {max(ttft_errors):.1f}%")  # fmt: skip
    title = "Scheduler: the engine's own steps (its per-step statistics) against the model's schedule, no costs"
    return "\n".join([title, format_table(header, rows), summary])
