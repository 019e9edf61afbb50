"""Compile the decode kernels ahead of time for a GPU architecture, with no GPU present.

The CPU tests run the kernels in the Triton interpreter, which does not type-check what only the compiler
checks (loop-carried types, layouts, dot shapes). `compile_for_target` lowers every kernel variant (dtype ×
contiguous/paged) through Triton's real pipeline to PTX and a cubin for e.g. sm_90 (Hopper), so a kernel that
would fail to compile on an H100 fails on the CPU machine first. Run it without TRITON_INTERPRET:
`python -m kernels.compile_check 90`.
"""

from __future__ import annotations

import inspect
import sys

DTYPES = ("bf16", "fp16", "fp32")
HEAD_DIMS = (64, 128)


def _signature(kernel, pointer_types: dict, constexprs: dict) -> dict:
    signature = {}
    for name in inspect.signature(kernel.fn).parameters:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in pointer_types:
            signature[name] = pointer_types[name]
        else:
            signature[name] = "fp32" if name == "sm_scale_log2" else "i32"
    return signature


def compile_for_target(capability: int = 90) -> list[str]:
    """Compile every kernel variant for CUDA compute capability `capability`; returns what was compiled."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kernels.gqa_decode import _merge_kernel, _split_kv_kernel, kernel_constexprs

    target = GPUTarget("cuda", capability, 32)
    compiled = []
    for dtype in DTYPES:
        for head_dim in HEAD_DIMS:
            for paged in (False, True):
                constexprs = kernel_constexprs(dtype, group=4, head_dim=head_dim, paged=paged, page_size=16)
                pointers = {name: f"*{dtype}" for name in ("q_ptr", "k_ptr", "v_ptr")}
                pointers |= {"seq_lens_ptr": "*i32", "block_table_ptr": "*i32", "partial_out_ptr": "*fp32",
                             "partial_lse_ptr": "*fp32"}  # fmt: skip
                source = ASTSource(_split_kv_kernel, _signature(_split_kv_kernel, pointers, constexprs), constexprs)
                binary = triton.compile(source, target=target, options={"num_warps": 4, "num_stages": 2})
                assert binary.asm["cubin"], "no cubin produced"
                compiled.append(f"split_kv {dtype} head_dim={head_dim} paged={paged}")
            pointers = {"partial_out_ptr": "*fp32", "partial_lse_ptr": "*fp32", "out_ptr": f"*{dtype}"}
            constexprs = {"HEAD_DIM": head_dim}
            source = ASTSource(_merge_kernel, _signature(_merge_kernel, pointers, constexprs), constexprs)
            triton.compile(source, target=target, options={"num_warps": 4})
            compiled.append(f"merge {dtype} head_dim={head_dim}")
    return compiled


if __name__ == "__main__":
    for line in compile_for_target(int(sys.argv[1]) if len(sys.argv) > 1 else 90):
        print("compiled", line)
