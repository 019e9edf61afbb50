"""`archscale predict` and `archscale gpus` as a user runs them: JSON keys, tables, and one-line errors."""

import json
import subprocess
import sys

import pytest

from harness.cli.main import main
from perfmodel import PRESETS

REQUIRED_KEYS = {
    "output_tokens_per_s", "total_tokens_per_s", "ttft_s", "tpot_s", "peak_memory_bytes", "max_concurrent_seqs",
    "prefill_bound", "decode_bound", "n_params_non_embedding", "mlp_attn_ratio", "calibrated",
}  # fmt: skip
WORKLOAD = ["--input-len", "4096", "--output-len", "1024"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_for_one_point_is_one_object(capsys):
    code, out, _ = run_cli(
        capsys, "predict", "llama-3.2-1b", "--gpu", "h200", "--batch-size", "128", *WORKLOAD, "--json"
    )
    assert code == 0
    row = json.loads(out)
    assert set(row) >= REQUIRED_KEYS
    assert row["calibrated"] is False
    assert row["decode_bound"] in ("compute", "memory") and row["prefill_bound"] in ("compute", "memory")
    assert row["mlp_attn_ratio"] == pytest.approx(4.8)
    assert row["output_tokens_per_s"] > 0


def test_batch_size_list_gives_a_curve_that_rises(capsys):
    code, out, _ = run_cli(capsys, "predict", "llama-3.2-1b", "--gpu", "h100", "--batch-size", "1,8,64", *WORKLOAD,
                           "--json")  # fmt: skip
    rows = json.loads(out)
    assert code == 0 and [r["batch_size"] for r in rows] == [1, 8, 64]
    tokens_per_s = [r["output_tokens_per_s"] for r in rows]
    assert tokens_per_s == sorted(tokens_per_s)


def test_config_json_path_and_table_output(capsys, tmp_path):
    path = tmp_path / "my-model" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(PRESETS["panda-1b"].to_hf_config()))
    code, out, _ = run_cli(capsys, "predict", str(path), "llama-3.2-1b", "--gpu", "a100-80gb", "--batch-size", "16",
                           *WORKLOAD, "--breakdown")  # fmt: skip
    assert code == 0
    assert "my-model" in out and "llama-3.2-1b" in out and "out tok/s" in out and "attention" in out


def test_gpus_lists_every_datasheet_gpu(capsys):
    code, out, _ = run_cli(capsys, "gpus", "--json")
    names = {gpu["name"] for gpu in json.loads(out)}
    assert code == 0 and {"a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "b200"} <= names


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "llama-3.2-1b", "--gpu", "h300", "--batch-size", "1", *WORKLOAD], "did you mean: h200"),
        (["predict", "lama-3.2-1b", "--gpu", "h200", "--batch-size", "1", *WORKLOAD], "did you mean"),
        (["predict", "llama-3.2-1b", "--gpu", "h200", "--batch-size", "0", *WORKLOAD], "positive integer"),
        (["predict", "llama-3.2-1b", "--gpu", "h200", "--batch-size", "-4", *WORKLOAD], "positive integer"),
        (["predict", "llama-3.2-1b", "--gpu", "h200", "--batch-size", "1", "--input-len", "0", "--output-len", "1"],
         "positive integer"),
        (["predict", "missing/config.json", "--gpu", "h200", "--batch-size", "1", *WORKLOAD], "no such config"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exc_info:  # argparse errors exit directly
        raise SystemExit(main(argv))
    _, err = capsys.readouterr()
    assert exc_info.value.code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_weights_larger_than_the_gpu(capsys, tmp_path):
    huge = {**PRESETS["llama-3.2-3b"].to_hf_config(), "num_hidden_layers": 400}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(huge))
    code, _, err = run_cli(capsys, "predict", str(path), "--gpu", "a100-40gb", "--batch-size", "1", *WORKLOAD)
    assert code == 2 and "do not fit" in err and len(err.strip().splitlines()) == 1


def test_heads_that_do_not_divide_and_malformed_json(capsys, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**PRESETS["llama-3.2-1b"].to_hf_config(), "num_key_value_heads": 5}))
    code, _, err = run_cli(capsys, "predict", str(path), "--gpu", "h200", "--batch-size", "1", *WORKLOAD)
    assert code == 2 and "not divisible" in err
    path.write_text("{not json")
    code, _, err = run_cli(capsys, "predict", str(path), "--gpu", "h200", "--batch-size", "1", *WORKLOAD)
    assert code == 2 and "malformed JSON" in err


def test_installed_console_script_runs_without_a_gpu_stack():
    """The real entry point, in a subprocess: predict must not import torch or triton."""
    code = (
        "import sys; from harness.cli.main import main; rc = main(['predict', 'qwen3-0.6b', '--gpu', 'b200', "
        "'--batch-size', '4', '--input-len', '512', '--output-len', '64', '--json']); "
        "assert 'torch' not in sys.modules and 'triton' not in sys.modules and 'scipy' not in sys.modules; "
        "sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["gpu"] == "b200"
    bad = subprocess.run([sys.executable, "-m", "harness", "predict", "x", "--gpu", "h200", "--batch-size", "1",
                          *WORKLOAD], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.startswith("archscale: error:")


VALID_HARDWARE = """\
[my-box]
display_name = "My box"
measured = true
hbm_bandwidth_bytes_per_s = 2.0e10
peak_fp32_flops_per_s = 5.0e10
memory_bytes = 16000000000
sm_count = 2
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "does not exist"),
        ("[my-box\n", "malformed TOML"),
        (VALID_HARDWARE.replace("sm_count = 2\n", ""), "missing required field sm_count"),
        (VALID_HARDWARE.replace("= 2.0e10", "= -2.0e10"), "hbm_bandwidth_bytes_per_s must be a positive"),
        (VALID_HARDWARE.replace("= 5.0e10", '= "lots"'), "must be a number"),
    ],
)  # fmt: skip
def test_bad_hardware_file_is_one_line_and_exit_2(capsys, tmp_path, text, message):
    path = tmp_path / "hw.toml"
    if text is not None:
        path.write_text(text)
    code, _, err = run_cli(capsys, "predict", "qwen3-0.6b", "--hardware", str(path), "--dtype", "float32",
                           "--batch-size", "1", *WORKLOAD)  # fmt: skip
    assert code == 2 and message in err and str(path) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_hardware_file_predicts_and_names_the_hardware(capsys, tmp_path):
    path = tmp_path / "hw.toml"
    path.write_text(VALID_HARDWARE)
    code, out, _ = run_cli(capsys, "predict", "qwen3-0.6b", "--hardware", str(path), "--dtype", "float32",
                           "--batch-size", "1", "--input-len", "32", "--output-len", "8", "--json")  # fmt: skip
    row = json.loads(out)
    assert code == 0 and (row["gpu"], row["hardware"], row["hardware_measured"]) == ("my-box", "My box", True)
    assert row["calibrated"] is False and row["dtype_bytes"] == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--gpu", "h200", "--hardware", "x.toml"], "not both"),
        ([], "name the hardware"),
        (["--gpu", "b200", "--dtype", "float32"], "B200-SXM-180GB (b200) has no fp32 peak (peak_fp32_flops_per_s)"),
    ],
)  # fmt: skip
def test_hardware_choice_errors_are_one_line(capsys, argv, message):
    code, _, err = run_cli(capsys, "predict", "llama-3.2-1b", *argv, "--batch-size", "1", *WORKLOAD)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_dtype_flag_replaces_the_configs_dtype(capsys):
    rows = {}
    for dtype in ("bfloat16", "float32"):
        code, out, _ = run_cli(capsys, "predict", "llama-3.2-1b", "--gpu", "h100", "--dtype", dtype, "--batch-size",
                               "64", *WORKLOAD, "--json")  # fmt: skip
        assert code == 0
        rows[dtype] = json.loads(out)
    assert (rows["bfloat16"]["dtype_bytes"], rows["float32"]["dtype_bytes"]) == (2, 4)
    assert rows["float32"]["weight_bytes"] == 2 * rows["bfloat16"]["weight_bytes"]
    assert rows["float32"]["ttft_s"] > rows["bfloat16"]["ttft_s"]  # fp32 peak 67 vs 989 TFLOP/s
