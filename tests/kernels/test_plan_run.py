"""plan_gqa_decode + gqa_decode_run: the decode step with no host sync, reusable across a decode loop and
capturable in a CUDA graph; 64-bit offsets for caches and views over 2**31 elements."""

import dataclasses

import pytest
import torch
from decode_cases import TOLERANCE, make_contiguous, make_paged
from torch.utils._python_dispatch import TorchDispatchMode

import kernels.gqa_decode as gd
from kernels.gqa_decode import gqa_decode_run, plan_gqa_decode
from kernels.heuristics import choose_num_splits
from kernels.reference import gqa_decode_reference

NUM_KV_HEADS, HEAD_DIM, PAGE_SIZE = 2, 64, 16


class LaunchCounter:
    """Stands in for a Triton kernel in kernels.gqa_decode: counts `kernel[grid](...)` launches, forwards them."""

    def __init__(self, kernel):
        self.kernel, self.launches = kernel, 0

    def __getitem__(self, grid):
        self.launches += 1
        return self.kernel[grid]


@pytest.fixture
def merge_launches(monkeypatch):
    counter = LaunchCounter(gd._merge_kernel)
    monkeypatch.setattr(gd, "_merge_kernel", counter)
    return counter


def make_case(paged, device, *, seq_lens=(40, 1, 17), max_kv_len=48, group=3, dtype=torch.float32, seed=0):
    """q, k, v, block_table (None when contiguous) and seq_lens, with room for max_kv_len tokens per sequence."""
    if paged:
        lens = [max_kv_len] * len(seq_lens)
        q, k, v, table = make_paged(lens, NUM_KV_HEADS, group, HEAD_DIM, PAGE_SIZE, dtype, device, seed)
    else:
        q, k, v = make_contiguous(len(seq_lens), NUM_KV_HEADS, group, HEAD_DIM, max_kv_len, dtype, device, seed)
        table = None
    return q, k, v, table, torch.tensor(seq_lens, dtype=torch.int32, device=device)


def make_plan(q, paged, max_kv_len=48, **kw):
    batch, num_qo_heads, head_dim = q.shape
    return plan_gqa_decode(batch, num_qo_heads, NUM_KV_HEADS, head_dim, max_kv_len, dtype=q.dtype, device=q.device,
                           page_size=PAGE_SIZE if paged else None, **kw)  # fmt: skip


def assert_matches_reference(out, q, k, v, seq_lens, table):
    ref = gqa_decode_reference(q, k, v, seq_lens, block_table=table)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out.float(), ref.float(), atol=TOLERANCE[q.dtype], rtol=TOLERANCE[q.dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("num_splits", [1, 3])
@pytest.mark.parametrize("paged", [False, True])
def test_plan_run_matches_reference_and_skips_merge_for_one_split(device, merge_launches, paged, num_splits, dtype):
    q, k, v, table, seq_lens = make_case(paged, device, dtype=dtype)
    plan = make_plan(q, paged, num_splits=num_splits)
    assert (plan.partial_out is None, plan.partial_lse is None) == (num_splits == 1, num_splits == 1)
    out = gqa_decode_run(plan, q, k, v, seq_lens, block_table=table)
    assert_matches_reference(out, q, k, v, seq_lens, table)
    assert merge_launches.launches == (0 if num_splits == 1 else 1)


@pytest.mark.parametrize("num_splits", [1, 3])
@pytest.mark.parametrize("paged", [False, True])
def test_one_plan_serves_a_growing_decode_loop(device, paged, num_splits):
    """As an engine's decode loop: static q/seq_lens/out tensors updated in place, seq_lens growing by one."""
    q, k, v, table, seq_lens = make_case(paged, device)
    plan = make_plan(q, paged, num_splits=num_splits)
    out = torch.empty_like(q)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):  # (40, 1, 17) -> (45, 6, 22), within max_kv_len = 48
        seq_lens += 1
        q.copy_(torch.randn(q.shape, generator=g))
        assert gqa_decode_run(plan, q, k, v, seq_lens, block_table=table, out=out) is out
        assert_matches_reference(out, q, k, v, seq_lens, table)


@pytest.mark.parametrize("num_splits", [1, 3])
def test_run_writes_into_a_preallocated_strided_out(device, num_splits):
    q, k, v, table, seq_lens = make_case(True, device)
    plan = make_plan(q, True, num_splits=num_splits)
    storage = torch.full((*q.shape[:2], 2 * HEAD_DIM), float("nan"), device=device)
    out = storage[..., HEAD_DIM:]  # strided: row stride 2 * head_dim
    assert gqa_decode_run(plan, q, k, v, seq_lens, block_table=table, out=out) is out
    assert_matches_reference(out, q, k, v, seq_lens, table)
    assert storage[..., :HEAD_DIM].isnan().all()  # nothing written outside out


WRONG_RUN_ARGUMENTS = [  # (q, k, v, seq_lens, block_table) -> run arguments (q, k, v, seq_lens, kwargs)
    pytest.param(lambda q, k, v, s, t: (torch.cat([q, q[:1]]), k, v, s, {}), "plan is for", id="batch"),
    pytest.param(lambda q, k, v, s, t: (q[:, :4], k, v, s, {}), "plan is for", id="num_qo_heads"),
    pytest.param(lambda q, k, v, s, t: (q.half(), k.half(), v.half(), s, {}), "plan is for", id="dtype"),
    pytest.param(lambda q, k, v, s, t: (q[..., :32], k[..., :32], v[..., :32], s, {}), "plan is for", id="head_dim"),
    pytest.param(lambda q, k, v, s, t: (q, k, v, s, {"block_table": t}), "contiguous cache", id="block_table"),
    pytest.param(lambda q, k, v, s, t: (q, k[:, :1], v[:, :1], s, {}), "num_kv_heads", id="num_kv_heads"),
    pytest.param(lambda q, k, v, s, t: (q, k[:, :, :20], v[:, :, :20], s, {}), "max_kv_len=48", id="capacity"),
    pytest.param(lambda q, k, v, s, t: (q, k, v, s[:2], {}), "seq_lens must be", id="seq_lens_shape"),
    pytest.param(lambda q, k, v, s, t: (q, k, v, s.float(), {}), "seq_lens must be", id="seq_lens_dtype"),
    pytest.param(lambda q, k, v, s, t: (q, k, v.half(), s, {}), "share one dtype", id="cache_dtype"),
    pytest.param(lambda q, k, v, s, t: (q, k, v, s, {"out": q.half()}), "out must be", id="out_dtype"),
    pytest.param(lambda q, k, v, s, t: (q, k, v, s, {"out": q[:, :2]}), "out must be", id="out_shape"),
]


@pytest.mark.parametrize(("mutate", "message"), WRONG_RUN_ARGUMENTS)
def test_run_rejects_tensors_that_do_not_match_the_plan(device, merge_launches, mutate, message):
    q, k, v, _, seq_lens = make_case(False, device)
    table = torch.zeros(3, 3, dtype=torch.int32, device=device)
    plan = make_plan(q, False, num_splits=3)
    q, k, v, seq_lens, kw = mutate(q, k, v, seq_lens, table)
    with pytest.raises(ValueError, match=message):
        gqa_decode_run(plan, q, k, v, seq_lens, **kw)
    assert merge_launches.launches == 0


def test_paged_plan_rejects_a_contiguous_call_and_another_page_size(device):
    q, k, v, table, seq_lens = make_case(True, device)
    with pytest.raises(ValueError, match="paged cache"):
        gqa_decode_run(make_plan(q, True), q, k, v, seq_lens)
    plan = plan_gqa_decode(3, q.shape[1], NUM_KV_HEADS, HEAD_DIM, 48, dtype=q.dtype, device=device, page_size=32)
    with pytest.raises(ValueError, match="page_size=32"):
        gqa_decode_run(plan, q, k, v, seq_lens, block_table=table)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"head_dim": 48}, "power of two"),
        ({"num_qo_heads": 5}, "not divisible"),
        ({"dtype": torch.float64}, "fp16/bf16/fp32"),
        ({"max_kv_len": 0}, "max_kv_len must be"),
        ({"batch": -1}, "batch must be"),
        ({"num_splits": 0}, "num_splits must be"),
        ({"page_size": 0}, "page_size must be"),
        ({"sm_count": 0}, "sm_count must be"),
    ],
)
def test_plan_rejects_bad_shapes(overrides, message):
    args = {"batch": 2, "num_qo_heads": 8, "num_kv_heads": 2, "head_dim": 64, "max_kv_len": 100,
            "dtype": torch.float16, "device": "cpu"} | overrides  # fmt: skip
    with pytest.raises(ValueError, match=message):
        plan_gqa_decode(**args)


def test_plan_picks_splits_with_the_heuristic_and_allocates_the_buffers():
    plan = plan_gqa_decode(1, 32, 8, 128, 32768, dtype=torch.bfloat16, device="cpu", sm_count=132)
    splits = choose_num_splits(1, 8, 32768, 132)
    assert splits > 1 and plan.num_splits == splits and not plan.paged and plan.page_size == 1
    assert plan.partial_out.shape == (1, 32, splits, 128) and plan.partial_out.dtype == torch.float32
    assert plan.partial_lse.shape == (1, 32, splits) and plan.partial_lse.dtype == torch.float32
    on_cpu = plan_gqa_decode(1, 32, 8, 128, 32768, dtype=torch.bfloat16, device="cpu", page_size=16)
    assert on_cpu.num_splits == choose_num_splits(1, 8, 32768, 1) == 1  # sm_count 1 on the CPU
    assert on_cpu.partial_out is None and on_cpu.paged and on_cpu.page_size == 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.num_splits = 2


class HostReadGuard(TorchDispatchMode):
    """Fails on any read of a tensor value into Python (item, int, bool, float, index all dispatch to
    aten._local_scalar_dense) and records the allocations of non-empty tensors."""

    ALLOCATING = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like",
                  "new_zeros", "ones", "full", "full_like", "clone", "_to_copy", "contiguous"}  # fmt: skip

    def __init__(self):
        super().__init__()
        self.allocations = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            raise AssertionError("a tensor value was read on the host")
        result = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__ in self.ALLOCATING and isinstance(result, torch.Tensor) and result.numel():
            self.allocations.append(str(func))
        return result


def _no_host_copies(monkeypatch):
    """tolist/numpy read a tensor without going through the dispatcher: make them fail too."""

    def fail(*args, **kwargs):
        raise AssertionError("a tensor was copied to the host")

    for name in ("tolist", "numpy", "__array__"):
        monkeypatch.setattr(torch.Tensor, name, fail)


@pytest.mark.parametrize("num_splits", [1, 3])
@pytest.mark.parametrize("paged", [False, True])
def test_run_never_reads_a_tensor_on_the_host_nor_allocates(device, monkeypatch, paged, num_splits):
    q, k, v, table, seq_lens = make_case(paged, device)
    plan = make_plan(q, paged, num_splits=num_splits)
    out = torch.empty_like(q)
    guard = HostReadGuard()
    with monkeypatch.context() as patched:
        _no_host_copies(patched)
        with guard:
            with pytest.raises(AssertionError, match="read on the host"):  # the guard does catch a host read
                int(seq_lens.max())
            if q.is_cuda:
                torch.cuda.set_sync_debug_mode("error")
            try:
                gqa_decode_run(plan, q, k, v, seq_lens, block_table=table, out=out)
            finally:
                if q.is_cuda:
                    torch.cuda.set_sync_debug_mode("default")
    assert guard.allocations == []
    assert_matches_reference(out, q, k, v, seq_lens, table)


def _lazy_empty(numel, dtype, device):
    """A tensor over 2**31 elements: on Linux untouched pages of torch.empty cost no memory."""
    try:
        return torch.empty(numel, dtype=dtype, device=device)
    except (RuntimeError, MemoryError) as exc:  # strict overcommit, a small GPU
        pytest.skip(f"cannot reserve {numel} elements: {exc}")


@pytest.mark.parametrize("num_splits", [1, 2])
def test_offsets_past_2_31_elements_in_q_out_and_a_contiguous_cache(device, num_splits):
    """Every stride here fits in int32 (so Triton passes it as i32), but kv_head * stride_k_head, q_head * stride_qh
    and head * stride_oh exceed 2**31: int32 offsets wrap (under the interpreter: a segfault)."""
    kv_len, head_dim, num_kv_heads, group = 64, 16, 3, 2
    rows = kv_len * head_dim
    buffer = _lazy_empty(5 * 2**29 + 4 * rows, torch.float16, device)  # q, out, K, V: disjoint views of it
    cache_shape, cache_strides = (1, num_kv_heads, kv_len, head_dim), (3 * 2**30, 2**30, head_dim, 1)
    k = buffer.as_strided(cache_shape, cache_strides, 0)  # head h at h * 2**30
    v = buffer.as_strided(cache_shape, cache_strides, rows)
    q = buffer.as_strided((1, num_kv_heads * group, head_dim), (2**31, 2**29, 1), 2 * rows)  # head h at h * 2**29
    out = buffer.as_strided(q.shape, q.stride(), 2 * rows + head_dim)
    g = torch.Generator().manual_seed(2)
    for view in (k, v, q, out):
        view.copy_(torch.randn(view.shape, generator=g))
    seq_lens = torch.tensor([50], dtype=torch.int32, device=device)
    plan = plan_gqa_decode(1, num_kv_heads * group, num_kv_heads, head_dim, kv_len, dtype=torch.float16,
                           device=device, num_splits=num_splits)  # fmt: skip
    gqa_decode_run(plan, q, k, v, seq_lens, out=out)
    assert_matches_reference(out, q, k, v, seq_lens, None)


def test_paged_cache_over_2_31_elements(device):
    """The sequences' pages sit at the end of caches of 2**31 + 4 pages' elements; only those pages are touched."""
    page_elems = PAGE_SIZE * NUM_KV_HEADS * HEAD_DIM
    num_blocks = 2**31 // page_elems + 4
    k, v = (_lazy_empty(num_blocks * page_elems, torch.float16, device).view(num_blocks, PAGE_SIZE, NUM_KV_HEADS,
                                                                            HEAD_DIM) for _ in range(2))  # fmt: skip
    seq_lens = torch.tensor([40, 17], dtype=torch.int32, device=device)
    table = torch.tensor([[num_blocks - 1, num_blocks - 3, num_blocks - 5], [num_blocks - 2, num_blocks - 4, 0]],
                         dtype=torch.int32, device=device)  # fmt: skip
    g = torch.Generator().manual_seed(3)
    for page in range(num_blocks - 5, num_blocks):
        k[page].copy_(torch.randn(k[page].shape, generator=g))
        v[page].copy_(torch.randn(v[page].shape, generator=g))
    q = torch.randn(2, NUM_KV_HEADS * 4, HEAD_DIM, generator=g).to(device, torch.float16)
    for num_splits in (1, 2):
        plan = plan_gqa_decode(2, q.shape[1], NUM_KV_HEADS, HEAD_DIM, 48, dtype=q.dtype, device=device,
                               page_size=PAGE_SIZE, num_splits=num_splits)  # fmt: skip
        out = gqa_decode_run(plan, q, k, v, seq_lens, block_table=table)
        assert_matches_reference(out, q, k, v, seq_lens, table)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
@pytest.mark.parametrize("num_splits", [1, None])  # None: the heuristic for this GPU (several splits here)
@pytest.mark.parametrize("paged", [False, True])
def test_run_replays_in_a_cuda_graph_with_updated_seq_lens(paged, num_splits):
    max_kv_len, lens = 4096, torch.tensor([700, 1, 3000, 129])
    batch, num_kv_heads, group, head_dim = len(lens), 8, 4, 128
    if paged:
        q, k, v, table = make_paged([max_kv_len] * batch, num_kv_heads, group, head_dim, 16, torch.bfloat16, "cuda")
    else:
        q, k, v = make_contiguous(batch, num_kv_heads, group, head_dim, max_kv_len, torch.bfloat16, "cuda")
        table = None
    plan = plan_gqa_decode(batch, num_kv_heads * group, num_kv_heads, head_dim, max_kv_len, dtype=q.dtype,
                           device="cuda", page_size=16 if paged else None, num_splits=num_splits)  # fmt: skip
    assert num_splits == 1 or plan.num_splits > 1
    seq_lens = lens.to("cuda", torch.int32)
    out = torch.empty_like(q)

    def step():
        gqa_decode_run(plan, q, k, v, seq_lens, block_table=table, out=out)

    side = torch.cuda.Stream()  # warm-up (compiles the kernels) off the capturing stream, as torch documents
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    for replay in range(4):
        seq_lens.copy_(lens + 300 * replay)  # the engine's in-place update of the static tensor
        q.copy_(torch.randn_like(q))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert_matches_reference(out, q, k, v, seq_lens, table)
