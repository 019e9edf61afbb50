"""Serving engines behind one protocol (`harness.engines.base.Engine`): ours in torch, and vLLM and SGLang through
their offline Python APIs, each point in a process of the engine's own Python (`harness.engines.external`).

`get_engine(name)` imports the engine's module only when asked, so nothing here pulls in torch (and the external
adapters never import their engine: their workers do, in the engine's environment).
"""

from __future__ import annotations

from perfmodel.errors import ArchscaleInputError

ENGINE_NAMES = ("torch", "vllm", "sglang")
EXTERNAL_ENGINES = ("vllm", "sglang")


def get_engine(name: str):
    if name == "torch":
        from harness.engines.torch_engine import TorchEngine

        return TorchEngine()
    if name == "vllm":
        from harness.engines.vllm_engine import VllmEngine

        return VllmEngine()
    if name == "sglang":
        from harness.engines.sglang_engine import SglangEngine

        return SglangEngine()
    raise ArchscaleInputError(f"unknown engine '{name}' (known: {', '.join(ENGINE_NAMES)})")
