"""Named reference architectures (gpt-fast style: a dict of presets) and `resolve_arch` for CLI arguments.

Public models: values from each model's config.json on the Hugging Face Hub (meta-llama/Llama-3.2-1B,
meta-llama/Llama-3.2-3B, Qwen/Qwen2.5-1.5B, Qwen/Qwen3-0.6B, and for multi-GPU deployments meta-llama/Llama-3.1-8B,
meta-llama/Llama-3.1-70B, Qwen/Qwen2.5-7B, untied; and Qwen/Qwen2.5-0.5B, Qwen/Qwen2.5-3B, Qwen/Qwen3-8B, the other
models of the published throughputs in data/published_throughput.csv). Panda and Surefire: the architectures reported in
arXiv 2510.18245 (Section 5, Tables of the 1B and 3B searches), with the Llama-3.2 tokenizer and tied embeddings.

Small and tiny shapes for measuring on a CPU (`make sweep`, the tests): not public models, but shapes that vary
what the paper varies at a roughly fixed budget — hidden size, MLP-to-attention ratio r and the GQA group (odd
KV-head counts and n_head·d_head != d_model included). The small ones have N = 46–49M non-embedding parameters,
d_head 64 and the 32,000-token vocabulary of Llama 2 (meta-llama/Llama-2-7b-hf config.json, vocab_size 32000);
the tiny ones run a whole sweep point in well under a second.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from perfmodel.arch import Arch
from perfmodel.errors import ArchscaleInputError

_LLAMA3 = {"vocab": 128256, "tie_embeddings": True}
_QWEN = {"vocab": 151936, "tie_embeddings": True}
_SMALL = {"vocab": 32000, "tie_embeddings": True}

PRESETS: dict[str, Arch] = {
    arch.name: arch
    for arch in (
        Arch(2048, 16, 32, 8, 64, 8192, **_LLAMA3, name="llama-3.2-1b"),
        Arch(3072, 28, 24, 8, 128, 8192, **_LLAMA3, name="llama-3.2-3b"),
        Arch(1536, 28, 12, 2, 128, 8960, **_QWEN, qkv_bias=True, name="qwen2.5-1.5b"),
        Arch(1024, 28, 16, 8, 128, 3072, **_QWEN, qk_norm=True, name="qwen3-0.6b"),
        # larger public models, for multi-GPU deployments (--tp, --dp)
        Arch(4096, 32, 32, 8, 128, 14336, vocab=128256, name="llama-3.1-8b"),
        Arch(8192, 80, 64, 8, 128, 28672, vocab=128256, name="llama-3.1-70b"),
        Arch(3584, 28, 28, 4, 128, 18944, vocab=152064, qkv_bias=True, name="qwen2.5-7b"),
        # the other models of the published vLLM/SGLang throughputs (perfmodel/data/published_throughput.csv)
        Arch(896, 24, 14, 2, 64, 4864, **_QWEN, qkv_bias=True, name="qwen2.5-0.5b"),
        Arch(2048, 36, 16, 2, 128, 11008, **_QWEN, qkv_bias=True, name="qwen2.5-3b"),
        Arch(4096, 36, 32, 8, 128, 12288, vocab=151936, qk_norm=True, name="qwen3-8b"),
        Arch(2560, 16, 72, 18, 64, 4096, **_LLAMA3, name="panda-1b"),
        Arch(2560, 16, 36, 4, 64, 6144, **_LLAMA3, name="surefire-1b"),
        Arch(4096, 28, 36, 12, 128, 4096, **_LLAMA3, name="panda-3b"),
        Arch(4096, 28, 42, 6, 128, 4096, **_LLAMA3, name="surefire-3b"),
        # CPU-sized: d, r and GQA vary at N of about 48M
        Arch(768, 8, 12, 4, 64, 1920, **_SMALL, name="small-base"),  # r 2.8, GQA 3
        Arch(1024, 8, 16, 4, 64, 1152, **_SMALL, name="small-wide"),  # r 1.35, GQA 4
        Arch(512, 8, 8, 2, 64, 3328, **_SMALL, name="small-narrow"),  # r 7.8, GQA 4
        Arch(768, 8, 12, 12, 64, 1536, **_SMALL, name="small-mha"),  # r 1.5, GQA 1
        Arch(768, 8, 15, 3, 64, 1792, **_SMALL, name="small-kv3"),  # r 2.3, GQA 5, 3 KV heads
        Arch(640, 8, 12, 2, 64, 2560, **_SMALL, name="small-gqa6"),  # r 4.3, GQA 6
        Arch(128, 2, 4, 4, 32, 384, vocab=512, tie_embeddings=True, name="tiny-mha"),
        Arch(128, 2, 8, 2, 32, 256, vocab=512, name="tiny-gqa4"),  # n_head·d_head = 256 != d_model
    )
}


def resolve_arch(spec: str) -> Arch:
    """A preset name, or a path to a config.json (or to the folder holding one)."""
    if spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.exists():
        return Arch.from_hf_config(path)
    nearest = difflib.get_close_matches(spec, list(PRESETS), n=3, cutoff=0.4)
    hint = f"; did you mean: {', '.join(nearest)}?" if nearest else ""
    raise ArchscaleInputError(
        f"'{spec}' is neither a preset nor a config.json path{hint} (presets: {', '.join(PRESETS)})"
    )
