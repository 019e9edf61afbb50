"""CUDA-graph batch buckets: a decode step of n sequences runs the graph captured for the next size up.

vLLM and SGLang capture one CUDA graph per batch size on a ladder and replay the smallest one that holds the step's
batch, padding the rest with dummy rows that go through every GEMM and elementwise kernel (not the sampler: only
the real rows are sampled). A batch above the largest captured size runs without a graph, unpadded.

- vLLM (`VllmConfig._set_cudagraph_sizes`, vllm/config/vllm.py): [1, 2, 4] + range(8, 256, 8) +
  range(256, max + 1, 16), max = min(2 · max_num_seqs, 512): 512 whenever max_num_seqs ≥ 256, and the cap never binds
  below that (no step runs more than max_num_seqs sequences).
- SGLang (`ServerArgs._generate_cuda_graph_batch_sizes`, python/sglang/srt/server_args.py): [1, 2, 4, 8, 12] +
  range(16, 257, 8) + range(272, 512, 16) + range(512, max + 1, 32), `cuda_graph_max_bs` = 256 on GPUs of 60-160
  GiB at TP < 4 (A100-80GB, H100, H200), 512 above 160 GiB (B200), 32 on 35-60 GiB (A100-40GB) at TP < 4.

Both are the ladder below up to 512 (SGLang also captures 12, where vLLM pads 9-12 to 16); `cuda_graph_max_batch`
(perfmodel.calibration) is the engine's largest captured size, 0 for our engine, which captures each wave's exact
batch. Only decode-only steps are padded here: SGLang runs prefill and mixed batches without graphs by default, and
vLLM's piecewise graphs for them cover at most 512 tokens, less than a step carrying a prompt chunk usually holds.
Under tensor parallelism the all-reduces are costed on the real rows (the padded ones add a little more).
"""

from __future__ import annotations

import numpy as np


def _rung_up(n):
    """The smallest ladder size ≥ n (n ≥ 1)."""
    step = np.where(n <= 256, 8.0, np.where(n <= 512, 16.0, 32.0))
    small = np.where(n <= 1, 1.0, np.where(n <= 2, 2.0, 4.0))
    return np.where(n <= 4, small, np.ceil(n / step) * step)


def _rung_down(m):
    """The largest ladder size ≤ m (0 below 1): the largest batch actually captured when the cap is m."""
    step = np.where(m < 264, 8.0, np.where(m < 528, 16.0, 32.0))  # 256 + 8 = 264 and 512 + 16 = 528 round down
    small = np.where(m < 1, 0.0, np.where(m < 2, 1.0, np.where(m < 4, 2.0, 4.0)))
    return np.where(m < 8, small, np.floor(m / step) * step)


def graph_batch(n_seqs, max_batch):
    """The captured batch size a decode step of `n_seqs` sequences replays (float arrays): the next size up on the
    ladder 1, 2, 4, multiples of 8 to 256, of 16 to 512, of 32 above, where it is at most the largest size captured
    (the largest on the ladder not above `max_batch`); `n_seqs` itself above that, or where `max_batch` is 0 (no
    graphs), or where there is no decode at all."""
    n = np.asarray(n_seqs, dtype=np.float64)
    max_batch = np.asarray(max_batch, dtype=np.float64)
    if not np.any(max_batch > 0):  # no graphs (our engine): nothing to pad
        return n
    top = _rung_down(max_batch)
    return np.where((n > 0) & (n <= top), _rung_up(np.maximum(n, 1.0)), n)
