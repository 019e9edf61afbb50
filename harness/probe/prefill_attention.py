"""The probe's prefill attention: our engine's causal attention over a prompt, timed as the engine runs it, and the
efficiency the perfmodel's prefill-attention operator needs to predict that time (the
`attention_prefill_compute_efficiency` prior).

Without it, prefill attention runs at the GEMMs' efficiency in the model. On a CPU, causal SDPA reaches far less of
the matmul peak than the GEMMs of the same forward, so configurations with many query heads (more attention FLOPs per
token) came out slower than predicted. It is timed on the GEMM curve's model (its heads, head dim and GQA group) at
one forward of the size the sweeps prefill in (ProbeSizes.prefill_attention_shape).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class PrefillAttentionTimes:
    arch: object  # perfmodel.Arch whose heads are timed
    batch: int  # sequences in the forward
    input_len: int  # prompt tokens of each
    layer_s: float  # median seconds of one layer's attention (harness.engines.llama.causal_prefill_attention)

    def layer_flops(self) -> float:
        """One layer's FLOPs as the perfmodel counts them (perfmodel.operators.prefill_attention: causal)."""
        from perfmodel.operators import prefill_attention

        arch = self.arch
        op = prefill_attention(_one_layer(arch), self.batch, self.input_len, arch.dtype_bytes)
        return float(np.asarray(op.flops).item())

    def flops_per_s(self) -> float:
        return self.layer_flops() / self.layer_s

    def efficiency(self, peak_flops_per_s: float) -> float:
        """The compute efficiency at which the perfmodel's operator takes the measured time: FLOP/s over the peak."""
        return min(self.flops_per_s() / peak_flops_per_s, 1.0)


def _one_layer(arch):
    from dataclasses import replace

    from harness.probe.decode import one_gpu_shape

    return one_gpu_shape(replace(arch, n_layer=1))


def prefill_attention_times(timer, device: str, dtype, arch, batch: int, input_len: int) -> PrefillAttentionTimes:
    """Median seconds of one layer's causal prefill attention for `batch` prompts of `input_len` tokens on `arch`'s
    heads, random q, k and v in `dtype`."""
    import torch

    from harness.engines.llama import causal_prefill_attention

    generator = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(batch, input_len, arch.n_head, arch.d_head, device=device, generator=generator).to(dtype)
    k = torch.randn(batch, input_len, arch.n_kv_head, arch.d_head, device=device, generator=generator).to(dtype)
    v = torch.randn_like(k)  # [B, T, hkv, dh]
    scale = 1.0 / math.sqrt(arch.d_head)
    layer_s, _ = timer.kernel_s(lambda: causal_prefill_attention(q, k, v, arch.gqa_group, scale))
    return PrefillAttentionTimes(arch, batch, input_len, layer_s)
