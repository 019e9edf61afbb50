"""Our engine: serve a workload with `LlamaModel` on CPU or CUDA and measure it with real synchronisation.

The workload is served the way the perfmodel describes it: all `batch_size` requests are queued at once; as many
run together as the KV-cache budget admits (`concurrency`), in waves; each wave is a prefill of its prompts in
forwards of at most `max_prefill_tokens` tokens (each yields the first token of its requests), then output_len − 1
greedy decode steps, the KV length growing by one per step. TTFT is reported as serving benchmarks do: per request,
from the moment all were queued (a later wave's requests include their wait), as a mean and p50/p99; the prefill
time of a full wave is reported next to it. The KV budget is the engine's policy, as vLLM's gpu_memory_utilization is: device memory × utilization −
weights − workspace.

Timing: one untimed warm-up wave (Triton JIT, CUDA-graph capture, allocator warm-up), then `repeats` timed runs of
the whole workload; medians are reported and every run kept. CPU steps are timed with perf_counter (torch ops are
synchronous there); CUDA steps with events, synchronised once per wave.

CUDA graphs: with attention="triton" on CUDA the whole decode step — embedding, every layer with the Triton kernel
run from a `DecodePlan`, LM head, argmax, and advancing tokens/positions/seq_lens in place — is captured once per
wave size with `torch.cuda.CUDAGraph` and replayed output_len − 1 times with no host work between replays. We
capture by hand rather than with torch.compile(mode="reduce-overhead") so that what runs is exactly our kernel
with no compilation step, and capture costs milliseconds rather than minutes per shape. The torch attention path
sizes its gather from a host integer that changes every step, so it runs eagerly.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass

from harness.engines.base import EngineOptions, Measurement, Workload, cpu_memory_bytes
from perfmodel.arch import Arch
from perfmodel.errors import ArchscaleInputError

WARMUP_DECODE_STEPS = 2


@dataclass
class WaveTiming:
    prefill_s: float
    first_token_s: list[float]  # per request of the wave: when its first token was ready, from the wave's start
    step_s: list[float]
    total_s: float


def device_memory_bytes(device: str) -> int:
    """Total memory of the device: the GPU's as CUDA reports it, or the machine's RAM for the CPU."""
    if device == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(0).total_memory)
    return cpu_memory_bytes()


def check_options(options: EngineOptions) -> None:
    """User mistakes in the engine options, as one clear error before anything is allocated."""
    import torch

    from harness.engines.llama import TORCH_DTYPES

    if options.device not in ("cpu", "cuda"):
        raise ArchscaleInputError(f"device must be cpu or cuda, got {options.device!r}")
    if options.device == "cuda" and not torch.cuda.is_available():
        raise ArchscaleInputError("--device cuda asked for, but torch sees no CUDA GPU (use --device cpu)")
    if options.dtype not in TORCH_DTYPES:
        raise ArchscaleInputError(f"dtype must be one of {', '.join(TORCH_DTYPES)}, got {options.dtype!r}")
    if options.attention not in ("torch", "triton"):
        raise ArchscaleInputError(f"attention must be torch or triton, got {options.attention!r}")
    if options.attention == "triton" and options.device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ArchscaleInputError(
            "--attention triton on the CPU runs only in Triton's interpreter: set TRITON_INTERPRET=1 (slow, for "
            "tests) or use --attention torch"
        )
    if options.repeats < 1 or options.block_size < 1 or options.max_prefill_tokens < 1:
        raise ArchscaleInputError("repeats, block size and max prefill tokens must be positive")


def max_concurrent_seqs(arch: Arch, workload: Workload, options: EngineOptions, weight_bytes: int, elem: int) -> int:
    """How many sequences of input_len + output_len tokens the KV budget holds (whole pages per sequence)."""
    pages = -(-(workload.input_len + workload.output_len) // options.block_size)
    seq_bytes = 2 * arch.n_layer * pages * options.block_size * arch.n_kv_head * arch.d_head * elem
    budget = device_memory_bytes(options.device) * options.memory_utilization - weight_bytes - options.workspace_bytes
    return max(0, math.floor(budget / seq_bytes))


class TorchEngine:
    name = "torch"

    def run(self, arch: Arch, workload: Workload, options: EngineOptions) -> Measurement:
        import torch

        check_options(options)
        try:
            with torch.inference_mode():
                return _serve(arch, workload, options)
        except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
            return Measurement(status="oom", message=str(exc).splitlines()[0][:300])
        finally:
            if options.device == "cuda":
                torch.cuda.empty_cache()


def _serve(arch: Arch, workload: Workload, options: EngineOptions) -> Measurement:
    import torch

    from harness.engines.llama import TORCH_DTYPES, LlamaModel, LlamaWeights, PagedKVCache

    dtype, device = TORCH_DTYPES[options.dtype], torch.device(options.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    weights = LlamaWeights.random(arch, dtype, device, options.seed)
    elem = torch.tensor([], dtype=dtype).element_size()
    fits = max_concurrent_seqs(arch, workload, options, weights.nbytes, elem)
    if fits < 1:
        return Measurement(status="oom", message="not even one sequence fits in the KV-cache budget")
    concurrency = min(workload.batch_size, fits)
    full_waves, remainder = divmod(workload.batch_size, concurrency)
    wave_sizes = [concurrency] * full_waves + ([remainder] if remainder else [])
    pages_per_seq = -(-(workload.input_len + workload.output_len) // options.block_size)
    cache = PagedKVCache(arch, concurrency * pages_per_seq, options.block_size, dtype, device)
    model = LlamaModel(arch, weights, attention=options.attention, max_prefill_tokens=options.max_prefill_tokens)
    runners = {size: WaveRunner(model, cache, size, pages_per_seq, workload, options) for size in set(wave_sizes)}

    for runner in runners.values():  # warm-up (JIT, graph capture, allocator): a full prefill, two steps; not timed
        runner.serve(_prompts(arch, runner.n_seqs, workload.input_len, device, seed=options.seed + 10_000),
                     max_steps=WARMUP_DECODE_STEPS)  # fmt: skip
    runs = []
    for _ in range(options.repeats):
        waves = [
            runners[size].serve(_prompts(arch, size, workload.input_len, device, seed=options.seed + i))
            for i, size in enumerate(wave_sizes)
        ]
        runs.append(_summarize(waves[:full_waves], waves, workload))
    peak = (
        torch.cuda.max_memory_allocated()
        if device.type == "cuda"
        else weights.nbytes + cache.nbytes  # what the engine allocated for weights and the KV cache
    )
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return Measurement(status="ok", peak_memory_bytes=int(peak), concurrency=concurrency, waves=len(wave_sizes),
                       runs=runs, **medians)  # fmt: skip


def _prompts(arch: Arch, n_seqs: int, input_len: int, device, seed: int):
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, arch.vocab, (n_seqs, input_len), generator=generator).to(device)


def _summarize(full_waves: list[WaveTiming], all_waves: list[WaveTiming], workload: Workload) -> dict:
    """Throughputs, TTFT over requests (all queued at the workload's start, so a later wave's requests include
    their wait; nearest-rank percentiles, as perfmodel.estimator), a full wave's prefill time and TPOT."""
    from perfmodel.estimator import nearest_rank

    total_s = sum(w.total_s for w in all_waves)
    steps = [s for w in full_waves for s in w.step_s]
    tokens = workload.batch_size * workload.output_len
    ttfts, wave_start_s = [], 0.0
    for wave in all_waves:
        ttfts += [wave_start_s + first_s for first_s in wave.first_token_s]
        wave_start_s += wave.total_s
    ttfts.sort()
    return {
        "output_tokens_per_s": tokens / total_s,
        "total_tokens_per_s": workload.batch_size * (workload.input_len + workload.output_len) / total_s,
        "ttft_s": statistics.fmean(ttfts),
        "ttft_p50_s": ttfts[int(nearest_rank(0.5, len(ttfts)))],
        "ttft_p99_s": ttfts[int(nearest_rank(0.99, len(ttfts)))],
        "prefill_time_s": statistics.fmean(w.prefill_s for w in full_waves),
        "tpot_s": statistics.fmean(steps) if steps else 0.0,
        "total_time_s": total_s,
    }


class WaveRunner:
    """Serves waves of `n_seqs` sequences: their block table, static decode inputs and (CUDA) captured graph."""

    def __init__(self, model, cache, n_seqs: int, pages_per_seq: int, workload: Workload, options: EngineOptions):
        import torch

        self.model, self.cache, self.n_seqs, self.workload = model, cache, n_seqs, workload
        device = cache.k.device
        self.is_cuda = device.type == "cuda"
        # Sequence b owns pages b·P .. b·P + P − 1 ("in order": the torch path reads them in place).
        self.block_table = torch.arange(n_seqs * pages_per_seq, dtype=torch.int32, device=device).view(n_seqs, -1)
        self.tokens = torch.zeros(n_seqs, dtype=torch.long, device=device)
        self.positions = torch.zeros(n_seqs, dtype=torch.long, device=device)
        self.seq_lens = torch.zeros(n_seqs, dtype=torch.int32, device=device)
        self.plan = None
        if model.attention == "triton":
            from kernels.gqa_decode import plan_gqa_decode

            arch = model.arch
            self.plan = plan_gqa_decode(n_seqs, arch.n_head, arch.n_kv_head, arch.d_head,
                                        workload.input_len + workload.output_len, dtype=cache.k.dtype, device=device,
                                        page_size=cache.block_size)  # fmt: skip
        self.use_graph = self.is_cuda and options.cuda_graph and model.attention == "triton"
        self.graph = None

    def _reset(self, first_tokens) -> None:
        """Decode starts at position input_len; seq_len counts the token appended in the step."""
        self.tokens.copy_(first_tokens)
        self.positions.fill_(self.workload.input_len)
        self.seq_lens.fill_(self.workload.input_len + 1)

    def _step(self) -> None:
        """One decode step for every sequence, advancing the static inputs in place (graph-capturable)."""
        max_kv_len = None if self.plan is not None else int(self.positions[0]) + 1  # torch path: a host int
        logits = self.model.decode(self.tokens, self.positions, self.cache, self.block_table, self.seq_lens,
                                   plan=self.plan, max_kv_len=max_kv_len, pages_in_order=True)  # fmt: skip
        self.tokens.copy_(logits.argmax(dim=-1))
        self.positions.add_(1)
        self.seq_lens.add_(1)

    def _capture(self, first_tokens) -> None:
        import torch

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up before capture, as torch.cuda.graphs requires
            for _ in range(2):
                self._reset(first_tokens)
                self._step()
        torch.cuda.current_stream().wait_stream(side)
        self._reset(first_tokens)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step()

    def serve(self, prompts, max_steps: int | None = None) -> WaveTiming:
        """Prefill `prompts` [n_seqs, input_len], then output_len − 1 decode steps (at most `max_steps`)."""
        import torch

        steps = self.workload.output_len - 1 if max_steps is None else min(max_steps, self.workload.output_len - 1)
        sync = torch.cuda.synchronize if self.is_cuda else (lambda: None)
        if self.use_graph and self.graph is None and steps > 0:
            self._capture(prompts[:, -1])
        sync()
        start = time.perf_counter()
        first_tokens, first_token_s = [], []
        for logits in self.model.prefill_forwards(prompts, self.cache, self.block_table):
            first_tokens.append(logits.argmax(dim=-1))
            sync()  # the forward's requests have their first token now
            first_token_s += [time.perf_counter() - start] * logits.shape[0]
        prefill_s = first_token_s[-1]
        self._reset(torch.cat(first_tokens))
        step_s = self._decode_timed(steps) if self.is_cuda else self._decode_timed_cpu(steps)
        sync()
        return WaveTiming(prefill_s=prefill_s, first_token_s=first_token_s, step_s=step_s,
                          total_s=time.perf_counter() - start)  # fmt: skip

    def _decode_timed_cpu(self, steps: int) -> list[float]:
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            self._step()
            times.append(time.perf_counter() - t0)
        return times

    def _decode_timed(self, steps: int) -> list[float]:
        import torch

        events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
        events[0].record()
        for i in range(steps):
            if self.graph is not None:
                self.graph.replay()
            else:
                self._step()
            events[i + 1].record()
        torch.cuda.synchronize()
        return [events[i].elapsed_time(events[i + 1]) / 1e3 for i in range(steps)]
