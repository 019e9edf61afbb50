"""`archscale probe`: measure this machine (matmul FLOP/s, copy bandwidth, the GEMM curve and shape grid, decode and
prefill attention, overheads) and write it as a hardware entry the perfmodel predicts for like any datasheet GPU.

measure.py runs the probe; decode.py, gemm_shapes.py and prefill_attention.py are its parts; entry.py writes the
entry; gemm_curve_check.py (`archscale gemm-curve`) and profile_prefill.py are studies of how far the probe carries.
"""
