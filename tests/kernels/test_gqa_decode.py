"""GQA decode kernel vs the torch reference over awkward sizes, contiguous and paged, split and unsplit."""

import pytest
import torch
from decode_cases import TOLERANCE, make_contiguous, make_paged
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.gqa_decode import gqa_decode
from kernels.reference import gqa_decode_reference


def check(q, k, v, seq_lens, **kw):
    out = gqa_decode(q, k, v, seq_lens, **kw)
    kw.pop("num_splits", None)
    ref = gqa_decode_reference(q, k, v, seq_lens, **kw)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out.float(), ref.float(), atol=TOLERANCE[q.dtype], rtol=TOLERANCE[q.dtype])


@pytest.mark.parametrize("group", [1, 3, 4, 7, 9])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_contiguous_matches_reference_over_group_sizes(device, group, head_dim):
    q, k, v = make_contiguous(3, 2, group, head_dim, 97, torch.float32, device)
    seq_lens = torch.tensor([97, 1, 40], dtype=torch.int32, device=device)
    check(q, k, v, seq_lens, num_splits=1)


@pytest.mark.parametrize("num_splits", [1, 2, 5])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_split_kv_merge_is_exact(device, num_splits, dtype):
    """Splits that are empty for short sequences (kv_len 1, 12) must not disturb the merge."""
    q, k, v = make_contiguous(4, 2, 4, 64, 200, dtype, device, seed=1)
    seq_lens = torch.tensor([200, 1, 12, 129], dtype=torch.int64, device=device)
    check(q, k, v, seq_lens, num_splits=num_splits)


@pytest.mark.parametrize("block_size", [16, 32])
@pytest.mark.parametrize("group", [1, 4, 7])
def test_paged_matches_reference(device, block_size, group):
    seq_lens = [17, 1, 97, 12]
    q, k, v, table = make_paged(seq_lens, 2, group, 64, block_size, torch.float16, device)
    lens = torch.tensor(seq_lens, dtype=torch.int32, device=device)
    check(q, k, v, lens, block_table=table, num_splits=2)


def test_custom_scale_and_non_contiguous_q(device):
    q, k, v = make_contiguous(2, 2, 3, 64, 33, torch.float32, device)
    q_strided = torch.cat([q, q], dim=-1)[..., ::2]  # same values, stride 2 along head_dim
    seq_lens = torch.tensor([33, 5], dtype=torch.int32, device=device)
    check(q_strided, k, v, seq_lens, scale=0.3, num_splits=3)


@settings(max_examples=12, deadline=None)
@given(
    batch=st.integers(1, 3),
    num_kv_heads=st.integers(1, 2),
    group=st.sampled_from([1, 2, 3, 5, 8]),
    kv_lens=st.lists(st.integers(1, 70), min_size=3, max_size=3),
    num_splits=st.integers(1, 4),
    paged=st.booleans(),
)
def test_matches_reference_on_random_shapes(device, batch, num_kv_heads, group, kv_lens, num_splits, paged):
    lens = kv_lens[:batch]
    if paged:
        q, k, v, table = make_paged(lens, num_kv_heads, group, 64, 16, torch.float32, device)
        kw = {"block_table": table}
    else:
        q, k, v = make_contiguous(batch, num_kv_heads, group, 64, max(lens), torch.float32, device)
        kw = {}
    check(q, k, v, torch.tensor(lens, dtype=torch.int32, device=device), num_splits=num_splits, **kw)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 tl.dot is wrong in the CPU interpreter; needs CUDA")
@pytest.mark.parametrize("paged", [False, True])
def test_bf16_and_large_shapes_on_gpu(paged):
    lens = [8192, 1, 3000, 4097]
    if paged:
        q, k, v, table = make_paged(lens, 8, 4, 128, 16, torch.bfloat16, "cuda")
        check(q, k, v, torch.tensor(lens, dtype=torch.int32, device="cuda"), block_table=table)
    else:
        q, k, v = make_contiguous(4, 8, 4, 128, 8192, torch.bfloat16, "cuda")
        check(q, k, v, torch.tensor(lens, dtype=torch.int32, device="cuda"))


def bad(device):
    q, k, v = make_contiguous(2, 2, 2, 64, 16, torch.float32, device)
    return q, k, v, torch.tensor([16, 3], dtype=torch.int32, device=device)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda q, k, v, s: (q[:, :3], k, v, s), "not divisible"),
        (lambda q, k, v, s: (q, k, v[..., :32], s), "equal in shape"),
        (lambda q, k, v, s: (q.half(), k, v, s), "share one dtype"),
        (lambda q, k, v, s: (q.double(), k.double(), v.double(), s), "share one dtype"),
        (lambda q, k, v, s: (q, k, v, s.float()), "seq_lens must be"),
        (lambda q, k, v, s: (q, k, v, s + 10), r"seq_lens must lie in \[1, 16\]"),
        (lambda q, k, v, s: (q, k, v, s * 0), r"seq_lens must lie in"),
        (lambda q, k, v, s: (q[0], k, v, s), "q must be"),
        (lambda q, k, v, s: (q[..., :48], k[..., :48], v[..., :48], s), "power of two"),
    ],
)
def test_bad_arguments_raise_value_error_before_launch(device, mutate, message):
    with pytest.raises(ValueError, match=message):
        gqa_decode(*mutate(*bad(device)))


def test_bad_block_table_raises(device):
    q, k, v, table = make_paged([17, 5], 2, 2, 64, 16, torch.float32, device)
    lens = torch.tensor([17, 5], dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match="block_table must be"):
        gqa_decode(q, k, v, lens, block_table=table[:1])
    with pytest.raises(ValueError, match=r"seq_lens must lie in \[1, 16\]"):  # one 16-token page < 17
        gqa_decode(q, k, v, lens, block_table=table[:, :1])
    with pytest.raises(ValueError, match="int32 or int64"):
        gqa_decode(q, k, v, lens, block_table=table.float())
