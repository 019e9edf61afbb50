"""kernels: Triton GQA decode attention (contiguous and paged KV, split-KV; a plan/run split whose run step has no
host sync and can be captured in a CUDA graph), its torch reference and benchmark.

Import `kernels.gqa_decode` explicitly: importing this package does not import torch or triton.
"""
