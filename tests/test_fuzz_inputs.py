"""Property-based fuzzing (hypothesis) of every file and argument a user hands archscale: config.json, the fit CSVs,
saved laws, results JSONL and sweep rows, comma lists. Each must either load or fail with ArchscaleInputError (one
line at the CLI, exit 2): never another exception, never a changed file. Example counts stay small (the suite
runs in well under a minute); the tables of known bad inputs are in tests/test_cli_errors.py."""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from harness.cli.args import MAX_INT, positive_int_list
from harness.sweep.results_io import check_sweep_row, prepare_resume, read_jsonl
from law.chinchilla import ChinchillaLaw
from law.conditional import ConditionalLaw, paper_law
from law.data_io import load_columns
from perfmodel import PRESETS, Arch, ArchscaleInputError, get_gpu, predict
from perfmodel.arch import ARCH_FIELDS

FUZZ = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # no .hypothesis folder in the tree

# JSON values of every type, the awkward ones included: huge and negative integers, NaN and infinities, nesting.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 3, 7, 64, 2**31 - 1, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=6), inner, max_size=3), max_leaves=8)  # fmt: skip

CONFIG_KEYS = ("hidden_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers", "intermediate_size",
               "vocab_size", "head_dim", "model_type", "torch_dtype", "tie_word_embeddings", "attention_bias",
               "text_config")  # fmt: skip
LLAMA_1B = {"hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 16,
            "intermediate_size": 8192, "vocab_size": 128256, "head_dim": 64, "model_type": "llama",
            "torch_dtype": "bfloat16", "tie_word_embeddings": True}  # fmt: skip


def loads_or_input_error(function, *args, **kwargs):
    """function(*args) or None when it raised ArchscaleInputError; any other exception fails the test."""
    try:
        return function(*args, **kwargs)
    except ArchscaleInputError as exc:
        message = str(exc)
        assert message and "\n" not in message, f"an error must be one line: {message!r}"
        return None


# ---- config.json (perfmodel/arch.py Arch.from_hf_config) ----
@FUZZ
@given(overrides=st.dictionaries(st.sampled_from(CONFIG_KEYS), JSON_VALUES, max_size=4),
       drop=st.sets(st.sampled_from(CONFIG_KEYS), max_size=2))  # fmt: skip
def test_config_dict_loads_or_is_an_input_error(overrides, drop):
    config = {k: v for k, v in {**LLAMA_1B, **overrides}.items() if k not in drop}
    arch = loads_or_input_error(Arch.from_hf_config, config)
    if arch is not None:
        assert arch.n_head % arch.n_kv_head == 0 and min(arch.d_model, arch.vocab, arch.d_ff) >= 1


SMALL = st.integers(1, 4096)


@FUZZ
@given(dims=st.fixed_dictionaries({key: st.integers(1, 2**31 + 5) | SMALL for key in (
    "hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size")}),
    batch=st.integers(1, MAX_INT) | SMALL, input_len=st.integers(1, MAX_INT) | SMALL,
    output_len=st.integers(1, MAX_INT) | SMALL)  # fmt: skip
def test_any_accepted_config_predicts_finite_numbers_or_is_an_input_error(dims, batch, input_len, output_len):
    """Dimensions up to the caps and workloads up to the CLI's limit: a prediction is finite, or one clear error."""
    config = {**dims, "num_key_value_heads": dims["num_attention_heads"], "head_dim": 64}
    arch = loads_or_input_error(Arch.from_hf_config, config)
    assume(arch is not None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy overflow warnings would be extra lines on stderr
        result = loads_or_input_error(predict, arch, get_gpu("h200"), batch_size=batch, input_len=input_len,
                                      output_len=output_len)  # fmt: skip
    if result is not None:
        values = result.to_dict()
        for key in ("output_tokens_per_s", "total_tokens_per_s", "ttft_s", "tpot_s"):
            assert math.isfinite(values[key]) and values[key] >= 0, (key, values[key])


@FUZZ
@given(data=st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), JSON_VALUES))
def test_config_file_of_any_bytes_loads_or_is_an_input_error(tmp_path, data):
    path = tmp_path / "config.json"
    path.write_bytes(data)
    loads_or_input_error(Arch.from_hf_config, path)


# ---- hardware and calibration TOML (perfmodel/hardware.py, perfmodel/calibration.py) ----
RESULTS = Path(__file__).resolve().parents[1] / "results"
TOML_VALUES = st.sampled_from(["-1", "0", "nan", "inf", "-inf", "1e-300", "1e300", '"x"', "true", "[1, 2]", "{a = 1}",
                               "99999999999999999999999", "1979-05-27", "= 1"])  # fmt: skip


@FUZZ
@given(which=st.sampled_from(["hardware", "calibration"]), line=st.integers(0, 200), value=TOML_VALUES)
def test_hardware_and_calibration_files_predict_or_are_an_input_error(which, line, value):
    """One value of the committed probe / calibrate output replaced by a bad one: a finite prediction, or one
    clear error."""
    from perfmodel.hardware import load_hardware_file

    texts = {name: (RESULTS / name / "cpu-xeon-2c.toml").read_text().splitlines() for name in ("hardware",
                                                                                              "calibration")}  # fmt: skip
    lines = texts[which]
    keyed = [i for i, text in enumerate(lines) if "=" in text and not text.startswith("#")]
    i = keyed[line % len(keyed)]
    lines[i] = f"{lines[i].split('=')[0]}= {value}"
    with tempfile.TemporaryDirectory() as folder:
        paths = {name: Path(folder) / f"{name}.toml" for name in texts}
        for name, path in paths.items():
            path.write_text("\n".join(texts[name]) + "\n")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            hardware = loads_or_input_error(load_hardware_file, paths["hardware"])
            result = hardware and loads_or_input_error(predict, PRESETS["small-base"], hardware, batch_size=4,
                                                       input_len=64, output_len=16,
                                                       calibration_file=paths["calibration"])  # fmt: skip
    if result:
        assert all(math.isfinite(v) and v > 0 for v in (result.output_tokens_per_s, result.ttft_s, result.tpot_s))


# ---- CSV (law/data_io.py) ----
CSV_CELLS = st.one_of(st.sampled_from(["1e8", "2e10", "3.1", "0", "-1", "nan", "inf", "-inf", "", "x", "1e400",
                                       "512", "2.5", '"1,5"', "True"]), st.text(max_size=5))  # fmt: skip
CSV_HEADERS = st.lists(st.sampled_from(["N", "D", "loss", "d", "r", "n_params", "n_tokens", "size_group",
                                        "epoch_excluded_outlier", "", "x"]), min_size=0, max_size=7)  # fmt: skip


@FUZZ
@given(header=CSV_HEADERS, rows=st.lists(st.lists(CSV_CELLS, max_size=8), max_size=6), raw=st.binary(max_size=40))
def test_csv_loads_or_is_an_input_error(tmp_path, header, rows, raw):
    path = tmp_path / "data.csv"
    text = "\n".join(",".join(cells) for cells in [header, *rows]) + "\n"
    path.write_bytes(text.encode("utf-8", "surrogatepass") + raw)
    columns = loads_or_input_error(load_columns, path, ("N", "D", "loss"), optional=("d", "r", "group"))
    if columns is not None:
        for name in ("N", "D", "loss"):
            assert np.all(np.isfinite(columns[name])) and np.all(columns[name] > 0)


FIT_NUMBERS = st.floats(1e-300, 1e300) | st.sampled_from([1.0, 2.0, 2.5, 3.0, 512.0, 1e8, 1e9, 1e10])


@settings(FUZZ, max_examples=8)  # each runs real fits (~0.4 s)
@given(kind=st.sampled_from(["chinchilla", "conditional", "evaluate"]),
       rows=st.lists(st.tuples(*[FIT_NUMBERS] * 5, st.sampled_from("abcde")), max_size=12))  # fmt: skip
def test_fits_on_any_positive_numbers_end_in_a_fit_or_one_error(kind, rows):
    """Values far outside any real model (1e-300..1e300) overflow inside the optimizers: still a fit or one clear
    error, and no numpy warning on stderr."""
    from harness.cli.main import main

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.csv"
        path.write_text("N,D,loss,d,r,group\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                code = main(["fit", kind, str(path), "--json"])
            except SystemExit as exc:
                code = exc.code
    assert code in (0, 2)


# ---- saved laws (law/conditional.py ConditionalLaw.load) ----
LAW_KEYS = ("form", "a0", "a1", "a2", "b0", "b1", "b2", "lopt", "covariance", "source")


@FUZZ
@given(overrides=st.dictionaries(st.sampled_from(LAW_KEYS), JSON_VALUES, max_size=3),
       lopt_overrides=st.dictionaries(st.sampled_from(["E", "A", "B", "alpha", "beta", "zz"]), JSON_VALUES,
                                      max_size=2))  # fmt: skip
def test_law_file_loads_or_is_an_input_error(tmp_path, overrides, lopt_overrides):
    law = paper_law(lopt=ChinchillaLaw(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)).to_dict()
    law["lopt"] = {**law["lopt"], **lopt_overrides}
    path = tmp_path / "law.json"
    path.write_text(json.dumps({**law, **overrides}))
    loaded = loads_or_input_error(ConditionalLaw.load, path)
    if loaded is not None:
        assert all(math.isfinite(getattr(loaded, name)) for name in ("a0", "a1", "a2", "b0", "b1", "b2"))


@FUZZ
@given(data=st.binary(max_size=120))
def test_law_file_of_any_bytes_is_an_input_error(tmp_path, data):
    path = tmp_path / "law.json"
    path.write_bytes(data)
    loads_or_input_error(ConditionalLaw.load, path)


def test_saved_law_round_trips_and_save_is_atomic(tmp_path, monkeypatch):
    law = paper_law(lopt=ChinchillaLaw(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37))
    path = tmp_path / "law.json"
    law.save(path)
    assert ConditionalLaw.load(path) == law
    before = path.read_bytes()

    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(ArchscaleInputError, match="No space left"):
        paper_law(lopt=None).save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["law.json"]


# ---- results JSONL (harness/sweep/results_io.py) ----
LINES = st.one_of(st.builds(lambda v: json.dumps(v), JSON_VALUES), st.text(max_size=20),
                  st.sampled_from(['{"a": 1}', '{"a": NaN}', "[" * 5000, '{"a": ' + "9" * 5000 + "}", '{"cut']))  # fmt: skip


@FUZZ
@given(lines=st.lists(LINES, max_size=5), tail=st.binary(max_size=30) | st.sampled_from([b'{"a": 1}', b'{"cu']))
def test_results_file_reads_or_is_an_input_error_and_is_never_changed_on_error(lines, tail):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "results.jsonl"
        path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8", "surrogatepass") + tail)
        before = path.read_bytes()
        rows = loads_or_input_error(read_jsonl, path)
        assert rows is None or all(isinstance(row, dict) for row in rows)
        loads_or_input_error(prepare_resume, path, set_aside=False)
        assert path.read_bytes() == before  # reading and a dry run never touch the file
        resumed = loads_or_input_error(prepare_resume, path)
        after = path.read_bytes()
        torn = path.with_name("results.jsonl.torn")
        if resumed is None or after == before:
            assert after == before and not torn.exists()
        elif after == before + b"\n":  # a whole row that only missed its newline
            assert not torn.exists()
        else:  # a torn last line, cut and set aside whole
            assert before.startswith(after) and torn.read_bytes() == before[len(after) :] + b"\n"


def sweep_row() -> dict:
    arch = PRESETS["tiny-mha"]
    return {"config": "tiny-mha", "engine": "torch", "device": "cpu", "dtype": "float32", "attention": "torch",
            "status": "ok", "batch_size": 2, "input_len": 16, "output_len": 4, "hardware": "local-cpu",
            "output_tokens_per_s": 100.0, "total_tokens_per_s": 500.0, "ttft_s": 0.01, "tpot_s": 0.005,
            "arch": {f: getattr(arch, f) for f in ARCH_FIELDS if f not in ("name", "dtype_bytes")},
            "metadata": {"cpu_model": "toy", "cpu_count_logical": 2}}  # fmt: skip


SWEEP_KEYS = ("config", "engine", "device", "dtype", "attention", "batch_size", "input_len", "output_len", "hardware",
              "output_tokens_per_s", "total_tokens_per_s", "ttft_s", "tpot_s", "arch", "metadata", "options")  # fmt: skip
ARCH_KEYS = tuple(f for f in ARCH_FIELDS if f not in ("name", "dtype_bytes"))


@FUZZ
@given(overrides=st.dictionaries(st.sampled_from(SWEEP_KEYS), JSON_VALUES, max_size=2),
       arch_overrides=st.dictionaries(st.sampled_from(ARCH_KEYS), JSON_VALUES, max_size=2))  # fmt: skip
def test_sweep_row_is_checked_before_calibrate_and_compare_use_it(overrides, arch_overrides):
    """A row check_sweep_row accepts has what the loaders and the vectorized re-prediction need."""
    row = sweep_row()
    row["arch"] = {**row["arch"], **arch_overrides} if isinstance(row["arch"], dict) else row["arch"]
    row.update(overrides)
    try:
        check_sweep_row("s.jsonl", 1, row)
    except ArchscaleInputError as exc:
        assert str(exc).startswith("s.jsonl:1: ") and "\n" not in str(exc)
        return
    arch = row["arch"]
    shape = Arch(**{k: arch[k] for k in ARCH_KEYS}, dtype_bytes=4)
    assert shape.n_params_total > 0 and isinstance(row["config"], str) and row["batch_size"] >= 1
    assert {row["engine"], row["dtype"], row["attention"]}  # hashable: they are grouped and sorted


# ---- comma lists of the CLI (harness/cli/args.py) ----
@FUZZ
@given(text=st.text(alphabet="0123456789,- x.", max_size=14))
def test_comma_lists_parse_to_distinct_positive_ints_or_are_a_usage_error(text):
    try:
        values = positive_int_list(text)
    except argparse.ArgumentTypeError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert values and len(set(values)) == len(values) and all(1 <= v <= MAX_INT for v in values)
    assert values == tuple(int(part) for part in text.split(","))


@pytest.mark.parametrize(("text", "expected"), [("1,16,128", (1, 16, 128)), (" 1 , 2 ", (1, 2)), ("8", (8,))])
def test_comma_lists_that_are_fine(text, expected):
    assert positive_int_list(text) == expected


@pytest.mark.parametrize(("text", "message"), [("1,,2", "empty item"), ("1,2,", "empty item"), (",", "expected a"),
                                               ("1,8,8", "8 given more than once"), ("0", "positive"),
                                               ("1,x", "positive integer"), (str(2**31), "at most")])  # fmt: skip
def test_comma_lists_that_are_usage_errors(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        positive_int_list(text)
