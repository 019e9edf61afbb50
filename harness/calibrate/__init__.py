"""The model held against measurements: fit its efficiency factors to sweep rows (fit.py), compare predicted with
measured per point, ranking and ratios to a baseline (compare.py, ranking.py), and the throughputs others published
for vLLM and SGLang as rows of the same kind (published.py)."""
