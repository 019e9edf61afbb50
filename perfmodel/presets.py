"""Named reference architectures (gpt-fast style: a dict of presets) and `resolve_arch` for CLI arguments.

Public models: values from each model's config.json on the Hugging Face Hub (meta-llama/Llama-3.2-1B,
meta-llama/Llama-3.2-3B, Qwen/Qwen2.5-1.5B, Qwen/Qwen3-0.6B). Panda and Surefire: the architectures reported in
arXiv 2510.18245 (Section 5, Tables of the 1B and 3B searches), with the Llama-3.2 tokenizer and tied embeddings.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from perfmodel.arch import Arch
from perfmodel.errors import ArchscaleInputError

_LLAMA3 = {"vocab": 128256, "tie_embeddings": True}
_QWEN = {"vocab": 151936, "tie_embeddings": True}

PRESETS: dict[str, Arch] = {
    arch.name: arch
    for arch in (
        Arch(2048, 16, 32, 8, 64, 8192, **_LLAMA3, name="llama-3.2-1b"),
        Arch(3072, 28, 24, 8, 128, 8192, **_LLAMA3, name="llama-3.2-3b"),
        Arch(1536, 28, 12, 2, 128, 8960, **_QWEN, qkv_bias=True, name="qwen2.5-1.5b"),
        Arch(1024, 28, 16, 8, 128, 3072, **_QWEN, qk_norm=True, name="qwen3-0.6b"),
        Arch(2560, 16, 72, 18, 64, 4096, **_LLAMA3, name="panda-1b"),
        Arch(2560, 16, 36, 4, 64, 6144, **_LLAMA3, name="surefire-1b"),
        Arch(4096, 28, 36, 12, 128, 4096, **_LLAMA3, name="panda-3b"),
        Arch(4096, 28, 42, 6, 128, 4096, **_LLAMA3, name="surefire-3b"),
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
