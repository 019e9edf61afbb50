"""Serving engines behind one protocol (`harness.engines.base.Engine`): ours in torch; vLLM and SGLang to come.

`get_engine(name)` imports the engine's module only when asked, so nothing here pulls in torch.
"""

from __future__ import annotations

from perfmodel.errors import ArchscaleInputError

ENGINE_NAMES = ("torch",)


def get_engine(name: str):
    if name == "torch":
        from harness.engines.torch_engine import TorchEngine

        return TorchEngine()
    if name in ("vllm", "sglang"):
        raise ArchscaleInputError(
            f"the {name} adapter is not built yet: archscale sweep runs --engine torch only (`archscale predict "
            f"--engine {name}` does predict it)"
        )
    raise ArchscaleInputError(f"unknown engine '{name}' (known: {', '.join(ENGINE_NAMES)})")
