"""Every command, given the wrong things a new user gives it: a missing file, a folder instead of a file (or the
reverse), an empty or binary file, JSON of the wrong shape, NaN/inf/negative/huge numbers, an unknown preset or GPU,
heads that do not divide, an output path that cannot be written, lists with holes. Each must end in exit code 2 and
exactly one line on stderr (`archscale: error: ...`, or argparse's `archscale CMD: error: ...`), never a traceback;
and an output file that was already there must be byte-identical afterwards."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from harness.cli.main import main
from perfmodel import PRESETS
from perfmodel.arch import ARCH_FIELDS

ONE_LINE = re.compile(r"^archscale( [a-z-]+)*: error: \S")
KEEP = b"an existing output: must not change\n"
PREDICT = ["--gpu", "h200", "--batch-size", "1", "--input-len", "16", "--output-len", "4"]
SWEEP = ["tiny-mha", "--batch-size", "1", "--input-len", "8", "--output-len", "2", "--quiet"]
LLAMA = {"hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 16,
         "intermediate_size": 8192, "vocab_size": 128256}  # fmt: skip
LAW = {"form": "multiplicative", "a0": 1.0, "a1": 0.01, "a2": 0.001, "b0": 1.0, "b1": 0.0, "b2": 0.0,
       "lopt": {"E": 1.8, "A": 480.0, "B": 2100.0, "alpha": 0.35, "beta": 0.37}}  # fmt: skip


def sweep_row(**changes) -> dict:
    arch = PRESETS["tiny-mha"]
    row = {"config": "tiny-mha", "engine": "torch", "device": "cpu", "dtype": "float32", "attention": "torch",
           "status": "ok", "batch_size": 2, "input_len": 16, "output_len": 4, "hardware": "local-cpu",
           "output_tokens_per_s": 100.0, "total_tokens_per_s": 500.0, "ttft_s": 0.01, "tpot_s": 0.005,
           "arch": {f: getattr(arch, f) for f in ARCH_FIELDS if f not in ("name", "dtype_bytes")},
           "metadata": {"cpu_model": "toy", "cpu_count_logical": 2}}  # fmt: skip
    return {**row, **changes}


def jsonl(*rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


FILES = {
    "file": "just text\n",
    "empty": "",
    "garbage": b"\xf7M\xbb5\xec\x17D\x0c\x00\xff" * 20,
    "list.json": "[1, 2]\n",
    "null.json": "null\n",
    "deep.json": "[" * 100_000 + "]" * 100_000,
    "bigint.json": '{"hidden_size": ' + "9" * 5000 + "}",
    "baddiv.json": json.dumps({**LLAMA, "num_key_value_heads": 7}),
    "hugedim.json": json.dumps({**LLAMA, "hidden_size": 10**30}),
    "hugemodel.json": json.dumps(
        {
            **LLAMA,
            "head_dim": 64,
            **dict.fromkeys(("hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size"), 2**31 - 1),
        }
    ),
    "dtypelist.json": json.dumps({**LLAMA, "torch_dtype": ["bfloat16"]}),
    "textconfig.json": json.dumps({"text_config": 5}),
    "flagstring.json": json.dumps({**LLAMA, "tie_word_embeddings": "false"}),
    "floatdim.json": json.dumps({**LLAMA, "hidden_size": 2048.5}),
    "nanlaw.json": json.dumps({**LAW, "a0": float("nan")}),
    "stringlaw.json": json.dumps({**LAW, "a0": "1.0"}),
    "hugelaw.json": json.dumps({**LAW, "a0": 1e308, "a1": 1e308, "a2": 1e308, "b0": 1e308}),
    "covlaw.json": json.dumps({**LAW, "covariance": [[1.0]]}),
    "loptlaw.json": json.dumps({**LAW, "lopt": [1, 2]}),
    "short.csv": "N,D,loss\n1e8,2e9\n",
    "inf.csv": "N,D,loss\n" + "".join(f"1e{8 + i},2e9,inf\n" for i in range(6)),
    "nan.csv": "N,D,loss\n" + "".join(f"1e{8 + i},2e9,nan\n" for i in range(6)),
    "negative.csv": "N,D,loss\n" + "".join(f"1e{8 + i},-2e9,3.0\n" for i in range(6)),
    "headeronly.csv": "N,D,loss\n",
    "bigint.jsonl": '{"batch_size": ' + "9" * 5000 + "}\n",
    "ok.jsonl": jsonl(sweep_row()),
    "torn.jsonl": jsonl(sweep_row()) + '{"config": "tiny-m',
    "notresults.jsonl": b"\x89PNG\r\n\x1a\n not a results file",
    "corrupt.jsonl": jsonl(sweep_row()) + "{oops\n" + jsonl(sweep_row(batch_size=4)),
    "arrayrow.jsonl": "[1, 2]\n",
    "badarch.jsonl": jsonl(sweep_row(arch=[1])),
    "nanmeasure.jsonl": jsonl(sweep_row(ttft_s=float("nan"))),
    "zeromeasure.jsonl": jsonl(sweep_row(ttft_s=0)),
    "hugebatch.jsonl": jsonl(sweep_row(batch_size=10**30)),
    "baddtype.jsonl": jsonl(sweep_row(dtype="int4")),
    "noengine.jsonl": jsonl({k: v for k, v in sweep_row().items() if k != "engine"}),
    "baddiv.jsonl": jsonl(sweep_row(arch={**sweep_row()["arch"], "n_kv_head": 3})),
    "keep": KEEP,
    "cal.toml": "# an existing calibration file: must not change\n[h100.torch]\ncompute_efficiency = 0.5\n",
}
FOLDERS = ("dir",)

# (argv with {name} for the files above, the file that must come out unchanged (or None), a fragment of the message)
# fmt: off
CASES = [
    # predict: configs
    (["predict", "{missing}.json", *PREDICT], None, "no such config"),
    (["predict", "{dir}", *PREDICT], None, "no such config"),
    (["predict", "{empty}", *PREDICT], None, "malformed JSON"),
    (["predict", "{garbage}", *PREDICT], None, "cannot read config"),
    (["predict", "{list.json}", *PREDICT], None, "JSON object"),
    (["predict", "{null.json}", *PREDICT], None, "JSON object"),
    (["predict", "{deep.json}", *PREDICT], None, "nested too deeply"),
    (["predict", "{bigint.json}", *PREDICT], None, "too long"),
    (["predict", "{baddiv.json}", *PREDICT], None, "not divisible"),
    (["predict", "{hugedim.json}", *PREDICT], None, "too large"),
    (["predict", "{hugemodel.json}", *PREDICT], None, "too large a model"),
    (["predict", "{dtypelist.json}", *PREDICT], None, "torch_dtype"),
    (["predict", "{textconfig.json}", *PREDICT], None, "text_config"),
    (["predict", "{flagstring.json}", *PREDICT], None, "true or false"),
    (["predict", "{floatdim.json}", *PREDICT], None, "positive integer"),
    (["predict", "lama-3.2-1b", *PREDICT], None, "did you mean"),
    # predict: arguments
    (["predict", "tiny-mha", "--gpu", "h9000", *PREDICT[2:]], None, "unknown GPU"),
    (["predict", "tiny-mha", *PREDICT[2:]], None, "name the hardware"),
    (["predict", "tiny-mha", "--hardware", "{garbage}", *PREDICT[2:]], None, "hardware file"),
    (["predict", "tiny-mha", "--hardware", "{dir}", *PREDICT[2:]], None, "directory"),
    (["predict", "tiny-mha", "--hardware", "{missing}.toml", *PREDICT[2:]], None, "does not exist"),
    (["predict", "tiny-mha", *PREDICT, "--calibration", "{empty}"], None, "calibration"),
    (["predict", "tiny-mha", *PREDICT, "--calibration", "{garbage}"], None, "calibration file"),
    (["predict", "tiny-mha", *PREDICT[:2], "--batch-size", "1,,2", *PREDICT[4:]], None, "empty item"),
    (["predict", "tiny-mha", *PREDICT[:2], "--batch-size", "1,2,", *PREDICT[4:]], None, "empty item"),
    (["predict", "tiny-mha", *PREDICT[:2], "--batch-size", "8,8", *PREDICT[4:]], None, "more than once"),
    (["predict", "tiny-mha", *PREDICT[:2], "--batch-size", "0", *PREDICT[4:]], None, "positive integer"),
    (["predict", "tiny-mha", *PREDICT[:2], "--batch-size", "-4", *PREDICT[4:]], None, "positive integer"),
    (["predict", "tiny-mha", *PREDICT[:2], "--batch-size", "1.5", *PREDICT[4:]], None, "positive integer"),
    (["predict", "tiny-mha", *PREDICT[:2], "--batch-size", "9" * 30, *PREDICT[4:]], None, "at most"),
    (["predict", "tiny-mha", *PREDICT[:4], "--input-len", "9" * 30, "--output-len", "4"], None, "at most"),
    (["predict", "llama-3.2-1b", *PREDICT[:4], "--input-len", "2000000000", "--output-len", "4"], None, "fits"),
    (["predict", "tiny-mha", *PREDICT, "--engine", "tgi"], None, "invalid choice"),
    (["predict"], None, "required"),
    (["gpus", "--hardware", "{garbage}"], None, "hardware file"),
    (["gpus", "--hardware", "{empty}"], None, "no hardware table"),
    # fit: CSV
    (["fit", "chinchilla", "{missing}.csv"], None, "no such data file"),
    (["fit", "chinchilla", "{dir}"], None, "cannot read CSV"),
    (["fit", "chinchilla", "{empty}"], None, "missing column"),
    (["fit", "chinchilla", "{garbage}"], None, "cannot read CSV"),
    (["fit", "chinchilla", "{short.csv}"], None, "fewer fields"),
    (["fit", "chinchilla", "{inf.csv}"], None, "infinite"),
    (["fit", "chinchilla", "{nan.csv}"], None, "NaN"),
    (["fit", "chinchilla", "{negative.csv}"], None, "positive"),
    (["fit", "chinchilla", "{headeronly.csv}"], None, "no data rows"),
    (["fit", "chinchilla", "{short.csv}", "--bootstrap", "0"], None, "positive integer"),
    (["fit", "conditional", "{nan.csv}", "--out", "{keep}"], "keep", "missing column"),
    (["fit", "conditional", "{nan.csv}", "--out", "{dir}"], None, "is a folder"),
    (["fit", "conditional", "{nan.csv}", "--out", "{file}/law.json"], "file", "is a file"),
    (["fit", "conditional", "{nan.csv}", "--plot", "{dir}", "--out", "{keep}"], "keep", "is a folder"),
    (["fit", "evaluate", "{garbage}"], None, "cannot read CSV"),
    (["fit", "nonsense", "{nan.csv}"], None, "invalid choice"),
    # search: laws, numbers, outputs
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--emit-config", "{file}"], "file", "give a folder"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--save", "{dir}"], None, "is a folder"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--save", "{file}/out.json"], "file", "is a file"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--plot", "{dir}"], None, "is a folder"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--law", "{missing}.json", "--save", "{keep}"], "keep",
     "no such law file"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--law", "{dir}"], None, "is a folder"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--law", "{garbage}"], None, "not UTF-8"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--law", "{empty}"], None, "malformed JSON"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--law", "{list.json}"], None, "JSON array"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--law", "{deep.json}"], None, "nested too deeply"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--law", "{nanlaw.json}", "--save", "{keep}"], "keep",
     "finite number"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--law", "{stringlaw.json}"], None, "finite number"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--law", "{covlaw.json}"], None, "covariance"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--law", "{loptlaw.json}"], None, "lopt"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--law", "{hugelaw.json}", "--save", "{keep}"], "keep",
     "non-finite"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--train-tokens", "nan"], None, "--train-tokens"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--train-tokens", "inf"], None, "--train-tokens"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--loss-delta", "inf"], None, "--loss-delta"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--loss-delta", "nan"], None, "--loss-delta"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--loss-target", "inf"], None, "--loss-target"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--loss-target", "0"], None, "--loss-target"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--loss-tolerance", "inf"], None, "--loss-tolerance"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--loss-tolerance", "-1"], None, "--loss-tolerance"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--loss-delta", "0", "--loss-target", "2"], None,
     "not allowed with"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--budget-tolerance", "nan"], None, "fraction"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--gqa", "1,,2"], None, "empty item"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--place", ","], None, "empty item"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--place", "panda-1b,nope"], None, "neither a preset"),
    (["search", "--baseline", "{baddiv.json}", "--gpu", "h200"], None, "not divisible"),
    (["search", "--baseline", "{hugemodel.json}", "--gpu", "h200"], None, "too large a model"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h9000"], None, "unknown GPU"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--min-kv-heads", "1000"], None, "KV heads"),
    # sweep (dry runs and argument errors: nothing is measured)
    ([*["sweep", *SWEEP], "--dry-run", "--out", "{dir}"], None, "is a directory"),
    ([*["sweep", *SWEEP], "--dry-run", "--out", "{file}/s.jsonl"], "file", "is a file"),
    ([*["sweep", *SWEEP], "--out", "{file}/s.jsonl"], "file", "is a file"),
    ([*["sweep", *SWEEP], "--out", "{notresults.jsonl}"], "notresults.jsonl", "not a results file"),
    ([*["sweep", *SWEEP], "--out", "{corrupt.jsonl}"], "corrupt.jsonl", ":2: corrupt results line"),
    ([*["sweep", *SWEEP], "--out", "{deep.json}"], "deep.json", "not a results file"),
    ([*["sweep", *SWEEP], "--out", "{bigint.jsonl}"], "bigint.jsonl", "too long"),
    ([*["sweep", *SWEEP], "--out", "{list.json}"], "list.json", "not a JSON object"),
    ([*["sweep", *SWEEP], "--out", "{garbage}"], "garbage", "not a results file"),
    ([*["sweep", *SWEEP], "--out", "{empty}", "--dry-run", "--batch-size", "0"], "empty", "positive integer"),
    ([*["sweep", *SWEEP], "--dry-run", "--gpu", "h200", "--calibration", "{garbage}"], None, "calibration file"),
    ([*["sweep", *SWEEP], "--calibration", "{garbage}", "--gpu", "h200", "--out", "{keep}"], "keep", "calibration"),
    ([*["sweep", *SWEEP], "--dry-run", "--seed", "-1"], None, "--seed"),
    ([*["sweep", *SWEEP], "--dry-run", "--seed", "9" * 30], None, "--seed"),
    ([*["sweep", *SWEEP], "--dry-run", "--input-len", "1,,2"], None, "empty item"),
    ([*["sweep", *SWEEP], "--dry-run", "--engine", "tgi"], None, "unknown engine"),
    (["sweep", "{garbage}", *SWEEP[1:], "--dry-run"], None, "cannot read config"),
    # calibrate and compare: results JSONL and sweep rows
    (["calibrate", "{corrupt.jsonl}", "--gpu", "h200", "--out", "{cal.toml}"], "cal.toml", ":2: corrupt results line"),
    (["schedule", "{missing}.jsonl"], None, "does not exist"),
    (["schedule", "{dir}"], None, "is a directory"),
    (["schedule", "{corrupt.jsonl}"], None, ":2: corrupt results line"),
    (["schedule", "{badarch.jsonl}"], None, "'arch' must be a JSON object"),
    (["calibrate", "{arrayrow.jsonl}", "--gpu", "h200", "--out", "{cal.toml}"], "cal.toml", "not a JSON object"),
    (["calibrate", "{badarch.jsonl}", "--gpu", "h200", "--out", "{cal.toml}"], "cal.toml", "'arch' must be a JSON object"),
    (["calibrate", "{nanmeasure.jsonl}", "--gpu", "h200", "--out", "{cal.toml}"], "cal.toml", "'ttft_s' must be a finite"),
    (["calibrate", "{zeromeasure.jsonl}", "--gpu", "h200", "--out", "{cal.toml}"], "cal.toml", "must be positive"),
    (["calibrate", "{hugebatch.jsonl}", "--gpu", "h200", "--out", "{cal.toml}"], "cal.toml", "'batch_size' must be"),
    (["calibrate", "{baddtype.jsonl}", "--gpu", "h200", "--out", "{cal.toml}"], "cal.toml", "unknown dtype"),
    (["calibrate", "{noengine.jsonl}", "--gpu", "h200", "--out", "{cal.toml}"], "cal.toml", "'engine' must be a string"),
    (["calibrate", "{baddiv.jsonl}", "--gpu", "h200", "--out", "{cal.toml}"], "cal.toml", "not divisible"),
    (["calibrate", "{torn.jsonl}", "--gpu", "h200", "--out", "{cal.toml}"], "cal.toml", ":2: corrupt results line"),
    (["calibrate", "{garbage}", "--gpu", "h200", "--out", "{cal.toml}"], "cal.toml", "not UTF-8"),
    (["calibrate", "{empty}", "--gpu", "h200", "--out", "{cal.toml}"], "cal.toml", "no rows"),
    (["calibrate", "{ok.jsonl}", "--gpu", "h200", "--out", "{keep}"], "keep", "malformed TOML"),
    (["calibrate", "{ok.jsonl}", "--gpu", "h200", "--out", "{garbage}"], "garbage", "calibration file"),
    (["calibrate", "{dir}", "--gpu", "h200"], None, "is a directory"),
    (["calibrate", "{missing}.jsonl", "--gpu", "h200"], None, "does not exist"),
    (["calibrate", "{corrupt.jsonl}", "--gpu", "h200", "--out", "{dir}"], None, "is a folder"),
    (["calibrate", "{corrupt.jsonl}", "--gpu", "h200", "--holdout-batch-sizes", "1,,2"], None, "empty item"),
    (["calibrate", "{corrupt.jsonl}", "--gpu", "h200", "--holdout-configs", "a,,b"], None, "comma-separated list of names"),
    (["predict", "llama-3.2-1b", "--gpu", "h100", "--cuda-graph-max-batch", "-3"], None, "expected 0 or a positive integer"),
    (["search", "--baseline", "llama-3.2-1b", "--gpu", "h100", "--cuda-graph-max-batch", "x"], None, "expected 0 or a positive integer"),
    (["calibrate", "{corrupt.jsonl}", "--gpu", "h200", "--holdout-workloads", "64x64"], None, "INPUT/OUTPUT"),
    (["calibrate", "{corrupt.jsonl}", "--gpu", "h200", "--holdout-workloads", "64/0"], None, "positive"),
    (["calibrate", "{ok.jsonl}", "--gpu", "h200", "--holdout-workloads", "9/9", "--out", "{cal.toml}"], "cal.toml",
     "9/9 not in the sweep files"),
    (["calibrate", "{ok.jsonl}", "--gpu", "h200", "--factors", "speed", "--out", "{cal.toml}"], "cal.toml",
     "unknown factor(s) speed"),
    (["calibrate", "{ok.jsonl}", "--gpu", "h200", "--factors", "elementwise_memory_efficiency", "--out", "{cal.toml}"],
     "cal.toml", "--factors needs at least one of"),
    (["published", "--adopt", "{garbage}", "--out", "{cal.toml}"], "cal.toml", "calibration file"),
    (["published", "--adopt", "{keep}", "--out", "{cal.toml}"], "cal.toml", "malformed TOML"),
    (["compare", "{corrupt.jsonl}", "--gpu", "h200"], "corrupt.jsonl", ":2: corrupt results line"),
    (["compare", "{badarch.jsonl}", "--gpu", "h200"], None, "'arch' must be a JSON object"),
    (["compare", "{nanmeasure.jsonl}", "--gpu", "h200"], None, "finite number"),
    (["compare", "{hugebatch.jsonl}", "--gpu", "h200"], None, "'batch_size' must be"),
    (["compare", "{baddiv.jsonl}", "--gpu", "h200"], None, "not divisible"),
    (["compare", "{noengine.jsonl}", "--gpu", "h200"], None, "'engine' must be a string"),
    (["compare", "{dir}", "--gpu", "h200"], None, "is a directory"),
    (["compare", "{badarch.jsonl}", "--gpu", "h200", "--plot", "{file}"], "file", "give a folder"),
    (["compare", "{ok.jsonl}", "--gpu", "h200", "--calibration", "{garbage}"], None, "calibration file"),
    (["compare", "{ok.jsonl}", "--gpu", "h200", "--baseline", "nope"], None, "baseline"),
    # probe and bench-kernel: outputs checked before anything is measured
    (["probe", "--quick", "--out", "{dir}"], None, "is a folder"),
    (["probe", "--quick", "--out", "{file}/local.toml"], "file", "is a file"),
    (["bench-kernel", "--dry-run", "--out", "{dir}"], None, "is a directory"),
    (["bench-kernel", "--dry-run", "--out", "{garbage}"], "garbage", "not UTF-8"),
    (["bench-kernel", "--dry-run", "--out", "{deep.json}"], "deep.json", "nested too deeply"),
    (["bench-kernel", "--dry-run", "--batch-sizes", "1,,2"], None, "empty item"),
    (["bench-kernel", "--dry-run", "--kv-lens", "0"], None, "positive integer"),
    (["nonsense"], None, "invalid choice"),
    # campaign
    (["campaign", "run", "--out", "{dir}/out"], None, "torch sees none"),
    (["campaign", "run", "--out", "{dir}/out", "--stages", "tests,bogus"], None, "subset of"),
    (["campaign", "plan", "--gpu", "h9000", "--results", "{dir}"], None, "unknown GPU"),
    (["campaign", "collect", "{missing}"], None, "not a folder"),
    (["campaign", "collect", "{file}"], None, "not a folder"),
]
# fmt: on


@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    paths = {"missing": tmp_path / "missing"}
    for name, content in FILES.items():
        path = paths[name] = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for name in FOLDERS:
        paths[name] = tmp_path / name
        paths[name].mkdir()
    return paths


def fill(argv: list[str], paths: dict[str, Path]) -> list[str]:
    return [re.sub(r"\{([^}]+)\}", lambda m: str(paths[m.group(1)]), arg) for arg in argv]


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        return exc.code


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(("argv", "unchanged", "message"), CASES, ids=[" ".join(c[0])[:90] for c in CASES])
def test_bad_invocation_is_one_line_exit_2_and_writes_nothing(inputs, tmp_path, capsys, argv, unchanged, message):
    if (argv[0] == "probe" or argv[:2] == ["campaign", "run"]) and torch.cuda.is_available():
        pytest.skip("would measure the GPU")
    before = snapshot(tmp_path)
    code = run(fill(argv, inputs))
    out, err = capsys.readouterr()
    assert code == 2, (code, out[-500:], err[-2000:])
    assert "Traceback" not in err and err.endswith("\n")
    lines = err.splitlines()
    assert len(lines) == 1 and ONE_LINE.match(lines[0]), err
    assert message in lines[0], lines[0]
    if unchanged is not None:
        assert inputs[unchanged].read_bytes() == before[unchanged]
    assert snapshot(tmp_path) == before, "a failed command must leave every file and folder as it was"


# ---- the same guarantees where a write itself fails, and where the tree has good inputs ----
def test_search_output_paths_are_checked_before_the_search_and_written_atomically(tmp_path, capsys):
    keep = tmp_path / "search.json"
    keep.write_bytes(KEEP)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "panda-llama-3.2-1b").write_text("a file where a config folder goes\n")
    argv = ["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--save", str(keep), "--emit-config",
            str(tmp_path / "configs")]  # fmt: skip
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "panda-llama-3.2-1b is a file, not a folder" in err
    assert keep.read_bytes() == KEEP and sorted(p.name for p in (tmp_path / "configs").iterdir()) == [
        "panda-llama-3.2-1b"
    ]
    (tmp_path / "configs" / "panda-llama-3.2-1b").unlink()
    assert run([*argv, "--json"]) == 0
    capsys.readouterr()
    saved = json.loads(keep.read_text())
    assert saved["kind"] == "prediction" and sorted(p.name for p in (tmp_path / "configs").iterdir()) == [
        "panda-llama-3.2-1b", "surefire-llama-3.2-1b"]  # fmt: skip
    assert not [p for p in tmp_path.rglob(".*.tmp")], "no temporary file is left behind"


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    from perfmodel.atomic_io import write_atomic
    from perfmodel.errors import ArchscaleInputError

    target = tmp_path / "out.json"
    target.write_bytes(KEEP)

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", full_disk)
    with pytest.raises(ArchscaleInputError, match=r"cannot write .*out.json: No space left on device"):
        write_atomic(target, "new")
    assert target.read_bytes() == KEEP and [p.name for p in tmp_path.iterdir()] == ["out.json"]
