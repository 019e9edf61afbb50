"""What a sweep runs on, from its arguments: the device and its name, the hardware entry its predictions are for, the
engine's options (our engine's, or a vLLM / SGLang sweep's engine arguments and the fields its key needs), and the
default results file. `args` is the `archscale sweep` namespace (harness/cli/sweep.py); the campaign builds one too.
"""

from __future__ import annotations

from pathlib import Path


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    return "cpu"


def default_out_path(engine: str, device: str, device_name: str | None = None) -> Path:
    from harness.sweep.results_io import device_slug

    slug = device_slug(device_name or device_name(device))
    return Path("results") / "sweeps" / f"{engine}-{slug}.jsonl"


def hardware_for_prediction(args, device: str, device_name: str | None = None):
    """The hardware entry predictions are made for, and a note when there is none. `device_name`: the GPU's name
    when known otherwise than from this process's torch (an external engine's environment)."""
    from perfmodel.errors import ArchscaleInputError
    from perfmodel.hardware import gpu_from_device_name, resolve_hardware

    if args.hardware or args.gpu:
        return resolve_hardware(args.gpu, args.hardware), None
    if device == "cuda":
        name = device_name or device_name(device)
        found = gpu_from_device_name(name)
        return found, None if found else f"no datasheet entry for '{name}': rows have no prediction (--gpu/--hardware)"
    try:
        return resolve_hardware("local", None), None
    except ArchscaleInputError:
        return None, "no probe of this CPU yet: rows have no prediction (run `archscale probe`, then --gpu local)"


def engine_options(args, device: str, hardware, engine_python: str | None = None):
    from harness.engines import EXTERNAL_ENGINES
    from harness.engines.base import MEMORY_POLICY, EngineOptions

    policy = dict(MEMORY_POLICY[device])
    prefill_prior = 8192
    if hardware is not None:  # admit sequences exactly as the perfmodel's capacity formula does for this hardware
        from perfmodel.calibration import get_calibration

        calibration = get_calibration(hardware, args.engine)
        policy = {"memory_utilization": calibration.gpu_memory_utilization,
                  "workspace_bytes": int(calibration.workspace_bytes)}  # fmt: skip
        prefill_prior = int(calibration.max_prefill_tokens)
    dtype = args.dtype or ("bfloat16" if device == "cuda" else "float32")
    if args.engine in EXTERNAL_ENGINES:
        return external_engine_options(args, device, dtype, policy, prefill_prior, engine_python)
    return EngineOptions(
        device=device,
        dtype=dtype,
        attention=args.attention or ("triton" if device == "cuda" else "torch"),
        cuda_graph=not args.no_cuda_graph,
        block_size=args.block_size or 16,
        max_prefill_tokens=args.max_prefill_tokens or 8192,
        repeats=args.repeats,
        seed=args.seed,
        **policy,
    )


def external_engine_options(args, device: str, dtype: str, policy: dict, prefill_prior: int, engine_python):
    """A vLLM / SGLang sweep's options: the engine arguments given (--engine-arg and the flags that map to them),
    and the fields the key and the prediction need, following them: attention is the backend asked for ("auto":
    the engine's choice); max_prefill_tokens the engine's budget when set, else the perfmodel's prior for this
    engine and hardware (perfmodel/data/calibration.toml); block_size and the memory policy are the perfmodel's
    capacity assumptions (the engine's own figures are in each row's engine_config)."""
    from harness.engines import get_engine
    from harness.engines.base import EngineOptions
    from harness.engines.external import DEFAULT_TIMEOUT_S

    engine = get_engine(args.engine)
    engine_args = engine.engine_args(dict(args.engine_arg or ()), cuda_graph=not args.no_cuda_graph,
                                     max_prefill_tokens=args.max_prefill_tokens, block_size=args.block_size)  # fmt: skip
    fields = engine.options_fields(engine_args)
    return EngineOptions(
        device=device,
        dtype=dtype,
        attention=fields["attention"],
        cuda_graph=fields["cuda_graph"],
        block_size=fields["block_size"] or 16,
        max_prefill_tokens=fields["max_prefill_tokens"] or prefill_prior,
        repeats=args.repeats,
        seed=args.seed,
        engine_args=engine_args,
        engine_python=engine_python,
        engine_timeout_s=args.engine_timeout or DEFAULT_TIMEOUT_S,
        **policy,
    )


def external_setup(args) -> tuple[str, dict | None, str | None]:
    """For --engine vllm|sglang: the device (cuda unless --device says otherwise: both are GPU engines), the probe
    of the engine's Python (None for a dry run, which needs no engine) and the GPU's name as that Python's torch
    sees it (or, without it, this machine's nvidia-ml-py / torch). One clear line when the engine is missing."""
    from harness.engines import get_engine
    from perfmodel.errors import ArchscaleInputError

    engine = get_engine(args.engine)
    if args.attention:
        raise ArchscaleInputError(f"--attention picks our engine's decode attention; for {args.engine} pass "
                                  f"--engine-arg {engine.attention_arg}=NAME (default: the engine's choice)")  # fmt: skip
    device = args.device or "cuda"
    probe = None
    if not args.dry_run:  # like Ray: a dry run lists points and predictions without the engine
        probe = engine.locate(args.engine_python, gpu=device == "cuda")
    name = (probe or {}).get("gpu_name")
    if device == "cuda" and name is None:
        from harness.sweep.metadata import gpu_info

        name = gpu_info()["gpu_name"]
        if name is None and probe is not None:
            raise ArchscaleInputError(f"--device cuda: the torch of {probe['python']} sees no CUDA GPU (nor does "
                                      "nvidia-ml-py here)")  # fmt: skip
        name = name or "unknown GPU"  # a dry run where nothing sees a GPU: no datasheet entry, no prediction
    return device, probe, name
