"""Compile the decode kernels ahead of time for a GPU architecture, with no GPU present.

The CPU tests run the kernels in the Triton interpreter, which does not type-check what only the compiler
checks (loop-carried types, layouts, dot shapes). `compile_for_target` lowers every kernel variant through
Triton's real pipeline to PTX and a cubin for e.g. sm_90 (Hopper), so a kernel that would fail to compile on an
H100 fails on the CPU machine first. Variants: dtype × head_dim × stage 1 (contiguous/paged × split/single-split,
the single split writing the final output in q's dtype) and the merge, each with 32-bit and with 64-bit stride
arguments (Triton passes an int >= 2**31 as i64, e.g. the strides of a cache over 2**31 elements).
Run it without TRITON_INTERPRET: `python -m kernels.compile_check 90`.
"""

from __future__ import annotations

import inspect
import sys

DTYPES = ("bf16", "fp16", "fp32")
HEAD_DIMS = (64, 128)
STRIDE_WIDTHS = ("i32", "i64")


def _signature(kernel, pointer_types: dict, constexprs: dict, stride_type: str = "i32") -> dict:
    signature = {}
    for name in inspect.signature(kernel.fn).parameters:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in pointer_types:
            signature[name] = pointer_types[name]
        elif name == "sm_scale_log2":
            signature[name] = "fp32"
        else:
            signature[name] = stride_type if name.startswith("stride_") else "i32"
    return signature


def _variants() -> list[tuple[str, str, dict, dict, str, dict]]:
    """(label, kernel name, pointer types, constexprs, stride type, options) of every variant."""
    from kernels.gqa_decode import kernel_constexprs

    variants = []
    for dtype in DTYPES:
        for head_dim in HEAD_DIMS:
            for strides in STRIDE_WIDTHS:
                for paged in (False, True):
                    for single_split in (False, True):
                        constexprs = kernel_constexprs(dtype, group=4, head_dim=head_dim, paged=paged, page_size=16,
                                                       single_split=single_split)  # fmt: skip
                        out_type = f"*{dtype}" if single_split else "*fp32"  # single split: out itself
                        pointers = {name: f"*{dtype}" for name in ("q_ptr", "k_ptr", "v_ptr")}
                        pointers |= {"seq_lens_ptr": "*i32", "block_table_ptr": "*i32", "o_ptr": out_type,
                                     "lse_ptr": out_type}  # fmt: skip
                        label = f"split_kv {dtype} head_dim={head_dim} paged={paged} single_split={single_split}"
                        variants.append((f"{label} strides={strides}", "_split_kv_kernel", pointers, constexprs,
                                         strides, {"num_warps": 4, "num_stages": 2}))  # fmt: skip
                pointers = {"partial_out_ptr": "*fp32", "partial_lse_ptr": "*fp32", "out_ptr": f"*{dtype}"}
                variants.append((f"merge {dtype} head_dim={head_dim} strides={strides}", "_merge_kernel", pointers,
                                 {"HEAD_DIM": head_dim}, strides, {"num_warps": 4}))  # fmt: skip
    return variants


def _compile_one(capability: int, variant: tuple) -> str:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kernels import gqa_decode

    label, kernel_name, pointers, constexprs, stride_type, options = variant
    kernel = getattr(gqa_decode, kernel_name)
    source = ASTSource(kernel, _signature(kernel, pointers, constexprs, stride_type), constexprs)
    binary = triton.compile(source, target=GPUTarget("cuda", capability, 32), options=options)
    assert binary.asm["cubin"], f"no cubin produced for {label}"
    return label


def compile_for_target(capability: int = 90, workers: int | None = None) -> list[str]:
    """Compile every kernel variant for CUDA compute capability `capability`, in `workers` processes (default: one
    per CPU); returns what was compiled."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    variants = _variants()
    workers = workers or min(os.cpu_count() or 1, len(variants))
    if workers == 1 or sys.platform != "linux":  # fork: workers start at once (spawn re-imports torch in each)
        return [_compile_one(capability, variant) for variant in variants]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(partial(_compile_one, capability), variants))


if __name__ == "__main__":
    for line in compile_for_target(int(sys.argv[1]) if len(sys.argv) > 1 else 90):
        print("compiled", line)
