"""The split-KV heuristic: many splits only when the batch leaves SMs idle and the context is long."""

from kernels.heuristics import MAX_SPLITS, MIN_TOKENS_PER_SPLIT, choose_num_splits


def test_big_batches_do_not_split():
    assert choose_num_splits(batch=256, num_kv_heads=8, max_kv_len=32768, sm_count=132) == 1


def test_small_batch_long_context_fills_the_gpu():
    splits = choose_num_splits(batch=1, num_kv_heads=8, max_kv_len=32768, sm_count=132)
    assert 1 * 8 * splits >= 132  # at least one full wave of programs
    assert splits <= MAX_SPLITS


def test_short_contexts_are_not_split_below_the_minimum_tokens():
    assert choose_num_splits(batch=1, num_kv_heads=8, max_kv_len=300, sm_count=132) == 300 // MIN_TOKENS_PER_SPLIT
    assert choose_num_splits(batch=1, num_kv_heads=1, max_kv_len=1, sm_count=132) == 1
