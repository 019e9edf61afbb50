"""Results files: appends never lose rows, corrupt lines are reported with their place, resume keys work."""

import json

import pytest

from harness.sweep.metadata import run_metadata
from harness.sweep.results_io import append_jsonl, finished_keys, read_jsonl
from perfmodel.errors import ArchscaleInputError


def test_append_then_read_round_trips_rows_in_order(tmp_path):
    path = tmp_path / "sub" / "points.jsonl"
    rows = [{"batch_size": b, "tokens_per_s": 10.0 * b} for b in (1, 8, 64)]
    for row in rows:
        append_jsonl(path, row)
    assert read_jsonl(path) == rows
    assert path.read_text().count("\n") == 3


def test_missing_file_reads_as_empty(tmp_path):
    assert read_jsonl(tmp_path / "nothing.jsonl") == []
    assert finished_keys(tmp_path / "nothing.jsonl", ("a",)) == set()


def test_corrupt_line_is_reported_with_file_and_line_number_and_file_is_untouched(tmp_path):
    path = tmp_path / "points.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, oops\n')
    before = path.read_bytes()
    with pytest.raises(ArchscaleInputError, match=r"points.jsonl:2: corrupt"):
        read_jsonl(path)
    assert path.read_bytes() == before


def test_append_after_torn_last_line_keeps_new_row_on_its_own_line(tmp_path):
    path = tmp_path / "points.jsonl"
    path.write_text('{"a": 1}\n{"a": 2')  # a run killed mid-write
    append_jsonl(path, {"a": 3})
    lines = path.read_text().splitlines()
    assert lines == ['{"a": 1}', '{"a": 2', '{"a": 3}']


def test_finished_keys_selects_the_key_fields(tmp_path):
    path = tmp_path / "points.jsonl"
    append_jsonl(path, {"batch_size": 8, "kv_len": 512, "time_s": 1e-5})
    append_jsonl(path, {"batch_size": 8, "kv_len": 2048, "time_s": 3e-5})
    assert finished_keys(path, ("batch_size", "kv_len")) == {(8, 512), (8, 2048)}


def test_nan_is_rejected_rather_than_written_as_invalid_json(tmp_path):
    with pytest.raises(ValueError):
        append_jsonl(tmp_path / "p.jsonl", {"x": float("nan")})


def test_run_metadata_has_the_reproducibility_fields():
    meta = run_metadata(["archscale", "bench-kernel", "--dry-run"])
    json.dumps(meta)  # serializable as-is
    assert meta["command"] == "archscale bench-kernel --dry-run"
    for field in ("gpu_name", "driver_version", "cuda_version", "torch_version", "triton_version", "git_sha"):
        assert field in meta
    assert meta["python_version"].count(".") == 2


def test_results_being_written_do_not_make_the_run_dirty(tmp_path):
    import subprocess

    from harness.sweep.revision import git_revision

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "a.jsonl").write_text("{}\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    (tmp_path / "results" / "a.jsonl").write_text("{}\n{}\n")
    assert git_revision(tmp_path)["git_dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_revision(tmp_path)["git_dirty"] is True


def test_prepare_resume_sets_a_torn_tail_aside_and_keeps_whole_rows(tmp_path):
    from harness.sweep.results_io import prepare_resume

    path = tmp_path / "points.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, "b"')
    rows, warning = prepare_resume(path)
    assert rows == [{"a": 1}] and "set aside" in warning
    assert path.read_text() == '{"a": 1}\n'
    assert (tmp_path / "points.jsonl.torn").read_text() == '{"a": 2, "b"\n'
    path.write_text('{"a": 1}\n{"a": 2}')  # a whole row that only lacks its newline is kept
    assert prepare_resume(path) == ([{"a": 1}, {"a": 2}], None)
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'
    path.write_text('{"a": ')  # a single partial line, no newline anywhere
    assert prepare_resume(path)[0] == [] and path.read_bytes() == b""


def test_prepare_resume_reports_corruption_before_touching_a_torn_tail(tmp_path):
    from harness.sweep.results_io import prepare_resume

    path = tmp_path / "points.jsonl"
    path.write_bytes(b'{"a": 1}\nnot json\n{"a": 3')
    before = path.read_bytes()
    with pytest.raises(ArchscaleInputError, match=r"points.jsonl:2: corrupt"):
        prepare_resume(path)
    assert path.read_bytes() == before and not (tmp_path / "points.jsonl.torn").exists()
