"""harness/calibrate/schedule_check.py and `archscale schedule`: an engine's traced steps beside the model's schedule
for the settings the engine reported, by regime; rows without a trace are left out; none at all is one line."""

import sys
from pathlib import Path

import pytest

from harness.calibrate.schedule_check import check_schedules, format_schedule_checks
from harness.cli.main import main

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "perfmodel"))
from scheduler_reference import step_through  # noqa: E402  (tests/perfmodel: the policy stepped through)


def traced_row(n, i, o, *, max_num_seqs=256, budget=4096, blocks=100_000, block=128, steps=None, ttft=None):
    """A vLLM row as the adapter writes it, its trace from the reference policy unless given."""
    if steps is None:
        trace, first = step_through(n, i, o, max_num_seqs, budget)
        steps, ttft = len(trace), sum(first) / len(first)
    return {"config": "tiny-gqa4", "status": "ok", "batch_size": n, "input_len": i, "output_len": o,
            "engine_config": {"max_num_seqs": max_num_seqs, "max_num_batched_tokens": budget,
                              "num_gpu_blocks": blocks, "block_size": block},
            "scheduler": {"steps": steps, "ttft_steps_mean": ttft, "max_running": min(n, max_num_seqs),
                          "preemptions": 0}}  # fmt: skip


@pytest.mark.parametrize(
    ("case", "regime"),
    [((8, 128, 64), "lockstep"), ((8, 2048, 32), "staggered"), ((4, 6000, 16), "staggered"),
     ((300, 32, 32), "capped")],
)  # fmt: skip
def test_the_reference_policy_meets_the_step_target_in_each_regime(case, regime):
    (check,) = check_schedules([traced_row(*case)])
    assert check.regime == regime and check.steps_within_target
    miss = abs(check.predicted_ttft_steps - check.measured_ttft_steps)  # as tests/perfmodel/test_scheduler.py asks
    assert miss <= max(1.0, 0.05 * check.measured_ttft_steps)


def test_a_kv_cache_too_small_for_the_batch_is_the_kv_bound_regime():
    (check,) = check_schedules([traced_row(24, 512, 256, blocks=40, steps=900, ttft=200.0)])
    assert check.regime == "KV-bound" and check.kv_tokens == 40 * 128
    assert check.predicted_running > 5120 // 768  # paged: more run than fit at full length


def test_a_step_count_far_from_the_models_misses_the_target_and_says_so():
    row = traced_row(8, 128, 64, steps=90, ttft=1.0)  # the model: 64 steps
    (check,) = check_schedules([row])
    assert not check.steps_within_target and check.steps_error_pct == pytest.approx(100 * (64 / 90 - 1))
    assert "within 5% or 3 steps of the engine's: 0 of 1" in format_schedule_checks([check])


def test_rows_without_a_trace_or_the_settings_are_left_out():
    untraced = traced_row(8, 128, 64) | {"scheduler": None}
    unset = traced_row(8, 128, 64)
    unset["engine_config"].pop("num_gpu_blocks")
    failed = traced_row(8, 128, 64) | {"status": "oom"}
    assert check_schedules([untraced, unset, failed]) == []


def test_schedule_on_a_sweep_without_traces_is_one_line_and_exit_2(capsys):
    ours = Path(__file__).resolve().parents[3] / "results" / "sweeps" / "torch-cpu-xeon-2c.jsonl"  # our engine's
    assert main(["schedule", str(ours)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "scheduler trace" in err
