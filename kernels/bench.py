"""Measure GQA decode kernels on a GPU: ours (Triton), torch SDPA (enable_gqa=True) and FlexAttention, one run.

Pure measurement, no file I/O (the harness adds metadata and writes JSONL): `grid()` lists the points,
`measure_copy_bandwidth_bytes_per_s()` measures the device-to-device copy bandwidth the kernels are judged
against, and `measure_point()` times every implementation on one shape. Achieved bandwidth counts the bytes a
decode step must move: K and V of every sequence (each KV head read once for its whole group) + q + output.
All sequences of a point have the same kv_len, so SDPA and FlexAttention need no mask and the comparison is fair.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

DEFAULT_BATCH_SIZES = (1, 8, 32, 128, 256)
DEFAULT_KV_LENS = (512, 2048, 8192, 32768)
DEFAULT_GROUPS = (1, 4, 8)
DEFAULT_HEAD_DIMS = (64, 128)
DEFAULT_NUM_KV_HEADS = 8  # Llama-3.x and Qwen2.5-7B use 8 KV heads
IMPLEMENTATIONS = ("triton", "sdpa", "flex")
KEY_FIELDS = ("kernel", "batch_size", "kv_len", "group", "head_dim", "num_kv_heads", "dtype")


@dataclass(frozen=True)
class KernelPoint:
    batch_size: int
    kv_len: int
    group: int
    head_dim: int
    num_kv_heads: int = DEFAULT_NUM_KV_HEADS
    dtype: str = "bfloat16"
    kernel: str = "gqa_decode"

    @property
    def num_qo_heads(self) -> int:
        return self.num_kv_heads * self.group

    @property
    def dtype_bytes(self) -> int:
        return 4 if self.dtype == "float32" else 2

    @property
    def kv_cache_bytes(self) -> int:
        return 2 * self.batch_size * self.num_kv_heads * self.kv_len * self.head_dim * self.dtype_bytes

    @property
    def bytes_moved(self) -> int:
        """K + V read once, q read and output written once."""
        return self.kv_cache_bytes + 2 * self.batch_size * self.num_qo_heads * self.head_dim * self.dtype_bytes

    def key(self) -> tuple:
        return tuple(getattr(self, f) for f in KEY_FIELDS)

    def to_dict(self) -> dict:
        return asdict(self)


def grid(batch_sizes=DEFAULT_BATCH_SIZES, kv_lens=DEFAULT_KV_LENS, groups=DEFAULT_GROUPS,
         head_dims=DEFAULT_HEAD_DIMS, num_kv_heads=DEFAULT_NUM_KV_HEADS, dtype="bfloat16") -> list[KernelPoint]:  # fmt: skip
    return [
        KernelPoint(b, s, g, d, num_kv_heads, dtype)
        for d, g, b, s in itertools.product(head_dims, groups, batch_sizes, kv_lens)
    ]


def _time_s(fn) -> float:
    """Median time of `fn` in seconds (triton.testing.do_bench: CUDA events, L2 flushed between runs)."""
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")) * 1e-3


def measure_copy_bandwidth_bytes_per_s(size_bytes: int = 2 * 2**30) -> float:
    """Device-to-device copy bandwidth: (read + write bytes) / time of a large `copy_`."""
    import torch

    src = torch.empty(size_bytes // 2, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    return 2 * size_bytes / _time_s(lambda: dst.copy_(src))


def flex_attention_or_reason():
    """Compiled FlexAttention, or None with the reason when this torch has none."""
    import torch

    try:
        from torch.nn.attention.flex_attention import flex_attention
    except ImportError as exc:
        return None, f"unavailable: {exc}"
    return torch.compile(flex_attention, dynamic=False), None


def measure_point(point: KernelPoint, copy_bandwidth_bytes_per_s: float, peak_bandwidth_bytes_per_s: float | None,
                  flex=None) -> dict:  # fmt: skip
    """Time every implementation on one shape; status "oom" if the cache does not fit in free memory."""
    import torch
    from torch.nn.functional import scaled_dot_product_attention

    from kernels.gqa_decode import gqa_decode_run, plan_gqa_decode

    free_bytes, _ = torch.cuda.mem_get_info()
    row = {**point.to_dict(), "bytes_moved": point.bytes_moved}
    if 1.25 * point.kv_cache_bytes > free_bytes:  # room for the cache plus outputs and workspace
        return {**row, "status": "oom", "free_bytes": free_bytes}
    dtype = getattr(torch, point.dtype)
    try:
        q = torch.randn(point.batch_size, point.num_qo_heads, point.head_dim, device="cuda", dtype=dtype)
        k = torch.randn(point.batch_size, point.num_kv_heads, point.kv_len, point.head_dim, device="cuda", dtype=dtype)
        v = torch.randn_like(k)
        seq_lens = torch.full((point.batch_size,), point.kv_len, device="cuda", dtype=torch.int32)
        q4 = q.unsqueeze(2)  # [B, Hq, 1, D] for SDPA / Flex
        # Planned once per shape, as a serving engine does: the timed call is the run alone (no host sync).
        plan = plan_gqa_decode(point.batch_size, point.num_qo_heads, point.num_kv_heads, point.head_dim,
                               point.kv_len, dtype=dtype, device=q.device)  # fmt: skip
        out = torch.empty_like(q)
        runs = {
            "triton": lambda: gqa_decode_run(plan, q, k, v, seq_lens, out=out),
            "sdpa": lambda: scaled_dot_product_attention(q4, k, v, enable_gqa=True),
        }
        if flex is not None:
            runs["flex"] = lambda: flex(q4, k, v, enable_gqa=True)
        ours, sdpa = runs["triton"]().float(), runs["sdpa"]().squeeze(2).float()
        row["max_abs_diff_vs_sdpa"] = float((ours - sdpa).abs().max())
        for name, fn in runs.items():
            try:
                seconds = _time_s(fn)
            except Exception as exc:  # a peer failing on one shape must not stop the sweep
                row[f"{name}_status"] = f"error: {type(exc).__name__}: {exc}"[:300]
                continue
            bandwidth = point.bytes_moved / seconds
            row[f"{name}_time_s"] = seconds
            row[f"{name}_bytes_per_s"] = bandwidth
            row[f"{name}_pct_of_copy_bandwidth"] = 100 * bandwidth / copy_bandwidth_bytes_per_s
            row[f"{name}_pct_of_peak_bandwidth"] = (
                100 * bandwidth / peak_bandwidth_bytes_per_s if peak_bandwidth_bytes_per_s else None
            )
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {**row, "status": "oom"}
    finally:
        torch.cuda.empty_cache()
    times = {name: row[f"{name}_time_s"] for name in IMPLEMENTATIONS if f"{name}_time_s" in row}
    row["fastest"] = min(times, key=times.get)
    row["triton_vs_fastest_peer"] = times["triton"] / min(
        (t for name, t in times.items() if name != "triton"), default=times["triton"]
    )
    return {**row, "status": "ok", "copy_bandwidth_bytes_per_s": copy_bandwidth_bytes_per_s}
