"""`ArchBatch`: many architectures as a struct of numpy arrays, for the vectorized estimator and the search.

Field names match `Arch`; derived counts use the same formulas (perfmodel/params.py), so an `ArchBatch` built
from a list of `Arch` reports exactly their numbers. Arrays may have any broadcastable shape: `column()` turns
a flat batch of A architectures into shape (A, 1), ready to broadcast against (1, B) batch sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from perfmodel import params
from perfmodel.arch import ARCH_FIELDS, Arch

ARRAY_FIELDS = tuple(f for f in ARCH_FIELDS if f != "name")


@dataclass(frozen=True)
class ArchBatch:
    d_model: np.ndarray
    n_layer: np.ndarray
    n_head: np.ndarray
    n_kv_head: np.ndarray
    d_head: np.ndarray
    d_ff: np.ndarray
    vocab: np.ndarray
    tie_embeddings: np.ndarray
    qkv_bias: np.ndarray
    qk_norm: np.ndarray
    dtype_bytes: np.ndarray

    @classmethod
    def from_archs(cls, archs: list[Arch]) -> ArchBatch:
        return cls(**{f: np.array([getattr(a, f) for a in archs], dtype=np.int64) for f in ARRAY_FIELDS})

    @classmethod
    def like(cls, base: Arch, **arrays: np.ndarray) -> ArchBatch:
        """Architectures that share `base`'s fields except the ones given as arrays."""
        size = np.broadcast_shapes(*(np.shape(v) for v in arrays.values()))
        columns = {f: np.broadcast_to(np.asarray(getattr(base, f), dtype=np.int64), size) for f in ARRAY_FIELDS}
        columns.update({f: np.asarray(v, dtype=np.int64) for f, v in arrays.items()})
        return cls(**columns)

    def __len__(self) -> int:
        return int(np.broadcast_shapes(*(np.shape(getattr(self, f)) for f in ARRAY_FIELDS))[0])

    def select(self, index) -> ArchBatch:
        """The sub-batch at a boolean mask or integer index array (flat batches)."""
        return ArchBatch(**{f: np.broadcast_to(getattr(self, f), (len(self),))[index] for f in ARRAY_FIELDS})

    def column(self) -> ArchBatch:
        """Shape (A, 1) arrays, to broadcast against a row of batch sizes or lengths."""
        return replace(self, **{f.name: np.reshape(getattr(self, f.name), (-1, 1)) for f in fields(self)})

    def arch(self, index: int, name: str = "") -> Arch:
        """The `index`-th architecture as an `Arch` (flat batches)."""
        values = {f: np.broadcast_to(getattr(self, f), (len(self),))[index].item() for f in ARRAY_FIELDS}
        for flag in ("tie_embeddings", "qkv_bias", "qk_norm"):
            values[flag] = bool(values[flag])
        return Arch(**values, name=name)

    @property
    def n_params_non_embedding(self) -> np.ndarray:
        return params.non_embedding_params(
            self.d_model, self.n_layer, self.n_head, self.n_kv_head, self.d_head, self.d_ff, self.qkv_bias, self.qk_norm
        )

    @property
    def n_params_total(self) -> np.ndarray:
        return self.n_params_non_embedding + params.embedding_params(self.d_model, self.vocab, self.tie_embeddings)

    @property
    def mlp_attn_ratio(self) -> np.ndarray:
        return params.mlp_attn_ratio(self.d_model, self.n_head, self.n_kv_head, self.d_head, self.d_ff)

    @property
    def kv_bytes_per_token(self) -> np.ndarray:
        return params.kv_bytes_per_token(self.n_layer, self.n_kv_head, self.d_head, self.dtype_bytes)

    @property
    def weight_bytes(self) -> np.ndarray:
        return self.n_params_total * self.dtype_bytes
