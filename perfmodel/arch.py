"""`Arch`: one Llama-family decoder architecture — its shape, its parameter counts, and its config.json.

Constructors: `Arch.from_hf_config` (Llama / Mistral / Qwen2 / Qwen3 config.json keys), the presets in
`perfmodel.presets`, and `Arch.from_budget` (the search's inverse: a parameter budget N, a hidden-size factor
x = d/sqrt(N), an MLP-to-attention ratio r and a GQA group -> integer heads and d_ff). `to_hf_config` writes a
config.json that transformers, vLLM and SGLang load (with random or dummy weights).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

from perfmodel import params
from perfmodel.atomic_io import JSON_ERRORS, json_failure, json_type
from perfmodel.errors import ArchscaleInputError

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1}
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
MAX_CONFIG_INT = 2**31 - 1  # larger dimensions in a config.json are corrupt (and overflow 64-bit arithmetic)
MAX_CONFIG_PARAMS = 10**15  # a quadrillion parameters: 1000x beyond any model, well inside 64-bit products


@dataclass(frozen=True)
class Arch:
    d_model: int
    n_layer: int
    n_head: int  # query heads (num_qo_heads)
    n_kv_head: int
    d_head: int
    d_ff: int
    vocab: int
    tie_embeddings: bool = False
    qkv_bias: bool = False  # Qwen2: biases on q, k, v
    qk_norm: bool = False  # Qwen3: RMSNorm on q and k per head
    dtype_bytes: int = 2
    name: str = ""

    def __post_init__(self) -> None:
        label = f"{self.name}: " if self.name else ""
        for f in ("d_model", "n_layer", "n_head", "n_kv_head", "d_head", "d_ff", "vocab"):
            value = getattr(self, f)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ArchscaleInputError(f"{label}{f} must be a positive integer, got {value!r}")
        if self.n_head % self.n_kv_head:
            raise ArchscaleInputError(
                f"{label}n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head} "
                "(each KV head must serve a whole group of query heads)"
            )
        if self.dtype_bytes not in (1, 2, 4):
            raise ArchscaleInputError(f"{label}dtype_bytes must be 1, 2 or 4, got {self.dtype_bytes!r}")

    # ---- parameter counts (see perfmodel/params.py for the formulas) ----
    @property
    def attn_params_per_layer(self) -> int:
        return params.attention_weight_params(
            self.d_model, self.n_head, self.n_kv_head, self.d_head
        ) + params.attention_bias_params(self.n_head, self.n_kv_head, self.d_head, self.qkv_bias)

    @property
    def mlp_params_per_layer(self) -> int:
        return params.mlp_params(self.d_model, self.d_ff)

    @property
    def norm_params(self) -> int:
        return self.n_layer * params.norm_params(self.d_model, self.d_head, self.qk_norm) + self.d_model

    @property
    def n_params_attention(self) -> int:
        return self.n_layer * self.attn_params_per_layer

    @property
    def n_params_mlp(self) -> int:
        return self.n_layer * self.mlp_params_per_layer

    @property
    def n_params_embedding(self) -> int:
        return params.embedding_params(self.d_model, self.vocab, self.tie_embeddings)

    @property
    def n_params_non_embedding(self) -> int:
        return self.n_params_attention + self.n_params_mlp + self.norm_params

    @property
    def n_params_total(self) -> int:
        return self.n_params_non_embedding + self.n_params_embedding

    @property
    def mlp_attn_ratio(self) -> float:
        return params.mlp_attn_ratio(self.d_model, self.n_head, self.n_kv_head, self.d_head, self.d_ff)

    @property
    def gqa_group(self) -> int:
        return self.n_head // self.n_kv_head

    @property
    def hidden_size_factor(self) -> float:
        """x = d / sqrt(N), the paper's hidden-size variable."""
        return self.d_model / math.sqrt(self.n_params_non_embedding)

    @property
    def kv_bytes_per_token(self) -> int:
        return params.kv_bytes_per_token(self.n_layer, self.n_kv_head, self.d_head, self.dtype_bytes)

    @property
    def weight_bytes(self) -> int:
        return self.n_params_total * self.dtype_bytes

    def param_breakdown(self) -> str:
        """A readable parameter table (nanoGPT style)."""
        rows = [
            ("attention (q,k,v,o)", self.n_params_attention),
            ("MLP (SwiGLU)", self.n_params_mlp),
            ("norms", self.norm_params),
            ("non-embedding N", self.n_params_non_embedding),
            ("embeddings" + (" (tied)" if self.tie_embeddings else " + LM head"), self.n_params_embedding),
            ("total", self.n_params_total),
        ]
        width = max(len(label) for label, _ in rows)
        lines = [
            f"{self.name or 'arch'}: d={self.d_model} layers={self.n_layer} heads={self.n_head}/{self.n_kv_head}"
            f" d_head={self.d_head} d_ff={self.d_ff} vocab={self.vocab}"
        ]
        lines += [f"  {label:<{width}}  {count:>15,d}" for label, count in rows]
        lines.append(
            f"  r = MLP/attention = {self.mlp_attn_ratio:.3f}   GQA = {self.gqa_group}   "
            f"x = d/sqrt(N) = {self.hidden_size_factor:.4f}"
        )
        return "\n".join(lines)

    # ---- config.json ----
    @classmethod
    def from_hf_config(cls, config: dict | str | Path, name: str = "") -> Arch:
        """From a Llama / Mistral / Qwen2 / Qwen3 config.json (a dict or a path to the file)."""
        source = "config"
        if not isinstance(config, dict):
            path = Path(config)
            source = str(path)
            name = name or (path.parent.name if path.name == "config.json" else path.stem)
            try:
                config = json.loads(path.read_text())
            except FileNotFoundError:
                raise ArchscaleInputError(f"{path}: no such config file") from None
            except IsADirectoryError:
                raise ArchscaleInputError(f"{path}: is a folder without a config.json") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ArchscaleInputError(f"{path}: cannot read config ({exc})") from None
            except JSON_ERRORS as exc:
                raise ArchscaleInputError(f"{path}: {json_failure(exc)}") from None
            if not isinstance(config, dict):
                raise ArchscaleInputError(
                    f"{path}: a config.json must hold a JSON object (this one holds a JSON {json_type(config)})"
                )
        if "text_config" in config and "hidden_size" not in config:  # multimodal wrappers nest the LM
            config = config["text_config"]
            if not isinstance(config, dict):
                raise ArchscaleInputError(f"{source}: 'text_config' must be a JSON object")

        def integer(key: str, default: int | None = None) -> int:
            value = config.get(key, default)
            if value is None:
                raise ArchscaleInputError(f"{source}: missing key '{key}'")
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ArchscaleInputError(f"{source}: '{key}' must be a positive integer, got {value!r:.80}")
            if value > MAX_CONFIG_INT:
                raise ArchscaleInputError(f"{source}: '{key}' = {value:.3g} is too large (at most {MAX_CONFIG_INT:,})")
            return value

        def flag(key: str) -> bool:
            value = config.get(key)
            if value is not None and not isinstance(value, bool):
                raise ArchscaleInputError(f"{source}: '{key}' must be true or false, got {value!r:.80}")
            return bool(value)

        model_type = config.get("model_type", "llama")
        if not isinstance(model_type, str) or model_type not in SUPPORTED_MODEL_TYPES:
            raise ArchscaleInputError(
                f"{source}: model_type {model_type!r:.80} is not supported (supported: "
                f"{', '.join(SUPPORTED_MODEL_TYPES)})"
            )
        d_model = integer("hidden_size")
        n_head = integer("num_attention_heads")
        if config.get("head_dim") is None and d_model % n_head:
            raise ArchscaleInputError(
                f"{source}: hidden_size={d_model} is not divisible by num_attention_heads={n_head} and no head_dim given"
            )
        dtype_name = config.get("torch_dtype", config.get("dtype", "bfloat16")) or "bfloat16"
        if not isinstance(dtype_name, str) or dtype_name not in DTYPE_BYTES:
            raise ArchscaleInputError(
                f"{source}: unsupported torch_dtype {dtype_name!r:.80} (supported: {', '.join(DTYPE_BYTES)})"
            )
        try:
            arch = cls(
                d_model=d_model,
                n_layer=integer("num_hidden_layers"),
                n_head=n_head,
                n_kv_head=integer("num_key_value_heads", n_head),
                d_head=integer("head_dim", config.get("head_dim") or d_model // n_head),
                d_ff=integer("intermediate_size"),
                vocab=integer("vocab_size"),
                tie_embeddings=flag("tie_word_embeddings"),
                qkv_bias=model_type == "qwen2" or flag("attention_bias"),
                qk_norm=model_type == "qwen3",
                dtype_bytes=DTYPE_BYTES[dtype_name],
                name=name,
            )
        except ArchscaleInputError as exc:
            raise ArchscaleInputError(f"{source}: {exc}") from None
        if arch.n_params_total > MAX_CONFIG_PARAMS:
            raise ArchscaleInputError(
                f"{source}: {arch.n_params_total:.3g} parameters is too large a model (at most {MAX_CONFIG_PARAMS:.0e})"
            )
        return arch

    def to_hf_config(self) -> dict:
        """A config.json dict that transformers, vLLM and SGLang accept (weights are random/dummy)."""
        if self.qk_norm:
            architecture, model_type = "Qwen3ForCausalLM", "qwen3"
        elif self.qkv_bias:
            architecture, model_type = "Qwen2ForCausalLM", "qwen2"
        else:
            architecture, model_type = "LlamaForCausalLM", "llama"
        dtype = {4: "float32", 2: "bfloat16", 1: "float8_e4m3fn"}[self.dtype_bytes]
        config = {
            "architectures": [architecture],
            "model_type": model_type,
            "hidden_size": self.d_model,
            "num_hidden_layers": self.n_layer,
            "num_attention_heads": self.n_head,
            "num_key_value_heads": self.n_kv_head,
            "head_dim": self.d_head,
            "intermediate_size": self.d_ff,
            "vocab_size": self.vocab,
            "tie_word_embeddings": self.tie_embeddings,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "max_position_embeddings": 131072,
            "initializer_range": 0.02,
            "use_cache": True,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "torch_dtype": dtype,
        }
        if model_type == "llama":
            config.update(attention_bias=False, mlp_bias=False)
        return config

    # ---- the search's inverse ----
    @classmethod
    def from_budget(
        cls,
        n_params_non_embedding: float,
        *,
        hidden_size_factor: float,
        mlp_attn_ratio: float,
        gqa_group: int,
        d_head: int,
        n_layer: int,
        vocab: int,
        tie_embeddings: bool = False,
        d_multiple: int = 64,
        d_ff_multiple: int = 64,
        name: str = "",
    ) -> Arch:
        """The realizable architecture nearest to (N, x, r, GQA) at a fixed layer count and head size.

        d = x·sqrt(N) rounded to `d_multiple`; attention params per layer = (N/n_layer)/(1 + r) gives the
        number of KV heads (an integer, n_head = GQA·n_kv_head); d_ff (a multiple of `d_ff_multiple`) takes
        the rest of the per-layer budget, so N is kept and r lands as close as the integers allow.
        """
        if n_params_non_embedding <= 0 or hidden_size_factor <= 0 or mlp_attn_ratio <= 0:
            raise ArchscaleInputError("budget, hidden-size factor and MLP/attention ratio must be positive")
        d_model = int(round(hidden_size_factor * math.sqrt(n_params_non_embedding) / d_multiple)) * d_multiple
        if d_model <= 0:
            raise ArchscaleInputError(f"hidden-size factor {hidden_size_factor} gives d_model = 0 at this budget")
        per_layer = (n_params_non_embedding - d_model) / n_layer - params.norm_params(d_model, d_head, False)
        attention_target = per_layer / (1 + mlp_attn_ratio)
        n_kv_head = round(attention_target / (2 * d_model * d_head * (gqa_group + 1)))
        if n_kv_head < 1:
            raise ArchscaleInputError(
                f"budget {n_params_non_embedding:.3g} with d_model={d_model}, r={mlp_attn_ratio} and GQA {gqa_group} "
                "leaves no room for a single KV head"
            )
        attention = params.attention_weight_params(d_model, gqa_group * n_kv_head, n_kv_head, d_head)
        d_ff = round((per_layer - attention) / (3 * d_model) / d_ff_multiple) * d_ff_multiple
        if d_ff < d_ff_multiple:
            raise ArchscaleInputError(
                f"budget {n_params_non_embedding:.3g} leaves no room for the MLP at d_model={d_model}, GQA {gqa_group}"
            )
        return cls(
            d_model=d_model,
            n_layer=n_layer,
            n_head=gqa_group * n_kv_head,
            n_kv_head=n_kv_head,
            d_head=d_head,
            d_ff=d_ff,
            vocab=vocab,
            tie_embeddings=tie_embeddings,
            name=name,
        )


ARCH_FIELDS = tuple(f.name for f in fields(Arch))
