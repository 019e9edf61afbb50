"""Tensor and data parallelism: what one GPU of a TP group holds and computes, and what the group communicates.

Tensor parallelism over `tp` GPUs (Megatron-LM, Shoeybi et al. 2019, arXiv 1909.08053, section 3; as vLLM shards a
Llama): q/k/v and gate/up projections are split by output columns, o and down projections by input rows, so each
GPU holds n_head/tp query heads and d_ff/tp of the MLP; K/V heads are split when n_kv_head >= tp and replicated when
fewer (each GPU then holds one: vLLM's `max(1, n_kv_head // tp)`); the embedding and the LM head are split by vocabulary
rows. Norms stay whole on every GPU. vLLM refuses a degree that does not split the heads evenly: n_head % tp == 0,
and n_kv_head % tp == 0 or tp % n_kv_head == 0; d_ff % tp == 0 for its column-parallel MLP (`check_tp`).

`shard` gives the per-GPU shape; the operators of perfmodel/operators.py then count one GPU's FLOPs and bytes with no
change. Communication per forward of T tokens (`allreduce_s`): two all-reduces per layer (after the o projection and
after the down projection) and one for the vocabulary-parallel embedding, each of T·d·B bytes, and a gather of the
sampled rows' logits (n_seqs · vocab · B) to the GPU that samples. An all-reduce of S bytes moves 2(tp−1)/tp · S over
each GPU's link (the ring's bandwidth term, which no algorithm beats) and pays one collective latency (small messages
go in one shot through the NVLink switch, as NCCL's LL protocol and vLLM's custom all-reduce do, not hop by hop):
latency + 2(tp−1)/tp · S / (link bandwidth · efficiency); a gather latency + (tp−1)/tp · S / (...). Communication is
not overlapped with compute (vLLM does not, by default). At tp = 1 all of it is 0.

Data parallelism over `dp` replicas: independent copies of the TP group, the batch split evenly (the replica with
the most requests, ceil(batch / dp), sets the time); tokens/s add up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perfmodel import params
from perfmodel.errors import ArchscaleInputError


@dataclass(frozen=True)
class ShardShape:
    """The architecture as one GPU of a TP group sees it (fields as `ArchBatch`; arrays broadcast)."""

    d_model: np.ndarray
    n_layer: np.ndarray
    n_head: np.ndarray  # query heads on this GPU
    n_kv_head: np.ndarray  # KV heads on this GPU (1 when replicated)
    d_head: np.ndarray
    d_ff: np.ndarray  # this GPU's slice of the MLP
    vocab: np.ndarray  # this GPU's rows of the embedding and LM head
    full_vocab: np.ndarray  # the sampler works on the gathered logits
    tie_embeddings: np.ndarray
    qkv_bias: np.ndarray
    qk_norm: np.ndarray
    dtype_bytes: np.ndarray

    @property
    def weight_bytes(self) -> np.ndarray:
        """Bytes of weights one GPU holds."""
        non_embedding = params.non_embedding_params(self.d_model, self.n_layer, self.n_head, self.n_kv_head,
                                                    self.d_head, self.d_ff, self.qkv_bias, self.qk_norm)  # fmt: skip
        embedding = params.embedding_params(self.d_model, self.vocab, self.tie_embeddings)
        return (non_embedding + embedding) * self.dtype_bytes


def kv_heads_per_gpu(n_kv_head, tp):
    """K/V heads each GPU holds: split when there are at least tp of them, else one replicated head."""
    return np.maximum(np.asarray(n_kv_head) // tp, 1)


def shard(archs, tp) -> ShardShape:
    """One GPU's share of `archs` (an `ArchBatch` or `Arch`) under tensor parallelism of degree `tp`."""
    return ShardShape(
        d_model=np.asarray(archs.d_model),
        n_layer=np.asarray(archs.n_layer),
        n_head=np.asarray(archs.n_head) // tp,
        n_kv_head=kv_heads_per_gpu(archs.n_kv_head, tp),
        d_head=np.asarray(archs.d_head),
        d_ff=np.asarray(archs.d_ff) // tp,
        vocab=-(-np.asarray(archs.vocab) // tp),  # ceil: the last GPU's rows are padded
        full_vocab=np.asarray(archs.vocab),
        tie_embeddings=np.asarray(archs.tie_embeddings),
        qkv_bias=np.asarray(archs.qkv_bias),
        qk_norm=np.asarray(archs.qk_norm),
        dtype_bytes=np.asarray(archs.dtype_bytes),
    )


def tp_compatible(archs, tp) -> np.ndarray:
    """Where vLLM accepts the TP degree: heads and d_ff split evenly, K/V heads split or replicated evenly."""
    n_head, n_kv_head, d_ff = (np.asarray(x) for x in (archs.n_head, archs.n_kv_head, archs.d_ff))
    kv_ok = np.where(n_kv_head >= tp, n_kv_head % tp == 0, tp % n_kv_head == 0)
    return (n_head % tp == 0) & kv_ok & (d_ff % tp == 0)


def check_tp(arch, tp: int, dp: int = 1) -> None:
    """One clear error when a real engine would refuse this TP degree for `arch` (the messages name vLLM's rule)."""
    for label, value in (("--tp", tp), ("--dp", dp)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArchscaleInputError(f"{label} must be a positive integer, got {value!r}")
    name = arch.name or "the model"
    if arch.n_head % tp:
        raise ArchscaleInputError(f"{name}: n_head={arch.n_head} is not divisible by --tp {tp} (vLLM splits the query "
                                  "heads evenly over the TP group)")  # fmt: skip
    if arch.n_kv_head >= tp and arch.n_kv_head % tp:
        raise ArchscaleInputError(f"{name}: n_kv_head={arch.n_kv_head} is not divisible by --tp {tp} (vLLM splits the "
                                  "K/V heads evenly when there are at least as many as GPUs)")  # fmt: skip
    if arch.n_kv_head < tp and tp % arch.n_kv_head:
        raise ArchscaleInputError(f"{name}: --tp {tp} is not a multiple of n_kv_head={arch.n_kv_head} (vLLM replicates "
                                  "each K/V head over an equal number of GPUs)")  # fmt: skip
    if arch.d_ff % tp:
        raise ArchscaleInputError(f"{name}: d_ff={arch.d_ff} is not divisible by --tp {tp} (the MLP is split by "
                                  "columns evenly)")  # fmt: skip


def allreduce_s(nbytes, tp, bandwidth_bytes_per_s, latency_s):
    """One all-reduce of `nbytes` over `tp` GPUs: one collective latency + 2(tp−1)/tp · nbytes over each link."""
    return latency_s + 2 * (tp - 1) / tp * nbytes / bandwidth_bytes_per_s


def gather_s(nbytes, tp, bandwidth_bytes_per_s, latency_s):
    """Gathering `nbytes` (split over `tp` GPUs) onto one GPU: one latency + (tp−1)/tp · nbytes over its link."""
    return latency_s + (tp - 1) / tp * nbytes / bandwidth_bytes_per_s


def communication_s(shape: ShardShape, tokens, sampled_seqs, tp, bandwidth_bytes_per_s, latency_s):
    """TP communication of one forward of `tokens` tokens that samples `sampled_seqs` sequences (0 at tp = 1)."""
    if np.all(np.asarray(tp) == 1):
        return np.zeros(np.broadcast_shapes(np.shape(tokens), np.shape(shape.d_model)))
    activations = tokens * shape.d_model * shape.dtype_bytes
    allreduces = 2 * shape.n_layer + 1
    logits = sampled_seqs * shape.full_vocab * shape.dtype_bytes
    return allreduces * allreduce_s(activations, tp, bandwidth_bytes_per_s, latency_s) + gather_s(
        logits, tp, bandwidth_bytes_per_s, latency_s
    )
