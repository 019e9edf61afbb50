"""kernels: Triton GQA decode attention (contiguous and paged KV, split-KV), its torch reference and benchmark.

Import `kernels.gqa_decode` explicitly: importing this package does not import torch or triton.
"""
