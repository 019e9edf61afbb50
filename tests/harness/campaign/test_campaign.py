"""`archscale campaign`: the stages a lent GPU runs under one deadline, their resume from results/, the commit stamp
that stands in for .git on the GPU machine, and collect, which must lose no committed row."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.campaign import run as campaign_run
from harness.campaign.collect import collect
from harness.campaign.plan import (
    SWEEP_JOBS,
    CampaignFiles,
    Command,
    Stage,
    build_stages,
    results_place,
    sweep_points,
)
from harness.cli.main import main
from harness.sweep.revision import STAMP_RELATIVE_PATH, git_revision, stamped_revision, write_stamp
from perfmodel.errors import ArchscaleInputError
from perfmodel.hardware import get_gpu

REPO = Path(__file__).resolve().parents[3]
COMMITTED_SWEEP = REPO / "results" / "sweeps" / "torch-cpu-epyc-2c-interleaved-r4.jsonl"
PY = sys.executable


def python(code: str, stdout_path=None) -> Command:
    return Command((PY, "-c", code), stdout_path)


# ---- where each file goes ----


def test_each_campaign_file_has_its_place_under_results_and_the_log_has_none(tmp_path):
    files = CampaignFiles(tmp_path, "h100-sxm", "nvidia-h100-80gb-hbm3")
    results = Path("results")
    assert results_place(files.sweeps.name, results) == results / "sweeps" / "torch-h100-sxm.jsonl"
    assert results_place(files.kernels.name, results) == results / "kernels" / "gqa_decode-nvidia-h100-80gb-hbm3.jsonl"
    assert results_place(files.tests.name, results) == results / "gpu-tests" / "h100-sxm.txt"
    assert results_place(files.probe.name, results) == results / "hardware" / "h100-sxm.toml"
    assert results_place(files.probe_json.name, results) == results / "hardware" / "h100-sxm.json"
    key = "Linux-CPython-3.12-64bit/intel-xeon-16cpus-nvidia-h100-80gb-hbm3"
    assert results_place(files.benchmarks(key).name, results) == results / "benchmarks" / f"{key}.json"
    assert results_place(files.log.name, results) is None
    assert results_place("torch-h100-sxm.jsonl.torn", results) is None


# ---- the runner: caps, process groups, failures, the deadline ----


def running(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped by an init that does not reap, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_stage_stopped_at_its_cap_takes_its_children_with_it_and_the_next_stage_runs(tmp_path):
    pid_file, log = tmp_path / "child.pid", tmp_path / "campaign.log"
    sleeper = Command(("bash", "-c", f"sleep 60 & echo $! > {pid_file}; wait"))
    stages = [Stage("slow", (sleeper,), log, cap_s=1.0), Stage("next", (python("print('ran')"),), log, cap_s=None)]
    started = time.monotonic()
    results = campaign_run.run_stages(stages, budget_s=60 + campaign_run.RESERVE_S, log_path=log)
    assert time.monotonic() - started < 30
    assert [(r.name, r.status) for r in results] == [("slow", "stopped"), ("next", "done")]
    time.sleep(0.2)
    assert not running(int(pid_file.read_text()))  # the grandchild died with its process group
    text = log.read_text()
    assert "[stopped at its time cap" in text and "ran\n" in text
    assert text.rstrip().splitlines()[-1].startswith("next ")  # the summary table ends the log


def test_a_failing_command_is_recorded_and_its_stage_goes_on(tmp_path):
    log = tmp_path / "campaign.log"
    stage = Stage("mixed", (python("raise SystemExit(3)"), python("print('second')")), log, cap_s=None)
    [result] = campaign_run.run_stages([stage], budget_s=60 + campaign_run.RESERVE_S, log_path=log)
    assert result.status == "failed" and "exit 3" in result.detail
    assert "second\n" in log.read_text()


def test_a_program_that_cannot_start_is_a_failure_named_in_the_summary(tmp_path):
    log = tmp_path / "log"
    missing = Command(("/nonexistent/archscale-tool", "-m", "harness", "sweep"))
    [result] = campaign_run.run_stages([Stage("sweeps", (missing,), log, None)], 60 + campaign_run.RESERVE_S, log)
    assert result.status == "failed" and "sweep exit 127" in result.detail and "could not start" in log.read_text()


def test_a_command_with_its_own_file_writes_it_whole_and_only_on_success(tmp_path):
    log, good, bad = tmp_path / "log", tmp_path / "good.json", tmp_path / "bad.json"
    bad.write_text("the earlier file\n")
    stage = Stage("files", (python("print('{}')", good), python("print('half'); raise SystemExit(1)", bad)), log, None)
    campaign_run.run_stages([stage], budget_s=60 + campaign_run.RESERVE_S, log_path=log)
    assert good.read_text() == "{}\n"
    assert bad.read_text() == "the earlier file\n" and not list(tmp_path.glob("*.tmp"))


def test_stages_past_the_deadline_are_skipped_and_finished_ones_are_not_run(tmp_path, monkeypatch):
    monkeypatch.setattr(campaign_run, "MIN_STAGE_S", 5.0)
    log, marker = tmp_path / "log", tmp_path / "ran"
    stages = [
        Stage("finished", (python(f"open({str(marker)!r}, 'w')"),), log, None, done="every point measured"),
        Stage("late", (python(f"open({str(marker)!r}, 'w')"),), log, None),
    ]
    results = campaign_run.run_stages(stages, budget_s=campaign_run.RESERVE_S + 1.0, log_path=log)
    assert [r.status for r in results] == ["complete", "skipped"] and not marker.exists()


def test_a_real_cpu_sweep_runs_as_a_stage_and_a_second_run_resumes_it(tmp_path):
    log, out = tmp_path / "log", tmp_path / "torch-cpu.jsonl"
    sweep = (PY, "-m", "harness", "sweep", "tiny-mha", "--device", "cpu", "--batch-size", "1,2", "--input-len", "8",
             "--output-len", "2", "--quiet", "--out", str(out))  # fmt: skip
    [first] = campaign_run.run_stages([Stage("sweeps", (Command(sweep),), log, None)], 300.0, log)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert first.status == "done" and [r["batch_size"] for r in rows] == [1, 2]
    campaign_run.run_stages([Stage("sweeps", (Command(sweep),), log, None)], 300.0, log)
    assert out.read_text().count("\n") == 2 and "2 already in" in log.read_text()


# ---- the stages built for a GPU, resuming from results/ ----


def test_stages_resume_from_results_and_skip_what_is_done(tmp_path):
    results, out = tmp_path / "results", tmp_path / "out"
    out.mkdir()
    files = CampaignFiles(out, "h100-sxm", "nvidia-h100-80gb-hbm3")
    hardware = get_gpu("h100-sxm")
    committed_sweeps = results / "sweeps" / files.sweeps.name
    committed_sweeps.parent.mkdir(parents=True)
    first_job = SWEEP_JOBS[0]
    committed_sweeps.write_text("".join(json.dumps(p.key_dict()) + "\n" for p in sweep_points(first_job, hardware)))
    (results / "hardware").mkdir()
    (results / "hardware" / "h100-sxm.toml").write_text("[h100-sxm]\n")
    (results / "gpu-tests").mkdir()
    (results / "gpu-tests" / "h100-sxm.txt").write_text('# metadata: {"git_sha": "abc"}\n1 passed\n')

    assert campaign_run.seed_from_results(files, results) == [committed_sweeps]
    assert files.sweeps.read_bytes() == committed_sweeps.read_bytes()
    stages = {s.name: s for s in build_stages(files, results, hardware, "abc", "os/machine", tmp_path)}
    assert stages["tests"].done and stages["probe"].done and stages["benchmarks"].done is None
    assert stages["kernels"].done is None and "--out" in stages["kernels"].commands[0].argv
    sweeps = [c.argv for c in stages["sweeps"].commands]
    assert len(sweeps) == len(SWEEP_JOBS) - 1  # the committed job is not run again
    assert all("--device" in a and "cuda" in a and a[-1] == str(files.sweeps) for a in sweeps)
    assert all(tuple(a[4 : 4 + len(job.configs)]) == job.configs for a, job in zip(sweeps, SWEEP_JOBS[1:], strict=True))
    at_another_commit = build_stages(files, results, hardware, "def", "os/machine", tmp_path, wanted=("tests",))
    assert [s.name for s in at_another_commit] == ["tests"] and at_another_commit[0].done is None


def test_the_plan_covers_the_paper_models_at_both_workloads_and_every_batch_size():
    points = {(c, j.batch_sizes, j.input_len, j.output_len) for j in SWEEP_JOBS for c in j.configs}
    configs = {c for c, *_ in points}
    assert configs == {"llama-3.2-1b", "panda-1b", "surefire-1b", "llama-3.2-3b", "panda-3b", "surefire-3b",
                       "qwen2.5-1.5b", "qwen3-0.6b"}  # fmt: skip
    for config in configs:
        for workload in ((512, 512), (4096, 1024)):
            batches = {b for c, bs, i, o in points if c == config and (i, o) == workload for b in bs}
            assert batches == {1, 2, 4, 8, 16, 32, 64, 128, 256}, (config, workload)


def test_plan_prints_every_job_with_its_predicted_device_time(tmp_path, capsys):
    assert main(["campaign", "plan", "--gpu", "h200", "--results", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert text.count("  0 of ") == len(SWEEP_JOBS) and "h200" in text and "calls of 520 s" in text


# ---- the commit stamp: the rows' git SHA where the copy has no .git ----


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)  # fmt: skip


def test_a_stamped_copy_without_git_reports_its_commit_and_any_change(tmp_path):
    repo = tmp_path / "repo"
    (repo / "harness").mkdir(parents=True)
    (repo / "harness" / "code.py").write_text("x = 1\n")
    (repo / "results").mkdir()
    (repo / "results" / "old.jsonl").write_text("{}\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "c")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    (repo / "harness" / "code.py").write_text("x = 2\n")
    with pytest.raises(ArchscaleInputError, match="commit them first"):
        write_stamp(repo)
    _git(repo, "checkout", "-q", "--", ".")
    write_stamp(repo)
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git"))
    (copy / "results" / "new.jsonl").write_text("{}\n")  # results being written do not make it dirty
    assert git_revision(copy) == {"git_sha": sha, "git_dirty": False}
    (copy / "harness" / "code.py").write_text("x = 3\n")
    assert stamped_revision(copy) == {"git_sha": sha, "git_dirty": True}
    (copy / "harness" / "code.py").unlink()
    assert stamped_revision(copy)["git_dirty"] is True
    (copy / STAMP_RELATIVE_PATH).unlink()
    assert git_revision(copy) == {"git_sha": None, "git_dirty": None}


# ---- collect: into results/, nothing lost ----


CLEAN_PROBE_METADATA = '\n[h100-sxm.metadata]\ngit_sha = "abc"\ngit_dirty = false\n'


def _rows(count: int, **metadata) -> list[dict]:
    with COMMITTED_SWEEP.open() as f:
        rows = [json.loads(next(f)) for _ in range(count)]
    return [{**row, "metadata": {**row["metadata"], **metadata}} for row in rows]


def _jsonl(rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def _came_back(tmp_path: Path, sweep_rows, probe: str) -> tuple[Path, Path]:
    """results/ and the folder a campaign's files came back in: its sweeps, its probe and its log."""
    results, back = tmp_path / "results", tmp_path / "back"
    back.mkdir()
    (back / "torch-h100-sxm.jsonl").write_text(_jsonl(sweep_rows))
    (back / "hardware-h100-sxm.toml").write_text(probe)
    (back / "campaign.log").write_text("stage  status\n")
    return results, back


def test_collect_appends_new_rows_to_the_committed_file_and_leaves_the_log_out(tmp_path, write_probed_hardware):
    rows = _rows(3)
    probe = write_probed_hardware(name="h100-sxm").read_text() + CLEAN_PROBE_METADATA
    results, back = _came_back(tmp_path, rows, probe=probe)
    (back / "gpu-tests-h100-sxm.txt").write_text('# metadata: {"git_sha": "abc", "git_dirty": false}\n1 passed\n')
    (results / "sweeps").mkdir(parents=True)
    (results / "sweeps" / "torch-h100-sxm.jsonl").write_text(_jsonl(rows[:1]))
    placements, left_out = collect(back, results)
    assert (results / "sweeps" / "torch-h100-sxm.jsonl").read_text() == _jsonl(rows)
    assert any(p.what.startswith("2 new rows (3 in all)") for p in placements)
    assert (results / "hardware" / "h100-sxm.toml").read_text() == probe
    assert (results / "gpu-tests" / "h100-sxm.txt").read_text().endswith("1 passed\n")
    assert left_out == ["campaign.log"]


@pytest.mark.parametrize(
    ("case", "message"),
    [("drops a committed row", "would lose"), ("dirty row", "outside a clean commit"),
     ("no sha", "outside a clean commit"), ("probe differs", "remove it first"), ("bad probe", "hardware"),
     ("dirty test log", "outside a clean commit"), ("dirty probe", "outside a clean commit")],
)  # fmt: skip
def test_collect_refuses_what_would_lose_data_or_misname_a_commit_and_writes_nothing(tmp_path, capsys, case, message,
                                                                                     write_probed_hardware):  # fmt: skip
    rows = _rows(3)
    returned = {"drops a committed row": rows[1:], "dirty row": rows[:1] + _rows(3, git_dirty=True)[1:],
                "no sha": rows[:1] + _rows(3, git_sha=None)[1:]}.get(case, rows)  # fmt: skip
    probe = write_probed_hardware(name="h100-sxm", bandwidth=3.0e12).read_text() + CLEAN_PROBE_METADATA
    probe = {"bad probe": "[h100-sxm]\n", "dirty probe": probe.replace("git_dirty = false", "git_dirty = true")}.get(
        case, probe
    )
    results, back = _came_back(tmp_path, returned, probe=probe)
    if case == "dirty test log":
        (back / "gpu-tests-h100-sxm.txt").write_text('# metadata: {"git_sha": "abc", "git_dirty": true}\n')
    (results / "sweeps").mkdir(parents=True)
    committed = results / "sweeps" / "torch-h100-sxm.jsonl"
    committed.write_text(_jsonl(rows[:1]))
    if case == "probe differs":
        (results / "hardware").mkdir()
        (results / "hardware" / "h100-sxm.toml").write_text(write_probed_hardware(name="h100-sxm").read_text())
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    assert main(["campaign", "collect", str(back), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err
    assert {p: p.read_bytes() for p in results.rglob("*") if p.is_file()} == before


def test_run_names_its_files_by_the_gpu_found_seeds_them_and_ends_with_the_summary(tmp_path, monkeypatch, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("its probe stage would measure the GPU")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H100 80GB HBM3")
    results, out = tmp_path / "results", tmp_path / "out"
    (results / "sweeps").mkdir(parents=True)
    (results / "sweeps" / "torch-h100-sxm.jsonl").write_text(_jsonl(_rows(1)))
    argv = ["campaign", "run", "--out", str(out), "--stages", "probe", "--results", str(results), "--budget-s", "100"]
    assert main(argv) == 0  # the probe's own process sees no GPU here and fails: recorded, the campaign goes on
    text = capsys.readouterr().out
    assert "(h100-sxm)" in text and "resumed from" in text and "torch-h100-sxm.jsonl" in text
    assert "probe: failed" in text and text.rstrip().splitlines()[-1].startswith("probe ")
    assert (out / "torch-h100-sxm.jsonl").read_text() == _jsonl(_rows(1))
    assert "=== stage probe ===" in (out / "campaign.log").read_text()
    assert not (out / "hardware-h100-sxm.toml").exists()
