"""Progressive extrapolation on the real morph data, CSV validation, and `archscale fit` end to end."""

import json

import numpy as np
import pytest

from harness.cli.main import main
from law.data_io import load_columns
from law.evaluate import progressive_extrapolation


def test_progressive_extrapolation_on_morph_data_runs_and_predicts_well(morph_path):
    steps = progressive_extrapolation(load_columns(morph_path, ("N", "D", "d", "r", "loss", "group")))
    assert [s.test_group for s in steps][:2] == ["126M", "164M"]  # sizes ordered by median N
    assert all(s.n_train > 0 and s.n_test > 0 for s in steps)
    assert np.median([s.mse for s in steps]) < 1e-3  # paper: 1e-4..2e-4 on its own data


def test_fit_cli_json_keys(capsys, morph_path, tmp_path):
    assert main(["fit", "chinchilla", str(morph_path), "--json"]) == 0
    assert {"E", "A", "B", "alpha", "beta", "mse", "n_points"} <= set(json.loads(capsys.readouterr().out))
    out = tmp_path / "law.json"
    plot = tmp_path / "fit.png"
    argv = [
        "fit",
        "conditional",
        str(morph_path),
        "--json",
        "--out",
        str(out),
        "--form",
        "additive",
        "--plot",
        str(plot),
    ]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {"a0", "a1", "a2", "b0", "b1", "b2", "mse", "x_opt", "r_opt"} <= set(payload)
    assert payload["r_opt"] is None and payload["r_identifiable"] is False  # r is 2.0-2.25 in this data
    assert json.loads(out.read_text())["form"] == "additive"
    assert plot.stat().st_size > 10_000
    assert main(["fit", "evaluate", str(morph_path)]) == 0
    assert "Spearman" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("n_params,loss\n1e8,3.0\n", "missing column for D"),
        ("n_params,n_tokens,loss\n1e8,1e9,nan\n", "NaN"),
        ("n_params,n_tokens,loss\n1e8,-1e9,3.0\n", "must be positive"),
        ("n_params,n_tokens,loss\n1e8,1e9,abc\n", "non-numeric"),
        ("n_params,n_tokens,loss\n", "no data rows"),
        ("n_params,n_tokens,loss\n1e8,1e9,3.0\n", "at least 5 points"),
    ],
)
def test_bad_csv_is_one_line_and_exit_2(capsys, tmp_path, text, message):
    path = tmp_path / "data.csv"
    path.write_text(text)
    assert main(["fit", "chinchilla", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_one_size_group_cannot_be_extrapolated(capsys, morph_path, tmp_path):
    lines = morph_path.read_text().splitlines()
    header = lines[0].split(",")
    group = header.index("size_group")
    only_80m = [lines[0]] + [line for line in lines[1:] if line.split(",")[group] == "80M"]
    path = tmp_path / "one_size.csv"
    path.write_text("\n".join(only_80m) + "\n")
    assert main(["fit", "evaluate", str(path)]) == 2
    assert "size groups" in capsys.readouterr().err
