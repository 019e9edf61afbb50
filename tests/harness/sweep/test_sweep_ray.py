"""`archscale sweep --ray`: points as Ray tasks on a real local Ray, the driver alone writing the file. The same rows
as the serial sweep, a SIGKILLed driver that loses nothing and resumes, the per-point resource request, the one-line
errors (TP with our engine, Ray missing, a mistake in the arguments found inside a task), and no Ray without --ray."""

import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest

from harness.cli.main import main
from harness.engines.base import EngineOptions
from harness.sweep.points import KEY_FIELDS, build_points
from harness.sweep.ray_fanout import RayResources, check_cluster, ray_resources, run_sweep_ray
from harness.sweep.results_io import read_jsonl
from perfmodel import PRESETS
from perfmodel.errors import ArchscaleInputError
from perfmodel.hardware import get_gpu, load_hardware_file

ray = pytest.importorskip("ray", reason="Ray is the 'distributed' extra (make test installs it)")

GRID = ["tiny-mha", "tiny-gqa4", "--batch-size", "1,2", "--input-len", "8", "--output-len", "4", "--quiet"]
# Everything in a row but the timings, the time it finished and the run metadata: what a point is, not how fast.
SAME_FIELDS = (*KEY_FIELDS, "status", "message", "concurrency", "waves", "peak_memory_bytes", "predicted",
               "prediction_unavailable", "hardware", "arch", "options")  # fmt: skip


def keys_of(path):
    return [tuple(row[f] for f in KEY_FIELDS) for row in read_jsonl(path)]


def exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_a_ray_sweep_writes_the_rows_of_the_serial_sweep(tmp_path, local_ray, write_probed_hardware):
    hardware = ["--hardware", str(write_probed_hardware())]  # so that rows carry a prediction to compare
    serial, on_ray = tmp_path / "serial.jsonl", tmp_path / "ray.jsonl"
    assert main(["sweep", *GRID, *hardware, "--out", str(serial)]) == 0
    # a bare --ray after the configs: this process's Ray session (the fixture), 1 CPU per point, 2 points at once
    assert main(["sweep", *GRID, *hardware, "--ray", "--ray-cpus-per-point", "1", "--out", str(on_ray)]) == 0
    by_key = {path: {tuple(r[f] for f in KEY_FIELDS): r for r in read_jsonl(path)} for path in (serial, on_ray)}
    assert len(by_key[serial]) == 4 and by_key[serial].keys() == by_key[on_ray].keys()
    for key, row in by_key[on_ray].items():
        assert {f: row.get(f) for f in SAME_FIELDS} == {f: by_key[serial][key].get(f) for f in SAME_FIELDS}
        assert row["status"] == "ok" and row["output_tokens_per_s"] > 0 and row["predicted"]
        metadata = row["metadata"]  # the worker's facts over the driver's: where the point ran, with what
        assert metadata["ray_node_ip"] and metadata["torch_num_threads"] == 1 and metadata["time_utc"]
    # resume: the file holds every key, so nothing is measured and Ray is not even asked
    before = on_ray.read_bytes()
    assert main(["sweep", *GRID, *hardware, "--ray", "--out", str(on_ray)]) == 0
    assert on_ray.read_bytes() == before


def test_a_mistake_found_inside_a_task_stops_the_sweep_with_one_line(tmp_path, local_ray):
    points = build_points([PRESETS["tiny-mha"]], batch_sizes=(1, 2, 3), input_lens=(8,), output_lens=(2,),
                          engine="torch", options=EngineOptions(dtype="int8"), hardware=None)  # fmt: skip
    out = tmp_path / "s.jsonl"
    with pytest.raises(ArchscaleInputError, match="dtype must be one of"):
        run_sweep_ray(points, out, {}, resources=ray_resources("cpu", cpus=1), progress=False)
    assert not out.exists()  # no error rows for every point


def test_a_killed_ray_driver_keeps_its_rows_and_the_rerun_measures_each_key_once(tmp_path):
    out = tmp_path / "sweep.jsonl"
    # ~0.3 s per point (20 timed runs of 32 tokens); by default a CPU point takes all the CPUs, so one at a time.
    # `--ray local`: a new local Ray of this test's own, whatever RAY_ADDRESS or a running cluster says.
    argv = [sys.executable, "-m", "harness", "sweep", "tiny-mha", "tiny-gqa4", "--batch-size", "1,2,3",
            "--input-len", "16", "--output-len", "32", "--repeats", "20", "--quiet", "--ray", "local",
            "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and out.read_bytes().count(b"\n") >= 1) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):  # the Ray daemons the killed driver started: none outlives it
            os.killpg(proc.pid, signal.SIGKILL)
    measured_before = out.read_bytes().count(b"\n")
    assert 1 <= measured_before < 6, "the kill must land mid-way for this test to mean anything"
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{measured_before} already in" in rerun.stdout
    keys = keys_of(out)
    assert len(keys) == 6 and len(set(keys)) == 6
    assert all(line.strip() for line in out.read_text().split("\n")[:-1])  # no blank or partial line left


def test_resources_per_point(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    cpu = ray_resources("cpu")  # a CPU measurement has the driver's machine's cores to itself
    assert cpu == RayResources(num_cpus=12, num_gpus=0) and cpu.task_options() == {"num_cpus": 12, "num_gpus": 0}
    assert ray_resources("cpu", cpus=3).num_cpus == 3
    gpu = ray_resources("cuda")
    assert gpu.task_options() == {"num_cpus": 1, "num_gpus": 1, "max_calls": 1} and gpu.bundles is None
    tp4 = ray_resources("cuda", tp=4, cpus=2)  # for engines with tensor parallelism: one node, one GPU per bundle
    assert tp4.bundles == ({"GPU": 1, "CPU": 2},) * 4 and tp4.strategy == "STRICT_PACK"
    assert (tp4.num_cpus, tp4.num_gpus) == (0, 0) and tp4.per_node() == {"CPU": 8, "GPU": 4}
    with pytest.raises(ArchscaleInputError, match="needs --device cuda"):
        ray_resources("cpu", tp=2)
    # a point must fit on some live node, or Ray would keep it waiting forever
    check_cluster(tp4, [{"CPU": 4, "GPU": 2}, {"CPU": 16, "GPU": 8}])
    with pytest.raises(ArchscaleInputError, match=r"needs 12 CPUs: the largest node has 8 CPUs"):
        check_cluster(cpu, [{"CPU": 8}, {"CPU": 2}])
    with pytest.raises(ArchscaleInputError, match="start nodes with GPUs"):
        check_cluster(gpu, [{"CPU": 64}])


def test_points_pickle(write_probed_hardware):
    """A point crosses to a Ray worker by pickle: with a datasheet GPU or a probed machine, and every option."""
    options = EngineOptions(device="cpu", dtype="bfloat16", repeats=3, seed=7, workspace_bytes=2**20)
    for hardware in (get_gpu("h100"), load_hardware_file(write_probed_hardware()), None):
        for point in build_points([PRESETS["tiny-gqa4"], PRESETS["tiny-mha"]], batch_sizes=(1, 8), input_lens=(16,),
                                  output_lens=(4,), engine="torch", options=options, hardware=hardware,
                                  calibration_file="cal.toml"):  # fmt: skip
            copy = pickle.loads(pickle.dumps(point))
            assert copy == point and copy.key() == point.key() and copy.hardware == hardware


@pytest.mark.parametrize("extra", [[], ["--ray"]])
def test_tp_above_1_with_our_engine_is_one_line_and_exit_2(tmp_path, capsys, extra):
    out = tmp_path / "s.jsonl"
    assert exit_code(["sweep", *GRID, "--tp", "2", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "TP sweeps need an engine with tensor parallelism" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ray", "tiny-mha", "tiny-gqa4"], "not a Ray address"),  # a bare --ray before the configs
        (["tiny-mha", "--ray-cpus-per-point", "2"], "--ray sweeps only"),
        (["tiny-mha", "--ray", "--ray-cpus-per-point", "0"], "positive integer"),
    ],
)
def test_bad_ray_arguments_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    out = tmp_path / "s.jsonl"
    grid = ["--batch-size", "1", "--input-len", "8", "--output-len", "2", "--out", str(out)]
    assert exit_code(["sweep", *argv, *grid]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()


def test_ray_not_installed_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "s.jsonl"
    assert main(["sweep", *GRID, "--ray", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'archscale[distributed]'" in err
    assert not out.exists()


def test_without_ray_flag_nothing_imports_ray(tmp_path):
    out = tmp_path / "s.jsonl"
    script = f"""
import sys
from harness.cli.main import main
grid = {GRID!r} + ["--out", {str(out)!r}]
assert main(["sweep", *grid, "--dry-run"]) == 0
assert main(["sweep", *grid]) == 0
loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
assert not loaded, loaded
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(read_jsonl(out)) == 4
