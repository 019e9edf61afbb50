"""Efficiency factors per (hardware, engine) — `Calibration` — and where they come from.

A `Calibration` holds the achievable fraction of the hardware's peaks (compute, memory), the fixed overheads (per
kernel launch, per forward step) and the engine's memory policy (utilization, workspace). `get_calibration` picks
one, first match wins:
1. a calibration file given by the user (`--calibration FILE`, as `archscale calibrate` writes it),
2. the hardware entry's own priors (a machine measured by `archscale probe` carries them),
3. the package's data/published_calibration.toml: [<gpu>.<engine>] tables `archscale calibrate` fitted to
   throughputs others published for that engine on that GPU (`make calibrate-published`; calibrated = true),
4. the package's data/calibration.toml: the engine's default priors, with the fields of a shipped [<gpu>.<engine>]
   table (engine defaults that depend on the GPU) on top.
`engine_priors` skips 1 and 3: what a fit starts from and what "uncalibrated" means in a comparison. Naming an
engine release (`engine_version`) lays that release's scheduling policy over the choice (data/engine_releases.toml,
perfmodel/engine_releases.py): the efficiencies stay, the limits and schedule become the release's.
A calibration file holds [<hardware>.<engine>] tables: the Calibration fields plus what the fit records about
itself (n_points, configs, std_errors, sweep_sha256, metadata...), which loading keeps but does not need.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from functools import cache
from pathlib import Path

import numpy as np

from perfmodel.calibration_fields import ARRAY_FIELDS, CURVE_FIELDS, check_field_values
from perfmodel.engine_releases import POLICY_FIELDS, release_policy
from perfmodel.errors import ArchscaleInputError
from perfmodel.gemm_shapes import check_gemm_shape_grid, check_increasing, check_positive_array

DATA_DIR = Path(__file__).with_name("data")
ENGINES = ("torch", "vllm", "sglang")
# What `archscale calibrate` records next to the factors (kept in the file, not needed to predict).
FIT_RECORD_KEYS = {"n_points", "train_configs", "holdout_configs", "train_batch_sizes", "holdout_batch_sizes",
                   "train_workloads", "holdout_workloads", "fitted", "allowed_factors", "std_errors", "sweep_sha256",
                   "metadata", "fit_rms_log_error", "gemv_max_tokens_tried", "drift_correction"}  # fmt: skip


@dataclass(frozen=True)
class Calibration:
    compute_efficiency: float
    memory_efficiency: float
    kernel_launch_overhead_s: float
    step_overhead_s: float
    gpu_memory_utilization: float
    workspace_bytes: float
    calibrated: bool
    # Tokens (GEMM rows M) at which a GEMM reaches half its compute efficiency; 0 = off (the priors).
    gemm_half_efficiency_tokens: float = 0.0
    # GEMMs of at most this many rows run as GEMV kernels (BLAS libraries dispatch M = 1, and on some CPUs M = 2, to
    # matrix-vector kernels): memory-bound at `gemv_memory_efficiency`, without the small-M compute penalty. 0 = off.
    gemv_max_tokens: float = 0.0
    gemv_memory_efficiency: float = 1.0
    # A measured GEMM curve (`archscale probe`: harness/probe/decode.py), which replaces the two small-M terms above:
    # at M = gemm_curve_rows[i] rows a GEMM runs gemm_curve_factors[i] times as fast as its roofline at the compute
    # and memory efficiencies (> 1: a GEMV kernel beats it; < 1: small tiles fall short). Between the measured M the
    # factor is interpolated linearly in log M and log factor, beyond them it stays at the nearest. () = off.
    gemm_curve_rows: tuple[float, ...] = ()
    gemm_curve_factors: tuple[float, ...] = ()
    # The GEMM's speed by weight shape beside the curve (perfmodel/gemm_shapes.py): a grid over (M, N, K) of factors
    # relative to the curve model's GEMMs, measured by `archscale probe`. () = off (every shape at the curve's speed).
    gemm_shape_rows: tuple[float, ...] = ()
    gemm_shape_n: tuple[float, ...] = ()
    gemm_shape_k: tuple[float, ...] = ()
    gemm_shape_factors: tuple = ()  # [rows][n][k]
    # Operator classes with their own efficiency. Absent (None) = the GEMM figure above (compute_efficiency or
    # memory_efficiency), so a calibration that fitted only those two still means what it meant.
    attention_prefill_compute_efficiency: float | None = None  # causal flash attention over the prompt
    attention_decode_memory_efficiency: float | None = (
        None  # decode attention streaming the KV cache, at full occupancy
    )
    elementwise_memory_efficiency: float | None = None  # norms, embedding gather, the sampler's passes over logits
    # The sampler: fp32-logit-sized reads and writes per sampled token after the logits are cast to fp32 (greedy
    # argmax reads them once: 1; sampling with temperature, softmax and a random draw makes several passes).
    sampler_logit_passes: float = 1.0
    # Engine policy: prompt tokens per prefill forward (whole sequences, at least one), as our engine's
    # max_prefill_tokens and vLLM's max_num_batched_tokens bound it.
    max_prefill_tokens: float = 8192.0
    # Engine policy: most sequences running at once (vLLM's max_num_seqs); 0 = no cap beyond the KV budget.
    max_num_seqs: float = 0.0
    # Engine policy: continuous batching with chunked prefill (vLLM V1, SGLang: perfmodel/scheduler.py, each step at
    # most max_prefill_tokens tokens of decodes and prompt chunks) instead of static waves (our engine).
    chunked_prefill: bool = False
    # Share of the interconnect's bandwidth a TP collective reaches (NCCL's bus bandwidth against the link's).
    interconnect_efficiency: float = 0.80
    # Engine policy: largest decode batch replayed from a captured CUDA graph, smaller batches padded up to the next
    # captured size (perfmodel/cuda_graphs.py); 0 = no padding (our engine captures each wave's exact batch).
    cuda_graph_max_batch: float = 0.0
    # Engine policy: KV blocks taken as tokens are computed, the newest running request preempted and recomputed
    # when they run out (vLLM: perfmodel/scheduler.py `paged_steps`), instead of admitting a request only when its
    # full length fits (our engine; SGLang, which reserves the whole remaining output of ignore_eos requests).
    paged_kv_admission: bool = False
    kv_block_tokens: float = 16.0  # tokens per KV block (vLLM's block_size, SGLang's page_size)

    def gemm_curve_factor(self, rows):
        """The measured GEMM curve's speed factor at `rows` (array or scalar) GEMM rows; None without a curve."""
        if not self.gemm_curve_rows:
            return None
        log_rows = np.log(np.maximum(np.asarray(rows, dtype=float), 1.0))
        return np.exp(np.interp(log_rows, np.log(self.gemm_curve_rows), np.log(self.gemm_curve_factors)))

    @property
    def gemm_shape_grid(self) -> tuple | None:
        """(rows, n, k, factors) of the measured GEMM shape grid (perfmodel/gemm_shapes.py); None without one."""
        if not self.gemm_shape_rows:
            return None
        return self.gemm_shape_rows, self.gemm_shape_n, self.gemm_shape_k, self.gemm_shape_factors

    def efficiencies(self, op_class: str) -> tuple[float, float]:
        """(compute, memory) efficiency of an operator class: "gemm", "attention_prefill", "attention_decode",
        "elementwise"."""
        compute, memory = self.compute_efficiency, self.memory_efficiency
        if op_class == "attention_prefill" and self.attention_prefill_compute_efficiency is not None:
            compute = self.attention_prefill_compute_efficiency
        elif op_class == "attention_decode" and self.attention_decode_memory_efficiency is not None:
            memory = self.attention_decode_memory_efficiency
        elif op_class == "elementwise" and self.elementwise_memory_efficiency is not None:
            memory = self.elementwise_memory_efficiency
        elif op_class not in OP_CLASSES:
            raise ValueError(f"unknown operator class {op_class!r} (known: {', '.join(OP_CLASSES)})")
        return compute, memory


OP_CLASSES = ("gemm", "attention_prefill", "attention_decode", "elementwise")
CALIBRATION_FIELDS = tuple(f.name for f in fields(Calibration))
OPTIONAL_FIELDS = (
    "gemm_half_efficiency_tokens",
    "gemv_max_tokens",
    "gemv_memory_efficiency",
    *ARRAY_FIELDS,
    "attention_prefill_compute_efficiency",
    "attention_decode_memory_efficiency",
    "elementwise_memory_efficiency",
    "sampler_logit_passes",
    "max_prefill_tokens",
    "interconnect_efficiency",
    "max_num_seqs",
    "chunked_prefill",
    "cuda_graph_max_batch",
    "paged_kv_admission",
    "kv_block_tokens",
)  # may be absent from a file: the dataclass default applies


def check_calibration_entry(entry, where: str, extra_keys=frozenset()) -> dict:
    """The Calibration fields of one [<hardware>.<engine>] table, validated; one-line errors naming `where`."""
    if not isinstance(entry, dict):
        raise ArchscaleInputError(f"{where} must be a table of {', '.join(CALIBRATION_FIELDS)}")
    unknown = sorted(set(entry) - set(CALIBRATION_FIELDS) - set(extra_keys))
    missing = [f for f in CALIBRATION_FIELDS if f not in entry and f not in OPTIONAL_FIELDS]
    if unknown or missing:
        problem = f"unknown key(s) {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
        raise ArchscaleInputError(f"{where}: {problem}")
    arrays = _check_gemm_curve(entry, where) | check_gemm_shape_grid(entry, where)
    if arrays.get("gemm_shape_rows") and not arrays.get("gemm_curve_rows"):
        raise ArchscaleInputError(f"{where}: the GEMM shape grid (gemm_shape_*) is relative to a GEMM curve: it needs "
                                  "gemm_curve_rows and gemm_curve_factors beside it")  # fmt: skip
    check_field_values(entry, where, CALIBRATION_FIELDS)
    return {f: entry[f] for f in CALIBRATION_FIELDS if f in entry} | arrays


def _check_gemm_curve(entry: dict, where: str) -> dict:
    """The measured GEMM curve's two arrays as tuples, checked: both or neither, equal lengths, rows >= 1 strictly
    increasing, factors positive; one-line errors naming `where`."""
    given = [name for name in CURVE_FIELDS if name in entry]
    if not given:
        return {}
    if len(given) == 1:
        raise ArchscaleInputError(f"{where}: {given[0]} needs {(set(CURVE_FIELDS) - set(given)).pop()} beside it")
    rows, factors = (entry[name] for name in CURVE_FIELDS)
    for name, values in zip(CURVE_FIELDS, (rows, factors), strict=True):
        check_positive_array(values, f"{where}.{name}")
    if len(rows) != len(factors):
        raise ArchscaleInputError(f"{where}: gemm_curve_rows has {len(rows)} values, gemm_curve_factors {len(factors)}")
    check_increasing(rows, f"{where}.gemm_curve_rows", least=1)
    return {"gemm_curve_rows": tuple(map(float, rows)), "gemm_curve_factors": tuple(map(float, factors))}


def check_engine_tables(raw, where: str, extra_keys=frozenset()) -> dict[str, dict]:
    """{engine: Calibration fields} of a table of engines ([<hardware>.calibration] or [<hardware>])."""
    if not isinstance(raw, dict):
        raise ArchscaleInputError(f"{where} must be a table of engines ({', '.join(ENGINES)})")
    entries = {}
    for engine, entry in raw.items():
        if engine not in ENGINES:
            raise ArchscaleInputError(f"{where}.{engine}: unknown engine '{engine}' (known: {', '.join(ENGINES)})")
        entries[engine] = check_calibration_entry(entry, f"{where}.{engine}", extra_keys)
    return entries


def read_toml(path: Path, what: str) -> dict:
    """A TOML file as a dict, with one-line errors ("<what> <path> does not exist", malformed TOML with its line)."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ArchscaleInputError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise ArchscaleInputError(f"{what} {path} is a directory, not a TOML file") from None
    except tomllib.TOMLDecodeError as exc:  # its message names the line and column
        raise ArchscaleInputError(f"{path}: malformed TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchscaleInputError(f"cannot read {what} {path}: {exc}") from None


def load_calibration_file(path: str | Path) -> dict[str, dict[str, Calibration]]:
    """{hardware name: {engine: Calibration}} of a calibration file ([<hardware>.<engine>] tables). A scheduling
    policy field the table leaves out (a file written before the field existed) is the engine's package default for
    that GPU, not the dataclass's: an old vLLM fit still schedules as vLLM."""
    path = Path(path).expanduser()
    raw = read_toml(path, "calibration file")
    if not raw:
        raise ArchscaleInputError(f"{path}: no [<hardware>.<engine>] table in the calibration file")
    tables = {}
    for hardware, engines in raw.items():
        tables[hardware] = {}
        for engine, fields_ in check_engine_tables(engines, f"{path}: [{hardware}]", FIT_RECORD_KEYS).items():
            defaults = _package_priors(hardware, engine)
            missing = {name: getattr(defaults, name) for name in POLICY_FIELDS if name not in fields_}
            tables[hardware][engine] = Calibration(**fields_, **missing)
    return tables


PUBLISHED_CALIBRATION = DATA_DIR / "published_calibration.toml"


@cache
def _package_table() -> dict:
    with (DATA_DIR / "calibration.toml").open("rb") as f:
        return tomllib.load(f)


@cache
def _published_fits() -> dict[str, dict[str, Calibration]]:
    if not PUBLISHED_CALIBRATION.is_file() or not read_toml(PUBLISHED_CALIBRATION, "calibration file"):
        return {}  # no fit adopted
    return load_calibration_file(PUBLISHED_CALIBRATION)


# The factors `archscale calibrate` fits (the rest of a Calibration is the engine's policy and memory budget).
FITTED_FIELDS = ("compute_efficiency", "memory_efficiency", "kernel_launch_overhead_s", "step_overhead_s",
                 "gemm_half_efficiency_tokens", "gemv_max_tokens", "gemv_memory_efficiency",
                 "attention_prefill_compute_efficiency", "attention_decode_memory_efficiency",
                 "elementwise_memory_efficiency")  # fmt: skip


def with_fitted_factors(priors: Calibration, fit: Calibration) -> Calibration:
    """`priors` (the engine's policy as the package states it now) with a fit's factors, calibrated: a fit shipped
    with the package must not freeze the engine's limits it was fitted under."""
    return replace(priors, **{name: getattr(fit, name) for name in FITTED_FIELDS}, calibrated=True)


def published_fit(name: str, engine: str) -> Calibration | None:
    """The package's fit of `engine` on GPU `name` to published throughputs, or None where there is none."""
    return _published_fits().get(name, {}).get(engine)


def engine_priors(gpu, engine: str, engine_version=None) -> Calibration:
    """The uncalibrated priors for (hardware, engine): the hardware entry's own (a probed machine), else the engine's
    defaults in data/calibration.toml with its [<gpu>.<engine>] fields on top; with `engine_version`, that release's
    scheduling policy on top of either (data/engine_releases.toml)."""
    if engine not in ENGINES:
        raise ArchscaleInputError(f"unknown engine '{engine}' (known: {', '.join(ENGINES)})")
    priors = getattr(gpu, "calibration_priors", {})
    name = gpu if isinstance(gpu, str) else gpu.name
    cal = Calibration(**priors[engine]) if engine in priors else _package_priors(name, engine)
    return with_release_policy(cal, engine, engine_version, name)


def _package_priors(name: str, engine: str) -> Calibration:
    """data/calibration.toml's priors for `engine`, with a [<name>.<engine>] table's fields on top where there is one."""
    package = _package_table()
    return Calibration(**{**package["default"][engine], **package.get(name, {}).get(engine, {})})


def with_release_policy(cal: Calibration, engine: str, engine_version, gpu_name: str) -> Calibration:
    """`cal` with the scheduling policy of `engine` release `engine_version` on `gpu_name` (unchanged for None)."""
    if engine_version is None:
        return cal
    return replace(cal, **release_policy(engine, engine_version, gpu_name))


def get_calibration(gpu, engine: str, calibration_file: str | Path | None = None, engine_version=None) -> Calibration:
    """Efficiency factors for (hardware, engine) — see the module docstring for the order — with the scheduling
    policy of release `engine_version` where one is named. `gpu` is a `Hardware` or a name (a name alone cannot see
    a probed file's priors)."""
    if engine not in ENGINES:
        raise ArchscaleInputError(f"unknown engine '{engine}' (known: {', '.join(ENGINES)})")
    name = gpu if isinstance(gpu, str) else gpu.name
    if calibration_file is not None:
        table = load_calibration_file(calibration_file)
        if engine not in table.get(name, {}):
            have = ", ".join(f"[{h}.{e}]" for h, engines in table.items() for e in engines)
            raise ArchscaleInputError(f"{calibration_file} has no [{name}.{engine}] calibration (it has: {have})")
        return with_release_policy(table[name][engine], engine, engine_version, name)
    fit = _adopted_fit(gpu, engine)
    priors = engine_priors(gpu, engine, engine_version)
    return priors if fit is None else with_fitted_factors(priors, fit)


def _adopted_fit(gpu, engine: str) -> Calibration | None:
    """The package's fit for (hardware, engine) where one applies: none for a hardware entry with its own priors."""
    if engine in getattr(gpu, "calibration_priors", {}):
        return None
    return published_fit(gpu if isinstance(gpu, str) else gpu.name, engine)


def calibration_source(gpu, engine: str, calibration_file: str | Path | None = None) -> str:
    """Where `get_calibration` takes (hardware, engine)'s factors from, in words a prediction reports."""
    if calibration_file is not None:
        return str(calibration_file)
    if engine in getattr(gpu, "calibration_priors", {}):
        return "hardware entry"
    if _adopted_fit(gpu, engine) is not None:
        return "perfmodel/data/published_calibration.toml (fitted to published throughputs)"
    return "perfmodel/data/calibration.toml"
